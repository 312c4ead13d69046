"""The calibration pipeline: frame -> sky mask -> stars -> astrometry -> photometry.

``calibrate(frame)`` chooses the astrometric method from the frame:

* a fisheye frame (a dark ring around an illuminated circle) or an explicit
  ``mode="allsky"`` is fitted with the fisheye camera model from the site and
  time (:mod:`skysift.calibration.fisheye`);
* manual pairs (``pairs=``) fit the same models from at least four
  identifications (bolide report §5.3);
* otherwise the frame is plate-solved blind (:mod:`skysift.calibration.platesolve`).

The photometric zero point is then fitted on the identified, unsaturated,
unblended stars (:mod:`skysift.calibration.photometric`).
"""

from __future__ import annotations

import os
import time as _time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time

from skysift.calibration.allsky import solve_fisheye
from skysift.calibration.catalog import load_hipparcos, lookup_hip, star_altaz
from skysift.calibration.fewstar import fewstar_fallback
from skysift.calibration.frame import CalibratedFrame, CalibrationResult, radius_norm
from skysift.calibration.pairs import extend_to_detections, fit_fisheye_pairs, read_pairs
from skysift.calibration.photometric import airmass, catalog_colors, fit_zero_point
from skysift.calibration.platesolve import fit_wcs_pairs, sky_hint, solve_plate
from skysift.detection.masks import SkyMask, sky_mask
from skysift.detection.stars import StarFlag, detect_stars, median_fwhm
from skysift.errors import (
    CalibrationError,
    InputError,
    NoDetectionsWarning,
    NotEnoughStarsError,
    SkysiftError,
)
from skysift.io.frame import Frame, Site
from skysift.io.metadata import as_site, parse_time
from skysift.io.readers import as_frame
from skysift.measurement.photometry import aperture_photometry_annulus, instrumental_magnitude

__all__ = ["CalibratedFrame", "CalibrationResult", "calibrate", "find_stars", "MIN_STARS"]

#: Fewer detections than this and a frame cannot be calibrated.
MIN_STARS = 8

#: Completeness limit of the zero-point fit: the catalogue magnitude must predict at least
#: this aperture SNR. Fainter detections are the ones noise pushed up (Eddington bias:
#: +0.19 mag at SNR 3-5, +0.07 at 5-10, +0.04 at 10-15 on the tetra3 frames).
ZP_MIN_SNR = 10.0

#: Flags that exclude a star from the astrometric solve.
_SOLVE_EXCLUDE = StarFlag.ELONGATED | StarFlag.TRUNCATED
#: Flags that exclude a star from the zero-point fit.
_ZP_EXCLUDE = (
    StarFlag.SATURATED | StarFlag.EDGE | StarFlag.BLENDED | StarFlag.ELONGATED | StarFlag.TRUNCATED
)


