"""Per-input batch tasks: plain functions ``(input_path, out_dir, params) -> outputs``.

A task reads one input, writes its files into ``out_dir`` (created if needed)
and returns ``{label: path}`` of what it wrote; it raises on a bad input (the
runner records the error). The same function runs in the calling process
(``workers=0``) and on Dask workers, so the outputs are the same either way.

Models are loaded through :func:`worker_cache`, once per (worker) process.
"""

from __future__ import annotations

import glob
import os
import pickle
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from skysift.bolide.pipeline import run_bolide
from skysift.bolide.trails_pipeline import find_trails_in
from skysift.calibration.pipeline import calibrate, find_stars
from skysift.calibration.report import write_calibration, write_stars
from skysift.detection.stars import star_finder
from skysift.dso.pipeline import run_dso
from skysift.errors import InputError
from skysift.io import read_frame
from skysift.movers.pipeline import run_movers
from skysift.outputs.files import atomic_path
from skysift.outputs.plots import plot_stars
from skysift.streaks.pipeline import make_streak_finder, streaks_to_files

__all__ = [
    "TASKS",
    "bolide_task",
    "cache_info",
    "calibrate_task",
    "dso_task",
    "get_task",
    "load_calibration",
    "movers_task",
    "stamps_task",
    "stars_task",
    "streaks_task",
    "trails_task",
    "worker_cache",
]

#: The pickled :class:`~skysift.calibration.frame.CalibrationResult` a calibration task
#: writes when asked (``params["keep"]``), for tasks that reuse one camera's calibration.
CALIBRATION_PICKLE = "calibration.pkl"

_CACHE: dict[Any, Any] = {}
_LOADS: dict[Any, int] = {}
_LOCK = threading.Lock()


def worker_cache(key: Any, factory: Callable[[], Any]) -> Any:
    """Return the object cached under ``key`` in this process, building it on first use.

    A Dask worker is a long-lived process, so a model built here is loaded
    once per worker, not once per task.

    Parameters
    ----------
    key : hashable
        Names the object, e.g. ``("stars", "unet")``.
    factory : callable
        Builds the object (called at most once per process and key).

    Returns
    -------
    object
        What ``factory`` returned, the first time or from the cache.
    """
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = factory()
            _LOADS[key] = _LOADS.get(key, 0) + 1
        return _CACHE[key]


def cache_info() -> dict[str, Any]:
    """This process's id and how many times each cached object was built (for diagnostics)."""
    with _LOCK:
        return {"pid": os.getpid(), "loads": {repr(k): n for k, n in _LOADS.items()}}


def _load_star_finder(method: str) -> Any:
    finder = star_finder(method)
    # the learned finders load their weights on first access of ``model`` and keep them in
    # a per-process cache; touching it here loads them once, on the worker's first task
    getattr(finder, "model", None)
    return finder


def stars_task(
    input_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], params: Mapping[str, Any]
) -> dict[str, str]:
    """Detect stars in one image: ``stars.ecsv`` (and ``stars.png``) in ``out_dir``.

    The same steps and files as ``skysift stars IMAGE --out OUT_DIR``.

    Parameters
    ----------
    input_path : path
        Image file (FITS, PNG, JPEG, TIFF).
    out_dir : path
        Folder of this input's outputs (created if needed).
    params : mapping
        ``method`` (star finder name, default ``"classical"``), ``threshold`` (in
        background sigma, default 3), ``mask`` (mask what is not sky, default True),
        ``plot`` (write ``stars.png``, default True).

    Returns
    -------
    dict of str to str
        ``{"stars": path of stars.ecsv, "plot": path of stars.png}`` (no ``plot`` without one).

    Raises
    ------
    InputError
        If the image cannot be read or a parameter is invalid.
    """
    method = str(params.get("method", "classical"))
    threshold = float(params.get("threshold", 3.0))
    use_mask = bool(params.get("mask", True))
    plot = bool(params.get("plot", True))
    if method != "classical":
        worker_cache(("stars", method), lambda: _load_star_finder(method))
    frame = read_frame(input_path)
    found, sky = find_stars(frame, method=method, threshold_sigma=threshold, use_mask=use_mask)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs = {"stars": str(write_stars(found, out))}
    if plot:
        png = plot_stars(
            frame.data,
            found,
            out / "stars.png",
            mask=None if sky is None else sky.mask,
            title=f"{frame.name}: {len(found)} stars",
        )
        outputs["plot"] = str(png)
    return outputs


def _site(value: Any) -> tuple[float, float, float] | None:
    return None if value is None else tuple(float(v) for v in value)  # type: ignore[return-value]


