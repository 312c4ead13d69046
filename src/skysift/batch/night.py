"""A night in one run: find the clips and frames, calibrate once per camera, search, index.

:func:`run_night` walks a night's folder (recursively) for clips (videos) and
frames (FITS and image files), groups the frames by camera (their folder and
image shape), calibrates each camera once on its middle frame
(``OUT/calibration/<camera>/``, a batch run of its own with its ``run.ecsv``),
then runs one task per input on the batch layer (:func:`night_task`): the
bolide search on each clip (with its camera's calibration when the clip's
folder and frame size match a calibrated camera, else the clip's own median
stack), and the meteor-trail and streak searches on each frame (streak ends in
RA/Dec from its camera's calibration). ``OUT/run.ecsv`` is the manifest (a
rerun skips finished inputs) and ``OUT/index.html`` links every input's
outputs (relative links, so the folder can move).

A camera's calibration is reused for its frames while the pointing holds: for
a plate solution (a narrow field fixed on the sky), frames whose star field has
moved by more than :data:`DRIFT_PX` from the calibrated frame (phase
correlation of the high-passed frames) start a new pointing, calibrated on its
own middle frame; an all-sky (fisheye) model is tied to the ground and serves
the whole night.
"""

from __future__ import annotations

import glob
import html
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from astropy.io import fits
from astropy.table import Table
from PIL import Image
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from skysift.batch.runner import (
    IMAGE_FILES,
    BatchSummary,
    expand_inputs,
    output_names,
    run_batch,
)
from skysift.batch.tasks import CALIBRATION_PICKLE, bolide_task, streaks_task, trails_task
from skysift.errors import InputError, SkysiftError
from skysift.io import read_frame
from skysift.io.readers import IMAGE_SUFFIXES
from skysift.io.video import VIDEO_SUFFIXES
from skysift.outputs.files import atomic_path

__all__ = [
    "NightResult",
    "camera_of",
    "find_night",
    "is_batch_of_clips",
    "is_folder_or_glob",
    "night_task",
    "run_night",
    "write_index",
]

INDEX = "index.html"
CALIBRATION_DIR = "calibration"


# -- what a command's inputs are ---------------------------------------------------------------


def is_folder_or_glob(path: str | os.PathLike[str]) -> bool:
    """True for a folder or a glob pattern (an input that names several files)."""
    return Path(path).is_dir() or (glob.has_magic(str(path)) and not Path(path).exists())


def _has(folder: Path, suffixes: Sequence[str]) -> bool:
    return any(
        p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(tuple(suffixes))
        for p in folder.iterdir()
    )


def is_batch_of_clips(paths: Sequence[str | os.PathLike[str]]) -> bool:
    """Whether ``skysift bolide`` inputs are several clips (a batch) rather than one clip.

    Decided by content: several inputs, a glob, or a folder holding videos and no
    image frames are a batch of clips; one video, one FITS cube or one folder of
    image frames (a clip stored frame by frame) is one clip.
    """
    if len(paths) != 1:
        return True
    path = Path(paths[0])
    if path.is_dir():
        return _has(path, VIDEO_SUFFIXES) and not _has(path, IMAGE_FILES)
    return is_folder_or_glob(path)


# -- the night's inputs ------------------------------------------------------------------------


def _shape(path: Path) -> tuple[int, int] | None:
    """(H, W) read from the header only (None when it cannot be read)."""
    name = path.name.lower()
    try:
        if name.endswith(VIDEO_SUFFIXES):
            cap = cv2.VideoCapture(str(path))
            try:
                w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
                h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            finally:
                cap.release()
            return (h, w) if h > 0 and w > 0 else None
        if not name.endswith(IMAGE_SUFFIXES):  # FITS (also compressed)
            header = fits.getheader(path)
            if header.get("NAXIS", 0) < 2:
                header = fits.getheader(path, 1)
            return int(header["NAXIS2"]), int(header["NAXIS1"])
        with Image.open(path) as im:
            return int(im.size[1]), int(im.size[0])
    except Exception:  # noqa: BLE001 - any unreadable header: no camera; the task says why
        return None


