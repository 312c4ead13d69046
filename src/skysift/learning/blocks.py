"""Building blocks of the learned models (kept apart from the assembled nets).

Everything here is plain PyTorch. The assembled networks live in
:mod:`skysift.learning.models`; they pick blocks by name through
:func:`make_block`.

References
----------
.. [1] Tan, M. & Le, Q. V. 2021, "EfficientNetV2: Smaller Models and Faster
   Training", ICML, §3 (MBConv and Fused-MBConv, Fig. 2).
.. [2] Hu, J., Shen, L. & Sun, G. 2018, "Squeeze-and-Excitation Networks", CVPR.
.. [3] He, K. et al. 2016, "Deep Residual Learning for Image Recognition", CVPR.
.. [4] Ronneberger, O., Fischer, P. & Brox, T. 2015, "U-Net", MICCAI, §2.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from skysift.errors import InputError

__all__ = [
    "BLOCKS",
    "ConvNormAct",
    "Downsample",
    "FusedMBConv",
    "MBConv",
    "PlainBlock",
    "ResidualBlock",
    "SqueezeExcite",
    "Upsample",
    "make_activation",
    "make_block",
    "make_norm",
]

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "gelu": nn.GELU,
    "none": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (``relu``, ``silu``, ``leaky_relu``, ``gelu``, ``none``).

    Raises
    ------
    InputError
        If ``name`` is unknown; the message lists the valid names.
    """
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        msg = f"unknown activation {name!r}; valid names: {sorted(_ACTIVATIONS)}"
        raise InputError(msg) from None


def make_norm(name: str, channels: int, *, num_groups: int = 8) -> nn.Module:
    """Return a normalisation layer for ``channels`` feature maps.

    Parameters
    ----------
    name : {"batch", "group", "none"}
        Batch norm, group norm or identity. Group norm uses
        ``gcd(num_groups, channels)`` groups so every width is accepted.
    channels : int
    num_groups : int, optional
        Wanted number of groups for group norm. Default 8.

    Raises
    ------
    InputError
        If ``name`` is unknown.
    """
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        return nn.GroupNorm(math.gcd(num_groups, channels), channels)
    if name == "none":
        return nn.Identity()
    msg = f"unknown norm {name!r}; valid names: ['batch', 'group', 'none']"
    raise InputError(msg)


