"""Shift-and-stack search for faint movers in a sequence (KBMOD's method) and tracklet linking.

For movers too faint to see in one frame, the frames are shifted along every
trial linear trajectory and summed, so the mover adds up coherently while
the noise adds in quadrature: a √N gain in SNR, 1.25·log10(N) magnitudes in
depth for N frames.

Following Whidden et al. (2019, AJ 157, 119, §2-3), each difference image
``D_t`` (frame minus the static sky) with variance ``V_t`` and PSF ``P`` gives

* ``ψ_t = (D_t / V_t) ⋆ P`` (the PSF-correlated, inverse-variance weighted image),
* ``φ_t = (1 / V_t) ⋆ P²``,

and a trajectory ``x(t) = x0 + vx t, y(t) = y0 + vy t`` has the likelihood
sums ``ψ = Σ ψ_t(x(t), y(t))`` and ``φ = Σ φ_t(x(t), y(t))``, the
maximum-likelihood flux ``ψ / φ`` and ``SNR = ψ / √φ``. The search evaluates
every start pixel for every velocity of a grid of rates and angles at once
(integer-pixel shifts of whole images, vectorised numpy), keeps the best
velocity per start pixel, finds the local maxima, refines each candidate on a
fine sub-pixel grid, rejects outlier frames in its light curve with KBMOD's
σ_G clipping (robust to cosmic rays and residuals that a plain sum lets
through) and suppresses duplicates.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from astropy.table import Table
from scipy import ndimage

from skysift.errors import InputError
from skysift.movers.baseline import NoMoversWarning

__all__ = [
    "difference_images",
    "link_tracklets",
    "psi_phi",
    "rates_to_sky",
    "shift_and_stack",
    "velocity_grid",
]


def _check_cube(frames: Any, name: str = "frames") -> np.ndarray:
    cube = np.asarray(frames, dtype=np.float32)
    if cube.ndim != 3 or cube.shape[0] < 2:
        msg = f"{name} must be a (T, H, W) sequence with T >= 2, got shape {cube.shape}"
        raise InputError(msg)
    return cube


def _check_times(times: Any, n: int) -> np.ndarray:
    if times is None:
        return np.arange(n, dtype=float)
    if hasattr(times, "jd"):  # astropy Time: seconds from the first
        t = np.asarray((times - times[0]).sec, dtype=float)
    else:
        t = np.asarray(times, dtype=float)
    if t.shape != (n,):
        msg = f"times must have one value per frame ({n}), got shape {t.shape}"
        raise InputError(msg)
    return t - t[0]


def difference_images(
    frames: np.ndarray, *, reference: np.ndarray | None = None, star_mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Difference images and their per-frame variance.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W)
        Registered frames, T ≥ 2.
    reference : ndarray, shape (H, W), optional
        Static-sky template; default the per-pixel median of ``frames``.
    star_mask : ndarray of bool, shape (H, W), optional
        ``True`` = pixel masked (e.g. bright stars); set to 0 with infinite variance.

    Returns
    -------
    diff : ndarray of float32, shape (T, H, W)
        ``frames - reference`` with each frame's residual background removed.
    var : ndarray of float32, shape (T, H, W)
        Variance per pixel: the larger of the frame's robust σ_G² and, with
        T ≥ 5, the pixel's robust temporal variance (3×3 median-filtered) where it
        exceeds twice the former (around stars);
        inf where masked.

    Raises
    ------
    InputError
        For a bad sequence or a template/mask of another shape.
    """
    cube = _check_cube(frames)
    ref = np.median(cube, axis=0) if reference is None else np.asarray(reference, np.float32)
    if ref.shape != cube.shape[1:]:
        msg = f"reference shape {ref.shape} differs from frame shape {cube.shape[1:]}"
        raise InputError(msg)
    diff = cube - ref[None]
    var = np.empty_like(diff)
    for k in range(diff.shape[0]):
        q25, q50, q75 = np.percentile(diff[k][::2, ::2], [25, 50, 75])
        diff[k] -= q50
        var[k] = max((0.7413 * (q75 - q25)) ** 2, 1e-12)
    if cube.shape[0] >= 5:
        # per-pixel temporal scatter (robust MAD), smoothed: bright stars and their
        # Poisson noise get their own, larger variance (KBMOD uses variance planes)
        mad = 1.4826 * np.median(np.abs(diff - np.median(diff, axis=0)), axis=0)
        local = ndimage.median_filter(mad * mad, size=3)[None]
        # only where clearly above the frame's noise (stars), so that a faint mover's
        # own track does not inflate its variance and bias its fit
        var = np.where(local > 2.0 * var, local, var)
    if star_mask is not None:
        m = np.asarray(star_mask, dtype=bool)
        if m.shape != cube.shape[1:]:
            msg = f"star_mask shape {m.shape} differs from frame shape {cube.shape[1:]}"
            raise InputError(msg)
        diff[:, m] = 0.0
        var[:, m] = np.inf
    return diff, var


