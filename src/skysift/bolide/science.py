"""Meteor science from a light curve: peak wording, timing, angular speed, direction, absolute magnitude.

* :func:`peak_summary`: the peak *measured* on unsaturated frames and the
  bright limit of the saturated ones, never mixed in one number.
* :func:`onset_duration`: onset (first tracked frame, UTC) and duration.
* :func:`angular_speed`: the head's angular speed along the track from the
  per-frame RA/Dec (or alt/az), deg/s.
* :func:`motion_direction`: the direction of motion on the sky: position
  angle (east of north, on the RA/Dec sphere) and the azimuth of motion
  (where the track's great circle, continued forward, meets the horizon;
  0 = north, 90 = east).
* :func:`meteor_range_km` / :func:`absolute_magnitude`: the range from the
  site to the point at a given height along the line of sight and the
  magnitude normalised to 100 km, ``M = m - 5 log10(R / 100 km)``
  (Ceplecha et al. 1998, Space Sci. Rev. 84, 327, Sect. 6.1).
* :func:`fewstar_zero_point`: a constant zero point from the few stars of a
  :mod:`skysift.calibration.fewstar` calibration (no extinction or radial
  term can be constrained by four to seven stars).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import ICRS, AltAz, SkyCoord
from astropy.table import Table
from astropy.time import Time

from skysift.calibration.catalog import offline_iers, standard_pressure
from skysift.calibration.photometric import fit_zero_point
from skysift.errors import InputError, NotEnoughStarsError

__all__ = [
    "EARTH_RADIUS_KM",
    "absolute_magnitude",
    "add_science_columns",
    "angular_speed",
    "calibration_strength",
    "few_star_note",
    "fewstar_zero_point",
    "meteor_range_km",
    "motion_direction",
    "onset_duration",
    "peak_summary",
    "peak_wording",
    "science_summary",
    "sky_positions",
    "start_epoch",
    "time_axis_label",
]

#: Mean Earth radius (IUGG), km.
EARTH_RADIUS_KM = 6371.0


def peak_summary(lightcurve: Table) -> dict[str, float | None]:
    """The peak measured on unsaturated frames and the saturated frames' bright limit.

    Returns
    -------
    dict
        ``peak_measured_mag`` (brightest calibrated magnitude of an
        unsaturated frame, or None), ``saturated_brighter_than_mag`` (the
        brightest bright limit of a saturated frame: the bolide was brighter
        than this; None without saturated frames), and the same two for the
        instrumental magnitudes (``*_inst``).
    """
    out: dict[str, float | None] = {}
    sat = np.asarray(lightcurve["saturated"], bool) if len(lightcurve) else np.zeros(0, bool)
    for col, suffix in (("mag", ""), ("inst_mag", "_inst")):
        m = np.asarray(lightcurve[col], float) if len(lightcurve) else np.zeros(0)
        ok = np.isfinite(m)
        out[f"peak_measured_mag{suffix}"] = float(m[ok & ~sat].min()) if np.any(ok & ~sat) else None
        out[f"saturated_brighter_than_mag{suffix}"] = (
            float(m[ok & sat].min()) if np.any(ok & sat) else None
        )
    return out


def peak_wording(lightcurve: Table) -> str:
    """One line: ``"peak measured (unsaturated) -1.09 mag; saturated: brighter than -1.85 mag"``.

    Instrumental magnitudes (``"instrumental"``) when uncalibrated; "no
    unsaturated frame" or "no saturated frame" where one part is missing.
    """
    p = peak_summary(lightcurve)
    cal = p["peak_measured_mag"] is not None or p["saturated_brighter_than_mag"] is not None
    suffix = "" if cal else "_inst"
    unit = "mag" if cal else "instrumental mag"
    if len(lightcurve) == 0:
        return "no bolide"
    peak, lim = p[f"peak_measured_mag{suffix}"], p[f"saturated_brighter_than_mag{suffix}"]
    a = (
        f"peak measured (unsaturated) {peak:.2f} {unit}"
        if peak is not None
        else "no unsaturated frame"
    )
    b = f"saturated: brighter than {lim:.2f} {unit}" if lim is not None else "no saturated frame"
    return f"{a}; {b}"


def onset_duration(lightcurve: Table, fps: float) -> dict[str, Any]:
    """Onset (UTC of the first tracked frame) and duration (first to last frame plus one), s."""
    if len(lightcurve) == 0:
        return {"onset_utc": None, "end_utc": None, "duration_s": None}
    t = np.asarray(lightcurve["t"], float)
    times = [str(v) for v in lightcurve["time"]]
    return {
        "onset_utc": times[0] or None,
        "end_utc": times[-1] or None,
        "duration_s": float(t[-1] - t[0] + 1.0 / fps),
    }


def _unit(lon_deg, lat_deg) -> np.ndarray:
    lon, lat = np.radians(np.asarray(lon_deg, float)), np.radians(np.asarray(lat_deg, float))
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def angular_speed(lightcurve: Table) -> tuple[np.ndarray, float | None]:
    """Angular speed of the head along the track, deg/s.

    From the per-frame RA/Dec (alt/az where RA/Dec are missing): the arc
    between the first and the last tracked frame over the time between them
    (the mean speed, robust to per-frame jitter), and per frame the central
    difference of a 5-frame running fit.

    Returns
    -------
    per_frame : ndarray, shape (N,)
        deg/s (NaN where it cannot be computed).
    mean : float or None
        Mean speed, deg/s; None when fewer than 2 positioned frames.
    """
    n = len(lightcurve)
    per = np.full(n, np.nan)
    if n < 2:
        return per, None
    lon, lat = np.asarray(lightcurve["ra"], float), np.asarray(lightcurve["dec"], float)
    if not np.isfinite(lon).sum() >= 2:
        lon, lat = np.asarray(lightcurve["az"], float), np.asarray(lightcurve["alt"], float)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if ok.sum() < 2:
        return per, None
    t = np.asarray(lightcurve["t"], float)
    v = _unit(lon, lat)
    i0, i1 = np.flatnonzero(ok)[[0, -1]]
    arc = math.degrees(math.acos(float(np.clip(v[i0] @ v[i1], -1, 1))))
    mean = arc / (t[i1] - t[i0]) if t[i1] > t[i0] else None
    idx = np.flatnonzero(ok)
    for k in range(len(idx)):
        lo, hi = idx[max(0, k - 2)], idx[min(len(idx) - 1, k + 2)]
        if t[hi] > t[lo]:
            per[idx[k]] = math.degrees(math.acos(float(np.clip(v[lo] @ v[hi], -1, 1)))) / (
                t[hi] - t[lo]
            )
    return per, mean


def _bearing(lon1, lat1, lon2, lat2) -> float:
    """Initial bearing from point 1 to point 2 on a sphere, deg from +lat towards +lon."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def motion_direction(lightcurve: Table) -> dict[str, float | None]:
    """Direction of motion on the sky from the first to the last positioned frame.

    Returns
    -------
    dict
        ``position_angle_deg``: on the RA/Dec sphere, east of north (0 =
        towards the north celestial pole, 90 = towards east);
        ``azimuth_of_motion_deg``: the azimuth (0 = north, 90 = east) where
        the track's great circle, continued in the direction of motion,
        meets the horizon (the opposite horizon point for a rising track is
        where it came from); ``altitude_change_deg`` (negative: descending).
        None where the coordinates are missing.
    """
    out: dict[str, float | None] = {
        "position_angle_deg": None, "azimuth_of_motion_deg": None, "altitude_change_deg": None,
    }  # fmt: skip
    if len(lightcurve) < 2:
        return out
    ra, dec = np.asarray(lightcurve["ra"], float), np.asarray(lightcurve["dec"], float)
    ok = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    if ok.size >= 2:
        i, j = ok[0], ok[-1]
        out["position_angle_deg"] = _bearing(ra[i], dec[i], ra[j], dec[j])
    az, alt = np.asarray(lightcurve["az"], float), np.asarray(lightcurve["alt"], float)
    ok = np.flatnonzero(np.isfinite(az) & np.isfinite(alt))
    if ok.size >= 2:
        i, j = ok[0], ok[-1]
        out["altitude_change_deg"] = float(alt[j] - alt[i])
        out["azimuth_of_motion_deg"] = _horizon_heading(az[i], alt[i], az[j], alt[j])
    return out


