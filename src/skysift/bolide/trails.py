"""Meteor trails in a single long exposure: an oriented matched filter on the star-cleaned sky.

A meteor in a long all-sky exposure is a straight trail about one PSF wide
and tens to hundreds of pixels long, often fainter per pixel than the
noise-limited stars. The finder:

1. masks what is not sky (:func:`skysift.detection.masks.scene_mask`: the
   fisheye ring, trees and buildings on the horizon, the Moon's glare,
   captions) and subtracts the mesh background
   (:func:`skysift.detection.background.estimate_background`);
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
   fits a line to each; a faint piece is long, thin (its width along the
   fitted normal is PSF-like, not a wide blob such as an insect or a
   reflection) and straight;
5. adds the bright pieces (a fireball's flaring or saturated body, which the
   clipped filter sees as a wide band) and joins collinear pieces into one
   trail (:func:`merge_collinear`), whose brightness profile along its
   length is measured (:func:`trail_profile`).

Pixel coordinates are 0-based, (0, 0) the centre of the first pixel.
"""

from __future__ import annotations

import warnings
from typing import Any

import cv2
import numpy as np
from astropy.table import Table, vstack
from scipy import ndimage

from skysift.detection.background import estimate_background
from skysift.detection.masks import pixel_noise, scene_mask
from skysift.detection.stars import StarFlag, detect_stars
from skysift.errors import InputError

__all__ = [
    "find_meteor_trails",
    "find_trails_and_profiles",
    "line_kernels",
    "merge_collinear",
    "saturation_level",
    "trail_profile",
]


def line_kernels(length: int, sigma: float, n_angles: int) -> list[np.ndarray]:
    """Unit-norm line kernels: Gaussian across (``sigma`` px), flat along (``length`` px).

    Returns
    -------
    list of ndarray, each ``(K, K)`` float32 with ``K = length + 4 sigma`` (odd);
    each kernel is non-negative with a sum of squares of 1, so that
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
    steps, less the local sky beside it (median 3 to 7 px beyond ``3 sigma``
    on both sides, median-filtered over 15 px), smoothed over 9 px; the
    search reaches ``length`` px beyond the filter's ends.
    """
    h, w = z.shape
    ss = np.arange(s_lo - length, s_hi + length + 1.0)

    def sample(offs: np.ndarray) -> np.ndarray:
        px = c[0] + ss[:, None] * u[0] - offs[None, :] * u[1]
        py = c[1] + ss[:, None] * u[1] + offs[None, :] * u[0]
        inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
        iy = np.clip(np.round(py).astype(int), 0, h - 1)
        ix = np.clip(np.round(px).astype(int), 0, w - 1)
        return np.where(inside, z[iy, ix], 0.0)

    vals = sample(np.linspace(-1.5 * sigma, 1.5 * sigma, 5)).mean(axis=1)
    # the local sky beside the line (a background gradient the mesh misses)
    side = 3.0 * sigma + np.arange(3.0, 8.0)
    local = np.median(sample(np.concatenate([-side, side])), axis=1)
    local = ndimage.median_filter(local, size=15, mode="nearest")
    prof = np.convolve(vals - local, np.ones(9) / 9, mode="same")
    core = (ss >= s_lo) & (ss <= s_hi)
    level = float(np.median(prof[core])) if core.any() else 0.0
    if not level > 0:
        return s_lo, s_hi
    # the runs above half the level (gaps under 9 px bridged) that meet the
    # core: they grow past the filter's ends, or trim them where the
    # hysteresis ran on along a background residual
    above = ndimage.binary_closing(prof >= 0.5 * level, structure=np.ones(9))
    lab, n = ndimage.label(above)
    if not n:
        return s_lo, s_hi
    hit = np.flatnonzero(ndimage.sum(core, lab, index=np.arange(1, n + 1)) > 0) + 1
    if not hit.size:
        return s_lo, s_hi
    idx = np.flatnonzero(np.isin(lab, hit))
    return float(ss[idx[0]]), float(ss[idx[-1]])