def calibrate_task(
    input_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], params: Mapping[str, Any]
) -> dict[str, str]:
    """Calibrate one image: the files of ``skysift calibrate IMAGE --out OUT_DIR``.

    Parameters
    ----------
    input_path : path
        Image file (FITS, PNG, JPEG, TIFF).
    out_dir : path
        Folder of this input's outputs (created if needed).
    params : mapping
        ``site`` ([lat, lon, height_m] or None), ``time`` (ISO 8601 or None),
        ``exposure`` (s or None), ``pairs`` (path or None), ``mode`` (default
        ``"auto"``), ``fov`` (degrees or None), ``plot`` (default True), ``keep``
        (also write ``calibration.pkl``, the result for reuse by other tasks;
        default False); any other key is passed to
        :func:`skysift.calibration.pipeline.calibrate` as a keyword.

    Returns
    -------
    dict of str to str
        File role -> path (``stars``, ``matches``, ``calibration``, ``plot``, ...).

    Raises
    ------
    InputError
        If the image cannot be read or calibrated (``CalibrationError``, a subclass
        of the package's errors, when too few stars are identified).
    """
    known = {"site", "time", "exposure", "pairs", "mode", "fov", "plot", "keep"}
    extra = {k: v for k, v in params.items() if k not in known and v is not None}
    frame = read_frame(
        input_path, site=_site(params.get("site")), time=params.get("time"),
        exposure=params.get("exposure"),
    )  # fmt: skip
    result = calibrate(
        frame, pairs=params.get("pairs"), mode=str(params.get("mode", "auto")),
        fov_deg=params.get("fov"), **extra,
    )  # fmt: skip
    paths = write_calibration(result, out_dir, plot=bool(params.get("plot", True)))
    if params.get("keep"):
        target = Path(out_dir) / CALIBRATION_PICKLE
        with atomic_path(target) as tmp:
            tmp.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        paths["pickle"] = target
    return {k: str(v) for k, v in paths.items()}


def load_calibration(path: str | os.PathLike[str]) -> Any:
    """The calibration a :func:`calibrate_task` kept (``calibration.pkl``), once per process.

    Only files written by skysift itself are read (a pickle runs code on load).

    Raises
    ------
    InputError
        If the file is missing or not a calibration.
    """
    key = ("calibration", str(Path(path).resolve()))

    def load() -> Any:
        try:
            return pickle.loads(Path(path).read_bytes())  # noqa: S301 - our own file (see above)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as err:
            msg = f"{path}: not a kept calibration ({type(err).__name__}: {err})"
            raise InputError(msg) from None

    return worker_cache(key, load)


def streaks_task(
    input_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], params: Mapping[str, Any]
) -> dict[str, str]:
    """Find streaks in one image: ``NAME.streaks.ecsv``, ``NAME.prob.fits``, ``NAME.mask.png``.

    ``NAME`` is the name of ``out_dir`` (the input's unique name in the run); the
    files are those :func:`skysift.streaks.pipeline.run_streaks` writes for the
    image. The finder (and its weights) is built once per process.

    Parameters
    ----------
    input_path : path
        Image file.
    out_dir : path
        Folder of this input's outputs (created if needed).
    params : mapping
        ``method`` (default ``"learned"``), ``threshold`` (default 0.5),
        ``segment_all`` (default False), ``calibration`` (path of a kept
        ``calibration.pkl`` whose camera gives RA/Dec; default None).

    Returns
    -------
    dict of str to str
        ``{"streaks": ..., "prob": ..., "mask": ...}``.

    Raises
    ------
    InputError
        If the image cannot be read or a parameter is invalid.
    """
    method = str(params.get("method", "learned"))
    segment_all = bool(params.get("segment_all", False))
    finder = worker_cache(
        ("streaks", method, segment_all),
        lambda: make_streak_finder(method, segment_all=segment_all),
    )
    camera = None
    if params.get("calibration"):
        camera = load_calibration(params["calibration"]).camera
    paths = streaks_to_files(
        input_path, out_dir, method=method, threshold=params.get("threshold", 0.5),
        segment_all=segment_all, finder=finder, stem=Path(out_dir).name, wcs_or_camera=camera,
    )  # fmt: skip
    return {k: str(v) for k, v in paths.items()}


