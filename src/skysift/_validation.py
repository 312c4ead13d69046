"""Shared input checks for image arrays (in the spirit of scikit-image's ``check_nD``)."""

from __future__ import annotations

import numpy as np

from skysift.errors import InputError

__all__ = ["check_image"]


def check_image(
    image: np.ndarray, mask: np.ndarray | None = None, *, what: str, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``image`` as a contiguous 2-D array and its bad-pixel mask.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = bad pixel.
    what : str
        The step asking, for the error message (e.g. ``"star detection"``).
    dtype : numpy dtype, optional
        Output dtype. Default float32.

    Returns
    -------
    data : ndarray, shape (H, W)
    bad : ndarray of bool, shape (H, W)
        Non-finite pixels, or-ed with ``mask``.

    Raises
    ------
    InputError
        If the image is not 2-D or the mask has another shape.
    """
    data = np.ascontiguousarray(image, dtype=dtype)
    if data.ndim != 2:
        msg = f"{what} needs a 2-D image, got shape {data.shape}"
        raise InputError(msg)
    bad = ~np.isfinite(data)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape:
            msg = f"mask shape {mask.shape} differs from image shape {data.shape}"
            raise InputError(msg)
        bad |= mask
    return data, bad


def check_shape(shape: object, *, min_size: int = 1) -> tuple[int, int]:
    """Return an image shape as ``(height, width)`` ints.

    Raises
    ------
    InputError
        If ``shape`` is not two integers of at least ``min_size`` pixels.
    """
    try:
        h, w = (int(v) for v in shape)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        msg = f"shape must be (height, width) in pixels, got {shape!r}"
        raise InputError(msg) from None
    if h < min_size or w < min_size:
        msg = f"shape must be (height, width) of at least {min_size} px, got {shape!r}"
        raise InputError(msg)
    return h, w