def saturation_level(image: np.ndarray) -> float:
    """The saturation level of an image (ADU), or ``inf`` when nothing is saturated.

    The maximum counts as saturation when at least 3 pixels reach 99.9 % of it
    (a clipped detector or 8-bit encoding); a single brightest pixel does not.

    Parameters
    ----------
    image : ndarray, shape (H, W)

    Returns
    -------
    float
    """
    data = np.asarray(image, dtype=np.float32)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return float("inf")
    vmax = float(finite.max())
    at_max = np.count_nonzero(finite >= vmax - 1e-3 * abs(vmax))
    return 0.999 * vmax if at_max >= 3 and vmax > 0 else float("inf")


def merge_collinear(
    ends: np.ndarray,
    *,
    max_angle: float = 4.0,
    max_offset: float = 4.0,
    max_gap_fraction: float = 0.5,
) -> list[list[int]]:
    """Group line segments that lie on one line (fragments of one trail).

    Two segments join when their directions differ by at most
    ``max_angle``, all four ends lie within ``max_offset`` of the line
    fitted through both, and the gap between them along the longer is at most
    ``max_gap_fraction`` of the sum of their lengths. Joined groups are
    taken as one segment (their extreme ends along the length-weighted
    direction) and compared again until nothing changes.

    Parameters
    ----------
    ends : ndarray, shape (N, 4)
        ``x1, y1, x2, y2`` of each segment (px).
    max_angle : float, optional
        Largest difference of direction (deg). Default 4.
    max_offset : float, optional
        Largest perpendicular offset (px). Default 4.
    max_gap_fraction : float, optional
        Largest gap as a fraction of the two lengths' sum. Default 0.5.

    Returns
    -------
    list of list of int
        Indices of the segments in each group, every segment in one group.

    Raises
    ------
    InputError
        If ``ends`` is not of shape (N, 4).
    """
    e = np.asarray(ends, dtype=float)
    if e.ndim != 2 or e.shape[1] != 4:
        msg = f"ends must have shape (N, 4), got {e.shape}"
        raise InputError(msg)
    groups = [[i] for i in range(len(e))]
    segs = [e[i] for i in range(len(e))]
    changed = True
    while changed and len(groups) > 1:
        changed = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if _collinear(segs[i], segs[j], max_angle, max_offset, max_gap_fraction):
                    groups[i] = groups[i] + groups[j]
                    segs[i] = _join(e[groups[i]])
                    del groups[j], segs[j]
                    changed = True
                    break
            if changed:
                break
    return [sorted(g) for g in groups]


def _collinear(
    a: np.ndarray, b: np.ndarray, max_angle: float, max_offset: float, frac: float
) -> bool:
    la, lb = np.hypot(a[2] - a[0], a[3] - a[1]), np.hypot(b[2] - b[0], b[3] - b[1])
    if la < lb:
        a, b, la, lb = b, a, lb, la
    if la <= 0:
        return False
    u = np.array([a[2] - a[0], a[3] - a[1]]) / la
    if lb > 0:
        ub = np.array([b[2] - b[0], b[3] - b[1]]) / lb
        if np.degrees(np.arccos(min(1.0, abs(float(u @ ub))))) > max_angle:
            return False
    # all four ends within max_offset of the line through both (the pieces'
    # own directions are less certain than the line joining them)
    j = _join(np.vstack([a, b]))
    lj = np.hypot(j[2] - j[0], j[3] - j[1])
    if lj > 0:
        nj = np.array([-(j[3] - j[1]), j[2] - j[0]]) / lj
        ends = np.array([a[:2], a[2:], b[:2], b[2:]]) - j[:2]
        if np.max(np.abs(ends @ nj)) > max_offset:
            return False
    pb = np.array([[b[0] - a[0], b[1] - a[1]], [b[2] - a[0], b[3] - a[1]]])
    sb = np.sort(pb @ u)
    gap = max(0.0, sb[0] - la, -sb[1])  # a spans [0, la] along u
    return gap <= frac * (la + lb)


