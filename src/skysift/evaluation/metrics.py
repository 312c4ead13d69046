"""Metrics shared by every skysift model: pixel-level ROC / PR and object matching.

Pixel level
    Per-pixel ``scores`` (any shape, higher = more likely an object) are compared
    with a boolean ``truth`` of the same shape (``True`` = object pixel); an
    optional boolean ``valid`` mask (``True`` = pixel is evaluated) excludes
    pixels. A pixel is predicted positive when ``score >= threshold``.
Object level
    Predicted positions ``(N, 2)`` are matched one-to-one to true positions
    ``(M, 2)`` within a radius (0-based pixel coordinates, ``x`` = column,
    ``y`` = row).

How the pixel curves are computed (exact, and memory-frugal)
------------------------------------------------------------
Every vertex of the ROC and PR curves sits at a distinct *positive* score
``u``: just above it (``score > u``, reported threshold ``nextafter(u, +inf)``)
and at it (``score >= u``); between these vertices only false positives are
added, so the curve there is a straight segment (Fawcett 2006, §5.1: tied
scores give a diagonal segment). The positive scores are sorted (memory
O(n_pos)); the negatives are streamed in chunks of 2**20 pixels and only
counted against the thresholds, so 10**8 pixels need no more memory than the
positives plus one chunk, and the result is exact.

When there are more than ``2**20`` distinct positive scores (or more than
``(max_points - 2) // 2`` when ``max_points`` is given), ``m`` thresholds are
taken at evenly spaced quantiles of the positive scores (``m = 2**16`` by
default). Every returned vertex is still an exact point of the curve; between
two vertices at most ``ceil((n_pos - 1) / (m - 1))`` positives are replaced by
a straight line, so TPR (and recall) at any FPR is off by at most
``ceil((n_pos - 1) / (m - 1)) / n_pos`` (about ``1 / m``, 1.5e-5 for the
default) and the AUC by at most half of that.

References
----------
.. [1] Unistellar satellite-streak paper, results section and Table 1: TPR at
   0.001 % FPR and precision at 90 % recall, per SNR_avg bin, each bin's
   positives evaluated against all the negatives.
.. [2] Fawcett, T. 2006, "An introduction to ROC analysis", Pattern Recognit.
   Lett. 27, 861: §5.1 (equally scored instances), §7 (AUC).
.. [3] Davis, J. & Goadrich, M. 2006, "The relationship between
   precision-recall and ROC curves", ICML: interpolation between PR points
   is done in ROC (count) space, not linearly in PR space.
.. [4] Crouse, D. F. 2016, "On implementing 2D rectangular assignment
   algorithms", IEEE TAES 52, 1679 (``scipy.optimize.linear_sum_assignment``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from skysift.errors import InputError
from skysift.evaluation import matching

__all__ = [
    "PIXEL_METRICS",
    "SmallSampleWarning",
    "auc",
    "average_precision",
    "binned_table",
    "precision_at_recall",
    "precision_recall_curve",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
]

_CHUNK = 1 << 20
_EXACT_LIMIT = 1 << 20
_AUTO_THRESHOLDS = 1 << 16


class SmallSampleWarning(UserWarning):
    """A metric rests on too few samples to be meaningful (e.g. < 10 false positives)."""


# --------------------------------------------------------------------------- inputs


def _as_bool(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype == bool:
        return a
    if a.dtype.kind not in "iuf" or not np.all((a == 0) | (a == 1)):
        msg = f"{name} must be boolean (or 0/1), got dtype {a.dtype} with other values"
        raise InputError(msg)
    return a != 0


def _flat_inputs(scores, truth, valid) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    s = np.asarray(scores)
    t = np.asarray(truth)
    if s.dtype.kind not in "biuf":
        msg = f"scores must be real numbers, got dtype {s.dtype}"
        raise InputError(msg)
    if s.shape != t.shape:
        msg = f"truth shape {t.shape} differs from scores shape {s.shape}"
        raise InputError(msg)
    t = _as_bool(t, "truth").reshape(-1)
    v = None
    if valid is not None:
        v = np.asarray(valid)
        if v.shape != s.shape:
            msg = f"valid shape {v.shape} differs from scores shape {s.shape}"
            raise InputError(msg)
        v = _as_bool(v, "valid").reshape(-1)
    return s.reshape(-1), t, v


def _positive_mask(t: np.ndarray, v: np.ndarray | None) -> np.ndarray:
    return t if v is None else t & v


def _sorted_scores(s: np.ndarray) -> np.ndarray:
    out = np.sort(s.astype(np.float64))
    if out.size and not (np.isfinite(out[0]) and np.isfinite(out[-1])):
        msg = "scores contain NaN or infinite values; exclude those pixels with `valid`"
        raise InputError(msg)
    return out


def _n_thresholds(max_points: int | None, n_unique: int) -> int:
    if max_points is None:
        return n_unique if n_unique <= _EXACT_LIMIT else _AUTO_THRESHOLDS
    if int(max_points) != max_points or max_points < 6:
        msg = f"max_points must be an integer >= 6 (or None), got {max_points!r}"
        raise InputError(msg)
    return min(n_unique, (int(max_points) - 2) // 2)


def _select_thresholds(pos_sorted: np.ndarray, max_points: int | None) -> np.ndarray:
    """Distinct positive scores used as curve vertices, ascending."""
    if pos_sorted.size == 0:
        return pos_sorted
    uniq = pos_sorted[np.r_[True, np.diff(pos_sorted) != 0]]
    m = _n_thresholds(max_points, uniq.size)
    if m >= uniq.size:
        return uniq
    idx = np.round(np.linspace(0, pos_sorted.size - 1, m)).astype(np.int64)
    return np.unique(pos_sorted[idx])


@dataclass(frozen=True)
class _NegCounts:
    """Negatives at or above / strictly above each threshold (ascending thresholds)."""

    thresholds: np.ndarray
    ge: np.ndarray
    gt: np.ndarray
    n_neg: int
    min_score: float

    def at(self, u_asc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.searchsorted(self.thresholds, u_asc)
        return self.ge[k], self.gt[k]


def _count_negatives(s, t, v, u_asc: np.ndarray) -> _NegCounts:
    k = u_asc.size
    ge = np.zeros(k + 1, np.int64)
    gt = np.zeros(k + 1, np.int64)
    n_neg, min_score = 0, np.inf
    for i in range(0, s.size, _CHUNK):
        keep = ~t[i : i + _CHUNK]
        if v is not None:
            keep &= v[i : i + _CHUNK]
        sn = s[i : i + _CHUNK][keep].astype(np.float64, copy=False)
        if sn.size == 0:
            continue
        if not np.isfinite(sn).all():
            msg = "scores contain NaN or infinite values; exclude those pixels with `valid`"
            raise InputError(msg)
        n_neg += sn.size
        min_score = min(min_score, float(sn.min()))
        ge += np.bincount(np.searchsorted(u_asc, sn, "right"), minlength=k + 1)
        gt += np.bincount(np.searchsorted(u_asc, sn, "left"), minlength=k + 1)
    return _NegCounts(u_asc, n_neg - np.cumsum(ge)[:k], n_neg - np.cumsum(gt)[:k], n_neg, min_score)


@dataclass(frozen=True)
class _Curve:
    """Operating points by decreasing threshold, in counts; first = nothing positive."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_pos: int
    n_neg: int


