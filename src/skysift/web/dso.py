"""The deep-sky-object job of the web app: ``skysift dso`` on one uploaded image.

The runner calls :func:`skysift.dso.pipeline.run_dso` like the CLI and writes
its files into ``dso/`` of the job's folder, plus ``dso/display.png`` (the
image without annotations, for the page's ellipse overlay). The view turns
``objects.ecsv`` into JSON: every catalogued object (and every unidentified
detection) with its ellipse in pixels and its verdict, which the page draws
as an SVG overlay toggled by verdict.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from PIL import Image

from skysift.dso.pipeline import run_dso
from skysift.dso.solve import as_luminance
from skysift.errors import InputError
from skysift.outputs.files import atomic_path

__all__ = ["VERDICTS", "run_dso_job", "dso_view", "write_dso_display"]

#: Verdicts the page toggles, in display order.
VERDICTS = ("visible", "marginal", "not visible", "unidentified")
_FIELDS = ("label", "name", "type", "type_desc", "common_name", "ra", "dec", "x", "y",
           "major_px", "minor_px", "theta_deg", "major_arcmin", "minor_arcmin", "mag",
           "surface_brightness", "snr", "method", "verdict", "detector_score")  # fmt: skip

Progress = Callable[[str, float], None]


def write_dso_display(image_path: str | Path, path: Path) -> Path:
    """Write an 8-bit PNG of the image (colour kept, 0.5-99.9 % linear stretch).

    Parameters
    ----------
    image_path : path-like
        The job's image.
    path : pathlib.Path
        Output PNG (written atomically), at the image's own size: the
        overlay is drawn in the image's pixels.

    Returns
    -------
    pathlib.Path
    """
    lum, color, _ = as_luminance(image_path)
    arr = np.asarray(color if color is not None else lum, np.float32)
    lo, hi = np.percentile(arr, [0.5, 99.9])
    u8 = (np.clip((arr - lo) / max(float(hi - lo), 1e-6), 0, 1) * 255).round().astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(u8).save(tmp, format="PNG")
    return path


def run_dso_job(job: dict[str, Any], folder: Path, progress: Progress) -> dict[str, Any]:
    """Plate-solve one image, name its catalogued objects and judge them (``skysift dso``).

    ``job["params"]``: ``image`` (server path of the upload), optional ``fov``
    (image width, degrees), ``ra``, ``dec`` (centre hint, degrees).

    Returns
    -------
    dict
        ``n_objects``, ``counts`` (per verdict), ``center`` (RA, Dec, deg),
        ``scale_arcsec``, ``files`` (relative to the job's folder).
    """

    p = job["params"]
    out = folder / "dso"
    out.mkdir(parents=True, exist_ok=True)
    progress("writing the display image", 0.02)
    write_dso_display(p["image"], out / "display.png")
    progress("plate solving, naming and judging the objects", 0.1)
    kwargs: dict[str, Any] = {"fov_deg": p.get("fov"), "ra_deg": p.get("ra"),
                              "dec_deg": p.get("dec")}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (res,) = run_dso([p["image"]], out, **kwargs)
    files = {"display": "dso/display.png"}
    for key, path in res.files.items():
        path = Path(path)
        if path.resolve().is_relative_to(folder.resolve()):
            files[key] = str(path.resolve().relative_to(folder.resolve()))
    sal = out / "saliency.png"
    if sal.is_file():
        files.setdefault("saliency", "dso/saliency.png")
    verdicts = [str(v) for v in res.objects["verdict"]]
    ra, dec = res.solution.center_radec
    return {
        "n_objects": len(res.objects),
        "counts": {v: verdicts.count(v) for v in VERDICTS},
        "center": [float(ra), float(dec)],
        "scale_arcsec": float(res.solution.pixel_scale_arcsec),
        "files": files,
    }


def _json_value(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if np.ma.is_masked(v):
        return None
    return str(v)


def dso_view(job: dict[str, Any], folder: Path) -> dict[str, Any]:
    """What the DSO page draws: the image, its objects as JSON, the PNGs.

    Returns
    -------
    dict
        ``shape`` ``[H, W]``, ``objects`` (one dict per row of
        ``objects.ecsv``: ``label``, ``name``, ``type``, ``x``, ``y``,
        ``major_px``, ``minor_px`` (ellipse diameters, pixels), ``theta_deg``
        (major axis, deg counter-clockwise from +x), ``snr``, ``verdict``, ...;
        NaN as null), ``verdicts`` (the toggles, in order), ``counts``,
        ``files`` (``display``, ``annotated``, ``saliency`` when present,
        ``objects``), ``plate_solve`` (from the table's metadata), ``credit``.

    Raises
    ------
    InputError
        If the job has no ``objects.ecsv`` (not finished or failed).
    """
    path = folder / "dso" / "objects.ecsv"
    if not path.is_file():
        msg = f"job {job.get('id')} has no DSO results yet (state: {job.get('state')})"
        raise InputError(msg)
    table = Table.read(path)
    objects = [{k: _json_value(row[k]) for k in _FIELDS if k in table.colnames} for row in table]
    files = dict((job.get("result") or {}).get("files") or {})
    for key, rel in (("display", "dso/display.png"), ("annotated", "dso/annotated.png"),
                     ("saliency", "dso/saliency.png"), ("objects", "dso/objects.ecsv")):  # fmt: skip
        if (folder / rel).is_file():
            files[key] = rel
        else:
            files.pop(key, None)
    shape = None
    if (folder / "dso" / "display.png").is_file():
        with Image.open(folder / "dso" / "display.png") as im:
            shape = [im.height, im.width]
    verdicts = [o.get("verdict") for o in objects]
    ps = table.meta.get("plate_solve") or {}
    return {
        "shape": shape,
        "objects": objects,
        "verdicts": list(VERDICTS),
        "counts": {v: verdicts.count(v) for v in VERDICTS},
        "files": files,
        "plate_solve": {
            k: _json_value(v) for k, v in ps.items() if not isinstance(v, (dict, list))
        },
        "credit": str(table.meta.get("catalog_credit", "")),
    }
