"""Backgrounds for simulated scenes: star-free skies by morphological opening, noise, real frames.

A real night-sky frame holds what a simulator cannot make well (sky gradients,
the Milky Way, airglow, vignetting, the camera's own noise) and what it must
replace to know the truth (the stars). :func:`star_free_background` removes
the stars with a grey-scale morphological opening (an erosion followed by a
dilation with a disk larger than the stars, bolide report §4.1): every
structure narrower than the disk (stars, hot pixels, noise peaks) is cut,
structures wider than it (gradients, the Milky Way's clouds) are kept. The
opening follows the lower envelope of the noise, so its level is then raised
by the local median of ``image - opening`` (a sigma-clipped mesh estimate),
which restores the sky level to within a small fraction of the noise.

Pixel coordinates are 0-based, (0, 0) the centre of the first pixel; masks
here are data-quality masks, ``True`` = not sky.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skysift.detection import sky_mask
from skysift.detection.background import estimate_background, opening_background
from skysift.errors import InputError, SkysiftError
from skysift.io import read_frame
from skysift.io.frame import Frame

__all__ = [
    "SkyBackground",
    "star_free_background",
    "background_noise",
    "load_background",
]


def _check_2d(image: np.ndarray, name: str) -> np.ndarray:
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        msg = f"{name} must be a 2-D image (H, W), got shape {data.shape}"
        raise InputError(msg)
    return data


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    if mask is None:
        return np.zeros(shape, dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(shape):
        msg = f"{name} shape {m.shape} differs from the image shape {tuple(shape)}"
        raise InputError(msg)
    return m


def star_free_background(
    image: np.ndarray,
    radius: float = 6.0,
    *,
    mask: np.ndarray | None = None,
    level_correction: bool = True,
    box_size: int = 64,
) -> np.ndarray:
    """Remove the stars from a sky frame by grey-scale morphological opening.

    The opening (erosion then dilation with a flat disk of ``radius`` pixels,
    OpenCV ``erode``/``dilate`` on float32) keeps every structure wider than
    the disk and cuts everything narrower: choose ``radius`` larger than the
    star images (about 1.5 FWHM or more) and smaller than the sky structure
    to keep. Masked pixels take no part: they never lower the erosion of
    their neighbours nor raise their dilation. Because the opening runs along
    the lower envelope of the noise, its level is then raised by the local
    median of ``image - opening`` (bolide report §4.1, with that level
    correction added here).

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The sky frame, any units.
    radius : float, optional
        Disk radius in pixels. Default 6.
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = not sky (excluded). Masked pixels keep their value in the
        output.
    level_correction : bool, optional
        Add back the local median of ``image - opening`` (a sigma-clipped
        mesh estimate of ``box_size`` pixels). Default True.
    box_size : int, optional
        Mesh size in pixels for the level correction. Default 64.

    Returns
    -------
    ndarray, shape (H, W), float32
        The star-free background, in the units of ``image``.

    Raises
    ------
    InputError
        If the image is not 2-D, the mask has another shape, or ``radius``
        is not a positive number.

    References
    ----------
    Bolide report §4.1 (star-free backgrounds by morphological opening);
    Soille, *Morphological Image Analysis* (2003), §4.2 (opening).
    """
    data = _check_2d(image, "image")
    bad = _check_mask(mask, data.shape) | ~np.isfinite(data)
    if not (np.isfinite(radius) and radius > 0):
        msg = f"radius must be a positive number of pixels, got {radius!r}"
        raise InputError(msg)

    return opening_background(
        data,
        bad,
        radius=radius,
        level_correction=level_correction,
        box_size=box_size,
    )


def background_noise(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    box_size: int = 64,
) -> np.ndarray:
    """Per-pixel noise (1-sigma) of a sky frame, measured on the frame.

    A sigma-clipped mesh estimate of the background RMS (Bertin & Arnouts
    1996, §3.1, via :func:`skysift.detection.background.estimate_background`),
    so stars do not inflate it.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = not sky (excluded from the estimate).
    box_size : int, optional
        Mesh size in pixels. Default 64.

    Returns
    -------
    ndarray, shape (H, W), float32
        Noise sigma per pixel, in the units of ``image``.

    Raises
    ------
    InputError
        If the image is not 2-D or the mask has another shape.
    """

    data = _check_2d(image, "image")
    bad = _check_mask(mask, data.shape) | ~np.isfinite(data)
    bkg = estimate_background(np.where(bad, 0, data), bad, box_size=box_size)
    return np.asarray(bkg.rms, dtype=np.float32)


@dataclass
class SkyBackground:
    """A real sky frame prepared as a background for simulation.

    Attributes
    ----------
    image : ndarray, shape (H, W), float32
        The real frame (ADU).
    star_free : ndarray, shape (H, W), float32
        Its star-free background (:func:`star_free_background`).
    noise : ndarray, shape (H, W), float32
        Its noise sigma per pixel (:func:`background_noise`), ADU.
    sky : ndarray of bool, shape (H, W)
        ``True`` = sky (objects may be injected there); the complement of
        the frame's sky mask.
    saturation : float or None
        Saturation level (ADU), from the frame's metadata when known.
    frame : skysift.io.Frame or None
        The frame it came from (time, site, header).
    """

    image: np.ndarray
    star_free: np.ndarray
    noise: np.ndarray
    sky: np.ndarray
    saturation: float | None = None
    frame: object | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape ``(H, W)``."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))


def load_background(
    source: str | os.PathLike[str] | np.ndarray | object,
    *,
    radius: float = 6.0,
    sky: np.ndarray | None = None,
    use_sky_mask: bool = True,
    saturation: float | None = None,
) -> SkyBackground:
    """Read a real frame and prepare it as a simulation background.

    Parameters
    ----------
    source : path, ndarray of shape (H, W), or skysift.io.Frame
        The frame: a file readable by :func:`skysift.io.read_frame`, an
        image array, or a :class:`~skysift.io.Frame`.
    radius : float, optional
        Opening radius in pixels for the star-free background. Default 6.
    sky : ndarray of bool, shape (H, W), optional
        ``True`` = sky. Default: the complement of
        :func:`skysift.detection.sky_mask` (or all sky if
        ``use_sky_mask=False``).
    use_sky_mask : bool, optional
        Compute the automatic sky mask when ``sky`` is not given. Default True.
    saturation : float, optional
        Saturation level (ADU). Default: the frame's metadata or ``SATURATE``
        header (raised to the image maximum when pixels exceed it), else None.

    Returns
    -------
    SkyBackground

    Raises
    ------
    InputError
        If the file cannot be read (the message names it), the array is not
        2-D, or ``sky`` has another shape.
    """

    frame = None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)

        try:
            frame = read_frame(path)
        except SkysiftError as err:
            msg = f"background file {path}: cannot be read ({err})"
            raise InputError(msg) from err
        except (OSError, ValueError) as err:
            msg = f"background file {path}: cannot be read ({err})"
            raise InputError(msg) from err
        data = frame.data
    elif isinstance(source, Frame):
        frame = source
        data = source.data
    else:
        data = source
    data = _check_2d(data, "background image")
    if sky is None:
        if use_sky_mask:
            not_sky = sky_mask(data).mask
        else:
            not_sky = ~np.isfinite(data)
        if frame is not None and getattr(frame, "mask", None) is not None:
            not_sky = not_sky | np.asarray(frame.mask, bool)
        sky_arr = ~not_sky
    else:
        sky_arr = _check_mask(sky, data.shape, "sky")
    if saturation is None and frame is not None:
        meta = getattr(frame, "meta", {}) or {}
        sat = meta.get("saturation")
        header = meta.get("header")
        if sat is None and header is not None and "SATURATE" in header:
            sat = header["SATURATE"]
        saturation = float(sat) if sat is not None else None
        finite_max = float(np.nanmax(data)) if np.isfinite(data).any() else None
        if saturation is not None and finite_max is not None and finite_max > saturation:
            # a header level the data exceed is not the real one (MAGIC frames
            # say 32768 and reach 64586): trust the data
            saturation = finite_max
    star_free = star_free_background(data, radius, mask=~sky_arr)
    noise = background_noise(data, ~sky_arr)
    return SkyBackground(data, star_free, noise, sky_arr, saturation, frame)
