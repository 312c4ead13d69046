"""Point-spread functions of the simulator: Gaussian, Moffat, Airy, seeing-limited, jittered.

PSF sizes are in pixels; fluxes in any linear unit (the renderers are
linear). Pixel coordinates are 0-based with (0, 0) the centre of the first
pixel, x = column, y = row.

References
----------
.. [M69] Moffat, A. F. J. 1969, A&A 3, 455, "A theoretical investigation of
   focal stellar images in the photographic emulsion".
.. [BW] Born, M. & Wolf, E., Principles of Optics, §8.5.2 (Airy pattern).
.. [F66] Fried, D. L. 1966, JOSA 56, 1372 (r0; seeing FWHM = 0.98 lambda/r0).
.. [T01] Trujillo, I. et al. 2001, MNRAS 328, 977, §3 (a Moffat profile with
   beta = 4.765 fits the Kolmogorov long-exposure PSF).
.. [AK00] Anderson, J. & King, I. R. 2000, PASP 112, 1360 (effective,
   pixel-integrated PSF).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import special
from scipy.ndimage import gaussian_filter
from scipy.optimize import brentq

from skysift.errors import InputError

__all__ = [
    "ARCSEC_PER_RAD",
    "PSF",
    "GaussianPSF",
    "MoffatPSF",
    "AiryPSF",
    "SeeingPSF",
    "JitteredPSF",
    "PSFS",
    "make_psf",
]

ARCSEC_PER_RAD = 180.0 * 3600.0 / math.pi  # 206264.806...
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


# --------------------------------------------------------------------------- PSFs
def _check_positive(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        msg = f"{name} must be a positive number, got {value!r}"
        raise InputError(msg) from None
    if not (v > 0 and math.isfinite(v)):
        msg = f"{name} must be a finite number > 0, got {value!r}"
        raise InputError(msg)
    return v


def _check_oversample(oversample: int) -> int:
    if int(oversample) != oversample or oversample < 1:
        msg = f"oversample must be an integer >= 1, got {oversample!r}"
        raise InputError(msg)
    return int(oversample)


def _as_sources(
    shape: tuple[int, int], x: Any, y: Any, flux: Any
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        msg = f"shape must be (H, W), got {shape!r}"
        raise InputError(msg) from None
    if h < 1 or w < 1:
        msg = f"shape must be (H, W) with H, W >= 1, got {shape!r}"
        raise InputError(msg)
    xa, ya, fa = np.broadcast_arrays(
        np.atleast_1d(np.asarray(x, dtype=float)),
        np.atleast_1d(np.asarray(y, dtype=float)),
        np.atleast_1d(np.asarray(flux, dtype=float)),
    )
    xa, ya, fa = xa.ravel(), ya.ravel(), fa.ravel()
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya)) and np.all(np.isfinite(fa))):
        msg = "x, y and flux must be finite"
        raise InputError(msg)
    return h, w, xa, ya, fa


def _scatter_stamps(
    h: int,
    w: int,
    ix: np.ndarray,
    iy: np.ndarray,
    offsets: np.ndarray,
    stamps: np.ndarray,
    out: np.ndarray,
) -> None:
    """Add ``stamps`` (N, S, S) with pixel offsets ``offsets`` (S,) at (iy, ix) into ``out``."""
    lo, hi = int(offsets[0]), int(offsets[-1])
    inside = (ix + lo >= 0) & (ix + hi < w) & (iy + lo >= 0) & (iy + hi < h)
    acc = np.zeros(h * w)
    if np.any(inside):  # fast path: no bounds checks per pixel
        rel = (offsets[:, None] * w + offsets[None, :]).ravel()
        idx = ((iy[inside] * w + ix[inside])[:, None] + rel[None, :]).ravel()
        acc += np.bincount(idx, weights=stamps[inside].ravel(), minlength=h * w)
    if not np.all(inside):
        edge = ~inside
        rows = iy[edge][:, None] + offsets[None, :]  # (M, S)
        cols = ix[edge][:, None] + offsets[None, :]
        ok = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        idx = rows[:, :, None] * w + cols[:, None, :]
        acc += np.bincount(idx[ok], weights=stamps[edge][ok], minlength=h * w)
    out += acc.reshape(h, w)


class PSF:
    """Base class of the point-spread functions (circularly symmetric).

    A PSF is a surface-brightness profile ``profile(r)`` (fraction of the flux
    per square pixel at ``r`` pixels from the centre; integral over the plane
    1). Subclasses define ``profile`` and ``fwhm``; rendering integrates the
    profile over pixels (the effective PSF of [AK00]).

    Attributes
    ----------
    fwhm : float
        Full width at half maximum in pixels.
    """

    #: Fraction of the flux that the render/kernel radius keeps (before the
    #: stamps are renormalised to sum to exactly 1).
    flux_fraction: float = 0.999
    #: Cap on the render radius in units of the FWHM (Airy wings fall as r^-3
    #: and would otherwise need a radius of ~200 FWHM for 99.9 %).
    max_radius_fwhm: float = 25.0

    fwhm: float

    # ---- to be provided by subclasses
    def profile(self, r: np.ndarray) -> np.ndarray:
        """Surface brightness at radius ``r`` (pixels), per pixel^2, integral 1."""
        raise NotImplementedError

    def _fine_image(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """Point samples of the PSF on the grid ``dy[:, None], dx[None, :]`` (pixels)."""
        return self.profile(np.hypot(dx[None, :], dy[:, None]))

    # ---- radii
    def encircled_energy(self, r: float | np.ndarray) -> float | np.ndarray:
        """Fraction of the flux within radius ``r`` pixels (numerical by default)."""
        r = np.asarray(r, dtype=float)
        r_max = float(np.max(r)) if r.size else 0.0
        grid = np.linspace(0.0, max(r_max, 1e-9), 4001)
        dens = 2.0 * np.pi * grid * self.profile(grid)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
        return np.interp(r, grid, cum)[()]

    def radius(self, fraction: float | None = None) -> float:
        """Radius in pixels enclosing ``fraction`` of the flux (default :attr:`flux_fraction`),
        capped at :attr:`max_radius_fwhm` FWHM."""
        fraction = self.flux_fraction if fraction is None else fraction
        r_cap = self.max_radius_fwhm * self.fwhm
        if self.encircled_energy(r_cap) < fraction:
            return r_cap
        lo, hi = 0.0, r_cap
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if self.encircled_energy(mid) < fraction:
                lo = mid
            else:
                hi = mid
        return hi

    def _render_radius(self) -> int:
        return max(1, math.ceil(self.radius() + 0.5))

    # ---- derived operations
    def with_jitter(self, sigma_px: float) -> PSF:
        """This PSF convolved with a circular Gaussian of ``sigma_px`` pixels (pointing jitter).

        Raises
        ------
        InputError
            If ``sigma_px`` is negative.
        """
        if not sigma_px >= 0:
            msg = f"sigma_px must be >= 0 pixels, got {sigma_px!r}"
            raise InputError(msg)
        if sigma_px == 0:
            return self
        if isinstance(self, JitteredPSF):  # Gaussians add in quadrature
            return JitteredPSF(self.base, math.hypot(self.sigma_px, sigma_px))
        return JitteredPSF(self, sigma_px)

    def _subpixel_integrals(
        self,
        size: int,
        oversample: int,
        phase_x: float = 0.0,
        phase_y: float = 0.0,
        n_sub: int | None = None,
    ) -> np.ndarray:
        """Integrals of the PSF over the cells of a (size, size) grid of cell size 1/oversample.

        Cell (j, i) is centred at ((i - c) / oversample - phase_x, (j - c) / oversample -
        phase_y) relative to the source, c = size // 2. Integration by the midpoint rule
        on ``n_sub`` x ``n_sub`` samples per cell.
        """
        if n_sub is None:  # same sampling pitch as the renderer (see _phase_table)
            n_sub = max(3, math.ceil(min(max(5.0, 30.0 / self.fwhm), 64.0) / oversample))
        c = size // 2
        centres = (np.arange(size) - c) / oversample
        sub = ((np.arange(n_sub) + 0.5) / n_sub - 0.5) / oversample
        fx = (centres[:, None] + sub[None, :]).ravel() - phase_x
        fy = (centres[:, None] + sub[None, :]).ravel() - phase_y
        fine = self._fine_image(fx, fy)
        cells = fine.reshape(size, n_sub, size, n_sub).sum(axis=(1, 3))
        return cells / (n_sub * oversample) ** 2

    def kernel(self, size: int | None = None, oversample: int = 1) -> np.ndarray:
        """The pixel-integrated PSF centred on the central (sub)pixel.

        Parameters
        ----------
        size : int, optional
            Odd side length in (sub)pixels. Default: the diameter that keeps
            :attr:`flux_fraction` of the flux (see :meth:`radius`).
        oversample : int, optional
            Cells per pixel along each axis; the kernel then samples a grid
            of pitch 1/oversample pixel (for :func:`~skysift.simulation.render.convolve_psf`
            on an oversampled image). Default 1.

        Returns
        -------
        ndarray, shape (size, size)
            Integrals of the PSF over each cell, normalised to sum to 1.

        Raises
        ------
        InputError
            If ``size`` is not a positive odd integer or ``oversample`` < 1.
        """
        oversample = _check_oversample(oversample)
        if size is None:
            size = 2 * math.ceil(self.radius() * oversample) + 1
        if int(size) != size or size < 1 or size % 2 == 0:
            msg = f"size must be a positive odd integer, got {size!r}"
            raise InputError(msg)
        cache = self.__dict__.setdefault("_kernels", {})
        key = (int(size), oversample)
        if key not in cache:
            k = self._subpixel_integrals(int(size), oversample)
            cache[key] = k / k.sum()
        return cache[key].copy()

    def _phase_table(self, oversample: int) -> tuple[np.ndarray, np.ndarray]:
        """Stamps of the pixel-integrated PSF for sub-pixel phases 0, 1/O, ..., 1.

        Returns ``offsets`` (S,) in pixels relative to floor(x) and ``table``
        (O+1, O+1, S, S), each stamp cut at the render radius around its source
        position (circularly, so the cut does not move the centroid) and
        normalised to sum 1.
        """
        cache = self.__dict__.setdefault("_tables", {})
        if oversample in cache:
            return cache[oversample]
        r = self._render_radius()
        offsets = np.arange(-r, r + 2)
        s = offsets.size
        # Fine samples per pixel (midpoint rule): a pitch <= FWHM / 30 and >= 5 per
        # pixel keeps the pixel integral accurate to ~1e-4 of the peak.
        step = max(1, math.ceil(min(max(5.0, 30.0 / self.fwhm), 64.0) / oversample))
        n_sub = oversample * step
        # Every phase's sample positions lie on one fine grid of pitch 1/n_sub
        # (the phases are multiples of 1/O = step/n_sub): evaluate the PSF once.
        grid = offsets[0] - 1 + ((np.arange((s + 1) * n_sub) + 0.5) / n_sub - 0.5)
        fine = self._fine_image(grid, grid)
        table = np.empty((oversample + 1, oversample + 1, s, s))
        for py in range(oversample + 1):
            ay = n_sub - py * step
            rows = fine[ay : ay + s * n_sub].reshape(s, n_sub, -1).sum(axis=1)
            for px in range(oversample + 1):
                ax = n_sub - px * step
                cells = rows[:, ax : ax + s * n_sub].reshape(s, s, n_sub).sum(axis=2)
                d2 = (offsets[None, :] - px / oversample) ** 2 + (
                    offsets[:, None] - py / oversample
                ) ** 2
                cells = np.where(d2 > (r - 0.5) ** 2, 0.0, cells)
                table[py, px] = cells / cells.sum()
        cache[oversample] = (offsets, table)
        return offsets, table

    def render(
        self,
        shape: tuple[int, int],
        x: Any,
        y: Any,
        flux: Any,
        *,
        oversample: int = 5,
        chunk: int = 512,
    ) -> np.ndarray:
        """Render point sources integrated over pixels.

        Parameters
        ----------
        shape : (int, int)
            Image shape ``(H, W)``.
        x, y : float or array_like, shape (N,)
            Source positions in 0-based pixels (x = column, y = row).
        flux : float or array_like, shape (N,)
            Total flux of each source (photons, electrons, ...).
        oversample : int, optional
            Sub-pixel phases per pixel of the stamp table (the pixel integral
            uses at least 5 x 5 samples per pixel). Positions between phases
            are interpolated linearly between stamps, which keeps the flux and
            the centroid exact. Default 5.
        chunk : int, optional
            Sources per vectorised batch (memory). Default 512.

        Returns
        -------
        ndarray, shape (H, W), float64
            Flux per pixel. Each source's stamp sums to its flux (the
            :attr:`flux_fraction` cut is renormalised); only flux falling off
            the image is lost.

        Raises
        ------
        InputError
            If the shape, positions or fluxes are invalid.
        """
        oversample = _check_oversample(oversample)
        h, w, xs, ys, fs = _as_sources(shape, x, y, flux)
        out = np.zeros((h, w))
        if xs.size == 0:
            return out
        offsets, table = self._phase_table(oversample)
        r = int(-offsets[0])
        keep = (xs > -r - 2) & (xs < w + r + 1) & (ys > -r - 2) & (ys < h + r + 1) & (fs != 0)
        xs, ys, fs = xs[keep], ys[keep], fs[keep]
        for start in range(0, xs.size, chunk):
            sl = slice(start, start + chunk)
            x0 = np.floor(xs[sl])
            y0 = np.floor(ys[sl])
            qx = (xs[sl] - x0) * oversample
            qy = (ys[sl] - y0) * oversample
            px = np.minimum(np.floor(qx).astype(int), oversample - 1)
            py = np.minimum(np.floor(qy).astype(int), oversample - 1)
            wx = qx - px
            wy = qy - py
            f = fs[sl]
            # bilinear interpolation between the four neighbouring phase stamps
            stamps = table[py, px] * ((1 - wy) * (1 - wx) * f)[:, None, None]
            for dy, dx, wgt in ((0, 1, (1 - wy) * wx), (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
                stamps += table[py + dy, px + dx] * (wgt * f)[:, None, None]
            _scatter_stamps(h, w, x0.astype(int), y0.astype(int), offsets, stamps, out)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fwhm={self.fwhm:.4g})"


class GaussianPSF(PSF):
    """Circular Gaussian PSF, integrated exactly over pixels with error functions.

    Parameters
    ----------
    fwhm : float
        FWHM in pixels (sigma = fwhm / 2.3548).

    Raises
    ------
    InputError
        If ``fwhm`` is not positive.
    """

    def __init__(self, fwhm: float) -> None:
        self.fwhm = _check_positive("fwhm", fwhm)
        self.sigma = self.fwhm / _FWHM_PER_SIGMA

    def profile(self, r: np.ndarray) -> np.ndarray:
        s2 = self.sigma**2
        return np.exp(-0.5 * np.asarray(r) ** 2 / s2) / (2.0 * np.pi * s2)

    def encircled_energy(self, r: float | np.ndarray) -> float | np.ndarray:
        return (1.0 - np.exp(-0.5 * np.asarray(r, dtype=float) ** 2 / self.sigma**2))[()]

    def radius(self, fraction: float | None = None) -> float:
        fraction = self.flux_fraction if fraction is None else fraction
        return self.sigma * math.sqrt(-2.0 * math.log1p(-fraction))

    def with_jitter(self, sigma_px: float) -> PSF:
        """A Gaussian of sigma = hypot(sigma, sigma_px): the exact convolution."""
        if not sigma_px >= 0:
            msg = f"sigma_px must be >= 0 pixels, got {sigma_px!r}"
            raise InputError(msg)
        return GaussianPSF(math.hypot(self.sigma, sigma_px) * _FWHM_PER_SIGMA)

    def _cdf_edges(self, centres: np.ndarray, cell: float) -> np.ndarray:
        """Integral of the 1-D Gaussian over cells of width ``cell`` centred at ``centres``."""
        k = 1.0 / (self.sigma * math.sqrt(2.0))
        return 0.5 * (
            special.erf((centres + 0.5 * cell) * k) - special.erf((centres - 0.5 * cell) * k)
        )

    def _subpixel_integrals(
        self,
        size: int,
        oversample: int,
        phase_x: float = 0.0,
        phase_y: float = 0.0,
        n_sub: int | None = None,
    ) -> np.ndarray:
        c = size // 2
        centres = (np.arange(size) - c) / oversample
        gx = self._cdf_edges(centres - phase_x, 1.0 / oversample)
        gy = self._cdf_edges(centres - phase_y, 1.0 / oversample)
        return gy[:, None] * gx[None, :]

    def render(
        self,
        shape: tuple[int, int],
        x: Any,
        y: Any,
        flux: Any,
        *,
        oversample: int = 5,
        chunk: int = 2048,
    ) -> np.ndarray:
        """Render point sources, integrating the Gaussian exactly over each pixel.

        Same contract as :meth:`PSF.render`; ``oversample`` is accepted for a
        uniform interface but not needed (the pixel integral is exact, from
        error functions, separable in x and y). The square stamp keeps all but
        ~1e-6 of the flux per axis, so the flux and centroid are exact to that
        level without renormalisation.
        """
        _check_oversample(oversample)
        h, w, xs, ys, fs = _as_sources(shape, x, y, flux)
        out = np.zeros((h, w))
        if xs.size == 0:
            return out
        r = max(1, math.ceil(self.sigma * math.sqrt(2.0 * math.log(1e6)) + 0.5))
        offsets = np.arange(-r, r + 1)
        keep = (xs > -r - 1) & (xs < w + r) & (ys > -r - 1) & (ys < h + r) & (fs != 0)
        xs, ys, fs = xs[keep], ys[keep], fs[keep]
        for start in range(0, xs.size, chunk):
            sl = slice(start, start + chunk)
            x0 = np.rint(xs[sl])
            y0 = np.rint(ys[sl])
            gx = self._cdf_edges(offsets[None, :] - (xs[sl] - x0)[:, None], 1.0)
            gy = self._cdf_edges(offsets[None, :] - (ys[sl] - y0)[:, None], 1.0)
            stamps = (gy * fs[sl][:, None])[:, :, None] * gx[:, None, :]
            _scatter_stamps(h, w, x0.astype(int), y0.astype(int), offsets, stamps, out)
        return out


class MoffatPSF(PSF):
    """Moffat PSF [M69]: I(r) = (beta - 1) / (pi alpha^2) (1 + r^2/alpha^2)^-beta.

    Parameters
    ----------
    fwhm : float
        FWHM in pixels; alpha = fwhm / (2 sqrt(2^(1/beta) - 1)).
    beta : float, optional
        Wing index (> 1; smaller = heavier wings). Default 2.5, typical of
        ground-based seeing.

    Raises
    ------
    InputError
        If ``fwhm`` <= 0 or ``beta`` <= 1.
    """

    def __init__(self, fwhm: float, beta: float = 2.5) -> None:
        self.fwhm = _check_positive("fwhm", fwhm)
        beta = float(beta)
        if not beta > 1:
            msg = f"beta must be > 1 (finite flux), got {beta!r}"
            raise InputError(msg)
        self.beta = beta
        self.alpha = self.fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))

    def profile(self, r: np.ndarray) -> np.ndarray:
        a2 = self.alpha**2
        return (self.beta - 1.0) / (np.pi * a2) * (1.0 + np.asarray(r) ** 2 / a2) ** -self.beta

    def encircled_energy(self, r: float | np.ndarray) -> float | np.ndarray:
        u = np.asarray(r, dtype=float) ** 2 / self.alpha**2
        return (1.0 - (1.0 + u) ** (1.0 - self.beta))[()]

    def radius(self, fraction: float | None = None) -> float:
        fraction = self.flux_fraction if fraction is None else fraction
        r = self.alpha * math.sqrt((1.0 - fraction) ** (1.0 / (1.0 - self.beta)) - 1.0)
        return min(r, self.max_radius_fwhm * self.fwhm)

    def __repr__(self) -> str:
        return f"MoffatPSF(fwhm={self.fwhm:.4g}, beta={self.beta:.4g})"


class AiryPSF(PSF):
    """Diffraction-limited PSF of a circular (optionally centrally obscured) pupil [BW].

    I(v) = I0 [2 J1(v)/v - eps^2 2 J1(eps v)/(eps v)]^2 / (1 - eps^2)^2 with
    v = pi D theta / lambda and I0 = pi D^2 (1 - eps^2) / (4 lambda^2) per
    steradian, so that the profile integrates to 1. Without obscuration the
    FWHM is 1.029 lambda/D; it is computed numerically otherwise.

    Parameters
    ----------
    diameter_m : float
        Aperture diameter in metres.
    wavelength_m : float
        Wavelength in metres.
    pixel_scale_arcsec : float
        Pixel scale in arcseconds per pixel.
    obscuration : float, optional
        Linear central obscuration ratio eps in [0, 1). Default 0.

    Notes
    -----
    The r^-3 wings hold 0.1 % of the flux only beyond ~200 lambda/D, so the
    render radius is capped at :attr:`~PSF.max_radius_fwhm` FWHM (~99.5 %
    encircled energy) and the stamps are renormalised. For undersampled
    patterns (FWHM < 2 px), raise ``oversample`` in :meth:`render`.

    Raises
    ------
    InputError
        If a length or scale is not positive or ``obscuration`` is outside [0, 1).
    """

    def __init__(
        self,
        diameter_m: float,
        wavelength_m: float,
        pixel_scale_arcsec: float,
        obscuration: float = 0.0,
    ) -> None:
        self.diameter_m = _check_positive("diameter_m", diameter_m)
        self.wavelength_m = _check_positive("wavelength_m", wavelength_m)
        self.pixel_scale_arcsec = _check_positive("pixel_scale_arcsec", pixel_scale_arcsec)
        if not 0.0 <= obscuration < 1.0:
            msg = f"obscuration must be in [0, 1), got {obscuration!r}"
            raise InputError(msg)
        self.obscuration = float(obscuration)
        # v per pixel: v = pi D theta / lambda, theta = r * scale
        self._v_per_px = (
            math.pi * self.diameter_m / self.wavelength_m * self.pixel_scale_arcsec / ARCSEC_PER_RAD
        )
        # peak per pixel^2: pi D^2 (1-eps^2) / (4 lambda^2) * (scale in rad)^2
        self._peak = self._v_per_px**2 * (1.0 - self.obscuration**2) / (4.0 * math.pi)
        self.fwhm = self._measure_fwhm()

    @property
    def lambda_over_d_px(self) -> float:
        """lambda/D in pixels."""
        return math.pi / self._v_per_px

    def _amplitude(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        eps = self.obscuration
        safe = np.where(v == 0, 1.0, v)
        a = np.where(v == 0, 1.0, 2.0 * special.j1(safe) / safe)
        if eps > 0:
            ev = eps * safe
            a = a - eps**2 * np.where(v == 0, 1.0, 2.0 * special.j1(ev) / ev)
            a = a / (1.0 - eps**2)
        return a

    def profile(self, r: np.ndarray) -> np.ndarray:
        return self._peak * self._amplitude(np.asarray(r) * self._v_per_px) ** 2

    def encircled_energy(self, r: float | np.ndarray) -> float | np.ndarray:
        if self.obscuration == 0:
            v = np.asarray(r, dtype=float) * self._v_per_px
            return (1.0 - special.j0(v) ** 2 - special.j1(v) ** 2)[()]
        return super().encircled_energy(r)

    def _measure_fwhm(self) -> float:

        half = 0.5 * self._amplitude(0.0) ** 2
        v_half = brentq(lambda v: self._amplitude(v) ** 2 - half, 1e-6, 3.8317)
        return 2.0 * v_half / self._v_per_px

    def __repr__(self) -> str:
        return (
            f"AiryPSF(diameter_m={self.diameter_m}, wavelength_m={self.wavelength_m}, "
            f"pixel_scale_arcsec={self.pixel_scale_arcsec}, obscuration={self.obscuration}; "
            f"fwhm={self.fwhm:.4g} px)"
        )


class SeeingPSF(MoffatPSF):
    """Seeing-limited long-exposure PSF from the Fried parameter [F66].

    FWHM = 0.98 lambda / r0; the Kolmogorov long-exposure profile is
    represented by its Moffat approximation with beta = 4.765 [T01, §3],
    which matches the core and the wings to a few per cent.

    Parameters
    ----------
    r0_m : float
        Fried parameter in metres at ``wavelength_m``.
    wavelength_m : float
        Wavelength in metres.
    pixel_scale_arcsec : float
        Pixel scale in arcseconds per pixel.

    Raises
    ------
    InputError
        If a parameter is not positive.
    """

    KOLMOGOROV_BETA = 4.765

    def __init__(self, r0_m: float, wavelength_m: float, pixel_scale_arcsec: float) -> None:
        self.r0_m = _check_positive("r0_m", r0_m)
        self.wavelength_m = _check_positive("wavelength_m", wavelength_m)
        self.pixel_scale_arcsec = _check_positive("pixel_scale_arcsec", pixel_scale_arcsec)
        self.fwhm_arcsec = 0.98 * self.wavelength_m / self.r0_m * ARCSEC_PER_RAD
        super().__init__(self.fwhm_arcsec / self.pixel_scale_arcsec, beta=self.KOLMOGOROV_BETA)

    def __repr__(self) -> str:
        return (
            f"SeeingPSF(r0_m={self.r0_m}, wavelength_m={self.wavelength_m}, "
            f"pixel_scale_arcsec={self.pixel_scale_arcsec}; fwhm={self.fwhm:.4g} px)"
        )


class JitteredPSF(PSF):
    """A PSF convolved with a circular Gaussian of ``sigma_px`` pixels (pointing jitter).

    Built by :meth:`PSF.with_jitter`. The convolution is evaluated on the fine
    grid the renderer integrates on; the FWHM is measured numerically.
    """

    def __init__(self, base: PSF, sigma_px: float) -> None:
        self.base = base
        self.sigma_px = _check_positive("sigma_px", sigma_px)
        self.fwhm = self._measure_fwhm()

    def profile(self, r: np.ndarray) -> np.ndarray:
        """Radial profile by numerical 2-D convolution (slow; used for checks and radii)."""
        r = np.asarray(r, dtype=float)
        step = min(self.base.fwhm, self.sigma_px) / 8.0
        half = math.ceil((float(np.max(r, initial=0.0)) + 6 * self.sigma_px) / step) + 1
        half = min(half, 4000)
        t = np.arange(-half, half + 1) * step
        img = self._fine_image(t, t)
        centre = np.interp(r, t, img[half])  # cut along +x (circular symmetry)
        return centre

    def _fine_image(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:

        step_x = float(np.median(np.diff(dx))) if dx.size > 1 else 1.0
        step_y = float(np.median(np.diff(dy))) if dy.size > 1 else 1.0
        pad = math.ceil(5 * self.sigma_px / min(step_x, step_y)) + 1
        ex = np.concatenate(
            [dx[0] - step_x * np.arange(pad, 0, -1), dx, dx[-1] + step_x * np.arange(1, pad + 1)]
        )
        ey = np.concatenate(
            [dy[0] - step_y * np.arange(pad, 0, -1), dy, dy[-1] + step_y * np.arange(1, pad + 1)]
        )
        img = self.base._fine_image(ex, ey)
        img = gaussian_filter(
            img, (self.sigma_px / step_y, self.sigma_px / step_x), mode="constant", truncate=5.0
        )
        return img[pad:-pad, pad:-pad]

    def encircled_energy(self, r: float | np.ndarray) -> float | np.ndarray:
        # Conservative: the jitter moves at most ~4 sigma of flux outwards.
        return self.base.encircled_energy(
            np.maximum(np.asarray(r, dtype=float) - 4.0 * self.sigma_px, 0.0)
        )

    def radius(self, fraction: float | None = None) -> float:
        return min(
            self.base.radius(fraction) + 4.0 * self.sigma_px, self.max_radius_fwhm * self.fwhm
        )

    def _measure_fwhm(self) -> float:
        step = min(self.base.fwhm, self.sigma_px) / 20.0
        half = math.ceil((self.base.fwhm + 3 * self.sigma_px) / step) + 1
        t = np.arange(-half, half + 1) * step
        row = self._fine_image(t, np.array([-step, 0.0, step]))[1]
        prof = row[half:]
        below = np.nonzero(prof < 0.5 * prof[0])[0][0]
        t0, t1 = t[half + below - 1], t[half + below]
        p0, p1 = prof[below - 1], prof[below]
        return 2.0 * (t0 + (0.5 * prof[0] - p0) * (t1 - t0) / (p1 - p0))

    def __repr__(self) -> str:
        return f"{self.base!r}.with_jitter({self.sigma_px})"


#: PSF classes by name, for :func:`make_psf`.
PSFS: dict[str, Callable[..., PSF]] = {
    "gaussian": GaussianPSF,
    "moffat": MoffatPSF,
    "airy": AiryPSF,
    "seeing": SeeingPSF,
}


def make_psf(name: str, **kwargs: Any) -> PSF:
    """Build a PSF by name: ``make_psf("moffat", fwhm=3.0, beta=3.0)``.

    Parameters
    ----------
    name : str
        One of :data:`PSFS` (``"gaussian"``, ``"moffat"``, ``"airy"``, ``"seeing"``).
    jitter : float, optional
        If given, the PSF is convolved with a Gaussian of this sigma in pixels.
    **kwargs
        The class's parameters.

    Raises
    ------
    InputError
        If the name is unknown (the message lists the valid names) or the
        parameters are invalid.
    """
    try:
        cls = PSFS[name.lower()]
    except (KeyError, AttributeError):
        msg = f"PSF name must be one of {sorted(PSFS)}, got {name!r}"
        raise InputError(msg) from None
    jitter = kwargs.pop("jitter", None)
    try:
        psf = cls(**kwargs)
    except TypeError as exc:
        msg = f"invalid parameters for PSF {name!r}: {exc}"
        raise InputError(msg) from None
    return psf.with_jitter(jitter) if jitter else psf
