"""RMS (Global Meteor Network) platepars: read, write, map pixels <-> sky, fit to a skysift camera.

A *platepar* is the astrometric calibration of a GMN station camera, a JSON
file written by RMS (``platepar_cmn2010.cal``). Its pixel -> sky mapping
(RMS ``cyXYToRADec``) is, for a Julian date ``jd``:

1. pixel ``(x, y)`` relative to the image centre ``(X_res/2, Y_res/2)``;
2. distortion: ``poly3+radial`` adds a 3rd-order polynomial in x, y plus
   ``x r`` and ``y r`` terms (12 coefficients per axis, the first the
   offset); the ``radial*`` types scale the radius from the distortion centre
   ``(x_poly[0] X_res/2, x_poly[1] Y_res/2)`` by ``r_corr / r`` with
   ``r_corr = r + k1 r**3 + k2 r**5 + ...`` (``-odd``; ``r`` in units of
   ``X_res/2``), here always with equal aspect and no asymmetry term unless
   the file says otherwise;
3. the corrected offsets divided by ``F_scale`` (px/deg) are the
   azimuthal-equidistant coordinates around the FOV centre, rotated by
   ``pos_angle_ref``;
4. the FOV centre at ``jd`` is ``(RA_d + GMST(jd) - Ho, dec_d)`` (the camera
   is fixed to the ground), moved by refraction and precessed to J2000
   together with the position angle (Meeus 1998, ch. 21; refraction from
   the Explanatory Supplement 1992, p. 144, and Saemundsson 1986).

The sky -> pixel direction (RMS ``cyraDecToXY``) uses the separate "reverse"
coefficients ``x_poly_rev``/``y_poly_rev``. Angles are degrees, RA/Dec J2000;
pixels are 0-based with (0, 0) the centre of the first pixel, x = column,
which we take to be RMS's convention (its arrays are indexed the same way).

Written from the RMS sources' description (github.com/CroatianMeteorNetwork/RMS:
``RMS/Formats/Platepar.py``, ``RMS/Astrometry/ApplyAstrometry.py`` and
``CyFunctions.pyx``); no RMS code is copied.

References
----------
.. [1] Vida, D., et al. 2021, MNRAS 506, 5046, "The Global Meteor Network -
   Methodology and first results", section 3.1 (astrometric calibration).
.. [2] Meeus, J. 1998, *Astronomical Algorithms*, 2nd ed., ch. 12 (sidereal
   time) and 21 (precession).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from astropy.time import Time
from scipy.optimize import least_squares

from skysift.calibration.rmsastro import (
    _altaz_to_radec,
    _eq_refraction,
    _gmst_deg,
    _precess,
    _precess_with_rotation,
    _radec_to_altaz,
    _radec_to_altaz_rms,
    _refract_apparent_to_true,
)
from skysift.errors import InputError
from skysift.io.frame import Site
from skysift.outputs.files import write_json

__all__ = [
    "DISTORTION_TYPES",
    "Platepar",
    "PlateparCamera",
    "PlateparFit",
    "camera_from_platepar",
    "platepar_from_calibration",
    "radec_to_altaz",
    "radec_to_xy",
    "read_platepar",
    "write_platepar",
    "xy_to_radec",
]

J2000 = 2451545.0

#: Distortion types RMS knows, with the full polynomial length (before dropping
#: the centre, aspect and asymmetry terms of the radial types).
DISTORTION_TYPES: dict[str, int] = {
    "poly3+radial": 12, "poly3+radial3": 13, "poly3+radial5": 14,
    "radial3-all": 7, "radial4-all": 8, "radial5-all": 9,
    "radial3-odd": 6, "radial5-odd": 7, "radial7-odd": 8, "radial9-odd": 9,
}  # fmt: skip

#: Radial powers of each radial type (``r_corr = r + sum k_i r**p_i``).
_RADIAL_POWERS = {
    "radial3-all": (2, 3), "radial4-all": (2, 3, 4), "radial5-all": (2, 3, 4, 5),
    "radial3-odd": (3,), "radial5-odd": (3, 5), "radial7-odd": (3, 5, 7), "radial9-odd": (3, 5, 7, 9),
}  # fmt: skip

_REQUIRED = ("JD", "X_res", "Y_res", "RA_d", "dec_d", "pos_angle_ref", "F_scale")


@dataclass
class Platepar:
    """An RMS platepar (the keys of RMS's JSON, with their RMS names).

    Parameters
    ----------
    lat, lon : float
        Station latitude and longitude in degrees (east positive).
    elev : float
        Station height in metres.
    JD : float
        Julian date (UTC) of the reference pointing.
    X_res, Y_res : int
        Image width and height in pixels.
    RA_d, dec_d : float
        FOV centre at ``JD`` in degrees.
    pos_angle_ref : float
        Position angle of the field in degrees.
    F_scale : float
        Plate scale in pixels per degree.
    distortion_type : str
        One of :data:`DISTORTION_TYPES`.
    x_poly_fwd, y_poly_fwd, x_poly_rev, y_poly_rev : ndarray
        Distortion coefficients, pixel -> sky (``fwd``) and sky -> pixel
        (``rev``). Radial types keep all theirs in the ``x`` arrays.
    equal_aspect, asymmetry_corr, force_distortion_centre, refraction : bool
        RMS model switches.
    Ho : float or None
        Greenwich mean sidereal time at ``JD`` in degrees; None computes it.
    station_code : str
    extra : dict
        Every other key of the file (photometry, star list, ...), written back.

    Raises
    ------
    InputError
        For an unknown distortion type, a non-positive scale or image size.
    """

    lat: float
    lon: float
    elev: float
    JD: float
    X_res: int
    Y_res: int
    RA_d: float
    dec_d: float
    pos_angle_ref: float
    F_scale: float
    distortion_type: str = "radial7-odd"
    x_poly_fwd: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y_poly_fwd: np.ndarray = field(default_factory=lambda: np.zeros(0))
    x_poly_rev: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y_poly_rev: np.ndarray = field(default_factory=lambda: np.zeros(0))
    equal_aspect: bool = True
    asymmetry_corr: bool = False
    force_distortion_centre: bool = False
    refraction: bool = True
    Ho: float | None = None
    station_code: str = "None"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.distortion_type not in DISTORTION_TYPES:
            msg = (
                f"unknown platepar distortion_type {self.distortion_type!r}; "
                f"known: {', '.join(DISTORTION_TYPES)}"
            )
            raise InputError(msg)
        if not (self.F_scale > 0 and self.X_res > 0 and self.Y_res > 0):
            msg = (
                f"platepar F_scale, X_res, Y_res must be positive, got {self.F_scale}, "
                f"{self.X_res}, {self.Y_res}"
            )
            raise InputError(msg)
        self.X_res, self.Y_res = int(self.X_res), int(self.Y_res)
        n = self.poly_length
        for name in ("x_poly_fwd", "y_poly_fwd", "x_poly_rev", "y_poly_rev"):
            arr = np.asarray(getattr(self, name), dtype=float).ravel()
            # pad or cut to the type's length, as RMS does for older files
            arr = np.concatenate([arr, np.zeros(max(0, n - arr.size))])[:n]
            setattr(self, name, arr)
        if self.Ho is None:
            self.Ho = float(_gmst_deg(self.JD))

    @property
    def poly_length(self) -> int:
        """Number of distortion coefficients per array for this type and its switches."""
        n = DISTORTION_TYPES[self.distortion_type]
        if self.distortion_type.startswith("radial"):
            n -= 2 if self.force_distortion_centre else 0
            n -= 1 if self.equal_aspect else 0
            n -= 0 if self.asymmetry_corr else 2
        return n

    @property
    def time(self) -> Time:
        """The reference time ``JD`` as a UTC :class:`~astropy.time.Time`."""
        return Time(self.JD, format="jd", scale="utc")

    @property
    def site(self) -> Site:
        """The station as a :class:`~skysift.io.frame.Site`."""
        return Site(float(self.lat), float(self.lon), float(self.elev))

    def to_dict(self) -> dict[str, Any]:
        """The JSON dictionary RMS writes (all keys its loader and SkyFit2 use)."""
        d: dict[str, Any] = {
            "version": 2, "UT_corr": 0, "fov_h": None, "fov_v": None,
            "measurement_apparent_to_true_refraction": False,
            "mag_0": -2.5, "mag_lev": 1.0, "mag_lev_stddev": 0.0, "gamma": 1.0,
            "vignetting_coeff": 0.001 * math.hypot(1280, 720) / math.hypot(self.X_res, self.Y_res),
            "vignetting_fixed": True, "extinction_scale": 0.6, "star_list": [],
            "auto_check_fit_refined": False, "auto_recalibrated": False,
        }  # fmt: skip
        d.update(self.extra)
        d.update(
            {
                "lat": float(self.lat), "lon": float(self.lon), "elev": float(self.elev),
                "JD": float(self.JD), "Ho": float(self.Ho),  # type: ignore[arg-type]
                "X_res": self.X_res, "Y_res": self.Y_res,
                "RA_d": float(self.RA_d), "dec_d": float(self.dec_d),
                "pos_angle_ref": float(self.pos_angle_ref), "F_scale": float(self.F_scale),
                "distortion_type": self.distortion_type,
                "distortion_type_list": list(DISTORTION_TYPES),
                "distortion_type_poly_length": list(DISTORTION_TYPES.values()),
                "poly_length": self.poly_length,
                "equal_aspect": bool(self.equal_aspect),
                "asymmetry_corr": bool(self.asymmetry_corr),
                "force_distortion_centre": bool(self.force_distortion_centre),
                "refraction": bool(self.refraction),
                "station_code": str(self.station_code),
                "x_poly_fwd": self.x_poly_fwd.tolist(), "y_poly_fwd": self.y_poly_fwd.tolist(),
                "x_poly_rev": self.x_poly_rev.tolist(), "y_poly_rev": self.y_poly_rev.tolist(),
                # older RMS code reads the forward coefficients under these names
                "x_poly": self.x_poly_fwd.tolist(), "y_poly": self.y_poly_fwd.tolist(),
            }
        )  # fmt: skip
        if d.get("fov_h") is None or d.get("fov_v") is None:
            d["fov_h"], d["fov_v"] = _fov_size(self)
        if "az_centre" not in self.extra or "alt_centre" not in self.extra:
            az, alt = _radec_to_altaz_rms(
                np.radians(self.RA_d), np.radians(self.dec_d), self.JD, self.lat, self.lon, False
            )
            d["az_centre"], d["alt_centre"] = float(np.degrees(az)), float(np.degrees(alt))
        return dict(sorted(d.items()))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Platepar:
        """Build a platepar from RMS's JSON dictionary (version 1 or 2).

        Raises
        ------
        InputError
            If a required key is missing or not a number.
        """
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            msg = f"platepar lacks the keys {', '.join(missing)}"
            raise InputError(msg)
        fwd_x = d.get("x_poly_fwd", d.get("x_poly", []))
        fwd_y = d.get("y_poly_fwd", d.get("y_poly", []))
        flags = ("equal_aspect", "asymmetry_corr", "force_distortion_centre", "refraction")
        derived = ("x_poly", "y_poly", "distortion_type_list", "distortion_type_poly_length",
                   "poly_length", "time")  # fmt: skip
        known = {f.name for f in fields(cls)} | set(derived)
        try:
            return cls(
                **{k: float(d[k]) for k in ("JD", "RA_d", "dec_d", "pos_angle_ref", "F_scale")},
                **{k: float(d.get(k, 0.0)) for k in ("lat", "lon", "elev")},
                X_res=int(d["X_res"]),
                Y_res=int(d["Y_res"]),
                distortion_type=str(d.get("distortion_type", "poly3+radial")),
                x_poly_fwd=np.asarray(fwd_x, float),
                y_poly_fwd=np.asarray(fwd_y, float),
                x_poly_rev=np.asarray(d.get("x_poly_rev", fwd_x), float),
                y_poly_rev=np.asarray(d.get("y_poly_rev", fwd_y), float),
                **{k: bool(d.get(k, False)) for k in flags},  # RMS's default for older files
                Ho=float(d["Ho"]) if d.get("Ho") is not None else None,
                station_code=str(d.get("station_code", "None")),
                extra={k: v for k, v in d.items() if k not in known},
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, InputError):
                raise
            msg = f"platepar holds a value that is not a number ({err})"
            raise InputError(msg) from err


def read_platepar(path: str | os.PathLike[str]) -> Platepar:
    """Read an RMS platepar JSON file (``platepar_cmn2010.cal``).

    Raises
    ------
    InputError
        If the file is missing, not JSON (the old text format is not read),
        or lacks a required key.
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"{path}: no such platepar file"
        raise InputError(msg) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        msg = f"{path}: not a JSON platepar ({err}); the old CMN text format is not supported"
        raise InputError(msg) from err
    if not isinstance(d, dict):
        msg = f"{path}: not a JSON platepar (top level is {type(d).__name__}, not an object)"
        raise InputError(msg)
    try:
        return Platepar.from_dict(d)
    except InputError as err:
        msg = f"{path}: {err}"
        raise InputError(msg) from err


def write_platepar(platepar: Platepar, path: str | os.PathLike[str]) -> Path:
    """Write a platepar as the JSON RMS and SkyFit2 load (atomically).

    Raises
    ------
    InputError
        If ``platepar`` is not a :class:`Platepar`.
    """
    if not isinstance(platepar, Platepar):
        msg = f"platepar must be a Platepar, got {type(platepar).__name__}"
        raise InputError(msg)
    return write_json(platepar.to_dict(), path)


def _centre(pp: Platepar, jd):
    """FOV centre (J2000, radians) and position angle (deg) at ``jd``."""
    ra_c = np.radians(np.mod(pp.RA_d + _gmst_deg(jd) - pp.Ho + 360, 360))
    dec_c = np.radians(pp.dec_d) + np.zeros_like(ra_c)
    if pp.refraction:
        ra_c, dec_c = _eq_refraction(ra_c, dec_c, jd, pp.lat, pp.lon, True)
    ra_c, dec_c, pa = _precess_with_rotation(jd, J2000, ra_c, dec_c, np.radians(pp.pos_angle_ref))
    return ra_c, dec_c, np.degrees(pa)


def _radial_terms(pp: Platepar, poly: np.ndarray):
    """Distortion centre (px, from the image centre), aspect, asymmetry and k's of a radial type."""
    xr, yr = pp.X_res / 2.0, pp.Y_res / 2.0
    off = 0
    if pp.force_distortion_centre:
        x0, y0 = 0.5 / xr, 0.5 / yr
        off += 2
    else:
        x0, y0 = poly[0], poly[1]
    x0, y0 = x0 * xr, y0 * yr
    x0 = -xr + (x0 + xr) % pp.X_res
    y0 = -yr + (y0 + yr) % pp.Y_res
    if pp.equal_aspect:
        xy = 0.0
        off += 1
    else:
        xy = poly[2 - off]
    if pp.asymmetry_corr:
        a1, a2 = poly[3 - off], (poly[4 - off] * 2 * np.pi) % (2 * np.pi)
    else:
        a1 = a2 = 0.0
        off += 2
    ks = [poly[i - off] if poly.size > i - off else 0.0 for i in range(5, 5 + 4)]
    return x0, y0, xy, a1, a2, ks


def _r_corr(pp: Platepar, r, ks):
    out = r.copy()
    for k, p in zip(ks, _RADIAL_POWERS[pp.distortion_type], strict=False):
        out = out + k * r**p
    return out


def _poly3_offsets(cx: np.ndarray, cy: np.ndarray, x, y):
    """``(dx, dy)`` of the ``poly3+radial[3|5]`` types (12 terms, then ``x r**3``, ``x r**5``)."""
    r = np.hypot(x - cx[0], y - cy[0])
    out = []
    for c, ra, rb, u in ((cx, x * r, y * r, x), (cy, y * r, x * r, y)):
        d = (
            c[0] + c[1] * x + c[2] * y + c[3] * x**2 + c[4] * x * y + c[5] * y**2 + c[6] * x**3
            + c[7] * x**2 * y + c[8] * x * y**2 + c[9] * y**3 + c[10] * ra + c[11] * rb
        )  # fmt: skip
        for j, p in ((12, 3), (13, 5)):
            if c.size > j:
                d = d + c[j] * u * r**p
        out.append(d)
    return out[0], out[1]


def _as_jd(jd) -> np.ndarray:
    if isinstance(jd, Time):
        return np.asarray(jd.utc.jd, float)
    return np.asarray(jd, float)


def xy_to_radec(pp: Platepar, x, y, jd) -> tuple[np.ndarray, np.ndarray]:
    """Sky position (RA, Dec J2000, degrees) of pixels with a platepar (RMS ``cyXYToRADec``).

    Parameters
    ----------
    pp : Platepar
    x, y : array_like
        Pixel coordinates (0-based, x = column), one shape.
    jd : float, array_like or astropy.time.Time
        Julian date (UTC) of each point, or one for all.

    Returns
    -------
    ra, dec : ndarray
        Degrees, the broadcast shape of the inputs.
    """
    x, y, jd = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), _as_jd(jd))
    xi = x - pp.X_res / 2.0
    yi = y - pp.Y_res / 2.0
    if pp.distortion_type.startswith("poly3"):
        dx, dy = _poly3_offsets(pp.x_poly_fwd, pp.y_poly_fwd, xi, yi)
    else:
        x0, y0, xy, a1, a2, ks = _radial_terms(pp, pp.x_poly_fwd)
        r = np.hypot(xi - x0, (1.0 + xy) * (yi - y0))
        r = r + a1 * (1.0 + xy) * (yi - y0) * np.cos(a2) - a1 * (xi - x0) * np.sin(a2)
        r = r / (pp.X_res / 2.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(r == 0, 0.0, _r_corr(pp, r, ks) / r - 1.0)
        dx = (xi - x0) * scale - x0
        dy = (yi - y0) * scale * (1.0 + xy) - y0 * (1.0 + xy) + yi * xy
    xc = (xi + dx) / pp.F_scale
    yc = (yi + dy) / pp.F_scale
    ra_c, dec_c, pa = _centre(pp, jd)
    radius = np.radians(np.hypot(xc, yc))
    theta = np.mod(np.pi / 2 - np.radians(pa) + np.arctan2(yc, xc), 2 * np.pi)
    sin_t = np.sin(dec_c) * np.cos(radius) + np.cos(dec_c) * np.sin(radius) * np.cos(theta)
    dec = np.arctan2(sin_t, np.sqrt(np.maximum(1 - sin_t**2, 0)))
    s = np.sin(theta) * np.sin(radius) / np.cos(dec)
    co = (np.cos(radius) - np.sin(dec) * np.sin(dec_c)) / (np.cos(dec) * np.cos(dec_c))
    ra = np.mod(ra_c - np.arctan2(s, co) + 2 * np.pi, 2 * np.pi)
    if pp.refraction:
        ra, dec = _eq_refraction(ra, dec, jd, pp.lat, pp.lon, False)
    return np.degrees(ra), np.degrees(dec)


def radec_to_xy(pp: Platepar, ra, dec, jd) -> tuple[np.ndarray, np.ndarray]:
    """Pixel of sky positions (RA, Dec J2000, degrees) with a platepar (RMS ``cyraDecToXY``).

    Parameters
    ----------
    pp : Platepar
    ra, dec : array_like
        Degrees, one shape.
    jd : float, array_like or astropy.time.Time
        Julian date (UTC), one or one per point.

    Returns
    -------
    x, y : ndarray
        Pixel coordinates (0-based, x = column); points more than 180 deg
        from the centre are meaningless.
    """
    ra, dec, jd = np.broadcast_arrays(np.asarray(ra, float), np.asarray(dec, float), _as_jd(jd))
    ra, dec = np.radians(ra), np.radians(dec)
    ra_c, dec_c, pa = _centre(pp, jd)
    if pp.refraction:
        ra, dec = _eq_refraction(ra, dec, jd, pp.lat, pp.lon, True)
    cosr = np.sin(dec) * np.sin(dec_c) + np.cos(dec) * np.cos(dec_c) * np.cos(ra - ra_c)
    radius = np.arccos(np.clip(cosr, -1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        sin_ang = np.cos(dec) * np.sin(ra - ra_c) / np.sin(radius)
        cos_ang = (np.sin(dec) - np.sin(dec_c) * np.cos(radius)) / (np.cos(dec_c) * np.sin(radius))
    theta = -np.arctan2(sin_ang, cos_ang) + np.radians(pa) - np.pi / 2
    x = np.where(radius == 0, 0.0, np.degrees(radius) * np.cos(theta) * pp.F_scale)
    y = np.where(radius == 0, 0.0, np.degrees(radius) * np.sin(theta) * pp.F_scale)
    if pp.distortion_type.startswith("poly3"):
        dx, dy = _poly3_offsets(pp.x_poly_rev, pp.y_poly_rev, x, y)
    else:
        x0, y0, xy, a1, a2, ks = _radial_terms(pp, pp.x_poly_rev)
        r = np.hypot(x, y)
        r = r + a1 * y * np.cos(a2) - a1 * x * np.sin(a2)
        r = r / (pp.X_res / 2.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(r == 0, 0.0, _r_corr(pp, r, ks) / r - 1.0)
        dx = x * scale - x0
        dy = y * scale / (1.0 + xy) - y0 + y * (1.0 - 1.0 / (1.0 + xy))
    return x - dx + pp.X_res / 2.0, y - dy + pp.Y_res / 2.0


def _sep_deg(ra0, dec0, ra1, dec1):
    """Angular separation in degrees of (RA, Dec) pairs in degrees."""
    ra0, dec0, ra1, dec1 = (np.radians(np.asarray(v, float)) for v in (ra0, dec0, ra1, dec1))
    c = np.sin(dec0) * np.sin(dec1) + np.cos(dec0) * np.cos(dec1) * np.cos(ra1 - ra0)
    return np.degrees(np.arccos(np.clip(c, -1, 1)))


def radec_to_altaz(pp: Platepar, ra, dec, jd) -> tuple[np.ndarray, np.ndarray]:
    """Altitude and azimuth (deg, azimuth N through E) at the platepar's station, as RMS does.

    RA, Dec (J2000, degrees) are precessed to the date and refracted when the
    platepar says so (``refraction``); ``jd`` is one Julian date (UTC) or one
    per point (float, array or :class:`~astropy.time.Time`).
    """
    ra, dec, jd = np.broadcast_arrays(np.asarray(ra, float), np.asarray(dec, float), _as_jd(jd))
    az, el = _radec_to_altaz_rms(np.radians(ra), np.radians(dec), jd, pp.lat, pp.lon, pp.refraction)
    return np.degrees(el), np.mod(np.degrees(az), 360.0)


def _fov_size(pp: Platepar) -> tuple[float, float]:
    """Horizontal and vertical FOV in degrees, between the middles of the edges (as RMS)."""
    w, h = pp.X_res, pp.Y_res
    ra, dec = xy_to_radec(pp, [0, w, w / 2, w / 2], [h / 2, h / 2, 0, h], pp.JD)
    sep = _sep_deg(ra[[0, 2]], dec[[0, 2]], ra[[1, 3]], dec[[1, 3]])
    return float(sep[0]), float(sep[1])


# -- the camera view and the fit ------------------------------------------------------------


@dataclass
class PlateparCamera:
    """A platepar as a skysift camera (the :class:`~skysift.calibration.camera.CameraModel`
    protocol): pixel <-> (RA, Dec) and <-> (alt, az) at one time.

    Alt/az follow RMS (precession to the date, refraction as the platepar
    says); azimuth from north through east, degrees.

    Parameters
    ----------
    platepar : Platepar
    time : astropy.time.Time, optional
        Time the RA/Dec mapping holds for. Default the platepar's ``JD``.
    """

    platepar: Platepar
    time: Time | None = None
    model_type: str = "platepar"

    def __post_init__(self) -> None:
        if self.time is None:
            self.time = self.platepar.time

    @property
    def site(self) -> Site:
        """The station."""
        return self.platepar.site

    @property
    def model(self) -> Platepar:
        """The platepar (for code that reads ``camera.model``)."""
        return self.platepar

    def _jd(self) -> float:
        return float(self.time.utc.jd)  # type: ignore[union-attr]

    def pixel_to_radec(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """RA and Dec (deg, J2000) of pixels."""
        return xy_to_radec(self.platepar, x, y, self._jd())

    def radec_to_pixel(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of sky positions (deg, J2000)."""
        return radec_to_xy(self.platepar, ra, dec, self._jd())

    def pixel_to_altaz(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Altitude and azimuth (deg) of pixels."""
        return radec_to_altaz(self.platepar, *self.pixel_to_radec(x, y), self._jd())

    def altaz_to_pixel(self, alt, az) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of horizontal positions (deg)."""
        pp = self.platepar
        el = np.radians(np.asarray(alt, float))
        if pp.refraction:
            el = _refract_apparent_to_true(el)
        ra, dec = _altaz_to_radec(np.radians(np.asarray(az, float)), el, self._jd(), pp.lat, pp.lon)
        ra, dec = _precess(self._jd(), J2000, ra, dec)
        return self.radec_to_pixel(np.degrees(ra), np.degrees(dec))


def camera_from_platepar(pp: Platepar, time: Time | str | None = None) -> PlateparCamera:
    """A skysift camera model from a platepar, so a GMN station's calibration can be reused.

    Parameters
    ----------
    pp : Platepar
    time : astropy.time.Time or str, optional
        Time the RA/Dec mapping holds for (UTC); default the platepar's ``JD``.

    Returns
    -------
    PlateparCamera

    Raises
    ------
    InputError
        If ``pp`` is not a :class:`Platepar` or ``time`` is not a time.
    """
    if not isinstance(pp, Platepar):
        msg = f"pp must be a Platepar, got {type(pp).__name__}"
        raise InputError(msg)
    if time is not None and not isinstance(time, Time):
        try:
            time = Time(time, scale="utc")
        except ValueError as err:
            msg = f"time must be ISO 8601 UTC, got {time!r}"
            raise InputError(msg) from err
    return PlateparCamera(pp, time)


@dataclass
class PlateparFit:
    """A platepar fitted to another camera model, with how well it fits.

    Attributes
    ----------
    platepar : Platepar
    rms_px, max_px : float
        Sky -> pixel (``radec_to_xy``) residuals over the fit grid, pixels.
    rms_fwd_px, max_fwd_px : float
        Pixel -> sky (``xy_to_radec``) residuals, as angles times the plate
        scale (pixels).
    n_points : int
        Grid points used.
    """

    platepar: Platepar
    rms_px: float
    max_px: float
    rms_fwd_px: float
    max_fwd_px: float
    n_points: int


def _sky_residual(ra1, dec1, ra0, dec0, scale):
    d_ra = (np.mod(ra1 - ra0 + 180.0, 360.0) - 180.0) * np.cos(np.radians(dec0))
    return np.concatenate([d_ra, dec1 - dec0]) * scale


def platepar_from_calibration(
    calibration: Any,
    shape: tuple[int, int] | None = None,
    time: Time | str | None = None,
    *,
    distortion_type: str | None = None,
    n_grid: int = 24,
    min_alt: float = 5.0,
    station_code: str = "None",
) -> PlateparFit:
    """Fit an RMS platepar to a skysift calibration by least squares over a pixel grid.

    The grid (``n_grid`` x ``n_grid`` pixels over the image, keeping points
    at least ``min_alt`` above the horizon where alt/az are known) is mapped
    to RA/Dec with the calibration's camera; the platepar's pointing, scale
    and sky -> pixel coefficients are fitted to put those sky positions back
    on their pixels, then the pixel -> sky coefficients with the pointing held.

    Parameters
    ----------
    calibration : CalibratedFrame or camera
        A :class:`~skysift.calibration.frame.CalibratedFrame` (its ``camera``,
        ``site`` and ``time`` are used) or a camera model with ``site`` and
        ``time`` (``FisheyeCamera``, ``WCSCamera``).
    shape : (int, int), optional
        Image ``(H, W)`` in pixels. Default the calibration frame's, or the
        fisheye model's.
    time : astropy.time.Time or str, optional
        Reference time (UTC). Default the calibration's (mid-exposure) time.
    distortion_type : str, optional
        Default ``"radial7-odd"`` for a fisheye camera, ``"poly3+radial"`` otherwise.
    n_grid : int, optional
        Grid points per side. Default 24.
    min_alt : float, optional
        Lowest altitude of a grid point, degrees. Default 5.
    station_code : str, optional

    Returns
    -------
    PlateparFit
        The platepar and its fit residuals in pixels.

    Raises
    ------
    InputError
        If the site, time or image shape is unknown, fewer than 20 grid
        points are on the sky, the image is mirrored (a platepar cannot
        hold a mirror image), or ``distortion_type`` is unknown.
    """
    camera = getattr(calibration, "camera", calibration)
    site = getattr(calibration, "site", None) or getattr(camera, "site", None)
    t = time if time is not None else (getattr(calibration, "time", None) or camera.time)
    if t is not None and not isinstance(t, Time):
        t = Time(t, scale="utc")
    if shape is None:
        frame = getattr(calibration, "frame", None)
        shape = getattr(frame, "shape", None) or getattr(
            getattr(camera, "model", None), "shape", None
        )
    if site is None or t is None or shape is None:
        msg = "a platepar needs the calibration's site, time and image shape (give shape=, time=)"
        raise InputError(msg)
    kind = getattr(camera, "model_type", "")
    dist = distortion_type or ("radial7-odd" if kind == "fisheye" else "poly3+radial")
    if dist not in DISTORTION_TYPES:
        msg = f"unknown distortion_type {dist!r}; known: {', '.join(DISTORTION_TYPES)}"
        raise InputError(msg)
    h, w = int(shape[0]), int(shape[1])
    jd = float(t.utc.jd)
    gx, gy = np.meshgrid(np.linspace(0, w - 1, n_grid), np.linspace(0, h - 1, n_grid))
    gx, gy = gx.ravel(), gy.ravel()
    with np.errstate(all="ignore"):
        ra, dec = (np.asarray(v, float) for v in camera.pixel_to_radec(gx, gy))
        ok = np.isfinite(ra) & np.isfinite(dec)
        try:
            alt, _ = camera.pixel_to_altaz(gx, gy)
            ok &= np.asarray(alt, float) >= min_alt
        except InputError:
            pass
    gx, gy, ra, dec = gx[ok], gy[ok], ra[ok], dec[ok]
    with np.errstate(all="ignore"):
        # keep pixels the camera maps back onto themselves (beyond a fisheye's horizon
        # its radial polynomial may have no inverse)
        bx, by = (np.asarray(v, float) for v in camera.radec_to_pixel(ra, dec))
        ok = np.hypot(bx - gx, by - gy) < 0.05
    gx, gy, ra, dec = gx[ok], gy[ok], ra[ok], dec[ok]
    if gx.size < 20:
        msg = f"only {gx.size} grid pixels map to the sky above {min_alt:g} deg; need 20"
        raise InputError(msg)
    # starting values: centre, scale and north direction of the camera itself
    cx, cy = w / 2.0, h / 2.0
    (ra0,), (dec0,) = camera.pixel_to_radec(np.array([cx]), np.array([cy]))
    (ra1,), (dec1,) = camera.pixel_to_radec(np.array([cx + 10.0]), np.array([cy]))
    f_scale = 10.0 / max(float(_sep_deg(ra0, dec0, ra1, dec1)), 1e-6)
    north = 90.0 - 0.5 if dec0 > 89.0 else dec0 + 0.5
    ra_n = ra0 if dec0 <= 89.0 else ra0 + 180.0
    xn, yn = (float(np.asarray(v).ravel()[0]) for v in camera.radec_to_pixel([ra_n], [north]))
    ra_e, dec_e = ra0 + 0.5 / max(math.cos(math.radians(dec0)), 1e-3), dec0
    xe, ye = (float(np.asarray(v).ravel()[0]) for v in camera.radec_to_pixel([ra_e], [dec_e]))
    nx, ny, ex, ey = xn - cx, yn - cy, xe - cx, ye - cy
    if nx * ey - ny * ex > 0:  # RMS images have east clockwise of north (x right, y down)
        msg = "the calibration is a mirror image; an RMS platepar cannot represent it"
        raise InputError(msg)
    pa0 = math.degrees(math.atan2(nx, -ny))
    base = Platepar(
        lat=site.lat, lon=site.lon, elev=site.height, JD=jd, X_res=w, Y_res=h,
        RA_d=0.0, dec_d=0.0, pos_angle_ref=0.0, F_scale=f_scale, distortion_type=dist,
        station_code=station_code,
    )  # fmt: skip
    n_poly = base.poly_length
    radial = dist.startswith("radial")
    # the pointing at JD is RA_d itself: convert the J2000 centre to "of date, true" coordinates
    ra_c, dec_c = _precess(J2000, jd, np.radians(ra0), np.radians(dec0))
    if base.refraction:
        # refraction is added back by the mapping; start from the un-refracted centre
        az, el = _radec_to_altaz(ra_c, dec_c, jd, site.lat, site.lon)
        ra_c, dec_c = _altaz_to_radec(az, _refract_apparent_to_true(el), jd, site.lat, site.lon)
    start_pointing = [float(np.degrees(ra_c)), float(np.degrees(dec_c)), pa0, f_scale]

    def make(p: np.ndarray, rev: np.ndarray | None, fwd: np.ndarray | None) -> Platepar:
        pp = Platepar(**{**base.__dict__, "extra": {}})
        pp.RA_d, pp.dec_d, pp.pos_angle_ref, pp.F_scale = p[0] % 360, p[1], p[2] % 360, abs(p[3])
        if rev is not None:
            if radial:
                pp.x_poly_rev = rev.copy()
            else:
                pp.x_poly_rev, pp.y_poly_rev = rev[:n_poly].copy(), rev[n_poly:].copy()
        if fwd is not None:
            if radial:
                pp.x_poly_fwd = fwd.copy()
            else:
                pp.x_poly_fwd, pp.y_poly_fwd = fwd[:n_poly].copy(), fwd[n_poly:].copy()
        return pp

    rev0 = np.zeros(n_poly if radial else 2 * n_poly)

    def res_rev(q: np.ndarray) -> np.ndarray:
        pp = make(q[:4], q[4:], None)
        x, y = radec_to_xy(pp, ra, dec, jd)
        return np.concatenate([x - gx, y - gy])

    q0 = np.concatenate([start_pointing, rev0])
    # pointing and scale first, then everything
    fit0 = least_squares(lambda p: res_rev(np.concatenate([p, rev0])), q0[:4], method="lm")
    q0[:4] = fit0.x
    fit = least_squares(res_rev, q0, method="lm", x_scale="jac", max_nfev=4000)
    pointing, rev = fit.x[:4], fit.x[4:]

    def res_fwd(c: np.ndarray) -> np.ndarray:
        pp = make(pointing, rev, c)
        r2, d2 = xy_to_radec(pp, gx, gy, jd)
        return _sky_residual(r2, d2, ra, dec, pp.F_scale)

    fwd0 = rev.copy()
    if radial:
        fwd0[2:] = -fwd0[2:]  # the inverse of a small radial term is about its negative
    else:
        fwd0 = -fwd0
        fwd0[0], fwd0[n_poly] = rev[0], rev[n_poly]
    fitf = least_squares(res_fwd, fwd0, method="lm", x_scale="jac", max_nfev=4000)
    pp = make(pointing, rev, fitf.x)
    x, y = radec_to_xy(pp, ra, dec, jd)
    err = np.hypot(x - gx, y - gy)
    r2, d2 = xy_to_radec(pp, gx, gy, jd)
    fr = _sky_residual(r2, d2, ra, dec, pp.F_scale).reshape(2, -1)
    ferr = np.hypot(fr[0], fr[1])
    return PlateparFit(
        platepar=pp,
        rms_px=float(np.sqrt(np.mean(err**2))),
        max_px=float(err.max()),
        rms_fwd_px=float(np.sqrt(np.mean(ferr**2))),
        max_fwd_px=float(ferr.max()),
        n_points=int(gx.size),
    )
