"""Figures of the evaluation metrics: ROC, precision-recall, per-bin charts, match overlays.

Every function builds a :class:`matplotlib.figure.Figure` (no pyplot state, so
it works with any backend, Agg included) and, when ``path`` is given, writes
it atomically (temporary file, then rename). Feed them the outputs of
:mod:`skysift.evaluation.metrics`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from skysift.errors import InputError
from skysift.outputs.files import atomic_path

if TYPE_CHECKING:
    from astropy.table import Table
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from skysift.evaluation.metrics import MatchResult

__all__ = ["plot_binned", "plot_matches", "plot_pr", "plot_roc", "save_figure"]


def _figure(**kwargs) -> Figure:

    return Figure(**kwargs)


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` atomically; the format follows the suffix (``.png``, ``.pdf``).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def _finish(fig: Figure, path) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _curves(curves, what: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not isinstance(curves, Mapping):
        curves = {"": curves}
    out = {}
    for name, c in curves.items():
        if len(c) < 2:
            msg = f"{what} curve {name!r} needs at least two arrays, got {len(c)}"
            raise InputError(msg)
        x, y = np.asarray(c[0], float), np.asarray(c[1], float)
        if x.shape != y.shape or x.ndim != 1:
            msg = f"{what} curve {name!r}: arrays of shapes {x.shape} and {y.shape}"
            raise InputError(msg)
        out[str(name)] = (x, y)
    return out


def plot_roc(
    curves,
    *,
    path: str | os.PathLike[str] | None = None,
    fpr_min: float = 1e-6,
    mark_fpr: float | None = 1e-5,
    title: str = "",
) -> Figure:
    """ROC curves of one or more methods, FPR on a log axis.

    Parameters
    ----------
    curves : mapping {str: (fpr, tpr[, thresholds])} or one such tuple
        As returned by :func:`~skysift.evaluation.metrics.roc_curve`.
    path : str or Path, optional
        Where to write the figure.
    fpr_min : float, optional
        Left end of the log FPR axis; smaller FPRs (0 included) are drawn at
        it. Default 1e-6.
    mark_fpr : float or None, optional
        Operating FPR drawn as a dotted vertical line. Default 1e-5.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        If a curve is not two 1-D arrays of the same length.
    """
    fig = _figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    for name, (fpr, tpr) in _curves(curves, "ROC").items():
        ax.plot(np.maximum(fpr, fpr_min), tpr, lw=1.3, label=name or None)
    if mark_fpr is not None:
        ax.axvline(mark_fpr, color="0.5", ls=":", lw=1, label=f"FPR = {mark_fpr:g}")
    ax.set_xscale("log")
    ax.set_xlim(fpr_min, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    _legend_title(ax, title)
    return _finish(fig, path)


def plot_pr(
    curves,
    *,
    path: str | os.PathLike[str] | None = None,
    mark_recall: float | None = 0.9,
    title: str = "",
) -> Figure:
    """Precision-recall curves of one or more methods on one axes.

    Parameters
    ----------
    curves : mapping {str: (precision, recall[, thresholds])} or one such tuple
        As returned by :func:`~skysift.evaluation.metrics.precision_recall_curve`,
        or precision/recall columns of a detection sweep.
    path : str or Path, optional
        Where to write the figure.
    mark_recall : float or None, optional
        Operating recall drawn as a dotted vertical line. Default 0.9.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        If a curve is not two 1-D arrays of the same length.
    """
    fig = _figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    for name, (precision, recall) in _curves(curves, "PR").items():
        order = np.argsort(recall, kind="stable")
        ax.step(recall[order], precision[order], where="post", lw=1.3, label=name or None)
    if mark_recall is not None:
        ax.axvline(mark_recall, color="0.5", ls=":", lw=1, label=f"recall = {mark_recall:g}")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    _legend_title(ax, title)
    return _finish(fig, path)


def _legend_title(ax: Axes, title: str) -> None:
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)


def plot_binned(
    table: Table | Mapping[str, Table],
    *,
    metrics: Sequence[str] | None = None,
    count: str | None = None,
    path: str | os.PathLike[str] | None = None,
    title: str = "",
) -> Figure:
    """Metrics per bin as lines (one per metric and method), counts as bars.

    Parameters
    ----------
    table : astropy.table.Table or mapping {str: Table}
        From :func:`~skysift.evaluation.metrics.binned_table` or
        :func:`~skysift.evaluation.metrics.object_metrics_by_bin` (one per
        method, same bins). The ``"all"`` row is left out.
    metrics : sequence of str, optional
        Columns to draw. Default: every float column after the counts
        (``precision`` only if it has a finite value in a bin row).
    count : str, optional
        Count column drawn as grey bars on a second axis. Default ``n_pos``
        or ``n_true``, whichever exists.
    path : str or Path, optional
        Where to write the figure.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        If a table lacks the ``bin`` column or a requested metric.
    """
    tables = dict(table) if isinstance(table, Mapping) else {"": table}
    first = next(iter(tables.values()))
    if "bin" not in first.colnames:
        msg = f"plot_binned needs a table with a 'bin' column, got {first.colnames}"
        raise InputError(msg)
    rows = np.asarray(first["bin"]) != "all"
    labels = list(np.asarray(first["bin"])[rows])
    if metrics is None:
        skip = {"bin", "n_pos", "n_neg", "n_objects", "n_true", "n_matched"}
        metrics = [
            c
            for c in first.colnames
            if c not in skip
            and not c.endswith(("_lo", "_hi", "_error"))
            and np.isfinite(np.asarray(first[c], float)[rows]).any()
        ]
    if count is None:
        count = next((c for c in ("n_pos", "n_true") if c in first.colnames), None)
    fig = _figure(figsize=(max(6, 1.1 * len(labels) + 2), 4.5))
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    if count is not None:
        ax2 = ax.twinx()
        ax2.bar(x, np.asarray(first[count], float)[rows], color="0.85", width=0.6, zorder=0)
        ax2.set_ylabel(count)
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
    for name, t in tables.items():
        for m in metrics:
            if m not in t.colnames:
                msg = f"table {name!r} has no column {m!r}"
                raise InputError(msg)
            label = " ".join(s for s in (name, m) if s)
            ax.plot(x, np.asarray(t[m], float)[rows], marker="o", lw=1.3, label=label)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_xlabel(first.meta.get("binned_by", "bin"))
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("metric")
    _legend_title(ax, title)
    return _finish(fig, path)


def plot_matches(
    image: np.ndarray,
    match: MatchResult,
    pred_xy,
    true_xy,
    *,
    path: str | os.PathLike[str] | None = None,
    title: str = "",
) -> Figure:
    """Image with matched (green circles), false (red crosses) and missed (orange squares) objects.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Displayed with an asinh stretch of its 5-99.7 % range.
    match : MatchResult
        From :func:`~skysift.evaluation.metrics.match_objects` on the same points.
    pred_xy, true_xy : array_like of float, shapes (N, 2) and (M, 2)
        0-based pixel ``(x, y)``; matched truths are drawn as small dots.
    path : str or Path, optional
        Where to write the figure.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        If ``image`` is not 2-D or the points do not fit ``match``.
    """
    img = np.asarray(image, float)
    if img.ndim != 2:
        msg = f"plot_matches needs a 2-D image, got shape {img.shape}"
        raise InputError(msg)
    pred = np.asarray(pred_xy, float).reshape(-1, 2)
    true = np.asarray(true_xy, float).reshape(-1, 2)
    if len(pred) != match.n_pred or len(true) != match.n_true:
        msg = (
            f"match was made for {match.n_pred} predictions and {match.n_true} truths, "
            f"got {len(pred)} and {len(true)}"
        )
        raise InputError(msg)
    finite = img[np.isfinite(img)]
    lo, hi = np.percentile(finite, [5, 99.7]) if finite.size else (0.0, 1.0)
    disp = np.arcsinh(10 * np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1)) / np.arcsinh(10)
    h, w = img.shape
    fig = _figure(figsize=(8, 8 * h / w + 0.5))
    ax = fig.add_subplot()
    ax.imshow(disp, cmap="gray", origin="upper", interpolation="nearest")
    tp, fp, fn = pred[match.pred_index], pred[match.unmatched_pred], true[match.unmatched_true]
    ax.scatter(*tp.T, s=60, facecolors="none", edgecolors="lime", lw=0.8, label=f"TP {len(tp)}")
    ax.scatter(*true[match.true_index].T, s=4, color="lime")
    ax.scatter(*fp.T, s=40, marker="x", color="red", lw=0.8, label=f"FP {len(fp)}")
    ax.scatter(
        *fn.T,
        s=60,
        marker="s",
        facecolors="none",
        edgecolors="orange",
        lw=0.8,
        label=f"FN {len(fn)}",
    )
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title)
    return _finish(fig, path)
