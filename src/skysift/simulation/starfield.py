"""A minimal synthetic star field with a truth table, for tests and benchmarks."""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from scipy.special import erf

from skysift.errors import InputError

__all__ = ["make_star_field"]


def make_star_field(
    shape: tuple[int, int] = (256, 256),
    n_stars: int = 50,
    *,
    fwhm: float = 3.0,
    flux_range: tuple[float, float] = (2e3, 2e5),
    background: float = 100.0,
    read_noise: float = 5.0,
    gain: float = 1.0,
    saturation: float | None = 65535.0,
    border: float = 10.0,
    min_separation: float = 0.0,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, Table]:
    """Render Gaussian stars on a flat background with Poisson and read noise.

    Fluxes are drawn log-uniformly in ``flux_range``. Each star is rendered by
    integrating the Gaussian PSF over the pixel (error functions), so the
    truth flux is exactly the expected sum of the star's counts.

    Parameters
    ----------
    shape : (int, int), optional
        Image shape ``(H, W)`` in pixels. Default (256, 256).
    n_stars : int, optional
        Number of stars. Default 50.
    fwhm : float, optional
        PSF FWHM in pixels. Default 3.
    flux_range : (float, float), optional
        Total star flux range in electrons. Default (2e3, 2e5).
    background : float, optional
        Sky level in electrons per pixel. Default 100.
    read_noise : float, optional
        Read noise in electrons (Gaussian). Default 5.
    gain : float, optional
        Gain in e−/ADU. Default 1.
    saturation : float or None, optional
        Clip level in ADU. Default 65535.
    border : float, optional
        Minimum distance of a star from the image edge, pixels. Default 10.
    min_separation : float, optional
        Minimum distance between stars, pixels. Default 0 (no constraint).
    rng : numpy Generator, int or None
        Random state.

    Returns
    -------
    image : ndarray, shape (H, W), float32
        The image in ADU.
    truth : astropy.table.Table
        ``x``, ``y`` (0-based pixels), ``flux`` (ADU), sorted by flux, brightest first.

    Raises
    ------
    InputError
        If the shape is too small for the border or parameters are not positive.
    """

    rng = np.random.default_rng(rng)
    h, w = shape
    if h <= 2 * border or w <= 2 * border:
        msg = f"shape {shape} too small for a border of {border} px"
        raise InputError(msg)
    if fwhm <= 0 or gain <= 0 or n_stars < 0:
        msg = f"fwhm and gain must be > 0 and n_stars >= 0, got {fwhm}, {gain}, {n_stars}"
        raise InputError(msg)
    xs: list[float] = []
    ys: list[float] = []
    tries = 0
    while len(xs) < n_stars and tries < 100 * max(n_stars, 1):
        tries += 1
        x = rng.uniform(border, w - 1 - border)
        y = rng.uniform(border, h - 1 - border)
        if (
            min_separation > 0
            and xs
            and np.min(np.hypot(np.array(xs) - x, np.array(ys) - y)) < min_separation
        ):
            continue
        xs.append(x)
        ys.append(y)
    x_arr, y_arr = np.array(xs), np.array(ys)
    lo, hi = flux_range
    flux = np.exp(rng.uniform(np.log(lo), np.log(hi), len(xs)))
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    model = np.full(shape, background, dtype=float)
    half = int(np.ceil(5 * sigma)) + 1
    s2 = np.sqrt(2) * sigma
    for x, y, f in zip(x_arr, y_arr, flux, strict=True):
        ix, iy = int(round(x)), int(round(y))
        x0, x1 = max(0, ix - half), min(w, ix + half + 1)
        y0, y1 = max(0, iy - half), min(h, iy + half + 1)
        px = np.arange(x0, x1)
        py = np.arange(y0, y1)
        fx = 0.5 * (erf((px + 0.5 - x) / s2) - erf((px - 0.5 - x) / s2))
        fy = 0.5 * (erf((py + 0.5 - y) / s2) - erf((py - 0.5 - y) / s2))
        model[y0:y1, x0:x1] += f * np.outer(fy, fx)
    electrons = rng.poisson(model).astype(float) + rng.normal(0, read_noise, shape)
    image = electrons / gain
    if saturation is not None:
        image = np.minimum(image, saturation)
    truth = Table({"x": x_arr, "y": y_arr, "flux": flux / gain})
    truth.sort("flux", reverse=True)
    return image.astype(np.float32), truth
