"""Learned star detection: a small U-Net segments stars, positions and photometry are measured.

The network (:class:`skysift.learning.models.UNet`, trained by
:func:`skysift.stars.training.train_stars` on synthetic stars over real
star-free skies, bolide report §4.1, §4.5, §4.7) sees the image after a
mesh-background subtraction and noise normalisation with an arcsinh stretch
(:func:`normalise_image`); it returns a star probability per pixel. Stars
are the connected regions of probability >= ``score_threshold`` (large regions
holding several image peaks are split, and seeds with no dip of the image
between them and a brighter seed, the fragments of one bright or saturated
source, are merged), then measured on the image much as the classical finder
does (windowed centroid, circular aperture flux of 1.5 FWHM; Bertin & Arnouts
1996, via ``sep``) but above a local annulus background, with the FWHM from
the area above half maximum, so the output table has the classical finder's
schema and a brightness ranking not inflated by the Milky Way or halos.

Importing this module does not import torch: the model is loaded on the
first call. It registers ``"unet"`` in
:data:`skysift.detection.stars.STAR_FINDERS`; that factory takes the
registry's keywords (``threshold_sigma`` in background sigma, as for the classical
finder, applied as a minimum SNR; ``saturation``) and ``probability`` for
the network's cut, so ``calibrate(frame, method="unet")`` works unchanged.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import sep
from astropy.table import Table
from scipy import ndimage
from scipy.spatial import cKDTree

from skysift._validation import check_image
from skysift.detection.background import BackgroundMap, estimate_background
from skysift.detection.masks import caption_text_mask
from skysift.detection.stars import (
    STAR_COLUMNS,
    StarFinder,
    StarFlag,
    empty_star_table,
    estimate_saturation,
)
from skysift.errors import InputError, NoDetectionsWarning

__all__ = ["UNetStarFinder", "normalise_image", "star_probability", "make_unet_finder"]

#: ``min_snr`` per sigma of the registry's ``threshold_sigma`` (:func:`make_unet_finder`):
#: calibrate's default 3 sigma gives a minimum aperture SNR of 4 (local-annulus
#: photometry). With it the learned finder identifies more catalogue stars than the
#: classical one on the MAGIC (0055, 0341) and UMD frames at sub-pixel RMS.
#: The aperture SNR is ~0.4x the matched-filter SNR of the evaluation's truth
#: (``skysift.stars.training_data.snr_to_flux``), so this keeps mostly stars of
#: matched-filter SNR >~ 10; :func:`skysift.stars.evaluation.evaluate_stars` applies no SNR cut.
SNR_PER_SIGMA = 4.0 / 3.0

#: Inner and outer radius (pixels) of the local background annulus of the photometry.
ANNULUS = (10.0, 16.0)

#: Softening of the arcsinh stretch, in background sigma.
STRETCH_SIGMA = 2.0

_BACKENDS = ("auto", "torch", "onnxruntime", "bf16")


def normalise_image(
    image: np.ndarray,
    level: np.ndarray | float,
    rms: np.ndarray | float,
    bad: np.ndarray | None = None,
) -> np.ndarray:
    """The network input: ``arcsinh((image - level) / rms / 2)``, 0 on bad pixels.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Image in ADU.
    level, rms : float or ndarray, shape (H, W)
        Background level and noise (1-sigma), ADU (e.g. from
        :func:`skysift.detection.estimate_background`). The rms is floored
        at 1e-3 of its median (flat, clipped skies).
    bad : ndarray of bool, shape (H, W), optional
        ``True`` = bad pixel (set to 0, the background).

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    rms = np.asarray(rms, np.float32)
    floor = max(float(np.median(rms)) * 1e-3, 1e-6)
    z = (np.asarray(image, np.float32) - np.asarray(level, np.float32)) / np.maximum(rms, floor)
    out = np.arcsinh(z / STRETCH_SIGMA).astype(np.float32)
    out[~np.isfinite(out)] = 0.0
    if bad is not None:
        out[bad] = 0.0
    return out


