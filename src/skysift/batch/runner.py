"""Run one task per input, in this process or on a Dask cluster, with a resumable manifest.

The inputs (files, folders, globs) are expanded into a sorted list of files;
each gets its own output folder ``OUT/<name>/`` and one task. With
``workers=0`` the tasks run one after the other in this process; otherwise
they are submitted to a ``dask.distributed`` client: a ``LocalCluster`` of
``workers`` processes with one thread each (numpy and torch stay
single-threaded per process), or an existing scheduler. The same task
function runs either way, so the files are the same.

``OUT/run.ecsv`` (the manifest) gets one row per input as its result arrives
(rewritten atomically, at most every ``manifest_interval`` seconds and at the
end): ``input``, ``name`` (its output folder), ``sha256`` of the file, ``status`` (``done``, ``failed`` or ``skipped``), ``outputs`` (paths
relative to ``OUT``, ``;``-separated), ``error``, ``warnings``, ``seconds``,
``worker`` (host:pid) and ``params`` (JSON). A rerun skips an input whose
file (SHA-256), parameters and output folder match a finished row and whose
outputs still exist; an interrupted run therefore finishes only what was left.

A task that raises is recorded ``failed`` with the error (bad inputs are not
retried). A task whose worker process dies (out of memory, killed) is run once
more on another worker (the scheduler's ``allowed-failures`` is set to 1 for a
cluster started here; an existing scheduler keeps its own setting) and then
recorded ``failed`` with the reason. A task that was running on a worker when
it died counts that death too; as many tasks are in flight as the cluster has
threads, so this is the task that killed it, except for a moment after a death
while the survivors may hold two tasks each.

Memory: a worker (one thread) holds one input, and its models, at a time.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import logging
import os
import re
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from tqdm import tqdm

from skysift.batch.tasks import get_task
from skysift.errors import InputError
from skysift.io.readers import FITS_SUFFIXES, IMAGE_SUFFIXES
from skysift.outputs.files import output_stems as output_names
from skysift.outputs.files import sha256_file, write_table

__all__ = [
    "BatchSummary",
    "MANIFEST_COLUMNS",
    "default_workers",
    "expand_inputs",
    "frame_folder",
    "local_cluster",
    "output_names",
    "read_manifest",
    "run_batch",
]

log = logging.getLogger(__name__)

MANIFEST = "run.ecsv"
MANIFEST_COLUMNS = (
    "input",
    "name",
    "sha256",
    "status",
    "outputs",
    "error",
    "warnings",
    "seconds",
    "worker",
    "params",
)
_FINISHED = ("done", "skipped")
_COMPRESSED_FITS = tuple(f"{f}{c}" for f in FITS_SUFFIXES for c in (".gz", ".bz2"))
IMAGE_FILES = FITS_SUFFIXES + _COMPRESSED_FITS + IMAGE_SUFFIXES


# -- inputs ------------------------------------------------------------------------------------


def _natural_key(path: Path) -> list[Any]:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", str(path))]


def _matches(path: Path, suffixes: Sequence[str]) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and name.endswith(tuple(suffixes))


def expand_inputs(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    suffixes: Sequence[str] = IMAGE_FILES,
    keep_folders: bool | Callable[[Path], bool] = False,
) -> list[Path]:
    """The files named by ``inputs``: files, folders (their files) and globs, sorted, deduplicated.

    Parameters
    ----------
    inputs : iterable of path or str
        A file is taken as it is, even one that does not exist or has an unknown
        type (its task then fails with the reason); a folder gives its files with
        one of ``suffixes`` (not recursive, hidden files left out); a string with
        ``*``, ``?`` or ``[`` is a glob (``**`` recursive), its folders expanded.
    suffixes : sequence of str, optional
        File name endings taken from folders and globs (case-insensitive). Default:
        FITS (also ``.gz``/``.bz2``) and image files.
    keep_folders : bool or callable, optional
        A folder named in ``inputs`` (or matched by a glob) is one input, not
        its files (a sequence of frames for ``movers``, a set of stamps): always
        (True), never (False, the default), or when ``keep_folders(folder)``
        says so.

    Returns
    -------
    list of Path
        Sorted in natural order (``f2`` before ``f10``); a file named twice (or by
        two routes) appears once.

    Raises
    ------
    InputError
        If nothing is left (empty folders, globs that match nothing).
    """
    items = [str(p) for p in inputs]
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir() and _keep(path, keep_folders):
            found.append(path)
        elif path.is_dir():
            found += [p for p in path.iterdir() if _matches(p, suffixes)]
        elif glob.has_magic(item) and not path.exists():
            for hit in map(Path, glob.glob(item, recursive=True)):
                if hit.is_dir() and _keep(hit, keep_folders):
                    found.append(hit)
                elif hit.is_dir():
                    found += [p for p in hit.iterdir() if _matches(p, suffixes)]
                elif _matches(hit, suffixes):
                    found.append(hit)
        else:
            found.append(path)
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    files = sorted(unique.values(), key=_natural_key)
    if not files:
        kinds = " ".join(suffixes)
        msg = f"{' '.join(items) or '(no inputs)'}: no input files found (looked for {kinds})"
        raise InputError(msg)
    return files


def frame_folder(folder: Path) -> bool:
    """Whether a folder holds a sequence of 2-D frames (one input), not cubes.

    True when it has at least two FITS or image files and no FITS file in it
    declares three or more axes (read from the headers only).
    """
    files = [p for p in folder.iterdir() if _matches(p, IMAGE_FILES)]
    if len(files) < 2:
        return False
    for f in files:
        if f.name.lower().split(".")[-1] in ("fits", "fit", "fts", "gz", "bz2"):
            try:
                if int(fits.getheader(f).get("NAXIS", 0)) >= 3:
                    return False
            except (OSError, ValueError):
                continue  # an unreadable frame: its task reports it
    return True


def _keep(folder: Path, rule: bool | Callable[[Path], bool]) -> bool:
    return bool(rule(folder)) if callable(rule) else bool(rule)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes; of a folder, of its files' names and digests.

    ``""`` when it cannot be read.
    """
    try:
        if Path(path).is_dir():  # a folder taken as one input (a sequence of frames)
            h = hashlib.sha256()
            for f in sorted(p for p in Path(path).iterdir() if p.is_file()):
                h.update(f"{f.name}\0{sha256_file(f)}\n".encode())
            return h.hexdigest()
        return sha256_file(path)
    except OSError:
        return ""


# -- one input ---------------------------------------------------------------------------------


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if text else type(err).__name__


def execute(
    task: Callable[..., Mapping[str, str]],
    input_path: str,
    out_dir: str,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Run ``task`` on one input and describe the result (what a worker sends back).

    Returns
    -------
    dict
        ``sha256``, ``status`` (``done`` or ``failed``), ``outputs`` (dict of
        label to path), ``error`` and ``warnings`` (one line each, ``""`` if
        none), ``seconds``, ``worker`` (host:pid).
    """
    t0 = time.perf_counter()
    digest = sha256_of(input_path)
    outputs: Mapping[str, str] = {}
    error = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outputs = task(input_path, out_dir, params)
        except Exception as err:  # noqa: BLE001 - any failure of one input is recorded, the run goes on
            error = _one_line(err)
            if not str(err).startswith(str(input_path)):
                error = f"{type(err).__name__}: {error}"
    seen: dict[str, None] = {}
    for w in caught:
        seen.setdefault(" ".join(str(w.message).split()), None)
    return {
        "sha256": digest,
        "status": "failed" if error else "done",
        "outputs": dict(outputs),
        "error": error,
        "warnings": " | ".join(seen),
        "seconds": time.perf_counter() - t0,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


# -- the manifest ------------------------------------------------------------------------------


def read_manifest(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Rows of a ``run.ecsv`` keyed by the resolved input path (empty if there is none).

    Raises
    ------
    InputError
        If the file exists but is not a readable manifest.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        t = Table.read(path, format="ascii.ecsv")
    except Exception as err:  # noqa: BLE001 - any parse error means the same thing here
        msg = (
            f"{path}: not a readable run manifest ({_one_line(err)}); move it away to start afresh"
        )
        raise InputError(msg) from None
    missing = [c for c in MANIFEST_COLUMNS if c not in t.colnames]
    if missing:
        msg = f"{path}: not a run manifest (missing columns {', '.join(missing)})"
        raise InputError(msg)
    rows = {}
    for r in t:
        row = {c: _cell(r[c]) for c in MANIFEST_COLUMNS}
        row["seconds"] = float(row["seconds"] or "nan")
        rows[str(Path(row["input"]).resolve())] = row
    return rows


def _cell(value: Any) -> str:
    # ECSV reads an empty string back as a masked value
    return "" if value is np.ma.masked else str(value)


def _write_manifest(rows: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    ordered = [rows[k] for k in sorted(rows, key=lambda k: _natural_key(Path(k)))]
    t = Table()
    for c in MANIFEST_COLUMNS:
        if c == "seconds":
            t[c] = np.array([float(r[c]) for r in ordered], dtype=float)
        else:
            t[c] = (
                np.array([str(r[c]) for r in ordered], dtype=str)
                if ordered
                else np.array([], dtype=str)
            )
    t["seconds"].unit = "s"
    t.meta["comment"] = (
        "skysift batch manifest: one row per input; status done, failed or skipped; "
        "outputs relative to this folder"
    )
    write_table(t, path)


def _finished(prev: Mapping[str, Any] | None, name: str, params: str, out: Path) -> bool:
    if prev is None or prev["status"] not in _FINISHED:
        return False
    if prev["params"] != params or prev["name"] != name:
        return False
    outputs = [o for o in prev["outputs"].split(";") if o]
    return all((out / o).exists() for o in outputs)


# -- the run -----------------------------------------------------------------------------------


@dataclass
class BatchSummary:
    """What a batch run did.

    Attributes
    ----------
    n_done, n_skipped, n_failed : int
        Inputs computed, skipped (finished by an earlier run) and failed in this run.
    seconds : float
        Wall time of the run, in seconds.
    manifest : Path
        The ``run.ecsv``.
    rows : list of dict
        This run's manifest rows, in input order.
    dashboard : str or None
        The Dask dashboard link of a cluster started here (None without one).
    """

    n_done: int
    n_skipped: int
    n_failed: int
    seconds: float
    manifest: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    dashboard: str | None = None

    @property
    def failed(self) -> list[tuple[str, str]]:
        """``(input, error)`` of every failed input."""
        return [(r["input"], r["error"]) for r in self.rows if r["status"] == "failed"]

    @property
    def inputs_per_s(self) -> float:
        """Inputs computed (done or failed) per second of wall time."""
        n = self.n_done + self.n_failed
        return n / self.seconds if self.seconds > 0 else float("nan")

    @property
    def exit_code(self) -> int:
        """The command's exit code: 0 if nothing failed, 5 if some inputs failed, 2 if all did."""
        if not self.n_failed:
            return 0
        return 5 if self.n_done + self.n_skipped else 2

    def failure_lines(self) -> list[str]:
        """``skysift: failed: INPUT: ERROR`` per failed input (the input named once)."""
        return [
            f"skysift: failed: {error if error.startswith(name) else f'{name}: {error}'}"
            for name, error in self.failed
        ]

    def format(self) -> str:
        """One line: done, skipped, failed, time and throughput."""
        return (
            f"{self.n_done} done, {self.n_skipped} skipped, {self.n_failed} failed in "
            f"{self.seconds:.1f} s ({self.inputs_per_s:.2f} inputs/s) -> {self.manifest}"
        )


def default_workers() -> int:
    """The number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def local_cluster(n_workers: int, **kwargs: Any) -> Any:
    """A ``dask.distributed.LocalCluster`` as the batch layer starts one.

    ``n_workers`` processes with one thread each that import the tasks as they
    start (``preload``), the dashboard on a free port,
    one task at a time per worker (``worker-saturation`` 1) and a task whose
    worker dies retried once (``allowed-failures`` 1).

    Raises
    ------
    InputError
        If ``n_workers`` < 1.
    """
    # dask[distributed] is needed only for parallel runs: imported on use
    import dask  # noqa: I001
    from dask.distributed import LocalCluster  # dask[distributed]: optional, imported on use

    if n_workers < 1:
        msg = f"workers must be >= 1 for a local cluster, got {n_workers}"
        raise InputError(msg)
    opts = {
        "n_workers": n_workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",
        "silence_logs": logging.ERROR,
        # each worker imports the tasks (numpy, astropy, OpenCV, the pipelines: seconds) as it
        # starts, before it joins: a worker counted as up takes its first task at once
        "preload": ["skysift.batch.tasks"],
    }
    opts.update(kwargs)
    # one task at a time per worker (memory bounded by one input), and a task whose worker
    # dies is run once more, then fails with KilledWorker
    config = {
        "distributed.scheduler.allowed-failures": 1,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(config):
        return LocalCluster(**opts)


def _dashboard(client: Any) -> str | None:
    # the dashboard needs bokeh; without it the scheduler serves no /status page
    if importlib.util.find_spec("bokeh") is None:
        return None
    return str(client.dashboard_link)


def run_batch(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    task: str | Callable[..., Mapping[str, str]] = "stars",
    params: Mapping[str, Any] | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    resume: bool = True,
    progress: bool = True,
    suffixes: Sequence[str] = IMAGE_FILES,
    keep_folders: bool | Callable[[Path], bool] = False,
    echo: Callable[[str], None] | None = None,
    connect_timeout: float = 10.0,
    manifest_interval: float = 0.5,
) -> BatchSummary:
    """Run ``task`` on every input; outputs in ``out_dir/<name>/``, the manifest ``out_dir/run.ecsv``.

    Parameters
    ----------
    inputs : iterable of path or str
        Files, folders and globs (see :func:`expand_inputs`).
    out_dir : path
        The run's folder (created if needed).
    task : str or callable, optional
        A key of :data:`skysift.batch.tasks.TASKS` or a module-level function
        ``(input_path, out_dir, params) -> {label: path}``. Default ``"stars"``.
    params : mapping, optional
        The task's parameters (JSON-serialisable); saved in the manifest, and a
        change recomputes every input.
    workers : int, optional
        0: run in this process, no Dask. N >= 1: a ``LocalCluster`` of N processes
        with one thread each. Default: the machine's cores. Ignored with
        ``scheduler`` or ``client``.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``).
    client : dask.distributed.Client, optional
        A client to use as it is (not closed here).
    resume : bool, optional
        Skip inputs finished by an earlier run with the same file, parameters and
        output folder. Default True.
    progress : bool, optional
        Show a progress bar on stderr (when it is a terminal). Default True.
    suffixes : sequence of str, optional
        File endings taken from folders and globs.
    keep_folders : bool or callable, optional
        Folders as inputs of their own (see :func:`expand_inputs`). Default False.
    echo : callable, optional
        Called with the dashboard link of a cluster started here.
    connect_timeout : float, optional
        Seconds to wait for ``scheduler``. Default 10.
    manifest_interval : float, optional
        Least seconds between two writes of the manifest while results arrive
        (each write rewrites the whole file); it is always written at the end,
        also when the run is interrupted. 0: after every result. Default 0.5.

    Returns
    -------
    BatchSummary

    Raises
    ------
    InputError
        If no input file is found, ``workers`` is negative, both ``workers`` and
        ``scheduler`` are given, the scheduler cannot be reached, ``params`` is not
        JSON-serialisable or the manifest is unreadable.
    """
    t0 = time.perf_counter()
    task_name, fn = get_task(task)
    if workers is not None and workers < 0:
        msg = f"--workers must be >= 0, got {workers}"
        raise InputError(msg)
    if workers is not None and scheduler is not None:
        msg = "--workers and --scheduler cannot be used together (the cluster has its workers)"
        raise InputError(msg)
    try:
        params_json = json.dumps({"task": task_name, **dict(params or {})}, sort_keys=True)
    except TypeError as err:
        msg = f"batch parameters must be JSON-serialisable: {err}"
        raise InputError(msg) from None
    task_params = dict(params or {})
    files = expand_inputs(inputs, suffixes=suffixes, keep_folders=keep_folders)
    names = output_names(files)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    previous = read_manifest(manifest)
    rows: dict[str, dict[str, Any]] = dict(previous)  # rows of inputs not in this run are kept

    run_rows: dict[str, dict[str, Any]] = {}
    pending: list[tuple[str, Path, str]] = []
    for path, name in zip(files, names, strict=True):
        key = str(path.resolve())
        prev = previous.get(key)
        if resume and _finished(prev, name, params_json, out) and sha256_of(path) == prev["sha256"]:
            row = {**prev, "input": str(path), "status": "skipped", "seconds": 0.0}
            rows[key] = run_rows[key] = row
        else:
            rows.pop(key, None)
            pending.append((key, path, name))
    _write_manifest(rows, manifest)
    last_write = [time.perf_counter() - manifest_interval]

    def record(key: str, path: Path, name: str, result: Mapping[str, Any]) -> None:
        outputs = ";".join(
            os.path.relpath(p, out) for p in result["outputs"].values()
        )  # relative, so the run folder can move
        row = {
            "input": str(path),
            "name": name,
            "params": params_json,
            **{k: result[k] for k in ("sha256", "status", "error", "warnings", "seconds")},
            "outputs": outputs,
            "worker": result["worker"],
        }
        rows[key] = run_rows[key] = row
        if time.perf_counter() - last_write[0] >= manifest_interval:
            _write_manifest(rows, manifest)
            last_write[0] = time.perf_counter()

    bar = tqdm(
        total=len(pending),
        desc=task_name.rsplit(":", 1)[-1],
        unit="input",
        file=None,
        disable=None if progress else True,
    )
    dashboard = None
    try:
        if not pending:
            pass
        elif client is None and scheduler is None and workers == 0:
            for key, path, name in pending:
                record(key, path, name, execute(fn, str(path), str(out / name), task_params))
                bar.update()
        else:
            dashboard = _run_dask(
                fn,
                pending,
                out,
                task_params,
                record,
                bar,
                workers,
                scheduler,
                client,
                echo,
                connect_timeout,
            )
    finally:
        bar.close()
        _write_manifest(rows, manifest)  # also after Ctrl+C: a rerun finishes only what was left

    ordered = [run_rows[k] for k in sorted(run_rows, key=lambda k: _natural_key(Path(k)))]
    status = [r["status"] for r in ordered]
    return BatchSummary(
        n_done=status.count("done"),
        n_skipped=status.count("skipped"),
        n_failed=status.count("failed"),
        seconds=time.perf_counter() - t0,
        manifest=manifest,
        rows=ordered,
        dashboard=dashboard,
    )


def _run_dask(
    fn: Callable[..., Any],
    pending: list[tuple[str, Path, str]],
    out: Path,
    params: dict[str, Any],
    record: Callable[..., None],
    bar: Any,
    workers: int | None,
    scheduler: str | None,
    client: Any,
    echo: Callable[[str], None] | None,
    connect_timeout: float,
) -> str | None:
    try:
        # dask[distributed] is needed only for parallel runs: imported on use
        from dask.distributed import Client, as_completed
    except ImportError:
        msg = (
            "--workers/--scheduler need dask[distributed] (pip install 'dask[distributed]'); "
            "--workers 0 runs without it"
        )
        raise InputError(msg) from None

    cluster = None
    own = client is None
    dashboard = None
    if client is None and scheduler is not None:
        try:
            client = Client(scheduler, timeout=connect_timeout)
        except (OSError, TimeoutError, ValueError) as err:
            msg = f"--scheduler {scheduler}: cannot connect ({_one_line(err)})"
            raise InputError(msg) from None
    elif client is None:
        n = default_workers() if workers is None else workers
        cluster = local_cluster(n)
        client = Client(cluster)
        dashboard = _dashboard(client)
        if echo is not None:
            echo(
                f"dask: {n} local workers, dashboard {dashboard}"
                if dashboard
                else f"dask: {n} local workers (pip install bokeh for the dashboard)"
            )
    futures: dict[Any, tuple[str, Path, str]] = {}
    active: set[Any] = set()
    todo = list(reversed(pending))
    run_id = uuid.uuid4().hex[:8]
    threads = {"n": 1, "at": -1.0}

    def in_flight() -> int:
        # as many tasks in flight as the cluster has threads (refreshed each second, so
        # workers that join count): one task per worker thread, so memory is bounded by one
        # input per worker and a dying worker takes only its own task down with it
        now = time.perf_counter()
        if now - threads["at"] > 1.0:
            threads["n"] = max(1, sum(client.nthreads().values()))
            threads["at"] = now
        return threads["n"]

    def submit(queue: Any) -> None:
        while todo and len(active) < in_flight():
            key, path, name = todo.pop()
            fut = client.submit(
                execute,
                fn,
                str(path),
                str(out / name),
                params,
                key=f"skysift-{name}-{run_id}",
                retries=1,
                pure=False,
            )
            futures[fut] = (key, path, name)
            active.add(fut)
            queue.add(fut)

    try:
        queue = as_completed()
        submit(queue)
        for fut in queue:
            key, path, name = futures[fut]
            try:
                result = fut.result()
            except Exception as err:  # noqa: BLE001 - KilledWorker and the like: the input failed
                result = {
                    "sha256": sha256_of(path),
                    "status": "failed",
                    "outputs": {},
                    "error": f"{type(err).__name__}: {_one_line(err)}",
                    "warnings": "",
                    "seconds": float("nan"),
                    "worker": "",
                }
            active.discard(fut)
            fut.release()
            submit(queue)
            record(key, path, name, result)
            bar.update()
    finally:
        if active:
            client.cancel(list(active))
        if own:
            client.close()
        if cluster is not None:
            cluster.close()
    return dashboard
