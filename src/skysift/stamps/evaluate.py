"""Evaluation of the stamp classifier and the baseline on held-out simulated stamps.

Reports, for the CNN and the classical baseline side by side: 4-class and
2-class (SSO vs rest) accuracy, the confusion matrix, the ROC curve and AUC
of ``p_sso``, SSO completeness against rate and magnitude (the Euclid SSO
paper's Fig. 8/9), and purity at a given completeness when SSOs are rare
(abundance 1e-4, 1e-3, 1e-2 of the sources: the negatives are reweighted by
``(1 - f) / f × n_sso / n_neg``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from skysift.errors import InputError
from skysift.stamps.baseline import BaselineClassifier
from skysift.stamps.data import CLASSES, HELDOUT, paper_stamps, simulate_stamps
from skysift.stamps.model import prepare_stamps
from skysift.stamps.train import load_stamp_classifier

__all__ = [
    "RATE_BINS",
    "evaluate_stamps",
    "purity_at_abundance",
    "purity_with_negatives",
    "roc_curve",
    "summary_table",
]

#: Rate bins (arcsec/h) of the completeness curve.
RATE_BINS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
#: Magnitude bins of the completeness curve.
MAG_BINS = (19.0, 21.0, 22.0, 23.0, 24.0, 24.5, 25.0, 25.5)
#: SSO abundances (fraction of all sources) for the purity figures.
ABUNDANCES = (1e-4, 1e-3, 1e-2)
SSO = CLASSES.index("sso")


def roc_curve(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC curve and AUC (trapezoid) of a score for a binary truth.

    Returns
    -------
    fpr, tpr : ndarray
        False- and true-positive rates at every distinct threshold (descending).
    auc : float
    """
    s = np.asarray(score, float)
    y = np.asarray(positive, bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    tpr = np.r_[0.0, tp / max(y.sum(), 1)]
    fpr = np.r_[0.0, fp / max((~y).sum(), 1)]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def purity_at_abundance(
    score: np.ndarray, positive: np.ndarray, abundance: float, *, completeness: float = 0.8
) -> dict[str, float]:
    """Best purity at a completeness of at least ``completeness`` for a rare positive class.

    The negatives of the test set are reweighted so that positives make up
    ``abundance`` of the sources.

    Returns
    -------
    dict
        ``purity`` (best purity with completeness ≥ the target),
        ``completeness`` (at that threshold), ``threshold``,
        ``completeness_at_purity_0.9`` (largest completeness with purity ≥ 0.9, 0 if none).

    Raises
    ------
    InputError
        If ``abundance`` is not in (0, 1) or a class is absent.
    """
    if not 0 < abundance < 1:
        msg = f"abundance must be in (0, 1), got {abundance}"
        raise InputError(msg)
    s = np.asarray(score, float)
    y = np.asarray(positive, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        msg = "purity_at_abundance needs positives and negatives"
        raise InputError(msg)
    w_neg = (1 - abundance) / abundance * n_pos / n_neg
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct].astype(float)
    fp = np.cumsum(~y)[distinct] * w_neg
    comp = tp / n_pos
    pur = tp / np.maximum(tp + fp, 1e-300)
    ok = comp >= completeness
    if ok.any():
        k = int(np.argmax(np.where(ok, pur, -1)))
        best = {
            "purity": float(pur[k]),
            "completeness": float(comp[k]),
            "threshold": float(s[distinct][k]),
        }
    else:  # pragma: no cover - completeness 1 is always reached at the lowest threshold
        best = {"purity": 0.0, "completeness": 0.0, "threshold": float("nan")}
    hi = pur >= 0.9
    best["completeness_at_purity_0.9"] = float(comp[hi].max()) if hi.any() else 0.0
    return best


def _binned_completeness(
    values: np.ndarray, hit: np.ndarray, bins: tuple[float, ...]
) -> list[dict[str, Any]]:
    out = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = (values >= lo) & (values < hi)
        n = int(sel.sum())
        out.append(
            {
                "lo": lo,
                "hi": hi,
                "n": n,
                "completeness": float(hit[sel].mean()) if n else float("nan"),
            }
        )
    return out


def _scores(pred: np.ndarray, p_sso: np.ndarray, y: np.ndarray, truth: Table) -> dict[str, Any]:
    cm = np.zeros((len(CLASSES), len(CLASSES)), int)
    np.add.at(cm, (y, pred), 1)
    is_sso = y == SSO
    res: dict[str, Any] = {
        "accuracy_4class": float(np.mean(pred == y)),
        "accuracy_2class": float(np.mean((pred == SSO) == is_sso)),
        "confusion": cm.tolist(),
        "sso_completeness": float(np.mean(pred[is_sso] == SSO)),
    }
    fpr, tpr, auc = roc_curve(p_sso, is_sso)
    res["auc_sso"] = auc
    res["roc"] = {
        "fpr": fpr[:: max(len(fpr) // 200, 1)].tolist(),
        "tpr": tpr[:: max(len(tpr) // 200, 1)].tolist(),
    }
    hit = pred[is_sso] == SSO
    if "rate" in truth.colnames:
        res["completeness_vs_rate"] = _binned_completeness(
            np.asarray(truth["rate"])[is_sso], hit, RATE_BINS
        )
        rate = np.asarray(truth["rate"])[is_sso]
        sel = (rate >= 5) & (rate <= 10)
        res["completeness_5_10"] = float(hit[sel].mean()) if sel.any() else float("nan")
    if "mag" in truth.colnames:
        res["completeness_vs_mag"] = _binned_completeness(
            np.asarray(truth["mag"])[is_sso], hit, MAG_BINS
        )
    res["abundance"] = {f"{f:g}": purity_at_abundance(p_sso, is_sso, f) for f in ABUNDANCES}
    return res


def evaluate_stamps(
    weights: str | Path | None = None,
    n_per_class: int = 1000,
    seed: int = 12345,
    *,
    n_dithers: int | None = 3,
    settings: Any = HELDOUT,
    source: str = "wide",
    baseline: bool = True,
    stamps: tuple[np.ndarray, np.ndarray, Table] | None = None,
) -> dict[str, Any]:
    """Evaluate the CNN (and the baseline) on a held-out simulated set.

    Parameters
    ----------
    weights : str or Path, optional
        Weights file; default the shipped ones.
    n_per_class : int, optional
        Stamps per class. Default 1000.
    seed : int, optional
        Seed of the held-out set (the training seeds are 0–2). Default 12345.
    n_dithers : int or None, optional
        Dithers per stamp (1–4), None to draw them as in the settings. Default 3.
    settings : StampSettings, optional
        Ranges of the set (default :data:`~skysift.stamps.data.HELDOUT`).
    source : {"wide", "paper"}, optional
        ``"wide"``: :func:`~skysift.stamps.data.simulate_stamps`;
        ``"paper"``: :func:`~skysift.stamps.data.paper_stamps` (the
        simulator's Euclid-paper defaults; no rate/magnitude columns).
    baseline : bool, optional
        Also score the classical baseline. Default True.
    stamps : (stamps, n_channels, truth), optional
        A ready-made set instead of simulating one.

    Returns
    -------
    dict
        ``{"cnn": {...}, "baseline": {...}, "n": N, "seed", "source",
        "n_dithers", "seconds_cnn", "seconds_baseline"}``; each block has
        ``accuracy_4class``, ``accuracy_2class``, ``confusion`` (rows =
        truth, columns = prediction, order of :data:`CLASSES`),
        ``auc_sso``, ``roc``, ``sso_completeness``, ``completeness_vs_rate``,
        ``completeness_5_10``, ``completeness_vs_mag`` and ``abundance``
        (:func:`purity_at_abundance` at 1e-4, 1e-3, 1e-2).

    Raises
    ------
    InputError
        For ``n_per_class`` < 1 or an unknown ``source``.
    """
    if int(n_per_class) < 1:
        msg = f"n_per_class must be >= 1, got {n_per_class}"
        raise InputError(msg)
    n = int(n_per_class) * len(CLASSES)
    if stamps is not None:
        x, nc, truth = stamps
    elif source == "wide":
        x, nc, truth = simulate_stamps(n, seed, settings=settings, n_dithers=n_dithers)
    elif source == "paper":
        x, nc, truth = paper_stamps(n, seed, n_dithers=n_dithers or 3)
    else:
        msg = f"source must be 'wide' or 'paper', got {source!r}"
        raise InputError(msg)
    y = np.asarray(truth["label"], int)
    model = load_stamp_classifier(weights)
    t0 = time.perf_counter()
    p = model.predict_proba(prepare_stamps(x, nc))
    t_cnn = time.perf_counter() - t0
    out: dict[str, Any] = {
        "n": len(y), "seed": seed, "source": source, "n_dithers": n_dithers,
        "cnn": _scores(p.argmax(1), p[:, SSO], y, truth), "seconds_cnn": t_cnn,
    }  # fmt: skip
    if baseline:
        t0 = time.perf_counter()
        fw = np.asarray(truth["psf_fwhm"]) if "psf_fwhm" in truth.colnames else 2.5
        bt = BaselineClassifier()(x, nc, psf_fwhm=fw)
        out["seconds_baseline"] = time.perf_counter() - t0
        pred = np.asarray(bt["label"], int)
        out["baseline"] = _scores(pred, (pred == SSO).astype(float), y, truth)
    return out


def purity_with_negatives(
    weights: str | Path | None = None,
    n_negatives: int = 30000,
    seed: int = 777,
    *,
    n_dithers: int = 3,
    n_sso: int = 2000,
    completeness: float = 0.8,
    settings: Any = HELDOUT,
) -> dict[str, Any]:
    """Purity at a completeness for rare SSOs, from a large set of negatives.

    The threshold on ``p_sso`` that keeps ``completeness`` of ``n_sso``
    held-out SSOs is applied to ``n_negatives`` held-out non-SSO stamps
    (cosmic rays, galaxies, stars in equal shares). With ``k`` false
    positives the false-positive rate is ``k / n_negatives`` (95 % upper
    bound ``3 / n`` for ``k = 0``, else ``(k + 1.96 sqrt(k) + 2) / n``), and
    the purity at abundance ``f`` is ``C f / (C f + FPR (1 - f))``.

    Returns
    -------
    dict
        ``threshold``, ``completeness``, ``n_negatives``, ``false_positives``,
        ``fpr``, ``fpr_upper95``, and per abundance ``purity`` and
        ``purity_lower95``.

    Raises
    ------
    InputError
        If a count is < 1 or ``completeness`` is not in (0, 1].
    """
    if min(int(n_negatives), int(n_sso)) < 1 or not 0 < completeness <= 1:
        msg = f"need n_negatives, n_sso >= 1 and completeness in (0, 1], got {n_negatives}, {n_sso}, {completeness}"
        raise InputError(msg)
    model = load_stamp_classifier(weights)
    xs, ns, _ = simulate_stamps(
        n_sso, [seed, 0], settings=settings, n_dithers=n_dithers, kinds=("sso",)
    )
    p_pos = model.predict_proba(prepare_stamps(xs, ns))[:, SSO]
    thr = float(np.quantile(p_pos, 1 - completeness))
    comp = float(np.mean(p_pos >= thr))
    k, done, chunk = 0, 0, 3000
    neg = ("cosmic_ray", "galaxy", "star")
    while done < n_negatives:
        m = min(chunk, n_negatives - done)
        xn, nn, _ = simulate_stamps(
            m, [seed, 1, done], settings=settings, n_dithers=n_dithers, kinds=neg
        )
        k += int(np.sum(model.predict_proba(prepare_stamps(xn, nn))[:, SSO] >= thr))
        done += m
    fpr = k / n_negatives
    fpr_hi = (3.0 if k == 0 else k + 1.96 * np.sqrt(k) + 2.0) / n_negatives
    out: dict[str, Any] = {
        "threshold": thr, "completeness": comp, "n_sso": int(n_sso), "n_negatives": int(n_negatives),
        "false_positives": k, "fpr": fpr, "fpr_upper95": fpr_hi,
    }  # fmt: skip
    for f in ABUNDANCES:
        out[f"{f:g}"] = {
            "purity": comp * f / (comp * f + fpr * (1 - f)) if comp * f + fpr > 0 else float("nan"),
            "purity_lower95": comp * f / (comp * f + fpr_hi * (1 - f)),
        }
    return out


def summary_table(result: dict[str, Any]) -> Table:
    """One row per method (cnn, baseline) with the headline numbers of :func:`evaluate_stamps`."""
    rows = []
    for name in ("cnn", "baseline"):
        if name not in result:
            continue
        r = result[name]
        rows.append(
            {
                "method": name,
                "accuracy_4class": r["accuracy_4class"],
                "accuracy_2class": r["accuracy_2class"],
                "auc_sso": r["auc_sso"],
                "completeness_5_10": r.get("completeness_5_10", float("nan")),
                **{f"purity_at_c0.8_f{k}": v["purity"] for k, v in r["abundance"].items()},
            }
        )
    return Table(rows=rows)
