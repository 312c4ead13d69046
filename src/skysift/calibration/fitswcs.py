"""A FITS-readable celestial WCS approximating an all-sky (fisheye) calibration.

An all-sky camera is calibrated in horizontal coordinates
(:class:`~skysift.calibration.fisheye.FisheyeModel`: pixel <-> altitude,
azimuth), tied to the sky by the site and time. Tools that read FITS (DS9,
Siril, astropy, SAOImage, astrometry.net's ``wcs-xy2rd``) know only the FITS
WCS conventions, so :func:`fisheye_to_fits_wcs` approximates the camera at one
instant by a zenithal projection centred on the optical axis with SIP
distortion polynomials:

* the projection is ARC (zenithal equidistant, the ideal fisheye
  ``r = k1 z``) or ZEA (zenithal equal-area), Calabretta & Greisen (2002),
  A&A 395, 1077, §5.1.4 and §5.1.5;
* the forward polynomials A, B (pixel -> focal plane) and the inverse AP, BP
  (focal plane -> pixel) follow Shupe et al. (2005), ASP Conf. Ser. 347, 491
  ("The SIP convention"); both are fitted by linear least squares on a grid
  of pixels over the sky above ``min_alt_deg`` elevation, weighted so that
  the forward fit minimises pixel (not angular) residuals;
* the error of the approximation (largest and RMS pixel distance between
  the WCS and the camera model over the sky above ``min_alt_deg``) is
  returned in :class:`FisheyeWcsStats` and written as header keywords.

The RA/Dec of a pixel change with time (the sky turns 0.25 deg per minute):
the WCS holds at the camera's time only (``DATE-AVG`` / ``MJD-AVG`` in the
header). Refraction is included as in the camera model.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning, Sip
from scipy.linalg import cho_factor, cho_solve

from skysift._validation import check_shape
from skysift.calibration.camera import FisheyeCamera
from skysift.calibration.fisheye import FisheyeModel, FisheyeSolution
from skysift.calibration.frame import CalibratedFrame
from skysift.errors import CalibrationError, InputError
from skysift.io.frame import Site

__all__ = ["FisheyeWcsStats", "fisheye_to_fits_wcs", "fisheye_wcs_header", "PROJECTIONS"]

#: Zenithal projections tried (``projection="auto"`` keeps the one that fits best).
PROJECTIONS = ("ARC", "ZEA")
#: Highest SIP order searched when ``sip_order`` is None.
MAX_SIP_ORDER = 9


@dataclass(frozen=True)
class FisheyeWcsStats:
    """How well a FITS WCS reproduces an all-sky camera model.

    Attributes
    ----------
    projection : str
        ``"ARC"`` or ``"ZEA"``.
    sip_order : int
        Order of the forward SIP polynomials A, B.
    inverse_order : int
        Order of the inverse polynomials AP, BP.
    max_px, rms_px : float
        Largest and RMS distance in pixels between the pixel of a sky position
        through the WCS (pixel -> sky with A, B, inverted exactly) and through
        the camera model, over pixels of the image above ``min_alt_deg``.
    inverse_max_px, inverse_rms_px : float
        The same for sky -> pixel through AP, BP alone (what most FITS viewers
        do), in pixels.
    min_alt_deg : float
        Elevation above which the errors are measured, degrees.
    n_points : int
        Number of grid pixels the errors are measured on.
    time : astropy.time.Time
        The instant the WCS holds for.
    tried : dict
        ``"ZEA-5"`` -> ``(max_px, rms_px)`` for every projection and order fitted.
    """

    projection: str
    sip_order: int
    inverse_order: int
    max_px: float
    rms_px: float
    inverse_max_px: float
    inverse_rms_px: float
    min_alt_deg: float
    n_points: int
    time: Time
    tried: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "projection": self.projection,
            "sip_order": self.sip_order,
            "inverse_order": self.inverse_order,
            "max_px": self.max_px,
            "rms_px": self.rms_px,
            "inverse_max_px": self.inverse_max_px,
            "inverse_rms_px": self.inverse_rms_px,
            "min_alt_deg": self.min_alt_deg,
            "n_points": self.n_points,
            "time": self.time.utc.isot,
            "tried": {k: [float(a), float(b)] for k, (a, b) in self.tried.items()},
        }

    def header_cards(self) -> list[tuple[str, Any, str]]:
        """FITS cards ``(keyword, value, comment)`` stating the approximation's error."""
        return [
            ("WCSAPPRX", "fisheye", "WCS approximates skysift all-sky camera model"),
            ("WCSMINAL", self.min_alt_deg, "[deg] errors measured above this elevation"),
            ("WCSMAXER", round(self.max_px, 4), "[pix] max |WCS - camera model|, pix2world"),
            ("WCSRMSER", round(self.rms_px, 4), "[pix] RMS |WCS - camera model|, pix2world"),
            ("WCSINVMX", round(self.inverse_max_px, 4), "[pix] max error, world2pix via AP/BP"),
            ("WCSINVRM", round(self.inverse_rms_px, 4), "[pix] RMS error, world2pix via AP/BP"),
            ("WCSNPTS", int(self.n_points), "grid pixels the errors are measured on"),
        ]


