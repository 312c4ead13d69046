"""Hybrid star finder: matched-filter candidates scored by a small learned model.

The U-Net of :mod:`skysift.stars.learned` rejects sky structure (trees,
captions, gradients, clouds) far better than a threshold on a background
map, but at equal precision it finds fewer faint stars than a matched
filter would on a perfectly known background. This finder joins the two:

1. the U-Net probability map and its confident detections (probability
   >= 0.5), whose brightest clean stars give the PSF FWHM by a 2-D Gaussian
   fit (:func:`psf_fwhm_from_stars`);
2. PSF-matched filters (Gaussian of that FWHM) on the image minus three
   backgrounds: sep meshes of 8 and 32 px, and a morphological opening of
   the smoothed image (:func:`~skysift.detection.background.opening_background`),
   which follows sky structure down to a few FWHM; the noise is the rms of
   the image minus the opening, and the opening's SNR map is also
   normalised by its own local rms (:func:`matched_filter_maps`);
3. candidates = local maxima above a low cut (3.4 sigma) of the 8-px-mesh
   map and of the opening's locally normalised map, plus local maxima of
   the U-Net probability that the matched filters merged into a neighbour;
   never on caption text;
4. each candidate is scored by a small MLP (:class:`skysift.learning.models.CandidateMLP`,
   weights ``stars_rerank``) on :data:`FEATURE_NAMES`: matched-filter SNRs
   on the three backgrounds and at three kernel widths, the U-Net
   probability, local noise, background gradient, distance to the sky mask,
   crowding and the 5x5 SNR cut-out; candidates scoring >= ``score_threshold``
   (default :data:`SCORE_THRESHOLD`) are measured as the U-Net finder
   measures its seeds (windowed centroid, aperture flux, flags).

The matched filter is the optimal linear detector of a known PSF in white
noise (North 1943; for astronomical sources e.g. Irwin 1985, MNRAS 214, 575,
§2; Bertin & Arnouts 1996, A&AS 117, 393, §4.1 "filtering"); the learned
scorer is in the spirit of the candidate-vetting ("real/bogus") classifiers
of transient surveys (Bloom et al. 2012, PASP 124, 1175, §3); the opening
background is the grey-scale "rolling ball" of Sternberg (1983, Computer
16(1), 22) and the white top-hat of Soille (2003, §4.4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import sep
from astropy.table import Table
from scipy.spatial import cKDTree

from skysift._validation import check_image
from skysift.detection.background import BackgroundMap, opening_background_rms
from skysift.errors import InputError
from skysift.measurement.photometry import gaussian_photometry
from skysift.stars.learned import UNetStarFinder, sigma_threshold_kwargs

__all__ = [
    "CANDIDATE_SNR",
    "SCORE_THRESHOLD",
    "FEATURE_NAMES",
    "HybridStarFinder",
    "MatchedFilterMaps",
    "candidate_features",
    "make_hybrid_finder",
    "matched_filter_maps",
    "psf_fwhm_from_stars",
]

#: Lowest matched-filter SNR of a candidate (sigma).
CANDIDATE_SNR = 3.4
#: Default cut on the candidate score: the lowest cut (in steps of 0.1) at which
#: the shipped scorer's precision on validation composites (training
#: backgrounds, new seeds; never the held-out ones) is >= 0.95, as printed in
#: its model card by ``skysift train stars-rerank``.
SCORE_THRESHOLD = 0.6
#: Lowest U-Net probability of an extra candidate (a probability peak with no
#: matched-filter peak within 2 px).
CANDIDATE_PROBABILITY = 0.02
#: Half side of the SNR cut-out fed to the scorer (5x5 pixels).
CUTOUT_HALF = 2
#: Names of the scorer's inputs, in order.
FEATURE_NAMES: tuple[str, ...] = (
    "snr",
    "snr_wide_background",
    "snr_wide_kernel_ratio",
    "snr_narrow_kernel_ratio",
    "logit_probability",
    "logit_probability_max5",
    "pixel_snr",
    "log_noise_ratio",
    "log1p_background_gradient",
    "log1p_mask_distance",
    "log1p_crowding",
    "from_probability",
    "snr_opening",
    "snr_opening_local_noise",
    "snr_opening_wide_kernel_ratio",
    "pixel_snr_opening",
    "from_opening",
) + tuple(
    f"cutout_{i}_{j}"
    for i in range(-CUTOUT_HALF, CUTOUT_HALF + 1)
    for j in range(-CUTOUT_HALF, CUTOUT_HALF + 1)
)
#: Pixel-integration correction of a Gaussian fitted to pixel values: a pixel
#: box (variance 1/12 px^2 per axis) widens the fitted FWHM in quadrature.
_PIXEL_FWHM2 = 2.3548**2 / 12.0


def psf_fwhm_from_stars(
    image: np.ndarray,
    stars: Table,
    mask: np.ndarray | None = None,
    *,
    min_snr: float = 15.0,
    max_stars: int = 30,
    default: float = 2.5,
) -> float:
    """The frame's PSF FWHM (pixels) from 2-D Gaussian fits to its bright clean stars.

    Stars without flags and with ``snr >= min_snr`` (at most ``max_stars``,
    brightest first) are fitted with
    :func:`skysift.measurement.photometry.gaussian_photometry`; the median
    fitted FWHM is corrected for the pixel size (``sqrt(FWHM^2 - 2.3548^2/12)``:
    a pixel integrates over a box of variance 1/12 px^2).

    Parameters
    ----------
    image : ndarray, shape (H, W)
    stars : astropy.table.Table
        A star finder's table (``x``, ``y``, ``snr``, ``flags``, ``fwhm``).
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = excluded pixel.
    min_snr : float, optional
        Default 15.
    max_stars : int, optional
        Default 30.
    default : float, optional
        Returned when no star qualifies and the table has no ``fwhm``. Default 2.5 px.

    Returns
    -------
    float
        FWHM in pixels, clipped to [1, 10]; with fewer than five good fits
        the median of the table's own ``fwhm`` column is used.
    """

    if len(stars) == 0:
        return float(default)
    snr = np.asarray(stars["snr"], float)
    clean = (np.asarray(stars["flags"]) == 0) & (snr >= min_snr)
    sel = np.nonzero(clean)[0]
    sel = sel[np.argsort(-snr[sel])][: int(max_stars)]
    fwhm = np.zeros(0)
    if len(sel) >= 5:
        fit = gaussian_photometry(
            image,
            np.asarray(stars["x"], float)[sel],
            np.asarray(stars["y"], float)[sel],
            box=11,
            sigma_guess=1.2,
            mask=mask,
        )
        fwhm = np.asarray(fit["fwhm"], float)
        fwhm = fwhm[(np.asarray(fit["flags"]) == 0) & np.isfinite(fwhm)]
    if len(fwhm) >= 5:
        f = float(np.median(fwhm))
        f = math.sqrt(max(f * f - _PIXEL_FWHM2, 1.0))
    else:
        f = float(np.median(np.asarray(stars["fwhm"], float)))
    return float(np.clip(f, 1.0, 10.0))


def _gaussian_kernel(fwhm: float) -> np.ndarray:
    s = fwhm / 2.3548
    r = max(1, int(math.ceil(3 * s)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    k = np.exp(-(xx**2 + yy**2) / (2 * s * s))
    return (k / k.sum()).astype(np.float32)


def _filtered_snr(resid: np.ndarray, noise: np.ndarray, fwhm: float) -> np.ndarray:
    """Matched-filter SNR of a point source with a Gaussian PSF: (r * K) / (sigma ||K||)."""

    k = _gaussian_kernel(fwhm)
    num = cv2.filter2D(resid, cv2.CV_32F, k, borderType=cv2.BORDER_REPLICATE)
    return num / (noise * np.float32(np.sqrt((k.astype(np.float64) ** 2).sum())))


def _local_noise_snr(snr: np.ndarray, noise: np.ndarray, sky: np.ndarray, box: int) -> np.ndarray:
    """An SNR map re-normalised by the filtered map's own noise (sigma-clipped rms, ``box``-px mesh).

    The rms is measured on every other pixel of the map (a PSF-filtered map
    is correlated over a few pixels, so little is lost) and interpolated back.
    """

    num = np.where(sky, snr * noise, 0).astype(np.float32)
    h, w = num.shape
    half = np.ascontiguousarray(num[::2, ::2])
    half_bad = np.ascontiguousarray(~sky[::2, ::2])
    b = max(2, box // 2)
    rms = sep.Background(half, mask=half_bad, bw=b, bh=b, fw=3, fh=3).rms()
    rms = cv2.resize(rms, (w, h), interpolation=cv2.INTER_LINEAR)
    floor = max(float(np.median(rms[sky][:: max(1, int(sky.sum()) // 100_000)])), 1e-6)
    return (num / np.maximum(rms, np.float32(0.1 * floor))).astype(np.float32)


@dataclass
class MatchedFilterMaps:
    """Matched-filter maps of one image (all shape (H, W), float32).

    Attributes
    ----------
    snr : ndarray
        SNR of a point source at each pixel, local background on a ``box``-px mesh.
    snr_wide_background : ndarray
        The same on a 32-px mesh background.
    snr_opening : ndarray
        The same on the opening background (:func:`~skysift.detection.background.opening_background`).
    snr_opening_local_noise : ndarray
        ``snr_opening`` with the noise measured on the filtered map itself
        (16-px mesh) instead of propagated from the pixel noise: residual sky
        structure counts as noise.
    residual : ndarray
        Image minus local background (ADU), 0 off the sky.
    residual_opening : ndarray
        Image minus the opening background (ADU), 0 off the sky.
    noise : ndarray
        Per-pixel noise sigma of ``residual`` (ADU).
    background_wide : ndarray
        The wide (32-px mesh) background (ADU).
    fwhm : float
        PSF FWHM used (px).
    box : int
        Local background mesh (px).
    """

    snr: np.ndarray
    snr_wide_background: np.ndarray
    snr_opening: np.ndarray
    snr_opening_local_noise: np.ndarray
    residual: np.ndarray
    residual_opening: np.ndarray
    noise: np.ndarray
    background_wide: np.ndarray
    fwhm: float
    box: int


def matched_filter_maps(
    image: np.ndarray, sky: np.ndarray, fwhm: float, *, box: int | None = None
) -> MatchedFilterMaps:
    """PSF-matched-filter SNR maps on a local background.

    The local background is sep's sigma-clipped mesh background (SExtractor's
    mode estimator, Bertin & Arnouts 1996 §3.1) on a ``box``-px mesh with a
    3x3 median filter of the mesh (default box 8 px: finer than the sky's
    structure, wider than a star); a 32-px mesh gives the wide background.
    A third background follows sky structure down to a few FWHM: the
    morphological opening of the image smoothed by a Gaussian of sigma
    0.4 FWHM, with a disk of radius max(4, 2 FWHM) px
    (:func:`~skysift.detection.background.opening_background`, level
    corrected on a 32-px mesh).
    The residual's noise is the sigma-clipped rms of the image minus the
    opening background on a 32-px mesh (sky structure does not inflate it,
    as it inflates the rms of the image itself). The SNR map is the residual
    convolved with a unit-sum Gaussian of the PSF FWHM, divided by
    ``noise * ||K||_2`` (the matched filter's noise for white noise).

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Finite image (ADU).
    sky : ndarray of bool, shape (H, W)
        ``True`` = usable sky.
    fwhm : float
        PSF FWHM in pixels (> 0).
    box : int, optional
        Local background mesh in pixels. Default 8.

    Returns
    -------
    MatchedFilterMaps

    Raises
    ------
    InputError
        If shapes differ, the FWHM is not positive or no sky pixel remains.
    """

    image = np.asarray(image, np.float32)
    sky = np.asarray(sky, bool)
    if image.ndim != 2 or image.shape != sky.shape:
        msg = f"image and sky mask must be 2-D of one shape, got {image.shape} and {sky.shape}"
        raise InputError(msg)
    if not (math.isfinite(fwhm) and fwhm > 0):
        msg = f"fwhm must be a positive number of pixels, got {fwhm!r}"
        raise InputError(msg)
    if not sky.any():
        msg = "no sky pixel left for the matched filter"
        raise InputError(msg)
    box = 8 if box is None else int(box)
    all_sky = bool(sky.all())  # the common unmasked case skips the masking passes
    not_sky = np.zeros(sky.shape, bool) if all_sky else ~sky

    def on_sky(a: np.ndarray, off: float = 0.0) -> np.ndarray:
        return (
            a.astype(np.float32, copy=False)
            if all_sky
            else np.where(sky, a, off).astype(np.float32)
        )

    step = max(1, int(sky.size if all_sky else sky.sum()) // 100_000)
    fill = np.float32(np.median((image if all_sky else image[sky]).ravel()[::step]))
    img = np.ascontiguousarray(image if all_sky else np.where(sky, image, fill))
    local = sep.Background(img, mask=not_sky, bw=box, bh=box, fw=3, fh=3).back()
    wide = sep.Background(img, mask=not_sky, bw=32, bh=32, fw=3, fh=3).back()
    resid = on_sky(img - local)
    opened, rms = opening_background_rms(
        img,
        not_sky,
        radius=max(4.0, 2.0 * fwhm),
        smooth_sigma=0.4 * fwhm,
        box_size=32,
    )
    noise = on_sky(rms, 1.0)
    floor = float(np.median((noise if all_sky else noise[sky]).ravel()[::step]))
    noise = np.maximum(noise, np.float32(max(0.1 * floor, 1e-6)))
    snr = _filtered_snr(resid, noise, fwhm)
    snr_wide_bkg = _filtered_snr(on_sky(img - wide), noise, fwhm)
    resid_open = on_sky(img - opened)
    snr_open = _filtered_snr(resid_open, noise, fwhm)
    return MatchedFilterMaps(
        snr=snr,
        snr_wide_background=snr_wide_bkg,
        snr_opening=snr_open,
        snr_opening_local_noise=_local_noise_snr(snr_open, noise, sky, 16),
        residual=resid,
        residual_opening=resid_open,
        noise=noise,
        background_wide=wide.astype(np.float32),
        fwhm=float(fwhm),
        box=box,
    )


def _filtered_snr_at(
    resid: np.ndarray, noise: np.ndarray, fwhm: float, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """:func:`_filtered_snr` evaluated only at pixels ``(x, y)`` (edges replicated), shape (N,)."""
    k = _gaussian_kernel(fwhm)
    r = k.shape[0] // 2
    h, w = resid.shape
    off = np.arange(-r, r + 1)
    yy = np.clip(y[:, None, None] + off[None, :, None], 0, h - 1)
    xx = np.clip(x[:, None, None] + off[None, None, :], 0, w - 1)
    num = (resid[yy, xx] * k[None]).sum(axis=(1, 2))
    return num / (noise[y, x] * np.sqrt((k.astype(np.float64) ** 2).sum()))


def _max_filter(a: np.ndarray, size: int) -> np.ndarray:
    """Grey dilation with a ``size`` x ``size`` square (as ``ndimage.maximum_filter``, edges replicated)."""

    return cv2.dilate(
        np.asarray(a, np.float32), np.ones((size, size), np.uint8), borderType=cv2.BORDER_REPLICATE
    )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def candidate_features(
    maps: MatchedFilterMaps,
    probability: np.ndarray,
    sky: np.ndarray,
    *,
    candidate_snr: float = CANDIDATE_SNR,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pixels and their :data:`FEATURE_NAMES` features.

    Parameters
    ----------
    maps : MatchedFilterMaps
    probability : ndarray, shape (H, W)
        U-Net star probability.
    sky : ndarray of bool, shape (H, W)
    candidate_snr : float, optional
        Lowest matched-filter SNR of a candidate. Default :data:`CANDIDATE_SNR`.

    Returns
    -------
    x, y : ndarray of int, shape (N,)
        Candidate pixels (0-based).
    features : ndarray, shape (N, len(FEATURE_NAMES)), float32
    """

    def far(xn: np.ndarray, yn: np.ndarray, xo: np.ndarray, yo: np.ndarray) -> np.ndarray:
        if not (len(xn) and len(xo)):
            return np.ones(len(xn), bool)
        return cKDTree(np.c_[xo, yo]).query(np.c_[xn, yn])[0] > 2.0

    snr = maps.snr
    peak = (snr == _max_filter(snr, 3)) & (snr >= candidate_snr) & sky
    y, x = np.nonzero(peak)
    so = maps.snr_opening_local_noise
    yo, xo = np.nonzero((so == _max_filter(so, 3)) & (so >= candidate_snr) & sky & ~peak)
    keep = far(xo, yo, x, y)
    xo, yo = xo[keep], yo[keep]
    prob = np.asarray(probability, np.float32)
    pmax = _max_filter(prob, 5)
    pm = (prob == pmax) & (prob >= CANDIDATE_PROBABILITY)
    yp, xp = np.nonzero(pm & sky & ~peak)
    keep = far(xp, yp, np.r_[x, xo], np.r_[y, yo])
    xp, yp = xp[keep], yp[keep]
    source = np.r_[np.zeros(len(x) + len(xo)), np.ones(len(xp))]
    from_opening = np.r_[np.zeros(len(x)), np.ones(len(xo)), np.zeros(len(xp))]
    x, y = np.r_[x, xo, xp].astype(int), np.r_[y, yo, yp].astype(int)
    h, w = snr.shape
    off = np.arange(-CUTOUT_HALF, CUTOUT_HALF + 1)
    cy = np.clip(y[:, None, None] + off[None, :, None], 0, h - 1)
    cx = np.clip(x[:, None, None] + off[None, None, :], 0, w - 1)
    cut = (maps.residual / maps.noise)[cy, cx].reshape(len(x), (2 * CUTOUT_HALF + 1) ** 2)
    # background gradient (central differences, 2 px each side) per FWHM, in noise units
    bw = maps.background_wide
    gx = bw[y, np.minimum(x + 2, w - 1)] - bw[y, np.maximum(x - 2, 0)]
    gy = bw[np.minimum(y + 2, h - 1), x] - bw[np.maximum(y - 2, 0), x]
    grad = np.hypot(gx, gy) / 4.0 * maps.fwhm / maps.noise[y, x]
    # exact Euclidean distance to the nearest non-sky pixel or the image border
    dist = cv2.distanceTransform(
        np.pad(sky, 1).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
    )[1:-1, 1:-1]
    # crowding: matched-filter peaks within a 31x31 box (Chebyshev distance <= 15 px)
    n_peak = int(peak.sum())
    crowd = np.zeros(len(x))
    if n_peak:
        tree = cKDTree(np.c_[x[:n_peak], y[:n_peak]])
        crowd = np.asarray(
            [len(v) for v in tree.query_ball_point(np.c_[x, y], 15.0, p=np.inf)], float
        )
    gnoise = float(np.median(maps.noise[sky][:: max(1, int(sky.sum()) // 100_000)]))
    s = snr[y, x]
    with np.errstate(divide="ignore", invalid="ignore"):
        feats = np.c_[
            s,
            maps.snr_wide_background[y, x],
            _filtered_snr_at(maps.residual, maps.noise, 2 * maps.fwhm, x, y) / s,
            _filtered_snr_at(maps.residual, maps.noise, 0.6 * maps.fwhm, x, y) / s,
            _logit(prob[y, x]),
            _logit(pmax[y, x]),
            maps.residual[y, x] / maps.noise[y, x],
            np.log(maps.noise[y, x] / gnoise),
            np.log1p(grad),
            np.log1p(np.minimum(dist[y, x], 100)),
            np.log1p(crowd),
            source,
            maps.snr_opening[y, x],
            so[y, x],
            _filtered_snr_at(maps.residual_opening, maps.noise, 2 * maps.fwhm, x, y)
            / maps.snr_opening[y, x],
            maps.residual_opening[y, x] / maps.noise[y, x],
            from_opening,
            cut,
        ]
    feats = np.clip(np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0), -50, 50)
    return x, y, feats.astype(np.float32)


@dataclass
class HybridStarFinder(UNetStarFinder):
    """Star finder joining the U-Net and a PSF-matched filter (see the module docstring).

    Takes and returns what :class:`~skysift.stars.learned.UNetStarFinder`
    does; its table has one more column, ``score`` (the scorer's probability
    that the detection is a star), and ``meta["psf_fwhm"]``.

    Parameters
    ----------
    score_threshold : float, optional
        Cut on the candidate score, in (0, 1). Default :data:`SCORE_THRESHOLD`.
    rerank_weights : str or path, optional
        The scorer's weights (shipped name or ``.safetensors``). Default
        ``"stars_rerank"``.
    unet_threshold : float, optional
        Probability cut of the U-Net detections used for the PSF FWHM. Default 0.5.
    candidate_snr : float, optional
        Lowest matched-filter SNR of a candidate. Default :data:`CANDIDATE_SNR`.
    fwhm : float, optional
        PSF FWHM in pixels; measured on the frame when not given.
    **kwargs
        The :class:`UNetStarFinder` parameters (``weights``, ``backend``,
        ``tile``, ``min_snr``, ``reject_captions``, ...).

    Raises
    ------
    InputError
        If a parameter is out of range, or a weights file is missing or corrupted.
    """

    threshold: float = SCORE_THRESHOLD
    rerank_weights: str | Path = "stars_rerank"
    unet_threshold: float = 0.5
    candidate_snr: float = CANDIDATE_SNR
    fwhm: float | None = None
    #: An in-memory scorer used instead of ``rerank_weights`` (training and evaluation).
    _scorer_net: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.unet_threshold < 1:
            msg = f"unet_threshold must be a probability in (0, 1), got {self.unet_threshold}"
            raise InputError(msg)
        if not (math.isfinite(self.candidate_snr) and self.candidate_snr > 0):
            msg = f"candidate_snr must be a positive number of sigma, got {self.candidate_snr}"
            raise InputError(msg)
        if self.fwhm is not None and not (math.isfinite(self.fwhm) and self.fwhm > 0):
            msg = f"fwhm must be a positive number of pixels, got {self.fwhm}"
            raise InputError(msg)

    @property
    def scorer(self) -> Any:
        """The candidate scorer (loaded and cached on first use)."""
        if self._scorer_net is not None:
            return self._scorer_net
        return _scorer(str(self.rerank_weights))

    def _confident(
        self,
        data: np.ndarray,
        sub: np.ndarray,
        bad: np.ndarray,
        bkg: BackgroundMap,
        prob: np.ndarray,
        saturation: float | None,
    ) -> Table:
        """The U-Net detections at :attr:`unet_threshold` (for the PSF FWHM)."""
        # the PSF needs only the brightest: image peaks (5x5) inside confident U-Net
        # regions, at most 300, brightest first
        peak = (prob >= self.unet_threshold) & (sub == _max_filter(sub, 5)) & ~bad
        py, px = np.nonzero(peak)
        top = np.argsort(-sub[py, px])[:300]
        px, py = px[top], py[top]
        n = len(px)
        return self._measure_seeds(
            data, sub, bad, bkg, saturation, px, py, np.zeros(n, bool), np.ones(n, np.int64)
        )

    def _candidates(
        self,
        data: np.ndarray,
        sub: np.ndarray,
        bad: np.ndarray,
        bkg: BackgroundMap,
        prob: np.ndarray,
        saturation: float | None,
        caption: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, MatchedFilterMaps]:
        fwhm = self.fwhm
        if fwhm is None:
            confident = self._confident(data, sub, bad, bkg, prob, saturation)
            fwhm = psf_fwhm_from_stars(data, confident, bad)
        # caption text is not sky: no candidate there, and no part in the backgrounds
        sky = ~bad if caption is None else ~(bad | caption)
        if not sky.any():
            sky = ~bad
        maps = matched_filter_maps(data, sky, float(fwhm))
        x, y, feats = candidate_features(maps, prob, sky, candidate_snr=self.candidate_snr)
        return x, y, feats, maps

    def candidates(
        self, image: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, MatchedFilterMaps]:
        """All candidates before scoring, as the finder sees them (training and diagnostics).

        Parameters
        ----------
        image : ndarray, shape (H, W)
        mask : ndarray of bool, shape (H, W), optional
            ``True`` = not sky.

        Returns
        -------
        x, y : ndarray of int, shape (N,)
            Candidate pixels.
        features : ndarray, shape (N, len(FEATURE_NAMES)), float32
        maps : MatchedFilterMaps
        """
        data, bad = check_image(image, mask, what="star detection")
        if bad.all():
            msg = "every pixel is masked: no candidate"
            raise InputError(msg)
        data, bad, bkg, prob, sub, saturation, caption = self._prepare(data, bad, None, None)
        return self._candidates(data, sub, bad, bkg, prob, saturation, caption)

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
        scorer = self.scorer  # loaded first: a bad weights file fails on every image
        x, y, feats, maps = self._candidates(data, sub, bad, bkg, prob, saturation, caption)
        score = (
            scorer.predict(feats)[:, 0].numpy().astype(np.float32)
            if len(x)
            else np.zeros(0, np.float32)
        )
        keep = score >= self.score_threshold
        x, y, score = x[keep], y[keep], score[keep]
        above = maps.snr >= self.candidate_snr
        area = np.asarray(
            [
                above[max(j - 2, 0) : j + 3, max(i - 2, 0) : i + 3].sum()
                for i, j in zip(x, y, strict=True)
            ],
            dtype=np.int64,
        )
        t = self._measure_seeds(
            data,
            sub,
            bad,
            bkg,
            saturation,
            x,
            y,
            np.zeros(len(x), bool),
            area,
            extra={"score": score, "mf_snr": maps.snr[y, x]},
            psf_fwhm=maps.fwhm,
        )
        t.meta["psf_fwhm"] = maps.fwhm
        return t


_SCORERS: dict[str, Any] = {}


def _scorer(weights: str) -> Any:
    if weights not in _SCORERS:
        # needs torch (the learn extra): imported on use
        from skysift.learning.weights import load_weights

        model = load_weights(weights)
        if getattr(model, "name", "") != "candidate_mlp":
            msg = f"{weights}: not candidate-scorer weights (model {getattr(model, 'name', '?')!r})"
            raise InputError(msg)
        if model.config["n_features"] != len(FEATURE_NAMES):
            msg = (
                f"{weights}: the scorer takes {model.config['n_features']} features, "
                f"this version computes {len(FEATURE_NAMES)}"
            )
            raise InputError(msg)
        _SCORERS[weights] = model.eval()
    return _SCORERS[weights]


def make_hybrid_finder(
    *,
    threshold_sigma: float | None = None,
    score_threshold: float = SCORE_THRESHOLD,
    **kwargs: Any,
) -> HybridStarFinder:
    """The factory registered as ``STAR_FINDERS["hybrid"]``.

    Parameters
    ----------
    threshold_sigma : float, optional
        A detection threshold in background sigma, as for every registered
        finder: applied as a minimum aperture SNR (``SNR_PER_SIGMA * threshold_sigma``,
        as the U-Net finder does). Default none.
    score_threshold : float, optional
        The candidate-score cut (:attr:`HybridStarFinder.score_threshold`). Default
        :data:`SCORE_THRESHOLD`.
    **kwargs
        Other :class:`HybridStarFinder` parameters.

    Returns
    -------
    HybridStarFinder
    """
    return HybridStarFinder(
        score_threshold=score_threshold, **sigma_threshold_kwargs(threshold_sigma, kwargs)
    )
