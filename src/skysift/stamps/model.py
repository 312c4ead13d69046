"""Small CNN classifying stamps into SSO / cosmic ray / galaxy / star from 1–4 dithers.

Input contract: ``(B, 2 * max_dithers, S, S)`` float32 made by
:func:`prepare_stamps`: the first ``max_dithers`` planes are the dithers
(sky-subtracted, divided by the stamp's noise, arcsinh-stretched; zero where a
dither is absent), the last ``max_dithers`` planes are constant indicators
(1 = that dither is present). One network thus serves every dither count
(channel-count-agnostic input). Output: logits ``(B, 4)`` in the order of
:data:`~skysift.stamps.data.CLASSES`; :meth:`StampClassifier.predict_proba`
divides them by the fitted temperature before the softmax (calibrated
probabilities, Guo et al. 2017, §4.2); the SSO-vs-rest probability is the
``sso`` column.

References
----------
.. [1] Euclid SSO paper, §3 (CNN classifiers of VIS stamps, dithers as channels).
.. [2] Guo, C., Pleiss, G., Sun, Y. & Weinberger, K. Q. 2017, "On Calibration
   of Modern Neural Networks", ICML, §4.2 (temperature scaling).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from skysift.errors import InputError
from skysift.learning.blocks import ConvNormAct
from skysift.stamps.data import CLASSES, MAX_DITHERS, STAMP_SIZE

__all__ = ["StampClassifier", "augment_stamps", "fit_temperature", "prepare_stamps"]

#: Arcsinh softening of the stretch, in units of the stamp noise.
STRETCH = 3.0


def prepare_stamps(
    stamps: np.ndarray, n_channels: np.ndarray | None = None, *, max_dithers: int = MAX_DITHERS
) -> np.ndarray:
    """Normalise raw stamps into the network input.

    Per stamp: each present dither minus its median, divided by the noise of
    dither 0 (1.4826 × median absolute deviation; the same scale for all
    dithers keeps their flux ratios), stretched by ``arcsinh(x / 3)``.

    Parameters
    ----------
    stamps : ndarray, shape (N, C, S, S)
        Pixel values in any linear unit; channels ``>= n_channels[i]`` are ignored.
    n_channels : ndarray of int, shape (N,), optional
        Dithers present in each stamp; default ``C`` for every stamp.
    max_dithers : int, optional
        Input planes of the network. Default 4.

    Returns
    -------
    ndarray of float32, shape (N, 2 * max_dithers, S, S)
    """
    x = np.asarray(stamps, np.float32)
    n, c = x.shape[:2]
    if n == 0:
        return np.zeros((0, 2 * max_dithers) + x.shape[2:], np.float32)
    nc = np.full(n, c, int) if n_channels is None else np.asarray(n_channels, int)
    present = np.arange(max_dithers)[None, :] < nc[:, None]  # (N, max_dithers)
    xx = np.zeros((n, max_dithers) + x.shape[2:], np.float32)
    k = min(c, max_dithers)
    xx[:, :k] = x[:, :k]
    med = np.median(xx.reshape(n, max_dithers, -1), axis=2)
    xx -= med[:, :, None, None]
    mad = np.median(np.abs(xx[:, 0].reshape(n, -1)), axis=1) * 1.4826
    scale = np.where(mad > 0, mad, 1.0).astype(np.float32)
    xx /= scale[:, None, None, None]
    xx = np.arcsinh(xx / STRETCH)
    xx *= present[:, :, None, None]
    ind = np.broadcast_to(present[:, :, None, None], xx.shape).astype(np.float32)
    return np.concatenate([xx, ind], axis=1)


def augment_stamps(
    stamps: np.ndarray,
    n_channels: np.ndarray,
    rng: np.random.Generator,
    *,
    noise_prob: float = 0.3,
    sky_prob: float = 0.2,
) -> np.ndarray:
    """Random rot90/flip per stamp, extra Gaussian noise and a sky gradient (raw units).

    Parameters
    ----------
    stamps : ndarray, shape (N, C, S, S)
        Raw stamps (electrons).
    n_channels : ndarray of int, shape (N,)
    rng : Generator
    noise_prob, sky_prob : float, optional
        Probability of extra noise (0.2–1 × the stamp's noise) and of a
        linear sky gradient (up to 3 × the noise across the stamp).

    Returns
    -------
    ndarray of float32, shape (N, C, S, S)
        A new array.
    """
    out = np.empty_like(stamps)
    n, c, s, _ = stamps.shape
    for i in range(n):
        img = np.rot90(stamps[i], int(rng.integers(4)), axes=(1, 2))
        if rng.random() < 0.5:
            img = img[:, :, ::-1]
        out[i] = img
    noise = 1.4826 * np.median(np.abs(out[:, 0] - np.median(out[:, 0], axis=(1, 2), keepdims=True)), axis=(1, 2))  # fmt: skip
    live = (np.arange(c)[None, :] < np.asarray(n_channels)[:, None])[:, :, None, None]
    add = rng.random(n) < noise_prob
    if add.any():
        amp = (rng.uniform(0.2, 1.0, n) * noise * add)[:, None, None, None]
        out += (rng.standard_normal(out.shape) * amp * live).astype(np.float32)
    grad = rng.random(n) < sky_prob
    if grad.any():
        yy, xx = np.mgrid[0:s, 0:s] / (s - 1) - 0.5
        ang = rng.uniform(0, 2 * np.pi, n)
        amp = rng.uniform(0, 3.0, n) * noise * grad
        plane = (np.cos(ang)[:, None, None] * xx + np.sin(ang)[:, None, None] * yy) * amp[:, None, None]  # fmt: skip
        out += (plane[:, None] * live).astype(np.float32)
    return out


class StampClassifier(nn.Module):
    """4-class stamp classifier (sso, cosmic_ray, galaxy, star) with 1–4 dithers.

    Layers: one ConvNormAct(3×3) per stage at widths ``(w, 2w, 4w, 4w)``,
    2×2 max-pooling after each of the first three (S → S/8), then global
    average and max pooling concatenated, a hidden layer of ``4w`` units with
    dropout, and a linear head of 4 logits (about 4 M multiply-adds per
    32×32 stamp at ``w = 16``). The temperature (a buffer, 1 until fitted by
    :func:`fit_temperature`) calibrates :meth:`predict_proba`.

    Input ``(B, 2 * max_dithers, input_size, input_size)`` from
    :func:`prepare_stamps`; output logits ``(B, 4)``.

    Parameters
    ----------
    max_dithers : int, optional
        Default 4.
    width : int, optional
        Feature maps of the first stage. Default 16.
    input_size : int, optional
        Stamp side in pixels (a multiple of 8). Default 32.
    dropout : float, optional
        Default 0.1.

    Raises
    ------
    InputError
        For a size that is not a positive multiple of 8, or in ``forward`` for
        an input of the wrong shape.
    """

    name: ClassVar[str] = "stamp_classifier"
    classes: ClassVar[tuple[str, ...]] = CLASSES

    def __init__(
        self,
        max_dithers: int = MAX_DITHERS,
        *,
        width: int = 16,
        input_size: int = STAMP_SIZE,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if input_size < 8 or input_size % 8 or width < 1 or max_dithers < 1:
            msg = f"StampClassifier needs input_size a multiple of 8 and width, max_dithers >= 1, got {input_size=}, {width=}, {max_dithers=}"
            raise InputError(msg)
        self._config = {
            "max_dithers": int(max_dithers), "width": int(width),
            "input_size": int(input_size), "dropout": float(dropout),
        }  # fmt: skip
        w = int(width)
        cin = 2 * int(max_dithers)
        layers: list[nn.Module] = []
        for k, cout in enumerate((w, 2 * w, 4 * w, 4 * w)):
            layers.append(ConvNormAct(cin, cout))
            if k < 3:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(8 * w, 4 * w),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4 * w, len(CLASSES)),
        )
        self.register_buffer("temperature", torch.ones(()))

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin, s = 2 * self._config["max_dithers"], self._config["input_size"]
        if x.ndim != 4 or x.shape[1] != cin or tuple(x.shape[-2:]) != (s, s):
            msg = f"StampClassifier needs (B, {cin}, {s}, {s}) input from prepare_stamps, got {tuple(x.shape)}"
            raise InputError(msg)
        f = self.features(x)
        f = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(f)

    def predict_proba(self, x: torch.Tensor | np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
        """Calibrated class probabilities, shape (B, 4), in eval mode without gradients."""
        was = self.training
        self.eval()
        try:
            out = []
            with torch.inference_mode():
                for i in range(0, len(x), batch_size):
                    xb = torch.as_tensor(np.asarray(x[i : i + batch_size], np.float32))
                    out.append(torch.softmax(self(xb) / self.temperature, dim=1).numpy())
            return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)
        finally:
            self.train(was)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood of ``softmax(logits / T)``.

    Grid search over ``T`` in [0.3, 5] (log-spaced, 200 values).

    Parameters
    ----------
    logits : ndarray, shape (N, K)
    labels : ndarray of int, shape (N,)

    References
    ----------
    Guo et al. 2017, §4.2.
    """
    z = np.asarray(logits, float)
    y = np.asarray(labels, int)
    best, best_t = np.inf, 1.0
    for t in np.geomspace(0.3, 5.0, 200):
        zt = z / t
        zt = zt - zt.max(axis=1, keepdims=True)
        nll = -np.mean(zt[np.arange(len(y)), y] - np.log(np.exp(zt).sum(axis=1)))
        if nll < best:
            best, best_t = nll, float(t)
    return best_t
