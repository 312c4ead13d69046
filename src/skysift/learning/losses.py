"""Segmentation losses on logits: BCE, Dice, Jaccard, Tversky and their sums.

All losses take ``logits`` and ``target`` of shape ``(B, C, H, W)`` (target in
[0, 1], ``1`` = object) and return a scalar tensor. The overlap losses are one
family: the soft Tversky index [1]_

.. math:: TI = (TP + s) / (TP + \\alpha FP + \\beta FN + s),

with soft counts ``TP = Σ p t``, ``FP = Σ p (1 - t)``, ``FN = Σ (1 - p) t``
summed over the batch and pixels of each channel (then averaged over
channels). Dice is ``α = β = ½`` (so ``Dice = (2TP + 2s) / (|P| + |T| + 2s)``),
Jaccard (soft IoU) is ``α = β = 1``; the loss is ``1 - TI``. The bolide report
§4.5 compares BCE, Dice, Jaccard and Tversky for the star detector.

References
----------
.. [1] Salehi, S. S. M., Erdogmus, D. & Gholipour, A. 2017, "Tversky loss
   function for image segmentation using 3D fully convolutional deep
   networks", MLMI, §2.
.. [2] Milletari, F., Navab, N. & Ahmadi, S.-A. 2016, "V-Net", 3DV, §3 (Dice loss).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from skysift.errors import InputError

__all__ = [
    "LOSSES",
    "BCELoss",
    "ComboLoss",
    "DiceLoss",
    "JaccardLoss",
    "TverskyLoss",
    "make_loss",
]


def _check(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if logits.shape != target.shape:
        msg = f"loss needs logits and target of the same shape, got {tuple(logits.shape)} and {tuple(target.shape)}"
        raise InputError(msg)
    return target.to(logits.dtype)


class BCELoss(nn.Module):
    """Binary cross-entropy on logits, mean over all pixels.

    Parameters
    ----------
    pos_weight : float or None, optional
        Weight of the positive (object) pixels, e.g. ``n_background / n_object``
        for sparse stars. Default None (1).
    """

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check(logits, target)
        pw = None if self.pos_weight is None else torch.tensor(self.pos_weight, dtype=logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)


class TverskyLoss(nn.Module):
    """``1 - TI`` with the soft Tversky index ([1]_ eq. 3), see the module docstring.

    Parameters
    ----------
    alpha : float, optional
        Weight of false positives. Default 0.5.
    beta : float, optional
        Weight of false negatives; ``beta > alpha`` favours recall (faint
        stars). Default 0.5.
    smooth : float, optional
        Added to numerator and denominator; keeps an empty target with an
        empty prediction at loss 0. Default 1.
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0) -> None:
        super().__init__()
        if alpha < 0 or beta < 0 or smooth < 0:
            msg = f"Tversky alpha, beta and smooth must be >= 0, got {alpha}, {beta}, {smooth}"
            raise InputError(msg)
        self.alpha, self.beta, self.smooth = alpha, beta, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check(logits, target)
        p = torch.sigmoid(logits)
        dims = [0, *range(2, logits.ndim)]
        tp = (p * target).sum(dims)
        fp = (p * (1 - target)).sum(dims)
        fn = ((1 - p) * target).sum(dims)
        ti = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return 1 - ti.mean()


class DiceLoss(TverskyLoss):
    """Soft Dice loss [2]_: the Tversky loss with ``α = β = ½``."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__(0.5, 0.5, smooth)


class JaccardLoss(TverskyLoss):
    """Soft Jaccard (IoU) loss: the Tversky loss with ``α = β = 1``, ``1 - TP / (TP + FP + FN)``."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__(1.0, 1.0, smooth)


class ComboLoss(nn.Module):
    """Weighted sum of losses, e.g. BCE + Dice.

    Parameters
    ----------
    losses : sequence of nn.Module
    weights : sequence of float, optional
        One per loss. Default all 1.
    """

    def __init__(self, losses: list[nn.Module], weights: list[float] | None = None) -> None:
        super().__init__()
        weights = [1.0] * len(losses) if weights is None else list(weights)
        if len(weights) != len(losses) or not losses:
            msg = f"ComboLoss needs one weight per loss, got {len(weights)} weights for {len(losses)} losses"
            raise InputError(msg)
        self.losses = nn.ModuleList(losses)
        self.weights = weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * fn(logits, target) for w, fn in zip(self.weights, self.losses, strict=True))


LOSSES: dict[str, type[nn.Module]] = {
    "bce": BCELoss,
    "dice": DiceLoss,
    "jaccard": JaccardLoss,
    "tversky": TverskyLoss,
}


def make_loss(name: str, /, **kwargs: Any) -> nn.Module:
    """Build a loss by name: one of :data:`LOSSES` or a ``+``-joined sum (``"bce+dice"``).

    Parameters
    ----------
    name : str
        ``"bce"``, ``"dice"``, ``"jaccard"``, ``"tversky"``, or a sum such as
        ``"bce+dice"`` or ``"bce+tversky"`` (``"bce_dice"`` is an alias of
        ``"bce+dice"``).
    **kwargs
        Parameters of the components (``pos_weight``, ``alpha``, ``beta``,
        ``smooth``), each routed to the components that accept it, and
        ``weights`` (one per component) for a sum.

    Raises
    ------
    InputError
        If a name is unknown (the message lists the valid names) or a
        keyword is accepted by no component.
    """
    parts = [p.strip() for p in name.replace("_", "+").split("+")] if name != "" else [""]
    weights = kwargs.pop("weights", None)
    used: set[str] = set()
    losses = []
    for part in parts:
        try:
            cls = LOSSES[part]
        except KeyError:
            msg = f"unknown loss {part!r}; valid names: {sorted(LOSSES)} or sums such as 'bce+dice'"
            raise InputError(msg) from None
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        own = {k: v for k, v in kwargs.items() if k in accepted}
        used |= set(own)
        losses.append(cls(**own))
    unused = set(kwargs) - used
    if unused:
        msg = f"loss {name!r} does not accept {sorted(unused)}"
        raise InputError(msg)
    if len(losses) == 1 and weights is None:
        return losses[0]
    return ComboLoss(losses, weights)