def _horizon_heading(az1, alt1, az2, alt2) -> float | None:
    """Azimuth where the great circle from point 1 through point 2 first meets the horizon."""

    def enu(az, alt):
        a, h = math.radians(az), math.radians(alt)
        return np.array([math.cos(h) * math.sin(a), math.cos(h) * math.cos(a), math.sin(h)])

    a = enu(az1, alt1)
    b = enu(az2, alt2) - (enu(az2, alt2) @ a) * a
    if not np.linalg.norm(b) > 0:
        return None
    b /= np.linalg.norm(b)
    # a_z cos t + b_z sin t = 0: the first root t > 0
    t0 = math.atan2(-a[2], b[2]) % (2 * math.pi)
    t = min(t for t in (t0, (t0 + math.pi) % (2 * math.pi)) if t > 1e-9)
    v = math.cos(t) * a + math.sin(t) * b
    return float(math.degrees(math.atan2(v[0], v[1])) % 360.0)


def meteor_range_km(alt_deg, height_km: float, site_height_m: float = 0.0) -> np.ndarray:
    """Range from the site to the point at ``height_km`` along the line of sight, km.

    ``R = sqrt((Re + h)^2 - (Re + h0)^2 cos^2 a) - (Re + h0) sin a`` for a
    spherical Earth of radius ``Re``, site height ``h0`` and altitude ``a``.

    Raises
    ------
    InputError
        If ``height_km`` is not above the site.
    """
    h0 = site_height_m / 1000.0
    if not height_km > h0:
        msg = f"height_km must be above the site ({h0:.3f} km), got {height_km!r}"
        raise InputError(msg)
    a = np.radians(np.asarray(alt_deg, float))
    r0, r1 = EARTH_RADIUS_KM + h0, EARTH_RADIUS_KM + float(height_km)
    return np.sqrt(r1**2 - (r0 * np.cos(a)) ** 2) - r0 * np.sin(a)


