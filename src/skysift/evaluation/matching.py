"""Object-level evaluation: one-to-one matching of detections to truth, per-bin recall, score sweeps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from skysift.errors import InputError
from skysift.evaluation.metrics import _bin_index, _bin_labels, _check_bins, _check_fraction

_SWEEP_MAX = 512  # thresholds of a default score sweep (quantiles beyond that)

__all__ = [
    "MatchResult",
    "match_objects",
    "object_metrics_by_bin",
    "detection_scores_sweep",
    "recall_at_precision",
]


@dataclass(frozen=True)
class MatchResult:
    """One-to-one match of predicted to true positions.

    Conventions for empty inputs: with no prediction, ``precision`` = 1 (no
    false detection was made); with no true object, ``recall`` = 1 (nothing
    was missed); ``f1`` is 0 when precision + recall = 0. Centroid errors
    are NaN without matched pairs.

    Attributes
    ----------
    pred_index, true_index : ndarray of int, shape (K,)
        Matched pairs, sorted by ``pred_index``.
    dx, dy : ndarray of float, shape (K,)
        ``pred - true`` offsets of the pairs, pixels.
    unmatched_pred, unmatched_true : ndarray of int
        Indices of false positives and of missed true objects.
    n_pred, n_true : int
    radius : float
        Match radius, pixels (a pair matches when its distance <= radius).
    method : str
        ``"optimal"`` or ``"greedy"``.
    """

    pred_index: np.ndarray
    true_index: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    unmatched_pred: np.ndarray
    unmatched_true: np.ndarray
    n_pred: int
    n_true: int
    radius: float
    method: str

    @property
    def distance(self) -> np.ndarray:
        """Distance of each matched pair, pixels, shape (K,)."""
        return np.hypot(self.dx, self.dy)

    @property
    def tp(self) -> int:
        """Matched pairs."""
        return int(self.pred_index.size)

    @property
    def fp(self) -> int:
        """Unmatched predictions."""
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        """Unmatched true objects."""
        return self.n_true - self.tp

    @property
    def precision(self) -> float:
        """``tp / n_pred``; 1 when there is no prediction."""
        return self.tp / self.n_pred if self.n_pred else 1.0

    @property
    def recall(self) -> float:
        """``tp / n_true``; 1 when there is no true object."""
        return self.tp / self.n_true if self.n_true else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (0 when both are 0)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def centroid_median_error(self) -> float:
        """Median distance of matched pairs, pixels (NaN without pairs)."""
        return float(np.median(self.distance)) if self.tp else float("nan")

    @property
    def centroid_rms_error(self) -> float:
        """RMS distance of matched pairs, pixels (NaN without pairs)."""
        return float(np.sqrt(np.mean(self.distance**2))) if self.tp else float("nan")

    @property
    def bias_dx(self) -> float:
        """Mean ``pred - true`` offset along x, pixels (NaN without pairs)."""
        return float(np.mean(self.dx)) if self.tp else float("nan")

    @property
    def bias_dy(self) -> float:
        """Mean ``pred - true`` offset along y, pixels (NaN without pairs)."""
        return float(np.mean(self.dy)) if self.tp else float("nan")

    def summary(self) -> dict[str, float]:
        """Counts, rates and centroid statistics as a flat dict (JSON-ready)."""
        keys = ("n_pred", "n_true", "tp", "fp", "fn", "precision", "recall", "f1")
        keys += ("centroid_median_error", "centroid_rms_error", "bias_dx", "bias_dy", "radius")
        return {k: getattr(self, k) for k in keys}

    def pairs_table(self) -> Table:
        """Matched pairs: ``pred_index``, ``true_index``, ``dx``, ``dy``, ``distance`` (pixels)."""
        return Table(
            [self.pred_index, self.true_index, self.dx, self.dy, self.distance],
            names=("pred_index", "true_index", "dx", "dy", "distance"),
            units=(None, None, "pix", "pix", "pix"),
        )


def _check_xy(xy, name: str) -> np.ndarray:
    a = np.asarray(xy, dtype=float)
    if a.size == 0:
        return a.reshape(0, 2)
    if a.ndim != 2 or a.shape[1] != 2:
        msg = f"{name} must have shape (N, 2) as (x, y) pixels, got {a.shape}"
        raise InputError(msg)
    if not np.isfinite(a).all():
        msg = f"{name} contains NaN or infinite coordinates"
        raise InputError(msg)
    return a


def _check_radius(radius: float) -> float:
    if not (np.isfinite(radius) and radius > 0):
        msg = f"radius must be a positive number of pixels, got {radius!r}"
        raise InputError(msg)
    return float(radius)


def _candidates(pred: np.ndarray, true: np.ndarray, radius: float):
    """All (pred, true, distance) pairs with distance <= radius."""
    if len(pred) == 0 or len(true) == 0:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0)
    lists = cKDTree(true).query_ball_point(pred, radius * (1 + 1e-9) + 1e-12)
    counts = np.fromiter((len(x) for x in lists), np.int64, len(lists))
    i = np.repeat(np.arange(len(pred)), counts)
    j = np.concatenate([np.asarray(x, np.int64) for x in lists]) if counts.sum() else i
    d = np.hypot(*(pred[i] - true[j]).T)
    keep = d <= radius
    return i[keep], j[keep], d[keep]


def _assign_greedy(i, j, d, n_pred, n_true):
    used_p, used_t = np.zeros(n_pred, bool), np.zeros(n_true, bool)
    out = []
    for k in np.lexsort((j, i, d)):
        if not used_p[i[k]] and not used_t[j[k]]:
            used_p[i[k]] = used_t[j[k]] = True
            out.append(k)
    return np.asarray(out, np.int64)


def _assign_optimal(i, j, d, n_pred, n_true, radius):
    cp = np.bincount(i, minlength=n_pred)
    ct = np.bincount(j, minlength=n_true)
    trivial = (cp[i] == 1) & (ct[j] == 1)
    chosen = [np.flatnonzero(trivial)]
    rest = np.flatnonzero(~trivial)
    if rest.size:
        g = coo_matrix(
            (np.ones(rest.size), (i[rest], n_pred + j[rest])), shape=(n_pred + n_true,) * 2
        )
        _, comp = connected_components(g, directed=False)
        c = comp[i[rest]]
        order = np.argsort(c, kind="stable")
        rest, c = rest[order], c[order]
        for grp in np.split(rest, np.flatnonzero(np.diff(c)) + 1):
            up, ri = np.unique(i[grp], return_inverse=True)
            ut, rj = np.unique(j[grp], return_inverse=True)
            big = radius * (grp.size + 1) + 1.0  # > any sum of allowed distances
            cost = np.full((up.size, ut.size), big)
            cost[ri, rj] = d[grp]
            pos = np.full((up.size, ut.size), -1, np.int64)
            pos[ri, rj] = grp
            r, k = linear_sum_assignment(cost)
            ok = cost[r, k] < big
            chosen.append(pos[r[ok], k[ok]])
    return np.concatenate(chosen)


def _match(pred, true, radius, method, cand, pred_keep=None) -> MatchResult:
    i, j, d = cand
    n_pred = len(pred) if pred_keep is None else int(pred_keep.sum())
    if pred_keep is not None:
        sel = pred_keep[i]
        i, j, d = i[sel], j[sel], d[sel]
    if method == "greedy":
        k = _assign_greedy(i, j, d, len(pred), len(true))
    else:
        k = _assign_optimal(i, j, d, len(pred), len(true), radius)
    k = k[np.argsort(i[k], kind="stable")]
    pi, ti = i[k], j[k]
    all_pred = np.arange(len(pred)) if pred_keep is None else np.flatnonzero(pred_keep)
    return MatchResult(
        pred_index=pi,
        true_index=ti,
        dx=pred[pi, 0] - true[ti, 0],
        dy=pred[pi, 1] - true[ti, 1],
        unmatched_pred=np.setdiff1d(all_pred, pi),
        unmatched_true=np.setdiff1d(np.arange(len(true)), ti),
        n_pred=n_pred,
        n_true=len(true),
        radius=radius,
        method=method,
    )


def _check_method(method: str) -> str:
    if method not in ("optimal", "greedy"):
        msg = f"method must be 'optimal' or 'greedy', got {method!r}"
        raise InputError(msg)
    return method


def match_objects(pred_xy, true_xy, radius: float, *, method: str = "optimal") -> MatchResult:
    """Match predicted to true positions one-to-one within a radius.

    Parameters
    ----------
    pred_xy : array_like of float, shape (N, 2)
        Predicted ``(x, y)``, 0-based pixels.
    true_xy : array_like of float, shape (M, 2)
        True ``(x, y)``, 0-based pixels.
    radius : float
        Largest distance of a match, pixels (inclusive: distance <= radius).
    method : {"optimal", "greedy"}, optional
        ``"optimal"`` (default): the most pairs possible, and among those the
        smallest total distance, by ``linear_sum_assignment`` on each connected
        group of candidate pairs (forbidden pairs cost more than any sum of
        allowed ones). ``"greedy"``: pairs taken by increasing distance (ties:
        lower pred index, then lower true index), skipping used objects.

    Returns
    -------
    MatchResult
        Pairs, unmatched indices, ``tp``/``fp``/``fn``, ``precision``,
        ``recall``, ``f1`` and centroid statistics; a second detection of an
        already matched star is a false positive.

    Raises
    ------
    InputError
        If an array is not (N, 2) or not finite, the radius is not positive,
        or the method is unknown.

    References
    ----------
    Crouse 2016 (``scipy.optimize.linear_sum_assignment``).
    """
    pred, true = _check_xy(pred_xy, "pred_xy"), _check_xy(true_xy, "true_xy")
    radius, method = _check_radius(radius), _check_method(method)
    return _match(pred, true, radius, method, _candidates(pred, true, radius))


def object_metrics_by_bin(
    pred_xy,
    true_xy,
    radius: float,
    *,
    true_values,
    bins: Mapping[str, Sequence[float]],
    method: str = "optimal",
    total: bool = True,
) -> Table:
    """Recall (and centroid error) per bin of a property of the true objects.

    One global match (:func:`match_objects`) is made; true objects are then
    grouped by ``true_values`` (e.g. SNR or magnitude). Precision exists only
    overall (a false positive has no true property): it is in ``meta`` and in
    the ``"all"`` row, NaN in the bin rows.

    Parameters
    ----------
    pred_xy, true_xy, radius, method
        As in :func:`match_objects`.
    true_values : array_like of float, shape (M,)
        Property of each true object.
    bins : mapping {str: sequence of float}
        ``{name: edges}``, as in :func:`binned_table`.
    total : bool, optional
        Add a last row ``"all"`` with every true object. Default True.

    Returns
    -------
    astropy.table.Table
        Columns ``bin``, ``<name>_lo``, ``<name>_hi``, ``n_true``,
        ``n_matched``, ``recall`` (NaN for an empty bin), ``precision``,
        ``centroid_median_error`` and ``centroid_rms_error`` (pixels, NaN
        without pairs). ``meta``: ``binned_by``, ``radius``, ``method`` and
        the overall ``n_pred``, ``tp``, ``fp``, ``fn``, ``precision``,
        ``recall``, ``f1``.

    Raises
    ------
    InputError
        As in :func:`match_objects`, or if ``true_values`` does not have one
        value per true object.
    """
    name, edges = _check_bins(bins)
    m = match_objects(pred_xy, true_xy, radius, method=method)
    vals = np.asarray(true_values, float).reshape(-1)
    if vals.size != m.n_true:
        msg = f"true_values has {vals.size} values for {m.n_true} true objects"
        raise InputError(msg)
    b = _bin_index(vals, edges)
    groups = [b == i for i in range(edges.size - 1)]
    if total:
        groups.append(np.ones(m.n_true, bool))
    matched = np.zeros(m.n_true, bool)
    matched[m.true_index] = True
    dist = np.full(m.n_true, np.nan)
    dist[m.true_index] = m.distance
    rows = []
    for g in groups:
        n, k = int(g.sum()), int((g & matched).sum())
        dd = dist[g & matched]
        med = float(np.median(dd)) if k else np.nan
        rms = float(np.sqrt(np.mean(dd**2))) if k else np.nan
        rows.append((n, k, k / n if n else np.nan, med, rms))
    r = np.array(rows, dtype=float).reshape(len(rows), 5)
    meta = {"binned_by": name, "radius": m.radius, "method": m.method}
    meta.update(
        {k: getattr(m, k) for k in ("n_pred", "tp", "fp", "fn", "precision", "recall", "f1")}
    )
    t = Table(meta=meta)
    t["bin"] = np.array(_bin_labels(edges) + (["all"] if total else []), dtype=str)
    t[f"{name}_lo"] = np.r_[edges[:-1], [-np.inf] if total else []]
    t[f"{name}_hi"] = np.r_[edges[1:], [np.inf] if total else []]
    t["n_true"] = r[:, 0].astype(np.int64)
    t["n_matched"] = r[:, 1].astype(np.int64)
    t["recall"] = r[:, 2]
    precision = np.full(len(rows), np.nan)
    if total:
        precision[-1] = m.precision
    t["precision"] = precision
    t["centroid_median_error"] = r[:, 3]
    t["centroid_rms_error"] = r[:, 4]
    t["centroid_median_error"].unit = t["centroid_rms_error"].unit = "pix"
    return t


def detection_scores_sweep(
    pred_xy, pred_score, true_xy, radius: float, thresholds=None, *, method: str = "optimal"
) -> Table:
    """Precision and recall of detections kept at ``score >= threshold``, per threshold.

    At each threshold the kept detections are matched afresh with
    :func:`match_objects` (candidate pairs are found once).

    Parameters
    ----------
    pred_xy : array_like of float, shape (N, 2)
        Detections, 0-based pixels.
    pred_score : array_like of float, shape (N,)
        Detection score (higher = more confident), finite.
    true_xy, radius, method
        As in :func:`match_objects`.
    thresholds : array_like of float, optional
        Default: every distinct score when there are at most 512, else 512
        quantiles of the scores (including the lowest and highest).

    Returns
    -------
    astropy.table.Table
        By decreasing ``threshold``: ``threshold``, ``n_pred``, ``tp``,
        ``fp``, ``fn``, ``precision`` (1 with no detection kept), ``recall``,
        ``f1``. Feed it to :func:`recall_at_precision`.

    Raises
    ------
    InputError
        As in :func:`match_objects`, or if the scores are not one finite value
        per detection.
    """
    pred, true = _check_xy(pred_xy, "pred_xy"), _check_xy(true_xy, "true_xy")
    radius, method = _check_radius(radius), _check_method(method)
    score = np.asarray(pred_score, float).reshape(-1)
    if score.size != len(pred) or not np.isfinite(score).all():
        msg = f"pred_score must hold {len(pred)} finite values, got {score.size}"
        raise InputError(msg)
    if thresholds is None:
        uniq = np.unique(score)
        if uniq.size > _SWEEP_MAX:
            uniq = np.unique(np.quantile(score, np.linspace(0, 1, _SWEEP_MAX), method="lower"))
        thresholds = uniq
    thr = np.sort(np.asarray(thresholds, float).reshape(-1))[::-1]
    cand = _candidates(pred, true, radius)
    rows = []
    for th in thr:
        m = _match(pred, true, radius, method, cand, pred_keep=score >= th)
        rows.append((th, m.n_pred, m.tp, m.fp, m.fn, m.precision, m.recall, m.f1))
    names = ("threshold", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1")
    r = np.array(rows, dtype=float).reshape(len(rows), len(names))
    t = Table(meta={"radius": radius, "method": method, "n_true": len(true)})
    for k, col in enumerate(names):
        t[col] = r[:, k].astype(np.int64) if col in ("n_pred", "tp", "fp", "fn") else r[:, k]
    return t


def recall_at_precision(sweep: Table, precision: float = 0.95) -> float:
    """Highest recall among the thresholds of a sweep whose precision is >= ``precision``.

    Parameters
    ----------
    sweep : astropy.table.Table
        From :func:`detection_scores_sweep` (columns ``precision``, ``recall``).
    precision : float, optional
        Required precision in (0, 1]. Default 0.95.

    Returns
    -------
    float
        The recall, NaN when no threshold reaches the precision. The row
        (threshold) is ``sweep[sweep["recall"] == value]``.

    Raises
    ------
    InputError
        If ``precision`` is outside (0, 1] or the table lacks the columns.
    """
    precision = _check_fraction(precision, "precision")
    if "precision" not in sweep.colnames or "recall" not in sweep.colnames:
        msg = f"sweep needs columns 'precision' and 'recall', got {sweep.colnames}"
        raise InputError(msg)
    ok = np.asarray(sweep["precision"]) >= precision
    return float(np.max(np.asarray(sweep["recall"])[ok])) if ok.any() else float("nan")