def _join(e: np.ndarray) -> np.ndarray:
    """One segment through segments ``e`` (N, 4): length-weighted direction, extreme ends."""
    lens = np.hypot(e[:, 2] - e[:, 0], e[:, 3] - e[:, 1]) + 1e-6
    pts, wts = [], []
    for (x1, y1, x2, y2), ln in zip(e, lens, strict=True):
        t = np.linspace(0.0, 1.0, max(2, int(ln) + 1))
        pts.append(np.column_stack([x1 + t * (x2 - x1), y1 + t * (y2 - y1)]))
        wts.append(np.full(t.size, 1.0))
    p, wt = np.vstack(pts), np.concatenate(wts)
    c = np.average(p, axis=0, weights=wt)
    u = np.linalg.eigh(np.cov((p - c).T, aweights=wt))[1][:, 1]
    s = (p - c) @ u
    p1, p2 = c + s.min() * u, c + s.max() * u
    return np.array([p1[0], p1[1], p2[0], p2[1]])


def trail_profile(
    residual: np.ndarray,
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    *,
    fwhm: float,
    noise: float,
    bin_px: float = 2.0,
    saturated: np.ndarray | None = None,
    bad: np.ndarray | None = None,
) -> Table:
    """Brightness profile along a trail: background-subtracted flux across its width, in bins.

    Pixels whose centre lies within the half-width of the line and between
    the ends extended by ``1.5 FWHM`` are summed in bins of ``bin_px`` along
    the trail. The half-width adapts to the trail: the offset where the mean
    cross profile falls below 2 % of its peak or half the noise (at least
    ``1.3 FWHM``, i.e. 3 PSF sigma, at most 25 px: a saturated trail blooms
    wide). The local sky left over after the background subtraction (median
    of the pixels 3 to 10 px beyond the half-width on both sides, per bin) is
    subtracted too. A star the trail crosses (an unsaturated spike at most
    ``2 FWHM`` long, more than 8 robust sigma above the running median over
    15 bins) is replaced by that median: in one exposure a flash shorter
    than the PSF cannot be told from a star.

    Parameters
    ----------
    residual : ndarray, shape (H, W)
        The image minus its background (ADU).
    x1, y1, x2, y2 : float
        The trail's ends (px, 0-based).
    fwhm : float
        PSF FWHM (px).
    noise : float
        Per-pixel noise (ADU).
    bin_px : float, optional
        Bin length along the trail (px). Default 2.
    saturated : ndarray of bool, shape (H, W), optional
        ``True`` = saturated pixel.
    bad : ndarray of bool, shape (H, W), optional
        ``True`` = a pixel not to sum (a star beside or on the line): it is
        filled with the trail's mean cross profile scaled to the bin's good
        pixels (a bin with less than 30 % of the profile's weight in good
        pixels is interpolated from its neighbours).

    Returns
    -------
    astropy.table.Table
        One row per bin from ``(x1, y1)`` on: ``s`` (bin centre along the
        trail from ``(x1, y1)``, px), ``x``, ``y`` (bin centre, px), ``flux``
        (ADU in the bin), ``saturated`` (any saturated pixel in the bin),
        ``star`` (a star on the line: the bin's flux is the running median).
        ``meta``: ``half_width`` (px) and ``bin_px``.
    """
    h, w = residual.shape
    d = np.array([x2 - x1, y2 - y1], float)
    length = float(np.hypot(*d))
    u = d / length if length > 0 else np.array([1.0, 0.0])
    n = np.array([-u[1], u[0]])
    ext = 1.5 * fwhm
    reach = 25.0 + 10.0 + ext
    xs = np.array([x1, x2])
    ys = np.array([y1, y2])
    c0, c1 = int(max(0, np.floor(xs.min() - reach))), int(min(w, np.ceil(xs.max() + reach) + 1))
    r0, r1 = int(max(0, np.floor(ys.min() - reach))), int(min(h, np.ceil(ys.max() + reach) + 1))
    yy, xx = np.mgrid[r0:r1, c0:c1]
    s = (xx - x1) * u[0] + (yy - y1) * u[1]
    t = (xx - x1) * n[0] + (yy - y1) * n[1]
    sub = residual[r0:r1, c0:c1]
    ok = np.isfinite(sub)
    along = (s >= -ext) & (s <= length + ext) & ok
    # adaptive half-width from the mean cross profile
    at = np.abs(t[along])
    offs = np.arange(0, 36)
    idx = np.minimum(np.round(at).astype(int), 35)
    sums = np.bincount(idx, weights=sub[along], minlength=36)
    cnt = np.bincount(idx, minlength=36)
    mean = sums / np.maximum(cnt, 1)
    peak = float(mean[:2].max()) if cnt[:2].any() else 0.0
    low = (mean < max(0.02 * peak, 0.5 * noise)) & (offs > 0)
    first = int(np.argmax(low)) if low.any() else 25
    half = float(np.clip(first + 1, 1.3 * fwhm, 25.0))
    band = along & (np.abs(t) <= half)
    side = along & (np.abs(t) > half + 3) & (np.abs(t) <= half + 10)
    edges = np.arange(-ext, length + ext + bin_px, bin_px)
    nb = len(edges) - 1
    b_band = np.clip(np.digitize(s[band], edges) - 1, 0, nb - 1)
    sky = np.zeros(nb)
    bad_sub = np.zeros(sub.shape, bool) if bad is None else bad[r0:r1, c0:c1]
    side_vals = sub[side & ~bad_sub]
    side_bins = np.clip(np.digitize(s[side & ~bad_sub], edges) - 1, 0, nb - 1)
    for k in range(nb):
        v = side_vals[side_bins == k]
        if v.size >= 3:
            sky[k] = float(np.median(v))
    val = sub[band] - sky[b_band]
    good = ~bad_sub[band]
    # masked pixels (stars beside or on the line) are filled with the trail's
    # mean cross profile scaled to the bin's good pixels
    ti = np.clip(np.round((t[band] + half) * 2).astype(int), 0, int(4 * half) + 1)
    nt = int(4 * half) + 2
    tmpl = np.bincount(ti[good], weights=val[good], minlength=nt) / np.maximum(
        np.bincount(ti[good], minlength=nt), 1
    )
    tmpl = np.clip(tmpl, 0.0, None)[ti]
    flux = np.bincount(b_band[good], weights=val[good], minlength=nb)
    t_good = np.bincount(b_band[good], weights=tmpl[good], minlength=nb)
    t_all = np.bincount(b_band, weights=tmpl, minlength=nb)
    scale = np.where(t_good > 0.3 * t_all, t_all / np.maximum(t_good, 1e-12), np.nan)
    flux = flux * np.where(np.isfinite(scale), scale, 1.0)
    holes = ~np.isfinite(scale) & (t_all > 0)
    if holes.any() and (~holes).sum() >= 2:
        k = np.arange(nb)
        flux[holes] = np.interp(k[holes], k[~holes], flux[~holes])
    sat = np.zeros(nb, bool)
    if saturated is not None:
        sat = np.bincount(b_band, weights=saturated[r0:r1, c0:c1][band], minlength=nb) > 0
    # stars the trail crosses (merged with it by the star finder, so not masked):
    # narrow unsaturated spikes far above the running median are replaced by it
    star = np.zeros(nb, bool)
    if nb >= 15:
        run = ndimage.median_filter(flux, size=15, mode="nearest")
        mad = ndimage.median_filter(np.abs(flux - run), size=15, mode="nearest")
        spike = (flux - run > 8.0 * 1.4826 * mad + 3.0 * noise) & ~sat
        lab, n_sp = ndimage.label(spike)
        max_run = int(np.ceil(2.0 * fwhm / bin_px)) + 1
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is not None and sl[0].stop - sl[0].start <= max_run:
                star[sl] = lab[sl] == i
        # the star's wings: one bin on each side
        star = ndimage.binary_dilation(star) & ~sat
        flux = np.where(star, run, flux)
    centre = 0.5 * (edges[:-1] + edges[1:])
    t_out = Table(
        {
            "s": centre,
            "x": x1 + centre * u[0],
            "y": y1 + centre * u[1],
            "flux": flux,
            "saturated": sat,
            "star": star,
        }
    )
    for c_ in ("s", "x", "y"):
        t_out[c_].unit = "pix"
    t_out["flux"].unit = "adu"
    t_out.meta.update({"half_width": half, "bin_px": float(bin_px)})
    return t_out


