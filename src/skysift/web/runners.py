"""What each kind of job does: thin calls of the same library functions as the CLI.

Every runner has the signature of :data:`skysift.web.jobs.Runner`: it gets
the job record, the job's folder and a ``progress(stage, fraction)``
callback, writes its outputs into the folder and returns a JSON-ready
summary (file names relative to the folder). No science is done here.

Folder layouts:

* ``calibrate``: ``frame.png`` (display stretch of the frame), ``frame.json``
  (shape, site, times), ``calibration/`` (the files of
  :func:`skysift.calibration.report.write_calibration`; ``pairs.csv`` after
  a manual calibration).
* ``bolide``: ``out/`` (the files of :func:`skysift.bolide.pipeline.run_bolide`).
* ``streaks``: ``streaks/`` (the files of
  :func:`skysift.streaks.pipeline.run_streaks`) and ``streaks/display/STEM.png``.
* ``dso``: ``dso/`` (the files of :func:`skysift.dso.pipeline.run_dso`) and
  ``dso/display.png`` (:mod:`skysift.web.dso`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from skysift.bolide.demo import demo_inputs
from skysift.bolide.pipeline import run_bolide
from skysift.bolide.report import peak_magnitude
from skysift.calibration.pipeline import calibrate, find_stars
from skysift.calibration.report import write_calibration, write_stars
from skysift.data import sample
from skysift.errors import SkysiftError
from skysift.io import read_frame
from skysift.io.frame import Frame, Site
from skysift.io.metadata import as_site
from skysift.outputs.files import atomic_path, write_json
from skysift.outputs.plots import display_stretch
from skysift.simulation.generate import write_samples
from skysift.streaks.pipeline import run_streaks
from skysift.web.dso import run_dso_job

__all__ = [
    "RUNNERS",
    "SAMPLES",
    "run_calibrate",
    "run_bolide_job",
    "run_streaks_job",
    "read_job_frame",
    "write_display",
]

Progress = Callable[[str, float], None]


def _bundled_frame() -> dict[str, Any]:

    s = sample("magic-allsky")
    return {"image": str(s.path), "site": s.site.to_dict() if s.site else None}


def _streaks_demo(folder: Path) -> list[str]:
    """Three simulated 256x256 frames, each crossed by one streak (seed 0)."""

    manifest = write_samples("streaks", 3, folder, seed=0, progress=False)
    return [str(folder / f) for f in manifest["fits"]]


#: Bundled samples offered by the start page: name -> (kind, description).
SAMPLES: dict[str, dict[str, str]] = {
    "magic-allsky": {
        "kind": "calibrate",
        "title": "MAGIC all-sky frame, La Palma, 2018-08-17 00:52 UT (real)",
        "description": "Fisheye frame of the MAGIC telescope site camera; site and time are known.",
    },
    "bolide-demo": {
        "kind": "bolide",
        "title": "Bolide sample clip (the bundled demo)",
        "description": "A short clip with a bolide, built by skysift.bolide.demo, with its truth.",
    },
    "streaks-demo": {
        "kind": "streaks",
        "title": "Three simulated 256x256 frames with satellite streaks",
        "description": "Made by skysift's simulator (seed 0): each frame holds one streak.",
    },
}


def sample_status() -> list[dict[str, Any]]:
    """The samples with ``available`` and, when not, ``reason``."""
    out = []
    for name, s in SAMPLES.items():
        out.append({"name": name, **s, "available": True, "reason": None})
    return out


def write_display(data: np.ndarray, path: Path) -> Path:
    """Write an 8-bit PNG of an image with the display stretch of skysift's figures."""

    finite = np.isfinite(data)
    img = np.where(finite, data, np.nanmin(data) if finite.any() else 0.0)
    u8 = (np.clip(display_stretch(img), 0, 1) * 255).round().astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(u8).save(tmp, format="PNG")
    return path


def _site(value: Any) -> Site | None:
    if not value:
        return None

    return as_site(value)


