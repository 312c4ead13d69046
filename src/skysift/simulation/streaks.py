"""Satellite, debris and solar-system-object streaks with exact ("pixel perfect") rendering.

A streak from (x1, y1) to (x2, y2) of length Δ pixels is the *unitary streak*
of the Unistellar satellite paper (§2.2.4): a rectangle of length Δ + 1 and
width 1 centred on the segment. Every pixel receives the exact area of its
intersection with the rectangle, the areas are scaled to the requested total
flux, and the result is convolved with the PSF.

The exact areas come from a vectorised polygon coverage rasteriser (the signed
area / cover accumulation used by exact font rasterisers; it is Green's
theorem applied cell by cell): every polygon edge is cut at the pixel-grid
lines, each piece adds the signed area between itself and its cell's right
edge, and a cumulative sum along rows carries the "cover" to the cells on its
right. It is exact for any polygon, costs O(perimeter + area) and handles the
flux modulation (scintillation, tumbling) and wavy jitter of a streak by
cutting it into ≤ 1-pixel pieces with their own weights.

Solar-system-object trails are also offered in the Euclid way (eq. 1 of the
Euclid SSO paper): N aligned point sources on a 10× oversampled grid, each of
magnitude ``m_SSO + 2.5 log10(N)``.

PSFs: every ``psf`` argument takes an object of :mod:`skysift.simulation.optics`
(anything with ``.kernel(size=None, oversample=1)`` and ``.fwhm`` in pixels),
a float (the FWHM in pixels of a Gaussian PSF) or ``None`` (no convolution).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import fftconvolve

from skysift.errors import InputError
from skysift.simulation.optics import PSF, GaussianPSF
from skysift.simulation.truth import (
    SimTruth,
    object_row,
    segment_geometry,
    streak_mask,
    truth_records,
)

__all__ = [
    "render_streak",
    "render_sso_trail",
    "sso_trail_points",
    "streak_endpoints",
    "streak_polygons",
    "rasterize_polygons",
    "periodic_modulation",
    "random_modulation",
    "wavy_jitter",
    "random_jitter",
    "as_psf",
    "psf_kernel",
    "psf_fwhm",
    "convolve_kernel",
]

Profile = Callable[[np.ndarray], np.ndarray]

# --------------------------------------------------------------------------- PSF adapter


def as_psf(psf: Any) -> PSF | None:
    """``psf`` as an optics PSF: a PSF is returned as is, a float is a Gaussian FWHM (pixels).

    Raises
    ------
    InputError
        If ``psf`` is neither None, a PSF nor a positive number.
    """
    if psf is None or isinstance(psf, PSF):
        return psf
    if hasattr(psf, "kernel") and hasattr(psf, "fwhm"):
        return psf
    try:
        fwhm = float(psf)
    except (TypeError, ValueError):
        msg = f"psf must be a skysift PSF, a Gaussian FWHM in pixels or None, got {type(psf).__name__}"
        raise InputError(msg) from None
    if not fwhm > 0:
        msg = f"psf FWHM must be > 0 pixels, got {fwhm}"
        raise InputError(msg)
    return GaussianPSF(fwhm)


def psf_fwhm(psf: Any) -> float:
    """FWHM in pixels of ``psf`` (see :func:`as_psf`); 1 pixel (the streak width) for None."""
    p = as_psf(psf)
    return 1.0 if p is None else float(p.fwhm)


def psf_kernel(psf: Any, oversample: int = 1) -> np.ndarray | None:
    """Normalised (sum 1), odd-sized, centred PSF kernel of ``psf``, or None for no PSF.

    Parameters
    ----------
    psf : PSF, float or None
        See :func:`as_psf`; ``psf.kernel(oversample=oversample)`` is used.
    oversample : int, optional
        Sub-pixels per pixel of the kernel grid. Default 1.

    Returns
    -------
    ndarray, shape (K, K), or None

    Raises
    ------
    InputError
        If the kernel is not 2-D, odd-sized and with a positive sum.
    """
    p = as_psf(psf)
    if p is None:
        return None
    # PSFs are immutable once built: cache their kernels (computing a Moffat
    # kernel costs ~15 ms, far more than rendering a streak)
    cache = p.__dict__.setdefault("_skysift_kernels", {})
    if oversample in cache:
        return cache[oversample]
    k = np.asarray(p.kernel(oversample=oversample), dtype=float)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0 or not k.sum() > 0:
        msg = f"psf kernel must be 2-D, odd-sized, with a positive sum; got shape {k.shape}"
        raise InputError(msg)
    k = k / k.sum()
    k.setflags(write=False)
    cache[oversample] = k
    return k


def _separable_factors(
    kernel: np.ndarray, tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(ky, kx)`` with ``kernel == outer(ky, kx)`` to ``tol`` of its peak (a Gaussian), else None."""
    ky, kx = kernel.sum(axis=1), kernel.sum(axis=0)
    total = kernel.sum()
    if not total > 0:
        return None
    outer = np.outer(ky, kx) / total
    if np.max(np.abs(outer - kernel)) > tol * np.max(np.abs(kernel)):
        return None
    return ky / total, kx


