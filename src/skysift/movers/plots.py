"""Overlay images of mover detections (matplotlib, Agg backend; no GUI)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from astropy.table import Table
from matplotlib.figure import Figure

from skysift.outputs.files import write_with

__all__ = ["overlay_png"]


def overlay_png(
    image: np.ndarray, detections: Table, path: str | Path, *, title: str = "", dpi: int = 100
) -> Path:
    """Write a PNG of ``image`` (asinh stretch) with the detected trails and boxes drawn.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    detections : astropy.table.Table
        Rows with ``x1, y1, x2, y2`` (trail ends, pixels) and ``score``; an
        optional ``tracklet`` column colours linked detections.
    path : str or Path
        Output PNG, written atomically.
    title : str, optional
    dpi : int, optional

    Returns
    -------
    Path
    """

    matplotlib.use("Agg", force=False)

    img = np.nan_to_num(np.asarray(image, dtype=float))
    q25, med, q75 = np.percentile(img[::2, ::2], [25, 50, 75])
    sig = max(0.7413 * (q75 - q25), 1e-9)
    disp = np.arcsinh((img - med) / (3 * sig))
    h, w = img.shape
    fig = Figure(figsize=(min(12, max(4, w / 100)), min(12, max(4, h / 100)) + 0.4))
    ax = fig.add_axes((0, 0, 1, 0.94 if title else 1))
    ax.imshow(disp, cmap="gray", origin="lower", vmin=-1, vmax=4, interpolation="nearest")
    linked = "tracklet" in detections.colnames
    for r in detections:
        colour = "tab:orange" if linked and int(r["tracklet"]) >= 0 else "tab:red"
        ax.plot([r["x1"], r["x2"]], [r["y1"], r["y2"]], color=colour, lw=1.2)
        pad = 6
        x0, x1 = min(r["x1"], r["x2"]) - pad, max(r["x1"], r["x2"]) + pad
        y0, y1 = min(r["y1"], r["y2"]) - pad, max(r["y1"], r["y2"]) + pad
        ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color=colour, lw=0.8)
        ax.text(x1 + 2, y1 + 2, f"{float(r['score']):.2f}", color=colour, fontsize=7)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(-0.5, h - 0.5)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    return write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
