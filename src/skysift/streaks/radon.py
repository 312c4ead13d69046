"""Streak detection by the Radon matched filter (Nir, Ofek & Gal-Yam 2018).

A straight streak in white noise is found optimally by summing the
PSF-filtered image along every line and dividing each sum by its noise
(Nir et al. 2018, §2 and eq. 6): a line's significance is
``S = Σ_line f / (σ_f sqrt(n c))`` with ``f`` the image filtered with its
PSF, ``n`` the number of samples on the line and ``c`` the sum of the
filtered noise's autocorrelation along the line. Real skies are not white
(interpolated or compressed frames, unresolved stars, trees and clouds):
here ``σ_f`` is a *map* (:func:`~skysift.streaks.frt.local_sigma`, the
robust spread of the filtered image in boxes of ``noise_box`` px) and
``sqrt(n c)`` is replaced by ``sd(n)``, the spread of sums of ``n``
consecutive samples measured on the image itself
(:func:`~skysift.streaks.frt.line_noise`), so that the significance keeps
its false-alarm meaning on correlated noise. :class:`RadonStreakFinder`
does this in two stages:

1. **Triage** on an image binned to at most ``triage_size`` pixels a side:
   background and noise map (``sep``) and a local high-pass (structure wider
   than ``max(10, 4 FWHM)`` px removed: Milky Way, gradients), stars and
   cosmic rays removed (compact sources above ``star_sigma`` are blanked over
   their footprint, the rest clipped at ``clip_sigma``; a streak is one
   elongated component and is kept), a small PSF matched filter, then the
   Fast Radon Transform (:mod:`skysift.streaks.frt`) in four orientations
   with every partial level of at least ``2**min_level`` binned columns
   (short streaks, §3.3), normalised to significance with the transform of
   the valid-pixel map and then by the robust spread of each level's lines
   (real skies are not white noise).
2. **Measurement** at full resolution, only for the triage peaks above
   ``threshold - triage_margin``: the full image is prepared the same way
   (no clipping); the line's angle and offset are refined on a
   coarse-to-fine grid of exact line sums (bilinear sampling every pixel,
   each line winsorised about its own median so that a star on it counts
   little), the endpoints are the segment of the line with the largest
   significance (the flux profile along the line, Nir et al. §6), then
   width and flux are measured across and along it; bright lines
   (``S >= 15``) are recentred by a straight-line fit to the centroids of
   their cross profiles along the line. A line is dropped when it is
   shorter than ``min_length_fwhm`` (10) PSF FWHM (a star pair, a star
   trailed in a long exposure), its light is not spread along it (median
   significance, quarters, peaks far above the median: stars and star
   chains), it is an edge or a band (as bright beside the line, at 1.5-2
   FWHM, as on it: trees, clouds, the rim of a fisheye), less than
   ``RIDGE_MIN`` (0.6; 0.35 from 15 sigma) of its filtered light lies in a
   ridge as narrow as the PSF (:func:`~skysift.streaks.frt.ridge_fraction`:
   0.75 for a streak, near 0 for a glow or a lane of the Milky Way), it runs
   along the edge of the mask (:func:`~skysift.streaks.frt.hugs_boundary`:
   within ``max(15, 5 FWHM)`` px over half its length, or tangent to it
   within 8 % of the frame size: vignetting and glow inside a lens circle or
   a horizon), it hugs
   a frame edge all along, or it is wider than the PSF allows (blends,
   galaxies); its significance is divided by the spread of the same
   segment shifted sideways (local calibration; only ever lowers it).

The threshold for a false-alarm rate ``false_alarm_rate`` per image is the
Gaussian tail ``isf(false_alarm_rate / n_eff)`` with ``n_eff`` the number
of effectively independent lines tested, ``n_eff = EFFECTIVE_TRIALS *
n_lines`` (``n_lines`` the entries of all transform levels; the factor was
measured on white-noise images, see ``docs/streaks_radon.md``).

References
----------
Nir, G., Ofek, E. O. & Gal-Yam, A. 2018, AJ 156, 229, "Optimal and
efficient streak detection in astronomical images": §2 (matched filter for
a line), §3 (FRT), §3.3 (partial transforms for short streaks), §4 (noise
normalisation, threshold) and §5 (star removal before the transform).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from astropy.table import Table
from scipy.special import ndtri

from skysift.detection.background import estimate_background
from skysift.errors import InputError
from skysift.streaks.frt import (
    KAPPA,
    LineNoise,
    bin_image,
    clean_image,
    frt_levels,
    hugs_boundary,
    line_noise,
    local_sigma,
    matched_filter,
    max_segment,
    ridge_fraction,
    sample_line,
    winsorise,
)
from skysift.streaks.linking import (
    cross_width,
    edge_or_band,
    fit_line_offsets,
    local_significance,
    paint_lines,
    same_line,
    segment_overlap,
)

__all__ = ["RadonStreakFinder", "RadonResult", "EFFECTIVE_TRIALS", "LINE_COLUMNS", "paint_lines"]

#: Effective fraction of independent lines among all transform entries (white-noise calibration).
EFFECTIVE_TRIALS = 0.06

#: Least fraction of a line's filtered light in a PSF-wide ridge (:func:`~skysift.streaks.frt.ridge_fraction`).
RIDGE_MIN = 0.6
#: The same for lines of 15 sigma and more.
RIDGE_MIN_BRIGHT = 0.35

#: Columns of the line table, in order.
LINE_COLUMNS = (
    "id",
    "x1",
    "y1",
    "x2",
    "y2",
    "length",
    "angle",
    "width",
    "significance",
    "flux",
    "border",
)

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass
class RadonResult:
    """Streaks found in one image.

    Attributes
    ----------
    lines : astropy.table.Table
        One row per streak (:data:`LINE_COLUMNS`): endpoints ``x1, y1, x2,
        y2`` (0-based pixels, x = column), ``length`` (px), ``angle``
        (degrees counter-clockwise from +x towards +y, in [0, 180)),
        ``width`` (FWHM across the streak, px), ``significance`` (sigma of
        the matched-filter line sum), ``flux`` (background-subtracted sum
        inside a capsule of diameter ``3 width``, image units) and
        ``border`` (True when an end is within ``width`` of the frame edge).
    mask : ndarray of bool, shape (H, W)
        ``True`` = streak pixel (a capsule of diameter ``psf_fwhm``, or
        ``width`` when that is above ``1.5 psf_fwhm``, painted along each
        line).
    statistic : float
        Image-level detection statistic: the largest line significance
        (sigma); the triage value when no line reached measurement.
    threshold : float
        Significance threshold applied to ``lines`` (sigma).
    significance_map : ndarray of float32, shape (H, W), or None
        Per-pixel score (the significance of the most significant line whose
        capsule, as in ``mask``, covers the pixel; 0 elsewhere), when asked for.
    meta : dict
        Settings and timings.
    """

    lines: Table
    mask: np.ndarray
    statistic: float
    threshold: float
    significance_map: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _empty_table() -> Table:
    t = Table(
        names=LINE_COLUMNS,
        dtype=(int, float, float, float, float, float, float, float, float, float, bool),
    )
    for c in ("x1", "y1", "x2", "y2", "length", "width"):
        t[c].unit = "pix"
    t["angle"].unit = "deg"
    return t


@dataclass
class _Candidate:
    sig: float
    x1: float
    y1: float
    x2: float
    y2: float
    scale: float = 1.0
    offset: float = 0.0


class RadonStreakFinder:
    """Find straight streaks with the Radon matched filter of Nir, Ofek & Gal-Yam (2018).

    Configure, then call: ``RadonStreakFinder(psf_fwhm=2.5)(image) -> RadonResult``.

    Parameters
    ----------
    psf_fwhm : float, optional
        PSF FWHM in pixels (Gaussian matched filter). Default 2.5.
    false_alarm_rate : float, optional
        Expected number of false lines per image in white noise, in (0, 1);
        sets ``threshold_sigma`` when that is None. Default 1e-3.
    threshold_sigma : float, optional
        Line significance threshold in sigma. Default: from
        ``false_alarm_rate`` and the image size (:meth:`threshold_for`).
    triage_size : int, optional
        The triage image is binned by ``b = ceil(max(H, W) / triage_size)``.
        Default 256.
    triage_margin : float, optional
        Triage peaks above ``threshold - triage_margin`` are measured at full
        resolution (binning loses some significance). Default 1.5 sigma.
    min_length : float, optional
        Shortest streak reported, pixels (never below ``min_length_fwhm *
        psf_fwhm``). Default 15.
    min_length_fwhm : float, optional
        Shortest streak reported, in PSF FWHM: a shorter segment is a compact
        source (a star pair, a galaxy) or a star trailed in a long exposure
        (all-sky cameras: 6-8 FWHM trails gave 6-13 sigma lines on the MAGIC
        frames and crops). Default 10.
    star_sigma : float, optional
        Peak (sigma, filtered image) above which a compact source is blanked
        before the transform. Default 6.
    clip_sigma : float, optional
        Filtered pixels are clipped to ``± clip_sigma`` before the
        transform (triage only; at full resolution each
        line is clipped to its own median ± ``KAPPA``). Default 4.
    max_streaks : int, optional
        Most streaks measured per image. Default 8.
    background_box : int, optional
        Mesh size (pixels) of the background and noise map. Default 64.
    noise_box : int, optional
        Box size (pixels) of the noise map of the PSF-filtered image
        (:func:`~skysift.streaks.frt.local_sigma`): textured sky (trees,
        clouds, nebulosity) is scaled by its own fluctuations. Default 32.
    significance_map : bool, optional
        Also return the per-pixel score map. Default False.

    Raises
    ------
    InputError
        For a non-positive ``psf_fwhm``, ``false_alarm_rate`` outside (0, 1)
        or other out-of-range settings.

    References
    ----------
    Nir, Ofek & Gal-Yam 2018, AJ 156, 229, §2-5.
    """

    def __init__(
        self,
        psf_fwhm: float = 2.5,
        false_alarm_rate: float = 1e-3,
        *,
        threshold_sigma: float | None = None,
        triage_size: int = 256,
        triage_margin: float = 1.5,
        min_length: float = 15.0,
        min_length_fwhm: float = 10.0,
        star_sigma: float = 6.0,
        clip_sigma: float = 4.0,
        max_streaks: int = 8,
        background_box: int = 64,
        noise_box: int = 32,
        significance_map: bool = False,
    ) -> None:
        if not (np.isfinite(psf_fwhm) and psf_fwhm > 0):
            msg = f"psf_fwhm must be > 0 pixels, got {psf_fwhm}"
            raise InputError(msg)
        if not 0 < false_alarm_rate < 1:
            msg = f"false_alarm_rate must be in (0, 1) (false lines per image), got {false_alarm_rate}"
            raise InputError(msg)
        if threshold_sigma is not None and not np.isfinite(threshold_sigma):
            msg = f"threshold_sigma must be finite, got {threshold_sigma}"
            raise InputError(msg)
        if noise_box < 8:
            msg = f"noise_box must be >= 8 pixels, got {noise_box}"
            raise InputError(msg)
        if triage_size < 32:
            msg = f"triage_size must be >= 32 pixels, got {triage_size}"
            raise InputError(msg)
        if not (np.isfinite(min_length_fwhm) and min_length_fwhm >= 2):
            msg = f"min_length_fwhm must be >= 2 (PSF FWHM), got {min_length_fwhm}"
            raise InputError(msg)
        if min_length < 2 or max_streaks < 1 or star_sigma <= 0 or clip_sigma <= 0:
            msg = (
                "min_length must be >= 2 px, max_streaks >= 1, star_sigma and clip_sigma > 0; got "
                f"{min_length}, {max_streaks}, {star_sigma}, {clip_sigma}"
            )
            raise InputError(msg)
        self.psf_fwhm = float(psf_fwhm)
        self.false_alarm_rate = float(false_alarm_rate)
        self.threshold_sigma = None if threshold_sigma is None else float(threshold_sigma)
        self.triage_size = int(triage_size)
        self.triage_margin = float(triage_margin)
        self.min_length = float(min_length)
        self.min_length_fwhm = float(min_length_fwhm)
        self.star_sigma = float(star_sigma)
        self.clip_sigma = float(clip_sigma)
        self.max_streaks = int(max_streaks)
        self.background_box = int(background_box)
        self.noise_box = int(noise_box)
        self.significance_map = bool(significance_map)
        self._hp_scale = max(10.0, 4.0 * self.psf_fwhm)
        self._norm_cache: dict[tuple[int, int, int], list[tuple[int, np.ndarray]]] = {}

    # ------------------------------------------------------------------ settings

    def config(self) -> dict[str, Any]:
        """The settings, as a plain dict (saved in every result's ``meta``)."""
        keys = ("psf_fwhm", "false_alarm_rate", "threshold_sigma", "triage_size", "triage_margin",
                "min_length", "min_length_fwhm", "star_sigma", "clip_sigma", "max_streaks",
                "background_box", "noise_box")  # fmt: skip
        return {k: getattr(self, k) for k in keys}

    def bin_factor(self, shape: tuple[int, int]) -> int:
        """Triage binning factor for an image of ``shape`` (H, W)."""
        return max(1, int(math.ceil(max(shape) / self.triage_size)))

    def _min_level(self, b: int) -> int:
        return max(2, int(math.ceil(math.log2(max(self.min_length / b, 4.0)))))

    def n_lines(self, shape: tuple[int, int]) -> int:
        """Number of transform entries tested in triage for an image of ``shape`` (H, W)."""
        b = self.bin_factor(shape)
        hb, wb = shape[0] // b, shape[1] // b
        k0 = self._min_level(b)
        total = 0
        for ny, nx in ((hb, wb), (wb, hb)):
            nxp = 1 << int(math.ceil(math.log2(max(nx, 1))))
            levels = int(math.log2(nxp)) - k0 + 1
            total += 2 * max(levels, 1) * nxp * (ny + nxp)
        return total

    def threshold_for(self, shape: tuple[int, int]) -> float:
        """Significance threshold (sigma) for an image of ``shape``: ``threshold_sigma`` or from the FAR.

        ``isf(false_alarm_rate / (EFFECTIVE_TRIALS * n_lines))`` of a unit Gaussian.
        """
        if self.threshold_sigma is not None:
            return self.threshold_sigma
        n_eff = max(EFFECTIVE_TRIALS * self.n_lines(shape), 1.0)
        return float(-ndtri(self.false_alarm_rate / n_eff))

    # ------------------------------------------------------------------ input

    def _check(self, image: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        data = np.asarray(image)
        if data.ndim != 2:
            msg = f"RadonStreakFinder needs a 2-D image (H, W), got shape {data.shape}"
            raise InputError(msg)
        if min(data.shape) < 16:
            msg = f"RadonStreakFinder needs an image of at least 16x16 pixels, got {data.shape}"
            raise InputError(msg)
        if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
            msg = f"RadonStreakFinder needs a real-valued image, got dtype {data.dtype}"
            raise InputError(msg)
        data = np.ascontiguousarray(data, dtype=np.float32)
        bad = ~np.isfinite(data)
        if mask is not None:
            m = np.asarray(mask, dtype=bool)
            if m.shape != data.shape:
                msg = f"mask shape {m.shape} differs from image shape {data.shape}"
                raise InputError(msg)
            bad |= m
        if bad.all():
            msg = "RadonStreakFinder: every pixel is masked or not finite"
            raise InputError(msg)
        if bad.any():
            # grow the mask by about two FWHM: the sky next to a mask edge (dome, horizon,
            # fisheye circle) holds gradients and halos that would line up along the edge
            r = int(math.ceil(2.0 * self.psf_fwhm)) + 2
            disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            grown = cv2.dilate(bad.astype(np.uint8), disk).astype(bool)
            if not grown.all():
                bad = grown
        return data, bad

    def _normalised(self, data: np.ndarray, bad: np.ndarray, box: int, scale: float) -> np.ndarray:
        """Background-subtracted image in units of the local noise, with a local high-pass.

        A mesh background and noise map (``sep``, ``box`` pixels), then the
        structure wider than ``scale`` pixels (Milky Way, gradients, unresolved
        crowding) removed by subtracting a Gaussian of sigma ``scale`` of the
        clipped residual; a thin streak loses ``~ width / (2.5 scale)`` of its
        peak.
        """
        fill = np.where(bad, 0.0, data).astype(np.float32) if bad.any() else data
        bkg = estimate_background(fill, bad if bad.any() else None, box_size=box)
        z = (data - bkg.level) / bkg.rms
        z[bad] = 0.0
        z = z.astype(np.float32, copy=False)
        zc = np.clip(z, -3.0, 3.0)
        wgt = (~bad).astype(np.float32)
        num = cv2.GaussianBlur(zc, (0, 0), scale, borderType=cv2.BORDER_REFLECT)
        den = cv2.GaussianBlur(wgt, (0, 0), scale, borderType=cv2.BORDER_REFLECT)
        z = z - num / np.maximum(den, 1e-3)
        z[bad] = 0.0
        return z

    # ------------------------------------------------------------------ triage

    def _norms(
        self, valid: np.ndarray, c: float, k0: int, key: tuple | None
    ) -> list[list[tuple[int, np.ndarray, np.ndarray]]]:
        if key is not None and key in self._norm_cache:
            return self._norm_cache[key]  # type: ignore[return-value]
        out = []
        minc = max(self.min_length / max(key[2] if key else 1, 1), 4.0) if key else 4.0
        for transposed, flipped in ((False, False), (False, True), (True, False), (True, True)):
            v = valid.T if transposed else valid
            v = v[::-1] if flipped else v
            lv = []
            for level in frt_levels(v.astype(np.float32), min_level=k0):
                cnt = level.sums
                inv = np.where(cnt >= minc, 1.0 / np.sqrt(c * np.maximum(cnt, 1.0)), 0.0).astype(
                    np.float32
                )
                sub = np.flatnonzero(inv.ravel() > 0)
                sub = sub[:: max(1, sub.size // 1000)]
                lv.append((level.level, inv, sub))
            out.append(lv)
        if key is not None:
            self._norm_cache[key] = out  # type: ignore[assignment]
        return out

    def _triage(
        self, data: np.ndarray, bad: np.ndarray, want_candidates: bool = True
    ) -> tuple[float, list[_Candidate], int]:
        b = self.bin_factor(data.shape)
        sigma_psf = self.psf_fwhm * _FWHM_TO_SIGMA
        if b > 1 and bad.any():
            db = bin_image(np.where(bad, 0, data), b)
            goodb = bin_image((~bad).astype(np.float32), b)
            badb = goodb < 0.5
            db = np.where(badb, 0, db / np.maximum(goodb, 1e-3)).astype(np.float32)
        elif b > 1:
            db = bin_image(data, b)
            badb = np.zeros(db.shape, bool)
        else:
            db, badb = data, bad
        zb = self._normalised(db, badb, max(8, self.background_box // b), self._hp_scale / b)
        sb = math.sqrt(max(sigma_psf / b, 0.0) ** 2 + (0.55 if b > 1 else 0.0) ** 2)
        fb, c = matched_filter(zb, sb)
        fb = fb / local_sigma(fb, badb, max(8, self.noise_box // b))
        gb = clean_image(fb, badb, self.star_sigma, self.clip_sigma, sb)
        k0 = self._min_level(b)
        key = None if bad.any() else (gb.shape[0], gb.shape[1], b)
        norms = self._norms(~badb, c, k0, key)
        thr = self.threshold_for(data.shape) - self.triage_margin
        best = -np.inf
        cands: list[_Candidate] = []
        hb, wb = gb.shape
        views = ((False, False), (False, True), (True, False), (True, True))
        for qi, (transposed, flipped) in enumerate(views):
            v = gb.T if transposed else gb
            v = v[::-1] if flipped else v
            ny = v.shape[0]
            buf = None  # every level of one orientation has nxp * (ny + pad) entries
            for (lev, inv, sub), level in zip(norms[qi], frt_levels(v, min_level=k0), strict=True):
                if buf is None or buf.size != level.sums.size:
                    buf = np.empty(level.sums.size, level.sums.dtype)
                sig = np.multiply(level.sums, inv, out=buf.reshape(level.sums.shape))
                # self-calibration (real skies are not white): robust spread of this level's lines
                samp = sig.ravel()[sub]
                med = float(np.median(samp)) if samp.size else 0.0
                spread = 1.4826 * float(np.median(np.abs(samp - med))) if samp.size else 1.0
                scale = max(spread, 1.0)
                m = (float(sig.max()) - med) / scale
                best = max(best, m)
                if m < thr or not want_candidates:
                    continue
                sig = (sig - med) / scale
                # up to three peaks per level: the best line of each of the three best blocks
                bmax = sig.reshape(sig.shape[0], -1).max(axis=1)
                n = 1 << lev
                for bi in np.argsort(bmax)[::-1][:3]:
                    if bmax[bi] < thr:
                        continue
                    s, j = np.unravel_index(int(np.argmax(sig[bi])), sig.shape[1:])
                    val = float(sig[bi, s, j])
                    xa, xb_ = bi * n, bi * n + n - 1
                    ya = j - level.pad
                    yb_ = ya + s
                    pts = [(xa, ya), (xb_, yb_)]
                    out_pts = []
                    for x, y in pts:
                        if flipped:
                            y = ny - 1 - y
                        if transposed:
                            x, y = y, x
                        out_pts.append((x * b + (b - 1) / 2.0, y * b + (b - 1) / 2.0))
                    (x1, y1), (x2, y2) = out_pts
                    cands.append(_Candidate(val, x1, y1, x2, y2, scale, med))
        cands.sort(key=lambda cd: -cd.sig)
        kept: list[_Candidate] = []
        for cd in cands:
            if any(same_line(cd, k, tol=2.0 * b + 2) for k in kept):
                continue
            kept.append(cd)
            if len(kept) >= 2 * self.max_streaks:
                break
        return float(best), kept, b

    def triage(self, image: np.ndarray, mask: np.ndarray | None = None) -> float:
        """Fast image-level statistic: the largest binned line significance (sigma).

        Parameters
        ----------
        image : ndarray, shape (H, W)
            The frame; NaN/inf pixels are ignored (treated as masked).
        mask : ndarray of bool, shape (H, W), optional
            ``True`` = pixel excluded (bad, not sky). Masked and non-finite
            pixels are grown by ``2 psf_fwhm + 2`` pixels before use.

        Returns
        -------
        float

        Raises
        ------
        InputError
            For an image that is not 2-D, smaller than 16x16 or fully masked,
            or a mask of another shape.
        """
        data, bad = self._check(image, mask)
        return self._triage(data, bad, want_candidates=False)[0]

    # ------------------------------------------------------------------ measurement

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> RadonResult:
        """Find and measure the streaks of one image.

        Parameters
        ----------
        image : ndarray, shape (H, W)
            The frame, any units. NaN and inf pixels are ignored (treated as
            masked), so are pixels where ``mask`` is True.
        mask : ndarray of bool, shape (H, W), optional
            ``True`` = pixel excluded (bad, not sky). Masked and non-finite
            pixels are grown by ``2 psf_fwhm + 2`` pixels before use.

        Returns
        -------
        RadonResult

        Warns
        -----
        NoDetectionsWarning
            Never: an image without streaks is the common case; ``lines`` is
            then an empty table with the full schema.

        Raises
        ------
        InputError
            For an image that is not 2-D, smaller than 16x16, not real-valued
            or fully masked, or a mask of another shape.
        """
        data, bad = self._check(image, mask)
        thr = self.threshold_for(data.shape)
        table, stat, meta = self._measure(data, bad, thr)
        h, w = data.shape
        paint = self._paint_table(table)
        mask_out = paint_lines((h, w), paint) if len(table) else np.zeros((h, w), bool)
        smap = None
        if self.significance_map:
            smap = (
                paint_lines((h, w), paint, scores=True)
                if len(table)
                else np.zeros((h, w), np.float32)
            )
        return RadonResult(table, mask_out, stat, thr, smap, meta)

    def _paint_table(self, table: Table) -> Table:
        """The lines with ``width`` set to the painted diameter.

        A streak is as wide as the PSF: its mask is the capsule of diameter
        ``psf_fwhm`` (the measured width scatters about it and is biased
        up by the line's position error), unless the measured width exceeds
        ``1.5 psf_fwhm`` (defocus, a tumbling or wobbling trail).
        """
        t = Table(table, copy=True)
        if len(t):
            wd = np.asarray(t["width"], float)
            t["width"] = np.where(wd > 1.5 * self.psf_fwhm, wd, self.psf_fwhm)
        return t

    def candidates(self, image: np.ndarray, mask: np.ndarray | None = None) -> Table:
        """Every measured line that passes the shape tests, above the threshold or not.

        For ROC curves and diagnostics: same input and errors as
        :meth:`__call__`; the line table, most significant first (at most
        ``2 * max_streaks`` lines).
        """
        data, bad = self._check(image, mask)
        return self._measure(data, bad, -np.inf, limit=2 * self.max_streaks)[0]

    def _measure(
        self, data: np.ndarray, bad: np.ndarray, thr: float, limit: int | None = None
    ) -> tuple[Table, float, dict[str, Any]]:
        tstat, cands, b = self._triage(data, bad)
        thr_t = self.threshold_for(data.shape) - self.triage_margin
        meta: dict[str, Any] = {"config": self.config(), "bin_factor": b, "triage_statistic": tstat}
        table = _empty_table()
        table.meta["threshold_sigma"] = thr
        if not cands:
            table.meta["statistic"] = tstat
            return table, tstat, meta
        h, w = data.shape
        sigma_psf = self.psf_fwhm * _FWHM_TO_SIGMA
        z = self._normalised(data, bad, self.background_box, self._hp_scale)
        f, _ = matched_filter(z, sigma_psf)
        # the filtered sky in units of its own pixel noise, and the noise of its line sums
        # measured on the image (real skies are not white: Nir et al. 2018, §4)
        f = f / local_sigma(f, bad, self.noise_box)
        g = clean_image(f, bad, self.star_sigma, None, sigma_psf)
        noise = line_noise(g, ~bad, clip=KAPPA)
        meta["line_noise"] = {"lengths": noise.lengths.tolist(), "sd": noise.sd.tolist()}
        valid = (~bad).astype(np.float32)
        # distance of every pixel to the mask: lines along its edge are the sky's glow
        dist = cv2.distanceTransform((~bad).astype(np.uint8), cv2.DIST_L2, 5) if bad.any() else None
        rows: list[tuple[_Candidate, float, float]] = []
        for cd in cands:
            r = self._refine(g, valid, noise, cd, b, dist)
            tol = max(3.0, 2 * self.psf_fwhm)
            if r is None or any(
                same_line(r, q[0], tol) or segment_overlap(r, q[0], tol) > 0.25 for q in rows
            ):
                continue
            width, dperp = cross_width(z, r, self.psf_fwhm)
            length = math.hypot(r.x2 - r.x1, r.y2 - r.y1)
            if r.sig >= 15 and (
                width > max(1.6 * self.psf_fwhm, self.psf_fwhm + 1.5) or length < 3 * width
            ):
                continue  # a blob (star blend, galaxy, halo), not a line
            rows.append((r, width, dperp))
        # every candidate measured and rejected: nothing line-like (below any threshold)
        stat = max((q[0].sig for q in rows), default=min(tstat, thr_t))
        table.meta["statistic"] = stat
        resid = None
        maxn = self.max_streaks if limit is None else limit
        for r, width, dperp in sorted(rows, key=lambda q: -q[0].sig):
            if r.sig < thr or len(table) >= maxn:
                continue
            if resid is None:
                bkg = estimate_background(np.where(bad, 0, data).astype(np.float32),
                                          bad if bad.any() else None, box_size=self.background_box)  # fmt: skip
                resid = data - bkg.level
                resid[bad] = 0.0
            # move the line across by the centroid of its cross profile: a straight-line fit
            # to the centroids of chunks along it when bright enough, else one shift
            ang = math.atan2(r.y2 - r.y1, r.x2 - r.x1)
            nx_, ny_ = -math.sin(ang), math.cos(ang)
            d1, d2 = (
                fit_line_offsets(z, r.x1, r.y1, r.x2, r.y2, self.psf_fwhm)
                if r.sig >= 15
                else (dperp, dperp)
            )
            x1, y1 = r.x1 + d1 * nx_, r.y1 + d1 * ny_
            x2, y2 = r.x2 + d2 * nx_, r.y2 + d2 * ny_
            length = math.hypot(x2 - x1, y2 - y1)
            angle = math.degrees(math.atan2(y2 - y1, x2 - x1)) % 180.0
            one = Table(rows=[(0, x1, y1, x2, y2, length, angle, width, r.sig, 0.0, False)],
                        names=LINE_COLUMNS)  # fmt: skip
            flux = float(resid[paint_lines((h, w), one, diameter=3 * width)].sum())
            border = any(v < width or v > w - 1 - width for v in (x1, x2)) or any(
                v < width or v > h - 1 - width for v in (y1, y2)
            )
            table.add_row(
                (len(table) + 1, x1, y1, x2, y2, length, angle, width, r.sig, flux, border)
            )
        return table, float(stat), meta

    def _refine(
        self,
        g: np.ndarray,
        valid: np.ndarray,
        noise: LineNoise,
        cd: _Candidate,
        b: int,
        dist: np.ndarray | None = None,
    ) -> _Candidate | None:
        h, w = g.shape
        # a segment shorter than min_length_fwhm PSF FWHM is a compact source (a star pair, a
        # galaxy, a star trailed in a long exposure)
        min_len = int(math.ceil(max(self.min_length, self.min_length_fwhm * self.psf_fwhm))) + 1
        theta = math.atan2(cd.y2 - cd.y1, cd.x2 - cd.x1)
        cx, cy = 0.5 * (cd.x1 + cd.x2), 0.5 * (cd.y1 + cd.y2)
        half = 0.5 * math.hypot(cd.x2 - cd.x1, cd.y2 - cd.y1)
        lo, hi = -half - 2 * b, half + 2 * b
        span = max(2 * half, 8.0)
        doff = 1.0 * b + 1.0
        for it in range(4):
            # angle range: the offset range over the current segment's half-length
            dth = min(2.0 * doff / span, math.radians(10.0))
            ths = theta + np.linspace(-dth, dth, 9)
            offs = np.linspace(-doff, doff, 11)
            tt = np.arange(lo, hi + 1e-9, 1.0)
            th_g, of_g = np.meshgrid(ths, offs, indexing="ij")
            th_g, of_g = th_g.ravel(), of_g.ravel()
            ux, uy = np.cos(th_g)[:, None], np.sin(th_g)[:, None]
            xs = cx + tt[None, :] * ux - of_g[:, None] * uy
            ys = cy + tt[None, :] * uy + of_g[:, None] * ux
            vals, ok = sample_line(g, valid, xs, ys)
            n = ok.sum(axis=1)
            vals = winsorise(vals, ok)
            score = np.where(n >= 4, (vals * ok).sum(axis=1) / noise(np.maximum(n, 1)), -np.inf)
            k = int(np.argmax(score))
            theta, off = float(th_g[k]), float(of_g[k])
            cx, cy = cx - off * math.sin(theta), cy + off * math.cos(theta)
            # the whole line across the frame: endpoints from the best segment
            tmax = math.hypot(h, w)
            tt = np.arange(-tmax, tmax + 1e-9, 1.0)
            xs = cx + tt * math.cos(theta)
            ys = cy + tt * math.sin(theta)
            vals, ok = sample_line(g, valid, xs[None, :], ys[None, :])
            vals, ok = vals[0], ok[0]
            inside = np.nonzero(ok)[0]
            if inside.size < 4:
                return None
            a0, a1 = inside[0], inside[-1] + 1
            seg = ok & (tt >= lo) & (tt <= hi)
            med = float(np.median(vals[seg])) if seg.any() else 0.0
            p = np.where(ok[a0:a1], np.clip(vals[a0:a1], -KAPPA, max(med, 0.0) + KAPPA), 0.0)
            sig, i, j = max_segment(p, ok[a0:a1], noise, min_len)
            if not np.isfinite(sig):
                return None
            lo, hi = tt[a0 + i], tt[a0 + j - 1]
            span = max(hi - lo, 8.0)
            doff = max(doff / 2.5, 0.25)
            mid = 0.5 * (lo + hi)
            cx, cy = cx + mid * math.cos(theta), cy + mid * math.sin(theta)
            lo, hi = lo - mid, hi - mid
            if it < 3:  # search the next grid over the segment, a little longer
                lo, hi = lo - 0.1 * span - 2 * b, hi + 0.1 * span + 2 * b
        ux, uy = math.cos(theta), math.sin(theta)
        # uniformity (a streak is lit along its whole length, a star or a chain of stars is not):
        # the median's significance, and every quarter of the segment holding its share of light
        q = p[i:j][ok[a0 + i : a0 + j]]
        if q.size >= 8:
            # the lit extent (central 90 % of the light) must reach the shortest length
            cs = np.cumsum(np.clip(q, 0.0, None))
            if cs[-1] > 0:
                e1, e2 = np.searchsorted(cs, [0.05 * cs[-1], 0.95 * cs[-1]])
                if e2 - e1 + 1 < 0.85 * (min_len - 1):
                    return None
            s_med = float(np.median(q)) * q.size / float(noise(q.size))
            sig = min(sig, s_med)
            quarters = [float(x.mean()) for x in np.array_split(q, 4)]
            # (at any significance: two stars a line apart light its ends, not its middle)
            if min(quarters) < (0.2 if sig >= 15 else 0.1) * float(q.mean()):
                return None
            # peaks far above the line's median over a good part of it: stars, not a streak
            raw = vals[a0 + i : a0 + j][ok[a0 + i : a0 + j]]
            med = max(float(np.median(raw)), 0.0)
            if (
                np.mean(raw > 2.0 * med + 3.0) > 0.3
                or med < 0.4 * float(np.percentile(raw, 90)) - 1.0
            ):
                return None
            # the light of one PSF-long window (a star the line crosses) must not carry it
            w = int(2 * self.psf_fwhm) + 1
            if raw.size > 2 * w:
                win = np.convolve(raw, np.ones(w), mode="valid")
                s_excl = (float(raw.sum()) - float(win.max())) / float(noise(raw.size - w))
                if s_excl < 0.5 * sig * math.sqrt((raw.size - w) / raw.size):
                    return None
        # an edge (tree, dome, cloud border) or a band is not a streak
        if edge_or_band(g, valid, noise, cx, cy, ux, uy, lo, hi, self.psf_fwhm):
            return None
        # a ridge as narrow as the PSF, not a band or glow; bright lines may be wider (defocus,
        # tumbling, a FWHM estimated low: 0.5 for twice as wide) and are width-tested later
        xa, ya, xb, yb = cx + lo * ux, cy + lo * uy, cx + hi * ux, cy + hi * uy
        rmin = RIDGE_MIN if sig < 15 else RIDGE_MIN_BRIGHT
        if ridge_fraction(g, valid, xa, ya, xb, yb, self.psf_fwhm)[0] < rmin:
            return None
        # along the edge of the mask (lens circle, horizon, dome): vignetting and glow
        if dist is not None and hugs_boundary(
            dist, xa, ya, xb, yb, max(15.0, 5.0 * self.psf_fwhm), 0.08 * min(g.shape)
        ):
            return None
        # a line hugging a frame edge all along lies where the background is extrapolated
        em = max(3.0, self.psf_fwhm)
        gh, gw = g.shape
        for v1, v2, top in (
            (cx + lo * ux, cx + hi * ux, gw - 1),
            (cy + lo * uy, cy + hi * uy, gh - 1),
        ):
            if max(v1, v2) < em or min(v1, v2) > top - em:
                return None
        # local calibration (crowded fields, nebulosity): only ever lowers the significance
        d0 = max(3.0 * self.psf_fwhm, 2.5 * self._hp_scale)  # beyond the high-pass trough
        sig = local_significance(g, valid, noise, (cx, cy, ux, uy, lo, hi), sig, d0, self.psf_fwhm)
        return _Candidate(sig, cx + lo * ux, cy + lo * uy, cx + hi * ux, cy + hi * uy)
