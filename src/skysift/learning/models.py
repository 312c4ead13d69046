"""Assembled networks and the model factory.

Every model is a plain :class:`torch.nn.Module` whose ``forward`` returns
*logits*; ``predict`` returns probabilities under :func:`torch.inference_mode`.
Every model exposes ``config``, a JSON-serialisable dict such that
``build_model(model.name, **model.config)`` rebuilds the same architecture.
The training loop lives in :mod:`skysift.learning.trainer`, never in a model.

References
----------
.. [1] Ronneberger, O., Fischer, P. & Brox, T. 2015, "U-Net: Convolutional
   Networks for Biomedical Image Segmentation", MICCAI, §2.
.. [2] Tan, M. & Le, Q. V. 2021, "EfficientNetV2", ICML, §3.
.. [3] Xu, C., McCully, C., Dong, B., Howell, D. A. & Sen, P. 2023,
   "Cosmic-CoNN: A Cosmic-Ray Detection Deep-learning Framework, Data Set,
   and Toolkit", ApJ 942, 73, §3.
.. [4] Unistellar satellite-streak paper, §3.1 (AlexNet-style classifier of
   128×128 cut-outs) and eq. 1 (arcsinh stretch).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from skysift.errors import InputError
from skysift.learning.blocks import ConvNormAct, Downsample, Upsample, make_block

__all__ = [
    "MODELS",
    "CosmicConnUNet",
    "SegmentationModel",
    "StreakClassifier",
    "UNet",
    "build_model",
    "count_parameters",
]


def _as_tensor(x: torch.Tensor | np.ndarray, like: nn.Module) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    p = next(like.parameters(), None)
    if p is not None and (x.dtype != p.dtype or x.device != p.device):
        x = x.to(device=p.device, dtype=p.dtype)
    return x


class _Predicting(nn.Module):
    """Mixin: ``predict`` = sigmoid of ``forward`` in eval mode under inference mode."""

    name: ClassVar[str] = ""

    def predict(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Return probabilities in [0, 1] (sigmoid of the logits).

        The model is switched to eval mode for the call and back afterwards.
        NumPy input is converted to a float tensor on the model's device.
        """
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return torch.sigmoid(self(_as_tensor(x, self)))
        finally:
            self.train(was_training)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (``build_model(name, **config)`` rebuilds)."""
        return dict(self._config)


class SegmentationModel(_Predicting):
    """Base of the fully convolutional segmentation nets.

    Input ``(B, in_channels, H, W)`` float tensor, any ``H, W >= 1``: it is
    padded internally (reflect at the bottom and right, replicate when the
    image is too small to reflect) to a multiple of :attr:`size_multiple` and
    the output is cropped back. Output: logits ``(B, out_channels, H, W)``;
    ``predict`` gives per-pixel probabilities (sigmoid, one independent
    binary map per channel, ``True`` = object).
    """

    depth: int

    @property
    def size_multiple(self) -> int:
        """Tiles and shifts that are multiples of this keep the pooling grid aligned (``2**depth``)."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            msg = f"{type(self).__name__} needs a (B, C, H, W) tensor, got shape {tuple(x.shape)}"
            raise InputError(msg)
        h, w = x.shape[-2:]
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return self._forward(x)[..., :h, :w]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class UNet(SegmentationModel):
    """Configurable U-Net [1]_ with a choice of encoder block.

    Input ``(B, in_channels, H, W)`` float32, any H, W (normalised as at
    training time, e.g. arcsinh stretch). Output: logits
    ``(B, out_channels, H, W)``; :meth:`predict` returns probabilities.

    Parameters
    ----------
    in_channels, out_channels : int, optional
        Default 1 and 1.
    depth : int, optional
        Number of down-sampling steps (default 4); H, W are padded internally
        to a multiple of ``2**depth``.
    width : int, optional
        Channels at full resolution (default 16); level ``l`` has
        ``min(width * 2**l, max_width)`` channels.
    block : {"residual", "plain", "mbconv", "fused_mbconv", "efficientnetv2"}, optional
        Encoder block. ``"efficientnetv2"`` is the EfficientNetV2 recipe [2]_
        (§3.2-3.3): Fused-MBConv at the high-resolution levels
        (``l <= depth // 2``, expansion 1 at level 0), MBConv with SE deeper.
        Default ``"residual"``.
    decoder_block : str, optional
        Decoder block, one of the above except ``"efficientnetv2"``. Default ``"plain"``.
    blocks_per_level : int, optional
        Encoder blocks per level. Default 1.
    expand_ratio : int, optional
        Expansion of (Fused-)MBConv. Default 4.
    se_ratio : float, optional
        Squeeze-excitation ratio of MBConv (0 disables it). Note SE pools over
        the whole input, so tiled and whole-image predictions then differ
        slightly. Default 0.25.
    norm : {"batch", "group", "none"}, optional
        Default ``"batch"``.
    act : {"relu", "silu", "leaky_relu", "gelu"}, optional
        Default ``"relu"``.
    downsample : {"maxpool", "stride"}, optional
        Max-pool before each level, or a stride-2 first block. Default ``"maxpool"``.
    upsample : {"bilinear", "transpose"}, optional
        Default ``"bilinear"``.
    max_width : int or None, optional
        Cap on channels per level. Default None (no cap).
    num_groups : int, optional
        Groups of group norm. Default 8.
    """

    name: ClassVar[str] = "unet"

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        depth: int = 4,
        width: int = 16,
        block: str = "residual",
        decoder_block: str = "plain",
        blocks_per_level: int = 1,
        expand_ratio: int = 4,
        se_ratio: float = 0.25,
        norm: str = "batch",
        act: str = "relu",
        downsample: str = "maxpool",
        upsample: str = "bilinear",
        max_width: int | None = None,
        num_groups: int = 8,
    ) -> None:
        super().__init__()
        for key, val in {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "width": width,
            "blocks_per_level": blocks_per_level,
            "expand_ratio": expand_ratio,
        }.items():
            if int(val) < 1:
                msg = f"UNet {key} must be >= 1, got {val}"
                raise InputError(msg)
        if depth < 0:
            msg = f"UNet depth must be >= 0, got {depth}"
            raise InputError(msg)
        if downsample not in ("maxpool", "stride"):
            msg = f"UNet downsample must be 'maxpool' or 'stride', got {downsample!r}"
            raise InputError(msg)
        self._config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "depth": depth,
            "width": width,
            "block": block,
            "decoder_block": decoder_block,
            "blocks_per_level": blocks_per_level,
            "expand_ratio": expand_ratio,
            "se_ratio": se_ratio,
            "norm": norm,
            "act": act,
            "downsample": downsample,
            "upsample": upsample,
            "max_width": max_width,
            "num_groups": num_groups,
        }
        self.depth = depth
        chans = [width * 2**lvl for lvl in range(depth + 1)]
        if max_width is not None:
            chans = [min(c, max_width) for c in chans]
        self.channels = chans
        common = {"norm": norm, "act": act, "num_groups": num_groups}

        def kind_at(level: int) -> tuple[str, dict[str, Any]]:
            if block == "efficientnetv2":
                if level <= depth // 2:
                    return "fused_mbconv", {
                        "expand_ratio": 1 if level == 0 else expand_ratio,
                        "se_ratio": 0.0,
                    }
                return "mbconv", {"expand_ratio": expand_ratio, "se_ratio": se_ratio}
            return block, {"expand_ratio": expand_ratio, "se_ratio": se_ratio}

        self.stem = ConvNormAct(in_channels, chans[0], 3, **common)
        self.encoder = nn.ModuleList()
        self.pools = nn.ModuleList()
        for lvl in range(depth + 1):
            kind, extra = kind_at(lvl)
            layers: list[nn.Module] = []
            c_in = chans[max(lvl - 1, 0)]
            for i in range(blocks_per_level):
                stride = 2 if (lvl > 0 and i == 0 and downsample == "stride") else 1
                layers.append(
                    make_block(
                        kind,
                        c_in if i == 0 else chans[lvl],
                        chans[lvl],
                        stride=stride,
                        **extra,
                        **common,
                    )
                )
            self.encoder.append(nn.Sequential(*layers))
            if lvl > 0:
                self.pools.append(Downsample(c_in) if downsample == "maxpool" else nn.Identity())
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for lvl in range(depth - 1, -1, -1):
            self.ups.append(Upsample(chans[lvl + 1], chans[lvl], mode=upsample))
            self.decoder.append(
                make_block(
                    decoder_block,
                    2 * chans[lvl],
                    chans[lvl],
                    expand_ratio=expand_ratio,
                    se_ratio=0.0,
                    **common,
                )
            )
        self.head = nn.Conv2d(chans[0], out_channels, 1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder[0](self.stem(x))
        skips = [x]
        for lvl in range(1, self.depth + 1):
            x = self.encoder[lvl](self.pools[lvl - 1](x))
            skips.append(x)
        for i, (up, dec) in enumerate(zip(self.ups, self.decoder, strict=True)):
            x = dec(torch.cat([up(x), skips[self.depth - 1 - i]], dim=1))
        return self.head(x)


class CosmicConnUNet(UNet):
    """U-Net with group normalisation in the spirit of Cosmic-CoNN [3]_ §3.

    Input ``(B, in_channels, H, W)`` float32, any H, W; output logits
    ``(B, out_channels, H, W)``; :meth:`predict` gives probabilities.

    As in Cosmic-CoNN: an encoder-decoder with skip connections, two 3×3
    conv-norm-ReLU per level, 2×2 max-pooling, 2×2 transposed-convolution
    up-sampling, 32 feature maps at full resolution doubling per level, and
    *group* normalisation instead of batch norm (stable with the small,
    heterogeneous batches of astronomical data). Simplified here: the depth and
    group count are free parameters (the published model has its own fixed
    values), and the paper's median-weighted loss and data-set sampling are
    not part of the architecture (pick a loss in :mod:`skysift.learning.losses`).
    Group norm makes per-tile statistics depend on the tile, so tiled and
    whole-image predictions differ slightly.

    Parameters
    ----------
    in_channels, out_channels : int, optional
        Default 1 and 1.
    depth : int, optional
        Down-sampling steps. Default 3.
    width : int, optional
        Channels at full resolution. Default 32.
    num_groups : int, optional
        Groups of each group-norm layer. Default 8.
    """

    name: ClassVar[str] = "cosmic_conn"

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        depth: int = 3,
        width: int = 32,
        num_groups: int = 8,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            depth=depth,
            width=width,
            block="plain",
            decoder_block="plain",
            norm="group",
            act="relu",
            downsample="maxpool",
            upsample="transpose",
            num_groups=num_groups,
        )
        self._config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "depth": depth,
            "width": width,
            "num_groups": num_groups,
        }


