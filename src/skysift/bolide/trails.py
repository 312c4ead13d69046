"""Meteor trails in a single long exposure: an oriented matched filter on the star-cleaned sky.

A meteor in a long all-sky exposure is a straight trail about one PSF wide
and tens to hundreds of pixels long, often fainter per pixel than the
noise-limited stars. The finder:

1. masks what is not sky (:func:`skysift.detection.masks.sky_mask`) and
   subtracts the mesh background (:func:`skysift.detection.background.estimate_background`);
2. removes the stars: every compact source found by the classical star
   finder is blanked over a disc of ``2 FWHM`` radius (a trail crossing a
   star keeps the rest of its length);
3. filters the residual with a bank of line kernels (a Gaussian profile of
   the PSF's width across, a flat segment of ``length`` pixels along) at
   ``n_angles`` orientations and keeps, per pixel, the largest response in
   units of its noise: the matched filter of a line (Radon-like; cf. Nir,
   Ofek & Gal-Yam 2018, AJ 156, 229, for the same statistic on the whole
   line);
4. thresholds that significance, groups the pixels into connected parts and
   fits a line to each; a part is a trail when it is long (``min_length``),
   thin (its width along the fitted normal is PSF-like, not a wide blob such
   as an insect or a reflection) and straight.

Pixel coordinates are 0-based, (0, 0) the centre of the first pixel.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from astropy.table import Table
from scipy import ndimage

from skysift.detection.background import estimate_background
from skysift.detection.masks import sky_mask
from skysift.detection.stars import StarFlag, detect_stars
from skysift.errors import InputError

__all__ = ["find_meteor_trails", "line_kernels"]


def line_kernels(length: int, sigma: float, n_angles: int) -> list[np.ndarray]:
    """Unit-norm line kernels: Gaussian across (``sigma`` px), flat along (``length`` px).

    Returns
    -------
    list of ndarray, each ``(K, K)`` float32 with ``K = length + 4 sigma`` (odd);
    each kernel has zero mean... no: non-negative, sum of squares 1, so that
    filtering white noise of unit sigma gives unit sigma.
    """
    k = int(length + 4 * sigma) | 1
    c = k // 2
    yy, xx = np.mgrid[-c : c + 1, -c : c + 1].astype(np.float32)
    out = []
    for a in np.arange(n_angles) * np.pi / n_angles:
        along = xx * np.cos(a) + yy * np.sin(a)
        across = -xx * np.sin(a) + yy * np.cos(a)
        w = np.exp(-0.5 * (across / sigma) ** 2) * (np.abs(along) <= length / 2)
        w = (w / np.sqrt((w**2).sum())).astype(np.float32)
        out.append(w)
    return out


def _profile_width(z: np.ndarray, c: np.ndarray, u: np.ndarray, s_lo: float, s_hi: float) -> float:
    """RMS width (px) of the mean profile across the line between ``s_lo`` and ``s_hi``.

    The profile is sampled every 0.5 px out to 8 px on each side; its level
    beyond 5 px is subtracted and its positive part's second moment taken.
    NaN when there is no positive signal.
    """
    h, w = z.shape
    ss = np.arange(s_lo, s_hi + 1.0)
    offs = np.arange(-8.0, 8.01, 0.5)
    px = c[0] + ss[:, None] * u[0] - offs[None, :] * u[1]
    py = c[1] + ss[:, None] * u[1] + offs[None, :] * u[0]
    ix = np.clip(np.round(px).astype(int), 0, w - 1)
    iy = np.clip(np.round(py).astype(int), 0, h - 1)
    prof = z[iy, ix].mean(axis=0)
    prof = np.clip(prof - np.median(prof[np.abs(offs) > 5]), 0, None)
    if not prof.sum() > 0:
        return float("nan")
    return float(np.sqrt(np.sum(prof * offs**2) / prof.sum()))


def _refine_ends(
    z: np.ndarray, c: np.ndarray, u: np.ndarray, s_lo: float, s_hi: float, length: int, sigma: float
) -> tuple[float, float]:
    """Move the ends to where the trail's profile along the line falls to half its median.

    The profile is the mean of ``z`` within ``1.5 sigma`` of the line in 1-px
    steps, smoothed over 9 px; the search reaches ``length`` px beyond the
    filter's ends.
    """
    h, w = z.shape
    ss = np.arange(s_lo - length, s_hi + length + 1.0)
    offs = np.linspace(-1.5 * sigma, 1.5 * sigma, 5)
    px = c[0] + ss[:, None] * u[0] - offs[None, :] * u[1]
    py = c[1] + ss[:, None] * u[1] + offs[None, :] * u[0]
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    vals = np.where(
        inside,
        z[np.clip(np.round(py).astype(int), 0, h - 1), np.clip(np.round(px).astype(int), 0, w - 1)],
        0.0,
    )
    prof = np.convolve(vals.mean(axis=1), np.ones(9) / 9, mode="same")
    core = (ss >= s_lo) & (ss <= s_hi)
    level = float(np.median(prof[core])) if core.any() else 0.0
    if not level > 0:
        return s_lo, s_hi
    above = prof >= 0.5 * level
    # grow from the core while the profile stays above half the level
    i0, i1 = int(np.argmax(core)), len(ss) - 1 - int(np.argmax(core[::-1]))
    while i0 > 0 and above[i0 - 1]:
        i0 -= 1
    while i1 < len(ss) - 1 and above[i1 + 1]:
        i1 += 1
    return float(ss[i0]), float(ss[i1])


def find_meteor_trails(
    image: np.ndarray,
    *,
    sky: np.ndarray | None = None,
    fwhm: float | None = None,
    length: int = 41,
    n_angles: int = 32,
    destripe: bool = True,
    threshold: float = 5.0,
    low: float = 3.0,
    min_length: float = 40.0,
    max_width: float | None = None,
    min_fill: float = 0.5,
) -> Table:
    """Find meteor trails in one exposure.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The exposure (ADU).
    sky : ndarray of bool (H, W), optional
        ``True`` = sky. Default: :func:`skysift.detection.masks.sky_mask`.
    fwhm : float, optional
        PSF FWHM (px). Default the median FWHM of the detected stars.
    length : int, optional
        Length of the line kernels (px). Default 41.
    n_angles : int, optional
        Orientations of the kernels over 180 deg. Default 32.
    destripe : bool, optional
        Subtract the median of every column and row of the star-cleaned
        residual first (read-out banding). Default True.
    threshold : float, optional
        Significance of the filtered image (sigma) that marks trail pixels.
        Default 5.
    low : float, optional
        Hysteresis: the pixels of a part above ``threshold`` are grown into
        connected pixels above ``low`` (sigma). Default 3.
    min_length : float, optional
        Shortest trail reported (px). Default 40.
    max_width : float, optional
        Largest RMS width (px) of the trail's mean profile across the fitted
        line; default ``max(2.5, FWHM)``. A PSF-wide trail measures about
        ``0.42 FWHM`` plus the 0.5-px sampling (1.6 px for a 2.5-px FWHM; the
        faint UMD meteor 2.2 px); the lines of the UMD false triggers (an
        insect's legs, a reflection's edges) measure 3.0 to 7.6 px.
    min_fill : float, optional
        Smallest fraction of the fitted segment covered by trail pixels
        (straightness and continuity). Default 0.5.

    Returns
    -------
    astropy.table.Table
        One row per trail, longest first: ``x1``, ``y1``, ``x2``, ``y2`` (ends,
        px), ``length`` (px), ``angle`` (deg, [0, 180)), ``width`` (RMS width of
        the mean profile across, px), ``snr`` (peak significance of the filtered image), ``flux``
        (background-subtracted sum over the trail's pixels, ADU). Empty when
        none is found.

    Raises
    ------
    InputError
        If the image is not 2-D or the sky mask has another shape.
    """

    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        msg = f"trail finding needs a 2-D image, got shape {data.shape}"
        raise InputError(msg)
    if sky is None:
        sky = ~sky_mask(data).mask
    sky = np.asarray(sky, bool)
    if sky.shape != data.shape:
        msg = f"sky mask shape {sky.shape} differs from the image shape {data.shape}"
        raise InputError(msg)
    # keep clear of the sky's edge (horizon silhouettes, the fisheye ring)
    inner = ndimage.binary_erosion(sky, iterations=6)
    bkg = estimate_background(data, mask=~sky)
    resid = np.where(inner, data - bkg.level, 0.0).astype(np.float32)
    stars = detect_stars(data, mask=~sky, threshold_sigma=4.0)
    if fwhm is None:
        f = np.asarray(stars["fwhm"], float) if len(stars) else np.zeros(0)
        f = f[np.isfinite(f) & (f > 0)]
        fwhm = float(np.clip(np.median(f), 1.5, 8.0)) if f.size else 2.5
    # blank the stars (not the elongated sources: pieces of a trail are found as those)
    blank = np.zeros(data.shape, np.uint8)
    compact = (np.asarray(stars["flags"]) & int(StarFlag.ELONGATED)) == 0
    for x, y, fw in zip(
        stars["x"][compact], stars["y"][compact], stars["fwhm"][compact], strict=True
    ):
        r = int(np.ceil(2.0 * max(float(fw) if np.isfinite(fw) else fwhm, fwhm)))
        cv2.circle(blank, (round(float(x)), round(float(y))), r, 1, -1)
    use = inner & (blank == 0)
    resid = np.where(use, resid, np.nan)
    # column and row patterns of the read-out (banding) mimic lines: remove them
    if destripe:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no pattern
            resid -= np.nan_to_num(np.nanmedian(resid, axis=0))[None, :]
            resid -= np.nan_to_num(np.nanmedian(resid, axis=1))[:, None]
    noise = 1.4826 * float(np.nanmedian(np.abs(resid[use]))) if use.any() else 1.0
    z = np.clip(np.nan_to_num(resid / max(noise, 1e-6)), -4.0, 4.0).astype(np.float32)
    sigma = max(fwhm / 2.3548, 0.8)
    sig = np.full(data.shape, -np.inf, np.float32)
    sample = inner[::1, ::1]
    for k in line_kernels(length, sigma, n_angles):
        resp = cv2.filter2D(z, -1, k, borderType=cv2.BORDER_CONSTANT)
        # the noise is seldom white (resampled, compressed frames): normalise each
        # orientation by the robust spread of its own response
        v = resp[sample][::7]
        med = float(np.median(v))
        sd = 1.4826 * float(np.median(np.abs(v - med)))
        np.maximum(sig, (resp - med) / max(sd, 1e-6), out=sig)
    # hysteresis: parts above ``low`` that reach ``threshold`` somewhere
    labels, n = ndimage.label((sig > low) & inner, structure=np.ones((3, 3)))
    peak = ndimage.maximum(sig, labels, index=np.arange(1, n + 1)) if n else np.zeros(0)
    keep_label = np.concatenate([[False], np.asarray(peak) > threshold])
    labels[~keep_label[labels]] = 0
    max_width = max(2.5, fwhm) if max_width is None else max_width
    rows = []
    for sl_i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        ys, xs = np.nonzero(labels[sl] == sl_i)
        if xs.size < max(5.0, min_length):
            continue
        xs = xs + sl[1].start
        ys = ys + sl[0].start
        pts = np.column_stack([xs, ys]).astype(float)
        w = np.clip(sig[ys, xs], 0, None) + 1e-3
        c = np.average(pts, axis=0, weights=w)
        cov = np.cov((pts - c).T, aweights=w)
        evals, evecs = np.linalg.eigh(cov)
        u = evecs[:, 1]
        s = (pts - c) @ u
        # the filter extends a trail by half a kernel at each end
        s_lo, s_hi = np.min(s) + length / 2 - 1, np.max(s) - length / 2 + 1
        seg = s_hi - s_lo
        if seg < min_length:
            continue
        width = _profile_width(z, c, u, s_lo, s_hi)
        if not width <= max_width:
            continue
        bins = np.arange(np.floor(s.min()), np.ceil(s.max()) + 1)
        fill = np.count_nonzero(np.histogram(s, bins=bins)[0]) / max(1, len(bins) - 1)
        if fill < min_fill:
            continue
        s_lo, s_hi = _refine_ends(z, c, u, s_lo, s_hi, length, sigma)
        seg = s_hi - s_lo
        p1, p2 = c + s_lo * u, c + s_hi * u
        if p1[0] > p2[0]:
            p1, p2 = p2, p1
        rows.append(
            {
                "x1": float(p1[0]), "y1": float(p1[1]), "x2": float(p2[0]), "y2": float(p2[1]),
                "length": float(seg),
                "angle": float(np.degrees(np.arctan2(p2[1] - p1[1], p2[0] - p1[0])) % 180.0),
                "width": width,
                "snr": float(sig[ys, xs].max()),
                "flux": float(np.nansum(data[ys, xs] - bkg.level[ys, xs])),
            }
        )  # fmt: skip
    names = ["x1", "y1", "x2", "y2", "length", "angle", "width", "snr", "flux"]
    if not rows:
        return Table(names=names, dtype=[float] * len(names))
    t = Table(rows=rows, names=names)
    t.sort("length", reverse=True)
    for c_ in ("x1", "y1", "x2", "y2", "length", "width"):
        t[c_].unit = "pix"
    t["angle"].unit = "deg"
    t["flux"].unit = "adu"
    return t
