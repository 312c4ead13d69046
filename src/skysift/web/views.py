"""Data behind the job pages: calibration, manual pairs, light curve, streaks.

Each function reads a job's folder (written by :mod:`skysift.web.runners`)
and returns JSON-ready dictionaries; the manual calibration refits with
:func:`skysift.calibration.pipeline.calibrate` (``pairs=``), the same call as
``skysift calibrate --pairs``.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time

from skysift.calibration.camera import SkyCamera
from skysift.calibration.catalog import (
    load_hipparcos,
    lookup_hip,
    resolve_star,
    star_altaz,
    star_name,
)
from skysift.calibration.pairs import MIN_PAIRS
from skysift.calibration.pipeline import calibrate
from skysift.calibration.report import write_calibration
from skysift.errors import InputError
from skysift.io.frame import Site
from skysift.outputs.files import write_json, write_with
from skysift.streaks.pipeline import output_stem

__all__ = [
    "calibration_view",
    "stars_view",
    "catalog_view",
    "fit_manual",
    "read_pairs_json",
    "lightcurve_view",
    "streaks_view",
]


def _num(v: Any) -> Any:
    """A JSON-safe number: NaN and infinities become None."""
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def table_rows(t: Table, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of a table as dicts (only ``columns`` if given), NaN as None."""
    cols = [c for c in (columns or t.colnames) if c in t.colnames]
    data = {c: np.asarray(t[c]).tolist() for c in cols}
    return [{c: _num(data[c][i]) for c in cols} for i in range(len(t))]


def _text(value: Any) -> str | None:
    """A table cell as text; empty and masked cells (ECSV writes "" as masked) as None."""
    if np.ma.is_masked(value):
        return None
    return str(value) or None


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        msg = f"this job has no {what} (yet)"
        raise InputError(msg)
    return path


def calibration_view(folder: Path) -> dict[str, Any]:
    """The frame, the fit's numbers and the identified stars of a calibrate job."""

    frame = _read_json(_require(folder / "frame.json", "frame"))
    info = _read_json(folder / "calibration" / "calibration.json")
    matches: list[dict[str, Any]] = []
    mpath = folder / "calibration" / "matches.ecsv"
    if info is not None and mpath.is_file():
        m = Table.read(mpath, format="ascii.ecsv")
        cols = ["x", "y", "catalog_id", "alt", "az", "catalog_mag", "mag", "residual_px"]
        if "radius_norm" in m.colnames:
            cols.append("radius_norm")
        if "used_in_zp" in m.colnames:
            cols.append("used_in_zp")
        matches = table_rows(m, cols)
        for row in matches:
            cid = str(row.get("catalog_id", ""))
            row["name"] = star_name(int(cid[4:])) if cid.startswith("HIP ") else None
    pairs = _read_pairs_csv(folder / "calibration" / "pairs.csv")
    return {"frame": frame, "calibration": info, "matches": matches, "pairs": pairs}


def stars_view(folder: Path, n_max: int = 3000) -> list[dict[str, Any]]:
    """The ``n_max`` brightest detections (``x``, ``y``, ``flux``), for snapping clicks."""
    t = Table.read(
        _require(folder / "calibration" / "stars.ecsv", "star list"), format="ascii.ecsv"
    )
    if len(t) > n_max:
        t = t[np.argsort(-np.asarray(t["flux"], float))[:n_max]]
    return table_rows(t, ["x", "y", "flux"])


def catalog_view(folder: Path, max_mag: float = 3.5) -> dict[str, Any]:
    """Catalogue stars above the horizon at the frame's site and time (the report's Fig. 24).

    Returns
    -------
    dict
        ``stars``: ``hip``, ``name``, ``v_mag``, ``alt``, ``az`` (deg) and, when
        the job has a calibration, ``x``, ``y`` (px) where the camera model puts
        them; ``site`` and ``time``.

    Raises
    ------
    InputError
        If the frame's site or time is unknown (the message says which).
    """

    frame = _read_json(_require(folder / "frame.json", "frame"))
    site_d, t_iso = frame.get("site"), frame.get("time_mid_exposure")
    if site_d is None or t_iso is None:
        missing = " and ".join(n for n, v in (("site", site_d), ("time", t_iso)) if v is None)
        msg = f"the frame's {missing} is unknown: start the job again with them to see the sky"
        raise InputError(msg)

    site, time = Site.from_dict(site_d), Time(t_iso, scale="utc")
    cat = star_altaz(load_hipparcos(max_mag, epoch=time), site, time)
    cat = cat[np.asarray(cat["alt"], float) > 0]
    stars = table_rows(cat, ["hip", "v_mag", "alt", "az", "ra", "dec"])
    for row in stars:
        row["name"] = star_name(row["hip"])
    cal = folder / "calibration" / "calibration.json"
    if cal.is_file() and len(cat):
        cam = SkyCamera.load(cal)
        x, y = cam.radec_to_pixel(np.asarray(cat["ra"], float), np.asarray(cat["dec"], float))
        for row, xi, yi in zip(stars, np.atleast_1d(x), np.atleast_1d(y), strict=True):
            row["x"], row["y"] = _num(xi), _num(yi)
    return {"site": site_d, "time": t_iso, "max_mag": max_mag, "stars": stars}


def _read_pairs_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    t = Table.read(path, format="ascii.csv")
    return [{"x": float(r["x"]), "y": float(r["y"]), "star": str(r["star"])} for r in t]


