"""``skysift dso``: plate solve, name what is in the field, say what is visible, annotate."""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from skysift.dso.annotate import render_annotated
from skysift.dso.catalog import OPENNGC_CREDIT, objects_in_field
from skysift.dso.detector import add_detections, detect_frame, load_detector
from skysift.dso.saliency import frame_saliency, render_saliency
from skysift.dso.solve import as_luminance, solve_image, write_wcs_files
from skysift.dso.visibility import measure_visibility
from skysift.errors import InputError, NoDetectionsWarning
from skysift.outputs.files import write_json, write_table

__all__ = ["DsoResult", "run_dso", "analyse_image", "OUTPUT_COLUMNS"]

#: Columns of ``objects.ecsv``, in order.
OUTPUT_COLUMNS = (
    "label", "name", "type", "type_desc", "common_name", "messier", "caldwell", "aliases",
    "ra", "dec", "x", "y", "in_frame", "major_arcmin", "minor_arcmin", "major_px", "minor_px",
    "pa_deg", "theta_deg", "mag", "mag_band", "surface_brightness", "excess", "excess_err",
    "snr", "method", "global_background", "verdict", "detector_score",
)  # fmt: skip


@dataclass
class DsoResult:
    """What :func:`run_dso` made for one image.

    Attributes
    ----------
    path : pathlib.Path or None
        The input image.
    objects : astropy.table.Table
        The ``objects.ecsv`` table (:data:`OUTPUT_COLUMNS`).
    solution : skysift.dso.solve.FieldSolution
    files : dict of str to Path
        ``objects``, ``annotated``, ``calibration``, ``wcs``, ``summary``.
    timings : dict of str to float
        Seconds per stage (``solve``, ``catalog``, ``visibility``, ``annotate``, ``total``).
    """

    path: Path | None
    objects: Table
    solution: Any
    files: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def analyse_image(
    image: Any,
    *,
    fov_deg: float | None = None,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
    radius_deg: float = 5.0,
    pixel_aspect: float | None = None,
    solution: Any = None,
    detector: Any = None,
) -> tuple[Table, Any, dict[str, float], np.ndarray, np.ndarray | None]:
    """Solve one image, list its catalogued objects and judge their visibility.

    Parameters
    ----------
    image : path-like, skysift.Frame or ndarray
    fov_deg, ra_deg, dec_deg, radius_deg, pixel_aspect
        Hints, as :func:`skysift.dso.solve.solve_image`.
    solution : FieldSolution, optional
        A solution already found (no solve).
    detector : str, path-like, nn.Module or None, optional
        The learned DSO detector (:mod:`skysift.dso.detector`): shipped weights
        by name (``"dso_unet"``), a ``.safetensors`` path, a model, or None
        (default: not run; experimental, see ``docs/dso.md``). It runs on the
        frame binned to a long side of at most 256 px.

    Returns
    -------
    objects : astropy.table.Table
        :data:`OUTPUT_COLUMNS`; ``detector_score`` is the score of the learned
        detector's matched detection (NaN: none, or no detector); detections
        matching no catalogued object are rows with ``verdict`` ``unidentified``;
        ``meta['detections']`` lists every detection.
    solution : FieldSolution
    timings : dict
    luminance : ndarray, shape (H, W)
    colour : ndarray, shape (H, W, 3) or None

    Raises
    ------
    InputError, NotEnoughStarsError, CalibrationError
        As :func:`skysift.dso.solve.solve_image`.
    """

    t0 = time.perf_counter()
    lum, color, _ = as_luminance(image)
    if solution is None:
        solution = solve_image(lum, fov_deg=fov_deg, ra_deg=ra_deg, dec_deg=dec_deg,
                               radius_deg=radius_deg, pixel_aspect=pixel_aspect)  # fmt: skip
    t1 = time.perf_counter()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        objects = objects_in_field(solution.wcs, lum.shape)
    t2 = time.perf_counter()
    measured = measure_visibility(lum, objects)
    t3 = time.perf_counter()
    measured["detector_score"] = np.full(len(measured), np.nan)
    detections = _run_detector(detector, lum, measured, solution)  # learned detector
    measured = detections.pop("objects")
    t4 = time.perf_counter()
    out = measured[[c for c in OUTPUT_COLUMNS if c in measured.colnames]]
    order = np.lexsort((-np.nan_to_num(np.asarray(out["snr"], float), nan=-1e9),
                        np.asarray(out["type"]).astype(str) == "*"))  # fmt: skip
    out = out[order]
    for c, unit in (("x", "pix"), ("y", "pix"), ("major_px", "pix"), ("minor_px", "pix"),
                    ("theta_deg", "deg")):  # fmt: skip
        out[c].unit = unit
    out.meta = {
        "catalog_credit": OPENNGC_CREDIT,
        "snr_visible": measured.meta.get("snr_visible"),
        "snr_marginal": measured.meta.get("snr_marginal"),
        "pixel_scale_arcsec": solution.pixel_scale_arcsec,
        "plate_solve": solution.to_dict(),
        "notes": "x, y: 0-based pixels (centre of first pixel = 0,0); theta_deg: major axis, "
        "deg counter-clockwise from +x; pa_deg: catalogue position angle, deg east of north; "
        "detector_score: peak probability of the learned detector's matched detection "
        "(NaN: none); verdict 'unidentified': a detection matching no catalogued object",
        **detections,
    }
    timings = {"solve": t1 - t0, "catalog": t2 - t1, "visibility": t3 - t2, "detector": t4 - t3}
    return out, solution, timings, lum, color