def convolve_kernel(image: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    """Convolve ``image`` with a centred odd kernel, zero outside (same shape).

    A separable kernel (a Gaussian) goes through two 1-D
    passes, much faster than a 2-D FFT on small cutouts; any other kernel
    through an FFT.
    """
    img = np.asarray(image, dtype=np.float64)
    if kernel is None:
        return img
    factors = _separable_factors(kernel)
    if factors is not None:
        ky, kx = factors
        return cv2.sepFilter2D(
            img, cv2.CV_64F, kx[::-1].copy(), ky[::-1].copy(), borderType=cv2.BORDER_CONSTANT
        )

    return fftconvolve(img, kernel, mode="same")


# --------------------------------------------------------------------------- exact rasteriser


def rasterize_polygons(
    polygons: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    origin: tuple[int, int] | None = None,
    shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Exact area of intersection of polygons with pixels, weighted and summed.

    Parameters
    ----------
    polygons : ndarray, shape (K, V, 2)
        K simple polygons of V vertices ``(x, y)`` in pixel coordinates (pixel
        (col, row) spans ``[col ± 0.5] × [row ± 0.5]``); any orientation.
    weights : ndarray, shape (K,), optional
        Value per unit area of each polygon. Default 1.
    origin : (int, int), optional
        ``(row0, col0)`` of the output grid. Default: the polygons' bounding box.
    shape : (int, int), optional
        Output grid shape (H, W). Default: the polygons' bounding box. The grid
        must contain every polygon.

    Returns
    -------
    coverage : ndarray, shape (H, W)
        ``Σ_k weights[k] * area(pixel ∩ polygon_k)``.
    origin : (int, int)
        ``(row0, col0)`` of ``coverage[0, 0]`` in pixel coordinates.
    """
    p = np.asarray(polygons, dtype=float)
    k_, v_ = p.shape[:2]
    w = np.ones(k_) if weights is None else np.broadcast_to(np.asarray(weights, float), (k_,))
    xs, ys = p[..., 0], p[..., 1]
    if origin is None or shape is None:
        r0, c0 = int(np.floor(ys.min() + 0.5)), int(np.floor(xs.min() + 0.5))
        nr = max(int(np.ceil(ys.max() + 0.5)) - r0, 1)
        nc = max(int(np.ceil(xs.max() + 0.5)) - c0, 1)
    else:
        (r0, c0), (nr, nc) = origin, shape
    # shift so that cell (i, j) spans [j, j + 1] x [i, i + 1]
    ax = (xs + 0.5 - c0).ravel()
    ay = (ys + 0.5 - r0).ravel()
    bx = np.roll(xs + 0.5 - c0, -1, axis=1).ravel()
    by = np.roll(ys + 0.5 - r0, -1, axis=1).ravel()
    signed = 0.5 * np.sum(xs * np.roll(ys, -1, axis=1) - np.roll(xs, -1, axis=1) * ys, axis=1)
    ew = np.repeat(-np.sign(signed) * w, v_)
    n_e = ax.size
    # crossings of the grid lines x = integer and y = integer, as edge parameters t
    ts, ids = [np.zeros(n_e), np.ones(n_e)], [np.arange(n_e), np.arange(n_e)]
    for a, b in ((ax, bx), (ay, by)):
        lo = np.floor(np.minimum(a, b)) + 1
        hi = np.ceil(np.maximum(a, b)) - 1
        cnt = np.maximum(hi - lo + 1, 0).astype(np.int64)
        tot = int(cnt.sum())
        if tot:
            e = np.repeat(np.arange(n_e), cnt)
            local = np.arange(tot) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            ts.append((lo[e] + local - a[e]) / (b[e] - a[e]))
            ids.append(e)
    t = np.concatenate(ts)
    e = np.concatenate(ids)
    order = np.argsort(e * 2.0 + t, kind="stable")
    t, e = t[order], e[order]
    same = e[1:] == e[:-1]
    e0 = e[:-1][same]
    t0, t1 = t[:-1][same], t[1:][same]
    dxe, dye = bx[e0] - ax[e0], by[e0] - ay[e0]
    x0, x1 = ax[e0] + t0 * dxe, ax[e0] + t1 * dxe
    y0, y1 = ay[e0] + t0 * dye, ay[e0] + t1 * dye
    mx, my = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    col = np.clip(np.floor(mx).astype(np.int64), 0, nc)
    row = np.clip(np.floor(my).astype(np.int64), 0, nr - 1)
    dy = (y1 - y0) * ew[e0]
    ncol = nc + 2
    flat = row * ncol + col
    area = np.bincount(flat, weights=dy * (col + 1 - mx), minlength=nr * ncol)
    cover = np.bincount(flat + 1, weights=dy, minlength=nr * ncol + 1)[: nr * ncol]
    cov = np.cumsum(cover.reshape(nr, ncol), axis=1) + area.reshape(nr, ncol)
    return cov[:, :nc], (r0, c0)


# --------------------------------------------------------------------------- modulation / jitter


def periodic_modulation(amplitude: float, period: float, phase: float = 0.0) -> Profile:
    """Periodic flux modulation (tumbling): ``1 + amplitude * sin(2π s / period + phase)``.

    Parameters
    ----------
    amplitude : float
        Relative amplitude in [0, 1].
    period : float
        Period as a fraction of the streak length (``s`` runs from 0 at
        (x1, y1) to 1 at (x2, y2)), > 0.
    phase : float, optional
        Phase in radians. Default 0.

    Returns
    -------
    callable
        ``m(s) -> relative flux`` (≥ 0), vectorised.

    Raises
    ------
    InputError
        If ``amplitude`` is outside [0, 1] or ``period`` is not > 0.
    """
    if not 0 <= amplitude <= 1:
        msg = f"amplitude must be in [0, 1], got {amplitude}"
        raise InputError(msg)
    if not period > 0:
        msg = f"period must be > 0 (fraction of the streak length), got {period}"
        raise InputError(msg)
    return lambda s: 1.0 + amplitude * np.sin(2 * np.pi * np.asarray(s) / period + phase)


def _smooth_noise(n_knots: int, rng: np.random.Generator) -> Profile:
    knots = rng.standard_normal(n_knots)
    grid = np.linspace(0.0, 1.0, n_knots)

    def f(s: np.ndarray) -> np.ndarray:

        return CubicSpline(grid, knots, bc_type="natural")(np.clip(s, 0.0, 1.0))

    return f


def random_modulation(
    amplitude: float, n_knots: int = 8, rng: np.random.Generator | int | None = None
) -> Profile:
    """Random smooth flux variation (scintillation): ``exp(amplitude * g(s))``, g a unit spline.

    Parameters
    ----------
    amplitude : float
        Log-amplitude (≈ relative rms), ≥ 0.
    n_knots : int, optional
        Independent random knots along the streak (≥ 2). Default 8.
    rng : Generator, int or None
        Random state.

    Returns
    -------
    callable
        ``m(s) -> relative flux`` (> 0) for ``s`` in [0, 1].

    Raises
    ------
    InputError
        If ``amplitude`` < 0 or ``n_knots`` < 2.
    """
    if amplitude < 0 or n_knots < 2:
        msg = f"amplitude must be >= 0 and n_knots >= 2, got {amplitude}, {n_knots}"
        raise InputError(msg)
    g = _smooth_noise(n_knots, np.random.default_rng(rng))
    return lambda s: np.exp(amplitude * g(np.asarray(s)))


def wavy_jitter(amplitude: float, period: float, phase: float = 0.0) -> Profile:
    """Sinusoidal perpendicular displacement of the streak path, pixels.

    ``d(s) = amplitude * sin(2π s / period + phase)``, ``s`` in [0, 1] along the streak.
    """
    if amplitude < 0 or not period > 0:
        msg = f"amplitude must be >= 0 pixels and period > 0, got {amplitude}, {period}"
        raise InputError(msg)
    return lambda s: amplitude * np.sin(2 * np.pi * np.asarray(s) / period + phase)


def random_jitter(
    sigma: float, n_knots: int = 12, rng: np.random.Generator | int | None = None
) -> Profile:
    """Random smooth perpendicular displacement (telescope jitter), rms ≈ ``sigma`` pixels."""
    if sigma < 0 or n_knots < 2:
        msg = f"sigma must be >= 0 pixels and n_knots >= 2, got {sigma}, {n_knots}"
        raise InputError(msg)
    g = _smooth_noise(n_knots, np.random.default_rng(rng))
    return lambda s: sigma * g(np.asarray(s))


# --------------------------------------------------------------------------- streak geometry


def _check_flux(flux: float) -> float:
    flux = float(flux)
    if not np.isfinite(flux) or flux < 0:
        msg = f"flux must be finite and >= 0 (electrons), got {flux}"
        raise InputError(msg)
    return flux


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 1:
        msg = f"shape must be (H, W) with H, W >= 1, got {shape}"
        raise InputError(msg)
    return int(shape[0]), int(shape[1])


def _clip_interval(
    px: float, py: float, ux: float, uy: float, lo: float, hi: float, box: tuple[float, ...]
) -> tuple[float, float]:
    """Liang–Barsky: sub-interval of l in [lo, hi] with p + l u inside box (xmin, xmax, ymin, ymax)."""
    xmin, xmax, ymin, ymax = box
    for p0, d, bmin, bmax in ((px, ux, xmin, xmax), (py, uy, ymin, ymax)):
        if abs(d) < 1e-12:
            if p0 < bmin or p0 > bmax:
                return 1.0, 0.0
            continue
        a, b = (bmin - p0) / d, (bmax - p0) / d
        lo, hi = max(lo, min(a, b)), min(hi, max(a, b))
    return lo, hi


def streak_polygons(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    *,
    modulation: Profile | None = None,
    jitter: Profile | None = None,
    clip_box: tuple[float, float, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Polygons tiling the unitary streak and their relative weights per unit area.

    The unitary streak is the rectangle of length Δ + 1 and width 1 centred on
    the segment (Unistellar satellite paper, §2.2.4). Without modulation or
    jitter it is one rectangle; otherwise it is cut into pieces of at most one
    pixel along the streak, weighted by ``modulation(s)`` and displaced across
    the streak by ``jitter(s)`` (pixels), with ``s`` in [0, 1] from (x1, y1)
    to (x2, y2).

    Parameters
    ----------
    x1, y1, x2, y2 : float
        Endpoints, pixels.
    modulation, jitter : callable, optional
        Relative flux and perpendicular offset profiles (see
        :func:`periodic_modulation`, :func:`random_jitter`).
    clip_box : (xmin, xmax, ymin, ymax), optional
        Keep only the part of the streak whose centre line lies in this box.

    Returns
    -------
    polygons : ndarray, shape (K, 4, 2)
        Quadrilaterals (x, y).
    weights : ndarray, shape (K,)
        Value per unit area, normalised so that the *whole* (unclipped) streak
        integrates to 1.
    """
    dx, dy = x2 - x1, y2 - y1
    delta = float(np.hypot(dx, dy))
    ux, uy = (dx / delta, dy / delta) if delta > 0 else (1.0, 0.0)
    nx, ny = -uy, ux
    total_len = delta + 1.0
    # path parameter l in [-0.5, delta + 0.5] along u from (x1, y1)
    if modulation is None and jitter is None:
        edges = np.array([-0.5, delta + 0.5])
    else:
        n_pieces = max(1, int(np.ceil(total_len)))
        edges = np.linspace(-0.5, delta + 0.5, n_pieces + 1)
    mids = 0.5 * (edges[:-1] + edges[1:])
    s_of = (lambda lv: np.clip(lv / delta, 0.0, 1.0)) if delta > 0 else (lambda lv: lv * 0.0 + 0.5)
    if modulation is None:
        m = np.ones(mids.size)
    else:
        m = np.asarray(modulation(s_of(mids)), dtype=float)
        if np.any(~np.isfinite(m)) or np.any(m < 0):
            msg = "modulation must return finite values >= 0 along the streak"
            raise InputError(msg)
    norm = float(np.sum(m * np.diff(edges)))
    if not norm > 0:
        msg = "modulation is zero along the whole streak"
        raise InputError(msg)
    weights = m / norm
    offs = np.zeros(edges.size) if jitter is None else np.asarray(jitter(s_of(edges)), float)
    if clip_box is not None:
        pad = float(np.max(np.abs(offs))) + 1.0
        xmin, xmax, ymin, ymax = clip_box
        lo, hi = _clip_interval(
            x1, y1, ux, uy, edges[0], edges[-1], (xmin - pad, xmax + pad, ymin - pad, ymax + pad)
        )
        if lo >= hi:
            return np.zeros((0, 4, 2)), np.zeros(0)
        keep = (edges[1:] > lo) & (edges[:-1] < hi)
        first, last = np.flatnonzero(keep)[[0, -1]]
        sel_edges = edges[first : last + 2].copy()
        sel_offs = offs[first : last + 2].copy()
        if jitter is not None:
            sel_edges[0], sel_edges[-1] = max(sel_edges[0], lo), min(sel_edges[-1], hi)
            sel_offs[[0, -1]] = np.asarray(jitter(s_of(sel_edges[[0, -1]])), float)
        else:
            sel_edges[0], sel_edges[-1] = max(sel_edges[0], lo), min(sel_edges[-1], hi)
        edges, offs, weights = sel_edges, sel_offs, weights[first : last + 1]
    cx = x1 + edges * ux + offs * nx
    cy = y1 + edges * uy + offs * ny
    polys = np.empty((edges.size - 1, 4, 2))
    for j, (a, sgn) in enumerate(
        (
            (slice(None, -1), -0.5),
            (slice(1, None), -0.5),
            (slice(1, None), 0.5),
            (slice(None, -1), 0.5),
        )
    ):
        polys[:, j, 0] = cx[a] + sgn * nx
        polys[:, j, 1] = cy[a] + sgn * ny
    return polys, weights


def streak_endpoints(
    shape: tuple[int, int],
    length: float,
    angle: float,
    *,
    centre: tuple[float, float] | None = None,
    must_fit: bool = True,
    rng: np.random.Generator | int | None = None,
) -> tuple[float, float, float, float]:
    """Endpoints of a streak of given length and angle, placed in the frame.

    Parameters
    ----------
    shape : (int, int)
        Frame shape (H, W).
    length : float
        Length Δ in pixels, ≥ 0.
    angle : float
        Degrees counter-clockwise from +x.
    centre : (float, float), optional
        ``(x, y)`` of the streak centre. Default: uniform at random among the
        centres that keep the streak inside the frame (``must_fit``) or in the frame.
    must_fit : bool, optional
        Require both endpoints inside the frame ``[-0.5, W - 0.5] × [-0.5, H - 0.5]``.
        Default True.
    rng : Generator, int or None
        Random state.

    Returns
    -------
    (x1, y1, x2, y2) : tuple of float

    Raises
    ------
    InputError
        If ``length`` < 0, or ``must_fit`` and the streak cannot fit (too long
        for the frame at this angle) or does not fit at ``centre``.
    """
    h, w = _check_shape(shape)
    if not length >= 0:
        msg = f"length must be >= 0 pixels, got {length}"
        raise InputError(msg)
    hx = 0.5 * length * np.cos(np.radians(angle))
    hy = 0.5 * length * np.sin(np.radians(angle))
    ax, ay = abs(hx), abs(hy)
    xlo, xhi, ylo, yhi = -0.5, w - 0.5, -0.5, h - 0.5
    if must_fit and (2 * ax > w or 2 * ay > h):
        msg = (
            f"length={length:.1f} px at angle={angle:.1f} deg does not fit in a {w}x{h} frame "
            f"(must_fit=True); the longest streak at this angle is "
            f"{min(w / max(abs(np.cos(np.radians(angle))), 1e-12), h / max(abs(np.sin(np.radians(angle))), 1e-12)):.1f} px"
        )
        raise InputError(msg)
    if centre is None:
        gen = np.random.default_rng(rng)
        if must_fit:
            cx, cy = gen.uniform(xlo + ax, xhi - ax), gen.uniform(ylo + ay, yhi - ay)
        else:
            cx, cy = gen.uniform(xlo, xhi), gen.uniform(ylo, yhi)
    else:
        cx, cy = float(centre[0]), float(centre[1])
    x1, y1, x2, y2 = cx - hx, cy - hy, cx + hx, cy + hy
    if must_fit:
        _check_inside(shape, x1, y1, x2, y2)
    return float(x1), float(y1), float(x2), float(y2)


def _check_inside(shape: tuple[int, int], x1: float, y1: float, x2: float, y2: float) -> None:
    h, w = shape
    eps = 1e-9
    inside = all(-0.5 - eps <= v <= w - 0.5 + eps for v in (x1, x2)) and all(
        -0.5 - eps <= v <= h - 0.5 + eps for v in (y1, y2)
    )
    if not inside:
        length = float(np.hypot(x2 - x1, y2 - y1))
        msg = (
            f"must_fit=True needs both endpoints inside the {w}x{h} frame; got "
            f"(x1, y1)=({x1:.2f}, {y1:.2f}), (x2, y2)=({x2:.2f}, {y2:.2f}), length {length:.1f} px"
        )
        raise InputError(msg)


# --------------------------------------------------------------------------- rendering


def _paste(out: np.ndarray, patch: np.ndarray, r0: int, c0: int) -> None:
    h, w = out.shape
    ph, pw = patch.shape
    ra, ca = max(r0, 0), max(c0, 0)
    rb, cb = min(r0 + ph, h), min(c0 + pw, w)
    if ra < rb and ca < cb:
        out[ra:rb, ca:cb] += patch[ra - r0 : rb - r0, ca - c0 : cb - c0]


def render_streak(
    shape: tuple[int, int],
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    flux: float,
    psf: Any,
    *,
    modulation: Profile | None = None,
    jitter: Profile | float | None = None,
    rng: np.random.Generator | int | None = None,
    must_fit: bool = False,
    oversample: int = 1,
    sigma: float | None = None,
    mask_diameter: float | None = None,
    exposure_s: float | None = None,
    mag: float | None = None,
    kind: str = "streak",
    object_id: int = 1,
) -> tuple[np.ndarray, SimTruth]:
    """Render a "pixel perfect" streak and its truth.

    The unitary streak (a rectangle of length Δ + 1 and width 1 centred on the
    segment, Δ its length in pixels) is rasterised with exact pixel areas,
    scaled to ``flux`` and convolved with the PSF. A zero-length streak is a
    point source (a one-pixel box convolved with the PSF).

    Parameters
    ----------
    shape : (int, int)
        Image shape (H, W).
    x1, y1, x2, y2 : float
        Endpoints in pixels (0-based, x = column, y = row); the streak may
        leave the frame unless ``must_fit``.
    flux : float
        Total flux of the whole streak, electrons, ≥ 0. The image holds the
        part that falls in the frame.
    psf : PSF object, float or None
        PSF (see module docstring); a float is a Gaussian FWHM in pixels.
    modulation : callable, optional
        Relative flux along the streak, ``m(s)`` with ``s`` in [0, 1] from
        (x1, y1) to (x2, y2) (see :func:`periodic_modulation`,
        :func:`random_modulation`); the total stays ``flux``.
    jitter : callable or float, optional
        Perpendicular path displacement ``d(s)`` in pixels (see
        :func:`wavy_jitter`), or a float: rms of a random smooth jitter drawn
        with ``rng``.
    rng : Generator, int or None
        Random state (only used for ``jitter`` given as a float).
    must_fit : bool, optional
        Require both endpoints inside the frame. Default False.
    oversample : int, optional
        1 (default) is the paper's method: exact pixel areas, then a
        pixel-sampled PSF. ``n > 1`` rasterises on a grid ``n`` times finer,
        convolves with the PSF sampled on it (``psf.kernel(oversample=n)``)
        and bins: slower (about ``n**2``) but free of the centroid bias below.
    sigma : float, optional
        Background noise per pixel (electrons) for the truth SNRs; NaN if None.
    mask_diameter : float, optional
        Truth-mask disk diameter in pixels. Default: the PSF FWHM (plus twice
        the largest jitter offset).
    exposure_s : float, optional
        Exposure in seconds, to fill ``vx, vy`` (pixels per second) in the truth.
    mag : float, optional
        Magnitude recorded in the truth.
    kind : str, optional
        ``type`` recorded in the truth. Default "streak".
    object_id : int, optional
        ``id`` in the truth and label in ``truth.labels``. Default 1.

    Returns
    -------
    image : ndarray, shape (H, W), float64
        Noise-free streak, electrons.
    truth : SimTruth
        Mask (the segment convolved with a disk of diameter the PSF FWHM),
        labels and a one-row table (``flux`` = ``flux`` in electrons).

    Raises
    ------
    InputError
        For a negative or non-finite flux, a bad shape, a bad modulation,
        ``oversample`` < 1, or (``must_fit``) an endpoint outside the frame.

    Notes
    -----
    The pixel areas are exact, so the image sums to ``flux`` (to rounding)
    when the streak and its PSF wings lie in the frame, and the continuous
    centroid of the rendered light is the segment centre. The *pixel-sampled*
    intensity-weighted centre of a pixelised rectangle is biased by at most
    ``1 / (8 (Δ + 1))`` pixels along the streak (the pixel sawtooth integrated
    over a non-integer length; ≤ 0.018 px for Δ ≥ 6, 0 for Δ = 0), and a
    pixel-sampled symmetric PSF keeps that bias. ``oversample=3`` brings it
    below 0.012 px for any length (below 0.004 px for Δ ≥ 2) when the FWHM is
    ≥ 2 pixels, at about 10× the cost.

    References
    ----------
    Unistellar satellite-streak paper, §2.2.4 ("pixel perfect" streak simulation
    and its ground truth).
    """
    h, w = _check_shape(shape)
    flux = _check_flux(flux)
    if must_fit:
        _check_inside((h, w), x1, y1, x2, y2)
    if isinstance(jitter, int | float):
        jitter = random_jitter(float(jitter), rng=rng) if jitter > 0 else None
    os_ = int(oversample)
    if os_ < 1:
        msg = f"oversample must be an integer >= 1, got {oversample}"
        raise InputError(msg)
    kernel = psf_kernel(psf, oversample=os_)
    half = 0 if kernel is None else kernel.shape[0] // 2
    margin = half / os_ + 2.0
    box = (-0.5 - margin, w - 0.5 + margin, -0.5 - margin, h - 0.5 + margin)
    polys, weights = streak_polygons(
        x1, y1, x2, y2, modulation=modulation, jitter=jitter, clip_box=box
    )
    image = np.zeros((h, w))
    if len(polys):
        if os_ == 1:
            cov, (r0, c0) = rasterize_polygons(polys, weights * flux)
        else:
            # fine grid aligned on the pixels: fine coordinate = (x + 0.5) * os - 0.5
            lo = np.floor(polys.reshape(-1, 2).min(axis=0) + 0.5).astype(int)
            hi = np.ceil(polys.reshape(-1, 2).max(axis=0) + 0.5).astype(int)
            (c0, r0), (nc, nr) = lo, hi - lo
            cov, _ = rasterize_polygons(
                (polys + 0.5) * os_ - 0.5, weights * flux / os_**2,
                origin=(r0 * os_, c0 * os_), shape=(nr * os_, nc * os_),
            )  # fmt: skip
        if kernel is not None:
            hp = -(-half // os_) * os_  # pad by whole pixels
            cov = convolve_kernel(np.pad(cov, hp), kernel)
            r0, c0 = r0 - hp // os_, c0 - hp // os_
        if os_ > 1:
            cov = cov.reshape(cov.shape[0] // os_, os_, cov.shape[1] // os_, os_).sum(axis=(1, 3))
        _paste(image, cov, r0, c0)
    fwhm = psf_fwhm(psf)
    jit = 0.0
    if jitter is not None:
        jit = float(np.max(np.abs(jitter(np.linspace(0, 1, 257)))))
    diameter = (fwhm if mask_diameter is None else mask_diameter) + 2 * jit
    mask = streak_mask((h, w), x1, y1, x2, y2, fwhm, diameter=diameter)
    length, angle = segment_geometry(x1, y1, x2, y2)
    vx = vy = np.nan
    if exposure_s is not None:
        vx, vy = (x2 - x1) / exposure_s, (y2 - y1) / exposure_s
    row = object_row(
        kind=kind, signal=image, mask=mask, sigma=sigma, id=object_id,
        x=0.5 * (x1 + x2), y=0.5 * (y1 + y2), x1=x1, y1=y1, x2=x2, y2=y2,
        mag=np.nan if mag is None else mag, flux=flux, vx=vx, vy=vy, length=length, angle=angle,
    )  # fmt: skip
    labels = mask.astype(np.int32) * object_id
    return image, SimTruth(mask=mask, labels=labels, records=truth_records([row]))


# --------------------------------------------------------------------------- Euclid-style SSO trails


def sso_trail_points(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    flux: float,
    *,
    mag: float | None = None,
    oversample: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The N aligned point sources that make a solar-system-object trail (Euclid SSO paper, eq. 1).

    ``N = round(Δ * oversample) + 1`` points are spaced evenly from (x1, y1)
    to (x2, y2) (one per sub-pixel of the ``oversample``× grid), each with
    ``flux / N`` electrons and magnitude ``m_star = m_SSO + 2.5 log10(N)``.

    Parameters
    ----------
    x1, y1, x2, y2 : float
        Trail endpoints, pixels.
    flux : float
        Total SSO flux during the exposure, electrons, ≥ 0.
    mag : float, optional
        SSO magnitude ``m_SSO``; the point magnitudes are NaN when None.
    oversample : int, optional
        Sub-pixels per pixel. Default 10 (the paper's value).

    Returns
    -------
    x, y, flux_each, mag_each : ndarray, shape (N,)

    Raises
    ------
    InputError
        For a negative flux or ``oversample`` < 1.

    References
    ----------
    Euclid SSO streak paper, eq. (1): ``m_star = m_SSO + 2.5 log10(N)``.
    """
    flux = _check_flux(flux)
    if int(oversample) < 1:
        msg = f"oversample must be >= 1, got {oversample}"
        raise InputError(msg)
    delta = float(np.hypot(x2 - x1, y2 - y1))
    n = int(round(delta * oversample)) + 1
    s = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
    xs = x1 + s * (x2 - x1)
    ys = y1 + s * (y2 - y1)
    m_each = np.full(n, np.nan if mag is None else mag + 2.5 * np.log10(n))
    return xs, ys, np.full(n, flux / n), m_each


def render_sso_trail(
    shape: tuple[int, int],
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    flux: float,
    psf: Any,
    *,
    mag: float | None = None,
    oversample: int = 10,
    sigma: float | None = None,
    exposure_s: float | None = None,
    object_id: int = 1,
) -> tuple[np.ndarray, SimTruth]:
    """Render a solar-system-object trail as N aligned stars on an oversampled grid.

    The points of :func:`sso_trail_points` are deposited (cloud-in-cell) on a
    grid ``oversample`` times finer than the pixels, convolved with the PSF
    sampled on that grid and summed back into pixels.

    Parameters
    ----------
    shape : (int, int)
        Image shape (H, W).
    x1, y1, x2, y2 : float
        Trail endpoints, pixels.
    flux : float
        Total SSO flux, electrons.
    psf : PSF object, float or None
        PSF (a float is a Gaussian FWHM in pixels).
    mag : float, optional
        SSO magnitude, recorded in the truth.
    oversample : int, optional
        Default 10, as in the paper.
    sigma : float, optional
        Background noise (electrons) for the truth SNRs.
    exposure_s : float, optional
        Exposure (s) to fill ``vx, vy``.
    object_id : int, optional
        Truth id. Default 1.

    Returns
    -------
    image : ndarray, shape (H, W)
        Noise-free trail, electrons.
    truth : SimTruth
        ``type`` = "sso"; mask = segment convolved with a disk of diameter the FWHM.

    References
    ----------
    Euclid SSO streak paper, eq. (1) and §2.2 (simulation of the SSO stamps).
    """
    h, w = _check_shape(shape)
    xs, ys, fe, _ = sso_trail_points(x1, y1, x2, y2, flux, mag=mag, oversample=oversample)
    os_ = int(oversample)
    kernel = psf_kernel(psf, oversample=os_)
    half = 0 if kernel is None else kernel.shape[0] // 2
    half_px = int(np.ceil(half / os_)) + 1
    c0 = max(int(np.floor(min(xs.min(), xs.max()))) - half_px, -half_px)
    c1 = min(int(np.ceil(xs.max())) + half_px, w - 1 + half_px)
    r0 = max(int(np.floor(ys.min())) - half_px, -half_px)
    r1 = min(int(np.ceil(ys.max())) + half_px, h - 1 + half_px)
    image = np.zeros((h, w))
    if c0 <= c1 and r0 <= r1:
        nr, nc = (r1 - r0 + 1) * os_, (c1 - c0 + 1) * os_
        # sub-pixel centres: pixel p spans [p - 0.5, p + 0.5]; sub-pixel q has centre
        # c0 - 0.5 + (q + 0.5) / os
        fx = (xs - c0 + 0.5) * os_ - 0.5
        fy = (ys - r0 + 0.5) * os_ - 0.5
        ix, iy = np.floor(fx).astype(int), np.floor(fy).astype(int)
        ax, ay = fx - ix, fy - iy
        grid = np.zeros((nr + 1, nc + 1))
        for ddx, ddy, wgt in (
            (0, 0, (1 - ax) * (1 - ay)),
            (1, 0, ax * (1 - ay)),
            (0, 1, (1 - ax) * ay),
            (1, 1, ax * ay),
        ):
            jx, jy = ix + ddx, iy + ddy
            ok = (jx >= 0) & (jx < nc) & (jy >= 0) & (jy < nr)
            np.add.at(grid, (jy[ok], jx[ok]), fe[ok] * wgt[ok])
        grid = convolve_kernel(grid[:nr, :nc], kernel)
        binned = grid.reshape(nr // os_, os_, nc // os_, os_).sum(axis=(1, 3))
        _paste(image, binned, r0, c0)
    fwhm = psf_fwhm(psf)
    mask = streak_mask((h, w), x1, y1, x2, y2, fwhm)
    length, angle = segment_geometry(x1, y1, x2, y2)
    vx = vy = np.nan
    if exposure_s is not None:
        vx, vy = (x2 - x1) / exposure_s, (y2 - y1) / exposure_s
    row = object_row(
        kind="sso", signal=image, mask=mask, sigma=sigma, id=object_id,
        x=0.5 * (x1 + x2), y=0.5 * (y1 + y2), x1=x1, y1=y1, x2=x2, y2=y2,
        mag=np.nan if mag is None else mag, flux=flux, vx=vx, vy=vy, length=length, angle=angle,
    )  # fmt: skip
    return image, SimTruth(
        mask=mask, labels=mask.astype(np.int32) * object_id, records=truth_records([row])
    )
