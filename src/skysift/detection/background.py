"""Background and noise maps: SExtractor-style mesh background (via ``sep``) and morphological opening."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import sep

from skysift._validation import check_image
from skysift.errors import InputError, SkysiftError

__all__ = ["BackgroundMap", "estimate_background", "opening_background", "opening_background_rms"]


@dataclass
class BackgroundMap:
    """A background level and noise map of an image.

    Attributes
    ----------
    level : ndarray, shape (H, W)
        Background level per pixel, in the image's units.
    rms : ndarray, shape (H, W)
        Background noise (1-sigma) per pixel, in the image's units.
    global_level, global_rms : float
        Image-wide background level and noise.
    """

    level: np.ndarray
    rms: np.ndarray
    global_level: float
    global_rms: float


def estimate_background(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    box_size: int = 64,
    filter_size: int = 3,
) -> BackgroundMap:
    """Estimate the background level and noise of an image.

    The image is divided into ``box_size`` meshes; in each a sigma-clipped
    mode estimate is taken, the mesh grid is median-filtered over
    ``filter_size`` meshes and interpolated with a bicubic spline
    (Bertin & Arnouts 1996, A&AS 117, 393, §3.1, as implemented by ``sep``).

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The image.
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = pixel excluded (bad or not sky).
    box_size : int, optional
        Mesh size in pixels. Default 64.
    filter_size : int, optional
        Median filter size in meshes. Default 3.

    Returns
    -------
    BackgroundMap

    Raises
    ------
    InputError
        If the image is not 2-D or has no usable pixel.
    """
    data, bad = check_image(image, mask, what="background")
    if bad.all():
        msg = "background: every pixel is masked or not finite"
        raise InputError(msg)
    if bad.any():
        # a fill value only (sep ignores masked pixels): a sub-sampled median is enough
        good = data[~bad]
        data = data.copy()
        data[bad] = np.float32(np.median(good[:: max(1, good.size // 200_000)]))
    box = int(max(8, min(box_size, min(data.shape) // 2)))
    bkg = sep.Background(data, mask=bad, bw=box, bh=box, fw=filter_size, fh=filter_size)
    level = bkg.back()
    rms = bkg.rms()
    # Meshes that were entirely masked get interpolated values; guard against zeros.
    floor = max(float(bkg.globalrms) * 0.1, 1e-6)
    rms = np.maximum(rms, floor).astype(np.float32)
    return BackgroundMap(level, rms, float(bkg.globalback), float(bkg.globalrms))


def _disk(radius: float) -> np.ndarray:
    """Flat disk structuring element of ``radius`` pixels (uint8, odd side)."""
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy <= radius * radius + 1e-9).astype(np.uint8)


def opening_background(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    radius: float = 6.0,
    smooth_sigma: float = 0.0,
    level_correction: bool = True,
    box_size: int = 64,
) -> np.ndarray:
    """Background by grey-scale morphological opening (a "rolling ball" background).

    The opening (erosion then dilation with a flat disk of ``radius`` pixels,
    OpenCV ``erode``/``dilate``) keeps every structure wider than the disk
    and cuts everything narrower (stars, hot pixels, noise peaks), so
    ``image - opening`` (the white top-hat) keeps the point sources on a sky
    that follows structure down to the disk's scale, where a mesh background
    cannot. With ``smooth_sigma`` the opening runs on the image smoothed by a
    Gaussian of that sigma, which lowers the noise the erosion follows. The
    opening runs along the lower envelope of the noise, so its level is then
    raised by the local median of ``image - opening`` (a sigma-clipped mesh
    estimate of ``box_size`` pixels). Masked pixels take no part: they never
    lower an erosion nor raise a dilation.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The image, any units.
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = excluded (not sky, bad). Masked pixels, and pixels no disk
        of unmasked pixels reaches, keep the image's value.
    radius : float, optional
        Disk radius in pixels (larger than the star images, about 1.5 FWHM
        or more). Default 6.
    smooth_sigma : float, optional
        Gaussian smoothing (pixels) before the opening; 0 = none. Default 0.
    level_correction : bool, optional
        Add back the local median of ``image - opening``. Default True.
    box_size : int, optional
        Mesh size (pixels) of the level correction. Default 64.

    Returns
    -------
    background : ndarray, shape (H, W), float32
        The background, in the units of ``image``.

    Raises
    ------
    InputError
        If the image is not 2-D, the mask has another shape, or ``radius``
        or ``smooth_sigma`` is out of range.

    References
    ----------
    Soille, *Morphological Image Analysis* (2003), §4.2 (opening) and §4.4
    (top-hat); Sternberg 1983, *Computer* 16(1), 22 (rolling ball); bolide
    report §4.1 (star-free backgrounds by opening).
    """
    return _opening(image, mask, radius, smooth_sigma, level_correction, box_size, False)[0]


def opening_background_rms(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    radius: float = 6.0,
    smooth_sigma: float = 0.0,
    level_correction: bool = True,
    box_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """The opening background of :func:`opening_background` and the noise beside it.

    The noise is the sigma-clipped rms of ``image - opening`` on a mesh of
    ``box_size`` pixels: sky structure wider than the disk does not inflate
    it, as it inflates the rms of a mesh on the image itself.

    Parameters
    ----------
    image, mask, radius, smooth_sigma, level_correction, box_size
        As for :func:`opening_background`.

    Returns
    -------
    background : ndarray, shape (H, W), float32
        The background, in the units of ``image``.
    rms : ndarray, shape (H, W), float32
        The noise (1-sigma) per pixel, in the units of ``image`` (the image's
        global rms where no mesh could be measured).

    Raises
    ------
    InputError
        As for :func:`opening_background`.
    """
    bkg, rms = _opening(image, mask, radius, smooth_sigma, level_correction, box_size, True)
    return bkg, rms


def _opening(
    image: np.ndarray,
    mask: np.ndarray | None,
    radius: float,
    smooth_sigma: float,
    level_correction: bool,
    box_size: int,
    return_rms: bool,
) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        msg = f"opening_background: image must be 2-D, got shape {data.shape}"
        raise InputError(msg)
    bad = np.zeros(data.shape, bool) if mask is None else np.asarray(mask, bool)
    if bad.shape != data.shape:
        msg = (
            f"opening_background: mask shape {bad.shape} differs from the image shape {data.shape}"
        )
        raise InputError(msg)
    bad = bad | ~np.isfinite(data)
    if not (np.isfinite(radius) and radius > 0):
        msg = f"radius must be a positive number of pixels, got {radius!r}"
        raise InputError(msg)
    if not (np.isfinite(smooth_sigma) and smooth_sigma >= 0):
        msg = f"smooth_sigma must be >= 0 pixels, got {smooth_sigma!r}"
        raise InputError(msg)
    kernel = _disk(radius)
    work = np.where(bad, np.float32(0), data).astype(np.float32)
    if smooth_sigma > 0:
        work = cv2.GaussianBlur(work, (0, 0), float(smooth_sigma), borderType=cv2.BORDER_REPLICATE)
    work = np.where(bad, np.float32(np.inf), work).astype(np.float32)
    eroded = cv2.erode(work, kernel, borderType=cv2.BORDER_REPLICATE)
    eroded[bad] = -np.inf
    opened = cv2.dilate(eroded, kernel, borderType=cv2.BORDER_REPLICATE)
    unreached = ~np.isfinite(opened)
    rms = None
    if level_correction or return_rms:
        resid = np.where(bad | unreached, 0.0, data - opened).astype(np.float32)
        try:
            est = estimate_background(resid, bad | unreached, box_size=box_size, filter_size=3)
            offset, rms = est.level, est.rms
        except SkysiftError:
            usable = resid[~(bad | unreached)]
            level = float(np.median(usable)) if usable.size else 0.0
            spread = float(np.std(usable)) if usable.size else 0.0
            offset = np.full(data.shape, level, np.float32)
            rms = np.full(data.shape, max(spread, 1e-6), np.float32)
        if level_correction:
            opened = opened + offset.astype(np.float32)
    out = np.ascontiguousarray(np.where(bad | unreached, data, opened), dtype=np.float32)
    return out, np.asarray(rms if return_rms else out, dtype=np.float32)
