"""The batch layer: one task per input, in this process or on a Dask cluster, resumable.

:func:`run_batch` expands files, folders and globs, runs a task (a plain
function ``(input_path, out_dir, params) -> outputs``, see
:mod:`skysift.batch.tasks`) on each, and keeps ``run.ecsv``, the manifest a
rerun resumes from. Dask (``dask[distributed]``) is imported only for
parallel runs.
"""

from __future__ import annotations

from skysift.batch.runner import (
    MANIFEST_COLUMNS,
    BatchSummary,
    default_workers,
    expand_inputs,
    local_cluster,
    output_names,
    read_manifest,
    run_batch,
)
from skysift.batch.tasks import TASKS, stars_task, worker_cache

__all__ = [
    "MANIFEST_COLUMNS",
    "TASKS",
    "BatchSummary",
    "default_workers",
    "expand_inputs",
    "local_cluster",
    "output_names",
    "read_manifest",
    "run_batch",
    "stars_task",
    "worker_cache",
]