def bolide_task(
    input_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], params: Mapping[str, Any]
) -> dict[str, str]:
    """The bolide light curve of one clip: the files of ``skysift bolide CLIP --out OUT_DIR``.

    Parameters
    ----------
    input_path : path
        Video, folder of frames or FITS cube.
    out_dir : path
        Folder of this clip's outputs (created if needed).
    params : mapping
        ``calibration`` (calibration image, or a kept ``calibration.pkl`` of the
        camera, reused as it is; default: the clip's median stack), ``site``,
        ``time``, ``fps``, ``pairs``, ``method`` (default ``"auto"``), ``overlays``
        (default True), ``height_km``, ``platepar``, ``interlaced`` (default
        ``"no"``), as for :func:`skysift.bolide.pipeline.run_bolide`.

    Returns
    -------
    dict of str to str
        File role -> path (``report``, ``lightcurve``, ...).

    Raises
    ------
    InputError
        If the clip cannot be read or a parameter is invalid.
    """
    calibration = params.get("calibration")
    if calibration and str(calibration).endswith(CALIBRATION_PICKLE):
        calibration = load_calibration(calibration)
    result = run_bolide(
        input_path, out_dir, calibration=calibration, site=_site(params.get("site")),
        time=params.get("time"), fps=params.get("fps"), pairs=params.get("pairs"),
        method=str(params.get("method", "auto")), overlays=bool(params.get("overlays", True)),
        height_km=params.get("height_km"), platepar=params.get("platepar"),
        interlaced=str(params.get("interlaced", "no")),
    )  # fmt: skip
    return {k: str(v) for k, v in result.files.items()}


def trails_task(
    input_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], params: Mapping[str, Any]
) -> dict[str, str]:
    """Meteor trails of one exposure: ``STEM.trails.ecsv`` and ``STEM.trails.png``.

    Parameters
    ----------
    input_path : path
        Image file.
    out_dir : path
        Folder of this input's outputs (created if needed).
    params : mapping
        Keywords of :func:`skysift.bolide.trails_pipeline.find_trails_in`
        (none needed).

    Returns
    -------
    dict of str to str
        ``{"trails": STEM.trails.ecsv}`` and the other ``STEM.trails*`` files
        written (``png``: the figure, ``profile_ecsv``: the profiles, ...).

    Raises
    ------
    InputError
        If the image cannot be read.
    """
    table, ecsv = find_trails_in(input_path, out_dir, **dict(params))
    ecsv = Path(ecsv if ecsv is not None else out_dir)  # out_dir given: always written
    stem = ecsv.name[: -len(".trails.ecsv")]
    outputs = {"trails": str(ecsv)}
    for other in sorted(ecsv.parent.glob(f"{glob.escape(stem)}.trails*")):
        if other != ecsv:  # the figure, the profiles table, ...
            label = other.name[len(stem) + len(".trails") :].lstrip("_.").replace(".", "_")
            outputs[label or other.name] = str(other)
    return outputs


def _pair(value: Any) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


def dso_task(
    input_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], params: Mapping[str, Any]
) -> dict[str, str]:
    """Deep-sky objects of one image: the files of ``skysift dso IMAGE --out OUT_DIR``.

    Parameters
    ----------
    input_path : path
        JPEG/PNG/TIFF/FITS image.
    out_dir : path
        Folder of this input's outputs (created if needed).
    params : mapping
        ``fov`` (horizontal field of view hint, degrees), ``ra``, ``dec`` (field
        centre hint, degrees), ``radius`` (search radius, degrees, default 5),
        ``pixel_aspect`` (w/h of a resampled image), ``detector`` (name or
        path of the learned detector's weights, or None: not run), as for
        :func:`skysift.dso.pipeline.run_dso`; all optional.

    Returns
    -------
    dict of str to str
        ``objects``, ``annotated``, ``calibration``, ``wcs``, ``summary`` -> path.

    Raises
    ------
    InputError
        If the image does not exist or cannot be read.
    NotEnoughStarsError, CalibrationError
        If the image cannot be plate-solved.
    """
    (result,) = run_dso(
        [str(input_path)], out_dir, fov_deg=params.get("fov"), ra_deg=params.get("ra"),
        dec_deg=params.get("dec"), radius_deg=float(params.get("radius", 5.0)),
        pixel_aspect=params.get("pixel_aspect"), detector=params.get("detector"),
    )  # fmt: skip
    return {k: str(v) for k, v in result.files.items()}


