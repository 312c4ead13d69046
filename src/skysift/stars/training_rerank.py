"""Training of the hybrid star finder's candidate scorer (``stars_rerank``).

Candidates of :class:`skysift.stars.hybrid.HybridStarFinder` are
collected on composite frames built on the *training* backgrounds
(:func:`skysift.stars.training_data.composite_frame`, the same recipe as the
held-out evaluation frames, new seeds) and labelled by one-to-one matching to
the injected stars (2 px): a candidate matched to a star of SNR >= 3 is a
star, an unmatched one is not, and candidates matched to fainter stars are
left out. A :class:`skysift.learning.models.CandidateMLP` is fitted with
binary cross-entropy and Adam; the held-out backgrounds are used only by
:func:`skysift.stars.evaluation.evaluate_stars`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from skysift.errors import NoDetectionsWarning
from skysift.evaluation.metrics import match_objects
from skysift.learning.cards import JsonConfig, card_header, save_weights_with_card
from skysift.stars.hybrid import FEATURE_NAMES, HybridStarFinder
from skysift.stars.training_data import (
    HELD_OUT_BACKGROUNDS,
    TRAIN_BACKGROUNDS,
    composite_frame,
    prepare_background,
)

__all__ = [
    "RerankConfig",
    "collect_candidates",
    "label_candidates",
    "train_star_reranker",
    "validation_precision",
]


@dataclass(frozen=True)
class RerankConfig(JsonConfig):
    """Recipe of the candidate scorer.

    Attributes
    ----------
    n_frames : int
        Composite frames on the training backgrounds (in turn). Default 44.
    data_seed : int
        Frame ``i`` is seeded ``[data_seed, i]``. Default 5000 (the held-out
        evaluation uses 1000).
    n_val_frames, val_seed : int
        Validation composites on the training backgrounds (new seeds), used
        only to report the precision per score cut, from which the finder's
        default cut is chosen. Defaults 22, 7000.
    label_snr : float
        Lowest injected SNR of a positive candidate. Default 3.
    width, depth : int
        MLP hidden units and layers. Defaults 32, 2.
    steps, batch : int
        Adam steps and batch size. Defaults 3000, 512.
    lr, weight_decay : float
        Defaults 3e-3, 1e-4.
    """

    _label = "reranker"
    n_frames: int = 44
    data_seed: int = 5000
    n_val_frames: int = 22
    val_seed: int = 7000
    label_snr: float = 3.0
    width: int = 32
    depth: int = 2
    steps: int = 3000
    batch: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-4


def label_candidates(
    x: np.ndarray, y: np.ndarray, truth_xy: np.ndarray, truth_snr: np.ndarray, label_snr: float
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (1 star, 0 not) and use flags of candidates, both shape (N,).

    One-to-one matching within 2 px (:func:`skysift.evaluation.metrics.match_objects`);
    a candidate matched to a star fainter than ``label_snr`` is not used.
    """
    # needs torch (the learn extra): imported on use
    from skysift.stars.evaluation import MATCH_RADIUS

    m = match_objects(np.c_[x, y].reshape(-1, 2), truth_xy, MATCH_RADIUS)
    label = np.zeros(len(x), np.float32)
    use = np.ones(len(x), bool)
    label[m.pred_index] = 1.0
    use[m.pred_index[truth_snr[m.true_index] < label_snr]] = False
    return label, use


