"""Star photometry: 2-D Gaussian fits and aperture photometry with a local annulus.

Both functions take positions in 0-based pixel coordinates (the centre of the
first pixel is (0, 0)) and return an astropy Table, one row per position.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.stats import SigmaClip
from astropy.table import Table
from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture, aperture_photometry
from scipy.optimize import OptimizeWarning, least_squares

from skysift._validation import check_image
from skysift.errors import InputError

__all__ = ["gaussian_photometry", "aperture_photometry_annulus", "instrumental_magnitude"]

#: Bit set in ``flags`` when a pixel used for the measurement reaches saturation.
FLAG_SATURATED = 1
#: Bit set when the patch or aperture leaves the image or touches masked pixels.
FLAG_EDGE = 2
#: Bit set when the Gaussian fit failed or is not trustworthy.
FLAG_FIT_FAILED = 32


def _check_image(image: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    return check_image(image, mask, what="photometry", dtype=np.float64)


def _positions(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.atleast_1d(np.asarray(y, dtype=float))
    if x.shape != y.shape or x.ndim != 1:
        msg = f"x and y must be 1-D arrays of the same length, got {x.shape} and {y.shape}"
        raise InputError(msg)
    return x, y


def _gauss2d(p: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    amp, x0, y0, sx, sy, c = p
    return amp * np.exp(-((xx - x0) ** 2 / (2 * sx**2) + (yy - y0) ** 2 / (2 * sy**2))) + c


def gaussian_photometry(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    box: int = 11,
    sigma_guess: float = 1.5,
    recentre: bool = True,
    max_iter: int = 3,
    mask: np.ndarray | None = None,
    saturation: float | None = None,
    noise: float | np.ndarray | None = None,
) -> Table:
    """Fit an axis-aligned 2-D Gaussian plus constant on a patch around each position.

    The model is G(x, y) = A·exp(−((x−x0)²/2σx² + (y−y0)²/2σy²)) + C and the
    integrated flux is A·2π·σx·σy (the bolide report's photometry, §7.1).
    With ``recentre`` the patch is re-cut around the fitted centre and the
    fit repeated until the centre moves less than 0.05 px (sub-pixel
    recentring, at most ``max_iter`` times).

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Image in counts (ADU); the background need not be subtracted (C fits it).
    x, y : ndarray, shape (N,)
        Initial positions, 0-based pixels.
    box : int, optional
        Patch side in pixels (odd). Default 11.
    sigma_guess : float, optional
        Initial σ in pixels. Default 1.5.
    recentre : bool, optional
        Re-cut the patch around the fitted centre. Default True.
    max_iter : int, optional
        Maximum number of recentring iterations. Default 3.
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = bad pixel, excluded from the fit.
    saturation : float, optional
        Saturation level; patches reaching it are flagged.
    noise : float or ndarray of shape (H, W), optional
        Per-pixel 1-σ noise for the weights and uncertainties; default the
        robust scatter of the patch's residuals.

    Returns
    -------
    astropy.table.Table
        Columns ``x``, ``y`` (fitted centre, pixels), ``x_err``, ``y_err``,
        ``amplitude``, ``sigma_x``, ``sigma_y`` (pixels), ``background``,
        ``flux`` (A·2π·σx·σy), ``flux_err``, ``fwhm`` (2.3548·sqrt(σx·σy),
        pixels), ``flags`` (1 saturated, 2 edge, 32 fit failed).

    Raises
    ------
    InputError
        If the image is not 2-D, shapes differ or ``box`` < 5.
    """
    data, bad = _check_image(image, mask)
    x, y = _positions(x, y)
    if box < 5:
        msg = f"box must be at least 5 pixels, got {box}"
        raise InputError(msg)
    half = box // 2
    h, w = data.shape
    n = len(x)
    cols = {
        k: np.full(n, np.nan)
        for k in (
            "x",
            "y",
            "x_err",
            "y_err",
            "amplitude",
            "sigma_x",
            "sigma_y",
            "background",
            "flux",
            "flux_err",
            "fwhm",
        )
    }
    flags = np.zeros(n, dtype=np.int64)
    for i in range(n):
        cx, cy = x[i], y[i]
        result = None
        for _ in range(max_iter if recentre else 1):
            ix, iy = int(round(cx)), int(round(cy))
            x0, x1 = ix - half, ix + half + 1
            y0, y1 = iy - half, iy + half + 1
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                flags[i] |= FLAG_EDGE
                x0, x1 = max(0, x0), min(w, x1)
                y0, y1 = max(0, y0), min(h, y1)
            patch = data[y0:y1, x0:x1]
            good = ~bad[y0:y1, x0:x1]
            if good.sum() < 8:
                result = None
                break
            if not good.all():
                flags[i] |= FLAG_EDGE
            yy, xx = np.mgrid[y0:y1, x0:x1]
            c0 = float(np.median(np.concatenate([patch[0], patch[-1], patch[:, 0], patch[:, -1]])))
            a0 = float(patch[good].max() - c0)
            p0 = np.array([max(a0, 1e-6), cx, cy, sigma_guess, sigma_guess, c0])
            if noise is None:
                wgt = np.ones(good.sum())
            else:
                nz = np.broadcast_to(np.asarray(noise, dtype=float), data.shape)[y0:y1, x0:x1][good]
                wgt = 1.0 / np.maximum(nz, 1e-12)
            xs, ys, vs = xx[good], yy[good], patch[good]
            lo = [0.0, x0 - 0.5, y0 - 0.5, 0.3, 0.3, -np.inf]
            hi = [np.inf, x1 - 0.5, y1 - 0.5, box, box, np.inf]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                try:
                    res = least_squares(
                        lambda p, xs=xs, ys=ys, vs=vs, wgt=wgt: (_gauss2d(p, xs, ys) - vs) * wgt,
                        np.clip(p0, lo, hi),
                        bounds=(lo, hi),
                        method="trf",
                        x_scale="jac",
                        max_nfev=200,
                    )
                except ValueError:
                    result = None
                    break
            result = (res, xs.size)
            moved = np.hypot(res.x[1] - cx, res.x[2] - cy)
            cx, cy = res.x[1], res.x[2]
            if moved < 0.05:
                break
        if result is None or not result[0].success:
            flags[i] |= FLAG_FIT_FAILED
            continue
        res, npts = result
        p = res.x
        dof = max(npts - 6, 1)
        s2 = 2 * res.cost / dof if noise is None else 1.0
        try:
            cov = np.linalg.inv(res.jac.T @ res.jac) * s2
            perr = np.sqrt(np.clip(np.diag(cov), 0, None))
        except np.linalg.LinAlgError:
            cov = np.full((6, 6), np.nan)
            perr = np.full(6, np.nan)
        amp, fx, fy, sx, sy, c = p
        flux = amp * 2 * np.pi * sx * sy
        # Error propagation of F = 2π A σx σy with the parameter covariance.
        grad = np.array([2 * np.pi * sx * sy, 0, 0, 2 * np.pi * amp * sy, 2 * np.pi * amp * sx, 0])
        flux_err = float(np.sqrt(max(grad @ cov @ grad, 0.0))) if np.isfinite(cov).all() else np.nan
        cols["x"][i], cols["y"][i] = fx, fy
        cols["x_err"][i], cols["y_err"][i] = perr[1], perr[2]
        cols["amplitude"][i], cols["sigma_x"][i], cols["sigma_y"][i] = amp, sx, sy
        cols["background"][i] = c
        cols["flux"][i], cols["flux_err"][i] = flux, flux_err
        cols["fwhm"][i] = 2.3548 * np.sqrt(sx * sy)
        if sx >= box - 1e-3 or sy >= box - 1e-3 or amp <= 0:
            flags[i] |= FLAG_FIT_FAILED
        if saturation is not None:
            ix, iy = int(round(fx)), int(round(fy))
            sub = data[max(0, iy - half) : iy + half + 1, max(0, ix - half) : ix + half + 1]
            if sub.size and np.nanmax(sub) >= 0.97 * saturation:
                flags[i] |= FLAG_SATURATED
    t = Table(cols)
    t["flags"] = flags
    for name in ("x", "y", "x_err", "y_err", "sigma_x", "sigma_y", "fwhm"):
        t[name].unit = "pix"
    return t


def aperture_photometry_annulus(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    radius: float = 4.0,
    annulus: tuple[float, float] = (8.0, 12.0),
    gain: float | None = None,
    mask: np.ndarray | None = None,
    saturation: float | None = None,
) -> Table:
    """Circular-aperture photometry with a sigma-clipped local annulus background.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Image in counts (ADU), background not subtracted.
    x, y : ndarray, shape (N,)
        Positions, 0-based pixels.
    radius : float, optional
        Aperture radius in pixels. Default 4.
    annulus : (float, float), optional
        Inner and outer annulus radii in pixels. Default (8, 12).
    gain : float, optional
        Gain in e−/ADU for the source's Poisson noise; without it the error
        holds only the background terms.
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = bad pixel, excluded.
    saturation : float, optional
        Saturation level; apertures reaching it are flagged.

    Returns
    -------
    astropy.table.Table
        Columns ``x``, ``y``, ``flux`` (background-subtracted sum, ADU),
        ``flux_err``, ``background`` (per pixel, ADU), ``background_rms``
        (per pixel), ``flags`` (1 saturated, 2 edge or masked pixels).
        The error is σ² = F/g + N_ap·σ_bg² + N_ap²·σ_bg²/N_ann (the CCD
        equation, Merline & Howell 1995, Exp. Astron. 6, 163, eq. 4, with
        the annulus-mean error term).

    Raises
    ------
    InputError
        If the image is not 2-D, shapes differ, or the radii are not
        0 < radius <= inner < outer.
    """
    data, bad = _check_image(image, mask)
    x, y = _positions(x, y)
    r_in, r_out = annulus
    if not 0 < radius <= r_in < r_out:
        msg = f"need 0 < radius <= annulus inner < annulus outer, got {radius}, {annulus}"
        raise InputError(msg)
    pos = np.column_stack([x, y])
    if len(pos) == 0:
        return Table(
            {k: np.zeros(0) for k in ("x", "y", "flux", "flux_err", "background", "background_rms")}
            | {"flags": np.zeros(0, int)}
        )
    aper = CircularAperture(pos, r=radius)
    ann = CircularAnnulus(pos, r_in=r_in, r_out=r_out)
    clean = np.where(bad, 0.0, data)
    stats = ApertureStats(clean, ann, mask=bad, sigma_clip=SigmaClip(sigma=3.0, maxiters=5))
    bkg = np.asarray(stats.mean, dtype=float)
    bkg_std = np.asarray(stats.std, dtype=float)
    n_ann = np.asarray(stats.sum_aper_area.value, dtype=float)
    phot = aperture_photometry(clean, aper, mask=bad)
    area = aper.area_overlap(clean, mask=bad)
    raw = np.asarray(phot["aperture_sum"], dtype=float)
    flux = raw - bkg * area
    var = area * bkg_std**2 + area**2 * bkg_std**2 / np.maximum(n_ann, 1)
    if gain is not None:
        if gain <= 0:
            msg = f"gain must be > 0 e-/ADU, got {gain}"
            raise InputError(msg)
        var = var + np.clip(flux, 0, None) / gain
    flags = np.zeros(len(x), dtype=np.int64)
    full = np.pi * radius**2
    flags[area < 0.99 * full] |= FLAG_EDGE
    if saturation is not None:
        peak = ApertureStats(clean, aper, mask=bad).max
        flags[np.asarray(peak, dtype=float) >= 0.97 * saturation] |= FLAG_SATURATED
    t = Table(
        {
            "x": x,
            "y": y,
            "flux": flux,
            "flux_err": np.sqrt(var),
            "background": bkg,
            "background_rms": bkg_std,
            "flags": flags,
        }
    )
    t["x"].unit = "pix"
    t["y"].unit = "pix"
    return t


def instrumental_magnitude(
    flux: np.ndarray, flux_err: np.ndarray | None = None, exposure: float | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Instrumental magnitude m = −2.5·log10(F / t) and its error 1.0857·σF/F.

    Parameters
    ----------
    flux : ndarray
        Fluxes in counts (ADU); non-positive fluxes give NaN.
    flux_err : ndarray, optional
        1-σ flux errors.
    exposure : float, optional
        Exposure time in seconds (counts per second when given).

    Returns
    -------
    mag, mag_err : ndarray
        Magnitudes (NaN where flux <= 0) and errors (None without ``flux_err``).
    """
    f = np.asarray(flux, dtype=float)
    if exposure is not None:
        f = f / exposure
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(f > 0, -2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)
        err = None
        if flux_err is not None:
            e = np.asarray(flux_err, dtype=float) / (exposure or 1.0)
            err = np.where(f > 0, 2.5 / np.log(10) * e / np.where(f > 0, f, 1.0), np.nan)
    return mag, err
