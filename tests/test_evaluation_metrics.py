"""Evaluation metrics against hand-computed truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skysift.errors import InputError
from skysift.evaluation import (
    SmallSampleWarning,
    auc,
    average_precision,
    binned_table,
    detection_scores_sweep,
    match_objects,
    object_metrics_by_bin,
    precision_at_recall,
    precision_recall_curve,
    recall_at_precision,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from skysift.evaluation import metrics as M

HAND_S = [0.1, 0.4, 0.35, 0.8]
HAND_T = [0, 0, 1, 1]


def _mann_whitney(s, t):
    s, t = np.asarray(s, float), np.asarray(t, bool)
    p, n = s[t][:, None], s[~t][None, :]
    return float(np.mean((p > n) + 0.5 * (p == n)))


def _staged():
    """60 pos @0.9, 20 @0.5, 20 @0.1; 100 neg @0.9, 100 @0.7, 9800 @0.0.

    ROC: (0,0) -tie-> (0.01,0.6) -> (0.02,0.6) -> (0.02,0.8) -> (0.02,1) -> (1,1).
    """
    s = np.r_[[0.9] * 60, [0.5] * 20, [0.1] * 20, [0.9] * 100, [0.7] * 100, [0.0] * 9800]
    t = np.r_[np.ones(100, bool), np.zeros(10000, bool)]
    return s, t


# ----------------------------------------------------------------------------- ROC


def test_roc_hand_case():
    fpr, tpr, thr = roc_curve(HAND_S, HAND_T)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert thr[0] == np.inf and thr[1] == 0.8 and thr[3] == 0.35 and thr[-1] == 0.1
    assert 0.35 < thr[2] < 0.351  # just above 0.35: "score > 0.35"
    assert auc(fpr, tpr) == pytest.approx(0.75)
    assert roc_auc(np.reshape(HAND_S, (2, 2)), np.reshape(HAND_T, (2, 2))) == pytest.approx(0.75)


def test_perfect_inverted_and_ties():
    s = np.array([0.1, 0.2, 0.8, 0.9])
    t = np.array([0, 0, 1, 1], bool)
    assert roc_auc(s, t) == 1.0
    assert roc_auc(-s, t) == 0.0
    fpr, tpr, _ = roc_curve([0.5] * 4, [1, 0, 1, 0])  # all tied: one diagonal
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(tpr, [0, 1])
    assert roc_auc([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)
    rng = np.random.default_rng(1)
    s, t = rng.integers(0, 6, 400), rng.random(400) < 0.3  # heavy ties
    assert roc_auc(s, t) == pytest.approx(_mann_whitney(s, t), abs=1e-12)


def test_valid_mask_excludes_pixels():
    rng = np.random.default_rng(2)
    s, t, v = rng.random((30, 40)), rng.random((30, 40)) < 0.2, rng.random((30, 40)) < 0.7
    assert roc_auc(s, t, valid=v) == pytest.approx(_mann_whitney(s[v], t[v]), abs=1e-12)
    s[~v] = np.nan  # excluded pixels may hold anything
    assert roc_auc(s, t, valid=v) == pytest.approx(_mann_whitney(s[v], t[v]), abs=1e-12)


def test_tpr_at_fpr_interpolation():
    s, t = _staged()
    assert tpr_at_fpr(s, t, 0.004) == pytest.approx(0.24)  # on the tie diagonal
    assert tpr_at_fpr(s, t, 0.015) == pytest.approx(0.6)  # on the horizontal segment
    assert tpr_at_fpr(s, t, 0.02) == pytest.approx(1.0)  # top of the vertical rise
    assert tpr_at_fpr(s, t, 0.5) == pytest.approx(1.0)


def test_tpr_at_fpr_warns_with_few_negatives():
    s, t = _staged()
    with pytest.warns(SmallSampleWarning, match="10 / fpr = 1000000"):
        value = tpr_at_fpr(s, t)  # 1e-5 of 10 000 negatives = 0.1 false positives
    assert value == pytest.approx(1e-5 / 0.01 * 0.6)


def test_precision_at_recall_hand_cases():
    assert precision_at_recall(HAND_S, HAND_T, 0.5) == pytest.approx(1.0)
    assert precision_at_recall(HAND_S, HAND_T, 1.0) == pytest.approx(2 / 3)
    # between (tp 1, fp 1) and (tp 2, fp 1): interpolated in counts, 1.5 / 2.5
    assert precision_at_recall(HAND_S, HAND_T, 0.75) == pytest.approx(0.6)
    s, t = _staged()
    assert precision_at_recall(s, t, 0.3) == pytest.approx(30 / 80)
    assert precision_at_recall(s, t, 0.7) == pytest.approx(70 / 270)
    assert precision_at_recall(s, t) == pytest.approx(90 / 290)


def test_pr_curve_and_average_precision():
    p, r, thr = precision_recall_curve(HAND_S, HAND_T)
    np.testing.assert_allclose(r, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(p, [1, 1, 0.5, 2 / 3, 0.5])
    assert thr[0] == np.inf
    assert average_precision(HAND_S, HAND_T) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)


def test_quantised_path_within_stated_error(monkeypatch):
    rng = np.random.default_rng(3)
    t = rng.random(1_000_000) < 0.3
    s = (rng.normal(size=t.size) + 1.5 * t).astype(np.float32)
    n_pos = int(t.sum())
    fpr_e, tpr_e, _ = roc_curve(s, t)
    auc_e, tpr1_e = auc(fpr_e, tpr_e), tpr_at_fpr(s, t, 1e-4)
    for max_points in (2**17 + 2, 1002):
        m = (max_points - 2) // 2
        bound = math.ceil((n_pos - 1) / (m - 1)) / n_pos
        fpr_q, tpr_q, thr_q = roc_curve(s, t, max_points=max_points)
        assert fpr_q.size <= max_points
        assert abs(auc(fpr_q, tpr_q) - auc_e) <= bound / 2
        assert abs(tpr_at_fpr(s, t, 1e-4, max_points=max_points) - tpr1_e) <= bound
        # every vertex is an exact point of the curve
        pos, neg = np.sort(s[t].astype(float)), np.sort(s[~t].astype(float))
        k = np.flatnonzero(np.isfinite(thr_q))[::97]
        np.testing.assert_allclose(tpr_q[k], 1 - np.searchsorted(pos, thr_q[k]) / pos.size)
        np.testing.assert_allclose(fpr_q[k], 1 - np.searchsorted(neg, thr_q[k]) / neg.size)
    # streaming the negatives in small chunks changes nothing
    monkeypatch.setattr(M, "_CHUNK", 4096)
    fpr_c, tpr_c, _ = roc_curve(s[:50_000], t[:50_000])
    monkeypatch.undo()
    fpr_1, tpr_1, _ = roc_curve(s[:50_000], t[:50_000])
    np.testing.assert_array_equal(fpr_c, fpr_1)
    np.testing.assert_array_equal(tpr_c, tpr_1)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: roc_curve([0.1, 0.2], [1, 0, 1]), "shape"),
        (lambda: roc_curve([np.nan, 0.2], [1, 0]), "NaN"),
        (lambda: roc_curve([0.1, 0.2], [0, 0]), "no positive"),
        (lambda: roc_curve([0.1, 0.2], [1, 1]), "no negative"),
        (lambda: roc_curve([0.1, 0.2], [2, 0]), "boolean"),
        (lambda: roc_curve([0.1, 0.2], [1, 0], max_points=4), "max_points"),
        (lambda: tpr_at_fpr([0.1, 0.2], [1, 0], fpr=0), "fpr"),
        (lambda: precision_at_recall([0.1, 0.2], [1, 0], recall=1.5), "recall"),
        (lambda: auc([0, 1, 0.5], [0, 1, 1]), "monotonic"),
    ],
)
def test_pixel_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()


# ----------------------------------------------------------------------------- binned table


def _binned_scene():
    rng = np.random.default_rng(4)
    labels = np.zeros((40, 50), np.int32)
    labels[2:6, 2:6] = 1  # snr 0.3 -> [0, 0.5)
    labels[10:13, 10:13] = 2  # snr 2 -> [1, 3)
    labels[20:22, 20:25] = 3  # snr 2.5 -> [1, 3)
    labels[30:32, 30:32] = 4  # snr 50 -> outside the bins
    truth = labels > 0
    scores = np.where(rng.random(labels.shape) < 0.5, 0.1, 0.3)
    scores[labels == 1] = 0.2  # beats half the negatives
    scores[(labels == 2) | (labels == 3)] = 0.9  # beats all
    scores[labels == 4] = 0.0
    return scores, truth, labels, np.array([1, 2, 3, 4]), np.array([0.3, 2.0, 2.5, 50.0])


def test_binned_table_positives_in_bins_negatives_shared():
    scores, truth, labels, ids, snr = _binned_scene()
    bins = {"snr_avg": [0, 0.5, 1, 3, 10, 30]}
    tab = binned_table(
        scores, truth, bins, labels=labels, object_ids=ids, per_object_values=snr,
        metrics=("auc", "tpr_at_fpr", "precision_at_recall", "average_precision"), fpr=0.01,
    )  # fmt: skip
    n_neg = int((~truth).sum())
    assert list(tab["bin"]) == ["[0, 0.5)", "[0.5, 1)", "[1, 3)", "[3, 10)", "[10, 30]", "all"]
    assert list(tab["n_pos"]) == [16, 0, 19, 0, 0, 16 + 19 + 4]
    assert list(tab["n_objects"]) == [1, 0, 2, 0, 0, 4]
    assert np.all(tab["n_neg"] == n_neg)
    assert tab.meta["n_pos_unbinned"] == 4 and tab.meta["binned_by"] == "snr_avg"
    assert tab["auc"][2] == 1.0 and tab["tpr_at_fpr"][2] == 1.0
    assert tab["auc"][0] == pytest.approx(float(np.mean(scores[~truth] < 0.2)))
    for i in (1, 3, 4):  # empty bins keep their row
        assert all(np.isnan(tab[m][i]) for m in ("auc", "tpr_at_fpr", "precision_at_recall"))
    # a row equals the pixel metric on that bin's positives plus all negatives
    keep = ~truth | (labels == 1)
    assert tab["precision_at_recall"][0] == pytest.approx(
        precision_at_recall(scores, truth, valid=keep)
    )
    assert tab["average_precision"][-1] == pytest.approx(average_precision(scores, truth))
    # the per-pixel property gives the same table
    per_pixel = np.select([labels == k for k in ids], snr, default=np.nan)
    tab2 = binned_table(scores, truth, bins, values=per_pixel, fpr=0.01)
    np.testing.assert_array_equal(tab2["n_pos"], tab["n_pos"])
    np.testing.assert_array_equal(tab2["auc"], tab["auc"])
    assert np.all(tab2["n_objects"] == -1)


def test_binned_table_warns_and_rejects():
    scores, truth, labels, ids, snr = _binned_scene()
    with pytest.warns(SmallSampleWarning):
        binned_table(scores, truth, {"snr": [0, 10]}, values=np.ones(scores.shape))
    with pytest.raises(InputError, match="values"):
        binned_table(scores, truth, {"snr": [0, 10]}, labels=labels)
    with pytest.raises(InputError, match="increasing"):
        binned_table(scores, truth, {"snr": [1, 0]}, values=scores)
    with pytest.raises(InputError, match="unknown metric"):
        binned_table(scores, truth, {"snr": [0, 1]}, values=scores, metrics=("f2",))


# ----------------------------------------------------------------------------- objects


def test_match_double_detection_and_miss():
    true = [(10, 10), (50, 50)]
    pred = [(11, 10), (10.5, 10)]  # both near star 0, star 1 missed
    m = match_objects(pred, true, radius=2)
    assert (m.tp, m.fp, m.fn) == (1, 1, 1)
    assert list(m.pred_index) == [1] and list(m.true_index) == [0]  # the closer one
    assert list(m.unmatched_pred) == [0] and list(m.unmatched_true) == [1]
    assert m.precision == 0.5 and m.recall == 0.5 and m.f1 == 0.5
    assert m.centroid_median_error == pytest.approx(0.5)
    assert len(m.pairs_table()) == 1 and m.summary()["fp"] == 1


def test_match_optimal_beats_greedy():
    true = [(0, 0), (3, 0)]
    pred = [(1.6, 0), (4.9, 0)]  # greedy pairs pred 0 with true 1 (1.4 < 1.6)
    opt = match_objects(pred, true, 2.0)
    greedy = match_objects(pred, true, 2.0, method="greedy")
    assert opt.tp == 2 and list(opt.true_index) == [0, 1]
    assert greedy.tp == 1 and list(greedy.true_index) == [1]


def test_match_radius_edges():
    assert match_objects([(3, 4)], [(0, 0)], 5.0).tp == 1  # distance exactly 5
    assert match_objects([(3, 4)], [(0, 0)], 4.999).tp == 0
    with pytest.raises(InputError, match="radius"):
        match_objects([(0, 0)], [(0, 0)], 0)
    with pytest.raises(InputError, match="radius"):
        match_objects([(0, 0)], [(0, 0)], -1)
    with pytest.raises(InputError, match=r"\(N, 2\)"):
        match_objects([(0, 0, 0)], [(0, 0)], 1)
    with pytest.raises(InputError, match="method"):
        match_objects([(0, 0)], [(0, 0)], 1, method="hungarian")


def test_match_empty_inputs():
    m = match_objects(np.zeros((0, 2)), [(1, 1), (2, 2)], 1)
    assert (m.tp, m.fp, m.fn, m.precision, m.recall, m.f1) == (0, 0, 2, 1.0, 0.0, 0.0)
    assert np.isnan(m.centroid_rms_error) and np.isnan(m.bias_dx)
    m = match_objects([(1, 1)], [], 1)
    assert (m.fp, m.precision, m.recall) == (1, 0.0, 1.0)
    m = match_objects([], [], 1)
    assert (m.precision, m.recall, m.f1) == (1.0, 1.0, 1.0)


def test_centroid_bias_recovered():
    gx, gy = np.meshgrid(np.arange(10, 200, 15.0), np.arange(10, 200, 15.0))
    true = np.column_stack([gx.ravel(), gy.ravel()])
    rng = np.random.default_rng(5)
    pred = true + (0.3, -0.2)
    m = match_objects(pred[rng.permutation(len(pred))], true, 1.5)
    assert m.tp == len(true) and m.fp == 0
    assert m.bias_dx == pytest.approx(0.3) and m.bias_dy == pytest.approx(-0.2)
    assert m.centroid_median_error == pytest.approx(math.hypot(0.3, 0.2))
    assert m.centroid_rms_error == pytest.approx(math.hypot(0.3, 0.2))
    noisy = match_objects(pred + rng.normal(0, 0.05, pred.shape), true, 1.5)
    assert noisy.bias_dx == pytest.approx(0.3, abs=0.02)
    assert noisy.bias_dy == pytest.approx(-0.2, abs=0.02)


def test_object_metrics_by_bin():
    true = [(10, 10), (30, 30), (50, 50), (70, 70)]
    snr = [2.0, 4.0, 20.0, 25.0]
    pred = [(10, 10.5), (50, 50), (90, 90)]  # finds stars 0 and 2, one false
    tab = object_metrics_by_bin(pred, true, 1.0, true_values=snr, bins={"snr": [0, 5, 10, 30]})
    assert list(tab["n_true"]) == [2, 0, 2, 4]
    assert list(tab["n_matched"]) == [1, 0, 1, 2]
    np.testing.assert_allclose(tab["recall"], [0.5, np.nan, 0.5, 0.5])
    assert np.isnan(tab["precision"][0]) and tab["precision"][-1] == pytest.approx(2 / 3)
    assert tab.meta["precision"] == pytest.approx(2 / 3) and tab.meta["fp"] == 1
    assert tab["centroid_median_error"][0] == pytest.approx(0.5)
    with pytest.raises(InputError, match="true_values"):
        object_metrics_by_bin(pred, true, 1.0, true_values=[1.0], bins={"snr": [0, 5]})


def test_detection_sweep_and_recall_at_precision():
    true = [(10, 10), (30, 30), (50, 50)]
    pred = [(10, 10), (30, 30), (80, 80), (50, 50)]
    score = [0.9, 0.8, 0.5, 0.3]
    sweep = detection_scores_sweep(pred, score, true, 1.0)
    np.testing.assert_allclose(sweep["threshold"], [0.9, 0.8, 0.5, 0.3])
    np.testing.assert_allclose(sweep["precision"], [1, 1, 2 / 3, 3 / 4])
    np.testing.assert_allclose(sweep["recall"], [1 / 3, 2 / 3, 2 / 3, 1])
    assert list(sweep["fp"]) == [0, 0, 1, 1]
    assert recall_at_precision(sweep, 0.95) == pytest.approx(2 / 3)
    assert recall_at_precision(sweep, 0.7) == pytest.approx(1.0)
    high = detection_scores_sweep(pred, score, true, 1.0, thresholds=[2.0])
    assert high["n_pred"][0] == 0 and high["precision"][0] == 1.0 and high["recall"][0] == 0
    with pytest.raises(InputError, match="pred_score"):
        detection_scores_sweep(pred, score[:2], true, 1.0)


# ----------------------------------------------------------------------------- plots


def test_plots_write_png(tmp_path):
    from skysift.evaluation import plots

    s, t = _staged()
    roc = roc_curve(s, t)
    pr = precision_recall_curve(s, t)
    true = np.array([(10.0, 10.0), (30.0, 20.0)])
    pred = np.array([(10.2, 10.0), (5.0, 30.0)])
    m = match_objects(pred, true, 2)
    scores, truth, labels, ids, snr = _binned_scene()
    tab = binned_table(
        scores, truth, {"snr_avg": [0, 1, 3]}, labels=labels, object_ids=ids,
        per_object_values=snr, fpr=0.01,
    )  # fmt: skip
    figs = {
        "roc.png": lambda p: plots.plot_roc({"a": roc, "b": roc[:2]}, path=p),
        "pr.png": lambda p: plots.plot_pr({"a": pr}, path=p),
        "bins.png": lambda p: plots.plot_binned({"a": tab, "b": tab}, path=p),
        "match.png": lambda p: plots.plot_matches(np.ones((40, 40)), m, pred, true, path=p),
    }
    for name, make in figs.items():
        make(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(figs)  # no temporary left
