"""Jobs of the web app: one folder each, run one after another by a worker thread.

A job's state lives in ``DIR/jobs/<id>/job.json`` (written atomically), so a
browser that closes and comes back, or a server that restarts, finds every
job and its results. The fields of ``job.json``:

===========  ================================================================
field        meaning
===========  ================================================================
id           12 hexadecimal digits, also the folder name
kind         ``calibrate``, ``bolide`` or ``streaks`` (see :mod:`.runners`)
title        a short description for the job list
state        ``queued``, ``running``, ``done`` or ``failed``
stage        what the job is doing now (``detecting stars``, ...)
progress     fraction done, 0 to 1
error        one-line message of a failed job (never a traceback)
params       what the job was asked (inputs, site, time, options)
result       the job's summary once done (file names are relative to the folder)
created, started, finished
             Unix times, seconds
===========  ================================================================

A job that was running when the server stopped is marked failed on the next
start (its outputs may be partial); queued jobs are queued again.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

from skysift.errors import SkysiftError
from skysift.outputs.files import write_json
from skysift.web.storage import NotFoundError, check_id, new_id

__all__ = [
    "JobStore",
    "Worker",
    "Runner",
    "ACTIVE_STATES",
    "failure_report",
    "strip_paths",
    "user_message",
]

log = logging.getLogger("skysift.web")

#: States of a job that has not finished.
ACTIVE_STATES = ("queued", "running")

#: ``runner(job, folder, progress)`` runs a job and returns its result summary.
Runner = Callable[[dict[str, Any], Path, Callable[[str, float], None]], dict[str, Any]]


class JobStore:
    """The jobs under ``root`` (``DIR/jobs``), read and written as JSON.

    Parameters
    ----------
    root : Path
        Folder of the job folders (created).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    def folder(self, job_id: str) -> Path:
        """The folder of a job.

        Raises
        ------
        NotFoundError
            If the id is malformed or there is no such job.
        """
        check_id(job_id, "job")
        path = self.root / job_id
        if not (path / "job.json").is_file():
            msg = f"no such job: {job_id!r}"
            raise NotFoundError(msg)
        return path

    def create(self, kind: str, title: str, params: dict[str, Any]) -> dict[str, Any]:
        """Create a queued job and its folder; return its record."""
        job_id = new_id()
        folder = self.root / job_id
        folder.mkdir(parents=True)
        job = {
            "id": job_id,
            "kind": kind,
            "title": title,
            "state": "queued",
            "stage": "queued",
            "progress": 0.0,
            "error": None,
            "params": params,
            "result": None,
            "created": time.time(),
            "started": None,
            "finished": None,
        }
        write_json(job, folder / "job.json")
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        """The record of a job (see the module docstring)."""
        path = self.folder(job_id) / "job.json"
        with self._lock:
            return json.loads(path.read_text(encoding="utf-8"))

    def update(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of a job's record, atomically; return the new record."""
        with self._lock:
            job = self.get(job_id)
            job.update(fields)
            write_json(job, self.folder(job_id) / "job.json")
            return job

    def list(self) -> list[dict[str, Any]]:
        """Every job, newest first."""
        jobs = []
        for path in self.root.glob("*/job.json"):
            try:
                jobs.append(self.get(path.parent.name))
            except (NotFoundError, json.JSONDecodeError, OSError):
                continue
        return sorted(jobs, key=lambda j: j["created"], reverse=True)

    def delete(self, job_id: str) -> None:
        """Remove a finished job and its folder."""

        job = self.get(job_id)
        if job["state"] in ACTIVE_STATES:
            msg = f"job {job_id} is {job['state']}; only a finished job can be deleted"
            raise SkysiftError(msg)
        shutil.rmtree(self.folder(job_id))


class Worker:
    """Runs queued jobs one at a time in a daemon thread.

    Parameters
    ----------
    store : JobStore
    runners : dict
        Job kind -> :data:`Runner`.
    """

    def __init__(self, store: JobStore, runners: dict[str, Runner]) -> None:
        self.store = store
        self.runners = runners
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Recover the jobs of a previous run and start the thread."""
        for job in sorted(self.store.list(), key=lambda j: j["created"]):
            if job["state"] == "running":
                self.store.update(
                    job["id"],
                    state="failed",
                    error="the server stopped while this job was running; start it again",
                    finished=time.time(),
                )
            elif job["state"] == "queued":
                self._queue.put(job["id"])
        self._thread = threading.Thread(target=self._loop, name="skysift-web-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop after the current job and wait up to ``timeout`` s."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job_id: str) -> None:
        """Queue a job (created with :meth:`JobStore.create`)."""
        self._queue.put(job_id)

    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            try:
                self.run(job_id)
            except Exception:  # noqa: BLE001 - the worker must survive any job
                log.exception("job %s: worker error", job_id)

    def run(self, job_id: str) -> dict[str, Any]:
        """Run one job now, in this thread; return its final record."""
        job = self.store.update(
            job_id, state="running", stage="starting", progress=0.0, started=time.time()
        )
        folder = self.store.folder(job_id)
        last = [0.0, ""]

        def progress(stage: str, fraction: float) -> None:
            # Throttled: a stage change is written at once, a percentage at most 5 times a second.
            now = time.monotonic()
            if stage != last[1] or now - last[0] > 0.2:
                last[0], last[1] = now, stage
                frac = min(max(float(fraction), 0.0), 1.0)
                self.store.update(job_id, stage=str(stage), progress=frac)

        runner = self.runners.get(job["kind"])
        try:
            if runner is None:
                msg = f"unknown job kind {job['kind']!r}; known: {', '.join(sorted(self.runners))}"
                raise SkysiftError(msg)
            result = runner(job, folder, progress)
        except Exception as err:  # noqa: BLE001 - shown to the user as one line
            # The traceback (with server paths) stays on the server: in the log and the
            # job folder's error.log, which the app serves only as the one-line error.
            (folder / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
            log.warning("job %s failed: %s", job_id, err, exc_info=True)
            error = strip_paths(user_message(err), self.store.root.parent)
            return self.store.update(job_id, state="failed", error=error, finished=time.time())
        return self.store.update(
            job_id,
            state="done",
            stage="done",
            progress=1.0,
            result=result,
            finished=time.time(),
        )


_ABS_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[/\\][^\s:'\"<>|]+")


def strip_paths(text: str, root: Path | None = None) -> str:
    """``text`` without server paths: each absolute path becomes its file name.

    Parameters
    ----------
    text : str
        A message.
    root : Path, optional
        The data folder; its path is removed first.

    Returns
    -------
    str
    """
    if root is not None:
        for r in sorted({str(root), str(Path(root).resolve())}, key=len, reverse=True):
            # the data folder may hold spaces: a path under it becomes its file name
            under = re.compile(re.escape(r) + r"(?:[/\\]([^\s:'\"<>|]*))?")
            text = under.sub(lambda m: PurePath(m.group(1) or "").name, text)
    return _ABS_PATH.sub(lambda m: PurePath(m.group(0)).name or "", text)


def failure_report(job: dict[str, Any], root: Path | None = None) -> str:
    """What a failed job's ``error.log`` shows over HTTP: its one-line error, no traceback.

    Parameters
    ----------
    job : dict
        The job's record.
    root : Path, optional
        The data folder (its paths are removed).

    Returns
    -------
    str
        Two or three lines of text.
    """
    lines = [f"job {job.get('id')} ({job.get('kind')}): {job.get('state')}"]
    if job.get("error"):
        lines.append(f"error: {strip_paths(str(job['error']), root)}")
    lines.append("the full traceback is in the server's log (skysift serve)")
    return "\n".join(lines) + "\n"


def user_message(err: BaseException) -> str:
    """One line for the user: a skysift error's message, else the error's type and text.

    Tracebacks never reach the user; a job's is kept in its ``error.log``.
    """
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, SkysiftError):
        return text or type(err).__name__
    name = type(err).__name__
    return f"unexpected error ({name}): {text}" if text else f"unexpected error ({name})"
