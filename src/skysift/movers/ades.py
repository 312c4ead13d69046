"""Minor Planet Center ADES observations in the pipe-separated (PSV) form.

ADES (Astrometry Data Exchange Standard, IAU 2017; MPC "ADES" description and
the ``ades-master`` reference implementation) has a PSV serialisation: header
blocks of ``# group`` lines each followed by ``! keyword value`` lines, then
one line of field names and one line per observation, fields separated by
``|`` (padding blanks are allowed and ignored). This module writes the
optical-observation fields skysift measures:

``permID | provID | trkSub | mode | stn | obsTime | ra | dec | rmsRA | rmsDec
| astCat | mag | rmsMag | band | photCat | remarks``

with ``obsTime`` the mid-exposure UTC time in ISO 8601 ending in ``Z``,
``ra``/``dec`` in decimal degrees (ICRS), ``rmsRA`` (× cos Dec) and
``rmsDec`` in arcseconds, and ``mag`` in the given ``band``. At least one of
``permID``/``provID``/``trkSub`` identifies each object; skysift's unknown
movers get an observer-assigned ``trkSub`` (≤ 8 characters).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time

from skysift.errors import InputError
from skysift.outputs.files import write_with

__all__ = ["ADES_FIELDS", "format_ades_psv", "read_ades_psv", "write_ades_psv"]

#: Field order of the observation lines.
ADES_FIELDS = (
    "permID", "provID", "trkSub", "mode", "stn", "obsTime", "ra", "dec", "rmsRA", "rmsDec",
    "astCat", "mag", "rmsMag", "band", "photCat", "remarks",
)  # fmt: skip

_STN = re.compile(r"^[0-9A-Z][0-9]{2}$")


def _fmt_time(t: Any) -> str:
    tt = t if isinstance(t, Time) else Time(t, scale="utc")
    return tt.utc.isot[:23] + "Z"


def _num(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float | np.floating) and not math.isfinite(float(v))):
        return ""
    if np.ma.is_masked(v):
        return ""
    return format(float(v), fmt)


def format_ades_psv(
    observations: Table,
    *,
    stn: str,
    observers: list[str] | tuple[str, ...] = ("Unknown",),
    measurers: list[str] | tuple[str, ...] = ("skysift",),
    submitter: str | None = None,
    telescope: dict[str, Any] | None = None,
    ast_cat: str = "Gaia3",
    band: str = "G",
    mode: str = "CCD",
    version: str = "2017",
    comment: str | None = None,
) -> str:
    """Format observations as an ADES PSV document.

    Parameters
    ----------
    observations : astropy.table.Table
        Columns ``trkSub`` (or ``permID``/``provID``), ``time`` (``Time`` or ISO
        strings, UTC, mid-exposure), ``ra``, ``dec`` (degrees); optional
        ``mag``, ``rmsRA``, ``rmsDec`` (arcsec), ``rmsMag``, ``remarks``.
    stn : str
        MPC observatory code (three characters, e.g. ``"568"``, ``"C51"``).
    observers, measurers : list of str, optional
        Names for the header.
    submitter : str, optional
        Submitter name; default the first observer.
    telescope : dict, optional
        ``aperture`` (m), ``design`` (e.g. "Reflector"), ``detector`` (default "CCD").
    ast_cat : str, optional
        Astrometric catalogue (ADES name, e.g. "Gaia3"). Default "Gaia3".
    band : str, optional
        Photometric band of ``mag``. Default "G".
    mode : str, optional
        ADES observation mode. Default "CCD".
    version : str, optional
        ADES version in the first line. Default "2017".
    comment : str, optional
        A ``# comment`` block line.

    Returns
    -------
    str

    Raises
    ------
    InputError
        For a station code that is not three characters (digit/letter + two
        digits), missing columns, rows without an identifier or non-finite
        positions.
    """
    if not _STN.match(str(stn)):
        msg = f"stn must be an MPC observatory code like '568' or 'C51', got {stn!r}"
        raise InputError(msg)
    for c in ("time", "ra", "dec"):
        if c not in observations.colnames:
            msg = f"observations need columns time, ra, dec; missing {c!r}"
            raise InputError(msg)
    ids = [c for c in ("permID", "provID", "trkSub") if c in observations.colnames]
    if not ids:
        msg = "observations need at least one of the columns permID, provID, trkSub"
        raise InputError(msg)
    tel = {"aperture": None, "design": "Reflector", "detector": mode} | dict(telescope or {})
    head = [f"# version={version}", "# observatory", f"! mpcCode {stn}"]
    head += ["# submitter", f"! name {submitter or observers[0]}"]
    head += ["# observers"] + [f"! name {n}" for n in observers]
    head += ["# measurers"] + [f"! name {n}" for n in measurers]
    head += ["# telescope"]
    if tel["aperture"] is not None:
        head.append(f"! aperture {float(tel['aperture']):g}")
    head += [f"! design {tel['design']}", f"! detector {tel['detector']}"]
    if comment:
        head += ["# comment", f"! line {comment}"]
    rows = []
    for r in observations:
        ident = {
            c: str(r[c]).strip() if c in ids and not np.ma.is_masked(r[c]) else ""
            for c in ("permID", "provID", "trkSub")
        }
        if not any(ident.values()):
            msg = "every observation needs a permID, provID or trkSub"
            raise InputError(msg)
        if len(ident["trkSub"]) > 8:
            msg = f"trkSub must be at most 8 characters, got {ident['trkSub']!r}"
            raise InputError(msg)
        ra, dec = float(r["ra"]), float(r["dec"])
        if not (math.isfinite(ra) and math.isfinite(dec)):
            msg = f"observation of {ident} has a non-finite position ({ra}, {dec})"
            raise InputError(msg)

        def get(c: str, r=r) -> Any:
            return r[c] if c in observations.colnames else None

        mag = _num(get("mag"), ".2f")
        rows.append(
            {
                **ident, "mode": mode, "stn": stn, "obsTime": _fmt_time(r["time"]),
                "ra": f"{ra % 360.0:.7f}", "dec": f"{dec:+.7f}",
                "rmsRA": _num(get("rmsRA"), ".3f"), "rmsDec": _num(get("rmsDec"), ".3f"),
                "astCat": ast_cat, "mag": mag, "rmsMag": _num(get("rmsMag"), ".2f"),
                "band": band if mag else "", "photCat": ast_cat if mag else "",
                "remarks": str(get("remarks") or "").replace("|", "/"),
            }
        )  # fmt: skip
    widths = {f: max([len(f)] + [len(row[f]) for row in rows]) for f in ADES_FIELDS}
    lines = head + ["|".join(f.ljust(widths[f]) for f in ADES_FIELDS)]
    lines += ["|".join(row[f].ljust(widths[f]) for f in ADES_FIELDS) for row in rows]
    return "\n".join(lines) + "\n"


def write_ades_psv(observations: Table, path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`format_ades_psv` output to ``path`` atomically (same keywords)."""

    text = format_ades_psv(observations, **kwargs)
    return write_with(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_ades_psv(path: str | Path) -> tuple[dict[str, Any], Table]:
    """Parse an ADES PSV file (header blocks and observations).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    header : dict
        ``version`` and, per ``# group``, a dict of its ``! keyword value``
        lines (repeated keywords become lists).
    table : astropy.table.Table
        The observations as strings, one column per field.

    Raises
    ------
    InputError
        If the file has no field-name line or a row with the wrong number of fields.
    """
    header: dict[str, Any] = {}
    group = None
    names: list[str] | None = None
    data: list[list[str]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            body = line[1:].strip()
            if body.startswith("version="):
                header["version"] = body.split("=", 1)[1]
            else:
                group = body
                header.setdefault(group, {})
            continue
        if line.startswith("!"):
            key, _, val = line[1:].strip().partition(" ")
            g = header.setdefault(group or "", {})
            if key in g:
                g[key] = (g[key] if isinstance(g[key], list) else [g[key]]) + [val.strip()]
            else:
                g[key] = val.strip()
            continue
        fields = [f.strip() for f in line.split("|")]
        if names is None:
            names = fields
        elif len(fields) != len(names):
            msg = f"ADES row has {len(fields)} fields, the header has {len(names)}: {line!r}"
            raise InputError(msg)
        else:
            data.append(fields)
    if names is None:
        msg = f"{path} has no ADES field-name line"
        raise InputError(msg)
    cols = list(zip(*data, strict=True)) if data else [[] for _ in names]
    return header, Table([list(c) for c in cols], names=names, dtype=[str] * len(names))
