"""Generic figures: the display stretch, a figure without pyplot, a star-detection overlay."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from skysift.outputs.files import atomic_path

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["display_stretch", "new_figure", "plot_stars"]


def display_stretch(image: np.ndarray) -> np.ndarray:
    """The display stretch of every skysift figure: an asinh stretch between the
    5th and 99.7th percentiles.

    Parameters
    ----------
    image : ndarray, shape (H, W)

    Returns
    -------
    ndarray, shape (H, W)
        Values in [0, 1] (NaN where the input is NaN).
    """
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [5, 99.7]) if finite.size else (0.0, 1.0)
    scaled = np.clip((image - lo) / max(hi - lo, 1e-9), 0, 1)
    return np.arcsinh(10 * scaled) / np.arcsinh(10)


def new_figure(*args: object, **kwargs: object) -> Figure:
    """A matplotlib Figure not registered with pyplot (no GUI backend, freed when dropped)."""
    return Figure(*args, **kwargs)


def plot_stars(
    image: np.ndarray,
    stars: Table,
    path: str | Path,
    *,
    mask: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Save the image with detected stars circled (flagged ones in orange).

    Parameters
    ----------
    image : ndarray, shape (H, W)
    stars : astropy.table.Table
        Detections with ``x``, ``y``, ``fwhm``, ``flags``.
    path : str or Path
        Output PNG.
    mask : ndarray of bool, optional
        Not-sky mask, shaded in red.
    title : str, optional

    Returns
    -------
    Path
    """
    h, w = image.shape
    fig = new_figure(figsize=(10, 10 * h / w + 0.6), dpi=110)
    ax = fig.add_axes((0, 0, 1, 0.95 if title else 1))
    ax.imshow(display_stretch(image), cmap="gray", origin="upper", interpolation="nearest")
    if mask is not None and mask.any():
        ax.imshow(
            np.ma.masked_where(~mask, np.ones_like(image)),
            cmap="autumn",
            alpha=0.25,
            origin="upper",
        )
    if len(stars):
        flagged = np.asarray(stars["flags"]) != 0
        r = np.clip(2.5 * np.asarray(stars["fwhm"], float), 4, 30) ** 2
        ax.scatter(
            stars["x"][~flagged],
            stars["y"][~flagged],
            s=r[~flagged],
            facecolors="none",
            edgecolors="cyan",
            lw=0.6,
        )
        ax.scatter(
            stars["x"][flagged],
            stars["y"][flagged],
            s=r[flagged],
            facecolors="none",
            edgecolors="orange",
            lw=0.6,
        )
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