def absolute_magnitude(mag, alt_deg, height_km: float, site_height_m: float = 0.0) -> np.ndarray:
    """Magnitude normalised to a range of 100 km: ``M = m - 5 log10(R / 100 km)``.

    Parameters
    ----------
    mag : array_like
        Apparent magnitudes.
    alt_deg : array_like
        Altitudes of the head, degrees.
    height_km : float
        Height of the meteor above sea level, km.
    site_height_m : float, optional
        Height of the site, m. Default 0.

    Returns
    -------
    ndarray
    """
    r = meteor_range_km(alt_deg, height_km, site_height_m)
    return np.asarray(mag, float) - 5.0 * np.log10(r / 100.0)


def fewstar_zero_point(cal: Any) -> tuple[Any, str]:
    """A constant zero point for a few-star calibration (no extinction or radial term).

    The full zero-point model of the calibration core (zero point, extinction,
    radial term, 8-bit non-linearity) is not constrained by four to seven
    stars; the median-clipped constant ``ZP = <m_cat - m_inst>`` is, with its
    scatter as the error (the extinction is absorbed into it: the stars and
    the meteor are at similar air masses only roughly, stated in the reason).

    Returns
    -------
    (calibration, reason)
        A copy of ``cal`` with the constant zero point (or ``zero_point=None``
        when fewer than 3 stars have photometry) and one sentence on what was done.
    """
    m = cal.matches
    inst = np.asarray(m["inst_mag"], float) if "inst_mag" in m.colnames else np.zeros(0)
    catm = np.asarray(m["catalog_mag"], float) if len(m) else np.zeros(0)
    ok = np.isfinite(inst) & np.isfinite(catm)
    if ok.sum() < 3:
        reason = (
            f"no zero point: {int(ok.sum())} identified stars have photometry, need 3; "
            "magnitudes are instrumental"
        )
        return dataclasses.replace(cal, zero_point=None), reason
    try:
        zp = fit_zero_point(inst[ok], catm[ok], extinction=False, radial=False, min_stars=3)
    except NotEnoughStarsError as err:
        return dataclasses.replace(cal, zero_point=None), f"no zero point: {err}"
    reason = (
        f"few-star calibration: constant zero point {zp.zero_point:.2f} +/- "
        f"{zp.zero_point_err:.2f} mag from {zp.n_used} stars (scatter {zp.rms_mag:.2f} mag; "
        "extinction and vignetting not fitted)"
    )
    return dataclasses.replace(cal, zero_point=zp), reason


