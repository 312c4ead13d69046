"""A bolide light curve in the ECSV layout SkyFit2 (RMS, Global Meteor Network) writes.

SkyFit2's manual reduction is saved as a GDEF point-observation ECSV file
(one row per frame), which the GMN trajectory solvers (WMPL ``loadECSVs``,
ASTRA) read. :func:`write_skyfit_ecsv` writes a skysift light curve in that
layout: the same fixed header, the same ``!!omap`` meta keys in the same order
(``obs_latitude obs_longitude obs_elevation origin camera_id cx cy
photometric_band image_file isodate_start_obs astrometry_number_stars
mag_label no_frags obs_az obs_ev obs_rot fov_horiz fov_vert``) and the columns

``datetime`` (ISO UTC, microseconds), ``ra``, ``dec`` (deg, J2000),
``azimuth``, ``altitude`` (deg), ``x_image``, ``y_image`` (pix),
``integrated_pixel_value``, ``background_pixel_value`` (ADU, int),
``saturated_pixels`` (bool), ``mag_data``, ``err_minus_mag``,
``err_plus_mag`` (mag), ``snr``,

with RMS's number formats. The file name RMS uses is
``<YYYY-mm-ddTHH_MM_SS>_RMS_<station>.ecsv`` (:func:`skyfit_ecsv_name`).

Written from the format as RMS writes it (github.com/CroatianMeteorNetwork/RMS,
``Utils/SkyFit2.py`` ``saveECSV`` and its GDEF writer); no RMS code is copied.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time

from skysift.calibration.platepar import Platepar, radec_to_altaz, xy_to_radec
from skysift.errors import InputError
from skysift.io.frame import Site
from skysift.outputs.files import write_with

__all__ = ["SKYFIT_COLUMNS", "apply_platepar", "skyfit_ecsv_name", "write_skyfit_ecsv"]

#: Columns of the SkyFit2 ECSV, in order.
SKYFIT_COLUMNS = (
    "datetime", "ra", "dec", "azimuth", "altitude", "x_image", "y_image",
    "integrated_pixel_value", "background_pixel_value", "saturated_pixels",
    "mag_data", "err_minus_mag", "err_plus_mag", "snr",
)  # fmt: skip

_HEADER = """# %ECSV 0.9
# ---
# datatype:
# - {name: datetime, datatype: string}
# - {name: ra, unit: deg, datatype: float64}
# - {name: dec, unit: deg, datatype: float64}
# - {name: azimuth, datatype: float64}
# - {name: altitude, datatype: float64}
# - {name: x_image, unit: pix, datatype: float64}
# - {name: y_image, unit: pix, datatype: float64}
# - {name: integrated_pixel_value, datatype: int64}
# - {name: background_pixel_value, datatype: int64}
# - {name: saturated_pixels, datatype: bool}
# - {name: mag_data, datatype: float64}
# - {name: err_minus_mag, datatype: float64}
# - {name: err_plus_mag, datatype: float64}
# - {name: snr, datatype: float64}
# delimiter: ','
# meta: !!omap
"""

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def skyfit_ecsv_name(start: Time, station: str, network: str = "RMS") -> str:
    """The file name RMS gives a SkyFit2 ECSV: ``YYYY-mm-ddTHH_MM_SS_<network>_<station>.ecsv``."""
    return f"{Time(start).utc.strftime('%Y-%m-%dT%H_%M_%S')}_{network}_{station}.ecsv"


def _meta_value(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (float, np.floating)):
        return repr(float(value)) if math.isfinite(value) else "None"
    return str(value)


def _camera_geometry(camera: Any, shape: tuple[int, int]) -> dict[str, float | None]:
    """obs_az, obs_ev, obs_rot (RMS ``rotationWrtHorizon``), fov_horiz, fov_vert of a camera."""
    out: dict[str, float | None] = dict.fromkeys(
        ("obs_az", "obs_ev", "obs_rot", "fov_horiz", "fov_vert")
    )
    if camera is None:
        return out
    h, w = shape
    with np.errstate(all="ignore"):
        try:
            alt, az = camera.pixel_to_altaz(np.array([w / 2, w / 2 + 10]), np.array([h / 2, h / 2]))
            alt, az = np.asarray(alt, float), np.asarray(az, float)
            out["obs_az"], out["obs_ev"] = float(az[0] % 360), float(alt[0])
            d_az = np.radians((az[1] - az[0] + 180) % 360 - 180)
            out["obs_rot"] = float(np.degrees(np.arctan2(np.radians(alt[1] - alt[0]), d_az)) % 360)
        except (InputError, AttributeError, ValueError):
            pass
        ra, dec = camera.pixel_to_radec(
            np.array([0.0, w, w / 2, w / 2]), np.array([h / 2, h / 2, 0.0, h])
        )
    ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))

    def sep(i: int, j: int) -> float | None:
        c = np.sin(dec[i]) * np.sin(dec[j]) + np.cos(dec[i]) * np.cos(dec[j]) * np.cos(
            ra[i] - ra[j]
        )
        v = float(np.degrees(np.arccos(np.clip(c, -1, 1))))
        return v if math.isfinite(v) else None

    out["fov_horiz"], out["fov_vert"] = sep(0, 1), sep(2, 3)
    return out


def apply_platepar(lightcurve: Table, platepar: Platepar) -> Table:
    """The light curve with ``ra``, ``dec``, ``alt``, ``az`` from an RMS platepar.

    Each row is mapped at its own time (``time``, ISO UTC), so a GMN station's
    calibration gives the head's sky track (``skysift bolide --platepar``).
    Magnitudes are left as they are.

    Parameters
    ----------
    lightcurve : astropy.table.Table
        With ``x``, ``y`` (pixels) and ``time`` (ISO UTC) columns.
    platepar : Platepar

    Returns
    -------
    astropy.table.Table
        A copy; ``ra``, ``dec`` J2000 and ``alt``, ``az`` (apparent, RMS's
        refraction) in degrees.

    Raises
    ------
    InputError
        If a column is missing, a row has no time, or ``platepar`` is not a
        :class:`~skysift.calibration.platepar.Platepar`.
    """
    if not isinstance(platepar, Platepar):
        msg = f"platepar must be a Platepar, got {type(platepar).__name__}"
        raise InputError(msg)
    missing = [c for c in ("time", "x", "y") if c not in lightcurve.colnames]
    if missing:
        msg = f"the light curve lacks the columns {', '.join(missing)}"
        raise InputError(msg)
    out = lightcurve.copy()
    if len(out) == 0:
        return out
    stamps = [str(t).strip() for t in out["time"]]
    if not all(stamps):
        msg = "the light curve has no UTC times: give the start time (--time)"
        raise InputError(msg)
    jd = Time(stamps, scale="utc").jd
    ra, dec = xy_to_radec(platepar, out["x"], out["y"], jd)
    alt, az = radec_to_altaz(platepar, ra, dec, jd)
    for name, values in (("ra", ra), ("dec", dec), ("alt", alt), ("az", az)):
        out[name] = np.asarray(values, float)
        out[name].unit = "deg"
    out.meta["astrometry"] = f"RMS platepar of station {platepar.station_code}"
    return out


def write_skyfit_ecsv(
    result_or_table: Any,
    path: str | os.PathLike[str],
    *,
    station: str,
    site: Site | tuple[float, float, float] | None = None,
    camera: Any = None,
    shape: tuple[int, int] | None = None,
    image_file: str = "",
    start_time: Time | str | None = None,
    n_stars: int | None = None,
    photometric_band: str = "unknown",
    origin: str = "skysift",
    fps: float | None = None,
) -> Path:
    """Write a bolide light curve as the ECSV SkyFit2 saves for a manual reduction.

    Parameters
    ----------
    result_or_table : BolideResult or astropy.table.Table
        A :class:`~skysift.bolide.pipeline.BolideResult` or its ``lightcurve``
        table (columns ``time`` (ISO UTC), ``x``, ``y``, ``ra``, ``dec``,
        ``alt``, ``az``, ``flux``, ``flux_err``, ``mag``, ``mag_err``,
        ``saturated``; ``n_aperture`` when present).
    path : str or path
        Output file; see :func:`skyfit_ecsv_name` for the name RMS uses.
    station : str
        Station/camera code (``camera_id``), e.g. ``"HR0001"``.
    site : Site or (lat, lon, height_m), optional
        Default the result's calibration site.
    camera : camera model, optional
        For the pointing, rotation and FOV meta; default the result's
        calibrated camera. Without one those keys are written as ``None``.
    shape : (int, int), optional
        Image ``(H, W)`` for ``cx``, ``cy``; default the result's background.
    image_file : str, optional
        Name of the original video or FF file.
    start_time : astropy.time.Time or str, optional
        Start of the observation (``isodate_start_obs``); default the first row.
    n_stars : int, optional
        Stars in the astrometric calibration; default the result's matches.
    photometric_band : str, optional
        Band of the magnitudes. Default ``"unknown"``.
    origin : str, optional
        Software name in the header. Default ``"skysift"``.
    fps : float, optional
        Added as a last meta key ``fps`` when given (or known from the result).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        If the light curve lacks a required column, has no UTC times or no
        sky positions (uncalibrated), the site is unknown, or the station
        code is empty.

    Notes
    -----
    ``integrated_pixel_value`` is the background-subtracted head flux and
    ``background_pixel_value`` the background summed over the aperture
    (from the result's background image; 0 when unknown). ``err_minus_mag``
    and ``err_plus_mag`` are ``-+mag_err`` (0 for saturated frames, whose
    ``mag_data`` is a bright limit, as RMS writes 0 when the error is
    unusable); ``snr`` is ``flux / flux_err``.
    """
    if not isinstance(station, str) or not station.strip():
        msg = f"station must be a non-empty station code, got {station!r}"
        raise InputError(msg)
    result = None if isinstance(result_or_table, Table) else result_or_table
    lc = result_or_table if result is None else getattr(result, "lightcurve", None)
    if not isinstance(lc, Table):
        msg = (
            f"expected a BolideResult or a light-curve Table, got {type(result_or_table).__name__}"
        )
        raise InputError(msg)
    need = ("time", "x", "y", "ra", "dec", "alt", "az", "flux", "flux_err", "mag", "mag_err")
    missing = [c for c in (*need, "saturated") if c not in lc.colnames]
    if missing:
        msg = f"the light curve lacks the columns {', '.join(missing)}"
        raise InputError(msg)
    cal = getattr(result, "calibration", None)
    if site is None:
        site = getattr(cal, "site", None)
    if site is not None and not isinstance(site, Site):
        site = Site(*site)
    if site is None:
        msg = "the site is unknown: give site=(lat, lon, height_m) (--site)"
        raise InputError(msg)
    if camera is None and cal is not None:
        camera = getattr(cal, "camera", None)
    if shape is None:
        bg = getattr(result, "background", None)
        shape = (
            bg.shape if bg is not None else getattr(getattr(camera, "model", None), "shape", None)
        )
    cx, cy = (int(shape[1]), int(shape[0])) if shape is not None else (None, None)
    rows = lc[np.isfinite(np.asarray(lc["x"], float)) & np.isfinite(np.asarray(lc["y"], float))]
    if len(rows) == 0:
        msg = "the light curve has no frame with a head position to write"
        raise InputError(msg)
    times_str = [str(t).strip() for t in rows["time"]]
    if any(not t for t in times_str):
        msg = "the light curve has no UTC times: give the start time (--time)"
        raise InputError(msg)
    ra, dec = np.asarray(rows["ra"], float), np.asarray(rows["dec"], float)
    if not (np.isfinite(ra).all() and np.isfinite(dec).all()):
        msg = (
            "the light curve has no sky positions (uncalibrated): a trajectory solver needs RA/Dec"
        )
        raise InputError(msg)
    times = Time(times_str, scale="utc")
    start = Time(start_time, scale="utc") if start_time is not None else times[0]
    if n_stars is None:
        n_stars = int(getattr(cal, "n_matched", 0) or 0) if cal is not None else 0
    fps = fps if fps is not None else getattr(result, "fps", None)
    geo = _camera_geometry(camera, shape) if shape is not None else _camera_geometry(None, (0, 0))
    meta: list[tuple[str, Any]] = [
        ("obs_latitude", float(site.lat)),
        ("obs_longitude", float(site.lon)),
        ("obs_elevation", float(site.height)),
        ("origin", origin),
        ("camera_id", station),
        ("cx", cx),
        ("cy", cy),
        ("photometric_band", photometric_band),
        ("image_file", image_file),
        ("isodate_start_obs", start.utc.datetime.strftime(_TIME_FORMAT)),
        ("astrometry_number_stars", int(n_stars)),
        ("mag_label", "mag_data"),
        ("no_frags", 1),
        *geo.items(),
    ]
    if fps:
        meta.append(("fps", float(fps)))
    out = [_HEADER]
    out += ["# - {" + f"{k}: {_meta_value(v)}" + "}\n" for k, v in meta]
    out.append("# schema: astropy-2.0\n")
    out.append(",".join(SKYFIT_COLUMNS) + "\n")
    flux = np.asarray(rows["flux"], float)
    flux_err = np.asarray(rows["flux_err"], float)
    mag = np.asarray(rows["mag"], float)
    mag_err = np.nan_to_num(np.asarray(rows["mag_err"], float), nan=0.0)
    sat = np.asarray(rows["saturated"], bool)
    mag_err[sat] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(flux_err > 0, flux / flux_err, 0.0)
    snr = np.nan_to_num(snr, nan=0.0, posinf=0.0, neginf=0.0)
    bg = getattr(result, "background", None)
    n_ap = np.asarray(rows["n_aperture"], float) if "n_aperture" in rows.colnames else None
    x, y = np.asarray(rows["x"], float), np.asarray(rows["y"], float)
    dts = times.utc.datetime
    for i in range(len(rows)):
        back = 0.0
        if bg is not None and n_ap is not None:
            iy = int(np.clip(round(y[i]), 0, bg.shape[0] - 1))
            ix = int(np.clip(round(x[i]), 0, bg.shape[1] - 1))
            back = float(bg[iy, ix]) * float(n_ap[i])
        entry = [
            dts[i].strftime(_TIME_FORMAT),
            f"{ra[i]:10.6f}",
            f"{dec[i]:+10.6f}",
            f"{float(rows['az'][i]):10.6f}",
            f"{float(rows['alt'][i]):+10.6f}",
            f"{x[i]:9.3f}",
            f"{y[i]:9.3f}",
            f"{int(round(float(np.nan_to_num(flux[i])))):10d}",
            f"{int(round(back)):10d}",
            f"{sat[i]!s:5s}",
            f"{mag[i]:+7.2f}",
            f"{-mag_err[i]:+6.2f}",
            f"{mag_err[i]:+6.2f}",
            f"{snr[i]:10.2f}",
        ]
        out.append(",".join(entry) + "\n")
    text = "".join(out)
    return write_with(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
