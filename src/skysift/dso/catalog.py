"""Catalogued deep-sky objects and bright stars in a plate-solved field.

Deep-sky objects come from OpenNGC (Mattia Verga and contributors,
https://github.com/mattiaverga/OpenNGC), read from the SQLite database that
the ``pyongc`` package ships (code MIT, data CC-BY-SA-4.0): NGC, IC and
addendum objects with their Messier numbers, Caldwell numbers (from the
identifiers) and common names; duplicate records (``Dup``) are folded into the
object they duplicate (their names become ``aliases``) and nonexistent ones
(``NonEx``) are dropped. Bright stars come from skysift's Hipparcos catalogue
(:func:`skysift.calibration.catalog.load_hipparcos`) with IAU proper names.

Any output that lists these objects must credit OpenNGC under CC-BY-SA-4.0;
:data:`OPENNGC_CREDIT` is written into the tables' metadata.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import warnings

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from skysift.calibration.catalog import load_hipparcos, star_name
from skysift.errors import InputError, NoDetectionsWarning

__all__ = ["OPENNGC_CREDIT", "load_openngc", "objects_in_field", "TYPE_NAMES", "lookup"]

#: Credit line for outputs that list OpenNGC objects (CC-BY-SA-4.0 requires it).
OPENNGC_CREDIT = (
    "Deep-sky objects: OpenNGC by Mattia Verga et al. (https://github.com/mattiaverga/OpenNGC), "
    "CC-BY-SA-4.0, via pyongc (MIT)"
)

#: OpenNGC type codes and their descriptions (plus ``"*"`` for Hipparcos stars).
TYPE_NAMES: dict[str, str] = {
    "*": "Star",
    "**": "Double star",
    "*Ass": "Association of stars",
    "OCl": "Open cluster",
    "GCl": "Globular cluster",
    "Cl+N": "Star cluster + nebula",
    "G": "Galaxy",
    "GPair": "Galaxy pair",
    "GTrpl": "Galaxy triplet",
    "GGroup": "Group of galaxies",
    "PN": "Planetary nebula",
    "HII": "HII region",
    "DrkN": "Dark nebula",
    "EmN": "Emission nebula",
    "Neb": "Nebula",
    "RfN": "Reflection nebula",
    "SNR": "Supernova remnant",
    "Nova": "Nova",
    "Other": "Other",
}

_COLUMNS = (
    "name", "label", "type", "type_desc", "ra", "dec", "major_arcmin", "minor_arcmin",
    "pa_deg", "mag", "mag_band", "surface_brightness", "messier", "caldwell",
    "common_name", "aliases",
)  # fmt: skip


def _db_path() -> str:
    try:
        # pyongc is optional: imported on use
        from pyongc import ongc
    except ImportError as exc:  # pragma: no cover - dependency
        msg = "the DSO catalogue needs the pyongc package (pip install pyongc)"
        raise InputError(msg) from exc
    return str(ongc.DBPATH)


def _fmt_name(name: str) -> str:
    """``NGC0224`` -> ``NGC 224``; ``IC0434`` -> ``IC 434``; others unchanged."""
    m = re.fullmatch(r"(NGC|IC)0*(\d+)(.*)", name)
    return f"{m.group(1)} {m.group(2)}{m.group(3)}" if m else name


@functools.lru_cache(maxsize=1)
def load_openngc() -> Table:
    """All OpenNGC objects as a table (read once from pyongc's database).

    Returns
    -------
    astropy.table.Table
        One row per object: ``name`` (``"NGC 3031"``), ``label`` (the name a
        person uses: ``"M81"``, else ``"C27"``, else ``name``), ``type`` (OpenNGC
        code, see :data:`TYPE_NAMES`), ``type_desc``, ``ra``, ``dec`` (ICRS,
        deg), ``major_arcmin``, ``minor_arcmin`` (diameters; NaN if unknown),
        ``pa_deg`` (position angle of the major axis, deg east of north; NaN
        if unknown), ``mag`` and ``mag_band`` (V when known, else B),
        ``surface_brightness`` (mag/arcsec^2: OpenNGC's value, else the
        magnitude spread over the catalogue ellipse), ``messier``,
        ``caldwell``, ``common_name``, ``aliases`` (duplicate records).
    """
    con = sqlite3.connect(f"file:{_db_path()}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "select name, type, ra, dec, majax, minax, pa, bmag, vmag, sbrightn, messier, "
            "ngc, ic, identifiers, commonnames from objects"
        ).fetchall()
    finally:
        con.close()
    aliases: dict[str, list[str]] = {}
    keep = []
    for r in rows:
        name, typ = r[0], r[1]
        if typ == "Dup":
            target = f"NGC{int(r[11]):04d}" if r[11] and r[11].isdigit() else None
            if target is None and r[12] and r[12].isdigit():
                target = f"IC{int(r[12]):04d}"
            if target is not None:
                aliases.setdefault(target, []).append(_fmt_name(name))
            continue
        if typ == "NonEx" or r[2] is None or r[3] is None:
            continue
        keep.append(r)
    n = len(keep)
    col = {c: [] for c in _COLUMNS}
    for r in keep:
        name, typ, ra, dec, maj, mnr, pa, bmag, vmag, sb, messier, _, _, ids, common = r
        cald = ""
        for ident in (ids or "").split(","):
            m = re.fullmatch(r"C\s*0*(\d+)", ident.strip())
            if m:
                cald = f"C{int(m.group(1))}"
        mes = f"M{int(messier)}" if messier and str(messier).isdigit() else ""
        pretty = _fmt_name(name)
        col["name"].append(pretty)
        col["label"].append(mes or cald or pretty)
        col["type"].append(typ)
        col["type_desc"].append(TYPE_NAMES.get(typ, typ))
        col["ra"].append(np.degrees(ra))
        col["dec"].append(np.degrees(dec))
        col["major_arcmin"].append(np.nan if maj is None else float(maj))
        col["minor_arcmin"].append(np.nan if mnr is None else float(mnr))
        col["pa_deg"].append(np.nan if pa is None else float(pa))
        mag, band = (vmag, "V") if vmag is not None else (bmag, "B" if bmag is not None else "")
        col["mag"].append(np.nan if mag is None else float(mag))
        col["mag_band"].append(band)
        col["surface_brightness"].append(np.nan if sb is None else float(sb))
        col["messier"].append(mes)
        col["caldwell"].append(cald)
        col["common_name"].append((common or "").split(",")[0])
        col["aliases"].append(",".join(aliases.get(name, [])))
    t = Table({c: col[c] for c in _COLUMNS})
    # surface brightness from the magnitude over the catalogue ellipse when OpenNGC has none
    a = np.asarray(t["major_arcmin"], float) * 60.0
    b = np.where(np.isfinite(t["minor_arcmin"]), t["minor_arcmin"], t["major_arcmin"]) * 60.0
    area = np.pi / 4.0 * a * np.asarray(b, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        sb_est = np.asarray(t["mag"], float) + 2.5 * np.log10(area)
    sb = np.asarray(t["surface_brightness"], float)
    t["surface_brightness"] = np.where(np.isfinite(sb), sb, sb_est)
    for c, unit in (
        ("ra", u.deg), ("dec", u.deg), ("major_arcmin", u.arcmin), ("minor_arcmin", u.arcmin),
        ("pa_deg", u.deg), ("mag", u.mag), ("surface_brightness", u.mag / u.arcsec**2),
    ):  # fmt: skip
        t[c].unit = unit
    t.meta["catalog"] = OPENNGC_CREDIT
    t.meta["n_objects"] = n
    return t


def lookup(name: str) -> Table:
    """Rows of the catalogue whose label, name, common name or alias is ``name``.

    Matching ignores case and spaces (``"m 81"``, ``"NGC3031"``, ``"crescent nebula"``).

    Raises
    ------
    InputError
        If nothing matches.
    """
    t = load_openngc()
    key = re.sub(r"\s+", "", str(name)).lower()
    m = re.fullmatch(r"(ngc|ic)0*(\d+)", key)
    if m:
        key = m.group(1) + m.group(2)
    mes = re.fullmatch(r"m0*(\d+)", key)
    if mes:
        key = f"m{int(mes.group(1))}"

    def norm(values) -> np.ndarray:
        return np.array([re.sub(r"\s+", "", str(v)).lower() for v in values])

    hit = (norm(t["label"]) == key) | (norm(t["name"]) == key) | (norm(t["common_name"]) == key)
    hit |= np.array([key in norm(str(a).split(",")) for a in t["aliases"]])
    if not hit.any():
        msg = f"no OpenNGC object named {name!r}"
        raise InputError(msg)
    return t[hit]


def _empty_field_table() -> Table:
    t = load_openngc()[:0].copy()
    for c in ("x", "y", "major_px", "minor_px", "theta_deg"):
        t[c] = np.zeros(0)
    t["in_frame"] = np.zeros(0, bool)
    return t


def objects_in_field(
    wcs: WCS,
    shape: tuple[int, int],
    *,
    include_stars: bool = True,
    max_star_mag: float = 7.0,
    min_major_arcmin: float = 0.0,
    default_size_arcmin: float = 1.0,
) -> Table:
    """Every catalogued object whose ellipse overlaps the image.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS of the image (0-based pixel API).
    shape : (int, int)
        Image shape ``(height, width)``, pixels.
    include_stars : bool, optional
        Add Hipparcos stars brighter than ``max_star_mag`` (type ``"*"``).
        Default True.
    max_star_mag : float, optional
        Faintest star added, V mag. Default 7.
    min_major_arcmin : float, optional
        Drop objects with a known major axis smaller than this, arcmin. Default 0.
    default_size_arcmin : float, optional
        Diameter given to objects without a catalogued size, arcmin (their
        ``major_arcmin`` stays NaN). Default 1.

    Returns
    -------
    astropy.table.Table
        The columns of :func:`load_openngc` plus ``x``, ``y`` (0-based
        pixels of the catalogue centre), ``major_px``, ``minor_px`` (ellipse
        diameters, pixels), ``theta_deg`` (major axis, degrees
        counter-clockwise from +x towards +y in pixel coordinates) and
        ``in_frame`` (centre inside the image). Sorted by major axis, largest
        first. An empty field gives an empty table with this schema and a
        :class:`~skysift.errors.NoDetectionsWarning`.

    Raises
    ------
    InputError
        If ``wcs`` is not celestial or ``shape`` is not two positive integers.
    """
    if not isinstance(wcs, WCS) or not wcs.has_celestial:
        msg = f"wcs must be a celestial astropy WCS, got {type(wcs).__name__}"
        raise InputError(msg)
    if len(tuple(shape)) != 2 or min(int(s) for s in shape) < 1:
        msg = f"shape must be (height, width) with positive sizes, got {shape!r}"
        raise InputError(msg)
    h, w = (int(s) for s in shape)
    scale_arcmin = float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs.celestial)))) * 60.0
    cat = load_openngc()
    rac, decc = wcs.all_pix2world([(w - 1) / 2.0], [(h - 1) / 2.0], 0)
    center = SkyCoord(rac[0] * u.deg, decc[0] * u.deg)
    half_diag_deg = 0.5 * np.hypot(h, w) * scale_arcmin / 60.0
    size = np.where(np.isfinite(cat["major_arcmin"]), cat["major_arcmin"], default_size_arcmin)
    coords = SkyCoord(np.asarray(cat["ra"]) * u.deg, np.asarray(cat["dec"]) * u.deg)
    near = center.separation(coords).deg <= half_diag_deg + size / 120.0 + 0.05
    near &= ~(np.asarray(size) < min_major_arcmin)
    sel = cat[near].copy()
    if include_stars:
        sel = _add_stars(sel, center, half_diag_deg, max_star_mag)
    if len(sel) == 0:
        warnings.warn("no catalogued object in the field", NoDetectionsWarning, stacklevel=2)
        return _empty_field_table()
    ra = np.asarray(sel["ra"], float)
    dec = np.asarray(sel["dec"], float)
    x, y = wcs.all_world2pix(ra, dec, 0)
    maj = np.where(np.isfinite(sel["major_arcmin"]), sel["major_arcmin"], default_size_arcmin)
    mnr = np.where(np.isfinite(sel["minor_arcmin"]), sel["minor_arcmin"], maj)
    pa = np.where(np.isfinite(sel["pa_deg"]), sel["pa_deg"], 0.0)
    # image angle of the major axis: project a point 1 arcmin along the position angle
    tip = SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(pa * u.deg, 1.0 * u.arcmin)
    xt, yt = wcs.all_world2pix(tip.ra.deg, tip.dec.deg, 0)
    theta = np.degrees(np.arctan2(yt - y, xt - x))
    sel["x"] = x
    sel["y"] = y
    sel["major_px"] = np.asarray(maj, float) / scale_arcmin
    sel["minor_px"] = np.asarray(mnr, float) / scale_arcmin
    sel["theta_deg"] = theta
    r = 0.5 * sel["major_px"]
    overlap = (x > -r) & (x < w - 1 + r) & (y > -r) & (y < h - 1 + r)
    sel["in_frame"] = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    sel = sel[overlap & np.isfinite(x) & np.isfinite(y)]
    if len(sel) == 0:
        warnings.warn("no catalogued object in the field", NoDetectionsWarning, stacklevel=2)
        return _empty_field_table()
    order = np.argsort(-np.nan_to_num(np.asarray(sel["major_arcmin"], float), nan=0.0))
    sel = sel[order]
    sel.meta["catalog"] = OPENNGC_CREDIT
    sel.meta["pixel_scale_arcsec"] = scale_arcmin * 60.0
    return sel


def _add_stars(sel: Table, center: SkyCoord, radius_deg: float, max_mag: float) -> Table:

    hip = load_hipparcos(max_mag, epoch=2016.0)
    sep = center.separation(SkyCoord(np.asarray(hip["ra"]) * u.deg, np.asarray(hip["dec"]) * u.deg))
    hip = hip[sep.deg <= radius_deg + 0.01]
    if len(hip) == 0:
        return sel
    rows = sel.copy()
    for s in hip:
        proper = star_name(int(s["hip"])) or ""
        rows.add_row(
            {
                "name": str(s["catalog_id"]),
                "label": proper or str(s["catalog_id"]),
                "type": "*",
                "type_desc": TYPE_NAMES["*"],
                "ra": float(s["ra"]),
                "dec": float(s["dec"]),
                "major_arcmin": np.nan,
                "minor_arcmin": np.nan,
                "pa_deg": np.nan,
                "mag": float(s["v_mag"]),
                "mag_band": "V",
                "surface_brightness": np.nan,
                "messier": "",
                "caldwell": "",
                "common_name": proper,
                "aliases": "",
            }
        )
    return rows