def find_stars(
    frame: Frame,
    *,
    method: str = "classical",
    threshold_sigma: float = 3.0,
    use_mask: bool = True,
) -> tuple[Table, SkyMask | None]:
    """Mask what is not sky and detect stars in a frame.

    Parameters
    ----------
    frame : Frame, path or ndarray of shape (H, W)
        The frame (a path is read, an array taken without metadata).
    method : str, optional
        Star finder name (see :data:`skysift.detection.STAR_FINDERS`). Default ``"classical"``.
    threshold_sigma : float, optional
        Detection threshold in background sigma. Default 3.
    use_mask : bool, optional
        Compute and apply the automatic sky mask. Default True.

    Returns
    -------
    stars : astropy.table.Table
        The detections (see :func:`skysift.detection.detect_stars`).
    sky : SkyMask or None
        The sky mask, when computed.
    """
    frame = as_frame(frame)
    threshold_sigma = _as_sigma(threshold_sigma)
    sky = sky_mask(frame.data) if use_mask else None
    mask = frame.mask if sky is None else (frame.mask | sky.mask)
    saturation = frame.meta.get("saturation")
    kwargs: dict[str, Any] = {"threshold_sigma": threshold_sigma}
    if saturation is not None:
        kwargs["saturation"] = float(saturation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        stars = detect_stars(frame.data, mask, method=method, **kwargs)
    return stars, sky


def _as_sigma(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        msg = f"threshold_sigma must be a number (in sigma), got {value!r}"
        raise InputError(msg)
    return float(value)


#: Most usable detections for which the few-star model may stand in for the full one.
FEWSTAR_MAX_DETECTIONS = 100


def _is_allsky(frame: Frame, sky: SkyMask | None) -> bool:
    return sky is not None and sky.circle is not None


def _solve_allsky(
    stars: Table, frame: Frame, site: Site | None, time: Time | None, sky: SkyMask | None
) -> Any:

    if site is None or time is None:
        missing = " and ".join(n for n, v in (("site", site), ("time", time)) if v is None)
        msg = (
            f"{frame.name}: all-sky frame needs the observing {missing} "
            "(give --site LAT LON HEIGHT_M and --time ISO8601)"
        )
        raise InputError(msg)
    return solve_fisheye(stars, site, time, frame.shape, image=frame.data)


def _photometry(
    matches: Table,
    stars: Table,
    frame: Frame,
    sky: SkyMask | None,
    model_type: str,
    solution: Any,
    time: Time | None = None,
) -> Any:

    fwhm = median_fwhm(stars)
    # A radius of ~0.8 FWHM is near the SNR-optimal aperture for a Gaussian star
    # (Howell 1989, PASP 101, 616, §3); the flux it misses is a constant fraction,
    # absorbed by the zero point (and its variation over the field by the radial term).
    r = float(np.clip(0.8 * fwhm, 2.0, 15.0))
    mask = frame.mask if sky is None else (frame.mask | sky.mask)
    phot = aperture_photometry_annulus(
        frame.data,
        matches["x"],
        matches["y"],
        radius=r,
        annulus=(r + 4.0, r + 10.0),
        mask=mask,
        saturation=stars.meta.get("saturation"),
    )
    inst, inst_err = instrumental_magnitude(phot["flux"], phot["flux_err"], exposure=frame.exposure)
    matches["flux"] = phot["flux"]
    matches["flux_err"] = phot["flux_err"]
    matches["inst_mag"] = inst
    matches["inst_mag_err"] = inst_err
    idx = np.asarray(matches["star_index"], dtype=int)
    det_flags = np.where(idx >= 0, np.asarray(stars["flags"])[np.clip(idx, 0, None)], 0)
    matches["flags"] = det_flags | np.asarray(phot["flags"])
    usable = (
        ((det_flags & int(_ZP_EXCLUDE)) == 0) & (np.asarray(phot["flags"]) == 0) & np.isfinite(inst)
    )
    usable &= np.isfinite(np.asarray(matches["catalog_mag"], dtype=float))
    kw: dict[str, Any] = {
        "radius": radius_norm(matches["x"], matches["y"], model_type, frame, sky, solution)
    }
    if "alt" in matches.colnames and np.isfinite(np.asarray(matches["alt"], float)).all():
        kw["airmass"] = airmass(np.asarray(matches["alt"], dtype=float))
    zp = None
    mag = np.full(len(matches), np.nan)
    mag_err = np.full(len(matches), np.nan)
    if "b_v" not in matches.colnames and {"ra", "dec"} <= set(matches.colnames) and len(matches):
        # the Gaia catalogue has no colour: Hipparcos B-V where a star is in Hipparcos
        epoch = float(matches.meta.get("catalog_epoch", time.jyear if time is not None else 2016.0))
        hip = load_hipparcos(99.0, epoch=epoch)
        matches["b_v"] = catalog_colors(matches["ra"], matches["dec"], hip)
        matches["b_v"].unit = "mag"
    color = np.asarray(matches["b_v"], float) if "b_v" in matches.colnames else None
    if color is not None and not np.isfinite(color[usable]).any():
        color = None
    matches["above_completeness"] = np.zeros(len(matches), bool)
    if usable.sum() >= 5:
        sel = {k: v[usable] for k, v in kw.items()}
        # Terms chosen by BIC among the candidates (extinction, radial, colour and, for
        # 8-bit frames, which are usually gamma-encoded, non-linearity), fitted only on the
        # stars above the completeness limit (calibration.photometric). A linear detector
        # is not offered the non-linearity term: fitted over the 2-3 mag of bright stars it
        # can be picked by chance and is then extrapolated (tetra3 Alt40_Azi-135: s = -0.11,
        # a 0.4 mag error at G 9.5 in forced photometry).
        zp = fit_zero_point(
            inst[usable],
            np.asarray(matches["catalog_mag"], float)[usable],
            color=None if color is None else color[usable],
            linearity=str(frame.meta.get("dtype", "")) == "uint8",
            select="bic",
            inst_mag_err=np.asarray(inst_err, float)[usable],
            min_snr=ZP_MIN_SNR,
            **sel,
        )
        if "color" in zp.terms:
            # `mag` follows the one rule of CalibratedFrame.magnitude (a source's colour is
            # unknown: the calibration stars' median); `mag_color` uses each star's own colour
            matches["mag_color"] = zp.predict(inst, **kw, color=color)
            matches["mag_color"].unit = "mag"
            mag = zp.predict(inst, **kw, color=np.full(len(matches), np.nan))
        else:
            mag = zp.predict(inst, **kw)
        slope = 1.0 + zp.linearity
        mag_err = np.hypot(slope * np.asarray(inst_err, float), zp.zero_point_err)
        used = np.zeros(len(matches), bool)
        used[np.flatnonzero(usable)[zp.inlier]] = True
        matches["used_in_zp"] = used
        matches["above_completeness"][np.flatnonzero(usable)[zp.above_completeness]] = True
    else:
        matches["used_in_zp"] = np.zeros(len(matches), bool)
    matches["mag"] = mag
    matches["mag_err"] = mag_err
    for k, v in kw.items():
        matches[k if k != "radius" else "radius_norm"] = v
    return zp


def calibrate(
    frame: Frame,
    *,
    site: Site | None = None,
    time: Time | str | None = None,
    pairs: str | Path | Table | None = None,
    mode: str = "auto",
    fov_deg: float | None = None,
    method: str = "classical",
    threshold_sigma: float = 3.0,
    ra_deg: float | str | None = None,
    dec_deg: float | str | None = None,
    radius_deg: float | None = None,
    fewstar: bool | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> CalibrationResult:
    """Calibrate a frame astrometrically and photometrically.

    Parameters
    ----------
    frame : Frame, path or ndarray of shape (H, W)
        The frame (e.g. from :func:`skysift.io.read_frame`); a path is read,
        an array is taken without metadata (then give ``site`` and ``time``).
    site : Site, optional
        Observing site; overrides ``frame.site``.
    time : astropy.time.Time or str, optional
        Start of the exposure (UTC; ISO 8601 if a string); overrides
        ``frame.time``. The sky is computed at mid-exposure when the exposure
        time is known (:attr:`Frame.mid_time`).
    pairs : path or Table, optional
        Manual identifications (columns ``x``, ``y``, ``star``) for the
        manual fallback; at least four.
    mode : {"auto", "allsky", "narrow"}, optional
        Astrometric model: fisheye all-sky, blind TAN-SIP plate solve, or
        chosen from the frame (a visible fisheye circle means all-sky).
    fov_deg : float, optional
        Horizontal field of view hint for the plate solver, in degrees.
    method : str, optional
        Star finder. Default ``"classical"``.
    threshold_sigma : float, optional
        Detection threshold in background sigma. Default 3.
    ra_deg, dec_deg : float or str, optional
        Approximate field centre for the narrow-field plate solve, in degrees
        or as angle strings (``"05:35:17"`` is hours of RA, ``"-05:23:28"``
        degrees of Dec; see :func:`skysift.calibration.platesolve.sky_hint`).
        astrometry.net searches only there; a tetra3rs solution farther than
        ``radius_deg`` is rejected. Not used by the all-sky model.
    radius_deg : float, optional
        Radius of the search around the hint, in degrees (default 5).
    fewstar : bool, optional
        Whether the constrained few-star all-sky model
        (:func:`skysift.calibration.fewstar.fewstar_fallback`) may stand in
        when the full model fails for want of stars (site and time known, no
        pairs, fewer than ``FEWSTAR_MAX_DETECTIONS`` usable detections).
        Default (None): only for frames taken as all-sky (``mode="allsky"``,
        or a lens circle found in auto mode); True: also otherwise (a meteor
        camera's video, all-sky by nature, whose circle is not seen).
    progress : callable, optional
        ``progress(stage, fraction)`` with stage "detection", "astrometry" or
        "photometry" and fraction 0 or 1 (for a progress bar).

    Returns
    -------
    CalibrationResult

    Raises
    ------
    NotEnoughStarsError
        If too few stars are detected or identified (cloudy frame, daylight,
        wrong site or time): nothing is invented.
    CalibrationError
        If no solution is found (or none within ``radius_deg`` of the hint).
    InputError
        If an option is invalid (e.g. an all-sky frame without site and time,
        a hint radius <= 0 or a Dec outside [-90, 90]).
    """

    frame = as_frame(frame)
    threshold_sigma = _as_sigma(threshold_sigma)
    if pairs is not None and not isinstance(pairs, (str, os.PathLike, Table)):
        msg = f"pairs must be a file name or a Table (x, y, star), got {type(pairs).__name__}"
        raise InputError(msg)
    if mode not in ("auto", "allsky", "narrow"):
        msg = f"mode must be 'auto', 'allsky' or 'narrow', got {mode!r}"
        raise InputError(msg)
    hint = sky_hint(ra_deg, dec_deg, radius_deg)  # checked before the slow steps
    site = as_site(site) if site is not None else frame.site
    if time is not None:
        frame = frame.with_(time=parse_time(time))
    # Stars are placed at mid-exposure (they move 0.25 deg per minute of exposure).
    time = frame.mid_time
    timings: dict[str, float] = {}
    report = progress or (lambda stage, fraction: None)
    t0 = _time.perf_counter()
    report("detection", 0.0)
    stars, sky = find_stars(frame, method=method, threshold_sigma=threshold_sigma)
    timings["detection"] = _time.perf_counter() - t0
    report("astrometry", 1 / 3)
    usable = (np.asarray(stars["flags"]) & int(_SOLVE_EXCLUDE)) == 0
    # few stars with site and time known: the constrained few-star model (calibration.fewstar),
    # for all-sky frames only and only when stars are few (many detections and a failed full
    # model mean something else is wrong: a few-star fit would then find a chance alignment)
    allsky = mode == "allsky" or (mode == "auto" and _is_allsky(frame, sky))
    few = (
        site is not None
        and time is not None
        and mode != "narrow"
        and pairs is None
        and (allsky if fewstar is None else bool(fewstar))
        and int(usable.sum()) < FEWSTAR_MAX_DETECTIONS
    )
    if usable.sum() < MIN_STARS and not few:
        msg = f"{frame.name}: not enough stars to calibrate: {int(usable.sum())} detected, need {MIN_STARS}"
        raise NotEnoughStarsError(msg)
    solve_stars = stars.copy()
    solve_stars["star_index"] = np.arange(len(stars))
    solve_stars = solve_stars[usable]

    t0 = _time.perf_counter()
    try:
        if pairs is not None:
            solution, model_type = _solve_pairs(pairs, solve_stars, frame, site, time, allsky, mode)
        else:
            try:
                if usable.sum() < MIN_STARS:
                    msg = f"not enough stars to calibrate: {int(usable.sum())} detected, need {MIN_STARS}"
                    raise NotEnoughStarsError(msg)
                if allsky:
                    solution, model_type = (
                        _solve_allsky(solve_stars, frame, site, time, sky),
                        "fisheye",
                    )
                else:
                    solution, model_type = _solve_narrow_then_allsky(
                        solve_stars, frame, site, time, sky, fov_deg=fov_deg, mode=mode, hint=hint
                    )
            except (NotEnoughStarsError, CalibrationError) as full_err:
                if not few:
                    raise
                # the fallback: a known projection fitted to as few as 5 identified stars
                solution, model_type = fewstar_fallback(frame, solve_stars, site, time, full_err)
    except SkysiftError as err:
        # Name the file in the one-line message, keeping the error's type (and exit code).
        if str(err).startswith(f"{frame.name}:"):
            raise
        raise type(err)(f"{frame.name}: {err}") from err
    timings["astrometry"] = _time.perf_counter() - t0
    matches = _finish_matches(solution.matches, solve_stars, model_type, site, time)

    t0 = _time.perf_counter()
    report("photometry", 2 / 3)
    zp = _photometry(matches, stars, frame, sky, model_type, solution, time)
    timings["photometry"] = _time.perf_counter() - t0
    report("photometry", 1.0)
    band = matches.meta.get(
        "catalog_mag_band",
        matches.meta.get("catalog_band", "V" if model_type == "fisheye" else "G"),
    )
    return CalibrationResult(
        frame=frame,
        stars=stars,
        matches=matches,
        model_type=model_type,
        solution=solution,
        zero_point=zp,
        sky=sky,
        site=site,
        time=time,
        photometric_band=str(band),
        timings=timings,
    )


def _solve_narrow_then_allsky(
    stars: Table,
    frame: Frame,
    site: Site | None,
    time: Time | None,
    sky: SkyMask | None,
    *,
    fov_deg: float | None,
    mode: str,
    hint: tuple[Any, float] | None = None,
) -> tuple[Any, str]:
    """The blind plate solve; in auto mode with site and time, the all-sky model when it fails.

    A fisheye frame whose lens circle is not seen (Moon glare, twilight, a
    circle cut by the sensor edge) is not recognised as all-sky by the sky
    mask, and a blind narrow-field solve cannot solve it: with the site and
    time known, the all-sky camera model is tried before giving up, and the
    error names every model tried.
    """
    try:
        centre, radius = hint if hint is not None else (None, None)
        solution = solve_plate(
            stars, frame.shape, fov_deg=fov_deg, center=centre, radius_deg=radius
        )
        return solution, "tan-sip"
    except NotEnoughStarsError:
        raise
    except CalibrationError as narrow_err:
        if mode != "auto" or site is None or time is None:
            hint = (
                " (an all-sky frame? give --site and --time, or --mode allsky)"
                if mode == "auto"
                else ""
            )
            raise CalibrationError(f"{narrow_err}{hint}") from narrow_err
        try:
            return _solve_allsky(stars, frame, site, time, sky), "fisheye"
        except SkysiftError as allsky_err:
            msg = (
                f"no astrometric model fits: narrow-field plate solve: {narrow_err}; "
                f"all-sky camera model: {allsky_err}"
            )
            raise CalibrationError(msg) from allsky_err


def _solve_pairs(
    pairs: Any,
    stars: Table,
    frame: Frame,
    site: Site | None,
    time: Time | None,
    allsky: bool,
    mode: str,
) -> tuple[Any, str]:
    """Manual fallback (bolide report §5.3): fit the camera model to >= 4 identified stars.

    With site and time (or an all-sky frame) the fisheye model is fitted and
    then extended to every detection with the automatic refinement; otherwise
    a TAN(-SIP) WCS is fitted to the pairs' catalogue RA/Dec.
    """

    table = pairs if isinstance(pairs, Table) else read_pairs(pairs)
    xy = np.column_stack([np.asarray(table["x"], float), np.asarray(table["y"], float)])
    hip = np.asarray(table["hip"], dtype=np.int64)
    if mode != "narrow" and (allsky or (site is not None and time is not None)):
        if site is None or time is None:
            msg = f"{frame.name}: manual all-sky calibration needs --site and --time"
            raise InputError(msg)
        manual = fit_fisheye_pairs(xy, hip, site, time, frame.shape)
        try:
            return extend_to_detections(manual, stars, image=frame.data), "fisheye"
        except NotEnoughStarsError:
            # Keep the hand-made solution: its stars are the pairs themselves.
            manual.matches["star_index"] = _nearest_detection(manual.matches, stars)
            return manual, "fisheye"

    cat = lookup_hip(hip, epoch=time)
    radec = np.column_stack([np.asarray(cat["ra"], float), np.asarray(cat["dec"], float)])
    solution = fit_wcs_pairs(xy, radec, frame.shape)
    solution.matches["star_index"] = _nearest_detection(solution.matches, stars)
    return solution, "tan-sip"


def _nearest_detection(matches: Table, stars: Table, radius: float = 3.0) -> np.ndarray:
    """Row of ``stars`` within ``radius`` px of each match (-1 if none)."""
    if len(stars) == 0 or len(matches) == 0:
        return np.full(len(matches), -1, dtype=int)
    d = np.hypot(
        np.asarray(matches["x"])[:, None] - np.asarray(stars["x"])[None, :],
        np.asarray(matches["y"])[:, None] - np.asarray(stars["y"])[None, :],
    )
    idx = np.argmin(d, axis=1)
    return np.where(d[np.arange(len(idx)), idx] <= radius, idx, -1)


def _finish_matches(
    matches: Table, solve_stars: Table, model_type: str, site: Site | None, time: Time | None
) -> Table:
    """Map solver rows back to detection rows and add alt/az when site and time are known."""
    m = matches.copy()
    # The solvers index the table they were given; map to rows of the full detection
    # table (-1: a manual pair without a detection).
    idx = np.asarray(m["star_index"], dtype=int)
    full = np.asarray(solve_stars["star_index"])
    m["star_index"] = np.where(idx >= 0, full[np.clip(idx, 0, None)], -1) if len(full) else idx
    if ("alt" not in m.colnames) and site is not None and time is not None and len(m):
        aa = star_altaz(Table({"ra": m["ra"], "dec": m["dec"]}), site, time)
        m["alt"] = aa["alt"]
        m["az"] = aa["az"]
    if len(m) < 1:
        msg = "the astrometric solution identified no star"
        raise CalibrationError(msg)
    return m