def _bright_pieces(
    resid: np.ndarray,
    inner: np.ndarray,
    noise: float,
    fwhm: float,
    bright_sigma: float,
    star_cores: np.ndarray,
) -> tuple[list[np.ndarray], list[bool], np.ndarray]:
    """Elongated bright parts (a fireball's saturated or flaring body): ends, star-like, pixels.

    The matched filter is tuned for faint lines: it clips the image at 4
    sigma, so a bright trail blooms into a wide band that fails the width
    test. Pixels ``bright_sigma`` above the background are grouped; a group
    is a piece of trail when it is at least 15 px long, 4 times longer
    than wide (stars and the Moon are round) and at most ``4 FWHM + 4`` px
    wide (the FWHM of its second moment across; clouds, domes and masts
    are wider). A piece with more than half of its flux within ``1.5 FWHM``
    of compact stars is star-like (a pair of blended stars, a bright star's
    spikes, or a flare): it counts only when joined to other pieces.
    """
    bright = inner & (resid > bright_sigma * noise)
    labels, n = ndimage.label(bright, structure=np.ones((3, 3)))
    out = []
    starry: list[bool] = []
    zone = np.zeros(resid.shape, bool)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        ys, xs = np.nonzero(labels[sl] == i)
        if xs.size < 10:
            continue
        pts = np.column_stack([xs + sl[1].start, ys + sl[0].start]).astype(float)
        c = pts.mean(axis=0)
        evals, evecs = np.linalg.eigh(np.cov((pts - c).T))
        u = evecs[:, 1]
        s = (pts - c) @ u
        length = float(s.max() - s.min())
        width = max(2.0 * np.sqrt(max(evals[0], 0.0)) * 1.1774, fwhm)
        # a line, not a bright cloud, dome or mast: thin, and filling its
        # length x width box like a line does
        if length < 15.0 or length < 4.0 * width or width > 4.0 * fwhm + 4.0:
            continue
        if xs.size > 2.0 * length * width:
            continue
        # two blended stars or a star's spikes: mostly the cores of compact stars
        own = labels[sl] == i
        flux = np.clip(resid[sl][own], 0, None)
        p1, p2 = c + s.min() * u, c + s.max() * u
        out.append(np.array([p1[0], p1[1], p2[0], p2[1]]))
        starry.append(bool(np.sum(flux * star_cores[sl][own]) > 0.5 * np.sum(flux)))
        zone[sl] |= own
    return out, starry, zone