def _resolve(
    source: Any, shape: Any, time: Any, site: Any
) -> tuple[FisheyeModel, tuple[int, int], Time, Site]:
    """The fisheye model, image shape, time and site from any accepted input."""
    model: FisheyeModel | None = None
    src_site, src_time, src_shape = None, None, None
    if isinstance(source, CalibratedFrame):
        if source.model_type != "fisheye":
            msg = (
                f"a FITS WCS approximation is for fisheye calibrations; this one is "
                f"{source.model_type!r} (its WCS is solution.wcs)"
            )
            raise InputError(msg)
        model = source.solution.model
        src_site, src_time, src_shape = source.site, source.time, source.frame.shape
    elif isinstance(source, FisheyeCamera):
        model, src_site, src_time = source.model, source.site, source.time
    elif isinstance(source, FisheyeSolution):
        model, src_site, src_time = source.model, source.site, source.time
    elif isinstance(source, FisheyeModel):
        model = source
    else:
        msg = (
            "source must be a fisheye CalibratedFrame, FisheyeCamera, FisheyeSolution or "
            f"FisheyeModel, got {type(source).__name__}"
        )
        raise InputError(msg)
    site = site if site is not None else src_site
    time = time if time is not None else src_time
    if site is None or time is None:
        missing = " and ".join(n for n, v in (("site", site), ("time", time)) if v is None)
        msg = f"a fisheye model needs its {missing} to give RA/Dec"
        raise InputError(msg)
    if not isinstance(site, Site):
        msg = f"site must be a skysift Site, got {type(site).__name__}"
        raise InputError(msg)
    if not isinstance(time, Time):
        try:
            time = Time(time, scale="utc")
        except (ValueError, TypeError) as err:
            msg = f"time must be an astropy Time or ISO 8601 string, got {time!r}"
            raise InputError(msg) from err
    shape = shape if shape is not None else (src_shape or model.shape)
    if shape is None:
        msg = "the image shape (H, W) is needed (the model does not store one)"
        raise InputError(msg)
    return model, check_shape(shape, min_size=8), time, site


def _terms(order: int, start: int) -> list[tuple[int, int]]:
    return [(p, t - p) for t in range(start, order + 1) for p in range(t, -1, -1)]


def _poly(u: np.ndarray, v: np.ndarray, terms: list[tuple[int, int]], s: float) -> np.ndarray:
    return np.column_stack([(u / s) ** p * (v / s) ** q for p, q in terms])


def _dpoly(u, v, terms, s) -> tuple[np.ndarray, np.ndarray]:
    """Derivatives of the scaled monomials with respect to u and v."""
    du = np.column_stack(
        [p * (u / s) ** max(p - 1, 0) * (v / s) ** q / s if p else 0 * u for p, q in terms]
    )
    dv = np.column_stack(
        [q * (u / s) ** p * (v / s) ** max(q - 1, 0) / s if q else 0 * u for p, q in terms]
    )
    return du, dv


