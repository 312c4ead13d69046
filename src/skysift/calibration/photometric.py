"""Photometric calibration: the zero point, extinction and radial terms of a frame.

The model fitted by :func:`fit_zero_point` is, for each star,

.. math::

    m_{cat} - m_{inst} = ZP - k X + c (B - V) + \\sum_j a_{2j} r^{2j}

with :math:`m_{inst} = -2.5 \\log_{10}(\\mathrm{flux})` the instrumental
magnitude, :math:`X` the airmass, :math:`k` the extinction coefficient (mag
per airmass), :math:`r` the distance from the image centre (or zenith pixel),
which absorbs vignetting, and :math:`c` an optional colour term. Each term
other than the zero point is optional.

For a single reference star (the bolide report's formula) use
:func:`magnitude_from_reference`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from skysift.errors import CalibrationError, InputError, NotEnoughStarsError

__all__ = ["airmass", "ZeroPointFit", "fit_zero_point", "magnitude_from_reference"]

_MAD_TO_SIGMA = 1.4826


def airmass(alt_deg):
    """Relative optical air mass at an apparent altitude (Kasten & Young 1989).

    ``X = 1 / (sin h + 0.50572 (h + 6.07995 deg)**-1.6364)`` with the
    altitude ``h`` in degrees; accurate to better than 0.5 % down to the
    horizon, where plane-parallel ``sec z`` diverges.

    Parameters
    ----------
    alt_deg : float or array_like
        Apparent (refracted) altitude in degrees.

    Returns
    -------
    float or ndarray
        Air mass (1 at the zenith, about 38 at the horizon); NaN for
        altitudes below 0 deg or above 90 deg.

    References
    ----------
    .. [1] Kasten, F. & Young, A. T. 1989, Applied Optics 28, 4735,
       "Revised optical air mass tables and approximation formula".
    """
    h = np.asarray(alt_deg, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = 1.0 / (np.sin(np.radians(h)) + 0.50572 * (h + 6.07995) ** -1.6364)
    x = np.where((h >= 0.0) & (h <= 90.0), x, np.nan)
    return float(x) if x.ndim == 0 else x


def magnitude_from_reference(flux, flux_ref, mag_ref):
    """Magnitude from one reference star: ``m = m_ref - 2.5 log10(L / L_ref)``.

    The one-star special case of a zero point (bolide report, single
    reference formula): it assumes the object and the reference are measured
    the same way and at similar air mass and field position.

    Parameters
    ----------
    flux : float or array_like
        Flux (or summed luminance) of the object, same units as ``flux_ref``.
    flux_ref : float
        Flux of the reference star; must be positive.
    mag_ref : float
        Catalogue magnitude of the reference star.

    Returns
    -------
    float or ndarray
        Magnitude of the object; NaN where ``flux`` is not positive.

    Raises
    ------
    InputError
        If ``flux_ref`` is not a positive finite number or ``mag_ref`` is not
        finite.
    """
    flux_ref = float(flux_ref)
    if not np.isfinite(flux_ref) or flux_ref <= 0:
        msg = f"flux_ref must be a positive finite flux, got {flux_ref!r}"
        raise InputError(msg)
    if not np.isfinite(float(mag_ref)):
        msg = f"mag_ref must be a finite magnitude, got {mag_ref!r}"
        raise InputError(msg)
    f = np.asarray(flux, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = float(mag_ref) - 2.5 * np.log10(np.where(f > 0, f / flux_ref, np.nan))
    return float(m) if m.ndim == 0 else m


@dataclass
class ZeroPointFit:
    """Result of :func:`fit_zero_point`.

    Attributes
    ----------
    zero_point : float
        ZP in magnitudes (``m_cat = m_inst + ZP - k X + ...``); with an
        extinction term it is the zero point outside the atmosphere (X = 0).
    zero_point_err : float
        1-sigma uncertainty of ``zero_point`` (mag), from the covariance of
        the final least-squares fit on the inliers.
    extinction_k : float
        Extinction coefficient in mag per air mass (0 if not fitted).
    extinction_k_err : float
        Its 1-sigma uncertainty (0 if not fitted).
    radial_coeffs : tuple of float
        Coefficients ``(a2, a4, ...)`` of ``r**2, r**4, ...`` in mag per
        (radius unit)**2j, in the units of the radius given (empty if not
        fitted).
    color_coeff : float
        Coefficient of the colour term, mag per mag of colour (0 if not
        fitted).
    linearity : float
        Coefficient ``s`` of the non-linearity term ``s (m_inst - linearity_ref)``
        (0 if not fitted). A gamma-encoded image (pixel = flux**gamma) has
        ``s = 1/gamma - 1``.
    linearity_ref : float
        Instrumental magnitude at which the non-linearity term vanishes
        (the median of the fitted stars).
    rms_mag : float
        Robust scatter of the inlier residuals, ``1.4826 * MAD`` (mag).
    rms_clipped : float
        Plain root-mean-square of the inlier residuals (mag).
    n_used : int
        Number of stars kept (inliers).
    inlier : ndarray of bool, shape (N,)
        ``True`` for the stars used in the final fit.
    residuals : ndarray, shape (N,)
        ``m_cat - predict(m_inst, ...)`` for every input star (mag; NaN for
        non-finite input).
    terms : tuple of str
        The terms fitted, among ``"zero_point"``, ``"extinction"``,
        ``"radial"``, ``"color"``, ``"linearity"``.
    """

    zero_point: float
    zero_point_err: float
    extinction_k: float = 0.0
    extinction_k_err: float = 0.0
    radial_coeffs: tuple[float, ...] = ()
    color_coeff: float = 0.0
    linearity: float = 0.0
    linearity_ref: float = 0.0
    rms_mag: float = float("nan")
    rms_clipped: float = float("nan")
    n_used: int = 0
    inlier: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    terms: tuple[str, ...] = ("zero_point",)

    def predict(self, inst_mag, airmass=None, radius=None, color=None):
        """Calibrated magnitude of instrumental magnitudes.

        Parameters
        ----------
        inst_mag : float or array_like
            Instrumental magnitude ``-2.5 log10(flux)``.
        airmass, radius, color : float or array_like, optional
            Needed when the corresponding term was fitted (same units as in
            the fit).

        Returns
        -------
        float or ndarray
            Calibrated magnitude.

        Raises
        ------
        InputError
            If a fitted term's input is missing.
        """
        m = np.asarray(inst_mag, dtype=float) + self.zero_point
        if "extinction" in self.terms:
            if airmass is None:
                msg = "this zero point has an extinction term: give airmass"
                raise InputError(msg)
            m = m - self.extinction_k * np.asarray(airmass, dtype=float)
        if "radial" in self.terms:
            if radius is None:
                msg = "this zero point has a radial term: give radius"
                raise InputError(msg)
            r2 = np.asarray(radius, dtype=float) ** 2
            for j, c in enumerate(self.radial_coeffs, start=1):
                m = m + c * r2**j
        if "color" in self.terms:
            if color is None:
                msg = "this zero point has a colour term: give color"
                raise InputError(msg)
            m = m + self.color_coeff * np.asarray(color, dtype=float)
        if "linearity" in self.terms:
            m = m + self.linearity * (np.asarray(inst_mag, dtype=float) - self.linearity_ref)
        return float(m) if m.ndim == 0 else m

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-star arrays)."""
        return {
            "zero_point": float(self.zero_point),
            "zero_point_err": float(self.zero_point_err),
            "extinction_k": float(self.extinction_k),
            "extinction_k_err": float(self.extinction_k_err),
            "radial_coeffs": [float(c) for c in self.radial_coeffs],
            "color_coeff": float(self.color_coeff),
            "linearity": float(self.linearity),
            "linearity_ref": float(self.linearity_ref),
            "rms_mag": float(self.rms_mag),
            "rms_clipped": float(self.rms_clipped),
            "n_used": int(self.n_used),
            "n_total": int(self.inlier.size),
            "terms": list(self.terms),
        }


