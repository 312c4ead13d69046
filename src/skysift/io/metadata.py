"""Metadata parsing for the readers: times, exposures and sites from FITS headers and EXIF.

Every parser here is lenient about the *file*: a header value that cannot be
understood is skipped with a :class:`MetadataWarning` (the image itself is
still usable), while the user's own overrides (``time=``, ``site=``,
``exposure=``) are strict and raise :class:`~skysift.errors.InputError`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import EarthLocation
from astropy.io import fits
from astropy.time import Time, TimeDelta

from skysift.errors import InputError
from skysift.io.frame import Site

__all__ = [
    "MetadataWarning",
    "parse_time",
    "parse_angle",
    "as_site",
    "as_exposure",
    "fits_time",
    "fits_exposure",
    "fits_site",
    "exif_time",
    "exif_exposure",
    "exif_site",
]


class MetadataWarning(UserWarning):
    """A metadata value in a file could not be understood and was ignored."""


# -- times ----------------------------------------------------------------------------------

_ISO_RE = re.compile(
    r"""^\s*(?P<y>\d{4})[-:](?P<mo>\d{1,2})[-:](?P<d>\d{1,2})
    (?:[T\s]+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{1,2}(?:\.\d*)?))?)?
    \s*(?P<tz>Z|UTC|UT|[+-]\d{2}(?::?\d{2})?)?\s*$""",
    re.VERBOSE | re.IGNORECASE,
)
# Pre-1999 FITS dates, 'DD/MM/YY' meaning 19YY. Some Y2K-era software wrote
# years since 1900 with three digits ('26/07/102' = 2002-07-26); accept both.
_OLD_FITS_DATE_RE = re.compile(r"^\s*(?P<d>\d{1,2})/(?P<mo>\d{1,2})/(?P<y>\d{2,3})\s*$")
_CLOCK_RE = re.compile(r"^\s*(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{1,2}(?:\.\d*)?))?\s*$")


def _offset_seconds(tz: str | None) -> float:
    """Seconds east of UTC for a ``Z``/``+hh:mm``/``-hhmm`` suffix (0 for none)."""
    if not tz or tz.upper() in ("Z", "UTC", "UT"):
        return 0.0
    sign = -1.0 if tz[0] == "-" else 1.0
    digits = tz[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4]) if len(digits) >= 4 else 0
    return sign * (3600.0 * hours + 60.0 * minutes)


def _utc_time(
    y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: float = 0.0, offset_s: float = 0.0
) -> Time:
    """A UTC :class:`Time` from calendar fields in a zone ``offset_s`` east of UTC."""
    whole = int(s)
    frac = f"{s - whole:.9f}"[1:]  # ".xxxxxxxxx"
    t = Time(f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{whole:02d}{frac}", scale="utc")
    if offset_s:
        t = t - TimeDelta(offset_s, format="sec")
    return t


def _parse_iso(text: str) -> Time | None:
    """Parse ISO 8601-like text (also EXIF's ``YYYY:MM:DD HH:MM:SS``); ``None`` if no match."""
    m = _ISO_RE.match(text)
    if m is None:
        return None
    s = float(m["s"]) if m["s"] else 0.0
    return _utc_time(
        int(m["y"]),
        int(m["mo"]),
        int(m["d"]),
        int(m["h"] or 0),
        int(m["mi"] or 0),
        s,
        _offset_seconds(m["tz"]),
    )


def parse_time(value: Any, *, what: str = "time") -> Time:
    """Convert a user-supplied time to a scalar UTC :class:`~astropy.time.Time`.

    Parameters
    ----------
    value : str, datetime or astropy.time.Time
        An ISO 8601 string (``"2018-08-17T00:52:21"``, a space instead of ``T``,
        an optional ``Z`` or ``+hh:mm`` offset; naive means UTC), a
        :class:`datetime.datetime` (naive means UTC) or a scalar ``Time``.
    what : str
        The name used in error messages.

    Returns
    -------
    astropy.time.Time
        A scalar time in the UTC scale.

    Raises
    ------
    InputError
        If the value cannot be understood as one time.
    """
    try:
        if isinstance(value, Time):
            if not value.isscalar:
                msg = f"{what} must be a single time, got an array of shape {value.shape}"
                raise InputError(msg)
            return value.utc
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(timezone.utc).replace(tzinfo=None)
            return Time(value, scale="utc")
        if isinstance(value, str):
            parsed = _parse_iso(value)
            if parsed is not None:
                return parsed
            return Time(value.strip(), scale="utc")
    except InputError:
        raise
    except (ValueError, TypeError, OverflowError) as err:
        msg = f"{what} must be an ISO 8601 time such as '2018-08-17T00:52:21', got {value!r}"
        raise InputError(msg) from err
    msg = f"{what} must be an ISO 8601 string, datetime or astropy Time, got {value!r}"
    raise InputError(msg)


def _clean(value: Any) -> str | None:
    """A header value as stripped text, or ``None`` when absent/blank."""
    if value is None or isinstance(value, fits.card.Undefined):
        return None
    text = str(value).strip()
    return text or None


def _header_get(header: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, Any] | None:
    for key in keys:
        if key in header:
            value = header[key]
            if _clean(value) is not None:
                return key, value
    return None


_DATE_KEYS = ("DATE-OBS", "DATE_OBS", "DATEOBS", "DATE-BEG")
_CLOCK_KEYS = ("TIME-OBS", "TIME_OBS", "TIMEOBS", "UT", "UTC", "UT-OBS", "UTSTART", "UT-START")
_DATETIME_KEYS = ("TIMEUTC", "UTC", "UT", "DATETIME")
_MJD_KEYS = ("MJD-OBS", "MJD_OBS", "MJD-BEG")


def _date_fields(text: str) -> tuple[int, int, int, re.Match[str] | None] | None:
    """(year, month, day, iso-match) of a date string, ``None`` if it is not one."""
    m = _ISO_RE.match(text)
    if m is not None:
        return int(m["y"]), int(m["mo"]), int(m["d"]), m
    m = _OLD_FITS_DATE_RE.match(text)
    if m is not None:
        return 1900 + int(m["y"]), int(m["mo"]), int(m["d"]), None
    return None


def fits_time(header: Mapping[str, Any], *, source: str = "") -> tuple[Time | None, str | None]:
    """Observation time from a FITS header.

    Looked up in this order: ``DATE-OBS`` (also ``DATE_OBS``, ``DATEOBS``,
    ``DATE-BEG``) with a time part; its date part plus a clock time in
    ``TIME-OBS``, ``UT``, ``UTC``, ``UT-OBS``, ``UTSTART`` or ``UT-START``;
    a full date and time in ``TIMEUTC``, ``UTC``, ``UT`` or ``DATETIME``;
    ``MJD-OBS`` (also ``MJD_OBS``, ``MJD-BEG``). The old ``DD/MM/YY`` form of
    ``DATE-OBS`` is read as 19YY (and ``DD/MM/1YY`` as 19YY + 100, a Y2K-era
    habit). All times are taken as UTC; by the FITS standard ``DATE-OBS`` is
    the *start* of the exposure, and no shift to mid-exposure is made.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The header.
    source : str
        The file name, for warnings.

    Returns
    -------
    time : astropy.time.Time or None
        The time, or ``None`` when the header has none (a date without a clock
        time gives ``None`` too).
    key : str or None
        The keyword(s) the time came from, e.g. ``"DATE-OBS+TIME-OBS"``.
    """
    where = f" in {source}" if source else ""
    date = _header_get(header, _DATE_KEYS)
    if date is not None:
        key, raw = date
        text = _clean(raw) or ""
        fields = _date_fields(text)
        if fields is None:
            warnings.warn(
                f"ignoring unreadable {key}={text!r}{where}", MetadataWarning, stacklevel=3
            )
        else:
            y, mo, d, iso = fields
            try:
                if iso is not None and iso["h"] is not None:
                    return _parse_iso(text), key
                for ckey in _CLOCK_KEYS:
                    ctext = _clean(header.get(ckey))
                    c = _CLOCK_RE.match(ctext) if ctext else None
                    if c is not None:
                        s = float(c["s"]) if c["s"] else 0.0
                        return _utc_time(y, mo, d, int(c["h"]), int(c["mi"]), s), f"{key}+{ckey}"
            except ValueError as err:
                warnings.warn(
                    f"ignoring impossible date/time in {key}={text!r}{where}: {err}",
                    MetadataWarning,
                    stacklevel=3,
                )
    for key in _DATETIME_KEYS:
        text = _clean(header.get(key))
        if text is None:
            continue
        m = _ISO_RE.match(text)
        if m is not None and m["h"] is not None:
            try:
                return _parse_iso(text), key
            except ValueError:
                continue
    found = _header_get(header, _MJD_KEYS)
    if found is not None:
        key, raw = found
        try:
            mjd = float(raw)
            if math.isfinite(mjd):
                return Time(mjd, format="mjd", scale="utc"), key
        except (TypeError, ValueError):
            pass
        warnings.warn(f"ignoring unreadable {key}={raw!r}{where}", MetadataWarning, stacklevel=3)
    return None, None


def exif_time(tags: Mapping[str, Any]) -> tuple[Time | None, str | None]:
    """Capture time from EXIF tags (as returned by :func:`exifread.process_file`).

    Uses ``DateTimeOriginal`` (then ``DateTimeDigitized``, then the image
    ``DateTime``), adds the matching ``SubSecTime*`` fraction and subtracts the
    matching ``OffsetTime*`` zone. **A time without a zone offset is taken as
    UTC** (sky cameras normally run on UTC; consumer cameras often do not, in
    which case pass ``time=``).

    Returns
    -------
    time : astropy.time.Time or None
    key : str or None
        The EXIF tag used.
    """
    for key, sub_key, off_key in (
        ("EXIF DateTimeOriginal", "EXIF SubSecTimeOriginal", "EXIF OffsetTimeOriginal"),
        ("EXIF DateTimeDigitized", "EXIF SubSecTimeDigitized", "EXIF OffsetTimeDigitized"),
        ("Image DateTime", "EXIF SubSecTime", "EXIF OffsetTime"),
    ):
        text = _clean(tags.get(key))
        if text is None:
            continue
        m = _ISO_RE.match(text)
        if m is None or m["h"] is None:
            continue
        sub = _clean(tags.get(sub_key))
        off = _clean(tags.get(off_key))
        s = float(m["s"] or 0.0)
        if sub and sub.isdigit():
            s += float("0." + sub)
        tz = off if off and re.fullmatch(r"[+-]\d{2}:?\d{2}", off) else m["tz"]
        try:
            t = _utc_time(
                int(m["y"]),
                int(m["mo"]),
                int(m["d"]),
                int(m["h"]),
                int(m["mi"]),
                s,
                _offset_seconds(tz),
            )
        except ValueError:
            continue
        return t, key.split()[-1]
    return None, None


# -- exposure -------------------------------------------------------------------------------

_EXPOSURE_KEYS = ("EXPTIME", "EXPOSURE", "EXP_TIME", "EXPOSURE_TIME", "ITIME")


def _number(value: Any) -> float | None:
    """A finite float from a number or numeric text, else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return x if math.isfinite(x) else None


def _positive(value: Any) -> float | None:
    x = _number(value)
    return x if x is not None and x > 0 else None


def fits_exposure(header: Mapping[str, Any]) -> tuple[float | None, str | None]:
    """Exposure time in seconds from ``EXPTIME`` / ``EXPOSURE`` / ``EXP_TIME`` / ``ITIME``.

    String values (``'120.0   '``) are accepted; zero, negative or unreadable
    values are ignored. Returns ``(seconds or None, keyword or None)``.
    """
    for key in _EXPOSURE_KEYS:
        if key in header:
            x = _positive(header[key])
            if x is not None:
                return x, key
    return None, None


def exif_exposure(tags: Mapping[str, Any]) -> float | None:
    """Exposure time in seconds from the EXIF ``ExposureTime`` tag, or ``None``."""
    tag = tags.get("EXIF ExposureTime")
    values = getattr(tag, "values", None)
    if not values:
        return None
    return _positive(values[0])


def as_exposure(value: Any, *, what: str = "exposure") -> float:
    """Validate a user-supplied exposure time (seconds, finite, > 0).

    Raises
    ------
    InputError
        If it is not a positive finite number.
    """
    x = _positive(value)
    if x is None:
        msg = f"{what} must be a positive number of seconds, got {value!r}"
        raise InputError(msg)
    return x


# -- sites ----------------------------------------------------------------------------------

_ANGLE_RE = re.compile(
    r"""^\s*(?P<sign>[+-])?\s*(?P<d>\d+(?:\.\d*)?)
    (?:\s*[:d°\s]\s*(?P<m>\d+(?:\.\d*)?)
    (?:\s*[:m'\s]\s*(?P<s>\d+(?:\.\d*)?)\s*(?:s|")?)?)?
    \s*(?P<hemi>[NSEW])?\s*$""",
    re.VERBOSE | re.IGNORECASE,
)


def parse_angle(value: Any) -> float | None:
    """Degrees from a number or a sexagesimal string, ``None`` if unreadable.

    Accepts ``-32.38``, ``'-32:22:50'``, ``'-0:30:00'`` (negative), ``'32 22 50 S'``,
    ``'20d48m40s E'``. A trailing ``S`` or ``W`` makes the angle negative.
    """
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        x = float(value)
        return x if math.isfinite(x) else None
    text = _clean(value)
    if text is None:
        return None
    m = _ANGLE_RE.match(text)
    if m is None:
        return None
    deg = float(m["d"]) + float(m["m"] or 0) / 60.0 + float(m["s"] or 0) / 3600.0
    negative = (m["sign"] == "-") != (m["hemi"] is not None and m["hemi"].upper() in "SW")
    return -deg if negative else deg


# (latitude keys, longitude keys, height keys). ELEVATIO and ALTITUDE are left
# out on purpose: many headers use them for the pointing, not the site.
_SITE_KEYS = (
    (("SITELAT",), ("SITELONG", "SITELON"), ("SITEELEV", "SITEALT")),
    (("OBSLAT",), ("OBSLON", "OBSLONG"), ("OBSALT", "OBSELEV")),
    (("LAT-OBS",), ("LONG-OBS", "LON-OBS"), ("ALT-OBS", "ELEV-OBS")),
    (("LATITUDE",), ("LONGITUD", "LONGITUDE"), ("HEIGHT",)),
)
_WEST_POSITIVE_RE = re.compile(
    r"\+\s*W\b|\bW\s*\+|west\s*(is\s*)?positive|positive\s*(to\s*(the\s*)?)?west|west\s+long",
    re.IGNORECASE,
)


def fits_site(header: fits.Header, *, source: str = "") -> tuple[Site | None, str | None]:
    """Observing site from a FITS header.

    Reads the first complete latitude/longitude pair of ``SITELAT``/``SITELONG``
    (height ``SITEELEV``), ``OBSLAT``/``OBSLON`` (``OBSALT``), ``LAT-OBS``/
    ``LONG-OBS`` (``ALT-OBS``) or ``LATITUDE``/``LONGITUD`` (``HEIGHT``), in
    decimal degrees or sexagesimal strings, height in metres; then the
    geocentric ``OBSGEO-X/Y/Z`` (metres). Longitudes are east-positive unless
    the card comment says west-positive (e.g. ``'degrees +W'``). Values out of
    range are ignored with a :class:`MetadataWarning`.

    Returns
    -------
    site : Site or None
    keys : str or None
        The keywords used, e.g. ``"LATITUDE,LONGITUD"``.
    """
    where = f" in {source}" if source else ""
    for lat_keys, lon_keys, h_keys in _SITE_KEYS:
        lat_found = _header_get(header, lat_keys)
        lon_found = _header_get(header, lon_keys)
        if lat_found is None or lon_found is None:
            continue
        lat = parse_angle(lat_found[1])
        lon = parse_angle(lon_found[1])
        if lat is None or lon is None:
            warnings.warn(
                f"ignoring unreadable site {lat_found[0]}={lat_found[1]!r} "
                f"{lon_found[0]}={lon_found[1]!r}{where}",
                MetadataWarning,
                stacklevel=3,
            )
            continue
        comment = header.comments[lon_found[0]] if isinstance(header, fits.Header) else ""
        if _WEST_POSITIVE_RE.search(comment or ""):
            lon = -lon
        used = [lat_found[0], lon_found[0]]
        height = 0.0
        h_found = _header_get(header, h_keys)
        if h_found is not None:
            h = _number(h_found[1])
            if h is not None and -500.0 <= h <= 10000.0:
                height = h
                used.append(h_found[0])
        try:
            return Site(lat, lon, height), ",".join(used)
        except InputError as err:
            warnings.warn(f"ignoring header site{where}: {err}", MetadataWarning, stacklevel=3)
    if all(k in header for k in ("OBSGEO-X", "OBSGEO-Y", "OBSGEO-Z")):
        try:
            xyz = [float(header[k]) for k in ("OBSGEO-X", "OBSGEO-Y", "OBSGEO-Z")]
            loc = EarthLocation.from_geocentric(*xyz, unit=u.m)
            geo = loc.to_geodetic()
            site = Site(float(geo.lat.deg), float(geo.lon.deg), float(geo.height.to_value(u.m)))
            return site, "OBSGEO-X,OBSGEO-Y,OBSGEO-Z"
        except (TypeError, ValueError, InputError) as err:
            warnings.warn(
                f"ignoring header OBSGEO site{where}: {err}", MetadataWarning, stacklevel=3
            )
    return None, None


def exif_site(tags: Mapping[str, Any], *, source: str = "") -> Site | None:
    """Observing site from EXIF GPS tags (``GPSLatitude``/``GPSLongitude``/``GPSAltitude``)."""

    def dms(key: str) -> float | None:
        values = getattr(tags.get(key), "values", None)
        if not values:
            return None
        try:
            parts = [float(v) for v in values][:3]
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        parts += [0.0] * (3 - len(parts))
        return parts[0] + parts[1] / 60.0 + parts[2] / 3600.0

    lat = dms("GPS GPSLatitude")
    lon = dms("GPS GPSLongitude")
    if lat is None or lon is None:
        return None
    if str(tags.get("GPS GPSLatitudeRef", "N")).strip().upper().startswith("S"):
        lat = -lat
    if str(tags.get("GPS GPSLongitudeRef", "E")).strip().upper().startswith("W"):
        lon = -lon
    height = 0.0
    alt = getattr(tags.get("GPS GPSAltitude"), "values", None)
    if alt:
        try:
            height = float(alt[0])
        except (TypeError, ValueError, ZeroDivisionError):
            height = 0.0
        ref = getattr(tags.get("GPS GPSAltitudeRef"), "values", None)
        if ref and ref[0] in (1, b"\x01", "1"):
            height = -height
        if not math.isfinite(height) or not -500.0 <= height <= 10000.0:
            height = 0.0
    try:
        return Site(lat, lon, height)
    except InputError as err:
        where = f" in {source}" if source else ""
        warnings.warn(f"ignoring EXIF GPS site{where}: {err}", MetadataWarning, stacklevel=3)
        return None


def as_site(value: Any) -> Site:
    """Validate a user-supplied site.

    Parameters
    ----------
    value : Site, tuple or dict
        A :class:`Site`, ``(lat, lon)`` or ``(lat, lon, height)`` in degrees,
        degrees and metres, or a dict with ``lat``, ``lon`` and optional ``height``.

    Raises
    ------
    InputError
        If the value has the wrong form or is out of range.
    """
    if isinstance(value, Site):
        return value
    if isinstance(value, Mapping):
        lat, lon, height = value.get("lat"), value.get("lon"), value.get("height", 0.0)
    elif isinstance(value, (tuple, list)) and len(value) in (2, 3):
        lat, lon, height = (*value, 0.0)[:3]
    else:
        msg = f"site must be a Site, (lat, lon[, height]) or a dict, got {value!r}"
        raise InputError(msg)
    parts = (parse_angle(lat), parse_angle(lon), _number(height))
    if any(p is None for p in parts):
        msg = f"site must be (lat, lon[, height]) in degrees, degrees, metres, got {value!r}"
        raise InputError(msg)
    return Site(*parts)  # type: ignore[arg-type]
