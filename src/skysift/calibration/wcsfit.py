"""Fitting TAN and TAN-SIP WCS to matched pixel and sky positions (linear least squares)."""

from __future__ import annotations

import math
import warnings

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS, Sip
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

__all__ = ["auto_sip_degree"]


def auto_sip_degree(n_stars: int, requested: int | None) -> int:
    """Return the highest SIP degree <= ``requested`` that ``n_stars`` pairs constrain well.

    A degree-``d`` TAN-SIP fit has ``6 + 2 * ((d + 1)(d + 2) / 2 - 3)``
    parameters; we ask for at least 2.5 pairs per parameter (and 0, plain TAN,
    below 30 pairs). Returns 0 for a plain TAN fit.
    """
    if not requested:
        return 0
    for d in range(int(requested), 1, -1):
        n_par = 6 + 2 * ((d + 1) * (d + 2) // 2 - 3)
        if n_stars >= max(30, 2.5 * n_par):
            return d
    return 0


def _tan_project(
    ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic standard coordinates (xi east, eta north), in degrees, about (ra0, dec0)."""
    a, d = np.radians(ra) - math.radians(ra0), np.radians(dec)
    d0 = math.radians(dec0)
    cosc = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(a)
    xi = np.cos(d) * np.sin(a) / cosc
    eta = (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(a)) / cosc
    return np.degrees(xi), np.degrees(eta)


def _tan_deproject(xi: float, eta: float, ra0: float, dec0: float) -> tuple[float, float]:
    x, y = math.radians(xi), math.radians(eta)
    d0 = math.radians(dec0)
    rho = math.hypot(x, y)
    c = math.atan(rho)
    if rho == 0:
        return ra0, dec0
    dec = math.asin(math.cos(c) * math.sin(d0) + y * math.sin(c) * math.cos(d0) / rho)
    ra = ra0 + math.degrees(
        math.atan2(
            x * math.sin(c), rho * math.cos(d0) * math.cos(c) - y * math.sin(d0) * math.sin(c)
        )
    )
    return ra % 360.0, math.degrees(dec)


def _fit_wcs(xy: np.ndarray, radec: np.ndarray, shape: tuple[int, int], sip_degree: int) -> WCS:
    """Least-squares TAN(-SIP) fit with CRPIX at the image centre; CRVAL, CD and SIP free.

    For a trial CRVAL the standard coordinates are a polynomial in the pixel
    offsets whose linear part is CD and whose higher terms are CD (A, B)
    (SIP [3]_), so the fit is linear; the constant term moves CRVAL and the
    fit is repeated until it vanishes.
    """
    h, w = shape
    crpix = np.array([(w + 1) / 2.0, (h + 1) / 2.0])  # FITS 1-based: the image centre
    uu = xy[:, 0] + 1 - crpix[0]
    vv = xy[:, 1] + 1 - crpix[1]
    s = max(h, w) / 2.0
    degree = int(sip_degree or 0)
    terms = [(p, t - p) for t in range(max(degree, 1) + 1) for p in range(t, -1, -1)]
    if degree < 2:
        terms = terms[:3]
    M = np.column_stack([(uu / s) ** p * (vv / s) ** q for p, q in terms])
    vec = np.column_stack(
        [
            np.cos(np.radians(radec[:, 1])) * np.cos(np.radians(radec[:, 0])),
            np.cos(np.radians(radec[:, 1])) * np.sin(np.radians(radec[:, 0])),
            np.sin(np.radians(radec[:, 1])),
        ]
    ).mean(0)
    ra0 = math.degrees(math.atan2(vec[1], vec[0])) % 360.0
    dec0 = math.degrees(math.atan2(vec[2], math.hypot(vec[0], vec[1])))
    for _ in range(10):
        xi, eta = _tan_project(radec[:, 0], radec[:, 1], ra0, dec0)
        cx, *_ = np.linalg.lstsq(M, xi, rcond=None)
        cy, *_ = np.linalg.lstsq(M, eta, rcond=None)
        ra0, dec0 = _tan_deproject(cx[0], cy[0], ra0, dec0)
        if math.hypot(cx[0], cy[0]) < 1e-10:
            break
    cd = np.array([[cx[1], cx[2]], [cy[1], cy[2]]]) / s
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if degree >= 2 else ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = crpix
    wcs.wcs.cd = cd
    wcs.wcs.radesys = "ICRS"
    wcs.pixel_shape = (w, h)
    if degree >= 2:
        cd_inv = np.linalg.inv(cd)
        a = np.zeros((degree + 1, degree + 1))
        b = np.zeros((degree + 1, degree + 1))
        for k, (p, q) in enumerate(terms):
            if p + q >= 2:
                a[p, q], b[p, q] = cd_inv @ np.array([cx[k], cy[k]]) / s ** (p + q)
        wcs.sip = Sip(a, b, None, None, crpix)
        _fit_inverse_sip(wcs, shape, degree + 1)
    elif len(xy) >= 5:
        _free_tangent_point(wcs, xy, radec)
    wcs.wcs.set()
    return wcs


def _free_tangent_point(wcs: WCS, xy: np.ndarray, radec: np.ndarray) -> None:
    """Refine a plain TAN fit with CRPIX free too (an off-centre optical axis), in place.

    CRPIX and CRVAL are degenerate to first order, so this only changes the
    solution where a tangent point away from the image centre fits better.
    """

    p0 = np.concatenate([wcs.wcs.crpix, wcs.wcs.crval, wcs.wcs.cd.ravel()])
    trial = wcs.deepcopy()

    def resid(p: np.ndarray) -> np.ndarray:
        trial.wcs.crpix = p[:2]
        trial.wcs.crval = p[2:4]
        trial.wcs.cd = p[4:].reshape(2, 2)
        trial.wcs.set()
        x, y = trial.wcs_world2pix(radec[:, 0], radec[:, 1], 0)
        return np.concatenate([x - xy[:, 0], y - xy[:, 1]])

    r0 = resid(p0)
    scale = np.concatenate(
        [[10.0, 10.0], [abs(wcs.wcs.cd).max() * 10] * 2, [abs(wcs.wcs.cd).max() * 1e-3] * 4]
    )
    fit = least_squares(resid, p0, x_scale=scale, method="lm")
    if fit.success and np.sum(fit.fun**2) < np.sum(r0**2):
        wcs.wcs.crpix = fit.x[:2]
        wcs.wcs.crval = [fit.x[2] % 360.0, fit.x[3]]
        wcs.wcs.cd = fit.x[4:].reshape(2, 2)


def _fit_inverse_sip(wcs: WCS, shape: tuple[int, int], order: int) -> None:
    """Fit the inverse SIP polynomials AP, BP on a grid over the image (in place)."""
    h, w = shape
    gx, gy = np.meshgrid(np.linspace(-0.5, w - 0.5, 40), np.linspace(-0.5, h - 0.5, 40))
    crpix = wcs.wcs.crpix
    uu = gx.ravel() + 1 - crpix[0]
    vv = gy.ravel() + 1 - crpix[1]
    a, b = wcs.sip.a, wcs.sip.b
    f = np.zeros_like(uu)
    g = np.zeros_like(uu)
    for p in range(a.shape[0]):
        for q in range(a.shape[1]):
            if a[p, q] or b[p, q]:
                f += a[p, q] * uu**p * vv**q
                g += b[p, q] * uu**p * vv**q
    U, V = uu + f, vv + g
    terms = [(p, q) for p in range(order + 1) for q in range(order + 1 - p)]
    scale = max(h, w)
    M = np.column_stack([(U / scale) ** p * (V / scale) ** q for p, q in terms])
    cu, *_ = np.linalg.lstsq(M, uu - U, rcond=None)
    cv, *_ = np.linalg.lstsq(M, vv - V, rcond=None)
    ap = np.zeros((order + 1, order + 1))
    bp = np.zeros((order + 1, order + 1))
    for (p, q), ca, cb in zip(terms, cu, cv, strict=True):
        ap[p, q] = ca / scale ** (p + q)
        bp[p, q] = cb / scale ** (p + q)
    wcs.sip = Sip(wcs.sip.a, wcs.sip.b, ap, bp, wcs.wcs.crpix)


def _project(wcs: WCS, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    if len(ra) == 0:
        return np.zeros((0, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            x, y = wcs.all_world2pix(ra, dec, 0, tolerance=1e-6, maxiter=50, quiet=True)
        except Exception:  # noqa: BLE001 - astropy raises several types on divergence
            x, y = wcs.wcs_world2pix(ra, dec, 0)
    return np.column_stack([x, y])


def _mutual_nearest(
    det: np.ndarray, cat: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i_det, j_cat) that are each other's nearest neighbour within ``radius``."""
    if len(det) == 0 or len(cat) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    d1, j = cKDTree(cat).query(det, distance_upper_bound=radius)
    ok = np.isfinite(d1)
    i = np.nonzero(ok)[0]
    j = j[ok]
    _, back = cKDTree(det).query(cat[j])
    keep = back == i
    return i[keep], j[keep]


def _rms(r: np.ndarray) -> float:
    return float(np.sqrt(np.mean(r**2))) if len(r) else float("nan")


def _fov_of(wcs: WCS, shape: tuple[int, int]) -> float:
    h, w = shape
    ra, dec = wcs.all_pix2world([-0.5, w - 0.5], [(h - 1) / 2.0] * 2, 0)
    a = SkyCoord(ra * u.deg, dec * u.deg)
    return float(a[0].separation(a[1]).deg)
