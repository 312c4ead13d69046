"""After a batch run: tables that need every input's result (the streak summary, tracks).

Detection runs one task per input; what joins the inputs (the summary of a
``streaks`` run, the linking of a sequence's streaks into tracks) is done
here, in the calling process, from the files the tasks wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.table import Table

from skysift.batch.runner import BatchSummary
from skysift.outputs.files import write_table
from skysift.streaks.linking import link_streaks

__all__ = ["link_streak_tracks", "streak_tables", "streaks_summary"]


def _outputs(row: dict, out: Path, suffix: str) -> Path | None:
    for o in str(row["outputs"]).split(";"):
        if o.endswith(suffix):
            return out / o
    return None


def streak_tables(summary: BatchSummary) -> list[tuple[dict, Table | None]]:
    """Each input's row of a ``streaks`` run with its streak table (None if it failed)."""
    out = summary.manifest.parent
    tables = []
    for row in summary.rows:
        path = _outputs(row, out, ".streaks.ecsv") if row["status"] != "failed" else None
        tables.append((row, None if path is None else Table.read(path, format="ascii.ecsv")))
    return tables


def streaks_summary(summary: BatchSummary, out_dir: str | os.PathLike[str]) -> Table:
    """The ``summary.ecsv`` of a batch ``streaks`` run, as :func:`~skysift.streaks.pipeline.run_streaks` writes it.

    Parameters
    ----------
    summary : BatchSummary
        The run (its rows in input order).
    out_dir : path
        Where ``summary.ecsv`` goes.

    Returns
    -------
    astropy.table.Table
        ``file, p_streak, n_streaks, error, stem`` (a failed input: ``p_streak``
        NaN, ``n_streaks`` -1 and its error), one row per input; ``stem`` is the
        input's subfolder.
    """
    rows = []
    for row, t in streak_tables(summary):
        if t is None:
            rows.append((str(row["input"]), np.nan, -1, str(row["error"]), str(row["name"])))
        else:
            p = float(t.meta.get("p_streak", np.nan))
            rows.append((str(row["input"]), p, len(t), "", str(row["name"])))
    table = Table(
        rows=rows or None,
        names=["file", "p_streak", "n_streaks", "error", "stem"],
        dtype=[str, float, int, str, str],
    )
    write_table(table, Path(out_dir) / "summary.ecsv")
    return table


def link_streak_tracks(
    summary: BatchSummary, out_dir: str | os.PathLike[str], **kwargs: float
) -> Table:
    """Link the streaks of a sequence (the run's inputs, in order) into tracks: ``tracks.ecsv``.

    Parameters
    ----------
    summary : BatchSummary
        A ``streaks`` run over the frames of one sequence, in time order (the
        inputs' natural order); a failed frame counts as a frame without streaks.
    out_dir : path
        Where ``tracks.ecsv`` goes.
    **kwargs
        Tolerances of :func:`skysift.streaks.linking.link_streaks`.

    Returns
    -------
    astropy.table.Table
        Every streak with ``frame`` (index in the run), ``track_id`` and ``file``.

    Raises
    ------
    InputError
        If a tolerance is not positive.
    """
    pairs = streak_tables(summary)
    found = [t for _, t in pairs if t is not None]
    empty = found[0][:0] if found else Table(names=["x1", "y1", "x2", "y2"], dtype=[float] * 4)
    tables = []
    for _, t in pairs:
        if t is None:
            tables.append(empty)
        else:
            t = t.copy(copy_data=False)
            t.meta.clear()
            tables.append(t)
    tracks = link_streaks(tables, **kwargs)
    files = np.array([str(r["input"]) for r, _ in pairs] or [""], dtype=str)
    tracks["file"] = files[np.asarray(tracks["frame"], dtype=int)] if len(tracks) else []
    write_table(tracks, Path(out_dir) / "tracks.ecsv")
    return tracks
