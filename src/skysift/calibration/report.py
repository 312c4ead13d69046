"""Write a calibration's files: stars.ecsv, matches.ecsv, calibration.json, calibration.png."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import astropy.units as u
import numpy as np
from astropy.table import Table

from skysift.calibration.plots import plot_calibration
from skysift.outputs.files import write_json, write_table

if TYPE_CHECKING:
    from skysift.calibration.frame import CalibrationResult

__all__ = ["write_stars", "write_calibration", "MATCH_COLUMNS"]

#: Columns of matches.ecsv, in order (extra columns follow).
MATCH_COLUMNS = (
    "x",
    "y",
    "catalog_id",
    "ra",
    "dec",
    "alt",
    "az",
    "catalog_mag",
    "inst_mag",
    "mag",
    "residual_px",
)
_UNITS = {
    "x": "pix",
    "y": "pix",
    "ra": "deg",
    "dec": "deg",
    "alt": "deg",
    "az": "deg",
    "catalog_mag": "mag",
    "inst_mag": "mag",
    "mag": "mag",
    "residual_px": "pix",
    "mag_err": "mag",
    "inst_mag_err": "mag",
}


def write_stars(
    stars: Table, out_dir: str | Path, calibration: CalibrationResult | None = None
) -> Path:
    """Write ``stars.ecsv``: every detection, in 0-based pixel coordinates.

    Parameters
    ----------
    stars : astropy.table.Table
        A star finder's table.
    out_dir : path
        The output folder.
    calibration : CalibrationResult, optional
        When given, ``ra`` and ``dec`` (deg, ICRS) of every detection are
        added from its camera model. (Calibrated magnitudes are in
        ``matches.ecsv``: the zero point is fitted to aperture fluxes, not to
        the finder's ``flux``.)

    Returns
    -------
    Path
    """
    t = stars.copy()
    t.meta["comment"] = (
        "skysift detections; x, y are 0-based pixels, (0, 0) is the centre of the first pixel"
    )
    if calibration is not None and len(t):
        x, y = np.asarray(t["x"], float), np.asarray(t["y"], float)
        ra, dec = calibration.pixel_to_radec(x, y)
        t["ra"] = np.asarray(ra, float) * u.deg
        t["dec"] = np.asarray(dec, float) * u.deg
        t.meta["comment"] += "; ra, dec ICRS degrees from the calibration"
    return write_table(t, Path(out_dir) / "stars.ecsv")


def _matches_table(result: CalibrationResult) -> Table:
    m = result.matches
    cols = [c for c in MATCH_COLUMNS if c in m.colnames] + [
        c for c in m.colnames if c not in MATCH_COLUMNS
    ]
    t = Table()
    for c in cols:
        values = m[c]
        t[c] = np.asarray(values) if c != "catalog_id" else np.asarray(values, dtype=str)
        if c in _UNITS:
            t[c].unit = _UNITS[c]
    if "alt" not in t.colnames:  # site or time unknown: keep the schema
        for c in ("alt", "az"):
            t[c] = np.full(len(t), np.nan)
            t[c].unit = "deg"
    t.meta["catalog_band"] = result.photometric_band
    t.meta["comment"] = (
        "skysift identified stars; x, y 0-based pixels; ra, dec ICRS degrees; alt, az degrees (az from north through east)"
    )
    return t


def write_calibration(
    result: CalibrationResult, out_dir: str | Path, *, plot: bool = True
) -> dict[str, Path]:
    """Write every file of a calibration into ``out_dir``.

    Files: ``stars.ecsv``, ``matches.ecsv``, ``calibration.json`` (model and
    fit summary), ``calibration.png`` (unless ``plot=False``) and, for a
    TAN-SIP model, ``calibration.wcs.fits`` (a FITS header with the WCS).

    Parameters
    ----------
    result : CalibrationResult
    out_dir : str or Path
    plot : bool, optional
        Write the figure. Default True.

    Returns
    -------
    dict
        File role -> path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "stars": write_stars(result.stars, out, result),
        "matches": write_table(_matches_table(result), out / "matches.ecsv"),
    }
    info = result.to_dict()
    if result.model_type == "tan-sip" and hasattr(result.solution, "save"):
        wcs_path = out / "calibration.wcs.fits"
        result.solution.save(wcs_path)
        info["wcs_file"] = wcs_path.name
        paths["wcs"] = wcs_path
    paths["calibration"] = write_json(info, out / "calibration.json")
    if plot:
        paths["plot"] = plot_calibration(result, out / "calibration.png")
    return paths
