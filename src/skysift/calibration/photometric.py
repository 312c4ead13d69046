"""Photometric calibration: the zero point of a frame and the terms its stars support.

The model fitted by :func:`fit_zero_point` is, for each star,

.. math::

    m_{cat} - m_{inst} = ZP - k X + \\sum_j a_{2j} r^{2j}
        + c (C - C_{ref}) + s (m_{inst} - m_{ref})

with :math:`m_{inst} = -2.5 \\log_{10}(\\mathrm{flux})` the instrumental
magnitude, :math:`X` the air mass, :math:`k` the extinction coefficient (mag
per air mass), :math:`r` the distance from the optical centre (vignetting),
:math:`C` a colour index (B - V or BP - RP: the camera band is not the
catalogue band) and :math:`s` a non-linearity term (a gamma-encoded image,
pixel = flux**gamma, has :math:`s = 1/\\gamma - 1`). :math:`C_{ref}` and
:math:`m_{ref}` are the medians of the fitted stars, so that the zero point is
that of a typical star and a source of unknown colour gets it.

With ``select="bic"`` (or ``"aic"``) the terms are *candidates*: every subset
the stars can support is fitted with a robust (Huber) likelihood and the one
with the lowest Bayesian (or Akaike) information criterion is kept, never
more than one parameter per ``stars_per_term`` stars (so a handful of stars
gets the constant zero point only). With ``min_snr`` the fit uses only the
stars above the completeness limit: those whose *catalogue* magnitude
predicts an aperture SNR of at least ``min_snr``. Near the detection limit
only the stars that noise pushed up are found, so their measured fluxes are
biased bright (Eddington 1913; Malmquist 1922); the cut is on the catalogue
magnitude, not on the measured flux, so it selects nothing on noise.

For a single reference star (the bolide report's formula) use
:func:`magnitude_from_reference`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from skysift.errors import CalibrationError, InputError, NotEnoughStarsError

__all__ = [
    "airmass",
    "ZeroPointFit",
    "fit_zero_point",
    "magnitude_from_reference",
    "CANDIDATE_TERMS",
    "catalog_colors",
]

_MAD_TO_SIGMA = 1.4826
#: Huber's threshold in robust sigmas (95 % efficiency for Gaussian errors; Huber 1964).
_HUBER_C = 1.345
#: The optional terms, in the order of their coefficients in the fit.
CANDIDATE_TERMS = ("extinction", "radial", "color", "linearity")


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
        extinction term it is the zero point outside the atmosphere (X = 0),
        with a colour term that of a star of colour ``color_ref``.
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
        Coefficient ``c`` of the colour term ``c (C - color_ref)``, mag per
        mag of colour (0 if not fitted).
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
        The terms fitted, ``"zero_point"`` and any of :data:`CANDIDATE_TERMS`.
    radial_coeffs_err : tuple of float
        1-sigma uncertainties of ``radial_coeffs``.
    color_coeff_err, linearity_err : float
        1-sigma uncertainties of ``color_coeff`` and ``linearity`` (0 if not fitted).
    color_ref : float
        Colour at which the colour term vanishes (median colour of the
        fitted stars, mag); a source of unknown colour is given this one.
    criterion : str
        ``"bic"`` or ``"aic"`` when the terms were chosen, ``"none"`` when
        every requested term was fitted.
    candidates : tuple of str
        The optional terms offered to the selection.
    selection : tuple of dict
        One entry per model compared (``terms``, ``n_params``, ``score``: the
        criterion, lower is better), best first; empty without selection.
    completeness_snr : float
        The ``min_snr`` of the completeness cut (NaN without a cut).
    mag_limit : float
        Faintest catalogue magnitude among the stars above the completeness
        limit (NaN without a cut).
    above_completeness : ndarray of bool, shape (N,)
        ``True`` for the stars above the completeness limit (all finite
        stars without a cut); only these can be inliers.
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
    radial_coeffs_err: tuple[float, ...] = ()
    color_coeff_err: float = 0.0
    linearity_err: float = 0.0
    color_ref: float = 0.0
    criterion: str = "none"
    candidates: tuple[str, ...] = ()
    selection: tuple[dict[str, Any], ...] = ()
    completeness_snr: float = float("nan")
    mag_limit: float = float("nan")
    above_completeness: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def gamma(self) -> float:
        """The gamma ``1 / (1 + s)`` of the non-linearity term (1 if not fitted)."""
        return 1.0 / (1.0 + self.linearity) if self.linearity > -1 else float("nan")

    def predict(self, inst_mag, airmass=None, radius=None, color=None):
        """Calibrated magnitude of instrumental magnitudes.

        Parameters
        ----------
        inst_mag : float or array_like
            Instrumental magnitude ``-2.5 log10(flux)``.
        airmass, radius, color : float or array_like, optional
            Needed when the corresponding term was fitted (same units as in
            the fit). A NaN colour (unknown) is taken as ``color_ref``.

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
                msg = "this zero point has a colour term: give color (NaN where unknown)"
                raise InputError(msg)
            col = np.asarray(color, dtype=float)
            col = np.where(np.isfinite(col), col, self.color_ref)
            m = m + self.color_coeff * (col - self.color_ref)
        if "linearity" in self.terms:
            m = m + self.linearity * (np.asarray(inst_mag, dtype=float) - self.linearity_ref)
        return float(m) if m.ndim == 0 else m

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-star arrays): every term with its 1-sigma error."""

        def num(v: float) -> float | None:
            return float(v) if np.isfinite(v) else None

        return {
            "zero_point": float(self.zero_point),
            "zero_point_err": float(self.zero_point_err),
            "extinction_k": float(self.extinction_k),
            "extinction_k_err": float(self.extinction_k_err),
            "radial_coeffs": [float(c) for c in self.radial_coeffs],
            "radial_coeffs_err": [float(c) for c in self.radial_coeffs_err],
            "color_coeff": float(self.color_coeff),
            "color_coeff_err": float(self.color_coeff_err),
            "color_ref": float(self.color_ref),
            "linearity": float(self.linearity),
            "linearity_err": float(self.linearity_err),
            "linearity_ref": float(self.linearity_ref),
            "gamma": num(self.gamma),
            "rms_mag": float(self.rms_mag),
            "rms_clipped": float(self.rms_clipped),
            "n_used": int(self.n_used),
            "n_total": int(self.inlier.size),
            "terms": list(self.terms),
            "criterion": self.criterion,
            "candidates": list(self.candidates),
            "selection": [dict(s) for s in self.selection],
            "completeness_snr": num(self.completeness_snr),
            "mag_limit": num(self.mag_limit),
            "n_above_completeness": int(np.count_nonzero(self.above_completeness)),
        }


def _as_column(name: str, value, n: int) -> np.ndarray:
    a = np.asarray(value, dtype=float).ravel()
    if a.size != n:
        msg = f"{name} must have one value per star ({n}), got {a.size}"
        raise InputError(msg)
    return a


def _robust_lstsq(
    a: np.ndarray, y: np.ndarray, use: np.ndarray, need: int, clip: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-L1 start, then sigma clipping at ``clip`` robust sigmas; least squares on the inliers.

    ``a`` and ``y`` must be finite where ``use`` is True. Returns the
    parameters and the inlier mask (a subset of ``use``).
    """
    p0 = np.zeros(a.shape[1])
    p0[0] = np.median(y[use])
    # Robust start: soft-L1 least squares (resists up to ~30 % gross outliers).
    res = least_squares(
        lambda p: a[use] @ p - y[use], p0, loss="soft_l1", f_scale=0.1, method="trf"
    )
    p = res.x
    inlier = use.copy()
    for _ in range(max_iter):
        resid = y - a @ p
        sig = _MAD_TO_SIGMA * np.median(np.abs(resid[inlier] - np.median(resid[inlier])))
        sig = max(sig, 1e-4)
        new = use & (np.abs(resid - np.median(resid[inlier])) <= clip * sig)
        if new.sum() < need:
            break
        p, *_ = np.linalg.lstsq(a[new], y[new], rcond=None)
        if np.array_equal(new, inlier):
            break
        inlier = new
    if inlier.sum() < need:
        msg = f"not enough stars for a zero point after clipping: {int(inlier.sum())}, need {need}"
        raise NotEnoughStarsError(msg)
    p, *_ = np.linalg.lstsq(a[inlier], y[inlier], rcond=None)
    return p, inlier