def stamps_task(
    input_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], params: Mapping[str, Any]
) -> dict[str, str]:
    """Classify the stamps of one input: the files of ``skysift stamps INPUT --out OUT_DIR``.

    The classifier is loaded once per process.

    Parameters
    ----------
    input_path : path
        A FITS cube of stamps ``(N, H, W)`` or ``(N, C, H, W)``, a folder of
        single stamps, or (with ``dithers``) one ``(n_dithers, H, W)`` cube of
        registered dither frames.
    out_dir : path
        Folder of this input's outputs (created if needed).
    params : mapping
        ``dithers`` (None: the input holds stamps), ``interval`` (start-to-start
        time between dithers, exposures; default 1.2), ``pixel_scale`` (arcsec per
        pixel; default 0.1), ``weights`` (classifier weights; default the shipped
        ones), ``nan`` (``"raise"`` or ``"fill"``; default ``"raise"``), as for
        :func:`skysift.stamps.pipeline.run_stamps`.

    Returns
    -------
    dict of str to str
        ``{"stamps": stamps.ecsv, "config": stamps_config.json}`` and
        ``contact_<class>`` -> ``contact_<class>.png`` for each sheet written.

    Raises
    ------
    InputError
        For a missing or unreadable input, stamps of the wrong size, NaNs (with
        ``nan="raise"``) or a wrong number of dithers.
    """
    # the classifier needs torch (the learn extra): imported on use
    from skysift.stamps.pipeline import run_stamps
    from skysift.stamps.train import load_stamp_classifier  # (the same: torch)

    weights = params.get("weights")
    model = worker_cache(("stamps", weights), lambda: load_stamp_classifier(weights))
    dithers = params.get("dithers")
    out = Path(out_dir)
    run_stamps(
        [str(input_path)], out, n_dithers=None if dithers is None else int(dithers),
        weights=model, dither_interval=float(params.get("interval", 1.2)),
        pixel_scale=float(params.get("pixel_scale", 0.1)), nan=str(params.get("nan", "raise")),
    )  # fmt: skip
    outputs = {"stamps": str(out / "stamps.ecsv"), "config": str(out / "stamps_config.json")}
    for sheet in sorted(out.glob("contact_*.png")):
        outputs[sheet.stem] = str(sheet)
    return outputs


def movers_task(
    input_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], params: Mapping[str, Any]
) -> dict[str, str]:
    """Fast movers in one sequence: the files of ``skysift movers SEQUENCE --out OUT_DIR``.

    Parameters
    ----------
    input_path : path
        One sequence: a FITS cube ``(T, H, W)`` or a folder of frames (in name
        order), registered; a single frame is a sequence of one.
    out_dir : path
        Folder of this sequence's outputs (created if needed).
    params : mapping
        ``mode`` (default ``"sidereal"``), ``method`` (default ``"auto"``),
        ``pixel_scale`` (arcsec/px), ``psf_fwhm`` (px), ``rate_range`` ([lo, hi]
        px/frame), ``calibrate`` (default False), ``stn`` (default ``"500"``), as
        for :func:`skysift.movers.pipeline.run_movers`.

    Returns
    -------
    dict of str to str
        ``ecsv`` (movers.ecsv), ``psv`` (the ADES file, when written) and
        ``overlay_KKKK`` (one PNG per frame) -> path.

    Raises
    ------
    InputError
        For an unreadable input, frames of different shapes or a bad parameter.
    """
    result = run_movers(
        [str(input_path)], out_dir, mode=str(params.get("mode", "sidereal")),
        method=str(params.get("method", "auto")), pixel_scale=params.get("pixel_scale"),
        psf_fwhm=params.get("psf_fwhm"), rate_range=_pair(params.get("rate_range")),
        calibrate=bool(params.get("calibrate", False)), stn=str(params.get("stn", "500")),
    )  # fmt: skip
    outputs: dict[str, str] = {}
    for label, value in result.files.items():
        if isinstance(value, list | tuple):
            outputs.update({f"overlay_{k:04d}": str(v) for k, v in enumerate(value)})
        else:
            outputs[label] = str(value)
    return outputs


#: Batch tasks by name (the commands that run on the batch layer).
TASKS: dict[str, Callable[[str, str, Mapping[str, Any]], dict[str, str]]] = {
    "stars": stars_task,
    "calibrate": calibrate_task,
    "streaks": streaks_task,
    "bolide": bolide_task,
    "trails": trails_task,
    "dso": dso_task,
    "stamps": stamps_task,
    "movers": movers_task,
}


def get_task(task: str | Callable[..., dict[str, str]]) -> tuple[str, Callable[..., Any]]:
    """``(name, function)`` of a task given by name (a key of :data:`TASKS`) or as a function.

    Raises
    ------
    InputError
        If ``task`` is an unknown name (the message lists the valid ones).
    """
    if callable(task):
        return f"{task.__module__}:{task.__qualname__}", task
    try:
        return task, TASKS[task]
    except KeyError:
        msg = f"unknown batch task {task!r}; valid: {', '.join(TASKS)}"
        raise InputError(msg) from None