def _base_wcs(projection: str, crpix: np.ndarray, crval: tuple[float, float], time: Time) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    wcs.wcs.crpix = crpix + 1.0  # FITS 1-based
    wcs.wcs.crval = list(crval)
    wcs.wcs.cd = np.eye(2)
    wcs.wcs.radesys = "ICRS"
    # DATE-AVG (Rots et al. 2015, A&A 574, A36, §4.1): the WCS holds at this instant,
    # the mid-exposure; DATE-OBS (the start) stays the input's.
    wcs.wcs.dateavg = time.utc.isot
    wcs.wcs.mjdavg = float(time.utc.mjd)
    wcs.wcs.set()
    return wcs


def _plane(wcs: WCS, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Projection-plane coordinates (deg) of sky positions, for a WCS with CD = identity."""
    return wcs.wcs.s2p(np.column_stack([ra, dec]), 1)["imgcrd"]  # origin 1: imgcrd unshifted


def _lstsq(m: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least-squares solution of ``m @ c = b`` by the normal equations.

    The columns are equilibrated first; the monomials of pixel offsets scaled to
    about [-1, 1] keep the Gram matrix well enough conditioned for these fits (the
    residuals match an SVD solve to 1e-6 px). ``einsum`` keeps the products off
    multi-threaded BLAS, which is slower than one thread for these sizes on a
    loaded machine.
    """
    norm = np.sqrt(np.einsum("ij,ij->j", m, m))
    norm[norm == 0] = 1.0
    ms = m / norm
    gram = np.einsum("ij,ik->jk", ms, ms)
    rhs = np.einsum("ij,i->j", ms, b)
    return cho_solve(cho_factor(gram), rhs) / norm


def _fit(
    u: np.ndarray, v: np.ndarray, plane: np.ndarray, order: int, s: float
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Polynomial (orders 1..order) from pixel offsets to the plane, minimising pixel residuals.

    A plain least-squares fit in the plane weights the residuals by the
    local plate scale; one reweighting by the inverse Jacobian of the first
    fit turns them into pixel residuals.
    """
    terms = _terms(order, 1)
    m = _poly(u, v, terms, s)
    cx = _lstsq(m, plane[:, 0])
    cy = _lstsq(m, plane[:, 1])
    du, dv = _dpoly(u, v, terms, s)
    for _ in range(2):
        j11, j12, j21, j22 = du @ cx, dv @ cx, du @ cy, dv @ cy
        det = j11 * j22 - j12 * j21
        i11, i12, i21, i22 = j22 / det, -j12 / det, -j21 / det, j11 / det
        design = np.vstack(
            [
                np.hstack([i11[:, None] * m, i12[:, None] * m]),
                np.hstack([i21[:, None] * m, i22[:, None] * m]),
            ]
        )
        target = np.concatenate(
            [i11 * plane[:, 0] + i12 * plane[:, 1], i21 * plane[:, 0] + i22 * plane[:, 1]]
        )
        sol = _lstsq(design, target)
        cx, cy = sol[: len(terms)], sol[len(terms) :]
    return cx, cy, terms


def _to_sip(
    wcs: WCS, cx: np.ndarray, cy: np.ndarray, terms: list[tuple[int, int]], s: float, order: int
) -> None:
    """Set CD and the forward SIP A, B of ``wcs`` from the fitted polynomial, in place."""
    cd = np.array([[cx[0], cx[1]], [cy[0], cy[1]]]) / s
    cd_inv = np.linalg.inv(cd)
    a = np.zeros((order + 1, order + 1))
    b = np.zeros((order + 1, order + 1))
    for k, (p, q) in enumerate(terms):
        if p + q >= 2:
            a[p, q], b[p, q] = cd_inv @ np.array([cx[k], cy[k]]) / s ** (p + q)
    wcs.wcs.cd = cd
    wcs.wcs.ctype = [f"{c}-SIP" for c in wcs.wcs.ctype]
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    wcs.wcs.set()


def _fit_inverse(
    wcs: WCS, u: np.ndarray, v: np.ndarray, plane: np.ndarray, order: int, s: float
) -> None:
    """Fit AP, BP from the true focal-plane positions to the true pixel offsets, in place."""
    foc = plane @ np.linalg.inv(wcs.wcs.cd).T
    uu, vv = foc[:, 0], foc[:, 1]
    terms = _terms(order, 0)
    m = _poly(uu, vv, terms, s)
    cu = _lstsq(m, u - uu)
    cv = _lstsq(m, v - vv)
    ap = np.zeros((order + 1, order + 1))
    bp = np.zeros((order + 1, order + 1))
    for (p, q), ca, cb in zip(terms, cu, cv, strict=True):
        ap[p, q] = ca / s ** (p + q)
        bp[p, q] = cb / s ** (p + q)
    wcs.sip = Sip(wcs.sip.a, wcs.sip.b, ap, bp, wcs.wcs.crpix)
    wcs.wcs.set()


def _errors(wcs: WCS, xy: np.ndarray, radec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel errors of sky -> pixel through the exact inverse of A, B and through AP, BP."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            px = wcs.all_world2pix(
                radec[:, 0], radec[:, 1], 0, tolerance=1e-5, maxiter=100, quiet=True
            )
            px = np.column_stack(px)
        except Exception:  # noqa: BLE001 - astropy raises several types on divergence
            px = np.full_like(xy, np.nan)
    # AP, BP evaluated as the SIP convention states, u = U + AP(U, V), with U, V the
    # focal-plane offsets from CRPIX (CD^-1 of the projection-plane coordinates)
    foc = _plane(wcs, radec[:, 0], radec[:, 1]) @ np.linalg.inv(wcs.wcs.cd).T
    inv = foc + wcs.wcs.crpix - 1.0
    for p in range(wcs.sip.ap.shape[0]):
        for q in range(wcs.sip.ap.shape[1] - p):
            mono = foc[:, 0] ** p * foc[:, 1] ** q
            inv[:, 0] += wcs.sip.ap[p, q] * mono
            inv[:, 1] += wcs.sip.bp[p, q] * mono
    fwd = np.hypot(*(px - xy).T)
    fwd = np.where(np.isfinite(fwd), fwd, np.inf)
    return fwd, np.hypot(*(inv - xy).T)


def _grid(
    model: FisheyeModel, shape: tuple[int, int], n: int, offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of a square grid inside the image (``n`` steps across the sky circle), and
    their altitudes (NaN where the model does not map back to the pixel)."""
    h, w = shape
    step = max(2.0 * model.horizon_radius / n, 1.0)
    gx = np.arange(-0.5 + offset * step, w - 0.5, step)
    gy = np.arange(-0.5 + offset * step, h - 0.5, step)
    xx, yy = np.meshgrid(gx, gy)
    x, y = xx.ravel(), yy.ravel()
    alt, az = model.pixel_to_altaz(x, y)
    # Beyond the largest radius of its radial polynomial the model's inverse has no
    # solution: keep only pixels that map back onto themselves.
    x2, y2 = model.altaz_to_pixel(alt, az)
    alt = np.where(np.hypot(x2 - x, y2 - y) < 1e-3, alt, np.nan)
    return np.column_stack([x, y]), np.asarray(alt)


def fisheye_to_fits_wcs(
    source: Any,
    shape: tuple[int, int] | None = None,
    time: Time | str | None = None,
    site: Site | None = None,
    *,
    min_alt_deg: float = 20.0,
    sip_order: int | None = None,
    projection: str = "auto",
    tolerance_px: float = 0.2,
    n_grid: int = 50,
) -> tuple[WCS, FisheyeWcsStats]:
    """Approximate an all-sky camera model by a FITS celestial WCS (ARC or ZEA with SIP).

    Parameters
    ----------
    source : CalibratedFrame, FisheyeCamera, FisheyeSolution or FisheyeModel
        The all-sky calibration (a fisheye :class:`CalibratedFrame` from
        :func:`skysift.calibration.pipeline.calibrate`, or its camera model).
    shape : (int, int), optional
        Image shape ``(H, W)`` in pixels; default the calibrated frame's or the
        model's.
    time : astropy.time.Time or str, optional
        Instant the WCS is for (UTC); default the calibration's (mid-exposure).
    site : Site, optional
        Observing site; default the calibration's.
    min_alt_deg : float, optional
        The WCS is fitted, and its error measured, on the pixels of the image
        whose elevation is at least this, in degrees. Default 20.
    sip_order : int, optional
        Order (2 to 9) of the forward SIP polynomials. Default None: the lowest
        order whose largest error is below ``tolerance_px`` (else the best).
    projection : {"auto", "ARC", "ZEA"}, optional
        Zenithal projection; ``"auto"`` keeps the one with the smaller largest
        error. Default ``"auto"``.
    tolerance_px : float, optional
        Largest error, in pixels, that ends the search over orders. Default 0.2.
    n_grid : int, optional
        Grid pixels across the sky circle used in the fit; the error is
        measured on a grid twice as fine, offset by half its step. Default 50.

    Returns
    -------
    wcs : astropy.wcs.WCS
        Celestial WCS (ICRS), ``RA---ARC-SIP`` or ``RA---ZEA-SIP`` with A, B,
        AP, BP, CRPIX at the optical axis, ``DATE-AVG``/``MJD-AVG`` set to
        ``time`` and ``pixel_shape`` ``(W, H)``. Pixel coordinates are 0-based
        through astropy's pixel API (``origin=0``).
    stats : FisheyeWcsStats
        Its error against the camera model (:meth:`FisheyeWcsStats.header_cards`
        gives them as FITS keywords).

    Raises
    ------
    InputError
        For a source that is not a fisheye calibration, a missing site, time
        or shape, or a bad option.
    CalibrationError
        If fewer than 50 pixels of the image lie above ``min_alt_deg``.

    References
    ----------
    Calabretta & Greisen (2002), A&A 395, 1077, §5.1 (ARC, ZEA); Shupe et al.
    (2005), ASP Conf. Ser. 347, 491 (SIP).
    """
    model, shape, time, site = _resolve(source, shape, time, site)
    if not (isinstance(min_alt_deg, (int, float)) and -10.0 <= float(min_alt_deg) < 89.0):
        msg = f"min_alt_deg must be a number in [-10, 89) degrees, got {min_alt_deg!r}"
        raise InputError(msg)
    if projection not in ("auto", *PROJECTIONS):
        msg = f"projection must be 'auto', 'ARC' or 'ZEA', got {projection!r}"
        raise InputError(msg)
    if sip_order is not None and (
        isinstance(sip_order, bool) or not isinstance(sip_order, int) or not 2 <= sip_order <= 9
    ):
        msg = f"sip_order must be an integer from 2 to 9 (or None), got {sip_order!r}"
        raise InputError(msg)
    camera = FisheyeCamera("fisheye", model, site, time)
    fit_xy, fit_alt = _grid(model, shape, n_grid, 0.0)
    ev_xy, ev_alt = _grid(model, shape, 2 * n_grid, 0.5)
    fit_xy, ev_xy = fit_xy[fit_alt >= min_alt_deg], ev_xy[ev_alt >= min_alt_deg]
    if len(fit_xy) < 50 or len(ev_xy) < 50:
        msg = (
            f"too few pixels of the {shape[1]}x{shape[0]} image lie above {min_alt_deg} deg "
            f"elevation ({len(ev_xy)}) to fit a WCS"
        )
        raise CalibrationError(msg)
    both = np.vstack([fit_xy, ev_xy])
    ra, dec = camera.pixel_to_radec(both[:, 0], both[:, 1])
    radec = np.column_stack([np.asarray(ra, float), np.asarray(dec, float)])
    fit_rd, ev_rd = radec[: len(fit_xy)], radec[len(fit_xy) :]
    crpix = np.array([model.x0, model.y0])
    c_ra, c_dec = camera.pixel_to_radec(np.array([model.x0]), np.array([model.y0]))
    crval = (float(np.asarray(c_ra)[0]), float(np.asarray(c_dec)[0]))
    s = max(model.horizon_radius, 1.0)
    u, v = fit_xy[:, 0] - crpix[0], fit_xy[:, 1] - crpix[1]

    orders = [sip_order] if sip_order is not None else list(range(2, MAX_SIP_ORDER + 1))
    projections = PROJECTIONS if projection == "auto" else (projection,)
    tried: dict[str, tuple[float, float]] = {}
    best: tuple[float, WCS, str, int, np.ndarray, np.ndarray] | None = None
    for order in orders:
        for proj in projections:
            wcs = _base_wcs(proj, crpix, crval, time)
            plane = _plane(wcs, fit_rd[:, 0], fit_rd[:, 1])
            cx, cy, terms = _fit(u, v, plane, order, s)
            _to_sip(wcs, cx, cy, terms, s, order)
            _fit_inverse(wcs, u, v, plane, min(order + 2, 9), s)
            fwd, inv = _errors(wcs, ev_xy, ev_rd)
            err = float(np.max(fwd))
            tried[f"{proj}-{order}"] = (err, float(np.sqrt(np.mean(fwd**2))))
            if best is None or err < best[0]:
                best = (err, wcs, proj, order, fwd, inv)
        if best is not None and best[0] < tolerance_px and sip_order is None:
            break
    _, wcs, proj, order, fwd, inv = best  # type: ignore[misc]  # orders are never empty
    wcs.pixel_shape = (shape[1], shape[0])
    stats = FisheyeWcsStats(
        projection=proj,
        sip_order=order,
        inverse_order=min(order + 2, 9),
        max_px=float(np.max(fwd)),
        rms_px=float(np.sqrt(np.mean(fwd**2))),
        inverse_max_px=float(np.max(inv)),
        inverse_rms_px=float(np.sqrt(np.mean(inv**2))),
        min_alt_deg=float(min_alt_deg),
        n_points=len(ev_xy),
        time=time,
        tried=tried,
    )
    return wcs, stats


def fisheye_wcs_header(wcs: WCS, stats: FisheyeWcsStats) -> fits.Header:
    """FITS header cards of a fisheye WCS approximation: the WCS, image size and errors.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        From :func:`fisheye_to_fits_wcs` (``pixel_shape`` set).
    stats : FisheyeWcsStats
        Its errors.

    Returns
    -------
    astropy.io.fits.Header
        ``wcs.to_header(relax=True)`` plus ``IMAGEW``, ``IMAGEH`` and the error
        keywords of :meth:`FisheyeWcsStats.header_cards`, with a comment that the
        WCS holds at ``DATE-AVG`` only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        hdr = wcs.to_header(relax=True)
    if wcs.pixel_shape is not None:
        w, h = wcs.pixel_shape
        hdr["IMAGEW"] = (int(w), "image width, pixels")
        hdr["IMAGEH"] = (int(h), "image height, pixels")
    names = {"ARC": "zenithal equidistant", "ZEA": "zenithal equal-area"}
    for i in (1, 2):  # astropy's comment says TAN whatever the projection
        hdr.comments[f"CTYPE{i}"] = f"{stats.projection} ({names[stats.projection]}) + SIP"
    for key, value, comment in stats.header_cards():
        hdr[key] = (value, comment)
    hdr["COMMENT"] = (
        f"All-sky WCS: {stats.projection}+SIP order {stats.sip_order} approximating the "
        f"skysift fisheye camera model; valid at DATE-AVG only (the sky turns "
        f"{math.degrees(2 * math.pi / 86164.0905) * 60:.3f} deg/min)."
    )
    return hdr
