"""Learning core: models, losses, training, inference, compression and weights.

Built once for every learned model of skysift (star detector, streak
classifier, ...). Models are plain :class:`torch.nn.Module` objects returning
logits; training lives in :class:`Trainer`, never in a model; inference on
frames of any size goes through :func:`predict_image` / :class:`Predictor`;
weights are safetensors files with a model card (:data:`WEIGHTS`).

Importing this package changes no global torch setting (threads,
determinism); :meth:`Trainer.fit` sets and restores them.
"""

from skysift.learning.compression import (
    export_onnx,
    global_prune,
    onnx_session,
    onnx_session_for,
    sparsity,
    to_precision,
)
from skysift.learning.inference import Normalisation, Predictor, predict_image
from skysift.learning.losses import (
    LOSSES,
    BCELoss,
    ComboLoss,
    DiceLoss,
    JaccardLoss,
    TverskyLoss,
    make_loss,
)
from skysift.learning.models import (
    MODELS,
    CosmicConnUNet,
    StreakClassifier,
    UNet,
    build_model,
    count_parameters,
)
from skysift.learning.trainer import (
    TrainConfig,
    Trainer,
    TrainResult,
    load_checkpoint,
    pseudo_label,
)
from skysift.learning.weights import WEIGHTS, Weights, load_weights, save_weights, weights_info

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