def _huber_score(a: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """``-2 log L`` (up to a constant) of a Huber-likelihood fit with a fixed scale ``sigma``.

    ``least_squares(loss="huber", f_scale=c sigma)`` minimises
    ``sum sigma**2 rho_H(r / sigma)``, the Huber negative log-likelihood times
    ``sigma**2`` (Huber 1964), so ``-2 log L = 2 cost / sigma**2``.
    """
    p0, *_ = np.linalg.lstsq(a, y, rcond=None)
    res = least_squares(
        lambda p: a @ p - y, p0, loss="huber", f_scale=_HUBER_C * sigma, method="trf"
    )
    return 2.0 * float(res.cost) / sigma**2


def _check_options(select, min_snr, inst_mag_err, stars_per_term, radial_order, clip) -> None:
    if select not in (None, "bic", "aic"):
        msg = f"select must be None, 'bic' or 'aic', got {select!r}"
        raise InputError(msg)
    if min_snr is not None:
        if isinstance(min_snr, bool) or not np.isfinite(min_snr) or min_snr <= 0:
            msg = f"min_snr must be a positive SNR, got {min_snr!r}"
            raise InputError(msg)
        if inst_mag_err is None:
            msg = "min_snr needs inst_mag_err (the instrumental magnitude error of each star)"
            raise InputError(msg)
    if isinstance(stars_per_term, bool) or not isinstance(stars_per_term, (int, np.integer)):
        msg = f"stars_per_term must be a positive integer, got {stars_per_term!r}"
        raise InputError(msg)
    if stars_per_term < 1:
        msg = f"stars_per_term must be a positive integer, got {stars_per_term!r}"
        raise InputError(msg)
    if radial_order not in (1, 2):
        msg = f"radial_order must be 1 or 2, got {radial_order!r}"
        raise InputError(msg)
    if not clip > 0:
        msg = f"clip must be positive, got {clip!r}"
        raise InputError(msg)


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
    select: str | None = None,
    inst_mag_err=None,
    min_snr: float | None = None,
    stars_per_term: int = 8,
    clip: float = 3.0,
    max_iter: int = 10,
    min_stars: int = 3,
) -> ZeroPointFit:
    """Fit the photometric zero point of a frame, robustly, with the terms the stars support.

    Fits ``m_cat - m_inst = ZP - k X + a2 r**2 (+ a4 r**4) + c (C - C_ref)
    + s (m_inst - m_ref)`` (each term but ZP optional) by least squares,
    starting from a soft-L1 (outlier-resistant) solution and then iterating
    sigma clipping at ``clip`` times the robust scatter (1.4826 MAD) until
    the inlier set no longer changes.

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
        Colour index of each star (B - V, BP - RP; mag) for a colour term. A
        NaN (unknown colour) is taken as the median colour.
    extinction, radial : bool, optional
        Fit (or, with ``select``, offer) the extinction or the radial term.
        Default: when ``airmass`` or ``radius`` is given.
    radial_order : int, optional
        Number of even radial terms: 1 (``r**2``) or 2 (``r**2, r**4``).
        Default 1.
    linearity : bool, optional
        Fit (or offer) a non-linearity term ``s (m_inst - m_ref)``, for
        detectors or files whose pixel values are not proportional to the
        flux (8-bit video and JPEG/PNG frames are usually gamma-encoded).
        Default False.
    select : {None, "bic", "aic"}, optional
        None (default): fit every requested term. ``"bic"`` / ``"aic"``: the
        requested terms are candidates; each subset with at most
        ``n // stars_per_term`` parameters is fitted with a Huber likelihood
        at a common robust scale (that of the largest allowed model) and the
        lowest Bayesian (Schwarz 1978) or Akaike (1974) criterion wins.
    inst_mag_err : array_like, shape (N,), optional
        1-sigma errors of ``inst_mag`` (mag); needed by ``min_snr``.
    min_snr : float, optional
        Fit only the stars above the completeness limit: those whose
        catalogue magnitude, through a first fit, predicts an SNR of at least
        this (the predicted flux over the measured flux error). Stars below
        keep their residuals but never enter the fit. If fewer than
        ``max(5, n_parameters + 1)`` stars pass, the ones with the highest
        predicted SNR are used. Default None (no cut).
    stars_per_term : int, optional
        With ``select``: stars needed per fitted parameter. Default 8 (fewer
        than 16 stars: the constant zero point only).
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
        values (with ``select``: for the constant zero point).
    CalibrationError
        If the chosen terms are not constrained by the stars (degenerate fit).

    References
    ----------
    .. [1] Schwarz, G. 1978, Annals of Statistics 6, 461, "Estimating the
       dimension of a model" (BIC).
    .. [2] Akaike, H. 1974, IEEE Trans. Automatic Control 19, 716 (AIC).
    .. [3] Huber, P. J. 1964, Annals of Mathematical Statistics 35, 73,
       "Robust estimation of a location parameter".
    .. [4] Eddington, A. S. 1913, MNRAS 73, 359 (the bias of a noisy
       magnitude-limited sample).
    """
    _check_options(select, min_snr, inst_mag_err, stars_per_term, radial_order, clip)
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
    err_col = None if inst_mag_err is None else _as_column("inst_mag_err", inst_mag_err, n)

    finite = np.isfinite(m_inst) & np.isfinite(m_cat)
    columns: dict[str, tuple[list[np.ndarray], list[float]]] = {}
    if extinction:
        x = _as_column("airmass", airmass, n)
        finite &= np.isfinite(x)
        columns["extinction"] = ([-x], [1.0])
    rmax = 1.0
    if radial:
        r = _as_column("radius", radius, n)
        finite &= np.isfinite(r)
        rmax = float(np.nanmax(np.abs(r[finite]))) if finite.any() else 1.0
        rmax = rmax if rmax > 0 else 1.0
        columns["radial"] = (
            [(r / rmax) ** (2 * j) for j in range(1, radial_order + 1)],
            [rmax ** (2 * j) for j in range(1, radial_order + 1)],
        )
    color_ref = 0.0
    if color is not None:
        c = _as_column("color", color, n)
        known = finite & np.isfinite(c)
        if not known.any():
            msg = "color has no finite value for the usable stars"
            raise InputError(msg)
        color_ref = float(np.median(c[known]))
        columns["color"] = ([np.where(np.isfinite(c), c, color_ref) - color_ref], [1.0])
    lin_ref = float(np.median(m_inst[finite])) if finite.any() else 0.0
    if linearity:
        columns["linearity"] = ([m_inst - lin_ref], [1.0])
    requested = tuple(t for t in CANDIDATE_TERMS if t in columns)
    y = np.where(finite, m_cat - m_inst, 0.0)

    def design(terms: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        cols, scales = [np.ones(n)], [1.0]
        for t in terms:
            cols += columns[t][0]
            scales += columns[t][1]
        a = np.column_stack(cols)
        return np.where(finite[:, None], a, 0.0), np.asarray(scales)

    def n_params(terms: tuple[str, ...]) -> int:
        return 1 + sum(len(columns[t][0]) for t in terms)

    first = () if select else requested
    need0 = max(int(min_stars), n_params(first) + 1)
    if finite.sum() < need0:
        msg = f"not enough stars for a zero point: {int(finite.sum())} usable, need {need0}"
        raise NotEnoughStarsError(msg)

    # The completeness limit: a cut on the flux the catalogue predicts, not on the one measured.
    above = finite.copy()
    mag_limit = float("nan")
    if min_snr is not None and err_col is not None:
        pre = tuple(
            t
            for t in requested
            if t != "linearity"
            and (not select or n_params((t,)) <= max(1, int(finite.sum()) // stars_per_term))
        )
        a_pre, _ = design(pre)
        p_pre, _ = _robust_lstsq(a_pre, y, finite, n_params(pre) + 1, clip, max_iter)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            m_pred = m_cat - a_pre @ p_pre  # instrumental magnitude the catalogue predicts
            snr = np.where(finite & (err_col > 0), 1.0857 / err_col, np.nan)
            snr = snr * 10 ** (-0.4 * (m_pred - m_inst))
        snr = np.where(np.isfinite(snr), snr, -np.inf)
        above = finite & (snr >= float(min_snr))
        keep_min = max(5, need0)
        if above.sum() < keep_min:
            order = np.argsort(-snr, kind="stable")
            above = np.zeros(n, bool)
            above[order[: min(keep_min, int(finite.sum()))]] = True
            above &= finite
        mag_limit = float(np.max(m_cat[above]))

    # Model selection over the subsets of the requested terms the stars can support.
    selection: list[dict[str, Any]] = []
    chosen = requested
    if select:
        n_fit = int(above.sum())
        max_par = max(1, n_fit // int(stars_per_term))
        models = [
            sub
            for k in range(len(requested) + 1)
            for sub in itertools.combinations(requested, k)
            if n_params(sub) <= max_par
        ]
        if len(models) > 1:
            largest = max(models, key=n_params)
            a_big, _ = design(largest)
            try:
                p_big, in_big = _robust_lstsq(
                    a_big, y, above, n_params(largest) + 1, clip, max_iter
                )
            except NotEnoughStarsError:
                p_big, in_big = _robust_lstsq(design(())[0], y, above, 2, clip, max_iter)
                a_big = design(())[0]
            r_big = (y - a_big @ p_big)[in_big]
            sigma = max(_MAD_TO_SIGMA * float(np.median(np.abs(r_big - np.median(r_big)))), 5e-3)
            penalty = np.log(n_fit) if select == "bic" else 2.0
            for sub in models:
                a_sub = design(sub)[0][above]
                if np.linalg.matrix_rank(a_sub) < a_sub.shape[1]:
                    continue
                score = _huber_score(a_sub, y[above], sigma) + penalty * n_params(sub)
                selection.append(
                    {"terms": ["zero_point", *sub], "n_params": n_params(sub), "score": score}
                )
            selection.sort(key=lambda s: s["score"])
            chosen = tuple(t for t in requested if t in selection[0]["terms"])
        else:
            chosen = ()

    a, scales = design(chosen)
    n_par = a.shape[1]
    need = max(int(min_stars), n_par + 1)
    if above.sum() < need:
        msg = f"not enough stars for a zero point: {int(above.sum())} usable, need {need}"
        raise NotEnoughStarsError(msg)
    p, inlier = _robust_lstsq(a, y, above, need, clip, max_iter)
    resid_all = np.where(finite, y - a @ p, np.nan)
    r_in = resid_all[inlier]
    dof = max(int(inlier.sum()) - n_par, 1)
    s2 = float(np.sum(r_in**2) / dof)
    try:
        cov = s2 * np.linalg.inv(a[inlier].T @ a[inlier])
    except np.linalg.LinAlgError as exc:
        msg = "the zero-point fit is degenerate (terms not constrained by these stars)"
        raise CalibrationError(msg) from exc
    p_phys = p / scales
    err_phys = np.sqrt(np.clip(np.diag(cov), 0, None)) / scales

    values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    i = 1
    for t in chosen:
        k = len(columns[t][0])
        values[t] = (p_phys[i : i + k], err_phys[i : i + k])
        i += k
    zero = (np.zeros(1), np.zeros(1))
    return ZeroPointFit(
        zero_point=float(p_phys[0]),
        zero_point_err=float(err_phys[0]),
        extinction_k=float(values.get("extinction", zero)[0][0]),
        extinction_k_err=float(values.get("extinction", zero)[1][0]),
        radial_coeffs=tuple(float(v) for v in values.get("radial", ((), ()))[0]),
        radial_coeffs_err=tuple(float(v) for v in values.get("radial", ((), ()))[1]),
        color_coeff=float(values.get("color", zero)[0][0]),
        color_coeff_err=float(values.get("color", zero)[1][0]),
        color_ref=color_ref,
        linearity=float(values.get("linearity", zero)[0][0]),
        linearity_err=float(values.get("linearity", zero)[1][0]),
        linearity_ref=lin_ref if "linearity" in chosen else 0.0,
        rms_mag=float(_MAD_TO_SIGMA * np.median(np.abs(r_in - np.median(r_in)))),
        rms_clipped=float(np.sqrt(np.mean(r_in**2))),
        n_used=int(inlier.sum()),
        inlier=inlier,
        residuals=resid_all,
        terms=("zero_point", *chosen),
        criterion=select or "none",
        candidates=requested if select else (),
        selection=tuple(selection),
        completeness_snr=float(min_snr) if min_snr is not None else float("nan"),
        mag_limit=mag_limit,
        above_completeness=above,
    )


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def catalog_colors(ra, dec, catalog, *, column: str = "b_v", radius_arcsec: float = 5.0):
    """Colour index of the stars at (RA, Dec) from a second catalogue, matched by position.

    The narrow-field catalogue (Gaia DR3 G, :mod:`skysift.calibration.gaia`)
    ships no colour; its stars brighter than about V 8 are nearly all in
    Hipparcos (complete to V 7.3-9; ESA 1997, The Hipparcos Catalogue, Vol. 1,
    Section 1.3), whose B - V is then taken by the nearest star (pass
    :func:`skysift.calibration.catalog.load_hipparcos` at the same epoch).

    Parameters
    ----------
    ra, dec : array_like, shape (N,)
        ICRS positions in degrees.
    catalog : astropy.table.Table
        Columns ``ra``, ``dec`` (deg, at the epoch of ``ra``, ``dec``) and ``column``.
    column : str, optional
        The colour column of ``catalog``. Default ``"b_v"``.
    radius_arcsec : float, optional
        Largest separation of a match, in arcseconds. Default 5.

    Returns
    -------
    ndarray, shape (N,)
        The colour (mag); NaN where no catalogue star lies within
        ``radius_arcsec`` (or its colour is unknown).

    Raises
    ------
    InputError
        If ``ra`` and ``dec`` differ in length, ``radius_arcsec`` is not
        positive or ``catalog`` lacks a column.
    """
    ra = np.atleast_1d(np.asarray(ra, float)).ravel()
    dec = np.atleast_1d(np.asarray(dec, float)).ravel()
    if ra.shape != dec.shape:
        msg = f"ra and dec must have the same length, got {ra.size} and {dec.size}"
        raise InputError(msg)
    if not (np.isfinite(radius_arcsec) and radius_arcsec > 0):
        msg = f"radius_arcsec must be positive, got {radius_arcsec!r}"
        raise InputError(msg)
    missing = [c for c in ("ra", "dec", column) if c not in catalog.colnames]
    if missing:
        msg = f"catalog lacks the column(s) {missing} (has {catalog.colnames})"
        raise InputError(msg)
    out = np.full(ra.size, np.nan)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if not ok.any() or len(catalog) == 0:
        return out
    tree = cKDTree(
        _unit_vectors(np.asarray(catalog["ra"], float), np.asarray(catalog["dec"], float))
    )
    d, j = tree.query(_unit_vectors(ra[ok], dec[ok]))
    # chord length ~ angle for small separations
    out[ok] = np.where(
        d <= np.radians(radius_arcsec / 3600.0), np.asarray(catalog[column], float)[j], np.nan
    )
    return out
