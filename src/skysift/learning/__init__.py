"""Learning core: models, losses, training, inference, compression and weights.

Built once for every learned model of skysift (star detector, streak
classifier, ...). Models are plain :class:`torch.nn.Module` objects returning
logits; training lives in :class:`Trainer`, never in a model; inference on
frames of any size goes through :func:`predict_image` / :class:`Predictor`;
weights are safetensors files with a model card (:data:`WEIGHTS`).

Importing this package imports no torch (its names load on first use, so
that torch-free modules such as :mod:`skysift.learning.cards` stay light) and
changes no global torch setting (threads, determinism); :meth:`Trainer.fit`
sets and restores them.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it (imported on first use: they need torch).
_LAZY = {
    "BCELoss": "skysift.learning.losses",
    "ComboLoss": "skysift.learning.losses",
    "CosmicConnUNet": "skysift.learning.models",
    "DiceLoss": "skysift.learning.losses",
    "JaccardLoss": "skysift.learning.losses",
    "LOSSES": "skysift.learning.losses",
    "MODELS": "skysift.learning.models",
    "Normalisation": "skysift.learning.inference",
    "Predictor": "skysift.learning.inference",
    "StreakClassifier": "skysift.learning.models",
    "TrainConfig": "skysift.learning.trainer",
    "TrainResult": "skysift.learning.trainer",
    "Trainer": "skysift.learning.trainer",
    "TverskyLoss": "skysift.learning.losses",
    "UNet": "skysift.learning.models",
    "WEIGHTS": "skysift.learning.weights",
    "Weights": "skysift.learning.weights",
    "build_model": "skysift.learning.models",
    "count_parameters": "skysift.learning.models",
    "export_onnx": "skysift.learning.compression",
    "global_prune": "skysift.learning.compression",
    "load_checkpoint": "skysift.learning.trainer",
    "load_weights": "skysift.learning.weights",
    "make_loss": "skysift.learning.losses",
    "onnx_session": "skysift.learning.compression",
    "onnx_session_for": "skysift.learning.compression",
    "predict_image": "skysift.learning.inference",
    "pseudo_label": "skysift.learning.trainer",
    "save_weights": "skysift.learning.weights",
    "sparsity": "skysift.learning.compression",
    "to_precision": "skysift.learning.compression",
    "weights_info": "skysift.learning.weights",
}

__all__ = [
    "LOSSES",
    "MODELS",
    "WEIGHTS",
    "BCELoss",
    "ComboLoss",
    "CosmicConnUNet",
    "DiceLoss",
    "JaccardLoss",
    "Normalisation",
    "Predictor",
    "StreakClassifier",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TverskyLoss",
    "UNet",
    "Weights",
    "build_model",
    "count_parameters",
    "export_onnx",
    "global_prune",
    "load_checkpoint",
    "load_weights",
    "make_loss",
    "onnx_session",
    "onnx_session_for",
    "predict_image",
    "pseudo_label",
    "save_weights",
    "sparsity",
    "to_precision",
    "weights_info",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module 'skysift.learning' has no attribute {name!r}"
    raise AttributeError(msg)