def _gauss_psf(fwhm: float) -> np.ndarray:
    s = fwhm / 2.3548
    h = int(np.ceil(3 * s))
    y, x = np.mgrid[-h : h + 1, -h : h + 1]
    p = np.exp(-(x**2 + y**2) / (2 * s * s))
    return p / p.sum()


def psi_phi(
    diff: np.ndarray, var: np.ndarray, psf: float | np.ndarray = 2.5
) -> tuple[np.ndarray, np.ndarray]:
    """KBMOD's ψ and φ images (Whidden et al. 2019, eqs. 6-7).

    Parameters
    ----------
    diff, var : ndarray, shape (T, H, W)
        Difference images and their variance (``inf`` = masked).
    psf : float or ndarray, optional
        Gaussian FWHM in pixels, or a normalised PSF kernel. Default 2.5.

    Returns
    -------
    psi, phi : ndarray of float32, shape (T, H, W)

    Raises
    ------
    InputError
        For a non-positive FWHM or shapes that differ.
    """
    if np.shape(diff) != np.shape(var):
        msg = f"diff shape {np.shape(diff)} differs from var shape {np.shape(var)}"
        raise InputError(msg)
    var = np.asarray(var, dtype=np.float32)
    inv = np.zeros(var.shape, np.float32)
    np.divide(1.0, var, out=inv, where=np.isfinite(var) & (var > 0))  # masked/zero: weight 0
    psi = np.empty(diff.shape, np.float32)
    phi = np.empty(diff.shape, np.float32)
    if np.ndim(psf) == 0:
        if not float(psf) > 0:
            msg = f"psf FWHM must be > 0 pixels, got {psf}"
            raise InputError(msg)
        # a Gaussian PSF is separable: two 1-D correlations instead of one 2-D
        g = _gauss_psf(float(psf)).sum(axis=0)
        for k in range(diff.shape[0]):
            a = ndimage.correlate1d(diff[k] * inv[k], g, axis=0, mode="constant")
            psi[k] = ndimage.correlate1d(a, g, axis=1, mode="constant")
            b = ndimage.correlate1d(inv[k], g * g, axis=0, mode="constant")
            phi[k] = ndimage.correlate1d(b, g * g, axis=1, mode="constant")
        return psi, phi
    p = np.asarray(psf, dtype=float)
    p = p / p.sum()
    for k in range(diff.shape[0]):
        psi[k] = ndimage.correlate(diff[k] * inv[k], p, mode="constant")
        phi[k] = ndimage.correlate(inv[k], p * p, mode="constant")
    return psi, phi


def velocity_grid(
    rate_range: tuple[float, float],
    *,
    n_rates: int = 20,
    n_angles: int = 36,
    angle_range: tuple[float, float] = (0.0, 360.0),
) -> np.ndarray:
    """A grid of trial velocities (KBMOD's search grid of rates × angles).

    Parameters
    ----------
    rate_range : (float, float)
        Rates in pixels per time unit (per frame when ``times`` are frame indices), lo ≤ hi, lo ≥ 0.
    n_rates, n_angles : int, optional
        Grid size. Defaults 20, 36.
    angle_range : (float, float), optional
        Angles in degrees counter-clockwise from +x, end excluded. Default full circle.

    Returns
    -------
    ndarray, shape (n_rates × n_angles, 2)
        ``(vx, vy)`` per trial.

    Raises
    ------
    InputError
        For a negative or reversed rate range or a grid size < 1.
    """
    lo, hi = map(float, rate_range)
    if lo < 0 or hi < lo:
        msg = f"rate_range must be (lo, hi) with 0 <= lo <= hi, got {rate_range}"
        raise InputError(msg)
    if n_rates < 1 or n_angles < 1:
        msg = f"n_rates and n_angles must be >= 1, got {n_rates}, {n_angles}"
        raise InputError(msg)
    r = np.linspace(lo, hi, int(n_rates))
    a = np.radians(np.linspace(*angle_range, int(n_angles), endpoint=False))
    rr, aa = np.meshgrid(r, a, indexing="ij")
    v = np.stack([(rr * np.cos(aa)).ravel(), (rr * np.sin(aa)).ravel()], axis=1)
    return np.unique(np.round(v, 9), axis=0)