def _weights_path(weights: str | Path) -> Path:
    """The ``.safetensors`` file of a shipped name or a path."""
    p = Path(weights)
    if p.suffix in (".safetensors", ".json", ".md") or len(p.parts) > 1:
        return p.with_suffix(".safetensors")
    # needs torch (the learn extra): imported on use
    from skysift.learning.weights import WEIGHTS_DIR

    return WEIGHTS_DIR / f"{weights}.safetensors"


@functools.lru_cache(maxsize=8)
def _model(weights: str, backend: str) -> Any:
    """Load (and cache) a network; ``bf16`` gives a bfloat16 copy."""
    # needs torch (the learn extra): imported on use
    from skysift.learning.weights import load_weights

    path = _weights_path(weights)
    if not path.is_file():
        msg = f"star detector weights {path}: file not found"
        raise InputError(msg)
    try:
        model = load_weights(path)
    except InputError as err:
        msg = f"star detector weights {path}: {err}"
        raise InputError(msg) from err
    except Exception as err:  # noqa: BLE001 - any corruption becomes an InputError naming the file
        msg = f"star detector weights {path}: cannot be loaded ({type(err).__name__}: {err})"
        raise InputError(msg) from err
    model.eval()
    if backend == "bf16":
        # needs torch (the learn extra): imported on use
        from skysift.learning.compression import to_precision

        model = to_precision(model, "bfloat16").eval()
    return model


