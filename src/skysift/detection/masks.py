"""Automatic masks of what is not sky: fisheye ring, horizon obstructions, caption text.

All masks here are data-quality masks: ``True`` = not sky (exclude).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from skysift.errors import InputError

__all__ = ["SkyMask", "sky_mask", "fisheye_circle", "caption_text_mask", "obstruction_mask"]


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
