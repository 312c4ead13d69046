"""Annotated PNG of a solved field: catalogue ellipses coloured by verdict, labels that do not collide.

Plotting lives here, apart from the algorithms; matplotlib is used through
its object API (``Figure`` + Agg canvas), so no global pyplot state is touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from astropy.table import Table
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from skysift.errors import InputError
from skysift.outputs.files import write_with

__all__ = ["VERDICT_COLORS", "stretch", "place_labels", "render_annotated"]

#: Ellipse and label colour per verdict.
VERDICT_COLORS = {"visible": "#39ff14", "marginal": "#ffd400", "not visible": "#ff5a5a"}
_STAR_COLOR = "#6ec6ff"


def stretch(image: np.ndarray) -> np.ndarray:
    """Display stretch to [0, 1]: linear between the 0.5th and 99.9th percentiles.

    Smart-telescope JPEGs are already stretched; a linear clip keeps their look.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)

    Returns
    -------
    ndarray, same shape, float32 in [0, 1]
    """
    arr = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(arr, [0.5, 99.9])
    return np.clip((arr - lo) / max(float(hi - lo), 1e-6), 0, 1).astype(np.float32)


def _overlap(box, boxes) -> bool:
    x0, y0, x1, y1 = box
    return any(not (x1 < b[0] or b[2] < x0 or y1 < b[1] or b[3] < y0) for b in boxes)


def place_labels(
    x: np.ndarray,
    y: np.ndarray,
    radius: np.ndarray,
    widths: np.ndarray,
    height: float,
    shape: tuple[int, int],
    reserved: list[tuple[float, float, float, float]] | None = None,
) -> np.ndarray:
    """Greedy non-colliding label placement.

    Each label, in the order given, takes the first of 8 positions around its
    object (above, below, right, left, then the diagonals, at 1 and then 2
    times the object's radius plus a gap) whose box stays in the image and
    overlaps no label already placed.

    Parameters
    ----------
    x, y : ndarray, shape (N,)
        Object centres, pixels.
    radius : ndarray, shape (N,)
        Object radii, pixels.
    widths : ndarray, shape (N,)
        Label widths, pixels.
    height : float
        Label height, pixels.
    shape : (int, int)
        Image shape ``(height, width)``.
    reserved : list of (x0, y0, x1, y1), optional
        Boxes no label may overlap (a title), pixels.

    Returns
    -------
    ndarray, shape (N, 2)
        Lower-left corner (x, y) of each label box in pixels (y down), NaN
        for a label that found no free place (left out).
    """
    h, w = shape
    placed: list[tuple[float, float, float, float]] = list(reserved or [])
    out = np.full((len(x), 2), np.nan)
    for i in range(len(x)):
        r = float(np.clip(radius[i], 4.0, 0.5 * max(h, w)))
        lw = float(widths[i])
        for k in (1.0, 1.6, 2.4, 3.5, 5.0):
            gap = k * r + 4.0
            cands = [
                (x[i] - lw / 2, y[i] - gap - height), (x[i] - lw / 2, y[i] + gap),
                (x[i] + gap, y[i] - height / 2), (x[i] - gap - lw, y[i] - height / 2),
                (x[i] + 0.7 * gap, y[i] - 0.7 * gap - height), (x[i] - 0.7 * gap - lw, y[i] - 0.7 * gap - height),
                (x[i] + 0.7 * gap, y[i] + 0.7 * gap), (x[i] - 0.7 * gap - lw, y[i] + 0.7 * gap),
            ]  # fmt: skip
            for cx, cy in cands:
                box = (cx, cy, cx + lw, cy + height)
                if box[0] < 0 or box[1] < 0 or box[2] > w - 1 or box[3] > h - 1:
                    continue
                if not _overlap(box, placed):
                    placed.append(box)
                    out[i] = (cx, cy)
                    break
            if np.isfinite(out[i, 0]):
                break
    return out


def render_annotated(
    image: np.ndarray,
    objects: Table,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    credit: str | None = None,
    max_side: int = 1600,
) -> Path:
    """Write the annotated PNG.

    Every catalogue object is drawn at its real size, its catalogue ellipse
    clipped to the frame (an object larger than the frame shows as arcs, its
    centre marked with a cross and labelled there when in the frame).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        The image (colour kept).
    objects : astropy.table.Table
        From :func:`skysift.dso.visibility.measure_visibility` (``x``, ``y``,
        ``major_px``, ``minor_px``, ``theta_deg``, ``type``, ``label``,
        ``verdict``; ``snr`` optional).
    path : path-like
        Output PNG (written atomically).
    title : str, optional
        Text at the top left.
    credit : str, optional
        Small text at the bottom (the OpenNGC credit).
    max_side : int, optional
        Longest side of the PNG, pixels. Default 1600.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InputError
        If the image is not (H, W) or (H, W, 3) or the table lacks a column.
    """

    arr = np.asarray(image)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        msg = f"image must have shape (H, W) or (H, W, 3), got {arr.shape}"
        raise InputError(msg)
    need = ("x", "y", "major_px", "minor_px", "theta_deg", "type", "label", "verdict")
    missing = [c for c in need if c not in objects.colnames]
    if missing:
        msg = f"objects table lacks column(s) {missing}"
        raise InputError(msg)
    h, w = arr.shape[:2]
    zoom = min(1.0, max_side / max(h, w))
    dpi = 100.0
    fig = Figure(figsize=(w * zoom / dpi, h * zoom / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    shown = stretch(arr)
    if zoom < 1.0:  # resample once here (fast) rather than in matplotlib
        size = (max(1, round(w * zoom)), max(1, round(h * zoom)))
        shown = np.clip(cv2.resize(shown, size, interpolation=cv2.INTER_AREA), 0, 1)
    ax.imshow(shown, cmap=None if arr.ndim == 3 else "gray", origin="upper",
              interpolation="nearest", extent=(-0.5, w - 0.5, h - 0.5, -0.5))  # fmt: skip
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    fontsize = max(7.0, 11.0 * zoom * max(h, w) / 1600)
    img_px_per_pt = dpi / 72.0 / zoom  # image pixels per typographic point
    # visible objects first, then by size: they get the best label places
    rank = {"visible": 0, "marginal": 1, "not visible": 2}
    typ = np.asarray(objects["type"]).astype(str)
    order = sorted(
        range(len(objects)),
        key=lambda i: (typ[i] == "*", rank.get(str(objects["verdict"][i]), 3),
                       -float(objects["major_px"][i])),
    )  # fmt: skip
    labels, xs, ys, rs = [], [], [], []
    for i in order:
        row = objects[i]
        is_star = typ[i] == "*"
        color = _STAR_COLOR if is_star else VERDICT_COLORS.get(str(row["verdict"]), "white")
        a, b = float(row["major_px"]), float(row["minor_px"])
        if is_star:
            a = b = 24.0
        ax.add_patch(Ellipse((float(row["x"]), float(row["y"])), a, b,
                             angle=float(row["theta_deg"]), fill=False, lw=1.2,
                             ec=color, ls="-" if str(row["verdict"]) != "not visible" else "--"))  # fmt: skip
        text = str(row["label"])
        if not is_star and "snr" in objects.colnames and np.isfinite(row["snr"]):
            snr = float(row["snr"])
            text += (
                f" ({row['type']}, SNR {snr:.0f})" if snr < 1000 else f" ({row['type']}, SNR>1000)"
            )
        labels.append((text, color))
        xs.append(float(row["x"]))
        ys.append(float(row["y"]))
        r_lab = 0.5 * max(a, b) if not is_star else 12.0
        if r_lab > 0.25 * min(h, w):  # larger than the frame: label at its marked centre
            ax.plot([float(row["x"])], [float(row["y"])], marker="+", ms=2.0 * fontsize,
                    mew=1.2, color=color)  # fmt: skip
            r_lab = 12.0
        rs.append(r_lab)
    widths = np.array([(0.68 * fontsize * len(t) + 4) * img_px_per_pt for t, _ in labels])
    height = 1.5 * fontsize * img_px_per_pt
    reserved = []
    if title:
        reserved.append(
            (0.0, 0.0, (0.68 * fontsize * len(title) + 8) * img_px_per_pt, 1.8 * height)
        )
    corners = place_labels(
        np.array(xs), np.array(ys), np.array(rs), widths, height, (h, w), reserved=reserved
    )
    for (text, color), (cx, cy) in zip(labels, corners, strict=True):
        if not np.isfinite(cx):
            continue
        ax.text(cx, cy + height, text, color=color, fontsize=fontsize, va="bottom", ha="left",
                bbox={"facecolor": "black", "alpha": 0.45, "pad": 1.0, "lw": 0})  # fmt: skip
    if title:
        ax.text(0.01, 0.995, title, transform=ax.transAxes, color="white", fontsize=fontsize,
                va="top", ha="left", bbox={"facecolor": "black", "alpha": 0.6, "lw": 0})  # fmt: skip
    if credit:
        ax.text(0.01, 0.003, credit, transform=ax.transAxes, color="#bbbbbb",
                fontsize=0.6 * fontsize, va="bottom", ha="left", wrap=True)  # fmt: skip
    return write_with(
        path, lambda t: fig.savefig(t, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    )
