"""Automatic masks of what is not sky: fisheye ring, horizon obstructions, caption text.

All masks here are data-quality masks: ``True`` = not sky (exclude).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from skysift.errors import InputError

__all__ = [
    "SkyMask",
    "SceneMask",
    "sky_mask",
    "scene_mask",
    "fisheye_circle",
    "caption_text_mask",
    "obstruction_mask",
    "horizon_mask",
    "glare_mask",
    "pixel_noise",
]


@dataclass
class SkyMask:
    """The parts of a sky mask and their union.

    Attributes
    ----------
    mask : ndarray of bool, shape (H, W)
        ``True`` = not sky (union of the parts below).
    outside_circle : ndarray of bool, shape (H, W)
        Outside the fisheye's illuminated circle (all ``False`` if none found).
    obstruction : ndarray of bool, shape (H, W)
        Horizon obstructions: dark silhouettes (trees, buildings, telescope
        structures) connected to the horizon, and large saturated lights.
    text : ndarray of bool, shape (H, W)
        Burned-in caption text.
    circle : tuple of float or None
        ``(xc, yc, radius)`` of the fisheye circle in pixels, or ``None``.
    """

    mask: np.ndarray
    outside_circle: np.ndarray
    obstruction: np.ndarray
    text: np.ndarray
    circle: tuple[float, float, float] | None


def _smooth_level(image: np.ndarray, scale: int) -> tuple[np.ndarray, int]:
    """Median-filtered copy at 1/scale resolution (stars removed)."""
    h, w = image.shape
    small = cv2.resize(
        image, (max(8, w // scale), max(8, h // scale)), interpolation=cv2.INTER_AREA
    )
    small = ndimage.median_filter(small, size=5, mode="nearest")
    return small.astype(np.float32), scale


def _otsu(values: np.ndarray) -> float:
    """Otsu threshold of a 1-D sample (Otsu 1979, IEEE SMC 9, 62)."""
    hist, edges = np.histogram(values, bins=256)
    centres = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def fisheye_circle(
    image: np.ndarray, *, min_contrast: float = 8.0
) -> tuple[float, float, float] | None:
    """Find the illuminated circle of a fisheye image.

    The image is smoothed at low resolution, split into dark and bright
    regions by Otsu's threshold, and a circle is fitted to the boundary of
    the largest bright region (its convex hull, so obstructions on the
    horizon do not shrink it).

    Parameters
    ----------
    image : ndarray, shape (H, W)
    min_contrast : float, optional
        Minimum contrast between the inside and outside levels, in units of
        the outside's robust noise, for a circle to be reported. Default 8.

    Returns
    -------
    tuple of float or None
        ``(xc, yc, radius)`` in pixels, or ``None`` when the frame is not a
        fisheye frame with a dark surround (e.g. a narrow field).
    """
    data = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=float(np.nanmin(image)))
    small, scale = _smooth_level(data, 8)
    thr = _otsu(small.ravel())
    bright = small > thr
    dark_vals, bright_vals = small[~bright], small[bright]
    if dark_vals.size < 0.05 * small.size or bright_vals.size < 0.2 * small.size:
        return None
    noise = 1.4826 * np.median(np.abs(dark_vals - np.median(dark_vals))) + 1e-6
    if (np.median(bright_vals) - np.median(dark_vals)) < min_contrast * noise:
        return None
    lab, n = ndimage.label(bright)
    if n == 0:
        return None
    sizes = ndimage.sum(bright, lab, index=np.arange(1, n + 1))
    comp = lab == (1 + int(np.argmax(sizes)))
    contours, _ = cv2.findContours(comp.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = np.vstack([c.reshape(-1, 2) for c in contours]).astype(np.float64)
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    # Densify the hull and fit a circle (algebraic least squares, Kasa 1976).
    seg = np.vstack(
        [
            np.linspace(hull[i], hull[(i + 1) % len(hull)], 20, endpoint=False)
            for i in range(len(hull))
        ]
    )
    h, w = small.shape
    inside = (seg[:, 0] > 0.5) & (seg[:, 0] < w - 1.5) & (seg[:, 1] > 0.5) & (seg[:, 1] < h - 1.5)
    if inside.sum() < 0.3 * len(seg):
        return None  # the bright region fills the frame: no visible circle
    seg = seg[inside]
    A = np.column_stack([2 * seg[:, 0], 2 * seg[:, 1], np.ones(len(seg))])
    bvec = (seg**2).sum(axis=1)
    cx, cy, c = np.linalg.lstsq(A, bvec, rcond=None)[0]
    r = np.sqrt(c + cx**2 + cy**2)
    # Back to full-resolution 0-based pixel coordinates.
    return float((cx + 0.5) * scale - 0.5), float((cy + 0.5) * scale - 0.5), float(r * scale)


def obstruction_mask(
    image: np.ndarray,
    region: np.ndarray | None = None,
    *,
    dark_fraction: float = 0.5,
) -> np.ndarray:
    """Mask dark silhouettes on the horizon (trees, buildings, telescope structures).

    At night such obstructions are darker than the sky around them. The
    star-free sky level is estimated at low resolution; pixels darker than
    ``dark_fraction`` of the way from the sky's median to the darkest level,
    in regions connected to the edge of ``region`` (the horizon), are
    masked. Bright saturated lights larger than a star are masked too.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    region : ndarray of bool, shape (H, W), optional
        The candidate sky (``True`` = inside, e.g. the fisheye circle).
    dark_fraction : float, optional
        Depth of the threshold between the sky median (0) and the outside
        level (1). Default 0.5.

    Returns
    -------
    ndarray of bool, shape (H, W)
        ``True`` = obstruction.
    """
    data = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=float(np.nanmin(image)))
    h, w = data.shape
    small, scale = _smooth_level(data, 4)
    sh, sw = small.shape
    reg = (
        np.ones_like(small, dtype=bool)
        if region is None
        else cv2.resize(region.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST).astype(
            bool
        )
    )
    if reg.sum() < 100:
        return np.zeros((h, w), dtype=bool)
    sky = float(np.median(small[reg]))
    outside = (
        float(np.percentile(small[~reg], 50))
        if (~reg).any()
        else float(np.percentile(small[reg], 1))
    )
    if sky - outside <= 0:
        return np.zeros((h, w), dtype=bool)
    # Local sky level: a wide median of the inside, to follow gradients (light domes).
    dark = reg & (small < sky - dark_fraction * (sky - outside))
    dark = ndimage.binary_opening(dark, iterations=1)
    # Keep dark regions that touch the horizon (the edge of the region).
    edge = reg & ~ndimage.binary_erosion(reg, iterations=3, border_value=0)
    lab, n = ndimage.label(dark)
    if n:
        touching = np.unique(lab[edge & dark])
        dark = np.isin(lab, touching[touching > 0])
    # Large saturated or very bright lights (street lamps, the Moon's glare, dome lights).
    vmax = float(np.nanmax(data))
    bright_full = data >= 0.98 * vmax
    lab_b, nb = ndimage.label(bright_full)
    big = np.zeros((h, w), dtype=bool)
    if nb:
        sizes = ndimage.sum(bright_full, lab_b, index=np.arange(1, nb + 1))
        large = np.flatnonzero(sizes > 400) + 1
        if large.size:
            big = ndimage.binary_dilation(np.isin(lab_b, large), iterations=15)
    dark_full = cv2.resize(dark.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(
        bool
    )
    dark_full = ndimage.binary_dilation(dark_full, iterations=scale)
    return dark_full | big


def caption_text_mask(
    image: np.ndarray, *, min_chars: int = 4, border_band: float = 0.2
) -> np.ndarray:
    """Mask burned-in caption text (station names, dates, exposure lines).

    Caption text is made of small, sharp, bright strokes aligned in
    horizontal lines. Sharp bright features are isolated with a
    morphological top-hat, merged along rows with a wide horizontal closing,
    and a line of text is kept when it is much wider than tall, between 6
    and 60 px high, lies in the outer ``border_band`` of the frame (where
    cameras burn captions), and holds at least ``min_chars`` separate
    characters (runs of columns separated by gaps) of strokes at least 10
    robust sigma above the top-hat's noise. Stars are
    isolated round blobs and fail the stroke count.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    min_chars : int, optional
        Minimum number of separate strokes in a text line. Default 4.
    border_band : float, optional
        Width of the outer band, as a fraction of the image size, where a
        text line's centre must lie. Default 0.2.

    Returns
    -------
    ndarray of bool, shape (H, W)
        ``True`` = caption text (a padded rectangle around each line).
    """
    data = np.nan_to_num(np.asarray(image, dtype=np.float32))
    h, w = data.shape
    lo, hi = np.percentile(data, [1, 99.99])
    norm = np.clip((data - lo) / max(hi - lo, 1e-6), 0, 1)
    img8 = (norm * 255).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
    tophat = cv2.morphologyEx(img8, cv2.MORPH_TOPHAT, k)
    strokes_img = tophat
    med = float(np.median(strokes_img))
    mad = 1.4826 * float(np.median(np.abs(strokes_img - med))) + 1.0
    thr = max(60.0, med + 10.0 * mad)
    strokes = strokes_img >= thr
    n_s = int(strokes.sum())
    mask = np.zeros((h, w), dtype=bool)
    if n_s == 0:
        return mask
    closed = cv2.morphologyEx(
        strokes.astype(np.uint8),
        cv2.MORPH_CLOSE,
        cv2.getStructuringElement(cv2.MORPH_RECT, (15, 5)),
    )
    lab, n = ndimage.label(closed)
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        hh = sl[0].stop - sl[0].start
        ww = sl[1].stop - sl[1].start
        if not (6 <= hh <= 60 and ww >= 3 * hh and ww >= 30):
            continue
        # Captions sit in the outer band of the frame (corners and edges).
        yc = 0.5 * (sl[0].start + sl[0].stop) / h
        xc = 0.5 * (sl[1].start + sl[1].stop) / w
        if min(yc, 1 - yc) > border_band and min(xc, 1 - xc) > border_band:
            continue
        region = lab[sl] == i
        # Characters: runs of columns holding stroke pixels, separated by gaps.
        cols = (strokes[sl] & region).any(axis=0).astype(np.int8)
        n_strokes = int(np.count_nonzero(np.diff(np.concatenate([[0], cols])) == 1))
        fill = strokes[sl][region].mean()
        if n_strokes >= min_chars and 0.05 <= fill <= 0.95:
            pad = 4
            mask[
                max(0, sl[0].start - pad) : sl[0].stop + pad,
                max(0, sl[1].start - pad) : sl[1].stop + pad,
            ] = True
    return mask


def sky_mask(image: np.ndarray, *, fisheye: bool | None = None, margin: float = 0.0) -> SkyMask:
    """Mask everything in a frame that is not sky.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    fisheye : bool or None, optional
        ``True`` forces the fisheye-circle search, ``False`` skips it,
        ``None`` (default) detects it automatically.
    margin : float, optional
        Extra pixels masked inside the fisheye circle's edge. Default 0.

    Returns
    -------
    SkyMask
        The union mask (``True`` = not sky) and its parts.

    Raises
    ------
    InputError
        If the image is not 2-D.
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        msg = f"sky mask needs a 2-D image, got shape {data.shape}"
        raise InputError(msg)
    h, w = data.shape
    yy, xx = np.mgrid[0:h, 0:w]
    circle = fisheye_circle(data) if fisheye is not False else None
    if circle is not None:
        xc, yc, r = circle
        outside = (xx - xc) ** 2 + (yy - yc) ** 2 > (r - margin) ** 2
    else:
        outside = np.zeros((h, w), dtype=bool)
    obstruction = obstruction_mask(data, ~outside) if circle is not None else np.zeros((h, w), bool)
    text = caption_text_mask(data)
    union = outside | obstruction | text | ~np.isfinite(data)
    return SkyMask(union, outside, obstruction & ~outside, text, circle)


