"""Training recipe of the shipped streak detectors (``streak_classifier``, ``streak_segmenter``).

Both nets follow the Unistellar satellite-streak paper and train on
composite cutouts streamed by :mod:`skysift.streaks.training_data`
(synthetic streaks on real skies, balanced positives and negatives):

- the image classifier (§3.1, :class:`skysift.learning.models.StreakClassifier`):
  128x128 cutouts, positives with >= 100 truth-mask pixels, binary
  cross-entropy;
- the segmenter (§3.2): a Cosmic-CoNN-style U-Net (the layers of
  :class:`skysift.learning.models.CosmicConnUNet`: plain double-conv blocks,
  group norm, max-pooling, transposed convolutions; built as
  :class:`skysift.learning.models.UNet` to use a leaky ReLU, see
  :func:`default_recipe`), narrowed to 8 channels for 2-core CPUs, with
  per-pixel binary cross-entropy on 256x256 cutouts, after a first phase on
  128x128 cutouts (4x more cutouts per second; the net is fully convolutional).

:func:`train_streaks` runs the recipe (:func:`default_recipe`) and writes
the weights with their model cards; the held-out metrics are measured by
:func:`skysift.streaks.evaluation.evaluate_streaks` and written into the
cards when ``evaluate`` is set.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch

from skysift.errors import InputError
from skysift.learning.cards import card_header, save_weights_with_card
from skysift.streaks.evaluation import card_metrics, evaluate_streaks
from skysift.streaks.training_data import (
    STREAK_HELD_OUT_BACKGROUNDS,
    STREAK_TRAIN_BACKGROUNDS,
    ClassifierBatchSource,
    SegmenterBatchSource,
    StreakDataConfig,
    load_backgrounds,
)

__all__ = [
    "CLASSIFIER_NAME",
    "SEGMENTER_NAME",
    "default_recipe",
    "train_streak_model",
    "train_streaks",
    "save_streak_weights",
]

#: Names of the shipped weights (``src/skysift/learning/weights/<name>.*``).
CLASSIFIER_NAME = "streak_classifier"
SEGMENTER_NAME = "streak_segmenter"

_NORMALISATION = {
    "name": "arcsinh_window",
    "input": "arcsinh((D - mu) / sigma) per window, mu = median, sigma = 1.4826 MAD "
    "(satellite paper eq. 1)",
    "function": "skysift.streaks.training_data.normalise_windows",
}


def default_recipe() -> dict[str, Any]:
    """The recipes of the shipped weights (configuration as data, saved in the cards)."""
    return {
        CLASSIFIER_NAME: {
            "model": {"name": "streak_classifier", "config": {"input_size": 128}},
            "data": StreakDataConfig(size=128, p_streak=0.5).to_dict(),
            "loss": "bce",
            "phases": [
                {
                    "name": "composite",
                    "data": {},
                    "batch_size": 32,
                    "epochs": 24,
                    "steps_per_epoch": 60,
                    "lr": 1e-3,
                    "scheduler": "plateau",
                    "plateau_patience": 2,
                    "early_stopping_patience": 6,
                },
                {
                    "name": "composite-lr5e-4",
                    "data": {},
                    "batch_size": 32,
                    "epochs": 12,
                    "steps_per_epoch": 60,
                    "lr": 5e-4,
                    "scheduler": "plateau",
                    "plateau_patience": 2,
                    "early_stopping_patience": 4,
                },
                {
                    "name": "composite-lr3e-4",
                    "data": {},
                    "batch_size": 32,
                    "epochs": 16,
                    "steps_per_epoch": 60,
                    "lr": 3e-4,
                    "scheduler": "plateau",
                    "plateau_patience": 3,
                    "early_stopping_patience": 8,
                },
            ],
            "val_steps": 16,
        },
        SEGMENTER_NAME: {
            # CosmicConnUNet's layers (plain blocks, group norm, max-pool, transposed
            # convolutions) with a leaky ReLU: with 8 ReLU channels the decoder's last
            # features die on streak pixels and their scores tie at sigmoid(bias)
            "model": {
                "name": "unet",
                "config": {
                    "depth": 3,
                    "width": 8,
                    "block": "plain",
                    "decoder_block": "plain",
                    "norm": "group",
                    "act": "leaky_relu",
                    "downsample": "maxpool",
                    "upsample": "transpose",
                    "num_groups": 4,
                },
            },
            "data": StreakDataConfig(size=256, p_streak=0.8).to_dict(),
            "loss": "bce",
            "phases": [
                {
                    "name": "cutouts128",
                    "data": {"size": 128},
                    "batch_size": 12,
                    "epochs": 6,
                    "steps_per_epoch": 80,
                    "lr": 2e-3,
                    "scheduler": "none",
                    "early_stopping_patience": 0,
                },
                {
                    "name": "cutouts256",
                    "data": {},
                    "batch_size": 8,
                    "epochs": 4,
                    "steps_per_epoch": 50,
                    "lr": 5e-4,
                    "scheduler": "none",
                    "early_stopping_patience": 0,
                },
                {
                    "name": "cutouts256-lr2e-4",
                    "data": {},
                    "batch_size": 8,
                    "epochs": 6,
                    "steps_per_epoch": 50,
                    "lr": 2e-4,
                    "scheduler": "none",
                    "early_stopping_patience": 0,
                },
            ],
            "val_steps": 8,
        },
        # one thread: bit-reproducible, and faster than two on a shared 2-core machine
        "num_threads": 1,
    }


_PHASE_KEYS = {
    "epochs",
    "steps_per_epoch",
    "lr",
    "scheduler",
    "plateau_patience",
    "plateau_factor",
    "early_stopping_patience",
    "weight_decay",
    "batch_size",
}


def train_streak_model(
    name: str,
    recipe: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    progress: bool = True,
    data_dir: str | Path | None = None,
    num_threads: int = 1,
) -> tuple[Any, dict[str, Any]]:
    """Train one streak net with its recipe.

    Parameters
    ----------
    name : {"streak_classifier", "streak_segmenter"}
    recipe : dict, optional
        That net's entry of :func:`default_recipe` (missing keys take its values).
    seed : int, optional
        Seed of the initial weights and of the data stream. Default 0.
    progress : bool, optional
        Progress bars. Default True.
    data_dir : path, optional
        The real frames (default ``tests/data`` of the repository).
    num_threads : int, optional
        torch threads. Default 1.

    Returns
    -------
    model : torch.nn.Module
        Trained, eval mode.
    card : dict
        Fields for :func:`save_streak_weights` (no metrics yet).

    Raises
    ------
    InputError
        For an unknown name or recipe key, or a missing background frame.
    """
    # needs torch (the learn extra): imported on use
    from skysift.learning.models import build_model

    # needs torch (the learn extra): imported on use
    from skysift.learning.trainer import TrainConfig, Trainer

    base = default_recipe()
    if name not in (CLASSIFIER_NAME, SEGMENTER_NAME):
        msg = f"unknown streak model {name!r}; valid: {[CLASSIFIER_NAME, SEGMENTER_NAME]}"
        raise InputError(msg)
    rec = base[name]
    if recipe:
        unknown = set(recipe) - set(rec)
        if unknown:
            msg = f"unknown recipe key(s) {sorted(unknown)} for {name}; valid: {sorted(rec)}"
            raise InputError(msg)
        rec = {**rec, **copy.deepcopy(recipe)}
    t0 = time.perf_counter()
    backgrounds = load_backgrounds(STREAK_TRAIN_BACKGROUNDS, data_dir)
    torch.manual_seed(int(seed))
    model = build_model(rec["model"]["name"], **rec["model"]["config"])
    source_cls = ClassifierBatchSource if name == CLASSIFIER_NAME else SegmenterBatchSource
    history: list[dict[str, Any]] = []
    trainer = None
    for phase in rec["phases"]:
        data_cfg = StreakDataConfig.from_dict({**rec["data"], **phase.get("data", {})})
        tcfg = TrainConfig(
            name=f"{name}:{phase['name']}",
            val_steps=int(rec.get("val_steps", 8)),
            loss=rec["loss"],
            seed=int(seed),
            progress=progress,
            num_threads=int(num_threads),
            deterministic=True,
            **{k: v for k, v in phase.items() if k in _PHASE_KEYS},
        )
        if trainer is None:
            trainer = Trainer(model, tcfg)
        else:
            trainer.config = tcfg
        src = source_cls(data_cfg, backgrounds)
        res = trainer.fit(src, source_cls(data_cfg, backgrounds), phase=phase["name"])
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
    description = {
        CLASSIFIER_NAME: (
            "Streak / no-streak classifier of 128x128 windows (Unistellar satellite paper §3.1, "
            "AlexNet-style) for skysift.streaks.learned.StreakImageClassifier; "
            "image score = the highest window score (§4.1.1)."
        ),
        SEGMENTER_NAME: (
            "Streak segmentation (True = streak pixel; Unistellar satellite paper §3.2, "
            "Cosmic-CoNN-style U-Net) for skysift.streaks.learned.StreakSegmenter."
        ),
    }[name]
    card = {
        "name": name,
        "description": description,
        "normalisation": dict(_NORMALISATION),
        "recipe": {
            **rec,
            "label": (
                "1 when the cutout holds >= 100 truth-mask pixels of a streak, 0 when it holds none"
                if name == CLASSIFIER_NAME
                else "the streak's capsule: segment convolved with a disk of diameter the PSF FWHM"
            ),
            "data_split": {
                "train": list(STREAK_TRAIN_BACKGROUNDS),
                "held_out": list(STREAK_HELD_OUT_BACKGROUNDS),
            },
            "history": history,
            "training_seconds": round(time.perf_counter() - t0, 1),
            "torch": torch.__version__,
        },
        "seed": int(seed),
        "command": f"skysift train streaks --seed {int(seed)}  "
        f"# = skysift.streaks.training.train_streaks(seed={int(seed)})",
        "metrics": {},
    }
    return model, card


def train_streaks(
    out: str | Path | None = None,
    *,
    seed: int = 0,
    models: tuple[str, ...] = (CLASSIFIER_NAME, SEGMENTER_NAME),
    progress: bool = True,
    data_dir: str | Path | None = None,
    evaluate: bool = True,
    eval_kwargs: dict[str, Any] | None = None,
) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Train the streak classifier and segmenter with the shipped recipe (reproduces the weights).

    Parameters
    ----------
    out : path, optional
        Folder for ``<name>.safetensors``, ``.json`` and ``.md`` of each net;
        nothing is written if None.
    seed : int, optional
        Default 0 (the shipped weights).
    models : tuple of str, optional
        Which nets to train. Default both.
    progress : bool, optional
    data_dir : path, optional
    evaluate : bool, optional
        Run :func:`skysift.streaks.evaluation.evaluate_streaks` with the new
        nets and put its headline numbers in the cards. Default True.
    eval_kwargs : dict, optional
        Extra arguments of that evaluation.

    Returns
    -------
    dict
        ``{name: (model, card)}``.
    """
    results = {
        name: train_streak_model(name, seed=seed, progress=progress, data_dir=data_dir)
        for name in models
    }
    if evaluate and set(models) == {CLASSIFIER_NAME, SEGMENTER_NAME}:
        report = evaluate_streaks(
            classifier=results[CLASSIFIER_NAME][0],
            segmenter=results[SEGMENTER_NAME][0],
            data_dir=data_dir,
            **(eval_kwargs or {}),
        )
        for name, (_, card) in results.items():
            card["metrics"] = card_metrics(report, name)
    if out is not None:
        for name, (model, card) in results.items():
            save_streak_weights(model, card, out, name)
    return results