def time_axis_label(lightcurve: Table) -> str:
    """Label of a light curve's time axis: seconds from the UTC epoch of its first frame."""
    epoch = start_epoch(lightcurve)
    if epoch is None:
        return "time from the first frame (s; UTC unknown: give --time)"
    return f"time (s) from {epoch.utc.isot} UTC (frame {int(lightcurve['frame'][0])})"


def start_epoch(lightcurve: Table) -> Time | None:
    """UTC of the light curve's first row (None when the times are unknown)."""
    if len(lightcurve) == 0 or not str(lightcurve["time"][0]):
        return None
    return Time(str(lightcurve["time"][0]), scale="utc")


def few_star_note(cal: Any, messages: list[str] | None = None) -> Any:
    """After ``calibrate``: a few-star calibration gets a constant zero point and a note.

    Other calibrations are returned unchanged. The note (appended to
    ``messages``) gives the number of identified objects, the astrometric
    RMS, the parameter errors and the zero point (or why there is none).
    """
    meta = getattr(cal.solution, "meta", None) or {}
    if meta.get("method") != "fewstar":
        return cal
    cal, reason = fewstar_zero_point(cal)
    err = meta.get("param_err", {})
    note = (
        f"few-star all-sky calibration ({meta.get('projection', 'equidistant')} projection, "
        f"no distortion): {meta.get('n_identified')} objects identified "
        f"({meta.get('n_planets', 0)} planets), RMS {cal.solution.rms_px:.2f} px, chance level "
        f"{cal.solution.n_chance:.1f}; zenith pixel +/- {err.get('x0', float('nan')):.2f} px, "
        f"scale +/- {err.get('k1', float('nan')):.2f} px/rad, rotation +/- "
        f"{err.get('rotation_deg', float('nan')):.2f} deg; {reason}"
    )
    if messages is not None:
        messages.append(note)
    return cal


def add_science_columns(lc: Table, *, site: Any = None, height_km: float | None = None) -> Table:
    """Add ``ang_speed`` (deg/s) and, with ``height_km`` and altitudes, ``range_km`` and ``abs_mag``.

    ``abs_mag`` of a saturated frame is a bright limit, like ``mag``.

    Raises
    ------
    InputError
        If ``height_km`` is not above the site.
    """
    per, _ = angular_speed(lc)
    lc["ang_speed"] = per
    lc["ang_speed"].unit = "deg/s"
    lc["ang_speed"].description = "angular speed of the head along the track (5-frame arc)"
    if height_km is not None:
        h0 = float(site.height) if site is not None and site.height is not None else 0.0
        alt = np.asarray(lc["alt"], float) if len(lc) else np.zeros(0)
        meteor_range_km(np.zeros(1), height_km, h0)  # checks the height (InputError)
        rng = np.full(len(lc), np.nan)
        ok = np.isfinite(alt) & (alt > 0)
        rng[ok] = meteor_range_km(alt[ok], height_km, h0)
        lc["range_km"] = rng
        lc["range_km"].unit = "km"
        lc["abs_mag"] = np.asarray(lc["mag"], float) - 5.0 * np.log10(rng / 100.0)
        lc["abs_mag"].unit = "mag"
        lc[
            "abs_mag"
        ].description = (
            f"magnitude at 100 km: M = m - 5 log10(range / 100 km), meteor at {height_km:g} km"
        )
    return lc