@dataclass
class SceneMask:
    """A sky mask for photographs with a landscape: its parts and their union.

    Made by :func:`scene_mask`. All masks are ``True`` = not sky (exclude).

    Attributes
    ----------
    mask : ndarray of bool, shape (H, W)
        Union of the parts below (and non-finite pixels).
    outside_circle : ndarray of bool, shape (H, W)
        Outside the fisheye's illuminated circle (all ``False`` if none found).
    horizon : ndarray of bool, shape (H, W)
        Trees, roofs and buildings on the horizon (:func:`horizon_mask`).
    glare : ndarray of bool, shape (H, W)
        The Moon's (or a lamp's) glare (:func:`glare_mask`).
    text : ndarray of bool, shape (H, W)
        Burned-in caption text (:func:`caption_text_mask`).
    circle : tuple of float or None
        ``(xc, yc, radius)`` of the fisheye circle in pixels, or ``None``.
    glare_discs : list of tuple of float
        ``(x, y, radius)`` in pixels of every masked glare disc.
    """

    mask: np.ndarray
    outside_circle: np.ndarray
    horizon: np.ndarray
    glare: np.ndarray
    text: np.ndarray
    circle: tuple[float, float, float] | None
    glare_discs: list[tuple[float, float, float]]


def pixel_noise(image: np.ndarray, region: np.ndarray | None = None) -> float:
    """Robust per-pixel noise (ADU): the MAD of the image minus its 5x5 median, scaled.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    region : ndarray of bool, shape (H, W), optional
        Pixels to use (``True`` = use). Default all.

    Returns
    -------
    float
        ``1.4826 MAD / 1.1`` of the high-pass residual (the factor corrects
        for the median's own noise), at least 1e-6.
    """
    data = np.nan_to_num(np.asarray(image, dtype=np.float32))
    hp = data - cv2.medianBlur(data, 5)
    v = hp[region] if region is not None else hp.ravel()
    if v.size == 0:
        return 1e-6
    v = v[:: max(1, v.size // 200_000)]
    return max(1.4826 * float(np.median(np.abs(v - np.median(v)))) / 1.1, 1e-6)


def _edge_components(cand: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Parts of ``cand`` connected to the edge of ``region`` or of the frame."""
    edge = region & ~ndimage.binary_erosion(region, iterations=2, border_value=0)
    lab, n = ndimage.label(cand)
    if not n:
        return cand
    touching = np.unique(lab[edge & cand])
    return np.isin(lab, touching[touching > 0])


def horizon_mask(
    image: np.ndarray,
    region: np.ndarray | None = None,
    *,
    level_sigma: float = 1.5,
    level_scatter: float = 6.0,
    texture_factor: float = 2.5,
    min_area_fraction: float = 0.002,
    margin: int = 8,
) -> np.ndarray:
    """Mask trees, roofs and buildings that rise from the horizon, dark or lit.

    At 1/4 resolution the star-free level (5x5 median) is compared with a
    smooth sky model (a quadratic surface fitted to the region with 3-sigma
    clipping, which follows light domes and twilight gradients), and the
    local texture (block mean of ``|image - 5x5 median|``, then a 5x5
    median, so isolated stars do not count) with the sky's median texture.
    A low-resolution pixel is a candidate when it departs from the sky model
    by more than ``level_sigma`` times the per-pixel noise and
    ``level_scatter`` times the sky's scatter about the model (dark
    silhouettes, lit walls and roofs) or is ``texture_factor`` times more
    textured than the sky (branches, foliage, lit masonry). Candidates
    connected to the edge of ``region`` (the horizon) or of the frame and
    larger than ``min_area_fraction`` of the region are kept, their holes
    filled, and grown by ``margin`` pixels.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    region : ndarray of bool, shape (H, W), optional
        The candidate sky (``True`` = inside, e.g. the fisheye circle).
        Default the whole frame.
    level_sigma : float, optional
        Departure from the sky model, in units of the per-pixel noise
        (:func:`pixel_noise`), that marks an obstruction. Default 1.5 (the
        median-filtered level is about 10 times less noisy than a pixel).
    level_scatter : float, optional
        The departure must also exceed this many times the robust scatter
        of the sky's level about the model (light domes are not quadratic).
        Default 6.
    texture_factor : float, optional
        Texture, relative to the sky's median texture, that marks an
        obstruction. Default 2.5.
    min_area_fraction : float, optional
        Smallest obstruction kept, as a fraction of the region. Default 0.002.
    margin : int, optional
        Growth of the mask in pixels. Default 8.

    Returns
    -------
    ndarray of bool, shape (H, W)
        ``True`` = obstruction.

    Raises
    ------
    InputError
        If the image is not 2-D or the region has another shape.
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        msg = f"horizon mask needs a 2-D image, got shape {data.shape}"
        raise InputError(msg)
    h, w = data.shape
    region = np.ones((h, w), bool) if region is None else np.asarray(region, bool)
    if region.shape != data.shape:
        msg = f"region shape {region.shape} differs from the image shape {data.shape}"
        raise InputError(msg)
    data = np.nan_to_num(data, nan=float(np.nanmin(data)) if np.isfinite(data).any() else 0.0)
    small, scale = _smooth_level(data, 4)
    sh, sw = small.shape
    reg = cv2.resize(region.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
    out = np.zeros((h, w), bool)
    if reg.sum() < 100:
        return out
    noise = pixel_noise(data, region)
    hp = np.abs(data - cv2.medianBlur(data, 5))
    tex = cv2.resize(hp, (sw, sh), interpolation=cv2.INTER_AREA)
    tex = ndimage.median_filter(tex, size=5, mode="nearest")
    # quadratic sky model with clipping
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float64)
    xn, yn = xx / sw - 0.5, yy / sh - 0.5
    basis = np.stack([np.ones_like(xn), xn, yn, xn * xn, xn * yn, yn * yn], axis=-1)
    # start from the middle half of the levels: dark trees and lit walls left out
    q1, q3 = np.percentile(small[reg], [25, 75])
    use = reg & (small >= q1) & (small <= q3)
    model = np.full(small.shape, float(np.median(small[reg])))
    for _ in range(6):
        coef = np.linalg.lstsq(basis[use], small[use].astype(np.float64), rcond=None)[0]
        model = basis @ coef
        r = small - model
        s = 1.4826 * float(np.median(np.abs(r[use] - np.median(r[use])))) + 1e-6
        new = reg & (np.abs(r) < 3.0 * s) & (tex < texture_factor * np.median(tex[use]))
        if new.sum() < 50 or np.array_equal(new, use):
            break
        use = new
    sky_tex = float(np.median(tex[use])) + 1e-6
    # the quadratic follows smooth gradients only roughly: a departure counts
    # when it is also well beyond the sky's own scatter about the model
    r = (small - model)[use]
    scatter = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    dev = np.abs(small - model) > max(level_sigma * noise, level_scatter * scatter)
    cand = reg & (dev | (tex > texture_factor * sky_tex))
    # cv2's morphology leaves the frame's border neutral (scipy's erodes it)
    k3 = np.ones((3, 3), np.uint8)
    c8 = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_CLOSE, k3, iterations=2)
    cand = cv2.morphologyEx(c8 & reg.astype(np.uint8), cv2.MORPH_OPEN, k3) > 0
    cand = _edge_components(cand, reg)
    lab, n = ndimage.label(cand)
    if n:
        sizes = ndimage.sum(cand, lab, index=np.arange(1, n + 1))
        big = np.flatnonzero(sizes >= min_area_fraction * reg.sum()) + 1
        cand = np.isin(lab, big)
    cand = ndimage.binary_fill_holes(cand)
    if not cand.any():
        return out
    full = cv2.resize(cand.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    if margin > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        full = cv2.dilate(full.astype(np.uint8), k) > 0
    return full & region


def glare_mask(
    image: np.ndarray,
    *,
    saturation: float | None = None,
    min_area: int = 80,
    max_axis_ratio: float = 2.0,
    noise_factor: float = 2.0,
    ignore: np.ndarray | None = None,
    margin: float = 0.0,
) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """Mask the glare of the Moon or a lamp: a round saturated blob and its halo.

    Every round blob of saturated pixels (at least ``min_area`` pixels, axis
    ratio of its second moments at most ``max_axis_ratio``: a meteor's
    saturated body is elongated and is kept) is masked over a disc out to
    the radius where the azimuthal median of the star-free level (1/4
    resolution, 5x5 median) stops falling: where its drop over the next
    40 px is below ``noise_factor / 2`` times the per-pixel noise, which for
    a glow falling as ``r**-3`` (scattered moonlight) is where the glow is
    about ``noise_factor`` times the noise above the sky. Pixels in
    ``ignore`` (caption text) are never taken as a blob.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    saturation : float, optional
        Saturation level (ADU). Default: 98 % of the image's maximum.
    min_area : int, optional
        Smallest saturated blob (pixels). Default 80 (a 10-px disc).
    max_axis_ratio : float, optional
        Largest ratio of the blob's major to minor axis. Default 2.
    noise_factor : float, optional
        Glow level, in units of the per-pixel noise, where the disc ends.
        Default 2.
    ignore : ndarray of bool, shape (H, W), optional
        ``True`` = never part of a blob (e.g. the caption text).
    margin : float, optional
        Pixels added to every disc's radius. Default 0.

    Returns
    -------
    mask : ndarray of bool, shape (H, W)
        ``True`` = glare.
    discs : list of tuple of float
        ``(x, y, radius)`` in pixels of every masked disc.

    Raises
    ------
    InputError
        If the image is not 2-D.
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        msg = f"glare mask needs a 2-D image, got shape {data.shape}"
        raise InputError(msg)
    h, w = data.shape
    data = np.nan_to_num(data, nan=float(np.nanmin(data)) if np.isfinite(data).any() else 0.0)
    out = np.zeros((h, w), bool)
    sat = 0.98 * float(data.max()) if saturation is None else float(saturation)
    blobs = data >= sat
    if ignore is not None:
        blobs &= ~np.asarray(ignore, bool)
    lab, n = ndimage.label(blobs, structure=np.ones((3, 3)))
    if not n:
        return out, []
    small, scale = _smooth_level(data, 4)
    sh, sw = small.shape
    syy, sxx = np.mgrid[0:sh, 0:sw]
    noise = pixel_noise(data)
    discs: list[tuple[float, float, float]] = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        ys, xs = np.nonzero(lab[sl] == i)
        if xs.size < min_area:
            continue
        cov = np.cov(np.vstack([xs, ys]).astype(float)) + 1e-3 * np.eye(2)
        ev = np.linalg.eigvalsh(cov)
        if np.sqrt(ev[1] / ev[0]) > max_axis_ratio:
            continue
        xc, yc = xs.mean() + sl[1].start, ys.mean() + sl[0].start
        r_sat = float(np.sqrt(xs.size / np.pi))
        # azimuthal median of the low-resolution level in 1-px (low-res) rings
        rr = np.hypot((sxx + 0.5) * scale - 0.5 - xc, (syy + 0.5) * scale - 0.5 - yc) / scale
        r_max = int(0.5 * np.hypot(sh, sw))
        ring = np.minimum(rr.astype(int), r_max)
        counts = np.bincount(ring.ravel(), minlength=r_max + 1)
        prof = np.full(r_max + 1, np.nan)
        order = np.argsort(ring.ravel(), kind="stable")
        vals = small.ravel()[order]
        starts = np.concatenate([[0], np.cumsum(counts)])
        for k in range(r_max + 1):
            if counts[k]:
                prof[k] = np.median(vals[starts[k] : starts[k + 1]])
        # the glow ends where it stops falling: the drop over the next ~40 px is
        # below half the noise factor (a glow falling as r**-3 is then at about
        # ``noise_factor`` times the noise); the median of a ring ignores stars,
        # and a roof or tree that fills less than half of it
        step = max(2, round(40 / scale))
        prof = np.concatenate([prof, np.full(step, prof[-1])])
        drop = prof[:-step] - prof[step:]
        rad = np.arange(r_max + 1) * scale
        below = np.flatnonzero((drop < 0.5 * noise_factor * noise) & (rad > r_sat))
        radius = float(rad[below[0]] + scale) if below.size else float(rad[-1])
        radius = max(radius, 1.5 * r_sat + 5.0) + margin
        yy, xx = np.ogrid[0:h, 0:w]
        out |= (xx - xc) ** 2 + (yy - yc) ** 2 <= radius**2
        discs.append((float(xc), float(yc), radius))
    return out, discs


def scene_mask(
    image: np.ndarray,
    *,
    fisheye: bool | None = None,
    horizon: bool = True,
    glare: bool = True,
    text: bool = True,
) -> SceneMask:
    """Mask what is not open sky in a photograph: fisheye ring, horizon, glare, captions.

    Unlike :func:`sky_mask` (made for calibration: it masks any large
    saturated area, a fireball's body included) this keeps elongated
    saturated features, and looks for the horizon in narrow-field
    photographs too.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    fisheye : bool or None, optional
        ``True`` forces the fisheye-circle search, ``False`` skips it,
        ``None`` (default) detects it automatically.
    horizon, glare, text : bool, optional
        Make the :func:`horizon_mask`, :func:`glare_mask` and
        :func:`caption_text_mask` parts. Default True.

    Returns
    -------
    SceneMask

    Raises
    ------
    InputError
        If the image is not 2-D.
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        msg = f"scene mask needs a 2-D image, got shape {data.shape}"
        raise InputError(msg)
    h, w = data.shape
    none = np.zeros((h, w), bool)
    circle = fisheye_circle(data) if fisheye is not False else None
    outside = none.copy()
    if circle is not None:
        xc, yc, r = circle
        yy, xx = np.ogrid[0:h, 0:w]
        outside = (xx - xc) ** 2 + (yy - yc) ** 2 > r**2
    txt = caption_text_mask(data) if text else none.copy()
    glare_part, discs = glare_mask(data, ignore=txt) if glare else (none.copy(), [])
    # the glare is left out of the horizon's sky model: it is not a smooth gradient
    hor = horizon_mask(data, ~outside & ~glare_part) if horizon else none.copy()
    # then the discs grow by 20 px, half a trail filter's length: the filter would
    # sum the last of the glow along a line tangent to a disc into a false trail
    discs = [(x, y, r + 20.0) for x, y, r in discs]
    yy, xx = np.ogrid[0:h, 0:w]
    for x, y, r in discs:
        glare_part |= (xx - x) ** 2 + (yy - y) ** 2 <= r**2
    union = outside | hor | glare_part | txt | ~np.isfinite(data)
    return SceneMask(union, outside, hor & ~outside, glare_part, txt, circle, discs)