def _build_curve(pos_sorted: np.ndarray, u_asc: np.ndarray, neg: _NegCounts) -> _Curve:
    n_pos = pos_sorted.size
    fp_ge, fp_gt = neg.at(u_asc)
    u = u_asc[::-1]
    tp_ge = (n_pos - np.searchsorted(pos_sorted, u, "left")).astype(np.int64)
    tp_gt = (n_pos - np.searchsorted(pos_sorted, u, "right")).astype(np.int64)
    k = u.size
    thr = np.empty(2 * k + 2)
    tp = np.zeros(2 * k + 2, np.int64)
    fp = np.zeros(2 * k + 2, np.int64)
    thr[0] = np.inf
    thr[1:-1:2], tp[1:-1:2], fp[1:-1:2] = np.nextafter(u, np.inf), tp_gt, fp_gt[::-1]
    thr[2:-1:2], tp[2:-1:2], fp[2:-1:2] = u, tp_ge, fp_ge[::-1]
    thr[-1], tp[-1], fp[-1] = (neg.min_score if neg.n_neg else -np.inf), n_pos, neg.n_neg
    keep = np.r_[True, (np.diff(tp) != 0) | (np.diff(fp) != 0)]
    return _Curve(thr[keep], tp[keep], fp[keep], n_pos, neg.n_neg)