def science_summary(result: Any) -> dict[str, Any]:
    """The meteor-science block of ``summary.json`` and the report (see the module docstring)."""
    lc = result.lightcurve
    d: dict[str, Any] = {"peak": peak_summary(lc), "peak_text": peak_wording(lc)}
    # meteor / aircraft / satellite / unknown (skysift.bolide.kinds; None: nothing tracked)
    d["kind"], d["kind_reason"] = lc.meta.get("kind"), lc.meta.get("kind_reason")
    d.update(onset_duration(lc, result.fps))
    _, mean = angular_speed(lc) if len(lc) else (None, None)
    d["angular_speed_deg_s"] = mean
    d.update(motion_direction(lc))
    site = getattr(result, "site", None)
    d["site"] = (
        None
        if site is None
        else {"lat_deg": site.lat, "lon_deg": site.lon, "height_m": site.height}
    )
    cal = result.calibration
    if cal is not None:
        cam = getattr(cal.solution, "model", None)
        d["camera"] = cam.to_dict() if hasattr(cam, "to_dict") else {"model_type": cal.model_type}
        d["camera"]["method"] = (getattr(cal.solution, "meta", None) or {}).get("method", "full")
    else:
        d["camera"] = None
    h = getattr(result, "height_km", None)
    d["height_km"] = h
    if h is not None and "abs_mag" in lc.colnames:
        sat = np.asarray(lc["saturated"], bool)
        am = np.asarray(lc["abs_mag"], float)
        ok = np.isfinite(am)
        d["abs_peak_measured_mag"] = float(am[ok & ~sat].min()) if np.any(ok & ~sat) else None
        d["abs_saturated_brighter_than_mag"] = (
            float(am[ok & sat].min()) if np.any(ok & sat) else None
        )
    return d


def calibration_strength(cal: Any) -> tuple[bool, int, float]:
    """Sort key of calibrations: full model first, then more identified objects, then lower RMS."""
    meta = getattr(cal.solution, "meta", None) or {}
    few = meta.get("method") == "fewstar"
    n = int(meta.get("n_identified", cal.n_matched) if few else cal.n_matched)
    rms = getattr(cal, "astrometric_rms_px", None)
    return (not few, n, -float(rms) if rms is not None and np.isfinite(rms) else -np.inf)


def sky_positions(camera: Any, x: np.ndarray, y: np.ndarray, times: Time | None):
    """``(ra, dec, alt, az)`` in degrees of pixels at per-point times (NaN when unknown).

    A fisheye camera maps pixels to alt/az, then ICRS at each time (with
    refraction at the site's standard pressure); a WCS maps to RA/Dec, then
    alt/az.
    """

    n = len(x)
    nan = np.full(n, np.nan)
    if camera is None or n == 0:
        return nan, nan, nan.copy(), nan.copy()
    site = camera.site
    with offline_iers():
        if camera.model_type == "fisheye":
            alt, az = camera.pixel_to_altaz(x, y)
            if times is None or site is None:
                return nan, nan, np.asarray(alt), np.asarray(az)
            frame = AltAz(
                obstime=times,
                location=site.to_earth_location(),
                pressure=standard_pressure(site.height) * u.hPa,
                temperature=10 * u.deg_C,
                relative_humidity=0.5,
                obswl=0.55 * u.micron,
            )
            c = SkyCoord(alt=np.asarray(alt) * u.deg, az=np.asarray(az) * u.deg, frame=frame)
            icrs = c.transform_to(ICRS())
            return icrs.ra.deg, icrs.dec.deg, np.asarray(alt), np.asarray(az) % 360
        ra, dec = camera.pixel_to_radec(x, y)
        if times is None or site is None:
            return np.asarray(ra), np.asarray(dec), nan, nan
        frame = AltAz(obstime=times, location=site.to_earth_location())
        aa = SkyCoord(ra=np.asarray(ra) * u.deg, dec=np.asarray(dec) * u.deg).transform_to(frame)
        return np.asarray(ra), np.asarray(dec), aa.alt.deg, aa.az.deg % 360