def _stack_all(psi, phi, t, vel):
    """Best stacked SNR over ``vel`` for every start pixel: (snr, index of the velocity).

    Only ψ is shifted and summed; φ is taken as each frame's median (exact for a
    spatially uniform variance, conservative near stars where the variance is
    larger). This halves the memory traffic of the grid search; every
    candidate is then re-scored with the exact per-pixel ψ and φ.
    """
    n, h, w = psi.shape
    off = np.rint(t[None, :, None] * vel[:, None, :]).astype(int)  # (V, T, 2)
    pad = int(np.abs(off).max()) if off.size else 0
    pp = np.zeros((n, h + 2 * pad, w + 2 * pad), np.float32)
    pp[:, pad : pad + h, pad : pad + w] = psi
    norm = np.float32(1.0 / np.sqrt(max(float(np.median(phi, axis=(1, 2)).sum()), 1e-30)))
    best = np.full((h, w), -np.inf, np.float32)
    arg = np.zeros((h, w), np.int32)
    acc = np.empty((h, w), np.float32)
    better = np.empty((h, w), bool)
    for i in range(vel.shape[0]):
        dx, dy = off[i, 0]
        np.copyto(acc, pp[0, pad + dy : pad + dy + h, pad + dx : pad + dx + w])
        for k in range(1, n):
            dx, dy = off[i, k]
            np.add(acc, pp[k, pad + dy : pad + dy + h, pad + dx : pad + dx + w], out=acc)
        np.greater(acc, best, out=better)
        np.copyto(best, acc, where=better)
        np.copyto(arg, i, where=better)
    return best * norm, arg


def _light_curve(psi, phi, t, x0, y0, vx, vy):
    xs = x0 + vx * t
    ys = y0 + vy * t
    n, h, w = psi.shape
    ok = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    p = np.zeros(n)
    q = np.zeros(n)
    # psi, phi are cubic-spline coefficient cubes (_spline): cubic interpolation has no
    # bias toward pixel centres (bilinear interpolation of the peaked psi would favour
    # trajectories through pixel centres and bias the rates)
    for k in np.nonzero(ok)[0]:
        c = [[ys[k]], [xs[k]]]
        p[k] = ndimage.map_coordinates(psi[k], c, order=3, prefilter=False)[0]
        q[k] = ndimage.map_coordinates(phi[k], c, order=3, prefilter=False)[0]
    return p, q


def _spline(cube: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.spline_filter(c, order=3) for c in cube])


def _sigma_g_keep(p, q, n_sigma=3.0):
    """KBMOD σ_G clipping of a light curve (Whidden et al. 2019, §3.3)."""
    good = q > 0
    f = np.where(good, p / np.where(good, q, 1), 0.0)
    if good.sum() < 4:
        return good
    q25, q50, q75 = np.percentile(f[good], [25, 50, 75])
    sg = 0.7413 * (q75 - q25)
    return good & (np.abs(f - q50) <= n_sigma * max(sg, 1e-12))


def _score(psi, phi, t, x0, y0, vx, vy, clip):
    p, q = _light_curve(psi, phi, t, x0, y0, vx, vy)
    keep = _sigma_g_keep(p, q) if clip else q > 0
    sp, sq = p[keep].sum(), q[keep].sum()
    if sq <= 0:
        return -np.inf, 0.0, int(keep.sum())
    return sp / np.sqrt(sq), sp / sq, int(keep.sum())


