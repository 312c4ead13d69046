"""Benchmark of the streak detectors: Table 1 of the Unistellar satellite-streak paper.

:func:`evaluate_streaks` builds held-out composite sets on real backgrounds
never used in training (:data:`~skysift.streaks.training_data.STREAK_HELD_OUT_BACKGROUNDS`)
and measures, on the same pixels for every method:

- the **segmenters** (the learned U-Net, the classical baseline, and the
  Hough baseline when asked for): pixel-level AUC, TPR at a false-positive
  rate of 1e-5 (0.001 %) and precision at 90 % recall, over all streak
  pixels and in bins of SNR_avg ([0, 0.5], [0.5, 1], [1, 3], [3, 10],
  [10, 30]), SNR_tot, in-frame streak length, number of stars in the frame
  and PSF FWHM (each bin's positives against all negative pixels, §4.2
  and Table 1);
- the **image classifier**: ROC over cutouts, TPR at 1 % FPR over all
  streak cutouts and over those whose streak lies fully inside the cutout
  (§4.1.1);
- optionally the segmenter's **speed/accuracy trade-off** over window steps.

:func:`write_evaluation` writes the ECSV tables and the ROC / PR figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from astropy.table import Table, vstack
from tqdm.auto import tqdm

from skysift.errors import InputError
from skysift.evaluation.metrics import (
    binned_table,
    precision_recall_curve,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from skysift.evaluation.plots import plot_pr, plot_roc
from skysift.outputs.files import write_table
from skysift.streaks.detection import ClassicalStreakFinder
from skysift.streaks.hough import HoughStreakFinder
from skysift.streaks.learned import StreakImageClassifier, StreakSegmenter
from skysift.streaks.pipeline import RadonPipelineFinder
from skysift.streaks.radon import RadonStreakFinder
from skysift.streaks.training_data import (
    STREAK_HELD_OUT_BACKGROUNDS,
    StreakCutout,
    StreakDataConfig,
    composite_cutout,
    eval_cutouts,
    load_backgrounds,
)

__all__ = [
    "TABLE1_BINS",
    "EVAL_SNR_AVG_RANGE",
    "StreakEvaluation",
    "segmentation_table",
    "classifier_table",
    "evaluate_streaks",
    "write_evaluation",
    "format_table1",
    "card_metrics",
]

#: SNR_avg range of the held-out streaks (log-uniform): spans the paper's bins.
EVAL_SNR_AVG_RANGE: tuple[float, float] = (0.2, 30.0)

#: Bins of Table 1 (property -> edges); positives outside the edges only count in "all".
TABLE1_BINS: dict[str, list[float]] = {
    "snr_avg": [0.0, 0.5, 1.0, 3.0, 10.0, 30.0],
    "snr_tot": [0.0, 30.0, 100.0, 300.0, 1000.0, 1e5],
    "length": [0.0, 50.0, 100.0, 200.0, 400.0, 800.0],
    "n_stars": [0.0, 30.0, 100.0, 300.0, 1e4],
    "fwhm": [1.5, 2.5, 3.5, 4.5],
}


@dataclass
class StreakEvaluation:
    """Results of :func:`evaluate_streaks`.

    Attributes
    ----------
    table1 : astropy.table.Table
        One row per (method, property, bin): ``method``, ``property``,
        ``bin``, ``n_pos``, ``n_objects``, ``auc``, ``tpr_at_fpr``,
        ``precision_at_recall``; the ``"all"`` rows hold every streak pixel.
    classifier : astropy.table.Table or None
        One row per subset (``all``, ``inside``, and SNR_avg bins): ``subset``,
        ``n_pos``, ``n_neg``, ``auc``, ``tpr_at_1pct_fpr``.
    steps : astropy.table.Table or None
        Segmenter step trade-off: ``step`` (0 = whole image), ``n_windows``
        and ``seconds`` on a 1032x768 frame, ``auc``, ``tpr_at_fpr``,
        ``precision_at_recall``.
    curves : dict
        ``"roc"``/``"pr"``: ``{method: (x, y)}`` of the segmenters (all
        pixels); ``"classifier_roc"``: ``{subset: (fpr, tpr)}``.
    meta : dict
        Definition of the sets (seeds, sizes, backgrounds, operating points).
    """

    table1: Table
    classifier: Table | None = None
    steps: Table | None = None
    curves: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def _stack(frames: list[StreakCutout], maps: list[np.ndarray]) -> dict[str, np.ndarray]:
    scores = np.concatenate([np.asarray(m, np.float32).ravel() for m in maps])
    labels = np.concatenate(
        [f.mask.ravel().astype(np.int32) * (k + 1) for k, f in enumerate(frames)]
    )
    return {"scores": np.nan_to_num(scores, nan=0.0), "labels": labels, "truth": labels > 0}


def _object_properties(frames: list[StreakCutout]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    ids = np.array([k + 1 for k, f in enumerate(frames) if f.truth["has_streak"]], int)
    props = {
        name: np.array([float(f.truth.get(name, np.nan)) for f in frames if f.truth["has_streak"]])
        for name in TABLE1_BINS
    }
    return ids, props


def segmentation_table(
    frames: list[StreakCutout],
    maps: dict[str, list[np.ndarray]],
    *,
    fpr: float = 1e-5,
    recall: float = 0.9,
    bins: dict[str, list[float]] | None = None,
) -> tuple[Table, dict[str, Any]]:
    """Table 1: pixel metrics of each method, overall and per bin of the streak properties.

    Parameters
    ----------
    frames : list of StreakCutout
        The held-out frames with their truth masks and properties.
    maps : dict {str: list of ndarray}
        Per method, one score map per frame (same shapes as the frames).
    fpr, recall : float, optional
        Operating points. Defaults 1e-5 and 0.9.
    bins : dict, optional
        Default :data:`TABLE1_BINS`.

    Returns
    -------
    table : astropy.table.Table
        See :attr:`StreakEvaluation.table1`.
    curves : dict
        ``{"roc": {method: (fpr, tpr)}, "pr": {method: (precision, recall)}}``.

    Raises
    ------
    InputError
        If a method has a different number of maps than frames, or no frame
        has a streak.
    """

    bins = bins or TABLE1_BINS
    ids, props = _object_properties(frames)
    if ids.size == 0:
        msg = "the evaluation frames hold no streak"
        raise InputError(msg)
    rows = []
    curves: dict[str, Any] = {"roc": {}, "pr": {}}
    for method, mlist in maps.items():
        if len(mlist) != len(frames):
            msg = f"method {method!r} has {len(mlist)} score maps for {len(frames)} frames"
            raise InputError(msg)
        s = _stack(frames, mlist)
        f, t, _ = roc_curve(s["scores"], s["truth"], max_points=4096)
        p, r, _ = precision_recall_curve(s["scores"], s["truth"], max_points=4096)
        curves["roc"][method], curves["pr"][method] = (f, t), (p, r)
        for k, (name, edges) in enumerate(bins.items()):
            tab = binned_table(
                s["scores"],
                s["truth"],
                {name: edges},
                labels=s["labels"],
                object_ids=ids,
                per_object_values=props[name],
                fpr=fpr,
                recall=recall,
                total=k == 0,
            )
            for row in tab:
                rows.append(
                    {
                        "method": method,
                        "property": "all" if row["bin"] == "all" else name,
                        "bin": str(row["bin"]),
                        "n_pos": int(row["n_pos"]),
                        "n_objects": int(row["n_objects"]),
                        "auc": float(row["auc"]),
                        "tpr_at_fpr": float(row["tpr_at_fpr"]),
                        "precision_at_recall": float(row["precision_at_recall"]),
                    }
                )
    # the "all" rows first, per method
    rows.sort(key=lambda r: (list(maps).index(r["method"]), r["property"] != "all"))
    table = Table(rows=rows)
    table.meta.update(fpr=fpr, recall=recall, bins={k: list(v) for k, v in bins.items()})
    return table, curves


def classifier_table(
    cutouts: list[StreakCutout], scores: np.ndarray, *, fpr: float = 0.01
) -> tuple[Table, dict[str, Any]]:
    """Classifier ROC metrics: all streak cutouts, those fully inside, and SNR_avg bins.

    Parameters
    ----------
    cutouts : list of StreakCutout
    scores : ndarray, shape (N,)
        Image score of each cutout.
    fpr : float, optional
        Operating false-positive rate. Default 0.01 (§4.1.1).

    Returns
    -------
    table : astropy.table.Table
        ``subset``, ``n_pos``, ``n_neg``, ``auc``, ``tpr_at_1pct_fpr``.
    curves : dict
        ``{subset: (fpr, tpr)}`` for ``all`` and ``inside``.
    """

    s = np.asarray(scores, float)
    pos = np.array([c.truth["has_streak"] for c in cutouts])
    inside = np.array([bool(c.truth.get("inside", False)) for c in cutouts])
    snr = np.array([float(c.truth.get("snr_avg", np.nan)) for c in cutouts])
    subsets = {"all": pos, "inside": pos & inside, "crossing the border": pos & ~inside}
    edges = TABLE1_BINS["snr_avg"]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        subsets[f"snr_avg [{lo:g}, {hi:g})"] = pos & (snr >= lo) & (snr < hi)
    rows, curves = [], {}
    for name, sel in subsets.items():
        valid = sel | ~pos
        if not sel.any():
            continue
        rows.append(
            {
                "subset": name,
                "n_pos": int(sel.sum()),
                "n_neg": int((~pos).sum()),
                "auc": roc_auc(s, pos, valid=valid),
                "tpr_at_1pct_fpr": tpr_at_fpr(s, pos, fpr, valid=valid),
            }
        )
        if name in ("all", "inside"):
            f, t, _ = roc_curve(s, pos, valid=valid)
            curves[name] = (f, t)
    table = Table(rows=rows)
    table.meta["fpr"] = fpr
    return table, curves


def _resolve(obj: Any, cls: type, **kw: Any) -> Any:
    # torch is the optional learn extra: imported on use
    import torch

    if obj is None or isinstance(obj, str | Path):
        return cls(**({"weights": str(obj)} if obj is not None else {}), **kw)
    if isinstance(obj, torch.nn.Module):
        return cls(weights=obj, **kw)
    return obj


def _frame_1032(data_dir: str | Path | None) -> np.ndarray:
    """A 768x1032 held-out frame with a streak, for timings."""

    bg = load_backgrounds((STREAK_HELD_OUT_BACKGROUNDS[0],), data_dir)[0]
    cfg = StreakDataConfig(size=768, edge_fraction=0.0, sky_fraction=0.0)
    c = composite_cutout(bg, np.random.default_rng(7), cfg, streak=True)
    img = np.asarray(bg.image[:768, :1032], np.float32).copy()
    img[:, :768] = c.image
    return img


def radon_score_map(image: np.ndarray) -> np.ndarray:
    """Per-pixel score of the Radon matched filter: the significance of every line, painted.

    The PSF FWHM is measured on the image as ``skysift streaks --method radon``
    does (:class:`~skysift.streaks.pipeline.RadonPipelineFinder`), not taken
    from the truth; every line is scored (threshold 0), so the ROC spans all
    operating points.
    """
    fwhm = RadonPipelineFinder()._psf_fwhm(image, None)
    res = RadonStreakFinder(psf_fwhm=fwhm, threshold_sigma=0.0, significance_map=True)(image)
    sig = res.significance_map
    return np.zeros(image.shape, np.float32) if sig is None else sig


def evaluate_streaks(
    *,
    classifier: Any = None,
    segmenter: Any = None,
    n_frames: int = 48,
    frame_size: int = 512,
    n_cutouts: int = 2000,
    seed: int = 1000,
    steps: tuple[int, ...] = (),
    n_step_frames: int = 16,
    hough: bool = False,
    radon: bool = True,
    data_dir: str | Path | None = None,
    progress: bool = False,
) -> StreakEvaluation:
    """Benchmark the learned streak detectors and the baselines on held-out composites.

    Segmentation set: ``n_frames`` crops of ``frame_size`` pixels of the
    held-out backgrounds (frame ``k`` from ``default_rng([seed, k])``); 3 in 4
    hold one streak with SNR_avg log-uniform in :data:`EVAL_SNR_AVG_RANGE`,
    length log-uniform 20-800 px (may cross the border), Gaussian PSF of FWHM
    1.5-4.5 px and at least 100 mask pixels. The segmenter runs on every frame
    (as in Table 1, not only on the classifier's flags). Classifier set:
    ``n_cutouts`` 128x128 cutouts (``default_rng([seed + 1, k])``), half with
    a streak, drawn the same way.

    Parameters
    ----------
    classifier, segmenter : detector, torch.nn.Module, weights name/path or None
        A :class:`~skysift.streaks.learned.StreakImageClassifier` /
        :class:`~skysift.streaks.learned.StreakSegmenter`, a model
        or weights to wrap, or None for the shipped weights.
    n_frames, frame_size, n_cutouts, seed : optional
        Sizes and seed of the held-out sets. Defaults 48, 512, 2000, 1000.
    steps : tuple of int, optional
        Window steps of the trade-off table (0 = whole image); measured on the
        first ``n_step_frames`` frames, timed on one 768x1032 frame. Default
        none.
    hough : bool, optional
        Add the Hough line baseline (:mod:`skysift.streaks.hough`). Default False.
    radon : bool, optional
        Add the Radon matched filter (:func:`radon_score_map`; Nir, Ofek &
        Gal-Yam 2018). Default True.
    data_dir : path, optional
        Folder of the real frames (default ``tests/data``).
    progress : bool, optional
        Progress bars. Default False.

    Returns
    -------
    StreakEvaluation

    Raises
    ------
    InputError
        If a background frame is missing or weights cannot be loaded.
    """

    clf = _resolve(classifier, StreakImageClassifier)
    seg = _resolve(segmenter, StreakSegmenter)
    seg_cfg = StreakDataConfig(
        size=int(frame_size), p_streak=0.75, snr_avg_range=EVAL_SNR_AVG_RANGE, augment=False
    )
    frames = eval_cutouts(int(n_frames), seg_cfg, seed=int(seed), data_dir=data_dir)
    methods: dict[str, Any] = {"segmenter": seg, "classical": ClassicalStreakFinder().score_map}
    if hough:
        methods["hough"] = HoughStreakFinder().score_map
    if radon:
        methods["radon"] = radon_score_map
    maps: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    seconds: dict[str, float] = dict.fromkeys(methods, 0.0)
    for f in tqdm(frames, desc="segmentation frames", disable=not progress):
        for name, fn in methods.items():
            t = time.perf_counter()
            maps[name].append(fn(f.image))
            seconds[name] += time.perf_counter() - t
    table1, curves = segmentation_table(frames, maps)
    table1.meta["seconds_per_frame"] = {k: v / max(len(frames), 1) for k, v in seconds.items()}

    cls_cfg = StreakDataConfig(
        size=128, p_streak=0.5, snr_avg_range=EVAL_SNR_AVG_RANGE, augment=False
    )
    cutouts = eval_cutouts(
        int(n_cutouts), cls_cfg, seed=int(seed) + 1, data_dir=data_dir, count_stars=False
    )
    scores = clf.score_windows(np.stack([c.image for c in cutouts]))
    ctable, ccurves = classifier_table(cutouts, scores)
    curves["classifier_roc"] = ccurves

    step_table = None
    if steps:
        step_table = _step_table(seg, frames[: int(n_step_frames)], steps, data_dir)
    meta = {
        "held_out_backgrounds": list(STREAK_HELD_OUT_BACKGROUNDS),
        "segmentation_set": f"{n_frames} frames of {frame_size}x{frame_size} px, seed {seed}, "
        f"{sum(f.truth['has_streak'] for f in frames)} with a streak",
        "classifier_set": f"{n_cutouts} cutouts of 128x128 px, seed {seed + 1}, half with a streak",
        "snr_avg_range": list(EVAL_SNR_AVG_RANGE),
        "segmenter_step": getattr(seg, "step", None),
        "segmenter_mode": getattr(seg, "mode", None),
    }
    return StreakEvaluation(
        table1=table1, classifier=ctable, steps=step_table, curves=curves, meta=meta
    )


def _step_table(
    seg: Any, frames: list[StreakCutout], steps: tuple[int, ...], data_dir: Any
) -> Table:
    big = _frame_1032(data_dir)
    rows = []
    for step in steps:
        kw = {"mode": "whole"} if step == 0 else {"step": int(step)}
        s = seg.replace(**kw)
        t = time.perf_counter()
        s(big)
        secs = time.perf_counter() - t
        maps = {"segmenter": [s(f.image) for f in frames]}
        tab, _ = segmentation_table(frames, maps, bins={"snr_avg": TABLE1_BINS["snr_avg"]})
        all_row = tab[tab["property"] == "all"][0]
        low = tab[(tab["property"] == "snr_avg") & (tab["bin"] == "[0, 0.5)")]
        rows.append(
            {
                "step": int(step),
                "n_windows": s.n_windows(big.shape),
                "seconds_1032x768": secs,
                "auc": float(all_row["auc"]),
                "tpr_at_fpr": float(all_row["tpr_at_fpr"]),
                "tpr_at_fpr_snr_avg_lt_0.5": float(low["tpr_at_fpr"][0]) if len(low) else np.nan,
                "precision_at_recall": float(all_row["precision_at_recall"]),
            }
        )
    t = Table(rows=rows)
    t.meta["note"] = f"metrics on {len(frames)} held-out frames; step 0 = whole-image mode"
    return t


def format_table1(table: Table) -> str:
    """Table 1 as aligned text, methods side by side (AUC / TPR@FPR / precision@recall)."""
    methods = list(dict.fromkeys(table["method"]))
    keys = list(dict.fromkeys(zip(table["property"], table["bin"], strict=True)))
    fpr = table.meta.get("fpr", 1e-5)
    rec = table.meta.get("recall", 0.9)
    head = f"{'property':<9} {'bin':<14} {'n_obj':>5}"
    for m in methods:
        head += f" | {m[:10]:>10}: AUC  TPR@{fpr:g}  P@{rec:g}R"
    lines = [head, "-" * len(head)]
    for prop, b in keys:
        sub = table[(table["property"] == prop) & (table["bin"] == b)]
        n_obj = int(sub["n_objects"][0]) if len(sub) else 0
        line = f"{prop:<9} {b:<14} {n_obj:>5}"
        for m in methods:
            r = sub[sub["method"] == m]
            if len(r):
                line += (
                    f" | {'':>10}  {r['auc'][0]:.4f}  {r['tpr_at_fpr'][0]:8.3f}  "
                    f"{r['precision_at_recall'][0]:7.3f}"
                )
        lines.append(line)
    return "\n".join(lines)


def write_evaluation(report: StreakEvaluation, out: str | Path) -> list[Path]:
    """Write ``streaks_table1.ecsv``, ``streaks_classifier.ecsv``, ``streaks_steps.ecsv``
    and the figures ``streaks_roc.png``, ``streaks_pr.png``, ``streaks_classifier_roc.png``.

    Returns
    -------
    list of Path
        The files written (atomically).
    """

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_table(_plain_meta(report.table1), out / "streaks_table1.ecsv")]
    if report.classifier is not None:
        paths.append(write_table(report.classifier, out / "streaks_classifier.ecsv"))
    if report.steps is not None:
        paths.append(write_table(report.steps, out / "streaks_steps.ecsv"))

    matplotlib.use("Agg", force=False)

    figs = []
    if report.curves.get("roc"):
        p = out / "streaks_roc.png"
        figs.append(plot_roc(report.curves["roc"], path=p, title="streak pixels, held out"))
        paths.append(p)
        p = out / "streaks_pr.png"
        pr = {k: (v[0], v[1]) for k, v in report.curves["pr"].items()}
        figs.append(plot_pr(pr, path=p, title="streak pixels, held out"))
        paths.append(p)
    if report.curves.get("classifier_roc"):
        p = out / "streaks_classifier_roc.png"
        figs.append(
            plot_roc(
                report.curves["classifier_roc"],
                path=p,
                fpr_min=1e-4,
                mark_fpr=0.01,
                title="image classifier, 128x128 cutouts",
            )
        )
        paths.append(p)
    for f in figs:
        plt.close(f)
    return paths


def _plain_meta(table: Table) -> Table:
    t = table.copy()
    t.meta = {k: v for k, v in table.meta.items() if k != "curves"}
    return t


def card_metrics(report: StreakEvaluation, name: str) -> dict[str, Any]:
    """Headline numbers of ``report`` for the model card of ``name``."""

    def rows(table: Table, cols: list[str]) -> list[dict[str, Any]]:
        out = []
        for r in table:
            d = {}
            for c in cols:
                v = r[c]
                v = v.item() if hasattr(v, "item") else v
                d[c] = round(v, 4) if isinstance(v, float) else v
            out.append(d)
        return out

    meta = {k: v for k, v in report.meta.items()}
    if name == "streak_classifier" and report.classifier is not None:
        return {
            "definition": meta,
            "classifier": rows(report.classifier, list(report.classifier.colnames)),
        }
    t = report.table1
    return {
        "definition": meta,
        "table1": rows(
            vstack([t[t["property"] == "all"], t[t["property"] == "snr_avg"]]), list(t.colnames)
        ),
    }
