"""Background and noise maps (SExtractor-style mesh background, via ``sep``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep

from skysift._validation import check_image
from skysift.errors import InputError

__all__ = ["BackgroundMap", "estimate_background"]


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
        data = data.copy()
        data[bad] = np.float32(np.median(data[~bad]))
    box = int(max(8, min(box_size, min(data.shape) // 2)))
    bkg = sep.Background(data, mask=bad, bw=box, bh=box, fw=filter_size, fh=filter_size)
    level = bkg.back()
    rms = bkg.rms()
    # Meshes that were entirely masked get interpolated values; guard against zeros.
    floor = max(float(bkg.globalrms) * 0.1, 1e-6)
    rms = np.maximum(rms, floor).astype(np.float32)
    return BackgroundMap(level, rms, float(bkg.globalback), float(bkg.globalrms))
