"""Galaxies (Sérsic profiles), cosmic rays and stars for the simulator.

* Galaxies: elliptical Sérsic profiles with index ``n``, half-light radius
  ``r_e`` (along the major axis), ellipticity ``1 - b/a`` and position angle,
  drawn with GalSim when it is importable (``backend="auto"``), otherwise with
  our own oversampled profile using the ``b_n`` expansion of Ciotti & Bertin
  (1999), then convolved with the PSF on the oversampled grid.
* Cosmic rays: charge deposited along short straight or curved ("worm")
  tracks, a few pixels of high charge, *not* convolved with the PSF (they hit
  the detector, not the optics).
* Stars: point sources through the PSF (:meth:`PSF.render`).

Images are noise-free, in electrons; every renderer also returns a
:class:`~skysift.simulation.truth.SimTruth`.

References
----------
.. [CB99] Ciotti, L. & Bertin, G. 1999, A&A 352, 447, eq. (18): asymptotic
   expansion of ``b_n``.
.. [GD05] Graham, A. W. & Driver, S. P. 2005, PASA 22, 118, eqs. (1)-(4):
   the Sérsic profile and its total flux.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import gamma as gamma_fn

from skysift.errors import InputError
from skysift.simulation.streaks import as_psf, convolve_kernel, psf_fwhm, psf_kernel
from skysift.simulation.truth import SimTruth, object_row, stack_records, streak_mask, truth_records

__all__ = [
    "sersic_bn",
    "sersic_total_flux",
    "render_sersic",
    "render_galaxy",
    "render_cosmic_rays",
    "render_stars",
]


def sersic_bn(n: float) -> float:
    """``b_n`` such that ``r_e`` encloses half the light of a Sérsic profile of index ``n``.

    Asymptotic expansion of Ciotti & Bertin (1999, eq. 18), accurate to < 1e-4
    relative for n ≥ 0.36 (exact value: ``gammaincinv(2n, 0.5)``).

    Raises
    ------
    InputError
        If ``n`` is not > 0.
    """
    if not n > 0:
        msg = f"sersic index n must be > 0, got {n}"
        raise InputError(msg)
    return (
        2 * n
        - 1 / 3
        + 4 / (405 * n)
        + 46 / (25515 * n**2)
        + 131 / (1148175 * n**3)
        - 2194697 / (30690717750 * n**4)
    )


def sersic_total_flux(i_e: float, n: float, r_e: float, q: float = 1.0) -> float:
    """Total flux ``2π q n r_e² I_e e^{b_n} b_n^{-2n} Γ(2n)`` of an elliptical Sérsic profile.

    ``I_e`` is the surface brightness at ``r_e`` (flux per pixel²), ``q = b/a``.
    """
    b = sersic_bn(n)
    return float(2 * np.pi * q * n * r_e**2 * i_e * np.exp(b) * b ** (-2 * n) * gamma_fn(2 * n))


def _check_galaxy(flux: float, n: float, r_e: float, ellipticity: float) -> None:
    if not (np.isfinite(flux) and flux >= 0):
        msg = f"flux must be finite and >= 0 (electrons), got {flux}"
        raise InputError(msg)
    if not 0.2 <= n <= 10:
        msg = f"sersic index n must be in [0.2, 10], got {n}"
        raise InputError(msg)
    if not r_e > 0:
        msg = f"r_e (half-light radius) must be > 0 pixels, got {r_e}"
        raise InputError(msg)
    if not 0 <= ellipticity < 1:
        msg = f"ellipticity (1 - b/a) must be in [0, 1), got {ellipticity}"
        raise InputError(msg)


def _sersic_numpy(
    h: int, w: int, x: float, y: float, flux: float, n: float, r_e: float, q: float, pa: float,
    oversample: int,
) -> np.ndarray:  # fmt: skip
    """Flux per sub-pixel on the (h*os, w*os) grid; the core pixels refined 9× further."""
    b = sersic_bn(n)
    i_e = flux / sersic_total_flux(1.0, n, r_e, q)
    c, s = np.cos(np.radians(pa)), np.sin(np.radians(pa))

    def surface(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        xp = dx * c + dy * s
        yp = (-dx * s + dy * c) / q
        r = np.sqrt(xp * xp + yp * yp)
        return i_e * np.exp(-b * ((r / r_e) ** (1.0 / n) - 1.0))

    os_ = oversample
    sub = (np.arange(os_) + 0.5) / os_ - 0.5
    xs = (np.arange(w)[:, None] + sub[None, :]).ravel() - x
    ys = (np.arange(h)[:, None] + sub[None, :]).ravel() - y
    fine = surface(xs[None, :], ys[:, None]) / os_**2
    # the cusp (n > 1) is poorly integrated by the midpoint rule near the centre:
    # redo the cells within ~2 pixels of the centre with 9x finer sampling
    ref = 9
    sub2 = (np.arange(ref) + 0.5) / ref - 0.5
    half = 2 * os_
    cx, cy = int(np.floor((x + 0.5) * os_)), int(np.floor((y + 0.5) * os_))
    j0, j1 = max(cy - half, 0), min(cy + half + 1, h * os_)
    i0, i1 = max(cx - half, 0), min(cx + half + 1, w * os_)
    if j0 < j1 and i0 < i1:
        fx = ((np.arange(i0, i1) + 0.5) / os_ - 0.5)[:, None] + sub2[None, :] / os_
        fy = ((np.arange(j0, j1) + 0.5) / os_ - 0.5)[:, None] + sub2[None, :] / os_
        core = surface(fx.ravel()[None, :] - x, fy.ravel()[:, None] - y)
        core = core.reshape(j1 - j0, ref, i1 - i0, ref).mean(axis=(1, 3)) / os_**2
        fine[j0:j1, i0:i1] = core
    return fine


def _sersic_galsim(
    h: int, w: int, x: float, y: float, flux: float, n: float, r_e: float, q: float, pa: float,
    oversample: int,
) -> np.ndarray:  # fmt: skip
    """Same contract as :func:`_sersic_numpy`, drawn by GalSim (flux per sub-pixel)."""
    import galsim  # GalSim is optional (backend="galsim"): imported on use

    # GalSim's half_light_radius is circular; a shear keeps the area, so the
    # circularised radius sqrt(q) r_e gives the major-axis radius r_e.
    prof = galsim.Sersic(n=n, half_light_radius=r_e * np.sqrt(q), flux=flux)
    if q < 1:
        prof = prof.shear(q=q, beta=pa * galsim.degrees)
    nx, ny = w * oversample, h * oversample
    img = galsim.ImageD(nx, ny, scale=1.0 / oversample)
    fx, fy = (x + 0.5) * oversample - 0.5, (y + 0.5) * oversample - 0.5
    offset = (fx + 1 - 0.5 * (nx + 1), fy + 1 - 0.5 * (ny + 1))
    prof.drawImage(image=img, offset=offset, method="auto")
    return np.asarray(img.array, dtype=float)


def render_sersic(
    shape: tuple[int, int],
    x: float,
    y: float,
    flux: float,
    n: float,
    r_e: float,
    *,
    ellipticity: float = 0.0,
    pa: float = 0.0,
    psf: Any = None,
    oversample: int = 5,
    backend: str = "auto",
) -> np.ndarray:
    """Render an elliptical Sérsic galaxy, integrated over pixels and convolved with the PSF.

    ``I(r) = I_e exp(-b_n ((r / r_e)^(1/n) - 1))`` with ``r`` the elliptical
    radius ``sqrt(x'^2 + (y'/q)^2)`` (``x'`` along the major axis), ``q = 1 -
    ellipticity``; ``I_e`` is set from the total ``flux`` analytically, so the
    image holds ``flux`` minus what falls outside the frame.

    Parameters
    ----------
    shape : (int, int)
        Image shape (H, W).
    x, y : float
        Centre, pixels (0-based, x = column).
    flux : float
        Total flux (to infinity), electrons, ≥ 0.
    n : float
        Sérsic index in [0.2, 10] (0.5 Gaussian, 1 exponential disk, 4 de Vaucouleurs).
    r_e : float
        Half-light radius along the major axis, pixels, > 0.
    ellipticity : float, optional
        ``1 - b/a`` in [0, 1). Default 0.
    pa : float, optional
        Position angle of the major axis, degrees counter-clockwise from +x. Default 0.
    psf : PSF, float or None, optional
        PSF convolved on the oversampled grid (a float is a Gaussian FWHM in
        pixels). Default None.
    oversample : int, optional
        Sub-pixels per pixel (the central ±2 pixels are refined 9× further for
        the cusp of high-n profiles). Default 5.
    backend : {"auto", "numpy", "galsim"}, optional
        "auto" uses GalSim when importable, else our own profile. Default "auto".

    Returns
    -------
    ndarray, shape (H, W), float64
        Electrons per pixel.

    Raises
    ------
    InputError
        For invalid parameters or an unknown backend; "galsim" when GalSim is
        not installed.

    References
    ----------
    Ciotti & Bertin (1999), eq. (18) for ``b_n``; Graham & Driver (2005), eq. (4)
    for the total flux.
    """
    h, w = int(shape[0]), int(shape[1])
    _check_galaxy(flux, n, r_e, ellipticity)
    os_ = int(oversample)
    if os_ < 1:
        msg = f"oversample must be an integer >= 1, got {oversample}"
        raise InputError(msg)
    backends = ("auto", "numpy", "galsim")
    if backend not in backends:
        msg = f"backend must be one of {backends}, got {backend!r}"
        raise InputError(msg)
    use_galsim = backend == "galsim"
    if backend == "auto":
        try:
            import galsim  # noqa: F401

            use_galsim = True
        except ImportError:
            use_galsim = False
    elif use_galsim:
        try:
            import galsim  # noqa: F401
        except ImportError:
            msg = "backend='galsim' needs GalSim (pip install galsim); use backend='numpy'"
            raise InputError(msg) from None
    q = 1.0 - ellipticity
    draw = _sersic_galsim if use_galsim else _sersic_numpy
    # paint on a grid padded by the PSF radius so the wings from outside come in
    kernel = psf_kernel(psf, oversample=os_)
    pad = 0 if kernel is None else -(-(kernel.shape[0] // 2) // os_)
    fine = draw(h + 2 * pad, w + 2 * pad, x + pad, y + pad, flux, n, r_e, q, pa, os_)
    if kernel is not None:
        fine = convolve_kernel(fine, kernel)
    img = fine.reshape(h + 2 * pad, os_, w + 2 * pad, os_).sum(axis=(1, 3))
    return img[pad : pad + h, pad : pad + w]


def render_galaxy(
    shape: tuple[int, int],
    x: float,
    y: float,
    flux: float,
    n: float,
    r_e: float,
    *,
    ellipticity: float = 0.0,
    pa: float = 0.0,
    psf: Any = None,
    sigma: float | None = None,
    mag: float | None = None,
    object_id: int = 1,
    oversample: int = 5,
    backend: str = "auto",
) -> tuple[np.ndarray, SimTruth]:
    """Render a Sérsic galaxy (:func:`render_sersic`) with its truth.

    The truth mask is the ellipse of semi-axes ``2 r_e`` and ``2 q r_e``
    (holding ~80-90% of the light for n ≤ 2) grown by the PSF FWHM / 2; the
    table's ``length`` is ``2 r_e`` and ``angle`` the position angle.

    Returns
    -------
    image : ndarray, shape (H, W)
        Electrons.
    truth : SimTruth
        ``type`` = "galaxy".
    """
    img = render_sersic(
        shape, x, y, flux, n, r_e, ellipticity=ellipticity, pa=pa, psf=psf,
        oversample=oversample, backend=backend,
    )  # fmt: skip
    q = 1.0 - ellipticity
    grow = 0.5 * psf_fwhm(psf) if psf is not None else 0.5
    a, bb = 2 * r_e + grow, 2 * q * r_e + grow
    yy, xx = np.indices(img.shape, dtype=float)
    c, s = np.cos(np.radians(pa)), np.sin(np.radians(pa))
    xp = (xx - x) * c + (yy - y) * s
    yp = -(xx - x) * s + (yy - y) * c
    mask = (xp / a) ** 2 + (yp / bb) ** 2 <= 1.0
    row = object_row(
        kind="galaxy", signal=img, mask=mask, sigma=sigma, id=object_id, x=x, y=y,
        mag=np.nan if mag is None else mag, flux=flux, length=2 * r_e, angle=pa % 180.0,
    )  # fmt: skip
    return img, SimTruth(
        mask=mask, labels=mask.astype(np.int32) * object_id, records=truth_records([row])
    )


def render_stars(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    psf: Any,
    *,
    sigma: float | None = None,
    mag: np.ndarray | None = None,
    first_id: int = 1,
) -> tuple[np.ndarray, SimTruth]:
    """Render point sources through the PSF with their truth (mask: disk of diameter the FWHM).

    Parameters
    ----------
    shape : (int, int)
        Image shape (H, W).
    x, y, flux : array_like, shape (N,)
        Positions (pixels) and fluxes (electrons).
    psf : PSF or float
        PSF (a float is a Gaussian FWHM in pixels); required.
    sigma : float, optional
        Background noise per pixel (electrons) for the truth SNRs.
    mag : array_like, shape (N,), optional
        Magnitudes recorded in the truth.
    first_id : int, optional
        Id of the first star. Default 1.

    Returns
    -------
    image : ndarray, shape (H, W)
    truth : SimTruth
        ``type`` = "star".

    Raises
    ------
    InputError
        If ``psf`` is None or a flux is negative.
    """

    p = as_psf(psf)
    if p is None:
        msg = "render_stars needs a psf (a PSF or a Gaussian FWHM in pixels), got None"
        raise InputError(msg)
    xs, ys, fs = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (x, y, flux))
    if np.any(fs < 0) or not np.all(np.isfinite(fs)):
        msg = "flux must be finite and >= 0 electrons for every star"
        raise InputError(msg)
    h, w = int(shape[0]), int(shape[1])
    image = np.zeros((h, w))
    labels = np.zeros((h, w), dtype=np.int32)
    recs = []
    for i, (xi, yi, fi) in enumerate(zip(xs, ys, fs, strict=True)):
        one = p.render((h, w), xi, yi, fi)
        image += one
        m = streak_mask((h, w), xi, yi, xi, yi, p.fwhm)
        labels[m] = first_id + i
        row = object_row(
            kind="star", signal=one, mask=m, sigma=sigma, id=first_id + i, x=xi, y=yi, flux=fi,
            mag=np.nan if mag is None else float(np.atleast_1d(mag)[i]), length=0.0, angle=0.0,
            vx=0.0, vy=0.0,
        )  # fmt: skip
        recs.append(truth_records([row]))
    return image, SimTruth(mask=labels > 0, labels=labels, records=stack_records(recs))


def render_cosmic_rays(
    shape: tuple[int, int],
    n_rays: int,
    rng: np.random.Generator | int | None = None,
    *,
    length_range: tuple[float, float] = (1.0, 20.0),
    charge_range: tuple[float, float] = (300.0, 5000.0),
    curvature: float = 0.15,
    sigma: float | None = None,
    first_id: int = 1,
) -> tuple[np.ndarray, SimTruth]:
    """Cosmic-ray hits: sharp charge tracks ("worms"), not convolved with the PSF.

    Each ray is a path of length drawn uniformly in ``length_range`` (0 gives a
    single-pixel hit) at a uniform random angle, whose direction drifts by a
    Gaussian random walk of ``curvature`` radians per pixel. Charge per pixel
    of path is log-uniform in ``charge_range`` with ±30% (log-normal)
    fluctuations along the track, deposited in the pixel that each 0.1-pixel
    step of the path falls in.

    Parameters
    ----------
    shape : (int, int)
        Image shape (H, W).
    n_rays : int
        Number of rays, ≥ 0.
    rng : Generator, int or None
        Random state.
    length_range : (float, float), optional
        Track lengths in pixels. Default (1, 20).
    charge_range : (float, float), optional
        Charge per pixel of path, electrons. Default (300, 5000).
    curvature : float, optional
        Rms direction change per pixel of path, radians, ≥ 0. Default 0.15.
    sigma : float, optional
        Background noise per pixel (electrons) for the truth SNRs.
    first_id : int, optional
        Id of the first ray. Default 1.

    Returns
    -------
    image : ndarray, shape (H, W)
        Electrons.
    truth : SimTruth
        ``type`` = "cosmic_ray"; ``x, y`` the charge centroid, ``x1..y2`` the
        track ends, ``flux`` the deposited charge (electrons); the mask is the
        hit pixels.

    Raises
    ------
    InputError
        For negative ``n_rays`` or invalid ranges.
    """
    if n_rays < 0:
        msg = f"n_rays must be >= 0, got {n_rays}"
        raise InputError(msg)
    lo, hi = length_range
    if not 0 <= lo <= hi:
        msg = f"length_range must satisfy 0 <= lo <= hi pixels, got {length_range}"
        raise InputError(msg)
    clo, chi = charge_range
    if not 0 < clo <= chi:
        msg = f"charge_range must satisfy 0 < lo <= hi electrons, got {charge_range}"
        raise InputError(msg)
    if curvature < 0:
        msg = f"curvature must be >= 0 radians per pixel, got {curvature}"
        raise InputError(msg)
    gen = np.random.default_rng(rng)
    h, w = int(shape[0]), int(shape[1])
    image = np.zeros((h, w))
    labels = np.zeros((h, w), dtype=np.int32)
    recs = []
    step = 0.1
    for k in range(n_rays):
        length = gen.uniform(lo, hi)
        n_steps = max(int(np.ceil(length / step)), 1)
        theta = gen.uniform(0, 2 * np.pi) + np.cumsum(
            gen.normal(0, curvature * np.sqrt(step), n_steps)
        )
        x0, y0 = gen.uniform(-0.5, w - 0.5), gen.uniform(-0.5, h - 0.5)
        ds = length / n_steps
        px = x0 + np.concatenate([[0.0], np.cumsum(ds * np.cos(theta))])
        py = y0 + np.concatenate([[0.0], np.cumsum(ds * np.sin(theta))])
        mx, my = 0.5 * (px[1:] + px[:-1]), 0.5 * (py[1:] + py[:-1])
        if length == 0:
            mx, my = px[:1], py[:1]
        q_per_px = np.exp(gen.uniform(np.log(clo), np.log(chi)))
        dq = q_per_px * (ds if length > 0 else 1.0) * np.exp(gen.normal(0, 0.3, mx.size))
        col, row = np.rint(mx).astype(int), np.rint(my).astype(int)
        ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        one = np.zeros((h, w))
        np.add.at(one, (row[ok], col[ok]), dq[ok])
        image += one
        m = one > 0
        labels[m] = first_id + k
        tot = float(one.sum())
        cx = float((one.sum(axis=0) * np.arange(w)).sum() / tot) if tot > 0 else float(px.mean())
        cy = float((one.sum(axis=1) * np.arange(h)).sum() / tot) if tot > 0 else float(py.mean())
        chord = float(np.hypot(px[-1] - px[0], py[-1] - py[0]))
        ang = float(np.degrees(np.arctan2(py[-1] - py[0], px[-1] - px[0])) % 180.0)
        row_ = object_row(
            kind="cosmic_ray", signal=one, mask=m, sigma=sigma, id=first_id + k, x=cx, y=cy,
            x1=px[0], y1=py[0], x2=px[-1], y2=py[-1], flux=tot, length=chord, angle=ang,
        )  # fmt: skip
        recs.append(truth_records([row_]))
    return image, SimTruth(mask=labels > 0, labels=labels, records=stack_records(recs))
