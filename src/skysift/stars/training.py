"""Training and evaluation recipe of the shipped star detector (``stars_unet``).

Phases (bolide report §4.1, §4.8), each a :meth:`skysift.learning.trainer.Trainer.fit`
call on batches streamed by :mod:`skysift.stars.training_data`:

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
for the learned and the classical finders side by side (it lives in
:mod:`skysift.stars.evaluation` and is re-exported here).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.table import Table

from skysift.errors import InputError
from skysift.learning.cards import card_header, save_weights_with_card
from skysift.stars.evaluation import evaluate_stars
from skysift.stars.training_data import (
    HELD_OUT_BACKGROUNDS,
    TRAIN_BACKGROUNDS,
    PreparedBackground,
    StarDataConfig,
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
    # needs torch (the learn extra): imported on use
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
    # needs torch (the learn extra): imported on use
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
    # needs torch (the learn extra): imported on use
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
            "Star segmentation (True = star) for skysift.stars.learned.UNetStarFinder: "
            "a U-Net trained on synthetic stars over real star-free night skies with captions, "
            "gradients, silhouettes, streaks, bolides, hot pixels and cosmic rays as negatives "
            "(bolide report §4.1, §4.5, §4.7)."
        ),
        "normalisation": {
            "name": "asinh_background",
            "input": "arcsinh((image - level) / rms / 2), 0 on bad pixels",
            "background": "skysift.detection.estimate_background(box_size=64), data-quality mask",
            "function": "skysift.stars.learned.normalise_image",
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
        f"# = skysift.stars.training.train_stars(seed={int(seed)})",
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

    return save_weights_with_card(model, card, out, name, _card_markdown)


def _card_markdown(card: dict[str, Any], model: Any) -> str:

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