def run_dso(
    inputs: Any,
    out_dir: str | os.PathLike[str],
    *,
    fov_deg: float | None = None,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
    radius_deg: float = 5.0,
    pixel_aspect: float | None = None,
    detector: Any = None,
) -> list[DsoResult]:
    """Analyse images and write, per image, the outputs of ``skysift dso``.

    For one input the files go in ``out_dir``; for several, in
    ``out_dir/<stem>/``: ``objects.ecsv``, ``annotated.png``,
    ``calibration.wcs.fits`` (the image with its WCS), ``<stem>.wcs``
    (header only) and ``dso.json`` (plate solution, timings, credit).

    Parameters
    ----------
    inputs : path-like or sequence of path-like
        JPEG/PNG/TIFF/FITS images.
    out_dir : path-like
        Output folder (created).
    fov_deg : float, optional
        Image width hint, degrees.
    ra_deg, dec_deg : float, optional
        Centre hint, degrees (ICRS).
    radius_deg : float, optional
        Search radius around the centre hint, degrees. Default 5.
    pixel_aspect : float, optional
        Sky height / width of a pixel for resized images (see
        :func:`skysift.dso.solve.solve_image`).
    detector : str, path-like, nn.Module or None, optional
        The learned detector, as :func:`analyse_image`; when run, ``saliency.png``
        (its occlusion saliency over the image) is written too.

    Returns
    -------
    list of DsoResult

    Raises
    ------
    InputError
        If no input is given or a file does not exist (before any work).
    NotEnoughStarsError, CalibrationError
        If an image cannot be plate-solved.
    """

    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not paths:
        msg = "run_dso needs at least one input image"
        raise InputError(msg)
    for p in paths:
        if not Path(p).is_file():
            msg = f"input image not found: {p}"
            raise InputError(msg)
    out_root = Path(out_dir)
    results = []
    for p in paths:
        p = Path(p)
        t0 = time.perf_counter()
        folder = out_root if len(paths) == 1 else out_root / p.stem
        folder.mkdir(parents=True, exist_ok=True)
        objects, sol, timings, lum, color = analyse_image(
            p, fov_deg=fov_deg, ra_deg=ra_deg, dec_deg=dec_deg, radius_deg=radius_deg,
            pixel_aspect=pixel_aspect, detector=detector,
        )  # fmt: skip
        t1 = time.perf_counter()
        files = {"objects": write_table(objects, folder / "objects.ecsv")}
        ra, dec = sol.center_radec
        title = (f"{p.name}: RA {ra:.3f} Dec {dec:+.3f}, {sol.pixel_scale_arcsec:.2f}\"/px, "
                 f"{sol.n_matched} stars, RMS {sol.rms_px:.2f} px")  # fmt: skip
        files["annotated"] = render_annotated(
            color if color is not None else lum, objects, folder / "annotated.png",
            title=title, credit=OPENNGC_CREDIT,
        )  # fmt: skip
        files["calibration"], files["wcs"] = write_wcs_files(sol, p, folder, p.stem)
        timings["annotate"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        if _write_saliency(detector, lum, color, objects, folder / "saliency.png", p.name):
            files["saliency"] = folder / "saliency.png"
            timings["saliency"] = time.perf_counter() - t2
        timings["total"] = time.perf_counter() - t0
        summary = {
            "file": str(p),
            "plate_solve": sol.to_dict(),
            "n_objects": len(objects),
            "visible": [str(r["label"]) for r in objects if r["verdict"] == "visible"],
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "catalog_credit": OPENNGC_CREDIT,
        }
        files["summary"] = write_json(summary, folder / "dso.json")
        results.append(DsoResult(path=p, objects=objects, solution=sol, files=files,
                                 timings=timings))  # fmt: skip
    return results


# --- learned detector and saliency (skysift.dso.detector / saliency) ---------------------------

_MODELS: dict[str, Any] = {}


def _detector_model(detector: Any) -> Any:
    """The detector model for a name / path / model, loaded once per process (None: not run)."""
    if detector is None or detector is False:
        return None
    if not isinstance(detector, (str, os.PathLike)):
        return detector
    key = str(detector)
    if key not in _MODELS:
        try:
            _MODELS[key] = load_detector(detector)
        except ImportError:  # torch (the learn extra) not installed: no detector
            _MODELS[key] = None
    return _MODELS[key]


def _run_detector(detector: Any, lum: np.ndarray, objects: Table, solution: Any) -> dict[str, Any]:
    """Run the detector on the frame; fill ``detector_score`` and add ``unidentified`` rows."""
    model = _detector_model(detector)
    if model is None:
        return {"objects": objects, "detector": None}
    det, _, factor = detect_frame(model, lum)
    out = add_detections(objects, det, solution.wcs, solution.pixel_scale_arcsec)
    rows = [{"x": round(float(r["x"]), 1), "y": round(float(r["y"]), 1), "cls": str(r["cls"]),
             "score": round(float(r["score"]), 3), "a": round(float(r["a"]), 1),
             "b": round(float(r["b"]), 1), "theta": round(float(r["theta"]), 1)}
            for r in det]  # fmt: skip
    name = str(detector) if isinstance(detector, (str, os.PathLike)) else type(model).__name__
    return {"objects": out, "detector": name, "detector_work_factor": factor, "detections": rows}


def _write_saliency(detector: Any, lum: np.ndarray, color: Any, objects: Table, path: Path,
                    title: str) -> bool:  # fmt: skip
    """Write ``saliency.png`` when the detector runs; False when it does not."""
    model = _detector_model(detector)
    if model is None:
        return False
    sal, _ = frame_saliency(model, lum)
    rows = objects.meta.get("detections") or []
    det = Table(rows=[[r[k] for k in ("x", "y", "cls", "score", "a", "b", "theta")] for r in rows],
                names=("x", "y", "cls", "score", "a", "b", "theta"),
                dtype=(float, float, str, float, float, float, float))  # fmt: skip
    render_saliency(color if color is not None else lum, sal, path, detections=det,
                    title=f"{title}: detector saliency (gradient x input)")  # fmt: skip
    return True
