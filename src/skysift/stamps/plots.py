"""Figures of the stamp classifier: contact sheets, confusion matrix, completeness vs rate.

Plotting lives here, apart from the algorithms (matplotlib, Agg backend via
the object API: no global pyplot state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from matplotlib.figure import Figure

from skysift.outputs.files import write_with
from skysift.stamps.data import CLASSES

__all__ = ["plot_completeness", "plot_confusion", "save_contact_sheets", "save_evaluation_figure"]


def _figure(figsize: tuple[float, float]) -> Any:

    return Figure(figsize=figsize, dpi=100)


def _stretch(img: np.ndarray) -> np.ndarray:
    med = np.median(img)
    mad = np.median(np.abs(img - med)) * 1.4826 or 1.0
    return np.arcsinh((img - med) / (3 * mad))


def save_contact_sheets(
    stamps: np.ndarray, table: Table, out_dir: str | Path, *, max_per_class: int = 64
) -> list[Path]:
    """Write ``contact_<class>.png``: the stamps of each class (channels side by side).

    Parameters
    ----------
    stamps : ndarray, shape (N, C, S, S)
    table : astropy.table.Table
        With ``class`` and ``p_<...>`` columns, one row per stamp.
    out_dir : str or Path
    max_per_class : int, optional
        Most stamps shown per class (highest probability first). Default 64.

    Returns
    -------
    list of Path
        The files written (classes with no stamp are skipped).
    """
    out = []
    cls = np.asarray(table["class"])
    key = {"sso": "p_sso", "star": "p_star", "galaxy": "p_galaxy", "cosmic_ray": "p_cosmic"}
    n_all, c, sz, _ = stamps.shape
    for name in CLASSES:
        idx = np.nonzero(cls == name)[0]
        if not len(idx):
            continue
        n_cls = len(idx)
        idx = idx[np.argsort(-np.asarray(table[key[name]])[idx])][:max_per_class]
        ncol = max(1, min(8, int(np.ceil(np.sqrt(len(idx))))))
        nrow = int(np.ceil(len(idx) / ncol))
        cell_w, cell_h = c * (sz + 1) + 3, sz + 3
        mosaic = np.full((nrow * cell_h, ncol * cell_w), np.nan)
        for k, i in enumerate(idx):
            r, q = divmod(k, ncol)
            for ch in range(c):
                y0, x0 = r * cell_h, q * cell_w + ch * (sz + 1)
                mosaic[y0 : y0 + sz, x0 : x0 + sz] = _stretch(stamps[i, ch])
        fig = _figure((max(3.0, 0.9 * ncol * c), max(2.0, 1.0 * nrow + 0.5)))
        ax = fig.add_axes((0.0, 0.0, 1.0, 0.92))
        ax.imshow(mosaic, cmap="gray", origin="upper", interpolation="nearest")
        for k, i in enumerate(idx):
            r, q = divmod(k, ncol)
            ax.text(q * cell_w, r * cell_h + 4, f"#{table['id'][i]} {table[key[name]][i]:.2f}",
                    color="yellow", fontsize=5)  # fmt: skip
        ax.set_axis_off()
        fig.suptitle(f"{name}: {n_cls} stamps (dithers left to right, p = {key[name]})", fontsize=7)
        path = Path(out_dir) / f"contact_{name}.png"
        write_with(path, lambda tmp, f=fig: f.savefig(tmp, format="png"))
        out.append(path)
    return out


def plot_confusion(ax: Any, confusion: Any, title: str = "") -> None:
    """Row-normalised confusion matrix (rows = truth) on a matplotlib axis."""
    cm = np.asarray(confusion, float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=30, fontsize=7)
    ax.set_yticks(range(len(CLASSES)), CLASSES, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8)


def plot_completeness(ax: Any, result: dict[str, Any], key: str = "completeness_vs_rate") -> None:
    """SSO completeness per bin (rate or magnitude) for the CNN and the baseline."""
    for name, style in (("cnn", "o-"), ("baseline", "s--")):
        if name not in result or key not in result[name]:
            continue
        bins = result[name][key]
        mid = [
            np.sqrt(b["lo"] * b["hi"]) if key.endswith("rate") else (b["lo"] + b["hi"]) / 2
            for b in bins
        ]
        ax.plot(mid, [b["completeness"] for b in bins], style, label=name)
    if key.endswith("rate"):
        ax.set_xscale("log")
        edges = [bins["lo"] for bins in result["cnn"][key]] + [result["cnn"][key][-1]["hi"]]
        ax.set_xticks(edges, [f"{e:g}" for e in edges])
        ax.minorticks_off()
        ax.set_xlabel("rate (arcsec/h)")
    else:
        ax.set_xlabel("magnitude (AB)")
    ax.set_ylabel("SSO completeness")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)


def save_evaluation_figure(result: dict[str, Any], path: str | Path) -> Path:
    """Confusion matrices (CNN, baseline), completeness vs rate and vs magnitude, in one PNG."""
    fig = _figure((13, 3.4))
    axes = [fig.add_subplot(1, 4, k + 1) for k in range(4)]
    plot_confusion(axes[0], result["cnn"]["confusion"], "CNN")
    if "baseline" in result:
        plot_confusion(axes[1], result["baseline"]["confusion"], "baseline")
    plot_completeness(axes[2], result, "completeness_vs_rate")
    plot_completeness(axes[3], result, "completeness_vs_mag")
    fig.tight_layout()
    return write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