def _refine(psi, phi, t, x0, y0, vx, vy, dv, clip):
    """Sub-pixel, sub-grid refinement of one trajectory by a shrinking pattern search.

    Alternates a 3×3 search over the start position and a 3×3 search over the
    velocity, halving the steps when neither improves (0.5 px and half the
    grid step to start, down to 1/16 of them).
    """
    cur = [x0, y0, vx, vy]
    best = _score(psi, phi, t, *cur, clip=False)[0]
    step = [0.5, dv / 2]
    for _ in range(30):
        improved = False
        for part in (0, 1):
            i, j = 2 * part, 2 * part + 1
            base = list(cur)
            for da in (-step[part], 0.0, step[part]):
                for db in (-step[part], 0.0, step[part]):
                    if da == 0.0 and db == 0.0:
                        continue
                    trial = list(base)
                    trial[i] += da
                    trial[j] += db
                    sc = _score(psi, phi, t, *trial, clip=False)[0]
                    if sc > best:
                        best, cur, improved = sc, trial, True
        if not improved:
            step = [step[0] / 2, step[1] / 2]
            if step[0] < 0.5 / 16:
                break
    snr, flux, n_used = _score(psi, phi, t, *cur, clip=clip)
    return cur[0], cur[1], cur[2], cur[3], snr, flux, n_used


def shift_and_stack(
    frames: np.ndarray,
    *,
    times: Any = None,
    rate_range: tuple[float, float] = (0.0, 5.0),
    n_rates: int = 26,
    n_angles: int = 72,
    velocities: np.ndarray | None = None,
    psf_fwhm: float = 2.5,
    threshold: float = 7.0,
    reference: np.ndarray | None = None,
    star_mask: np.ndarray | None = None,
    clip: bool = True,
    max_candidates: int = 50,
    min_frames: int | None = None,
    pixel_scale: float | None = None,
    wcs: Any = None,
    time_unit_s: float | None = None,
    warn: bool = True,
) -> Table:
    """Search a sequence for linear trajectories by shift-and-stack (KBMOD).

    Parameters
    ----------
    frames : ndarray, shape (T, H, W)
        Registered frames (T ≥ 2; use ≥ 5 for the median template).
    times : array_like of float, shape (T,), or astropy Time, optional
        Frame mid-times. Floats are in the time unit of the rates (seconds,
        or frame indices by default); a ``Time`` is converted to seconds.
    rate_range : (float, float), optional
        Rates searched, pixels per time unit. Default (0, 5).
    n_rates, n_angles : int, optional
        Search grid (:func:`velocity_grid`). Defaults 26 × 72 (1872 trajectories
        per start pixel).
    velocities : ndarray, shape (V, 2), optional
        Explicit ``(vx, vy)`` grid; overrides the rate/angle grid.
    psf_fwhm : float, optional
        Gaussian PSF FWHM, pixels. Default 2.5.
    threshold : float, optional
        Minimum stacked SNR ``ψ/√φ`` of a trajectory. Default 7.
    reference, star_mask : optional
        See :func:`difference_images`.
    clip : bool, optional
        σ_G-clip outlier frames of each candidate's light curve (KBMOD §3.3). Default True.
    max_candidates : int, optional
        Most trajectories returned (highest SNR first). Default 50.
    min_frames : int, optional
        Fewest frames a trajectory must keep after clipping; default ``ceil(T / 2)``.
    pixel_scale : float, optional
        Arcseconds per pixel, for ``rate_arcsec_h``.
    wcs : astropy.wcs.WCS, optional
        Celestial WCS, for ``ra``, ``dec``, the rate on the sky and the position angle.
    time_unit_s : float, optional
        Seconds per unit of float ``times`` (default 1: times in seconds; give
        the cadence when ``times`` are frame indices). Ignored for a ``Time``.
    warn : bool, optional
        Warn (:class:`~skysift.movers.baseline.NoMoversWarning`) when nothing is found.

    Returns
    -------
    astropy.table.Table
        One row per trajectory: ``x0, y0`` (pixels at ``times[0]``), ``vx, vy``
        (pixels per time unit), ``rate`` (same), ``snr`` (clipped ``ψ/√φ``),
        ``flux`` (per frame, image units × PSF normalisation), ``n_frames``
        (kept), ``pa`` (degrees east of north; north = +y, east = −x without a
        WCS) and, when available, ``rate_arcsec_h``, ``ra``, ``dec`` (degrees at ``times[0]``).

    Raises
    ------
    InputError
        For bad frames, times of another length, a bad rate range, a
        non-positive threshold or velocities not of shape (V, 2).

    References
    ----------
    Whidden et al. 2019, AJ 157, 119: "Fast algorithms for slow moving
    asteroids" (KBMOD), §2 (likelihood), §3.3 (σ_G filtering).
    """
    cube = _check_cube(frames)
    n = cube.shape[0]
    t = _check_times(times, n)
    if not threshold > 0:
        msg = f"threshold must be > 0 (SNR), got {threshold}"
        raise InputError(msg)
    if velocities is None:
        vel = velocity_grid(rate_range, n_rates=n_rates, n_angles=n_angles)
        span = max(float(t[-1] - t[0]), 1e-12)
        dv = max((rate_range[1] - rate_range[0]) / max(n_rates - 1, 1), 1.0 / span)
    else:
        vel = np.asarray(velocities, dtype=float)
        if vel.ndim != 2 or vel.shape[1] != 2:
            msg = f"velocities must have shape (V, 2), got {vel.shape}"
            raise InputError(msg)
        dv = 1.0 / max(float(t[-1] - t[0]), 1e-12)
    diff, var = difference_images(cube, reference=reference, star_mask=star_mask)
    psi, phi = psi_phi(diff, var, psf_fwhm)
    best, arg = _stack_all(psi, phi, t, vel)
    psi, phi = _spline(psi), _spline(phi)
    # local maxima of the best-SNR map above threshold
    peaks = (best >= ndimage.maximum_filter(best, size=5)) & (best >= threshold)
    ys, xs = np.nonzero(peaks)
    order = np.argsort(best[ys, xs])[::-1][: 2 * max_candidates]
    min_frames = int(np.ceil(n / 2)) if min_frames is None else int(min_frames)
    rows: list[tuple[float, ...]] = []
    for j in order:
        y0, x0 = float(ys[j]), float(xs[j])
        vx, vy = vel[arg[ys[j], xs[j]]]
        r = _refine(psi, phi, t, x0, y0, float(vx), float(vy), dv, clip)
        if r[4] < threshold or r[6] < min_frames:
            continue
        # duplicate suppression: same track seen from another start pixel / velocity
        dup = False
        for o in rows:
            dx0 = np.hypot(o[0] - r[0], o[1] - r[1])
            dx1 = np.hypot(o[0] + o[2] * t[-1] - r[0] - r[2] * t[-1],
                           o[1] + o[3] * t[-1] - r[1] - r[3] * t[-1])  # fmt: skip
            if min(dx0, dx1) < 2 * psf_fwhm or (dx0 < 3 * psf_fwhm and dx1 < 3 * psf_fwhm):
                dup = True
                break
        if not dup:
            rows.append(r)
        if len(rows) >= max_candidates:
            break
    unit_s = 1.0 if hasattr(times, "jd") else time_unit_s
    return _trajectory_table(rows, t, unit_s, pixel_scale, wcs, warn)