def camera_of(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str:
    """The camera of an input: its folder (relative to ``root``) and image size, ``"cam1 1032x768"``.

    ``"?"`` for the size when the header cannot be read.
    """
    path = Path(path)
    folder = os.path.relpath(path.parent, root)
    shape = _shape(path)
    size = f"{shape[1]}x{shape[0]}" if shape else "?"
    return f"{'.' if folder == '.' else folder} {size}"


@dataclass
class NightInputs:
    """The clips and frames of a night, with each input's camera."""

    clips: list[Path]
    frames: list[Path]
    cameras: dict[Path, str] = field(default_factory=dict)

    def groups(self) -> dict[str, list[Path]]:
        """Frames by camera (cameras whose size is unknown left out)."""
        out: dict[str, list[Path]] = {}
        for f in self.frames:
            cam = self.cameras[f]
            if not cam.endswith(" ?"):
                out.setdefault(cam, []).append(f)
        return out


def find_night(
    folder: str | os.PathLike[str], *, exclude: str | os.PathLike[str] | None = None
) -> NightInputs:
    """The clips (videos) and frames (FITS and image files) under ``folder``, recursively.

    Files under ``exclude`` (the run's own output folder, when it lies inside
    ``folder``) and hidden files are left out.

    Raises
    ------
    InputError
        If ``folder`` is not a folder or holds neither clips nor frames.
    """
    root = Path(folder)
    if not root.is_dir():
        msg = f"{root}: not a folder (skysift night takes the folder of a night's data)"
        raise InputError(msg)
    try:
        files = expand_inputs([str(root / "**")], suffixes=(*VIDEO_SUFFIXES, *IMAGE_FILES))
    except InputError:
        msg = f"{root}: no clips ({' '.join(VIDEO_SUFFIXES)}) or frames (FITS, images) found"
        raise InputError(msg) from None
    if exclude is not None:
        skip = Path(exclude).resolve()
        files = [f for f in files if not f.resolve().is_relative_to(skip)]
        if not files:
            msg = f"{root}: no clips or frames found outside the output folder {exclude}"
            raise InputError(msg)
    clips = [f for f in files if f.name.lower().endswith(VIDEO_SUFFIXES)]
    frames = [f for f in files if not f.name.lower().endswith(VIDEO_SUFFIXES)]
    cameras = {f: camera_of(f, root) for f in files}
    return NightInputs(clips=clips, frames=frames, cameras=cameras)


# -- pointings -----------------------------------------------------------------------------------

#: A frame whose star field has moved by more than this (pixels; or 0.5 % of the
#: image diagonal when larger) from its pointing's reference starts a new pointing.
DRIFT_PX = 5.0


def _registration_image(path: Path) -> tuple[np.ndarray, int] | None:
    """The frame binned to <= 1024 px, high-passed and clipped to its point sources (None if unreadable)."""
    try:
        data = np.asarray(read_frame(path).data, np.float32)
    except SkysiftError:
        return None
    img = np.nan_to_num(data)
    f = max(1, int(np.ceil(max(img.shape) / 1024)))
    if f > 1:
        h, w = (img.shape[0] // f) * f, (img.shape[1] // f) * f
        img = img[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    hp = img - ndimage.gaussian_filter(img, 8.0)
    scale = 1.4826 * float(np.median(np.abs(hp - np.median(hp)))) or 1.0
    return np.clip(hp / scale - 3.0, 0.0, 50.0), f


def frame_shift(reference: tuple[np.ndarray, int], other: tuple[np.ndarray, int]) -> float:
    """Shift in pixels (full resolution) of ``other``'s star field against ``reference``'s.

    Phase correlation (:func:`skimage.registration.phase_cross_correlation`)
    of the high-passed, binned frames; ``inf`` for frames of different shapes.
    """
    if reference[0].shape != other[0].shape:
        return float("inf")
    shift, _, _ = phase_cross_correlation(reference[0], other[0], normalization=None)
    return float(np.hypot(*shift)) * reference[1]


def pointing_groups(
    paths: Sequence[Path], reference: Path, *, drift_px: float | None = None
) -> list[list[Path]]:
    """Split a camera's frames (in time order) into pointings.

    The group of ``reference`` (the calibrated frame) comes first; walking
    out from it in both directions, a frame that moved by more than the
    tolerance from its group's reference (the first frame met) opens a new
    group. Unreadable frames stay with their neighbours (their own task
    reports them).

    Parameters
    ----------
    paths : sequence of Path
        The frames, in time (name) order; ``reference`` among them.
    reference : Path
    drift_px : float, optional
        Tolerance in pixels. Default ``max(DRIFT_PX, 0.005 * diagonal)``.

    Returns
    -------
    list of list of Path
        The pointings, ``reference``'s first; together they hold every path once.
    """
    paths = list(paths)
    i0 = paths.index(reference)
    ref0 = _registration_image(reference)
    if ref0 is None:
        return [paths]
    h, w = ref0[0].shape
    tol = drift_px if drift_px is not None else max(DRIFT_PX, 0.005 * np.hypot(h, w) * ref0[1])
    first: list[Path] = [reference]
    others: list[list[Path]] = []
    for direction in (1, -1):
        group, ref = first, ref0
        i = i0 + direction
        while 0 <= i < len(paths):
            img = _registration_image(paths[i])
            if img is not None and frame_shift(ref, img) > tol:
                group, ref = [], img
                others.append(group)
            group.append(paths[i])
            i += direction
    return [sorted(first), *[sorted(g) for g in others]]


# -- the task ----------------------------------------------------------------------------------


def night_task(
    input_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], params: Mapping[str, Any]
) -> dict[str, str]:
    """One input of a night: the bolide search on a clip, trails and streaks on a frame.

    Parameters
    ----------
    input_path : path
        A video (clip) or an image file (frame).
    out_dir : path
        Folder of this input's outputs.
    params : mapping
        ``root`` (the night's folder) and ``cameras`` ({camera or pointing:
        kept ``calibration.pkl``}, the camera of an input as :func:`camera_of`
        names it), ``pointings`` ({input: pointing} for frames of a camera
        that moved), ``site``, ``bolide_method`` (default ``"auto"``), ``streaks_method``
        (default ``"learned"``), ``threshold`` (streak score, default 0.5),
        ``overlays`` (bolide overlays, default True).

    Returns
    -------
    dict of str to str
        The files of :func:`~skysift.batch.tasks.bolide_task`, or of
        :func:`~skysift.batch.tasks.trails_task` and
        :func:`~skysift.batch.tasks.streaks_task`.

    Raises
    ------
    InputError
        If the input cannot be read.
    """
    cameras = dict(params.get("cameras", {}))
    calibration = None
    if cameras:
        # the input's pointing (a camera that moved during the night), else its camera
        key = dict(params.get("pointings", {})).get(str(input_path))
        calibration = cameras.get(key or camera_of(input_path, params.get("root", ".")))
    if str(input_path).lower().endswith(VIDEO_SUFFIXES):
        p = {
            "calibration": calibration,
            "site": params.get("site"),
            "method": params.get("bolide_method", "auto"),
            "overlays": params.get("overlays", True),
        }
        return {f"bolide_{k}": v for k, v in bolide_task(input_path, out_dir, p).items()}
    outputs = dict(trails_task(input_path, out_dir, {}))
    p = {
        "method": params.get("streaks_method", "learned"),
        "threshold": params.get("threshold", 0.5),
        "calibration": calibration,
    }
    outputs.update({f"streaks_{k}": v for k, v in streaks_task(input_path, out_dir, p).items()})
    return outputs


# -- the run -----------------------------------------------------------------------------------


@dataclass
class NightResult:
    """What :func:`run_night` did.

    Attributes
    ----------
    summary : BatchSummary
        The run over the clips and frames (``OUT/run.ecsv``).
    calibration : BatchSummary or None
        The cameras' calibration run (``OUT/calibration/run.ecsv``); None without frames.
    cameras : dict of str to str
        Camera -> its kept ``calibration.pkl`` (cameras whose calibration failed left out).
    index : Path
        ``OUT/index.html``.
    """

    summary: BatchSummary
    calibration: BatchSummary | None
    cameras: dict[str, str]
    index: Path

    @property
    def exit_code(self) -> int:
        """0, 5 (some inputs failed) or 2 (all failed), as for the batch commands."""
        return self.summary.exit_code


def run_night(
    folder: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    site: Sequence[float] | None = None,
    bolide_method: str = "auto",
    streaks_method: str = "learned",
    threshold: float = 0.5,
    mode: str = "auto",
    overlays: bool = True,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    resume: bool = True,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> NightResult:
    """Search a night's clips and frames; write ``index.html`` and ``run.ecsv`` in ``out_dir``.

    Parameters
    ----------
    folder : path
        The night's folder (searched recursively; one subfolder per camera is usual).
    out_dir : path
        The run's folder: ``calibration/<camera>/``, one subfolder per input,
        ``run.ecsv`` and ``index.html``.
    site : (lat, lon, height_m), optional
        Observing site, degrees (east positive) and metres; overrides the files'.
    bolide_method : {"auto", "unet", "classical"}, optional
        Bolide segmenter. Default "auto".
    streaks_method : {"learned", "classical", "hough", "radon"}, optional
        Streak finder. Default "learned".
    threshold : float, optional
        Streak score threshold in (0, 1]. Default 0.5.
    mode : {"auto", "allsky", "narrow"}, optional
        Calibration model. Default "auto".
    overlays : bool, optional
        Write the bolide overlays. Default True.
    workers, scheduler, client, resume, progress, echo
        As for :func:`~skysift.batch.runner.run_batch`; both runs use the same
        cluster when a client is given.

    Returns
    -------
    NightResult

    Raises
    ------
    InputError
        If ``folder`` holds no clips or frames, or for bad options (see
        :func:`~skysift.batch.runner.run_batch`).
    """
    night = find_night(folder, exclude=out_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    site_list = None if site is None else [float(v) for v in site]
    batch = {
        "workers": workers, "scheduler": scheduler, "client": client, "resume": resume,
        "progress": progress, "echo": echo, "suffixes": (*VIDEO_SUFFIXES, *IMAGE_FILES),
    }  # fmt: skip

    groups = night.groups()
    cal_summary = None
    kept: dict[str, str] = {}
    if groups:
        reps = {cam: files[len(files) // 2] for cam, files in groups.items()}
        params = {"site": site_list, "mode": mode, "plot": True, "keep": True}
        cal_summary = run_batch(
            list(reps.values()), out / CALIBRATION_DIR, "calibrate", params, **batch
        )
        names = dict(zip(reps.values(), output_names(list(reps.values())), strict=True))
        done = {r["input"] for r in cal_summary.rows if r["status"] != "failed"}
        for cam, rep in reps.items():
            pkl = out / CALIBRATION_DIR / names[rep] / CALIBRATION_PICKLE
            if str(rep) in done and pkl.is_file():
                kept[cam] = str(pkl.resolve())
    # A plate solution holds while the pointing does: the frames of a narrow-field
    # camera that moved are split into pointings, each calibrated on its middle frame.
    pointings: dict[str, str] = {}
    extra: dict[str, Path] = {}
    for cam, pkl in list(kept.items()):
        if _model_type(Path(pkl).with_name("calibration.json")) == "fisheye":
            continue  # tied to the ground: valid all night
        parts = pointing_groups(groups[cam], reps[cam])
        for k, part in enumerate(parts[1:], start=2):
            key = f"{cam} pointing {k}"
            extra[key] = part[len(part) // 2]
            pointings.update({str(f): key for f in part})
    if extra:  # their own folder and manifest (calibration/pointings/run.ecsv)
        where = out / CALIBRATION_DIR / "pointings"
        more = run_batch(list(extra.values()), where, "calibrate", params, **batch)
        names = dict(zip(extra.values(), output_names(list(extra.values())), strict=True))
        done = {r["input"] for r in more.rows if r["status"] != "failed"}
        for key, rep in extra.items():
            pkl = where / names[rep] / CALIBRATION_PICKLE
            if str(rep) in done and pkl.is_file():
                kept[key] = str(pkl.resolve())
        if cal_summary is not None:  # one summary of every calibration of the night
            cal_summary = replace(
                cal_summary,
                n_done=cal_summary.n_done + more.n_done,
                n_skipped=cal_summary.n_skipped + more.n_skipped,
                n_failed=cal_summary.n_failed + more.n_failed,
                seconds=cal_summary.seconds + more.seconds,
                rows=[*cal_summary.rows, *more.rows],
            )
    params = {
        "root": str(Path(folder)), "cameras": kept, "pointings": pointings, "site": site_list,
        "bolide_method": bolide_method, "streaks_method": streaks_method,
        "threshold": float(threshold), "overlays": overlays,
    }  # fmt: skip
    inputs = [*night.clips, *night.frames]
    summary = run_batch(inputs, out, night_task, params, **batch)
    index = write_index(summary, night, out, calibration=cal_summary, cameras=kept)
    return NightResult(summary=summary, calibration=cal_summary, cameras=kept, index=index)


# -- the index ---------------------------------------------------------------------------------


def _model_type(path: Path) -> str | None:
    """The ``model_type`` of a ``calibration.json`` (None when it cannot be read)."""
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("model_type"))
    except (OSError, ValueError, AttributeError):
        return None


def _count(path: Path) -> int | None:
    try:
        return len(Table.read(path, format="ascii.ecsv"))
    except Exception:  # noqa: BLE001 - a missing or damaged table: no count
        return None


def _row_cells(row: Mapping[str, Any], out: Path) -> tuple[str, str]:
    """(counts text, thumbnails HTML) of one manifest row."""
    outputs = [o for o in str(row["outputs"]).split(";") if o]
    counts, thumbs = [], []
    for o in outputs:
        esc = html.escape(o.replace(os.sep, "/"), quote=True)
        if o.endswith(".trails.ecsv"):
            counts.append(f"{_count(out / o)} trail(s)")
        elif o.endswith(".streaks.ecsv"):
            counts.append(f"{_count(out / o)} streak(s)")
        elif o.endswith("lightcurve.ecsv"):
            n = _count(out / o)
            counts.append("bolide: none" if not n else f"bolide in {n} frame(s)")
        if o.endswith(".png") and (o.endswith((".trails.png", ".mask.png", "lightcurve.png"))):
            thumbs.append(f'<a href="{esc}"><img src="{esc}" alt="{esc}" height="96"></a>')
    return ", ".join(counts), " ".join(thumbs)


def write_index(
    summary: BatchSummary,
    night: NightInputs,
    out_dir: str | os.PathLike[str],
    *,
    calibration: BatchSummary | None = None,
    cameras: Mapping[str, str] | None = None,
) -> Path:
    """Write ``index.html``: one row per input (status, counts, thumbnails, links), atomically.

    Links are relative to ``out_dir`` (the run's folder can move); text from the
    inputs (file names, errors) is HTML-escaped.

    Returns
    -------
    Path
        The ``index.html``.
    """
    out = Path(out_dir)
    cameras = dict(cameras or {})
    rows = []
    for r in summary.rows:
        p = Path(str(r["input"]))
        cam = night.cameras.get(p, "")
        kind = "clip" if p.name.lower().endswith(VIDEO_SUFFIXES) else "frame"
        counts, thumbs = _row_cells(r, out)
        links = " ".join(
            f'<a href="{html.escape(o, quote=True)}">{html.escape(Path(o).name)}</a>'
            for o in str(r["outputs"]).split(";")
            if o and not o.endswith(".png")
        )
        status = html.escape(str(r["status"]))
        error = html.escape(str(r["error"]))
        cal = "yes" if cam in cameras else "no"
        rows.append(
            f'<tr class="{status}"><td>{html.escape(str(r["name"]))}</td><td>{kind}</td>'
            f"<td>{html.escape(cam)} (calibrated: {cal})</td><td>{status}</td>"
            f"<td>{html.escape(counts)}</td><td>{thumbs}</td><td>{links}</td><td>{error}</td></tr>"
        )
    cal_rows = ""
    if calibration is not None:
        for r in calibration.rows:
            link = ""
            for o in str(r["outputs"]).split(";"):
                if o.endswith("calibration.json"):
                    href = html.escape(f"{CALIBRATION_DIR}/{o}", quote=True)
                    link = f'<a href="{href}">calibration.json</a>'
            cal_rows += (
                f"<tr><td>{html.escape(str(r['input']))}</td><td>{html.escape(str(r['status']))}"
                f"</td><td>{link}</td><td>{html.escape(str(r['error']))}</td></tr>"
            )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>skysift night</title>
<style>body{{font-family:sans-serif}} td,th{{border-bottom:1px solid #ccc;padding:4px}}
tr.failed{{background:#fdd}} table{{border-collapse:collapse}}</style></head><body>
<h1>skysift night</h1>
<p>{html.escape(summary.format().rsplit(" -> ", 1)[0])}; manifest <a href="run.ecsv">run.ecsv</a></p>
<h2>Cameras</h2>
<table><tr><th>calibration frame</th><th>status</th><th>files</th><th>error</th></tr>
{cal_rows}</table>
<h2>Inputs</h2>
<table><tr><th>input</th><th>kind</th><th>camera</th><th>status</th><th>found</th>
<th>thumbnails</th><th>files</th><th>error</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    path = out / INDEX
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