def save_streak_weights(model: Any, card: dict[str, Any], out: str | Path, name: str) -> Path:
    """Write ``<out>/<name>.safetensors``, ``.json`` (card with sha256) and ``.md``.

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
        f"{card['normalisation'].get('input')} (`{card['normalisation'].get('function')}`).",
        "",
        "## Training",
        "",
        f"`{card.get('command')}`: {rec.get('training_seconds')} s on the build machine "
        f"(2 shared CPU cores, 1 torch thread, torch {rec.get('torch')}); loss "
        f"`{rec.get('loss')}`. Label: {rec.get('label')}.",
        "",
        f"Data (`skysift.streaks.training_data.StreakDataConfig`): `{json.dumps(rec.get('data'))}`",
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
    lines += ["", "## Data split", "", "Training backgrounds (real frames of tests/data):", ""]
    lines += [f"- `{n}`" for n in split.get("train", [])]
    lines += ["", "Held out (evaluation only, never trained on):", ""]
    lines += [f"- `{n}`" for n in split.get("held_out", [])]
    return "\n".join(lines) + "\n" + _metrics_markdown(card.get("metrics", {}))


def _metrics_markdown(metrics: dict[str, Any]) -> str:
    if not metrics:
        return ""
    lines = ["", "## Held-out metrics", ""]
    if "definition" in metrics:
        lines += [str(metrics["definition"]), ""]
    for key, val in metrics.items():
        if key == "definition":
            continue
        if isinstance(val, list) and val and isinstance(val[0], dict):
            cols = list(val[0])
            lines += [f"### {key}", "", "| " + " | ".join(cols) + " |"]
            lines += ["|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in val]
            lines.append("")
        else:
            lines.append(f"- {key}: {val}")
    return "\n".join(lines) + "\n"