def rates_to_sky(
    vx: np.ndarray,
    vy: np.ndarray,
    *,
    pixel_scale: float | None = None,
    seconds_per_unit: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Rate in ″/h and position angle (degrees east of north) of pixel velocities.

    Assumes north = +y and east = −x (the usual display of a north-up FITS image).

    Parameters
    ----------
    vx, vy : ndarray
        Pixel velocities per time unit.
    pixel_scale : float, optional
        Arcseconds per pixel; without it the rate is NaN.
    seconds_per_unit : float, optional
        Seconds per time unit of the velocities. Default 1.

    Returns
    -------
    rate_arcsec_h, pa_deg : ndarray
    """
    vx, vy = np.asarray(vx, float), np.asarray(vy, float)
    pa = np.degrees(np.arctan2(-vx, vy)) % 360.0
    if pixel_scale is None:
        return np.full(vx.shape, np.nan), pa
    rate = np.hypot(vx, vy) * float(pixel_scale) / float(seconds_per_unit) * 3600.0
    return rate, pa


def _trajectory_table(rows, t, time_unit_s, pixel_scale, wcs, warn) -> Table:
    a = np.array(rows, dtype=float).reshape(-1, 7)
    out = Table()
    out["x0"] = a[:, 0]
    out["y0"] = a[:, 1]
    out["vx"] = a[:, 2]
    out["vy"] = a[:, 3]
    out["rate"] = np.hypot(a[:, 2], a[:, 3])
    out["snr"] = a[:, 4]
    out["flux"] = a[:, 5]
    out["n_frames"] = a[:, 6].astype(int)
    for c in ("x0", "y0"):
        out[c].unit = "pix"
    sec = 1.0 if time_unit_s is None else float(time_unit_s)
    rate, pa = rates_to_sky(a[:, 2], a[:, 3], pixel_scale=pixel_scale, seconds_per_unit=sec)
    if wcs is not None and len(a):
        span = float(t[-1]) or 1.0
        s0 = wcs.pixel_to_world(a[:, 0], a[:, 1])
        s1 = wcs.pixel_to_world(a[:, 0] + a[:, 2] * span, a[:, 1] + a[:, 3] * span)
        out["ra"] = s0.ra.deg
        out["dec"] = s0.dec.deg
        pa = s0.position_angle(s1).deg % 360.0
        rate = s0.separation(s1).arcsec / span / sec * 3600.0
    out["pa"] = pa
    out["pa"].unit = "deg"
    if pixel_scale is not None or wcs is not None:
        out["rate_arcsec_h"] = rate
        out["rate_arcsec_h"].unit = "arcsec / h"
    if not len(out) and warn:
        warnings.warn("no trajectory above threshold", NoMoversWarning, stacklevel=3)
    return out


def link_tracklets(
    detections: Table,
    *,
    times: Any = None,
    max_rate: float = 20.0,
    radius: float = 2.0,
    min_points: int = 3,
) -> Table:
    """Link single-frame detections into linear tracklets.

    Every pair of detections in different frames within ``max_rate`` seeds a
    line; detections of other frames within ``radius`` pixels of the
    predicted position join it; tracklets are taken greedily (most points,
    then smallest residual) without sharing detections.

    Parameters
    ----------
    detections : astropy.table.Table
        Columns ``frame``, ``x``, ``y`` (e.g. from :func:`~skysift.movers.baseline.detect_difference`).
    times : array_like, optional
        Time of each frame index (default the frame index).
    max_rate : float, optional
        Fastest motion, pixels per time unit. Default 20.
    radius : float, optional
        Association radius, pixels. Default 2.
    min_points : int, optional
        Fewest detections per tracklet (≥ 2). Default 3.

    Returns
    -------
    astropy.table.Table
        ``detections`` with an added ``tracklet`` column (−1 = unlinked) and,
        per linked row, the tracklet's ``vx``, ``vy`` (pixels per time unit) and ``pa``.

    Raises
    ------
    InputError
        For missing columns or ``min_points`` < 2.
    """
    for c in ("frame", "x", "y"):
        if c not in detections.colnames:
            msg = f"detections need columns frame, x, y; missing {c!r}"
            raise InputError(msg)
    if min_points < 2:
        msg = f"min_points must be >= 2, got {min_points}"
        raise InputError(msg)
    det = detections.copy()
    fr = np.asarray(det["frame"], int)
    tt = fr.astype(float) if times is None else np.asarray(times, float)[fr]
    x, y = np.asarray(det["x"], float), np.asarray(det["y"], float)
    n = len(det)
    cands = []
    for i in range(n):
        for j in range(n):
            if tt[j] <= tt[i]:
                continue
            dt = tt[j] - tt[i]
            vx, vy = (x[j] - x[i]) / dt, (y[j] - y[i]) / dt
            if np.hypot(vx, vy) > max_rate:
                continue
            px, py = x[i] + vx * (tt - tt[i]), y[i] + vy * (tt - tt[i])
            d = np.hypot(x - px, y - py)
            members = []
            for f in np.unique(fr):
                sel = np.nonzero((fr == f) & (d <= radius))[0]
                if sel.size:
                    members.append(int(sel[np.argmin(d[sel])]))
            if len(members) >= min_points:
                m = np.array(members)
                cands.append((-len(m), float(d[m].mean()), tuple(sorted(m))))
    cands.sort()
    label = np.full(n, -1)
    vxs, vys = np.full(n, np.nan), np.full(n, np.nan)
    k = 0
    for _, _, m in cands:
        m = np.array(m)
        if (label[m] >= 0).any():
            continue
        label[m] = k
        ax = np.polyfit(tt[m], x[m], 1)[0]
        ay = np.polyfit(tt[m], y[m], 1)[0]
        vxs[m], vys[m] = ax, ay
        k += 1
    det["tracklet"] = label
    det["vx"] = vxs
    det["vy"] = vys
    det["pa"] = rates_to_sky(vxs, vys)[1]
    det["pa"].unit = "deg"
    return det