def read_pairs_json(pairs: Any) -> Table:
    """Check the pairs of a request: a list of ``{"x", "y", "star"}``.

    Returns
    -------
    astropy.table.Table
        Columns ``x``, ``y`` (px), ``star`` (str), ``hip`` (int).

    Raises
    ------
    InputError
        If the list is malformed, a star cannot be resolved or is given twice,
        or fewer than :data:`skysift.calibration.pairs.MIN_PAIRS` pairs are given.
    """

    if not isinstance(pairs, list):
        msg = "pairs must be a list of {x, y, star}"
        raise InputError(msg)
    xs, ys, names, hips = [], [], [], []
    for i, p in enumerate(pairs):
        try:
            x, y, star = float(p["x"]), float(p["y"]), str(p["star"])
        except (KeyError, TypeError, ValueError) as err:
            msg = f"pair {i + 1}: needs numbers x, y and a star name or HIP number"
            raise InputError(msg) from err
        if not (math.isfinite(x) and math.isfinite(y)):
            msg = f"pair {i + 1}: x and y must be finite"
            raise InputError(msg)
        xs.append(x)
        ys.append(y)
        names.append(star)
        hips.append(resolve_star(star))
    if len(set(hips)) != len(hips):
        msg = "a catalogue star is paired twice; remove one of its pairs"
        raise InputError(msg)
    if len(hips) < MIN_PAIRS:
        msg = f"{len(hips)} pair(s) given; a manual calibration needs at least {MIN_PAIRS}"
        raise InputError(msg)
    return Table({"x": xs, "y": ys, "star": names, "hip": np.asarray(hips, dtype=np.int64)})


def fit_manual(job: dict[str, Any], folder: Path, pairs: Any) -> dict[str, Any]:
    """Refit a calibrate job's frame from clicked pairs and save it as its calibration.

    Calls :func:`skysift.calibration.pipeline.calibrate` with ``pairs=`` (the
    bolide report's §5.3 fallback: a fisheye model fitted to the pairs, then
    extended to every detected star), writes the calibration files into the
    job's ``calibration/`` with ``pairs.csv`` (usable as ``skysift calibrate
    --pairs``), and returns the fit with each pair's residual.

    Raises
    ------
    InputError, CalibrationError
        If the pairs are unusable or no model fits them (one-line messages).
    """
    # the web extra (fastapi): imported on use
    from skysift.web.runners import calibration_summary, read_job_frame

    table = read_pairs_json(pairs)
    frame = read_job_frame(job)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = calibrate(frame, pairs=table)
    out = folder / "calibration"
    write_calibration(result, out)
    info = result.to_dict()
    info["method"] = "manual pairs"
    write_json(info, out / "calibration.json")
    pairs_t = table["x", "y", "star"]
    write_with(
        out / "pairs.csv", lambda tmp: pairs_t.write(tmp, format="ascii.csv", overwrite=True)
    )
    cat = lookup_hip(table["hip"], epoch=result.time)
    px, py = result.camera.radec_to_pixel(
        np.asarray(cat["ra"], float), np.asarray(cat["dec"], float)
    )
    resid = np.hypot(np.atleast_1d(px) - table["x"], np.atleast_1d(py) - table["y"])
    rows = [
        {
            "x": float(r["x"]),
            "y": float(r["y"]),
            "star": str(r["star"]),
            "hip": int(r["hip"]),
            "name": star_name(int(r["hip"])),
            "residual_px": _num(d),
        }
        for r, d in zip(table, resid, strict=True)
    ]
    finite = resid[np.isfinite(resid)]
    summary = calibration_summary(info, "manual")
    summary["pairs_rms_px"] = float(np.sqrt(np.mean(finite**2))) if finite.size else None
    summary["n_pairs"] = len(rows)
    return {"calibration": summary, "pairs": rows}


def lightcurve_view(folder: Path) -> dict[str, Any]:
    """A bolide job's light curve (rows of ``lightcurve.ecsv``) and its overlay frames."""
    lc = Table.read(
        _require(folder / "out" / "lightcurve.ecsv", "light curve"), format="ascii.ecsv"
    )
    cols = ["frame", "t", "x", "y", "alt", "az", "mag", "mag_err", "flux", "flux_err", "saturated"]
    overlays = sorted(p.name for p in (folder / "out" / "overlays").glob("frame_*.png"))
    units = {c: str(lc[c].unit) for c in cols if c in lc.colnames and lc[c].unit is not None}
    return {"rows": table_rows(lc, cols), "units": units, "overlays": overlays}


def streaks_view(folder: Path) -> list[dict[str, Any]]:
    """Per image of a streaks job: score, number of streaks, files and the streak table."""

    out = folder / "streaks"
    summary = Table.read(_require(out / "summary.ecsv", "streak summary"), format="ascii.ecsv")
    items = []
    for row in summary:
        # the summary names each input's output stem (unique within the job)
        stem = (
            str(row["stem"]) if "stem" in summary.colnames else output_stem(Path(str(row["file"])))
        )
        ecsv = out / f"{stem}.streaks.ecsv"
        table = table_rows(Table.read(ecsv, format="ascii.ecsv")) if ecsv.is_file() else []
        has = {
            "display": (out / "display" / f"{stem}.png").is_file(),
            "mask": (out / f"{stem}.mask.png").is_file(),
        }
        items.append(
            {
                "name": Path(str(row["file"])).name,
                "stem": stem,
                "p_streak": _num(row["p_streak"]),
                "n_streaks": int(row["n_streaks"]),
                "error": _text(row["error"]),
                "image": f"streaks/display/{stem}.png" if has["display"] else None,
                "mask": f"streaks/{stem}.mask.png" if has["mask"] else None,
                "table_file": f"streaks/{stem}.streaks.ecsv" if ecsv.is_file() else None,
                "streaks": table,
            }
        )
    return items