class StreakClassifier(_Predicting):
    """AlexNet-style streak / no-streak classifier of 128×128 cut-outs ([4]_ §3.1).

    Layers: conv 5×5 × 32 filters + ReLU, max-pool 4×4 stride 4, conv 4×4 × 64
    + ReLU, max-pool 4×4 stride 4, FC 512 + ReLU, FC 16 + ReLU, FC 1 (sigmoid
    in :meth:`predict`). Convolutions are "valid" (no padding):
    128 → 124 → 31 → 28 → 7, so the flattened feature has 64·7·7 values.

    Input ``(B, in_channels, input_size, input_size)`` float32, normalised as at
    training time (the paper uses the arcsinh stretch of its eq. 1). Output:
    logits ``(B, 1)``; :meth:`predict` returns the streak probability ``(B, 1)``.

    Parameters
    ----------
    in_channels : int, optional
        Default 1.
    input_size : int, optional
        Side of the square cut-out in pixels. Default 128.
    dropout : float, optional
        Dropout before the fully connected layers (0 disables). Default 0.

    Raises
    ------
    InputError
        In ``forward``, if the input is not ``(B, in_channels, input_size, input_size)``.
    """

    name: ClassVar[str] = "streak_classifier"

    def __init__(
        self, in_channels: int = 1, *, input_size: int = 128, dropout: float = 0.0
    ) -> None:
        super().__init__()
        side = ((input_size - 4) // 4 - 3) // 4
        if side < 1:
            msg = f"StreakClassifier input_size must be >= 32 pixels, got {input_size}"
            raise InputError(msg)
        self._config = {"in_channels": in_channels, "input_size": input_size, "dropout": dropout}
        self.input_size = input_size
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(4, 4),
            nn.Conv2d(32, 64, 4),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(4, 4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(64 * side * side, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, 16),
            nn.ReLU(inplace=True),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self._config["in_channels"]
        if x.ndim != 4 or x.shape[1] != c or x.shape[-2:] != (self.input_size, self.input_size):
            msg = (
                f"StreakClassifier needs (B, {c}, {self.input_size}, {self.input_size}) "
                f"cut-outs, got shape {tuple(x.shape)}"
            )
            raise InputError(msg)
        return self.classifier(self.features(x))


class CandidateMLP(_Predicting):
    """Small fully connected scorer of detection candidates from a feature vector.

    Input ``(B, n_features)`` float32 raw features; they are standardised
    inside the model with the training set's ``mean`` and ``scale`` (stored
    as buffers, so they travel with the weights). Layers: ``depth`` × (Linear
    ``width`` + ReLU), Linear 1. Output: logits ``(B, 1)``; :meth:`predict`
    returns the probability that the candidate is real ``(B, 1)``.
    Non-finite features are replaced by 0 and features are clipped to ±50
    before standardising.

    Parameters
    ----------
    n_features : int
        Length of the feature vector.
    width : int, optional
        Hidden units per layer. Default 32.
    depth : int, optional
        Hidden layers. Default 2.

    Raises
    ------
    InputError
        If a size is not positive, or in ``forward`` if the input is not
        ``(B, n_features)``.
    """

    name: ClassVar[str] = "candidate_mlp"

    def __init__(self, n_features: int, *, width: int = 32, depth: int = 2) -> None:
        super().__init__()
        if min(int(n_features), int(width), int(depth)) < 1:
            msg = f"CandidateMLP sizes must be >= 1, got {n_features=}, {width=}, {depth=}"
            raise InputError(msg)
        self._config = {"n_features": int(n_features), "width": int(width), "depth": int(depth)}
        self.register_buffer("mean", torch.zeros(int(n_features)))
        self.register_buffer("scale", torch.ones(int(n_features)))
        layers: list[nn.Module] = []
        last = int(n_features)
        for _ in range(int(depth)):
            layers += [nn.Linear(last, int(width)), nn.ReLU(inplace=True)]
            last = int(width)
        layers.append(nn.Linear(last, 1))
        self.net = nn.Sequential(*layers)

    def set_standardisation(self, mean: np.ndarray, scale: np.ndarray) -> None:
        """Store the training features' mean and scale (shape ``(n_features,)``)."""
        self.mean.copy_(torch.as_tensor(np.asarray(mean, np.float32)))
        self.scale.copy_(torch.as_tensor(np.maximum(np.asarray(scale, np.float32), 1e-6)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self._config["n_features"]
        if x.ndim != 2 or x.shape[1] != n:
            msg = f"CandidateMLP expects input (B, {n}), got {tuple(x.shape)}"
            raise InputError(msg)
        x = torch.clamp(torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), -50.0, 50.0)
        return self.net((x - self.mean) / self.scale)


MODELS: dict[str, type[nn.Module]] = {
    "unet": UNet,
    "cosmic_conn": CosmicConnUNet,
    "streak_classifier": StreakClassifier,
    "candidate_mlp": CandidateMLP,
}


def build_model(name: str, /, **config: Any) -> nn.Module:
    """Build a model by name from :data:`MODELS`.

    Parameters
    ----------
    name : str
        One of ``"unet"``, ``"cosmic_conn"``, ``"streak_classifier"``,
        ``"candidate_mlp"``.
    **config
        Constructor arguments; ``build_model(m.name, **m.config)`` rebuilds ``m``.

    Returns
    -------
    torch.nn.Module
        A freshly initialised model (seed with ``torch.manual_seed`` first for
        reproducible initial weights).

    Raises
    ------
    InputError
        If ``name`` is unknown (the message lists the valid names) or an
        argument is not accepted by the model.
    """
    try:
        cls = MODELS[name]
    except KeyError:
        msg = f"unknown model {name!r}; valid names: {sorted(MODELS)}"
        raise InputError(msg) from None
    try:
        return cls(**config)
    except TypeError as exc:
        msg = f"bad configuration for model {name!r}: {exc}"
        raise InputError(msg) from exc


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