def star_probability(
    x: np.ndarray, model: Any, *, tile: int = 512, overlap: int = 64, backend: str = "auto"
) -> np.ndarray:
    """Run the network on a normalised image (tiled, via :func:`skysift.learning.inference.predict_image`).

    Parameters
    ----------
    x : ndarray, shape (H, W), float32
        Output of :func:`normalise_image`.
    model : torch.nn.Module
        The segmentation network (float32, or a bfloat16 copy).
    tile : int, optional
        Tile side (pixels, rounded up to the net's ``size_multiple``);
        images up to ``tile`` on each side go in one pass. Default 512.
    overlap : int, optional
        Overlap of neighbouring tiles (pixels). Default 64.
    backend : {"auto", "torch", "onnxruntime", "bf16"}, optional
        ``"bf16"`` runs the bfloat16 model with torch. Default "auto"
        (ONNX Runtime when installed).

    Returns
    -------
    ndarray, shape (H, W), float32
        Star probability per pixel.
    """
    # needs torch (the learn extra): imported on use
    from skysift.learning.inference import predict_image

    m = int(getattr(model, "size_multiple", 1))
    tile = -(-int(tile) // m) * m
    stride = max(m, (int(tile) - int(overlap)) // m * m)
    h, w = x.shape
    mode = "whole" if h <= tile and w <= tile else "tiled"
    run_backend = "torch" if backend == "bf16" else backend
    prob = predict_image(model, x, tile=tile, stride=stride, backend=run_backend, mode=mode)
    return np.asarray(prob, np.float32).reshape(x.shape)


@dataclass
class UNetStarFinder(StarFinder):
    """Find stars with a U-Net probability map, measure them like the classical finder.

    Input: an ``(H, W)`` image in any real dtype (any size, NaNs allowed:
    they are treated as masked). Output: the classical finder's table
    (:meth:`skysift.detection.ClassicalStarFinder.find_stars`).

    Parameters
    ----------
    weights : str or path, optional
        A shipped weights name (``src/skysift/learning/weights/<name>.safetensors``
        with its ``.json`` card) or a path to a ``.safetensors`` file. Default
        ``"stars_unet"``.
    score_threshold : float, optional
        Probability cut in (0, 1). Default 0.5.
    backend : {"auto", "torch", "onnxruntime", "bf16"}, optional
        Inference backend (see :func:`star_probability`). Default ``"auto"``.
        A pruned network is an in-memory model: :meth:`from_model`.
    tile : int, optional
        Tile side in pixels for large images. Default 512.
    overlap : int, optional
        Tile overlap in pixels. Default 64.
    min_area : int, optional
        Minimum pixels of a region above ``threshold``. Default 3.
    min_snr : float, optional
        Drop detections with a measured ``snr`` below this. Default 0 (none).
    saturation : float, optional
        Saturation level; ``None`` estimates it (:func:`estimate_saturation`).
    max_elongation : float, optional
        a/b above which a source is flagged ELONGATED. Default 3.
    box_size : int, optional
        Background mesh size in pixels. Default 64.
    reject_captions : bool, optional
        Drop detections on burned-in caption text found by
        :func:`skysift.detection.caption_text_mask` (the network alone
        takes the colons and full stops of captions for stars). Default True.

    Raises
    ------
    InputError
        If a parameter is out of range, or (on the first call) the weights
        file is missing or corrupted (the message names the file).

    Examples
    --------
    >>> finder = UNetStarFinder(score_threshold=0.5)
    >>> stars = finder(image, mask=mask)  # doctest: +SKIP
    """

    weights: str | Path = "stars_unet"
    score_threshold: float = 0.5
    backend: str = "auto"
    tile: int = 512
    overlap: int = 64
    min_area: int = 3
    min_snr: float = 0.0
    saturation: float | None = None
    max_elongation: float = 3.0
    box_size: int = 64
    reject_captions: bool = True
    #: An in-memory network used instead of ``weights`` (training and evaluation).
    _net: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.score_threshold < 1:
            msg = f"score_threshold must be a probability in (0, 1), got {self.score_threshold}"
            raise InputError(msg)
        if self.backend not in _BACKENDS:
            msg = f"backend must be one of {_BACKENDS}, got {self.backend!r}"
            raise InputError(msg)
        if int(self.tile) < 32 or int(self.overlap) < 0 or 2 * int(self.overlap) >= int(self.tile):
            msg = f"need tile >= 32 and 0 <= 2 * overlap < tile, got tile={self.tile}, overlap={self.overlap}"
            raise InputError(msg)
        if self.min_area < 1:
            msg = f"min_area must be >= 1 pixel, got {self.min_area}"
            raise InputError(msg)

    @classmethod
    def from_model(cls, model: Any, **kwargs: Any) -> UNetStarFinder:
        """A finder running an in-memory network (``torch.nn.Module``) instead of shipped weights."""
        finder = cls(**kwargs)
        finder._net = model.eval()
        return finder

    @property
    def model(self) -> Any:
        """The network (loaded and cached on first use)."""
        if self._net is not None:
            return self._net
        return _model(str(self.weights), self.backend)

    def probability(
        self,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        background: BackgroundMap | None = None,
    ) -> np.ndarray:
        """Star probability map, shape (H, W), float32 in [0, 1] (0 on masked pixels)."""
        data, bad = check_image(image, mask, what="star detection")
        bkg = background or estimate_background(np.where(bad, 0, data), bad, box_size=self.box_size)
        return self._probability(data, bad, bkg)

    def _probability(self, data: np.ndarray, bad: np.ndarray, bkg: BackgroundMap) -> np.ndarray:
        x = normalise_image(data, bkg.level, bkg.rms, bad)
        prob = star_probability(
            x, self.model, tile=int(self.tile), overlap=int(self.overlap), backend=self.backend
        )
        prob[bad] = 0.0
        return prob

    def find_stars(
        self,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        background: BackgroundMap | None = None,
    ) -> Table:
        """Detect stars.

        Parameters
        ----------
        image : ndarray, shape (H, W)
            The image (any real dtype; converted to float32). Non-finite
            pixels are masked.
        mask : ndarray of bool, shape (H, W), optional
            ``True`` = not sky / bad pixel; no source is detected there.
        background : BackgroundMap, optional
            A precomputed background; estimated if not given.

        Returns
        -------
        astropy.table.Table
            The classical schema: ``x``, ``y`` (0-based pixels), ``flux``,
            ``flux_err``, ``fwhm`` (pixels), ``peak``, ``snr``, ``a``, ``b``
            (pixels), ``theta`` (radians), ``npix`` (pixels above the
            probability cut), ``flags`` (:class:`StarFlag`), brightest first;
            ``meta["probability_threshold"]``. Empty (full schema) with a
            :class:`NoDetectionsWarning` if nothing is found.

        Raises
        ------
        InputError
            If the image is not 2-D, the mask has another shape, or the
            weights cannot be loaded.
        """
        return self.detect_with_probability(image, mask, background)[0]

    def detect_with_probability(
        self,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        background: BackgroundMap | None = None,
        probability: np.ndarray | None = None,
    ) -> tuple[Table, np.ndarray]:
        """As :meth:`__call__`, also returning the probability map, shape (H, W), float32.

        A ``probability`` map computed before (same image) is reused instead
        of running the network again.
        """
        data, bad = check_image(image, mask, what="star detection")
        if bad.all():
            warnings.warn(
                "every pixel is masked: no star detected", NoDetectionsWarning, stacklevel=3
            )
            return empty_star_table(), np.zeros(data.shape, np.float32)
        data, bad, bkg, prob, sub, saturation, caption = self._prepare(
            data, bad, background, probability
        )
        t = self._measure(data, sub, bad, bkg, prob, saturation, caption)
        if len(t) == 0:
            warnings.warn("no star detected above threshold", NoDetectionsWarning, stacklevel=3)
        t.meta["background_level"] = bkg.global_level
        t.meta["background_rms"] = bkg.global_rms
        t.meta["saturation"] = saturation
        t.meta["probability_threshold"] = self.score_threshold
        return t, prob

    def _prepare(
        self,
        data: np.ndarray,
        bad: np.ndarray,
        background: BackgroundMap | None,
        probability: np.ndarray | None,
    ) -> tuple[
        np.ndarray, np.ndarray, BackgroundMap, np.ndarray, np.ndarray, float | None, np.ndarray
    ]:
        """Checked image -> (data, bad, background, probability, data - level, saturation, caption).

        The probability map is computed unless given, and set to 0 on caption
        text when :attr:`reject_captions`; ``caption`` is that text's pixel
        mask (all False otherwise).
        """
        data = np.where(bad, 0, data).astype(np.float32)
        bkg = background or estimate_background(data, bad, box_size=self.box_size)
        if probability is None:
            prob = self._probability(data, bad, bkg)
        else:
            prob = np.where(bad, 0, np.asarray(probability, np.float32).reshape(data.shape))
        caption = np.zeros(data.shape, bool)
        if self.reject_captions and min(data.shape) >= 64:
            caption = caption_text_mask(np.where(bad, np.nan, data))
            prob = np.where(caption, 0, prob)
        sub = np.ascontiguousarray(np.where(bad, 0, data - bkg.level), dtype=np.float32)
        saturation = (
            self.saturation
            if self.saturation is not None
            else estimate_saturation(np.where(bad, np.nan, data))
        )
        return data, bad, bkg, prob, sub, saturation, caption

    def _peaks(
        self, sub: np.ndarray, prob: np.ndarray, rms: np.ndarray, threshold: float | None = None
    ) -> tuple[np.ndarray, ...]:
        """Seed positions: one per region, or one per image peak in regions holding several.

        ``threshold`` (default :attr:`score_threshold`) is the probability cut of the regions.
        """
        threshold = self.score_threshold if threshold is None else float(threshold)
        above = (prob >= threshold).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
        if n <= 1:
            return (np.zeros(0),) * 5
        area = stats[1:, cv2.CC_STAT_AREA]
        # smoothed image peaks (3x3 mean, then 5x5 local maxima) inside the regions
        smooth = cv2.blur(sub, (3, 3))
        local_max = (smooth == ndimage.maximum_filter(smooth, size=5)) & (labels > 0)
        py, px = np.nonzero(local_max)
        pl = labels[py, px]
        pv = smooth[py, px]
        order = np.lexsort((-pv, pl))
        py, px, pl, pv = py[order], px[order], pl[order], pv[order]
        first = np.ones(len(pl), bool)
        first[1:] = pl[1:] != pl[:-1]
        # a secondary peak counts if it is at least 30% of its region's brightest
        # and its own probability is high (a genuine second star, not noise)
        best = np.zeros(n)
        best[pl[first]] = pv[first]
        second = ~first & (pv >= 0.3 * best[pl]) & (prob[py, px] >= max(threshold, 0.5))
        keep = first | second
        py, px, pl = py[keep], px[keep], pl[keep]
        blended = np.zeros(len(pl), bool)
        # regions without any peak (flat) keep their probability-weighted centroid
        has = np.zeros(n, bool)
        has[pl] = True
        missing = np.nonzero(~has[1:])[0] + 1
        if len(missing):
            cy, cx = np.asarray(ndimage.center_of_mass(prob, labels, missing)).reshape(-1, 2).T
            px = np.concatenate([px, np.round(cx).astype(int)])
            py = np.concatenate([py, np.round(cy).astype(int)])
            pl = np.concatenate([pl, missing])
            blended = np.concatenate([blended, np.zeros(len(missing), bool)])
        ok = area[pl - 1] >= self.min_area
        px, py, pl = px[ok], py[ok], pl[ok]
        # one source, one detection: fragments on the wings or saturated core of a
        # brighter source (no dip of the image between them) are dropped
        one = _same_source(smooth, px, py, rms)
        px, py, pl = px[~one], py[~one], pl[~one]
        blended = np.bincount(pl, minlength=n)[pl] > 1
        return px, py, pl, blended, area[pl - 1]

    def _measure(
        self,
        data: np.ndarray,
        sub: np.ndarray,
        bad: np.ndarray,
        bkg: BackgroundMap,
        prob: np.ndarray,
        saturation: float | None,
        caption: np.ndarray | None = None,
    ) -> Table:
        px, py, _, blended, area = self._peaks(sub, prob, bkg.rms)
        return self._measure_seeds(data, sub, bad, bkg, saturation, px, py, blended, area)

    def _measure_seeds(
        self,
        data: np.ndarray,
        sub: np.ndarray,
        bad: np.ndarray,
        bkg: BackgroundMap,
        saturation: float | None,
        px: np.ndarray,
        py: np.ndarray,
        blended: np.ndarray,
        area: np.ndarray,
        extra: dict[str, np.ndarray] | None = None,
        psf_fwhm: float | None = None,
    ) -> Table:
        """Measure integer seed pixels ``(px, py)``: the star table (``extra`` columns appended).

        With ``psf_fwhm`` (px, measured by the caller) the frame's PSF is not
        re-estimated from the seeds, and no window or aperture is wider than
        twice it (on sky structure the half-light FWHM of a seed can be many
        times the PSF's, which only slows the windowed centroid).
        """
        if len(px) == 0:
            t = empty_star_table()
            for name in extra or {}:
                t[name] = np.zeros(0)
            return t
        h, w = data.shape
        x0, y0 = px.astype(float), py.astype(float)
        # second moments in a 7x7 box around the seed (a, b, theta, as SExtractor's)
        off = np.arange(-3, 4)
        yy = np.clip(py[:, None, None] + off[None, :, None], 0, h - 1)
        xx = np.clip(px[:, None, None] + off[None, None, :], 0, w - 1)
        stamp = np.clip(sub[yy, xx], 0, None) * ~bad[yy, xx]
        tot = stamp.sum((1, 2)) + 1e-12
        dy = off[None, :, None] * np.ones_like(stamp)
        dx = off[None, None, :] * np.ones_like(stamp)
        mx = (stamp * dx).sum((1, 2)) / tot
        my = (stamp * dy).sum((1, 2)) / tot
        cxx = (stamp * dx**2).sum((1, 2)) / tot - mx**2 + 1 / 12
        cyy = (stamp * dy**2).sum((1, 2)) / tot - my**2 + 1 / 12
        cxy = (stamp * dx * dy).sum((1, 2)) / tot - mx * my
        root = np.sqrt(np.clip(((cxx - cyy) / 2) ** 2 + cxy**2, 0, None))
        a = np.sqrt(np.clip((cxx + cyy) / 2 + root, 1e-6, None))
        b = np.sqrt(np.clip((cxx + cyy) / 2 - root, 1e-6, None))
        theta = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
        x1 = x0 + np.where(np.abs(mx) < 2, mx, 0)
        y1 = y0 + np.where(np.abs(my) < 2, my, 0)

        # FWHM and peak above a local (annulus) background: on the global 64-px mesh,
        # stars on the Milky Way or in a bright star's halo sit on a pedestal that
        # inflates a half-light FWHM (and so the aperture flux) many times over.
        fwhm, peak0 = _local_fwhm(sub, bad, px, py)
        # Faint stars' own FWHM is noisy: their window and aperture use the frame's PSF
        # (median FWHM of the brightest detections) unless their FWHM is close to it.
        top = peak0 >= np.percentile(peak0, 70) if len(peak0) >= 10 else np.ones(len(peak0), bool)
        if psf_fwhm is None:
            fwhm_psf = float(np.clip(np.median(fwhm[top]), 1.0, 20.0))
        else:
            fwhm_psf = float(np.clip(psf_fwhm, 1.0, 20.0))
        typical = (fwhm > 0.7 * fwhm_psf) & (fwhm < 1.5 * fwhm_psf)
        fwhm_use = np.where(typical | (peak0 >= np.percentile(peak0, 70)), fwhm, fwhm_psf)
        if psf_fwhm is not None:
            fwhm_use = np.minimum(fwhm_use, 2.0 * fwhm_psf)
        sig = np.clip(fwhm_use / 2.3548, 0.5, None)
        # 5x5 sub-pixels at the window's edge: within 0.001 px of sep's default 11x11, 3x faster
        xw, yw, wflag = sep.winpos(sub, x1, y1, sig, mask=bad, subpix=5)
        good = (
            (wflag == 0)
            & ~blended
            & np.isfinite(xw)
            & np.isfinite(yw)
            # the window may slide towards a bright neighbour: keep it near the seed
            & (np.hypot(xw - x1, yw - y1) < 1.0)
        )
        x = np.where(good, xw, x1)
        y = np.where(good, yw, y1)
        radius = np.clip(1.5 * fwhm_use, 2.0, ANNULUS[0] - 1.0)
        flux, flux_err, aflag = _aperture_sum(sub, x, y, radius, bkg.rms, bad)
        snr = np.where(flux_err > 0, flux / np.maximum(flux_err, 1e-12), 0.0)
        peak = peak0
        flags = np.zeros(len(x), dtype=np.int64)
        if saturation is not None:
            yy3 = np.clip(py[:, None, None] + np.arange(-1, 2)[None, :, None], 0, h - 1)
            xx3 = np.clip(px[:, None, None] + np.arange(-1, 2)[None, None, :], 0, w - 1)
            flags[data[yy3, xx3].max((1, 2)) >= 0.97 * saturation] |= StarFlag.SATURATED
        near_border = (x < radius) | (y < radius) | (x > w - 1 - radius) | (y > h - 1 - radius)
        flags[near_border | ((aflag & sep.APER_HASMASKED) != 0)] |= StarFlag.EDGE
        flags[blended] |= StarFlag.BLENDED
        flags[(px == 0) | (py == 0) | (px == w - 1) | (py == h - 1)] |= StarFlag.TRUNCATED
        flags[(a / b) > self.max_elongation] |= StarFlag.ELONGATED
        keep = snr >= self.min_snr if self.min_snr > 0 else np.ones(len(x), bool)
        columns = {
            "x": x,
            "y": y,
            "flux": flux,
            "flux_err": flux_err,
            "fwhm": fwhm,
            "peak": peak,
            "snr": snr,
            "a": a,
            "b": b,
            "theta": theta,
            "npix": area,
            "flags": flags,
        }
        t = Table()
        for name, dtype, unit in STAR_COLUMNS:
            t[name] = np.asarray(columns[name], dtype=dtype)[keep]
            if unit:
                t[name].unit = unit
        for name, values in (extra or {}).items():
            t[name] = np.asarray(values)[keep]
        return t[np.argsort(-t["flux"])]


def _aperture_sum(
    sub: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: np.ndarray,
    rms: np.ndarray,
    bad: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aperture flux, error and sep flags with the :data:`ANNULUS` background.

    Sources whose annulus holds no usable pixel (wholly masked or off the
    image, e.g. a star in a small gap of the sky mask) are measured without
    the local annulus, on the mesh-background-subtracted image.
    """
    r_in, r_out = ANNULUS
    h, w = sub.shape
    half = int(math.ceil(r_out))
    off = np.arange(-half, half + 1)
    r = np.hypot(off[None, :, None], off[None, None, :])
    xi, yi = np.rint(x).astype(int), np.rint(y).astype(int)
    yy, xx = yi[:, None, None] + off[None, :, None], xi[:, None, None] + off[None, None, :]
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    good = inside & ~bad[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
    # a margin of one pixel on each side of the ring: sep samples sub-pixels
    ring = good & (r >= r_in + 1) & (r <= r_out - 1)
    has = ring.any(axis=(1, 2))
    flux = np.zeros(len(x))
    err = np.zeros(len(x))
    flag = np.zeros(len(x), dtype=np.int64)
    for sel, ann in ((has, ANNULUS), (~has, None)):
        if sel.any():
            f, e, g = sep.sum_circle(
                sub, x[sel], y[sel], radius[sel], err=rms, mask=bad, bkgann=ann, subpix=5
            )
            flux[sel], err[sel], flag[sel] = f, e, g
    return flux, err, flag


def _masked_median(values: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Median of each row's ``values`` where ``use``, shape (N,); 0 for a row with none.

    Equal to ``np.nanmedian`` of the masked rows, without its per-row Python loop.
    """
    n = use.sum(axis=1)
    srt = np.sort(np.where(use, values, np.inf), axis=1)
    rows = np.arange(len(values))
    lo = srt[rows, np.maximum((n - 1) // 2, 0)]
    hi = srt[rows, np.maximum(n // 2, 0)]
    return np.where(n > 0, 0.5 * (lo + hi), 0.0)


def _local_fwhm(
    sub: np.ndarray, bad: np.ndarray, px: np.ndarray, py: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """FWHM (pixels, from the area above half maximum) and peak above the local background.

    The local background of a seed is the median of the :data:`ANNULUS`
    around it (masked pixels and pixels off the image excluded); the peak is
    the highest pixel within 1.5 px of the seed above it, and the FWHM is the
    diameter of the circle with the area of the pixels within the annulus'
    inner radius above half that peak.
    """
    r_in, r_out = ANNULUS
    half = int(math.ceil(r_out))
    h, w = sub.shape
    off = np.arange(-half, half + 1)
    yy = py[:, None, None] + off[None, :, None]
    xx = px[:, None, None] + off[None, None, :]
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    yy, xx = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
    ok = inside & ~bad[yy, xx]
    st = sub[yy, xx]
    r = np.hypot(off[None, :, None], off[None, None, :])
    ring = ok & (r >= r_in) & (r <= r_out)
    level = _masked_median(st.reshape(len(px), -1), ring.reshape(len(px), -1))
    st = st - level[:, None, None]
    peak = np.where(ok & (r <= 1.5), st, -np.inf).max(axis=(1, 2))
    peak = np.where(np.isfinite(peak), peak, 0.0)
    n_half = (ok & (r < r_in) & (st >= 0.5 * peak[:, None, None])).sum(axis=(1, 2))
    fwhm = np.clip(2.0 * np.sqrt(np.maximum(n_half, 1) / np.pi), 0.5, None)
    return fwhm, peak


#: Largest separation (pixels) at which two seeds can be parts of one source.
MERGE_RADIUS = 16.0
#: A seed is a separate source when the smoothed image dips between it and any
#: brighter seed by at least this fraction of its own peak (and by 1 sigma).
MERGE_CONTRAST = 0.15


def _same_source(smooth: np.ndarray, px: np.ndarray, py: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """Seeds that are part of a brighter seed's source, shape (N,), bool.

    A seed is dropped when a brighter seed lies within :data:`MERGE_RADIUS`
    pixels and the smoothed image along the straight line between them never
    drops below the fainter seed's value by more than ``MERGE_CONTRAST`` of it
    (nor by more than the pixel noise): the fainter "peak" is a fragment of the
    brighter source's wings, halo or saturated plateau, not a star of its own
    (the contrast criterion of SExtractor's deblending, Bertin & Arnouts 1996, §6.3).
    """

    n = len(px)
    drop = np.zeros(n, bool)
    if n < 2:
        return drop
    pairs = cKDTree(np.column_stack([px, py])).query_pairs(MERGE_RADIUS, output_type="ndarray")
    if len(pairs) == 0:
        return drop
    v = smooth[py, px]
    i, j = pairs[:, 0], pairs[:, 1]
    faint = np.where(v[i] <= v[j], i, j)
    bright = np.where(v[i] <= v[j], j, i)
    t = np.linspace(0.0, 1.0, 2 * int(MERGE_RADIUS) + 1)
    lx = np.rint(px[faint, None] + t * (px[bright, None] - px[faint, None])).astype(int)
    ly = np.rint(py[faint, None] + t * (py[bright, None] - py[faint, None])).astype(int)
    dip = smooth[ly, lx].min(axis=1)
    vf = v[faint]
    tol = np.maximum(MERGE_CONTRAST * np.abs(vf), rms[py[faint], px[faint]])
    drop[faint[vf - dip < tol]] = True
    return drop


def make_unet_finder(
    *,
    threshold_sigma: float | None = None,
    score_threshold: float = 0.5,
    **kwargs: Any,
) -> UNetStarFinder:
    """The factory registered as ``STAR_FINDERS["unet"]`` (imports nothing heavy).

    Parameters
    ----------
    threshold_sigma : float, optional
        As for every registered finder, a detection threshold in background
        sigma (the classical finder's per-pixel cut): applied as a minimum
        aperture SNR ``min_snr = SNR_PER_SIGMA * threshold_sigma``. Default none.
    score_threshold : float, optional
        The network's probability cut (:attr:`UNetStarFinder.score_threshold`). Default 0.5.
    **kwargs
        Other :class:`UNetStarFinder` parameters (``weights``, ``backend``,
        ``saturation``, ...).

    Returns
    -------
    UNetStarFinder
    """
    return UNetStarFinder(
        score_threshold=score_threshold, **sigma_threshold_kwargs(threshold_sigma, kwargs)
    )


def sigma_threshold_kwargs(threshold: float | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The registry's sigma ``threshold`` as the learned finders' ``min_snr`` keyword.

    Returns ``kwargs`` with ``min_snr = SNR_PER_SIGMA * threshold`` set unless
    given (unchanged when ``threshold`` is None).

    Raises
    ------
    InputError
        If ``threshold`` is negative or not finite.
    """
    if threshold is not None:
        if not (math.isfinite(threshold) and threshold >= 0):
            msg = f"threshold_sigma must be >= 0, got {threshold}"
            raise InputError(msg)
        kwargs.setdefault("min_snr", SNR_PER_SIGMA * float(threshold))
    return kwargs
