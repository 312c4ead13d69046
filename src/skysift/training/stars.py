"""Training and evaluation recipe of the shipped star detector (``stars_unet``).

Phases (bolide report §4.1, §4.8), each a :meth:`skysift.learning.trainer.Trainer.fit`
call on batches streamed by :mod:`skysift.training.stars_data`:

1. ``dots``: white dots (synthetic stars) on flat noisy backgrounds;
2. ``composite``: synthetic stars on real star-free backgrounds with the
   report's negatives and nuisances (captions, gradients, silhouettes,
   streaks, bolides, hot pixels, cosmic rays) and real non-sky patches.

The report's third phase (pseudo-labelled real frames, §4.8) is not part
of the recipe: :class:`StarBatchSource` takes ``extra`` (image, label)
pairs for it (e.g. from :func:`skysift.learning.trainer.pseudo_label`).

:func:`train_stars` runs the recipe (:func:`default_recipe`) and returns the
model and its card; :func:`evaluate_stars` measures object-level precision
and recall on composite full frames built on the *held-out* backgrounds,
for the learned and the classical finders side by side.
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.table import Table

from skysift.errors import InputError, NoDetectionsWarning
from skysift.training.stars_data import (
    HELD_OUT_BACKGROUNDS,
    TRAIN_BACKGROUNDS,
    PreparedBackground,
    StarDataConfig,
    composite_frame,
    prepare_background,
    render_star_patch,
)

__all__ = [
    "WEIGHTS_NAME",
    "default_recipe",
    "train_stars",
    "evaluate_stars",
    "compare_losses",
    "save_star_weights",
    "StarBatchSource",
]

#: Name of the shipped weights (``src/skysift/learning/weights/<name>.*``).
WEIGHTS_NAME = "stars_unet"
#: Object-level evaluation: match radius (px) and the SNR of the stars that count.
MATCH_RADIUS = 2.0
EVAL_SNR = 5.0
#: SNR bins (lower edge inclusive) of the per-bin recall of :func:`evaluate_stars`.
SNR_BINS = ((5.0, 7.0), (7.0, 10.0), (10.0, np.inf))


def default_recipe() -> dict[str, Any]:
    """The training recipe of the shipped weights (configuration as data, saved in the card)."""
    return {
        "model": {"name": "unet", "config": {"depth": 3, "width": 8, "block": "residual"}},
        "data": StarDataConfig().to_dict(),
        "loss": "bce+dice",
        "loss_params": {},
        "batch_size": 32,
        "phases": [
            {"name": "dots", "data": {"phase": 1}, "epochs": 2, "steps_per_epoch": 60, "lr": 2e-3},
            {
                "name": "composite",
                "data": {"phase": 2},
                "epochs": 20,
                "steps_per_epoch": 100,
                "lr": 2e-3,
                "scheduler": "plateau",
                "plateau_patience": 2,
                "early_stopping_patience": 6,
            },
        ],
        "val_steps": 8,
        "threshold": 0.5,
        # one thread: bit-reproducible, and faster than two on a shared 2-core machine
        "num_threads": 1,
    }


class StarBatchSource:
    """A batch source for :class:`~skysift.learning.trainer.Trainer`: ``source(rng, batch_size)``.

    Parameters
    ----------
    config : StarDataConfig
    backgrounds : sequence of PreparedBackground
        Training backgrounds (unused in phase 1).
    extra : list of (image, label) ndarray pairs, optional
        Pseudo-labelled real frames; when given, half of each batch are
        random crops of them (phase 3).
    """

    def __init__(
        self,
        config: StarDataConfig,
        backgrounds: list[PreparedBackground],
        extra: list[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        self.config = config
        self.backgrounds = backgrounds
        self.extra = extra or []

    def __call__(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        xs, ys = [], []
        n_extra = batch_size // 2 if self.extra else 0
        for _ in range(batch_size - n_extra):
            bg = None
            if cfg.phase != 1 and self.backgrounds:
                bg = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
            p = render_star_patch(bg, rng, cfg)
            xs.append(p.x)
            ys.append(p.label)
        s = cfg.size
        for _ in range(n_extra):
            x, lab = self.extra[int(rng.integers(len(self.extra)))]
            h, w = x.shape
            y0, x0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            xc, lc = x[y0 : y0 + s, x0 : x0 + s], lab[y0 : y0 + s, x0 : x0 + s]
            k = int(rng.integers(4))
            xc, lc = np.rot90(xc, k), np.rot90(lc, k)
            xs.append(np.ascontiguousarray(xc))
            ys.append(np.ascontiguousarray(lc))
        return (np.stack(xs)[:, None].astype(np.float32), np.stack(ys)[:, None].astype(np.float32))


def _train_config(recipe: dict[str, Any], phase: dict[str, Any], seed: int, progress: bool) -> Any:
    from skysift.learning.trainer import TrainConfig

    keys = {
        "epochs",
        "steps_per_epoch",
        "lr",
        "scheduler",
        "plateau_patience",
        "plateau_factor",
        "early_stopping_patience",
        "weight_decay",
        "cyclic_base_lr",
        "cyclic_max_lr",
    }
    kw = {k: v for k, v in phase.items() if k in keys}
    return TrainConfig(
        name=f"{WEIGHTS_NAME}:{phase['name']}",
        batch_size=int(recipe["batch_size"]),
        val_steps=int(recipe.get("val_steps", 8)),
        loss=recipe["loss"],
        loss_params=dict(recipe.get("loss_params", {})),
        seed=int(seed),
        progress=progress,
        num_threads=int(recipe.get("num_threads", 1)),
        deterministic=True,
        **kw,
    )


def _seed_model(recipe: dict[str, Any], seed: int) -> Any:
    from skysift.learning.models import build_model

    torch.manual_seed(int(seed))
    arch = recipe["model"]
    return build_model(arch["name"], **arch["config"])


def train_stars(
    config: dict[str, Any] | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    data_dir: str | Path | None = None,
    evaluate: bool = True,
    n_eval_frames: int = 9,
) -> tuple[Any, dict[str, Any]]:
    """Train the star detector with the shipped recipe (or ``config``).

    Parameters
    ----------
    config : dict, optional
        A recipe like :func:`default_recipe` (missing keys take its values).
    out : path, optional
        Folder to write ``stars_unet.safetensors``, ``.json`` (card) and
        ``.md``; nothing is written if None.
    seed : int, optional
        Seed of the initial weights, of the data stream and of the evaluation
        frames' noise. Default 0 (the shipped weights).
    progress : bool, optional
        Progress bars. Default True.
    data_dir : path, optional
        The real frames (default ``tests/data`` of the repository).
    evaluate : bool, optional
        Evaluate on the held-out composites (:func:`evaluate_stars`) and put
        the numbers in the card. Default True.
    n_eval_frames : int, optional
        Frames of that evaluation. Default 9.

    Returns
    -------
    model : torch.nn.Module
        The trained network (eval mode).
    card : dict
        Architecture, normalisation, recipe, data split, history, metrics.

    Raises
    ------
    InputError
        If the recipe is invalid or a frame cannot be read.
    """
    from skysift.learning.trainer import Trainer

    recipe = default_recipe()
    if config:
        unknown = set(config) - set(recipe)
        if unknown:
            msg = f"unknown recipe key(s) {sorted(unknown)}; valid: {sorted(recipe)}"
            raise InputError(msg)
        recipe.update(copy.deepcopy(config))
    t0 = time.perf_counter()
    backgrounds = [prepare_background(n, data_dir) for n in TRAIN_BACKGROUNDS]
    model = _seed_model(recipe, seed)
    history: list[dict[str, Any]] = []
    trainer = None
    for phase in recipe["phases"]:
        data_cfg = StarDataConfig.from_dict({**recipe["data"], **phase.get("data", {})})
        tcfg = _train_config(recipe, phase, seed, progress)
        if trainer is None:
            trainer = Trainer(model, tcfg)
        else:
            trainer.config = tcfg
        src = StarBatchSource(data_cfg, backgrounds)
        val = StarBatchSource(data_cfg, backgrounds)
        res = trainer.fit(src, val, phase=phase["name"])
        history.append(
            {
                "phase": phase["name"],
                "best_epoch": res.best_epoch,
                "best_val_loss": res.best_val_loss,
                "epochs": len(res.history),
                "seconds": round(res.seconds, 1),
            }
        )
    model.eval()
    seconds = time.perf_counter() - t0
    card: dict[str, Any] = {
        "name": WEIGHTS_NAME,
        "description": (
            "Star segmentation (True = star) for skysift.detection.learned.UNetStarFinder: "
            "a U-Net trained on synthetic stars over real star-free night skies with captions, "
            "gradients, silhouettes, streaks, bolides, hot pixels and cosmic rays as negatives "
            "(bolide report §4.1, §4.5, §4.7)."
        ),
        "normalisation": {
            "name": "asinh_background",
            "input": "arcsinh((image - level) / rms / 2), 0 on bad pixels",
            "background": "skysift.detection.estimate_background(box_size=64), data-quality mask",
            "function": "skysift.detection.learned.normalise_image",
        },
        "recipe": {
            **recipe,
            "label": "disk of radius max(1.5, 0.6 FWHM) px around injected stars of SNR >= 3",
            "data_split": {
                "train": list(TRAIN_BACKGROUNDS),
                "held_out": list(HELD_OUT_BACKGROUNDS),
            },
            "history": history,
            "training_seconds": round(seconds, 1),
            "torch": torch.__version__,
        },
        "seed": int(seed),
        "command": f"skysift train stars --seed {int(seed)}  "
        f"# = skysift.training.stars.train_stars(seed={int(seed)})",
        "metrics": {},
    }
    if evaluate:
        table = evaluate_stars(
            model, seed=1000 + int(seed), n_frames=n_eval_frames, data_dir=data_dir
        )
        card["metrics"] = {
            "held_out_composites": {
                row["detector"]: {k: _jsonable(row[k]) for k in table.colnames if k != "detector"}
                for row in table
            },
            "definition": table.meta.get("definition", ""),
        }
    if out is not None:
        save_star_weights(model, card, out)
    return model, card


def _jsonable(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float):
        return None if not np.isfinite(v) else round(v, 5)
    return v


def save_star_weights(
    model: Any, card: dict[str, Any], out: str | Path, name: str = WEIGHTS_NAME
) -> Path:
    """Write ``<out>/<name>.safetensors``, ``.json`` (the card, with sha256) and ``.md``.

    The files are written by :func:`skysift.learning.weights.save_weights`;
    the ``.md`` is then replaced by a fuller card (tables of phases, data
    split, metrics and the loss comparison).

    Returns
    -------
    Path
        The ``.safetensors`` file.
    """
    from skysift.training.common import save_weights_with_card

    return save_weights_with_card(model, card, out, name, _card_markdown)


def _card_markdown(card: dict[str, Any], model: Any) -> str:
    from skysift.training.common import card_header

    rec = card.get("recipe", {})
    lines = card_header(card, model)
    lines += [
        "## Input normalisation",
        "",
        f"{card['normalisation'].get('input')}; background: "
        f"{card['normalisation'].get('background')}.",
        "",
    ]
    lines += [
        "## Training",
        "",
        f"`{card.get('command')}`: {rec.get('training_seconds')} s on "
        f"the build machine (2 CPU cores, torch {rec.get('torch')}). Label: {rec.get('label')}.",
        "",
        "| phase | epochs | best epoch | best val loss | seconds |",
        "|---|---|---|---|---|",
    ]
    for h in rec.get("history", []):
        lines.append(
            f"| {h['phase']} | {h['epochs']} | {h['best_epoch']} | "
            f"{h['best_val_loss']:.4f} | {h['seconds']} |"
        )
    split = rec.get("data_split", {})
    lines += [
        "",
        "## Data split",
        "",
        "Training backgrounds (tests/data; star-free by morphological "
        "opening, bolide report §4.1):",
        "",
    ]
    lines += [f"- `{n}`" for n in split.get("train", [])]
    lines += ["", "Held out (evaluation only, never trained on):", ""]
    lines += [f"- `{n}`" for n in split.get("held_out", [])]
    met = card.get("metrics", {})
    if "held_out_composites" in met:
        lines += [
            "",
            "## Held-out composite frames",
            "",
            met.get("definition", ""),
            "",
            "| detector | precision | recall | f1 | recall at the other's precision | "
            "centroid rms (px) | tp | fp | fn |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for det, m in met["held_out_composites"].items():
            lines.append(
                f"| {det} | {m['precision']} | {m['recall']} | {m['f1']} | "
                f"{m['recall_at_other_precision']} | {m['centroid_rms']} | {m['tp']} | "
                f"{m['fp']} | {m['fn']} |"
            )
    if "loss_comparison" in met:
        lines += [
            "",
            "## Loss comparison (bolide report §4.5, small budget)",
            "",
            met.get("loss_comparison_definition", ""),
            "",
            "| loss | precision | recall | f1 | seconds |",
            "|---|---|---|---|---|",
        ]
        for row in met["loss_comparison"]:
            lines.append(
                f"| {row['loss']} | {row['precision']} | {row['recall']} | {row['f1']} | "
                f"{row['seconds']} |"
            )
    for key in ("real_frames", "timings", "notes"):
        if key in met:
            lines += ["", f"## {key.replace('_', ' ').capitalize()}", ""]
            val = met[key]
            lines += [f"- {v}" for v in val] if isinstance(val, list) else [str(val)]
    return "\n".join(lines) + "\n"


def _frame_counts(
    det_xy: np.ndarray, score: np.ndarray, truth: Table, thresholds: np.ndarray
) -> np.ndarray:
    """(tp, fp, fn, sum of squared centroid errors) per threshold for one frame.

    Detections matched to injected stars fainter than :data:`EVAL_SNR` are
    neither true nor false positives (ignored); unmatched detections are
    false positives; stars at or above :data:`EVAL_SNR` not matched are misses.
    """
    from skysift.evaluation.metrics import match_objects

    true_xy = np.c_[truth["x"], truth["y"]]
    bright = np.asarray(truth["snr"]) >= EVAL_SNR
    out = np.zeros((len(thresholds), 4))
    for k, th in enumerate(thresholds):
        keep = score >= th
        m = match_objects(det_xy[keep].reshape(-1, 2), true_xy, MATCH_RADIUS)
        tb = bright[m.true_index]
        tp = int(tb.sum())
        fp = int(m.fp)
        fn = int(bright.sum() - tp)
        out[k] = (tp, fp, fn, float(np.sum(m.dx[tb] ** 2 + m.dy[tb] ** 2)))
    return out


def _recall_by_snr(det_xy: np.ndarray, truth: Table) -> np.ndarray:
    """(found, total) injected stars per :data:`SNR_BINS` bin, shape (n_bins, 2), for one frame."""
    from skysift.evaluation.metrics import match_objects

    snr = np.asarray(truth["snr"])
    m = match_objects(det_xy.reshape(-1, 2), np.c_[truth["x"], truth["y"]], MATCH_RADIUS)
    found = np.zeros(len(snr), bool)
    found[m.true_index] = True
    out = np.zeros((len(SNR_BINS), 2))
    for k, (lo, hi) in enumerate(SNR_BINS):
        s = (snr >= lo) & (snr < hi)
        out[k] = (np.count_nonzero(found & s), np.count_nonzero(s))
    return out


def _bin_name(lo: float, hi: float) -> str:
    return f"recall_snr_{lo:g}_{hi:g}" if np.isfinite(hi) else f"recall_snr_{lo:g}_up"


def evaluate_stars(
    weights: Any = None,
    *,
    seed: int = 1000,
    n_frames: int = 9,
    data_dir: str | Path | None = None,
    backend: str = "auto",
    threshold: float = 0.5,
    classical_threshold: float = 3.0,
    backgrounds: tuple[str, ...] = HELD_OUT_BACKGROUNDS,
    finder_kwargs: dict[str, Any] | None = None,
    hybrid: Any = None,
    hybrid_threshold: float | None = None,
    progress: bool = False,
) -> Table:
    """Object-level precision/recall of the learned and classical finders on held-out composites.

    ``n_frames`` full frames are built on the held-out backgrounds in turn
    (:func:`~skysift.training.stars_data.composite_frame`: 600 stars, SNR
    power law from 2 to 3000, Gaussian PSF of FWHM 1.8–3.5 px, frame ``i``
    seeded ``[seed, i]``); both finders run on each with the frame's sky
    mask. A detection within :data:`MATCH_RADIUS` px of an injected star
    (one-to-one, optimal assignment) is a true positive when the star's SNR
    is >= :data:`EVAL_SNR`, ignored when fainter; other detections are false
    positives.

    Parameters
    ----------
    weights : str, path, torch.nn.Module or None
        Shipped weights name / file, or an in-memory model. Default: the shipped ones.
    seed : int, optional
    n_frames : int, optional
        Default 9 (three per held-out background).
    data_dir : path, optional
    backend : str, optional
        Learned finder backend. Default "auto".
    threshold : float, optional
        Learned finder probability cut. Default 0.5.
    classical_threshold : float, optional
        Classical finder threshold in sigma. Default 3.
    backgrounds : tuple of str, optional
        Default :data:`HELD_OUT_BACKGROUNDS`.
    finder_kwargs : dict, optional
        Other :class:`~skysift.detection.learned.UNetStarFinder` parameters.
    hybrid : str, path, torch.nn.Module or None, optional
        Also score the hybrid finder (:class:`~skysift.detection.hybrid.HybridStarFinder`)
        with these scorer weights (a shipped name, a file or an in-memory
        :class:`~skysift.learning.models.CandidateMLP`). Default none.
    hybrid_threshold : float, optional
        The hybrid finder's score cut. Default its own
        (:data:`~skysift.detection.hybrid.SCORE_THRESHOLD`).
    progress : bool, optional
        Show a progress bar over the frames. Default False.

    Returns
    -------
    astropy.table.Table
        One row per detector (``unet``, ``classical``, then ``hybrid`` if
        asked; its ``recall_at_other_precision`` is taken at the classical
        finder's precision): ``precision``,
        ``recall``, ``f1``, ``tp``, ``fp``, ``fn``, ``centroid_rms`` (px),
        ``recall_at_other_precision`` (the best recall of this detector,
        sweeping its score, at a precision >= the other detector's operating
        precision), ``recall_at_precision_95`` (the best recall of the sweep at
        precision >= 0.95, the target of issue 4), ``recall_snr_5_7``, ``recall_snr_7_10``, ``recall_snr_10_up``
        (recall of the stars in those SNR bins, :data:`SNR_BINS`), ``seconds``
        (mean per frame). ``meta["curves"]`` holds the
        PR sweeps (``threshold``, ``precision``, ``recall`` per detector) and
        ``meta["per_frame"]`` the per-frame counts.
    """
    from skysift.detection.learned import UNetStarFinder
    from skysift.detection.stars import ClassicalStarFinder

    bgs = [prepare_background(n, data_dir) for n in backgrounds]
    kw = {"backend": backend, **(finder_kwargs or {})}
    if weights is not None and not isinstance(weights, torch.nn.Module):
        kw["weights"] = weights
    if isinstance(weights, torch.nn.Module):
        kw.pop("weights", None)
        finder = UNetStarFinder.from_model(weights, threshold=threshold, **kw)
    else:
        finder = UNetStarFinder(threshold=threshold, **kw)
    sweep_threshold = min(threshold, 0.2)
    classical = ClassicalStarFinder(threshold=classical_threshold)
    th_u = np.unique(np.r_[np.linspace(0.2, 0.95, 31), threshold])
    th_c = np.unique(np.r_[np.geomspace(2.0, 200.0, 40), 0.0])
    names = ["unet", "classical"]
    hyb = None
    if hybrid_threshold is None:
        from skysift.detection.hybrid import SCORE_THRESHOLD

        hybrid_threshold = SCORE_THRESHOLD
    th_h = np.unique(np.r_[np.linspace(0.01, 0.99, 99), hybrid_threshold])
    if hybrid is not None:
        from skysift.detection.hybrid import HybridStarFinder

        hkw = {k: v for k, v in kw.items() if k != "weights"}
        if isinstance(hybrid, torch.nn.Module):
            hyb = HybridStarFinder(threshold=float(th_h[0]), **hkw)
            hyb._scorer_net = hybrid.eval()
        else:
            hyb = HybridStarFinder(threshold=float(th_h[0]), rerank_weights=hybrid, **hkw)
        hyb._net = finder._net
        if finder._net is None:
            hyb.weights = finder.weights
        names.append("hybrid")
    acc = {
        "unet": np.zeros((len(th_u), 4)),
        "classical": np.zeros((len(th_c), 4)),
        "hybrid": np.zeros((len(th_h), 4)),
    }
    secs = dict.fromkeys(names, 0.0)
    by_snr = {n: np.zeros((len(SNR_BINS), 2)) for n in names}
    per_frame = []
    frames = range(int(n_frames))
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, desc="held-out frames", unit="frame")
    for i in frames:
        bg = bgs[i % len(bgs)]
        image, truth = composite_frame(bg, np.random.default_rng([int(seed), i]))
        mask = ~bg.sky
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            t = time.perf_counter()
            prob = finder.probability(image, mask)
            secs_prob = time.perf_counter() - t
            det, prob = finder.detect_with_probability(image, mask, probability=prob)
            secs["unet"] += time.perf_counter() - t
            finder.threshold = sweep_threshold
            low, _ = finder.detect_with_probability(image, mask, probability=prob)
            finder.threshold = threshold
            t = time.perf_counter()
            cdet = classical(image, mask)
            secs["classical"] += time.perf_counter() - t
        # learned: the operating point from the finder at `threshold`; the PR curve from
        # a run at a low cut, scored by the probability near each detection
        cu = _frame_counts(np.c_[low["x"], low["y"]], _probability_at(prob, low), truth, th_u)
        k = int(np.argmin(np.abs(th_u - threshold)))
        cu[k] = _frame_counts(np.c_[det["x"], det["y"]], np.ones(len(det)), truth, np.zeros(1))[0]
        # classical score: its SNR; operating point = everything its threshold found
        cc = _frame_counts(np.c_[cdet["x"], cdet["y"]], np.asarray(cdet["snr"], float), truth, th_c)
        acc["unet"] += cu
        acc["classical"] += cc
        by_snr["unet"] += _recall_by_snr(np.c_[det["x"], det["y"]], truth)
        by_snr["classical"] += _recall_by_snr(np.c_[cdet["x"], cdet["y"]], truth)
        if hyb is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoDetectionsWarning)
                t = time.perf_counter()
                hdet, _ = hyb.detect_with_probability(image, mask, probability=prob)
                secs["hybrid"] += time.perf_counter() - t + secs_prob
            hxy = np.c_[hdet["x"], hdet["y"]]
            hscore = np.asarray(hdet["score"], float)
            acc["hybrid"] += _frame_counts(hxy, hscore, truth, th_h)
            op = hscore >= hybrid_threshold
            by_snr["hybrid"] += _recall_by_snr(hxy[op], truth)
        per_frame.append(
            {
                "frame": i,
                "background": bg.name,
                "n_true_snr5": int((np.asarray(truth["snr"]) >= EVAL_SNR).sum()),
                "unet_tp": int(cu[k, 0]),
                "unet_fp": int(cu[k, 1]),
                "classical_tp": int(cc[0, 0]),
                "classical_fp": int(cc[0, 1]),
            }
        )
    curves = {}
    ops = {}
    for name, th, op in (
        ("unet", th_u, int(np.argmin(np.abs(th_u - threshold)))),
        ("classical", th_c, 0),
        ("hybrid", th_h, int(np.argmin(np.abs(th_h - hybrid_threshold)))),
    ):
        if name not in names:
            continue
        a = acc[name]
        tp, fp, fn = a[:, 0], a[:, 1], a[:, 2]
        prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
        rec = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 1.0)
        curves[name] = {
            "threshold": th.tolist(),
            "precision": prec.tolist(),
            "recall": rec.tolist(),
        }
        ops[name] = (op, prec, rec, a)
    rows = []
    pairs = [("unet", "classical"), ("classical", "unet")]
    if hyb is not None:
        pairs.append(("hybrid", "classical"))
    for name, other in pairs:
        op, prec, rec, a = ops[name]
        p_other = ops[other][1][ops[other][0]]
        ok = prec >= p_other
        r_at = float(rec[ok].max()) if ok.any() else float("nan")
        tp, fp, fn, se = a[op]
        p, r = prec[op], rec[op]
        rows.append(
            {
                "detector": name,
                "precision": float(p),
                "recall": float(r),
                "f1": float(2 * p * r / (p + r)) if p + r > 0 else 0.0,
                "tp": int(tp),
                "fp": int(fp),
                "fn": int(fn),
                "centroid_rms": float(np.sqrt(se / tp)) if tp else float("nan"),
                "recall_at_other_precision": r_at,
                "recall_at_precision_95": (
                    float(rec[prec >= 0.95].max()) if (prec >= 0.95).any() else float("nan")
                ),
                **{
                    _bin_name(lo, hi): float(f / n) if n else float("nan")
                    for (lo, hi), (f, n) in zip(SNR_BINS, by_snr[name], strict=True)
                },
                "seconds": secs[name] / max(int(n_frames), 1),
            }
        )
    table = Table(rows=rows)
    table.meta["curves"] = curves
    table.meta["per_frame"] = per_frame
    table.meta["definition"] = (
        f"{n_frames} composite full frames on the held-out backgrounds (600 injected stars each, "
        f"SNR power law 2-3000), frame's sky mask applied; match radius {MATCH_RADIUS} px; "
        f"recall over stars with SNR >= {EVAL_SNR}; detections of fainter injected stars ignored; "
        f"learned at probability {threshold}, classical at {classical_threshold} sigma."
    )
    return table


def _probability_at(prob: np.ndarray, det: Table) -> np.ndarray:
    if len(det) == 0:
        return np.zeros(0)
    h, w = prob.shape
    ix = np.clip(np.round(np.asarray(det["x"])).astype(int), 0, w - 1)
    iy = np.clip(np.round(np.asarray(det["y"])).astype(int), 0, h - 1)
    from scipy import ndimage

    local = ndimage.maximum_filter(prob, size=3)
    return local[iy, ix].astype(float)


def compare_losses(
    losses: tuple[str, ...] = ("bce", "dice", "jaccard", "tversky", "bce+dice"),
    *,
    seed: int = 0,
    steps: int = 300,
    n_frames: int = 3,
    data_dir: str | Path | None = None,
    progress: bool = False,
) -> Table:
    """Train one small-budget model per loss (bolide report §4.5) and evaluate each.

    Each run: the default architecture, ``steps`` batches of phase 2 only
    (same seed, same data), evaluated with :func:`evaluate_stars` on
    ``n_frames`` held-out composites. Tversky uses alpha 0.3, beta 0.7
    (recall-leaning).

    Returns
    -------
    astropy.table.Table
        ``loss``, ``precision``, ``recall``, ``f1``, ``val_loss``, ``seconds``.
    """
    rows = []
    for loss in losses:
        params = {"alpha": 0.3, "beta": 0.7} if loss == "tversky" else {}
        recipe = {
            "loss": loss,
            "loss_params": params,
            "phases": [
                {
                    "name": "composite",
                    "data": {"phase": 2},
                    "epochs": max(steps // 50, 1),
                    "steps_per_epoch": 50,
                    "lr": 2e-3,
                    "early_stopping_patience": 0,
                }
            ],
        }
        t0 = time.perf_counter()
        model, card = train_stars(
            recipe, seed=seed, progress=progress, data_dir=data_dir, evaluate=False
        )
        ev = evaluate_stars(model, seed=2000 + seed, n_frames=n_frames, data_dir=data_dir)
        u = ev[ev["detector"] == "unet"][0]
        rows.append(
            {
                "loss": loss,
                "precision": round(float(u["precision"]), 4),
                "recall": round(float(u["recall"]), 4),
                "f1": round(float(u["f1"]), 4),
                "val_loss": round(float(card["recipe"]["history"][-1]["best_val_loss"]), 4),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    return Table(rows=rows)