class ConvNormAct(nn.Sequential):
    """Convolution, normalisation, activation (the basic unit of every block).

    Input ``(B, in_channels, H, W)`` → output ``(B, out_channels, H', W')`` with
    ``H' = ceil(H / stride)`` ("same" padding for odd kernels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        groups: int = 1,
        norm: str = "batch",
        act: str = "relu",
        num_groups: int = 8,
    ) -> None:
        conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=norm == "none",
        )
        super().__init__(
            conv, make_norm(norm, out_channels, num_groups=num_groups), make_activation(act)
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: channel gating from the global mean [2]_.

    Input and output ``(B, C, H, W)``. Note the global pooling makes the output
    depend on the whole input, so a net with SE gives (slightly) different
    results on tiles than on the whole image.
    """

    def __init__(self, channels: int, reduced: int, *, act: str = "silu") -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, max(1, reduced), 1)
        self.act = make_activation(act)
        self.expand = nn.Conv2d(max(1, reduced), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class PlainBlock(nn.Sequential):
    """Two 3×3 conv-norm-activation layers (the classic U-Net unit [4]_).

    ``stride=2`` makes the first convolution down-sample.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        norm: str = "batch",
        act: str = "relu",
        num_groups: int = 8,
        **_: object,
    ) -> None:
        kw = {"norm": norm, "act": act, "num_groups": num_groups}
        super().__init__(
            ConvNormAct(in_channels, out_channels, 3, stride=stride, **kw),
            ConvNormAct(out_channels, out_channels, 3, **kw),
        )


class ResidualBlock(nn.Module):
    """Basic residual block: two 3×3 convolutions plus a shortcut [3]_.

    The shortcut is the identity when shapes agree, otherwise a 1×1
    convolution (with stride) and a norm layer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        norm: str = "batch",
        act: str = "relu",
        num_groups: int = 8,
        **_: object,
    ) -> None:
        super().__init__()
        kw = {"norm": norm, "num_groups": num_groups}
        self.conv1 = ConvNormAct(in_channels, out_channels, 3, stride=stride, act=act, **kw)
        self.conv2 = ConvNormAct(out_channels, out_channels, 3, act="none", **kw)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = ConvNormAct(
                in_channels, out_channels, 1, stride=stride, act="none", **kw
            )
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class MBConv(nn.Module):
    """Inverted residual block with depthwise conv and SE (EfficientNetV2 [1]_ Fig. 2, left).

    1×1 expansion (``expand_ratio``), 3×3 depthwise conv (with ``stride``),
    squeeze-excitation (``se_ratio`` of the *input* channels; 0 disables it),
    1×1 projection without activation, identity shortcut when the shapes agree.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expand_ratio: int = 4,
        se_ratio: float = 0.25,
        norm: str = "batch",
        act: str = "silu",
        num_groups: int = 8,
        **_: object,
    ) -> None:
        super().__init__()
        kw = {"norm": norm, "num_groups": num_groups}
        hidden = in_channels * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_channels, hidden, 1, act=act, **kw))
        layers.append(ConvNormAct(hidden, hidden, 3, stride=stride, groups=hidden, act=act, **kw))
        if se_ratio > 0:
            layers.append(SqueezeExcite(hidden, int(in_channels * se_ratio), act=act))
        layers.append(ConvNormAct(hidden, out_channels, 1, act="none", **kw))
        self.body = nn.Sequential(*layers)
        self.use_shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.use_shortcut else y


class FusedMBConv(nn.Module):
    """Fused-MBConv: one full 3×3 expansion conv then a 1×1 projection ([1]_ §3.2, Fig. 2 right).

    Faster than :class:`MBConv` at high resolution (early stages), where
    depthwise convolutions use the hardware poorly. ``expand_ratio=1`` reduces
    it to a single 3×3 conv (the EfficientNetV2 first stage).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expand_ratio: int = 4,
        se_ratio: float = 0.0,
        norm: str = "batch",
        act: str = "silu",
        num_groups: int = 8,
        **_: object,
    ) -> None:
        super().__init__()
        kw = {"norm": norm, "num_groups": num_groups}
        layers: list[nn.Module]
        if expand_ratio == 1:
            layers = [ConvNormAct(in_channels, out_channels, 3, stride=stride, act=act, **kw)]
        else:
            hidden = in_channels * expand_ratio
            layers = [ConvNormAct(in_channels, hidden, 3, stride=stride, act=act, **kw)]
            if se_ratio > 0:
                layers.append(SqueezeExcite(hidden, int(in_channels * se_ratio), act=act))
            layers.append(ConvNormAct(hidden, out_channels, 1, act="none", **kw))
        self.body = nn.Sequential(*layers)
        self.use_shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.use_shortcut else y


class Downsample(nn.Module):
    """Halve H and W: ``"maxpool"`` (2×2, the U-Net choice) or ``"conv"`` (stride-2 3×3 conv)."""

    def __init__(
        self, channels: int, *, mode: str = "maxpool", norm: str = "batch", act: str = "relu"
    ) -> None:
        super().__init__()
        if mode == "maxpool":
            self.op: nn.Module = nn.MaxPool2d(2)
        elif mode == "conv":
            self.op = ConvNormAct(channels, channels, 3, stride=2, norm=norm, act=act)
        else:
            msg = f"unknown downsample mode {mode!r}; valid: ['conv', 'maxpool']"
            raise InputError(msg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double H and W and map ``in_channels`` → ``out_channels``.

    ``"bilinear"``: bilinear interpolation then a 1×1 conv (no checkerboard
    artefacts); ``"transpose"``: 2×2 transposed convolution (the original U-Net
    "up-convolution" [4]_).
    """

    def __init__(self, in_channels: int, out_channels: int, *, mode: str = "bilinear") -> None:
        super().__init__()
        self.mode = mode
        if mode == "bilinear":
            self.op: nn.Module = nn.Conv2d(in_channels, out_channels, 1)
        elif mode == "transpose":
            self.op = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        else:
            msg = f"unknown upsample mode {mode!r}; valid: ['bilinear', 'transpose']"
            raise InputError(msg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.op(x)


BLOCKS: dict[str, type[nn.Module]] = {
    "plain": PlainBlock,
    "residual": ResidualBlock,
    "mbconv": MBConv,
    "fused_mbconv": FusedMBConv,
}


def make_block(kind: str, in_channels: int, out_channels: int, **kwargs: object) -> nn.Module:
    """Build a block by name (see :data:`BLOCKS`); extra keywords a block does not use are ignored.

    Raises
    ------
    InputError
        If ``kind`` is unknown; the message lists the valid names.
    """
    try:
        cls = BLOCKS[kind]
    except KeyError:
        msg = f"unknown block {kind!r}; valid names: {sorted(BLOCKS)}"
        raise InputError(msg) from None
    return cls(in_channels, out_channels, **kwargs)
