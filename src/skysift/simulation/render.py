"""Rendering entry points of the simulator: point sources, sky, PSF convolution.

Objects that draw their own geometry (streaks, trails) paint their flux on a
grid oversampled by ``oversample`` (see :func:`subpixel_centers`), then call
:func:`convolve_psf`, which convolves with the PSF sampled on that grid and
bins back to pixels. Point sources go through :func:`render_points`.

Coordinates are 0-based pixels with (0, 0) the centre of the first pixel,
x = column, y = row. On a grid oversampled by O, sub-pixel (j, i) has its
centre at x = (i + 0.5) / O - 0.5, y = (j + 0.5) / O - 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.signal import fftconvolve

from skysift.errors import InputError
from skysift.simulation.optics import PSF

__all__ = ["add_sky", "bin_image", "convolve_psf", "render_points", "subpixel_centers"]


def _check_factor(oversample: int) -> int:
    if int(oversample) != oversample or oversample < 1:
        msg = f"oversample must be an integer >= 1, got {oversample!r}"
        raise InputError(msg)
    return int(oversample)


def render_points(
    shape: tuple[int, int], x: Any, y: Any, flux: Any, psf: PSF, *, oversample: int = 5
) -> np.ndarray:
    """Render point sources through a PSF, integrated over pixels.

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(H, W)``.
    x, y : float or array_like, shape (N,)
        0-based pixel positions (x = column, y = row).
    flux : float or array_like, shape (N,)
        Total flux of each source (e.g. photons).
    psf : PSF
        Any :class:`~skysift.simulation.optics.PSF`.
    oversample : int, optional
        Sub-pixel phases of non-Gaussian PSFs (see :meth:`PSF.render`). Default 5.

    Returns
    -------
    ndarray, shape (H, W), float64
        Flux per pixel; each source sums to its flux unless it falls off the image.

    Raises
    ------
    InputError
        If ``psf`` is not a PSF or the inputs are invalid.
    """
    if not isinstance(psf, PSF):
        msg = f"psf must be a skysift PSF (see skysift.simulation.optics.make_psf), got {type(psf).__name__}"
        raise InputError(msg)
    return psf.render(shape, x, y, flux, oversample=oversample)


def add_sky(image: np.ndarray, level: float | np.ndarray) -> np.ndarray:
    """Return ``image + level`` (a new float64 array) for a sky level per pixel.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Expected photons (or any linear unit) per pixel.
    level : float or ndarray broadcastable to (H, W)
        Sky per pixel in the same unit (e.g. from
        :meth:`~skysift.simulation.optics.Telescope.sky_photons_per_pixel`).

    Raises
    ------
    InputError
        If the level is negative or not broadcastable.
    """
    img = np.asarray(image, dtype=float)
    lvl = np.asarray(level, dtype=float)
    if np.any(lvl < 0) or not np.all(np.isfinite(lvl)):
        msg = "sky level must be finite and >= 0 per pixel"
        raise InputError(msg)
    try:
        return img + lvl
    except ValueError:
        msg = f"sky level of shape {lvl.shape} does not broadcast to the image shape {img.shape}"
        raise InputError(msg) from None


def subpixel_centers(shape: tuple[int, int], oversample: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of the sub-pixel centres of a grid oversampled by ``oversample``.

    Parameters
    ----------
    shape : (int, int)
        Native image shape ``(H, W)``.
    oversample : int
        Sub-pixels per pixel along each axis.

    Returns
    -------
    y, x : ndarray, shapes (H * oversample,) and (W * oversample,)
        Row and column coordinates in native 0-based pixels.
    """
    o = _check_factor(oversample)
    h, w = (int(s) for s in shape)
    return (np.arange(h * o) + 0.5) / o - 0.5, (np.arange(w * o) + 0.5) / o - 0.5


def bin_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Sum ``factor`` x ``factor`` blocks (flux-preserving downsampling).

    Raises
    ------
    InputError
        If the image shape is not a multiple of ``factor``.
    """
    f = _check_factor(factor)
    img = np.asarray(image, dtype=float)
    h, w = img.shape[-2:]
    if h % f or w % f:
        msg = f"image shape {img.shape} must be a multiple of factor={f}"
        raise InputError(msg)
    if f == 1:
        return img
    return img.reshape(*img.shape[:-2], h // f, f, w // f, f).sum(axis=(-3, -1))


def convolve_psf(
    image: np.ndarray, psf: PSF, oversample: int = 1, *, downsample: bool = True
) -> np.ndarray:
    """Convolve an image of flux per (sub)pixel with a PSF (FFT, flux-preserving).

    Parameters
    ----------
    image : ndarray, shape (H * oversample, W * oversample)
        Flux per sub-pixel, e.g. a streak painted on an oversampled grid.
    psf : PSF
        The PSF; its kernel is integrated over sub-pixels of the same grid.
    oversample : int, optional
        Sub-pixels per pixel of ``image``. Default 1 (native pixels).
    downsample : bool, optional
        Sum ``oversample`` x ``oversample`` blocks to return native pixels.
        Default True.

    Returns
    -------
    ndarray, shape (H, W) (or the input shape when ``downsample`` is False)
        The total flux is preserved except what the PSF spreads off the edges.

    Raises
    ------
    InputError
        If the image is not 2-D or its shape is not a multiple of ``oversample``.
    """
    o = _check_factor(oversample)
    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        msg = f"image must be 2-D, got shape {img.shape}"
        raise InputError(msg)
    if img.shape[0] % o or img.shape[1] % o:
        msg = f"image shape {img.shape} must be a multiple of oversample={o}"
        raise InputError(msg)
    kernel = psf.kernel(oversample=o)
    out = fftconvolve(img, kernel, mode="same")
    return bin_image(out, o) if downsample else out