def read_job_frame(job: dict[str, Any]) -> Frame:
    """Read a calibrate job's frame with the job's site and time overrides."""

    p = job["params"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_frame(Path(p["image"]), site=_site(p.get("site")), time=p.get("time") or None)


def frame_info(frame: Frame) -> dict[str, Any]:
    """What the manual calibration needs to know about a frame (``frame.json``)."""
    return {
        "name": frame.name,
        "shape": [int(s) for s in frame.shape],
        "site": frame.site.to_dict() if frame.site is not None else None,
        "time": frame.time.utc.isot if frame.time is not None else None,
        "time_mid_exposure": frame.mid_time.utc.isot if frame.mid_time is not None else None,
        "exposure_s": frame.exposure,
    }


def calibration_summary(info: dict[str, Any], source: str) -> dict[str, Any]:
    """The numbers of a ``calibration.json`` shown on the job page."""
    keys = (
        "model_type",
        "n_detected",
        "n_matched",
        "astrometric_rms_px",
        "photometric_band",
        "zero_point",
        "zero_point_err",
        "photometric_rms_mag",
    )
    return {"source": source, **{k: info.get(k) for k in keys}}


def run_calibrate(job: dict[str, Any], folder: Path, progress: Progress) -> dict[str, Any]:
    """Calibrate one frame (``skysift calibrate``); ``mode="manual"`` only prepares it.

    The frame's display image, detections and ``frame.json`` are written
    first, so that a frame whose automatic calibration fails can still be
    calibrated by hand.
    """

    p = job["params"]
    progress("reading the frame", 0.05)
    frame = read_job_frame(job)
    write_display(frame.data, folder / "frame.png")
    write_json(frame_info(frame), folder / "frame.json")
    out = folder / "calibration"
    mode = p.get("mode", "auto")
    if mode == "manual":
        progress("detecting stars", 0.3)
        stars, _ = find_stars(frame)
        write_stars(stars, out)
        return {"frame": "frame.png", "n_detected": len(stars), "calibration": None}
    progress("calibrating (stars, astrometry, photometry)", 0.15)
    try:
        result = calibrate(frame, mode=mode, fov_deg=p.get("fov"))
    except SkysiftError:
        progress("detecting stars for a manual calibration", 0.8)
        stars, _ = find_stars(frame)
        write_stars(stars, out)
        raise
    progress("writing the outputs", 0.85)
    write_calibration(result, out)
    return {
        "frame": "frame.png",
        "n_detected": len(result.stars),
        "calibration": calibration_summary(result.to_dict(), "automatic"),
    }


#: Stages of :func:`skysift.bolide.pipeline.run_bolide`: label and share of the run time.
_BOLIDE_STAGES = {
    "read": ("reading the video", 0.05),
    "calibrate": ("calibrating the camera", 0.25),
    "motion": ("finding the motion zone", 0.2),
    "segment": ("segmenting the bolide", 0.3),
    "measure": ("measuring the light curve", 0.05),
    "write": ("writing the outputs and overlays", 0.15),
}


def _overall(progress: Progress, start: float) -> Progress:
    """Turn ``run_bolide``'s per-stage fractions into one fraction of the whole job."""
    names = list(_BOLIDE_STAGES)
    total = sum(w for _, w in _BOLIDE_STAGES.values())

    def report(stage: str, fraction: float) -> None:
        if stage not in _BOLIDE_STAGES:
            progress(stage, start)
            return
        done = sum(_BOLIDE_STAGES[n][1] for n in names[: names.index(stage)])
        label, weight = _BOLIDE_STAGES[stage]
        progress(label, start + (1 - start) * (done + weight * float(fraction)) / total)

    return report


def run_bolide_job(job: dict[str, Any], folder: Path, progress: Progress) -> dict[str, Any]:
    """Measure a bolide in a video (:func:`skysift.bolide.pipeline.run_bolide`)."""
    p = job["params"]
    site, time = _site(p.get("site")), p.get("time") or None
    if p.get("sample") == "bolide-demo":
        progress("building the sample clip", 0.02)
        inp = demo_inputs(folder / "inputs")
        video, calibration, fps = inp.video, inp.calibration, inp.fps
        site = site or inp.site
        time = time or inp.time
    else:
        video, calibration, fps = Path(p["video"]), p.get("calibration"), None
    out = folder / "out"
    result = run_bolide(
        video,
        out,
        calibration=calibration,
        site=site,
        time=time,
        fps=p.get("fps") or fps,
        progress=_overall(progress, 0.05 if p.get("sample") else 0.0),
    )
    lc = result.lightcurve
    files = {
        k: str(Path(v).resolve().relative_to(folder.resolve()))
        for k, v in result.files.items()
        if Path(v).resolve().is_relative_to(folder.resolve())
    }

    peak, limit = peak_magnitude(lc)
    return {
        "n_points": len(lc),
        "peak_mag": peak,
        "peak_mag_limit": limit,
        "files": files,
    }


def run_streaks_job(job: dict[str, Any], folder: Path, progress: Progress) -> dict[str, Any]:
    """Find streaks in a set of images (``skysift streaks``), one image at a time."""

    p = job["params"]
    out = folder / "streaks"
    if p.get("sample") == "streaks-demo":
        progress("simulating the sample frames", 0.02)
        files = _streaks_demo(folder / "inputs")
    else:
        files = list(p["images"])
    kwargs = {"method": p["method"]} if p.get("method") else {}

    def on_image(i: int, n: int, _path: Path) -> None:
        progress(f"searching image {i + 1} of {n}", 0.05 + 0.8 * i / n)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = run_streaks(files, out, progress=False, on_image=on_image, **kwargs)
    progress("writing the display images", 0.87)
    for row in summary:
        if int(row["n_streaks"]) < 0:
            continue  # unreadable: its error is in the summary
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = read_frame(str(row["file"])).data
            write_display(data, out / "display" / f"{row['stem']}.png")
        except SkysiftError:
            pass  # its error is in the summary
    n_found = int(sum(max(int(k), 0) for k in summary["n_streaks"]))
    return {"n_images": len(summary), "n_streaks": n_found, "summary": "streaks/summary.ecsv"}


#: Job kind -> runner.
RUNNERS = {"calibrate": run_calibrate, "bolide": run_bolide_job, "streaks": run_streaks_job,
           "dso": run_dso_job}  # fmt: skip