def find_trails_and_profiles(
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
    bright_sigma: float = 25.0,
    merge: bool = True,
    max_angle: float = 4.0,
    max_offset: float = 4.0,
    max_gap_fraction: float = 0.5,
    saturation: float | None = None,
    bin_px: float = 2.0,
) -> tuple[Table, Table]:
    """Find meteor trails in one exposure and measure their profiles along their length.

    See :func:`find_meteor_trails` for the method and most parameters.

    Parameters
    ----------
    bright_sigma : float, optional
        Level (sigma above the background) of the bright, flaring or
        saturated body of a trail, found apart from the faint-line filter.
        Default 25.
    merge : bool, optional
        Join collinear pieces into one trail (:func:`merge_collinear`).
        Default True.
    max_angle, max_offset, max_gap_fraction : float, optional
        Joining rule (:func:`merge_collinear`): direction within 4 deg, ends
        within 4 px of the line, gap at most 0.5 of the two lengths' sum.
    saturation : float, optional
        Saturation level (ADU). Default :func:`saturation_level`.
    bin_px : float, optional
        Bin length of the profiles along the trails (px). Default 2.

    Returns
    -------
    trails : astropy.table.Table
        As :func:`find_meteor_trails`, plus ``id`` (1, 2, ...).
    profiles : astropy.table.Table
        :func:`trail_profile` of every trail, stacked, with ``id``.

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
        sky = ~scene_mask(data).mask
    sky = np.asarray(sky, bool)
    if sky.shape != data.shape:
        msg = f"sky mask shape {sky.shape} differs from the image shape {data.shape}"
        raise InputError(msg)
    sat_level = saturation_level(data) if saturation is None else float(saturation)
    # keep clear of the sky's edge (horizon silhouettes, the fisheye ring)
    inner = ndimage.binary_erosion(sky, iterations=6)
    bkg = estimate_background(data, mask=~sky)
    full_resid = (data - bkg.level).astype(np.float32)
    resid = np.where(inner, full_resid, 0.0).astype(np.float32)
    stars = detect_stars(data, mask=~sky, threshold_sigma=4.0)
    if fwhm is None:
        f = np.asarray(stars["fwhm"], float) if len(stars) else np.zeros(0)
        f = f[np.isfinite(f) & (f > 0)]
        fwhm = float(np.clip(np.median(f), 1.5, 8.0)) if f.size else 2.5
    # the bright body of a fireball (elongated groups far above the noise)
    cores = np.zeros(data.shape, np.uint8)
    compact = (np.asarray(stars["flags"]) & int(StarFlag.ELONGATED)) == 0
    for x, y in zip(stars["x"][compact], stars["y"][compact], strict=True):
        cv2.circle(cores, (round(float(x)), round(float(y))), int(np.ceil(1.5 * fwhm)), 1, -1)
    bright, starry, bright_zone = _bright_pieces(
        full_resid, inner, pixel_noise(data, inner), fwhm, bright_sigma, cores > 0
    )
    body = cv2.dilate(bright_zone.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    # blank the stars (not the elongated sources: pieces of a trail are found as
    # those; nor a flare on the bright body, which can measure tens of px wide)
    blank = np.zeros(data.shape, np.uint8)
    compact = (np.asarray(stars["flags"]) & int(StarFlag.ELONGATED)) == 0
    for x, y, fw in zip(
        stars["x"][compact], stars["y"][compact], stars["fwhm"][compact], strict=True
    ):
        ix, iy = round(float(x)), round(float(y))
        if body[min(max(iy, 0), data.shape[0] - 1), min(max(ix, 0), data.shape[1] - 1)]:
            continue
        r = int(np.ceil(2.0 * max(float(fw) if np.isfinite(fw) else fwhm, fwhm)))
        cv2.circle(blank, (ix, iy), r, 1, -1)
    use = inner & (blank == 0)
    resid = np.where(use, resid, np.nan)
    # column and row patterns of the read-out (banding) mimic lines: remove them
    if destripe:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no pattern
            resid -= np.nan_to_num(np.nanmedian(resid, axis=0))[None, :]
            resid -= np.nan_to_num(np.nanmedian(resid, axis=1))[:, None]
    noise = 1.4826 * float(np.nanmedian(np.abs(resid[use]))) if use.any() else 1.0
    noise = max(noise, 1e-6)
    z = np.clip(np.nan_to_num(resid / noise), -4.0, 4.0).astype(np.float32)
    # the bright pieces (found apart) are left out of the faint-line filter: their
    # wide clipped band would join the faint lines that pass near them into one blob
    if bright_zone.any():
        r_b = int(np.ceil(1.5 * fwhm)) + 2
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r_b + 1, 2 * r_b + 1))
        z[cv2.dilate(bright_zone.astype(np.uint8), disc) > 0] = 0.0
    sigma = max(fwhm / 2.3548, 0.8)
    sig = np.full(data.shape, -np.inf, np.float32)
    for k in line_kernels(length, sigma, n_angles):
        resp = cv2.filter2D(z, -1, k, borderType=cv2.BORDER_CONSTANT)
        # the noise is seldom white (resampled, compressed frames): normalise each
        # orientation by the robust spread of its own response
        v = resp[inner][::7]
        med = float(np.median(v))
        sd = 1.4826 * float(np.median(np.abs(v - med)))
        np.maximum(sig, (resp - med) / max(sd, 1e-6), out=sig)
    # hysteresis: parts above ``low`` that reach ``threshold`` somewhere
    labels, n = ndimage.label((sig > low) & inner, structure=np.ones((3, 3)))
    peak = ndimage.maximum(sig, labels, index=np.arange(1, n + 1)) if n else np.zeros(0)
    keep_label = np.concatenate([[False], np.asarray(peak) > threshold])
    labels[~keep_label[labels]] = 0
    max_width = max(2.5, fwhm) if max_width is None else max_width
    pieces: list[np.ndarray] = []
    # a piece alone is a trail only if the filter saw it over min_length (as
    # without joining); shorter pieces count only when joined to others
    lone_ok: list[bool] = []
    for sl_i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        ys, xs = np.nonzero(labels[sl] == sl_i)
        if xs.size < max(5.0, min_length / 2):
            continue
        xs = xs + sl[1].start
        ys = ys + sl[0].start
        pts = np.column_stack([xs, ys]).astype(float)
        w = np.clip(sig[ys, xs], 0, None) + 1e-3
        c = np.average(pts, axis=0, weights=w)
        evecs = np.linalg.eigh(np.cov((pts - c).T, aweights=w))[1]
        u = evecs[:, 1]
        s = (pts - c) @ u
        # the filter extends a trail by half a kernel at each end
        s_lo, s_hi = np.min(s) + length / 2 - 1, np.max(s) - length / 2 + 1
        # pieces of a fragmented trail may be short: half the shortest trail
        if s_hi - s_lo < (min_length / 2 if merge else min_length):
            continue
        width = _profile_width(z, c, u, s_lo, s_hi)
        if not width <= max_width:
            continue
        bins = np.arange(np.floor(s.min()), np.ceil(s.max()) + 1)
        fill = np.count_nonzero(np.histogram(s, bins=bins)[0]) / max(1, len(bins) - 1)
        if fill < min_fill:
            continue
        detected = s_hi - s_lo
        s_lo, s_hi = _refine_ends(z, c, u, s_lo, s_hi, length, sigma)
        p1, p2 = c + s_lo * u, c + s_hi * u
        pieces.append(np.array([p1[0], p1[1], p2[0], p2[1]]))
        lone_ok.append(detected >= min_length)
    n_faint = len(pieces)
    pieces += bright
    lone_ok += [not st for st in starry]
    if not pieces:
        return _empty_trails(), _empty_profiles()
    ends = np.array(pieces)
    groups = merge_collinear(
        ends, max_angle=max_angle, max_offset=max_offset, max_gap_fraction=max_gap_fraction
    ) if merge else [[i] for i in range(len(ends))]  # fmt: skip
    saturated = data >= sat_level
    # stars off the bright body are left out of the profiles
    star_discs = (blank > 0) & ~body
    rows, profiles = [], []
    for g in groups:
        e = _join(ends[g]) if len(g) > 1 else ends[g[0]]
        p1, p2 = e[:2], e[2:]
        seg = float(np.hypot(*(p2 - p1)))
        if seg < min_length or (len(g) == 1 and not lone_ok[g[0]]):
            continue
        if p1[0] > p2[0]:
            p1, p2 = p2, p1
        u = (p2 - p1) / max(seg, 1e-9)
        c = 0.5 * (p1 + p2)
        prof = trail_profile(
            full_resid, *p1, *p2, fwhm=fwhm, noise=noise, bin_px=bin_px,
            saturated=saturated, bad=star_discs,
        )  # fmt: skip
        ss = np.arange(0.0, seg + 1.0)
        px = np.clip(np.round(p1[0] + ss * u[0]).astype(int), 0, data.shape[1] - 1)
        py = np.clip(np.round(p1[1] + ss * u[1]).astype(int), 0, data.shape[0] - 1)
        rows.append(
            {
                "x1": float(p1[0]), "y1": float(p1[1]), "x2": float(p2[0]), "y2": float(p2[1]),
                "length": seg,
                "angle": float(np.degrees(np.arctan2(p2[1] - p1[1], p2[0] - p1[0])) % 180.0),
                "width": _profile_width(z, c, u, -seg / 2, seg / 2),
                "snr": float(max(np.max(sig[py, px]), np.max(full_resid[py, px]) / noise))
                if any(k >= n_faint for k in g)
                else float(np.max(sig[py, px])),
                "flux": float(np.sum(prof["flux"])),
                "peak_flux": float(np.max(prof["flux"]) / bin_px),
                "saturated": bool(np.any(prof["saturated"])),
                "n_pieces": len(g),
            }
        )  # fmt: skip
        profiles.append(prof)
    if not rows:
        return _empty_trails(), _empty_profiles()
    t = Table(rows=rows, names=_TRAIL_NAMES[1:])
    order = np.argsort(-np.asarray(t["length"]), kind="stable")
    t = t[order]
    t.add_column(np.arange(1, len(t) + 1), name="id", index=0)
    _units(t)
    stacked = []
    for new_id, k in enumerate(order, start=1):
        p = profiles[k]
        p.add_column(np.full(len(p), new_id), name="id", index=0)
        stacked.append(p)
    prof_t = vstack(stacked, metadata_conflicts="silent")
    prof_t.meta = {"bin_px": float(bin_px), "saturation": float(sat_level)}
    return t, prof_t


_TRAIL_NAMES = [
    "id", "x1", "y1", "x2", "y2", "length", "angle", "width", "snr", "flux", "peak_flux",
    "saturated", "n_pieces",
]  # fmt: skip
_TRAIL_DTYPES = [int] + [float] * 10 + [bool, int]


def _units(t: Table) -> None:
    for c_ in ("x1", "y1", "x2", "y2", "length", "width"):
        t[c_].unit = "pix"
    t["angle"].unit = "deg"
    t["flux"].unit = "adu"
    t["peak_flux"].unit = "adu / pix"


def _empty_trails() -> Table:
    t = Table(names=_TRAIL_NAMES, dtype=_TRAIL_DTYPES)
    _units(t)
    return t


def _empty_profiles() -> Table:
    t = Table(
        names=["id", "s", "x", "y", "flux", "saturated", "star"],
        dtype=[int, float, float, float, float, bool, bool],
    )
    for c_ in ("s", "x", "y"):
        t[c_].unit = "pix"
    t["flux"].unit = "adu"
    return t


def find_meteor_trails(image: np.ndarray, **kwargs: Any) -> Table:
    """Find meteor trails in one exposure.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The exposure (ADU).
    sky : ndarray of bool (H, W), optional
        ``True`` = sky. Default: :func:`skysift.detection.masks.scene_mask`
        (fisheye ring, trees and buildings on the horizon, the Moon's glare,
        captions).
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
        Shortest trail reported (px); pieces of half this length are kept
        for joining. Default 40.
    max_width : float, optional
        Largest RMS width (px) of a faint piece's mean profile across the
        fitted line; default ``max(2.5, FWHM)``. A PSF-wide trail measures about
        ``0.42 FWHM`` plus the 0.5-px sampling (1.6 px for a 2.5-px FWHM; the
        faint UMD meteor 2.2 px); the lines of the UMD false triggers (an
        insect's legs, a reflection's edges) measure 3.0 to 7.6 px.
    min_fill : float, optional
        Smallest fraction of a faint piece covered by trail pixels
        (straightness and continuity). Default 0.5.
    **kwargs
        And the options of :func:`find_trails_and_profiles` (``bright_sigma``,
        ``merge``, ``max_angle``, ``max_offset``, ``max_gap_fraction``,
        ``saturation``, ``bin_px``).

    Returns
    -------
    astropy.table.Table
        One row per trail, longest first: ``id``, ``x1``, ``y1``, ``x2``,
        ``y2`` (ends, px), ``length`` (px), ``angle`` (deg, [0, 180)),
        ``width`` (RMS width of the mean clipped profile across, px), ``snr``
        (peak significance of the filtered image along the trail; for a
        trail with a bright body, its peak pixel's SNR when larger), ``flux``
        (background-subtracted sum over the trail, ADU, the sum of its
        :func:`trail_profile`), ``peak_flux`` (brightest bin of the profile,
        ADU per px of length), ``saturated`` (any saturated pixel on the
        trail), ``n_pieces`` (collinear pieces joined). Empty when none is
        found.

    Raises
    ------
    InputError
        If the image is not 2-D or the sky mask has another shape.

    Notes
    -----
    The method is described in the module docstring (:mod:`skysift.bolide.trails`).
    """
    return find_trails_and_profiles(image, **kwargs)[0]