def _curve(scores, truth, valid, max_points) -> _Curve:
    s, t, v = _flat_inputs(scores, truth, valid)
    pos = _sorted_scores(s[_positive_mask(t, v)])
    u = _select_thresholds(pos, max_points)
    return _build_curve(pos, u, _count_negatives(s, t, v, u))


def _need(curve: _Curve, *, pos: bool = True, neg: bool = True) -> None:
    if pos and curve.n_pos == 0:
        msg = "truth has no positive (object) pixels among the valid pixels"
        raise InputError(msg)
    if neg and curve.n_neg == 0:
        msg = "truth has no negative (background) pixels among the valid pixels"
        raise InputError(msg)


def _check_fraction(value: float, name: str) -> float:
    if not (np.isfinite(value) and 0 < value <= 1):
        msg = f"{name} must be in (0, 1], got {value!r}"
        raise InputError(msg)
    return float(value)


# --------------------------------------------------------------------------- pixel metrics


def roc_curve(
    scores, truth, *, valid=None, max_points: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic of per-pixel scores, exact with ties.

    Parameters
    ----------
    scores : array_like of float, any shape
        Per-pixel score, higher = more likely an object. Must be finite where valid.
    truth : array_like of bool, same shape
        ``True`` = object pixel (positive).
    valid : array_like of bool, same shape, optional
        ``True`` = pixel is evaluated; ``False`` pixels are ignored.
    max_points : int, optional
        Most points returned (>= 6). Default: exact when there are at most
        2**20 distinct positive scores, else 2**16 quantile thresholds. See
        the module notes for the error bound.

    Returns
    -------
    fpr, tpr : ndarray of float, shape (K,)
        False and true positive rates, non-decreasing, from (0, 0) to (1, 1).
    thresholds : ndarray of float, shape (K,)
        Decreasing; point ``i`` predicts ``score >= thresholds[i]``. The first
        is ``+inf`` (nothing positive), the last the lowest valid score.
        Successive points are joined by straight lines (ties: diagonal).

    Raises
    ------
    InputError
        If shapes differ, scores are not finite, or a class is absent.

    References
    ----------
    Fawcett 2006, §5 (ROC generation, ties: §5.1).
    """
    c = _curve(scores, truth, valid, max_points)
    _need(c)
    return c.fp / c.n_neg, c.tp / c.n_pos, c.thresholds


def auc(fpr, tpr) -> float:
    """Area under a curve by the trapezoidal rule (ROC AUC from :func:`roc_curve`).

    Parameters
    ----------
    fpr, tpr : array_like of float, shape (K,), K >= 2
        Abscissae (monotonic, either direction) and ordinates.

    Returns
    -------
    float
        The area; for an ROC, the probability that a random positive scores
        above a random negative, ties counting one half (Fawcett 2006, §7).

    Raises
    ------
    InputError
        If the arrays differ in length, have fewer than 2 points, or ``fpr``
        is not monotonic.
    """
    x = np.asarray(fpr, float)
    y = np.asarray(tpr, float)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        msg = f"auc needs two 1-D arrays of equal length >= 2, got {x.shape} and {y.shape}"
        raise InputError(msg)
    dx = np.diff(x)
    if not (np.all(dx >= 0) or np.all(dx <= 0)):
        msg = "auc needs monotonic abscissae (fpr)"
        raise InputError(msg)
    return float(abs(np.sum(dx * (y[1:] + y[:-1]) / 2)))


def roc_auc(scores, truth, *, valid=None, max_points: int | None = None) -> float:
    """ROC AUC straight from scores: ``auc(*roc_curve(...)[:2])``; see :func:`roc_curve`."""
    fpr, tpr, _ = roc_curve(scores, truth, valid=valid, max_points=max_points)
    return auc(fpr, tpr)


def _tpr_at(c: _Curve, fpr: float) -> float:
    if c.n_pos == 0 or c.n_neg == 0:
        return float("nan")
    target = fpr * c.n_neg
    i = int(np.searchsorted(c.fp, target, "right"))  # c.fp[i - 1] <= target < c.fp[i]
    if i >= c.fp.size:
        return 1.0
    f0, f1, t0, t1 = c.fp[i - 1], c.fp[i], c.tp[i - 1], c.tp[i]
    return float((t0 + (target - f0) / (f1 - f0) * (t1 - t0)) / c.n_pos)


def _warn_negatives(n_neg: int, fpr: float) -> None:
    if n_neg < 10 / fpr:
        msg = (
            f"only {n_neg} negative pixels: at FPR = {fpr:g} that is {n_neg * fpr:.3g} false "
            f"positives; TPR there is meaningful with >= 10 / fpr = {10 / fpr:.0f} negatives"
        )
        warnings.warn(msg, SmallSampleWarning, stacklevel=3)


def tpr_at_fpr(
    scores, truth, fpr: float = 1e-5, *, valid=None, max_points: int | None = None
) -> float:
    """True positive rate at a given false positive rate (default 0.001 %).

    The ROC is piecewise linear between operating points; a point on a
    segment is reached by breaking the tie (or randomising between the two
    thresholds), so the TPR is interpolated linearly in ``fpr`` on the segment
    containing ``fpr``. Where the ROC rises vertically at exactly ``fpr`` the
    top of the rise is taken.

    Parameters
    ----------
    scores, truth, valid, max_points
        As in :func:`roc_curve`.
    fpr : float, optional
        Operating false positive rate in (0, 1]. Default 1e-5 (0.001 %).

    Returns
    -------
    float
        TPR in [0, 1].

    Warns
    -----
    SmallSampleWarning
        When there are fewer than ``10 / fpr`` valid negative pixels (10**6 at
        the default): the operating point then rests on fewer than 10 false
        positives and the TPR is dominated by counting noise.

    Raises
    ------
    InputError
        As in :func:`roc_curve`, or if ``fpr`` is outside (0, 1].

    References
    ----------
    Unistellar satellite-streak paper, Table 1 (TPR at 0.001 % FPR).
    """
    fpr = _check_fraction(fpr, "fpr")
    c = _curve(scores, truth, valid, max_points)
    _need(c)
    _warn_negatives(c.n_neg, fpr)
    return _tpr_at(c, fpr)


def precision_recall_curve(
    scores, truth, *, valid=None, max_points: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall by decreasing threshold (same points as :func:`roc_curve`).

    Parameters
    ----------
    scores, truth, valid, max_points
        As in :func:`roc_curve`.

    Returns
    -------
    precision, recall : ndarray of float, shape (K,)
        ``recall`` is non-decreasing from 0 to 1. The first point (threshold
        ``+inf``, nothing predicted) has precision 1 by convention.
    thresholds : ndarray of float, shape (K,)
        Decreasing, as in :func:`roc_curve`. Do not interpolate linearly
        between points (Davis & Goadrich 2006); use :func:`precision_at_recall`.

    Raises
    ------
    InputError
        If shapes differ, scores are not finite, or there is no positive pixel.
    """
    c = _curve(scores, truth, valid, max_points)
    _need(c, neg=False)
    return _precision(c), c.tp / c.n_pos, c.thresholds


def _precision(c: _Curve) -> np.ndarray:
    n = c.tp + c.fp
    return np.where(n > 0, c.tp / np.maximum(n, 1), 1.0)


def _precision_at(c: _Curve, recall: float) -> float:
    if c.n_pos == 0:
        return float("nan")
    target = recall * c.n_pos
    i = int(np.searchsorted(c.tp, target, "left"))  # first point with tp >= target
    if c.tp[i] == target:
        tp, fp = float(target), float(c.fp[i])
    else:  # interpolate between the two operating points in count space
        lam = (target - c.tp[i - 1]) / (c.tp[i] - c.tp[i - 1])
        tp, fp = float(target), c.fp[i - 1] + lam * (c.fp[i] - c.fp[i - 1])
    return tp / (tp + fp)


def precision_at_recall(
    scores, truth, recall: float = 0.9, *, valid=None, max_points: int | None = None
) -> float:
    """Precision at the strictest operating point that reaches a given recall.

    The operating point is where the true positives first reach
    ``recall * n_pos`` going down in threshold; inside a tie (or between two
    quantised thresholds) the point is interpolated linearly in (TP, FP)
    counts, i.e. on the ROC, then converted to precision (Davis & Goadrich
    2006) — not linearly in precision.

    Parameters
    ----------
    scores, truth, valid, max_points
        As in :func:`roc_curve`.
    recall : float, optional
        Required recall in (0, 1]. Default 0.9.

    Returns
    -------
    float
        Precision in [0, 1].

    Raises
    ------
    InputError
        As in :func:`precision_recall_curve`, or if ``recall`` is outside (0, 1].

    References
    ----------
    Unistellar satellite-streak paper, Table 1 (precision at 90 % recall).
    """
    recall = _check_fraction(recall, "recall")
    c = _curve(scores, truth, valid, max_points)
    _need(c, neg=False)
    return _precision_at(c, recall)


def _average_precision(c: _Curve) -> float:
    if c.n_pos == 0:
        return float("nan")
    return float(np.sum(np.diff(c.tp) * _precision(c)[1:]) / c.n_pos)


def average_precision(scores, truth, *, valid=None, max_points: int | None = None) -> float:
    """Average precision: ``sum_n (R_n - R_{n-1}) P_n`` over the thresholds.

    The step-wise (non-interpolated) definition of scikit-learn's
    ``average_precision_score``: precision at each distinct positive score,
    weighted by the recall it adds; with ties, all tied pixels count at once.

    Parameters
    ----------
    scores, truth, valid, max_points
        As in :func:`roc_curve`.

    Returns
    -------
    float
        AP in [0, 1].

    Raises
    ------
    InputError
        As in :func:`precision_recall_curve`.

    References
    ----------
    Manning, Raghavan & Schütze 2008, *Introduction to Information
    Retrieval*, §8.4 (average precision).
    """
    c = _curve(scores, truth, valid, max_points)
    _need(c, neg=False)
    return _average_precision(c)


#: Metric name -> (function of a curve and the options, description template).
PIXEL_METRICS = {
    "auc": (lambda c, o: auc(c.fp / c.n_neg, c.tp / c.n_pos), "ROC AUC"),
    "tpr_at_fpr": (lambda c, o: _tpr_at(c, o["fpr"]), "TPR at FPR = {fpr:g}"),
    "precision_at_recall": (
        lambda c, o: _precision_at(c, o["recall"]),
        "precision at recall = {recall:g}",
    ),
    "average_precision": (lambda c, o: _average_precision(c), "average precision"),
}


# --------------------------------------------------------------------------- bins


def _check_bins(bins: Mapping[str, Sequence[float]]) -> tuple[str, np.ndarray]:
    if not isinstance(bins, Mapping) or len(bins) != 1:
        msg = f"bins must be a mapping with one entry {{name: edges}}, got {bins!r}"
        raise InputError(msg)
    ((name, edges),) = bins.items()
    edges = np.asarray(edges, float)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
        msg = f"bin edges of {name!r} must be >= 2 strictly increasing numbers, got {edges}"
        raise InputError(msg)
    return str(name), edges


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: [lo, hi) except the last, [lo, hi]; -1 outside or NaN."""
    b = np.searchsorted(edges, values, "right") - 1
    b[values == edges[-1]] = edges.size - 2
    b[(b < 0) | (b > edges.size - 2) | ~np.isfinite(values)] = -1
    return b


def _bin_labels(edges: np.ndarray) -> list[str]:
    n = edges.size - 1
    return [f"[{edges[i]:g}, {edges[i + 1]:g}{']' if i == n - 1 else ')'}" for i in range(n)]


def _object_values(labels_pos, object_ids, per_object_values) -> np.ndarray:
    ids = np.asarray(object_ids).reshape(-1)
    vals = np.asarray(per_object_values, float).reshape(-1)
    if ids.shape != vals.shape:
        msg = f"object_ids {ids.shape} and per_object_values {vals.shape} differ in length"
        raise InputError(msg)
    order = np.argsort(ids, kind="stable")
    ids, vals = ids[order], vals[order]
    if np.any(ids[1:] == ids[:-1]):
        msg = "object_ids must be unique"
        raise InputError(msg)
    k = np.clip(np.searchsorted(ids, labels_pos), 0, max(ids.size - 1, 0))
    out = np.full(labels_pos.shape, np.nan)
    if ids.size:
        found = ids[k] == labels_pos
        out[found] = vals[k[found]]
    return out


def binned_table(
    scores,
    truth,
    bins: Mapping[str, Sequence[float]],
    *,
    values=None,
    labels=None,
    object_ids=None,
    per_object_values=None,
    valid=None,
    metrics: Sequence[str] = ("auc", "tpr_at_fpr", "precision_at_recall"),
    fpr: float = 1e-5,
    recall: float = 0.9,
    max_points: int | None = None,
    total: bool = True,
) -> Table:
    """Pixel metrics per bin of a property of the positives (e.g. SNR_avg).

    Each row evaluates **that bin's positive pixels against all valid negative
    pixels** (negatives have no object, hence no property, and are shared by
    every bin), as in Table 1 of the Unistellar satellite-streak paper. The
    property of a positive pixel is given per pixel (``values``) or per object
    (``labels`` + ``object_ids`` + ``per_object_values``: a pixel takes the
    value of the object whose id is its label, e.g. the object's SNR_avg).

    Parameters
    ----------
    scores, truth, valid, max_points
        As in :func:`roc_curve`.
    bins : mapping {str: sequence of float}
        One entry ``{name: edges}``, edges strictly increasing. Bin ``i`` is
        ``[edges[i], edges[i+1])``, the last one closed ``[.., edges[-1]]``.
    values : array_like of float, same shape as ``scores``, optional
        Property of each pixel (only read at positive pixels).
    labels : array_like of int, same shape as ``scores``, optional
        Instance map, 0 = background, ``k`` = object with id ``k``. Also used
        to count ``n_objects`` when given with ``values``.
    object_ids, per_object_values : array_like, shape (N_obj,), optional
        Id and property of each object; needed with ``labels`` unless
        ``values`` is given.
    metrics : sequence of str, optional
        Names from :data:`PIXEL_METRICS`: ``auc``, ``tpr_at_fpr``,
        ``precision_at_recall``, ``average_precision``.
    fpr, recall : float, optional
        Operating points of ``tpr_at_fpr`` (default 1e-5) and
        ``precision_at_recall`` (default 0.9).
    total : bool, optional
        Add a last row ``"all"`` with every positive (also those outside the
        bins or without a property), edges -inf, +inf. Default True.

    Returns
    -------
    astropy.table.Table
        One row per bin: ``bin`` (label such as ``"[1, 3)"``), ``<name>_lo``,
        ``<name>_hi``, ``n_pos``, ``n_neg``, ``n_objects`` (distinct labels in
        the bin; -1 without ``labels``), then one float column per metric.
        Empty bins keep their row: counts 0 and NaN metrics. ``meta`` holds
        ``binned_by``, ``fpr``, ``recall`` and ``n_pos_unbinned`` (positives
        with a NaN or out-of-range property). Precision per bin depends on the
        bin's share of positives, so compare it between methods, not bins.

    Warns
    -----
    SmallSampleWarning
        Once, when ``tpr_at_fpr`` is asked for with fewer than ``10 / fpr``
        negatives.

    Raises
    ------
    InputError
        On bad shapes, bins, metric names, or a missing property.
    """
    name, edges = _check_bins(bins)
    unknown = [m for m in metrics if m not in PIXEL_METRICS]
    if unknown:
        msg = f"unknown metric(s) {unknown}; valid: {sorted(PIXEL_METRICS)}"
        raise InputError(msg)
    opts = {"fpr": _check_fraction(fpr, "fpr"), "recall": _check_fraction(recall, "recall")}
    s, t, v = _flat_inputs(scores, truth, valid)
    pm = _positive_mask(t, v)

    def _same_shape(a, what):
        a = np.asarray(a)
        if a.shape != np.shape(scores):
            msg = f"{what} shape {a.shape} differs from scores shape {np.shape(scores)}"
            raise InputError(msg)
        return a.reshape(-1)

    lab_pos = None if labels is None else _same_shape(labels, "labels")[pm]
    if values is not None:
        prop = _same_shape(values, "values")[pm].astype(float)
    elif lab_pos is not None and object_ids is not None and per_object_values is not None:
        prop = _object_values(lab_pos, object_ids, per_object_values)
    else:
        msg = "binned_table needs `values`, or `labels` with `object_ids` and `per_object_values`"
        raise InputError(msg)

    pos = s[pm].astype(np.float64)
    b = _bin_index(prop, edges)
    groups = [b == i for i in range(edges.size - 1)]
    if total:
        groups.append(np.ones(pos.size, bool))
    sorted_pos = [_sorted_scores(pos[g]) for g in groups]
    thresholds = [_select_thresholds(p, max_points) for p in sorted_pos]
    union = np.unique(np.concatenate(thresholds)) if thresholds else np.zeros(0)
    neg = _count_negatives(s, t, v, union)
    if "tpr_at_fpr" in metrics:
        _warn_negatives(neg.n_neg, opts["fpr"])

    rows = []
    for g, p, u in zip(groups, sorted_pos, thresholds, strict=True):
        c = _build_curve(p, u, neg)
        n_obj = -1 if lab_pos is None else int(np.unique(lab_pos[g]).size)
        ok = c.n_pos > 0 and c.n_neg > 0
        vals = [PIXEL_METRICS[m][0](c, opts) if ok else np.nan for m in metrics]
        rows.append([c.n_pos, c.n_neg, n_obj, *vals])
    labels_txt = _bin_labels(edges) + (["all"] if total else [])
    lo = np.r_[edges[:-1], [-np.inf] if total else []]
    hi = np.r_[edges[1:], [np.inf] if total else []]
    cols = np.array(rows, dtype=float).reshape(len(rows), 3 + len(metrics))
    table = Table(meta={"binned_by": name, **opts, "n_pos_unbinned": int(np.sum(b < 0))})
    table["bin"] = np.array(labels_txt, dtype=str)
    table[f"{name}_lo"] = lo
    table[f"{name}_hi"] = hi
    for j, col in enumerate(("n_pos", "n_neg", "n_objects")):
        table[col] = cols[:, j].astype(np.int64)
    table["n_pos"].description = "positive pixels of the bin"
    table["n_neg"].description = "negative pixels (all valid ones, shared by every bin)"
    table["n_objects"].description = "distinct object labels among the positives (-1: unknown)"
    for j, m in enumerate(metrics):
        table[m] = cols[:, 3 + j]
        table[m].description = PIXEL_METRICS[m][1].format(**opts)
    return table


def __getattr__(name: str):  # object-level metrics live in skysift.evaluation.matching
    if name in (
        "MatchResult",
        "match_objects",
        "object_metrics_by_bin",
        "detection_scores_sweep",
        "recall_at_precision",
    ):
        return getattr(matching, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
