"""Meteor trails in single long exposures: read, find, write a table and an overlay."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.table import Table
from matplotlib.figure import Figure

from skysift.bolide.trails import find_meteor_trails
from skysift.io import read_frame
from skysift.outputs.files import atomic_path, write_table
from skysift.outputs.plots import display_stretch

__all__ = ["find_trails_in"]


def find_trails_in(
    path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None
) -> tuple[Table, Path | None]:
    """Find the meteor trails of one exposure and write ``STEM.trails.ecsv`` and ``STEM.trails.png``.

    Parameters
    ----------
    path : path
        An image file (read with :func:`skysift.io.read_frame`).
    out_dir : path, optional
        Output folder; None writes nothing.

    Returns
    -------
    table : astropy.table.Table
        From :func:`skysift.bolide.trails.find_meteor_trails`, with the
        file name in ``meta["file"]``.
    written : Path or None
        The ECSV file.

    Raises
    ------
    InputError
        For an unreadable file (named).
    """
    frame = read_frame(path)
    table = find_meteor_trails(frame.data)
    table.meta["file"] = Path(path).name
    if out_dir is None:
        return table, None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(path).name.split(".")[0]
    ecsv = write_table(table, out / f"{stem}.trails.ecsv")
    _plot(frame.data, table, out / f"{stem}.trails.png", Path(path).name)
    return table, ecsv


def _plot(image: np.ndarray, table: Table, path: Path, title: str) -> Path:

    h, w = image.shape
    fig = Figure(figsize=(10, 10 * h / w + 0.5), dpi=100)
    ax = fig.add_axes((0, 0, 1, 0.95))
    ax.imshow(display_stretch(image), cmap="gray", origin="upper")
    for r in table:
        ax.plot([r["x1"], r["x2"]], [r["y1"], r["y2"]], "-", color="lime", lw=3, alpha=0.35)
        ax.annotate(
            f"trail {r['length']:.0f} px, SNR {r['snr']:.1f}",
            (r["x2"], r["y2"]), xytext=(15, 15), textcoords="offset points", color="lime",
            fontsize=10,
        )  # fmt: skip
    ax.set_title(f"{title}: {len(table)} meteor trail(s)")
    ax.set_axis_off()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
