"""Motion zone of a video: where something moves, from dense optical flow (bolide report §6.2).

Between consecutive grey frames the dense optical flow ``(u, v)`` of
Farnebäck (2003, "Two-frame motion estimation based on polynomial
expansion", SCIA, LNCS 2749, 363) gives a motion magnitude
``sqrt(u**2 + v**2)`` per pixel. Magnitudes below a threshold θ (noise,
scintillation) are zeroed and the rest is summed over the frames into a
motion heat map ``M(x, y)``; the region of interest (the motion zone) is the
box around the significant part of ``M``. Stars do not move from one frame to
the next, so only meteors, aircraft, satellites, clouds and insects light up
``M``.

The flow can be computed on frames shrunk by ``scale`` and the maps brought
back to full size, which is several times faster on large frames (see
``benchmarks/bench_bolide.py``).

Pixel coordinates are 0-based, (0, 0) the centre of the first pixel; boxes
are ``(x0, y0, x1, y1)`` with ``x1``, ``y1`` exclusive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from skysift.errors import InputError

__all__ = ["MotionZone", "motion_zone", "to_grey8"]


@dataclass
class MotionZone:
    """Where and when something moves in a video.

    Attributes
    ----------
    heat : ndarray, shape (H, W), float32
        Motion heat map ``M``: thresholded flow magnitude summed over all
        consecutive frame pairs, in pixels (of full-size frames).
    roi : tuple of int or None
        ``(x0, y0, x1, y1)`` box of the motion zone (exclusive ends), with a
        margin; None when nothing moves.
    frame_motion : ndarray, shape (T,), float32
        Motion inside the zone per frame: the sum of the thresholded flow of
        the pairs the frame belongs to, in pixels.
    active : ndarray of bool, shape (T,)
        Frames with motion in the zone (``frame_motion > 0``).
    threshold : float
        The flow threshold θ used, pixels per frame (full size).
    scale : float
        The resolution factor the flow was computed at.
    """

    heat: np.ndarray
    roi: tuple[int, int, int, int] | None
    frame_motion: np.ndarray
    active: np.ndarray
    threshold: float
    scale: float

    @property
    def found(self) -> bool:
        """True when something moves."""
        return self.roi is not None


def to_grey8(cube: np.ndarray, sky: np.ndarray | None = None) -> np.ndarray:
    """Scale a ``(T, H, W)`` cube to 8-bit grey with one stretch for all frames.

    The stretch maps the 1st percentile of the median frame to 0 and its
    99.9th percentile to 255 (but at least 30 noise sigmas of the first frame
    above black, so that noise stays a few grey levels), linearly with
    clipping, so that a pixel's grey level means the same in every frame.

    Parameters
    ----------
    cube : ndarray, shape (T, H, W)
    sky : ndarray of bool, shape (H, W), optional
        Pixels used for the percentiles. Default all.

    Returns
    -------
    ndarray, shape (T, H, W), uint8
    """
    cube = np.asarray(cube, dtype=np.float32)
    ref = np.nanmedian(cube[:: max(1, len(cube) // 15)], axis=0)
    vals = ref[sky] if sky is not None and sky.any() else ref
    vals = vals[np.isfinite(vals)]
    lo, hi = np.percentile(vals, [1.0, 99.9]) if vals.size else (0.0, 1.0)
    hi = max(float(hi), float(lo) + 1.0)
    grey = (np.nan_to_num(cube, nan=float(lo)) - lo) * (255.0 / (hi - lo))
    return np.clip(grey, 0, 255).astype(np.uint8)


def _flow_magnitude(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Farnebäck parameters of the OpenCV documentation's dense-flow example.
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return np.hypot(flow[..., 0], flow[..., 1])


def motion_zone(
    cube: np.ndarray,
    *,
    threshold: float = 1.0,
    scale: float = 0.5,
    sky: np.ndarray | None = None,
    margin: int = 24,
    min_fraction: float = 0.1,
    min_area: int = 60,
    change_k: float = 4.0,
    progress: Callable[[float], None] | None = None,
) -> MotionZone:
    """Motion heat map and motion zone of a video (bolide report §6.2).

    Parameters
    ----------
    cube : ndarray, shape (T, H, W)
        The frames (any units), T >= 2.
    threshold : float, optional
        θ: flow magnitudes below this are zeroed, pixels per frame at full
        size. Default 1.
    scale : float, optional
        The flow is computed on frames resized by this factor (0 < scale <= 1)
        and the magnitudes mapped back. Default 0.5.
    sky : ndarray of bool, shape (H, W), optional
        ``True`` = sky; motion elsewhere (trees in the wind, caption clocks) is
        ignored. Default everywhere.
    margin : int, optional
        Pixels added on every side of the zone's box. Default 24.
    min_fraction : float, optional
        Connected parts of the thresholded heat map holding less than this
        fraction of the motion of the largest part are dropped before the box
        is taken (isolated flicker). Default 0.1.
    min_area : int, optional
        Connected parts of the thresholded heat map smaller than this
        (full-size pixels) are noise. Default 60.
    change_k : float, optional
        Flow is kept only where the two frames differ: where the absolute
        difference of the (Gaussian-smoothed, sigma 1 px) grey frames exceeds
        ``change_k`` times its noise at that pixel (1.4826 times the median
        absolute difference over all pairs, so brighter sky is not favoured). Flow in flat noisy sky has no
        such change and is dropped; 0 keeps the plain threshold of the
        report. Default 4.
    progress : callable, optional
        Called with the fraction done (0..1) after each frame pair.

    Returns
    -------
    MotionZone

    Raises
    ------
    InputError
        If ``cube`` is not 3-D with at least two frames, or ``scale`` or
        ``threshold`` is out of range.
    """
    cube = np.asarray(cube)
    if cube.ndim != 3 or cube.shape[0] < 2:
        msg = f"motion zone needs a (T, H, W) video with T >= 2, got shape {cube.shape}"
        raise InputError(msg)
    if not 0 < scale <= 1:
        msg = f"scale must be in (0, 1], got {scale!r}"
        raise InputError(msg)
    if not threshold >= 0:
        msg = f"threshold must be >= 0 pixels per frame, got {threshold!r}"
        raise InputError(msg)
    t, h, w = cube.shape
    if sky is not None and sky.shape != (h, w):
        msg = f"sky mask shape {sky.shape} differs from the frame shape {(h, w)}"
        raise InputError(msg)
    grey = to_grey8(cube, sky)
    if scale < 1:
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        grey = np.stack([cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in grey])
    sky_small = None
    if sky is not None:
        sky_small = cv2.resize(
            sky.astype(np.uint8), grey.shape[:0:-1], interpolation=cv2.INTER_NEAREST
        ).astype(bool)
    # flow in small pixels -> full-size pixels
    to_full = 1.0 / scale
    heat_small = np.zeros(grey.shape[1:], np.float32)
    pair_maps = []
    if change_k:
        smooth = np.stack([cv2.GaussianBlur(g.astype(np.float32), (0, 0), 1.0) for g in grey])
        dif_all = np.abs(np.diff(smooth, axis=0))
        # per-pixel noise of the frame-to-frame change: the median over the pairs
        # (a moving object covers a pixel in a few pairs only)
        sigma_pix = np.maximum(1.4826 * np.median(dif_all, axis=0), 0.25)
    for i in range(t - 1):
        mag = _flow_magnitude(grey[i], grey[i + 1]) * to_full
        mag[mag < threshold] = 0.0
        if change_k:
            mag[dif_all[i] < change_k * sigma_pix] = 0.0
        if sky_small is not None:
            mag[~sky_small] = 0.0
        heat_small += mag
        pair_maps.append(mag)
        if progress is not None:
            progress((i + 1) / (t - 1))
    roi_small = _zone(heat_small, min_fraction, max(4, round(min_area * scale**2)))
    frame_motion = np.zeros(t, np.float32)
    roi = None
    if roi_small is not None:
        keep = roi_small
        for i, mag in enumerate(pair_maps):
            m = float(mag[keep].sum())
            frame_motion[i] += m
            frame_motion[i + 1] += m
        ys, xs = np.nonzero(keep)
        x0 = int(np.floor(xs.min() * to_full)) - margin
        y0 = int(np.floor(ys.min() * to_full)) - margin
        x1 = int(np.ceil((xs.max() + 1) * to_full)) + margin
        y1 = int(np.ceil((ys.max() + 1) * to_full)) + margin
        roi = (max(0, x0), max(0, y0), min(w, x1), min(h, y1))
    heat = (
        cv2.resize(heat_small, (w, h), interpolation=cv2.INTER_LINEAR)
        if heat_small.shape != (h, w)
        else heat_small
    )
    return MotionZone(
        heat=heat.astype(np.float32),
        roi=roi,
        frame_motion=frame_motion,
        active=frame_motion > 0,
        threshold=float(threshold),
        scale=float(scale),
    )


def _zone(heat: np.ndarray, min_fraction: float, min_pixels: int) -> np.ndarray | None:
    """Pixels of the significant connected parts of a thresholded heat map."""
    on = heat > 0
    if not on.any():
        return None
    labels, n = ndimage.label(on, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    sums = ndimage.sum(heat, labels, index=np.arange(1, n + 1))
    sums = np.where(sizes >= min_pixels, sums, 0.0)
    if not sums.max() > 0:
        return None
    good = np.flatnonzero(sums >= min_fraction * float(sums.max())) + 1
    keep = np.isin(labels, good)
    return keep if keep.any() else None
