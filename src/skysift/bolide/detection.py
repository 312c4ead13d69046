"""Bolide segmentation per frame: the clip's background and the classical difference-image mask.

The background of a short meteor video is the per-pixel median of its frames:
a bolide covers any one pixel for a few frames only, so the median keeps the
stars, the sky and the fixed obstructions and drops the meteor. The
difference ``frame - background`` holds what changed; its noise is measured
robustly on the sky.

:func:`classical_bolide_mask` is the learning-free baseline the learned
segmenter (:mod:`skysift.bolide.learned`) is scored against: the
difference smoothed by a 1-px Gaussian, thresholded at ``level`` times the
difference's noise (the level that defines the truth masks), with
components smaller than ``min_pixels`` dropped.

Masks are ``(H, W)`` bool, ``True`` = bolide; boxes ``(x0, y0, x1, y1)`` have
exclusive ends.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from skysift.errors import InputError

__all__ = [
    "BOLIDE_SEGMENTERS",
    "classical_bolide_mask",
    "clip_background",
    "difference_noise",
    "roi_slices",
]

#: Segmentation methods of :func:`skysift.bolide.pipeline.run_bolide`.
BOLIDE_SEGMENTERS = ("unet", "classical")


def clip_background(cube: np.ndarray) -> np.ndarray:
    """Per-pixel median of a ``(T, H, W)`` clip, float32 ``(H, W)``.

    Raises
    ------
    InputError
        If ``cube`` is not 3-D.
    """
    cube = np.asarray(cube)
    if cube.ndim != 3:
        msg = f"background needs a (T, H, W) clip, got shape {cube.shape}"
        raise InputError(msg)
    return np.nanmedian(cube, axis=0).astype(np.float32)


def difference_noise(diff: np.ndarray, sky: np.ndarray | None = None) -> float:
    """Robust sigma (1.4826 MAD) of a difference image on the sky, in its units.

    Returns 1.0 when nothing finite is left (a flat synthetic clip).
    """
    d = np.asarray(diff, dtype=np.float32)
    vals = d[sky] if sky is not None and sky.any() else d.ravel()
    vals = vals[np.isfinite(vals)]
    if vals.size > 400_000:
        vals = vals[:: vals.size // 400_000]
    if vals.size == 0:
        return 1.0
    s = 1.4826 * float(np.median(np.abs(vals - np.median(vals))))
    return s if s > 0 else 1.0


def roi_slices(
    roi: tuple[int, int, int, int] | None, shape: tuple[int, int]
) -> tuple[slice, slice]:
    """``(rows, cols)`` slices of a box, clipped to the frame; the whole frame for None.

    Raises
    ------
    InputError
        If the box is empty after clipping.
    """
    h, w = shape
    if roi is None:
        return slice(0, h), slice(0, w)
    x0, y0, x1, y1 = (int(v) for v in roi)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        msg = f"region of interest {roi} is empty inside a frame of shape {shape}"
        raise InputError(msg)
    return slice(y0, y1), slice(x0, x1)


def classical_bolide_mask(
    frame: np.ndarray,
    background: np.ndarray,
    noise: float | np.ndarray,
    roi: tuple[int, int, int, int] | None = None,
    *,
    level: float = 2.0,
    smooth_sigma: float = 1.0,
    min_pixels: int = 6,
    sky: np.ndarray | None = None,
) -> np.ndarray:
    """Difference-image bolide mask: the learning-free baseline.

    Parameters
    ----------
    frame, background : ndarray, shape (H, W)
        The frame and the clip's background (ADU).
    noise : float or ndarray (H, W)
        Noise sigma of ``frame - background`` (ADU).
    roi : (x0, y0, x1, y1), optional
        Only this box is segmented; the mask is False elsewhere. Default the
        whole frame.
    level : float, optional
        Threshold of the smoothed difference in units of ``noise`` (the
        unsmoothed noise): the mask estimates the pixels whose bolide signal
        reaches ``level`` sigma, the definition of the simulator's truth masks
        used in training and evaluation. Smoothing divides the noise by
        ``2 sqrt(pi) smooth_sigma`` (3.5 for 1 px), so 2 sigma of signal is 7
        sigma of the smoothed noise: noise alone almost never crosses it.
        Default 2.
    smooth_sigma : float, optional
        Gaussian smoothing before thresholding, pixels (0 = none). Default 1.
    min_pixels : int, optional
        Connected components smaller than this are dropped. Default 6.
    sky : ndarray of bool (H, W), optional
        ``True`` = sky; the mask is False elsewhere.

    Returns
    -------
    ndarray of bool, shape (H, W)

    Raises
    ------
    InputError
        If shapes differ or the box is empty.
    """
    frame = np.asarray(frame, dtype=np.float32)
    background = np.asarray(background, dtype=np.float32)
    if frame.shape != background.shape or frame.ndim != 2:
        msg = f"frame {frame.shape} and background {background.shape} must be the same 2-D shape"
        raise InputError(msg)
    rows, cols = roi_slices(roi, frame.shape)
    diff = np.nan_to_num(frame[rows, cols] - background[rows, cols])
    sig = np.asarray(noise, dtype=np.float32)
    sig = sig[rows, cols] if sig.ndim == 2 else sig
    if smooth_sigma > 0:
        diff = ndimage.gaussian_filter(diff, smooth_sigma)
    on = diff > level * sig
    if sky is not None:
        on &= np.asarray(sky, bool)[rows, cols]
    if min_pixels > 1 and on.any():
        labels, n = ndimage.label(on, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= min_pixels
        keep[0] = False
        on = keep[labels]
    out = np.zeros(frame.shape, dtype=bool)
    out[rows, cols] = on
    return out
