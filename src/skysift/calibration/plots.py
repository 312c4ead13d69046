"""The calibration figure: identified stars on the frame, astrometric and photometric residuals."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skysift.calibration.catalog import star_name
from skysift.calibration.frame import CalibrationResult
from skysift.outputs.files import atomic_path
from skysift.outputs.plots import display_stretch, new_figure

__all__ = ["plot_calibration"]


def plot_calibration(result: CalibrationResult, path: str | Path, *, n_names: int = 15) -> Path:
    """Save the calibration figure.

    Left: the frame with identified stars circled and the brightest named.
    Right: position residual vs distance from the optical centre, and
    magnitude residual vs catalogue magnitude.

    Parameters
    ----------
    result : CalibrationResult
    path : str or Path
        Output PNG.
    n_names : int, optional
        How many of the brightest identified stars are labelled. Default 15.

    Returns
    -------
    Path
    """

    frame, m = result.frame, result.matches
    h, w = frame.shape
    fig = new_figure(figsize=(16, 8.5), dpi=100)
    ax = fig.add_axes((0.01, 0.04, 0.58, 0.88))
    ax.imshow(display_stretch(frame.data), cmap="gray", origin="upper", interpolation="nearest")
    ax.scatter(m["x"], m["y"], s=60, facecolors="none", edgecolors="lime", lw=0.7)
    cat_mag = np.asarray(m["catalog_mag"], dtype=float)
    order = np.argsort(np.where(np.isfinite(cat_mag), cat_mag, 99))
    labels = []  # proper names of the brightest named stars; else the brightest ids
    for i in order:
        cid = str(m["catalog_id"][i])
        name = None
        if cid.startswith("HIP "):
            try:
                name = star_name(int(cid[4:]))
            except ValueError:
                name = None
        if name:
            labels.append((i, name))
        if len(labels) >= n_names:
            break
    if len(labels) < 3:
        labels = [(i, str(m["catalog_id"][i])) for i in order[:5]]
    for i, label in labels:
        ax.annotate(
            label,
            (m["x"][i], m["y"][i]),
            xytext=(6, 6),
            textcoords="offset points",
            color="yellow",
            fontsize=8,
        )
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    title = (
        f"{frame.name}: {result.model_type}, {result.n_matched} stars identified, "
        f"astrometric RMS {result.astrometric_rms_px:.2f} px"
    )
    if result.zero_point is not None:
        zp = result.zero_point
        title += f", ZP {zp.zero_point:.2f} ± {zp.zero_point_err:.2f} mag, photometric RMS {zp.rms_mag:.2f} mag"
    fig.suptitle(title, fontsize=11)

    ax1 = fig.add_axes((0.66, 0.56, 0.31, 0.34))
    radius = (
        np.asarray(m["radius_norm"], float)
        if "radius_norm" in m.colnames
        else np.hypot(m["x"] - w / 2, m["y"] - h / 2)
    )
    ax1.scatter(radius, m["residual_px"], s=6, color="tab:blue")
    ax1.axhline(
        result.astrometric_rms_px,
        color="k",
        ls="--",
        lw=0.8,
        label=f"RMS {result.astrometric_rms_px:.2f} px",
    )
    ax1.set_xlabel("distance from optical centre (fraction of horizon / half-diagonal)")
    ax1.set_ylabel("position residual (px)")
    ax1.legend(loc="upper left", fontsize=8)

    ax2 = fig.add_axes((0.66, 0.09, 0.31, 0.34))
    if "mag" in m.colnames and np.isfinite(np.asarray(m["mag"], float)).any():
        dm = cat_mag - np.asarray(m["mag"], float)
        used = (
            np.asarray(m["used_in_zp"], bool)
            if "used_in_zp" in m.colnames
            else np.ones(len(m), bool)
        )
        ax2.scatter(cat_mag[used], dm[used], s=6, color="tab:blue", label="used in fit")
        ax2.scatter(
            cat_mag[~used],
            dm[~used],
            s=6,
            color="tab:orange",
            label="excluded (saturated, blended, clipped)",
        )
        ax2.axhline(0, color="k", lw=0.8)
        lim = np.nanpercentile(np.abs(dm[used]), 99) if used.any() else 1.0
        ax2.set_ylim(-max(1.0, 1.5 * lim), max(1.0, 1.5 * lim))
        ax2.legend(loc="upper left", fontsize=8)
    ax2.set_xlabel(f"catalogue magnitude ({result.photometric_band})")
    ax2.set_ylabel("catalogue − calibrated (mag)")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
