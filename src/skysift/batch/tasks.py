"""Per-input batch tasks: plain functions ``(input_path, out_dir, params) -> outputs``.

A task reads one input, writes its files into ``out_dir`` (created if needed)
and returns ``{label: path}`` of what it wrote; it raises on a bad input (the
runner records the error). The same function runs in the calling process
(``workers=0``) and on Dask workers, so the outputs are the same either way.

Models are loaded through :func:`worker_cache`, once per (worker) process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from skysift.calibration.pipeline import find_stars
from skysift.calibration.report import write_stars
from skysift.detection.stars import star_finder
from skysift.errors import InputError
from skysift.io import read_frame
from skysift.outputs.plots import plot_stars

__all__ = ["TASKS", "cache_info", "get_task", "stars_task", "worker_cache"]

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


#: Batch tasks by name (the commands that run on the batch layer).
TASKS: dict[str, Callable[[str, str, Mapping[str, Any]], dict[str, str]]] = {
    "stars": stars_task,
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
        msg = f"unknown batch task {task!r}; valid: {', '.join(sorted(TASKS))}"
        raise InputError(msg) from None