def _as_column(name: str, value, n: int) -> np.ndarray:
    a = np.asarray(value, dtype=float).ravel()
    if a.size != n:
        msg = f"{name} must have one value per star ({n}), got {a.size}"
        raise InputError(msg)
    return a


def fit_zero_point(
    inst_mag,
    catalog_mag,
    *,
    airmass=None,
    radius=None,
    color=None,
    extinction: bool | None = None,
    radial: bool | None = None,
    radial_order: int = 1,
    linearity: bool = False,
    clip: float = 3.0,
    max_iter: int = 10,
    min_stars: int = 3,
) -> ZeroPointFit:
    """Fit the photometric zero point of a frame, robustly.

    Fits ``m_cat - m_inst = ZP - k X + a2 r**2 (+ a4 r**4 ...) + c (B-V)
    + s (m_inst - m_ref)`` (each term optional) by
    least squares, starting from a soft-L1 (outlier-resistant) solution and
    then iterating sigma clipping at ``clip`` times the robust scatter
    (1.4826 MAD) until the inlier set no longer changes.

    Parameters
    ----------
    inst_mag : array_like, shape (N,)
        Instrumental magnitudes, ``-2.5 log10(flux)``.
    catalog_mag : array_like, shape (N,)
        Catalogue magnitudes of the same stars.
    airmass : array_like, shape (N,), optional
        Air mass of each star (e.g. :func:`airmass`).
    radius : array_like, shape (N,), optional
        Distance of each star from the optical centre, in any unit (pixels,
        or better a fraction of the horizon radius); the radial coefficients
        are in mag per unit**2j.
    color : array_like, shape (N,), optional
        Colour index (e.g. B - V) for a colour term.
    extinction, radial : bool, optional
        Fit the extinction or the radial term. Default: when ``airmass`` or
        ``radius`` is given.
    linearity : bool, optional
        Also fit a non-linearity term ``s (m_inst - m_ref)``, for detectors or
        files whose pixel values are not proportional to the flux (8-bit
        video and JPEG/PNG frames are usually gamma-encoded). Default False.
    radial_order : int, optional
        Number of even radial terms: 1 (``r**2``) or 2 (``r**2, r**4``).
        Default 1.
    clip : float, optional
        Clipping threshold in robust standard deviations. Default 3.
    max_iter : int, optional
        Maximum clipping iterations. Default 10.
    min_stars : int, optional
        Fewest stars to fit; at least one more than the number of
        parameters. Default 3.

    Returns
    -------
    ZeroPointFit

    Raises
    ------
    InputError
        If the arrays differ in length, a requested term lacks its input, or
        an option is out of range.
    NotEnoughStarsError
        If fewer than ``max(min_stars, n_parameters + 1)`` stars have finite
        values.
    """
    m_inst = np.asarray(inst_mag, dtype=float).ravel()
    n = m_inst.size
    m_cat = _as_column("catalog_mag", catalog_mag, n)
    if extinction is None:
        extinction = airmass is not None
    if radial is None:
        radial = radius is not None
    if extinction and airmass is None:
        msg = "extinction=True needs the airmass of each star"
        raise InputError(msg)
    if radial and radius is None:
        msg = "radial=True needs the radius of each star"
        raise InputError(msg)
    if radial_order not in (1, 2):
        msg = f"radial_order must be 1 or 2, got {radial_order!r}"
        raise InputError(msg)
    if not clip > 0:
        msg = f"clip must be positive, got {clip!r}"
        raise InputError(msg)

    cols = [np.ones(n)]
    terms = ["zero_point"]
    scales = [1.0]
    finite = np.isfinite(m_inst) & np.isfinite(m_cat)
    if extinction:
        x = _as_column("airmass", airmass, n)
        finite &= np.isfinite(x)
        cols.append(-x)
        scales.append(1.0)
        terms.append("extinction")
    if radial:
        r = _as_column("radius", radius, n)
        finite &= np.isfinite(r)
        rmax = float(np.nanmax(np.abs(r[finite]))) if finite.any() else 1.0
        rmax = rmax if rmax > 0 else 1.0
        for j in range(1, radial_order + 1):
            cols.append((r / rmax) ** (2 * j))
            scales.append(rmax ** (2 * j))
        terms.append("radial")
    if color is not None:
        c = _as_column("color", color, n)
        finite &= np.isfinite(c)
        cols.append(c)
        scales.append(1.0)
        terms.append("color")
    lin_ref = 0.0
    if linearity:
        lin_ref = float(np.median(m_inst[finite])) if finite.any() else 0.0
        cols.append(m_inst - lin_ref)
        scales.append(1.0)
        terms.append("linearity")
    a = np.column_stack(cols)
    y = m_cat - m_inst
    n_par = a.shape[1]
    need = max(int(min_stars), n_par + 1)
    if finite.sum() < need:
        msg = f"not enough stars for a zero point: {int(finite.sum())} usable, need {need}"
        raise NotEnoughStarsError(msg)
    a_f = np.where(finite[:, None], a, 0.0)
    y_f = np.where(finite, y, 0.0)

    # Robust start: soft-L1 least squares (resists up to ~30 % gross outliers).

    p0 = np.zeros(n_par)
    p0[0] = np.median(y[finite])
    res = least_squares(
        lambda p: a_f[finite] @ p - y_f[finite], p0, loss="soft_l1", f_scale=0.1, method="trf"
    )
    p = res.x
    inlier = finite.copy()
    for _ in range(max_iter):
        resid = y_f - a_f @ p
        sig = _MAD_TO_SIGMA * np.median(np.abs(resid[inlier] - np.median(resid[inlier])))
        sig = max(sig, 1e-4)
        new = finite & (np.abs(resid - np.median(resid[inlier])) <= clip * sig)
        if new.sum() < need:
            break
        p, *_ = np.linalg.lstsq(a_f[new], y_f[new], rcond=None)
        if np.array_equal(new, inlier):
            break
        inlier = new
    if inlier.sum() < need:
        msg = f"not enough stars for a zero point after clipping: {int(inlier.sum())}, need {need}"
        raise NotEnoughStarsError(msg)
    p, *_ = np.linalg.lstsq(a_f[inlier], y_f[inlier], rcond=None)
    resid_all = np.where(finite, y - a_f @ p, np.nan)
    r_in = resid_all[inlier]
    dof = max(int(inlier.sum()) - n_par, 1)
    s2 = float(np.sum(r_in**2) / dof)
    try:
        cov = s2 * np.linalg.inv(a_f[inlier].T @ a_f[inlier])
    except np.linalg.LinAlgError as err:
        msg = "the zero-point fit is degenerate (terms not constrained by these stars)"
        raise CalibrationError(msg) from err
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    p_phys = p / np.asarray(scales)
    err_phys = err / np.asarray(scales)

    i = 1
    k = k_err = 0.0
    radial_coeffs: tuple[float, ...] = ()
    color_coeff = 0.0
    if extinction:
        k, k_err = float(p_phys[i]), float(err_phys[i])
        i += 1
    if radial:
        radial_coeffs = tuple(float(v) for v in p_phys[i : i + radial_order])
        i += radial_order
    if color is not None:
        color_coeff = float(p_phys[i])
        i += 1
    lin = float(p_phys[i]) if linearity else 0.0
    return ZeroPointFit(
        zero_point=float(p_phys[0]),
        zero_point_err=float(err_phys[0]),
        extinction_k=k,
        extinction_k_err=k_err,
        radial_coeffs=radial_coeffs,
        color_coeff=color_coeff,
        linearity=lin,
        linearity_ref=lin_ref,
        rms_mag=float(_MAD_TO_SIGMA * np.median(np.abs(r_in - np.median(r_in)))),
        rms_clipped=float(np.sqrt(np.mean(r_in**2))),
        n_used=int(inlier.sum()),
        inlier=inlier,
        residuals=resid_all,
        terms=tuple(terms),
    )