def collect_candidates(
    backgrounds: tuple[str, ...],
    n_frames: int,
    seed: int,
    *,
    label_snr: float = 3.0,
    data_dir: str | Path | None = None,
    finder: Any = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of the hybrid finder's candidates on composite frames.

    Returns
    -------
    features : ndarray, shape (N, len(FEATURE_NAMES)), float32
    labels : ndarray, shape (N,), float32
    """

    bgs = [prepare_background(n, data_dir) for n in backgrounds]
    finder = finder or HybridStarFinder()
    feats, labels = [], []
    it = range(int(n_frames))
    if progress:
        it = tqdm(it, desc="candidates", unit="frame")
    for i in it:
        bg = bgs[i % len(bgs)]
        image, truth = composite_frame(bg, np.random.default_rng([int(seed), i]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            x, y, f, _ = finder.candidates(image, ~bg.sky)
        lab, use = label_candidates(
            x,
            y,
            np.c_[truth["x"], truth["y"]],
            np.asarray(truth["snr"], float),
            label_snr,
        )
        feats.append(f[use])
        labels.append(lab[use])
    return np.concatenate(feats), np.concatenate(labels)


def validation_precision(
    model: Any,
    config: RerankConfig | None = None,
    *,
    data_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Precision and candidate recall of a scorer per score cut on validation composites.

    The composites are built on the *training* backgrounds with the
    validation seeds of ``config`` (never the held-out backgrounds);
    candidates matched to stars fainter than SNR 5 are left out, as in the
    held-out evaluation. The default cut of the finder
    (:data:`skysift.stars.hybrid.SCORE_THRESHOLD`) is the lowest cut here
    with precision >= 0.95 (``suggested_threshold``).

    Returns
    -------
    dict
        ``threshold``, ``precision``, ``recall`` (lists; recall over the
        matched candidates), ``suggested_threshold`` (float or None),
        ``frames``, ``seed``.
    """
    # torch is the optional learn extra: imported on use
    import torch

    cfg = config or RerankConfig()
    feats, labels = collect_candidates(
        TRAIN_BACKGROUNDS,
        cfg.n_val_frames,
        cfg.val_seed,
        label_snr=5.0,
        data_dir=data_dir,
        progress=progress,
    )
    with torch.no_grad():
        score = model.predict(feats)[:, 0].numpy()
    cuts = [round(0.1 * k, 1) for k in range(1, 10)]
    prec, rec = [], []
    for c in cuts:
        keep = score >= c
        tp = float(np.sum(keep & (labels == 1)))
        fp = float(np.sum(keep & (labels == 0)))
        prec.append(round(tp / (tp + fp), 5) if tp + fp else 1.0)
        rec.append(round(tp / max(float(labels.sum()), 1.0), 5))
    ok = [c for c, p in zip(cuts, prec, strict=True) if p >= 0.95]
    return {
        "threshold": cuts,
        "precision": prec,
        "recall": rec,
        "suggested_threshold": ok[0] if ok else None,
        "frames": int(cfg.n_val_frames),
        "seed": int(cfg.val_seed),
    }


def train_star_reranker(
    config: RerankConfig | dict[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    evaluate: bool = True,
    n_eval_frames: int = 9,
    progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Fit the candidate scorer; with ``out``, save it as ``stars_rerank`` with its card.

    Parameters
    ----------
    config : RerankConfig or dict, optional
    out : path, optional
        Folder for ``stars_rerank.safetensors``, ``.json`` and ``.md``.
    seed : int, optional
        Torch seed (initial weights, batch order). Default 0.
    data_dir : path, optional
        Folder of the background frames (default the test data).
    evaluate : bool, optional
        Score the held-out composites (:func:`evaluate_stars`) into the card. Default True.
    n_eval_frames : int, optional
        Default 9.
    progress : bool, optional

    Returns
    -------
    model : CandidateMLP
    card : dict
    """
    # torch is the optional learn extra: imported on use
    import torch

    # needs torch (the learn extra): imported on use
    from skysift.learning.models import CandidateMLP

    cfg = config if isinstance(config, RerankConfig) else RerankConfig.from_dict(dict(config or {}))
    t0 = time.perf_counter()
    feats, labels = collect_candidates(
        TRAIN_BACKGROUNDS,
        cfg.n_frames,
        cfg.data_seed,
        label_snr=cfg.label_snr,
        data_dir=data_dir,
        progress=progress,
    )
    t_data = time.perf_counter() - t0
    torch.manual_seed(int(seed))
    gen = torch.Generator().manual_seed(int(seed))
    model = CandidateMLP(len(FEATURE_NAMES), width=cfg.width, depth=cfg.depth)
    model.set_standardisation(feats.mean(0), feats.std(0))
    xt = torch.from_numpy(feats)
    yt = torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    losses = []
    for _ in range(int(cfg.steps)):
        idx = torch.randint(0, len(yt), (int(cfg.batch),), generator=gen)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xt[idx])[:, 0], yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    validation = validation_precision(model, cfg, data_dir=data_dir, progress=progress)
    card: dict[str, Any] = {
        "description": (
            "Candidate scorer of the hybrid star finder (skysift.stars.hybrid): "
            "matched-filter and U-Net candidates -> probability of a real star."
        ),
        "normalisation": {
            "name": "features",
            "input": list(FEATURE_NAMES),
            "function": "skysift.stars.hybrid.candidate_features",
            "standardisation": "mean/scale buffers of the model (training-set statistics)",
        },
        "recipe": {
            **cfg.to_dict(),
            "backgrounds": {
                "train": list(TRAIN_BACKGROUNDS),
                "held_out": list(HELD_OUT_BACKGROUNDS),
            },
            "candidates": int(len(labels)),
            "positives": int(labels.sum()),
            "final_loss_mean_last_100": float(np.mean(losses[-100:])),
            "seconds_data": round(t_data, 1),
            "seconds_total": round(time.perf_counter() - t0, 1),
        },
        "seed": int(seed),
        "command": f"skysift train stars-rerank --seed {int(seed)}",
        "metrics": {"validation": validation},
    }
    if evaluate:
        # needs torch (the learn extra): imported on use
        from skysift.stars.evaluation import evaluate_stars

        table = evaluate_stars(
            n_frames=n_eval_frames, data_dir=data_dir, hybrid=model, progress=progress
        )
        card["metrics"]["held_out_composites"] = {
            str(r["detector"]): {
                k: round(float(r[k]), 5)
                for k in table.colnames
                if k != "detector" and np.isfinite(float(r[k]))
            }
            for r in table
        }
    if out is not None:
        save_weights_with_card(model, card, out, "stars_rerank", _markdown)
    return model, card


def _markdown(card: dict[str, Any], model: Any) -> str:

    lines = card_header(card, model)
    rec = card.get("recipe", {})
    lines += [
        "",
        "## Training data",
        "",
        f"{rec.get('n_frames')} composite frames on the training backgrounds (seed "
        f"[{rec.get('data_seed')}, i]): {rec.get('candidates')} candidates, "
        f"{rec.get('positives')} matched to injected stars of SNR >= {rec.get('label_snr')}.",
        f"Backgrounds: {', '.join(rec.get('backgrounds', {}).get('train', []))}.",
        f"Held out (evaluation only): {', '.join(rec.get('backgrounds', {}).get('held_out', []))}.",
        "",
        "## Recipe",
        "",
        f"Adam, lr {rec.get('lr')}, weight decay {rec.get('weight_decay')}, {rec.get('steps')} steps "
        f"of {rec.get('batch')} candidates, binary cross-entropy; seed {card.get('seed')}. "
        f"Time: {rec.get('seconds_total')} s on 2 CPU cores.",
        "",
        f"Reproduce: `{card.get('command')}`",
        "",
        "## Validation (training backgrounds, new seeds): the default score cut",
        "",
    ]
    val = card.get("metrics", {}).get("validation", {})
    if val:
        lines += [
            f"{val.get('frames')} composites on the training backgrounds (seed [{val.get('seed')}, i]), "
            "candidates matched to stars of SNR < 5 left out. Suggested cut (lowest with "
            f"precision >= 0.95): {val.get('suggested_threshold')}.",
            "",
            "| score cut | precision | candidate recall |",
            "|---|---|---|",
        ]
        for c, p_, r_ in zip(val["threshold"], val["precision"], val["recall"], strict=True):
            lines.append(f"| {c} | {p_:.4f} | {r_:.4f} |")
        lines.append("")
    lines += [
        "## Held-out metrics",
        "",
        "| detector | precision | recall | R SNR 5-7 | R SNR 7-10 | R SNR >= 10 | best R at P >= 0.95 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in card.get("metrics", {}).get("held_out_composites", {}).items():
        lines.append(
            f"| {name} | {m.get('precision', float('nan')):.3f} | {m.get('recall', float('nan')):.3f} | "
            f"{m.get('recall_snr_5_7', float('nan')):.3f} | {m.get('recall_snr_7_10', float('nan')):.3f} | "
            f"{m.get('recall_snr_10_up', float('nan')):.3f} | "
            f"{m.get('recall_at_precision_95', float('nan')):.3f} |"
        )
    return "\n".join(lines) + "\n"
