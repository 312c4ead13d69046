"""Learned bolide segmentation: a small U-Net on 224x224 tiles of a motion ROI (bolide report §6.3, §7.2).

The pipeline finds motion in a clip, draws a region of interest (ROI) around
it, and asks :class:`BolideSegmenter` for a bolide probability per pixel of
the ROI in each frame with motion there. The network (a plain-torch
:class:`skysift.learning.models.UNet`, trained by
:func:`skysift.bolide.training.train_bolide` on simulated bolides composited
on real all-sky backgrounds) sees two channels (:func:`bolide_input`):

* ch0, the difference image in noise units, ``arcsinh(((frame - background)
  / noise) / 2)``: the moving light;
* ch1, the static sky around it, ``arcsinh(((background - box31(background))
  / noise) / 8)`` (``box31`` a 31x31 box mean): where stars, captions and
  structures are, so that their residuals (twinkling, jitter, changing text)
  can be told from a bolide.

``background`` is the per-pixel median of the clip's frames and ``noise``
the robust sigma of ``frame - background`` on the sky
(:func:`clip_background_and_noise` computes both exactly as in training).
Importing this module does not import torch; weights are loaded at the first
:meth:`BolideSegmenter.predict`.

Pixel coordinates are 0-based, x = column, y = row; ROIs are
``(x0, y0, x1, y1)`` pixel boxes, inclusive-exclusive; probabilities are
float32 in [0, 1], 1 = bolide (segmentation convention, ``True`` = object).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from skysift.errors import InputError

__all__ = [
    "BolideSegmenter",
    "WEIGHTS_NAME",
    "bolide_input",
    "clip_background_and_noise",
]

#: Registered name of the shipped weights.
WEIGHTS_NAME = "bolide_unet"
#: Softening of the difference channel's arcsinh stretch, in noise sigma.
DIFF_STRETCH = 2.0
#: Softening of the static-sky channel's arcsinh stretch, in noise sigma.
SKY_STRETCH = 8.0
#: Side (px) of the box mean subtracted from the background in ch1.
SKY_BOX = 31
#: Context (px) added around the ROI before the input is computed and the net run.
CONTEXT = 32
_BACKENDS = ("auto", "torch", "onnxruntime")


def _as_noise(noise: Any, shape: tuple[int, int]) -> np.ndarray:
    n = np.asarray(noise, np.float32)
    if n.ndim == 0:
        n = np.full(shape, float(n), np.float32)
    if n.shape != shape:
        msg = f"noise must be a number or an array of shape {shape}, got shape {n.shape}"
        raise InputError(msg)
    good = np.isfinite(n) & (n > 0)
    if not good.any():
        msg = "noise must be positive and finite somewhere (ADU sigma of frame - background)"
        raise InputError(msg)
    floor = max(float(np.median(n[good])) * 1e-2, 1e-6)
    return np.where(good, np.maximum(n, floor), float(np.median(n[good]))).astype(np.float32)


def bolide_input(frame: np.ndarray, background: np.ndarray, noise: Any) -> np.ndarray:
    """The network input of a frame: difference and static-sky channels, noise-normalised.

    ``ch0 = arcsinh((frame - background) / noise / 2)`` and
    ``ch1 = arcsinh((background - B) / noise / 8)``, with ``B`` the 31x31
    box mean of ``background`` (reflected at the edges). Non-finite pixels of
    either image give 0 in both channels.

    Parameters
    ----------
    frame, background : ndarray, shape (H, W)
        The frame and the clip's per-pixel median, ADU.
    noise : float or ndarray, shape (H, W)
        Sigma of ``frame - background`` on the sky, ADU (> 0; non-positive or
        non-finite pixels take the median).

    Returns
    -------
    ndarray, shape (2, H, W), float32

    Raises
    ------
    InputError
        If the images are not 2-D of the same shape, or ``noise`` has another
        shape or is nowhere positive.
    """
    f = np.asarray(frame, np.float32)
    b = np.asarray(background, np.float32)
    if f.ndim != 2 or f.shape != b.shape:
        msg = f"frame and background must be 2-D images of one shape, got {f.shape} and {b.shape}"
        raise InputError(msg)
    n = _as_noise(noise, f.shape)
    bad = ~(np.isfinite(f) & np.isfinite(b))
    if bad.any():
        fill = float(np.median(b[~bad])) if (~bad).any() else 0.0
        b = np.where(bad, fill, b)
        f = np.where(bad, b, f)
    d = np.arcsinh((f - b) / n / DIFF_STRETCH)
    local = cv2.blur(b, (SKY_BOX, SKY_BOX), borderType=cv2.BORDER_REFLECT)
    s = np.arcsinh((b - local) / n / SKY_STRETCH)
    out = np.stack([d, s]).astype(np.float32)
    out[:, bad] = 0.0
    return out


def clip_background_and_noise(
    frames: np.ndarray, sky: np.ndarray | None = None, *, max_frames: int = 8
) -> tuple[np.ndarray, float]:
    """Background (per-pixel median over the clip) and difference noise, as the net was trained.

    The noise is ``1.4826 * MAD`` of ``frame - background`` over the sky
    pixels of up to ``max_frames`` frames evenly spread through the clip
    (robust: a bolide, stars' residuals and captions do not inflate it).

    Parameters
    ----------
    frames : ndarray, shape (T, H, W)
        ADU.
    sky : ndarray of bool, shape (H, W), optional
        ``True`` = sky. Default: all finite pixels.
    max_frames : int, optional
        Default 8.

    Returns
    -------
    background : ndarray, shape (H, W), float32
    noise : float
        ADU.

    Raises
    ------
    InputError
        If ``frames`` is not 3-D or ``sky`` has another shape.
    """
    fr = np.asarray(frames, np.float32)
    if fr.ndim != 3 or fr.shape[0] < 1:
        msg = f"frames must be (T, H, W) with T >= 1, got shape {fr.shape}"
        raise InputError(msg)
    bg = np.median(fr, axis=0).astype(np.float32)
    idx = np.unique(np.linspace(0, fr.shape[0] - 1, min(max_frames, fr.shape[0])).astype(int))
    d = fr[idx] - bg[None]
    if sky is not None:
        sky = np.asarray(sky, bool)
        if sky.shape != bg.shape:
            msg = f"sky mask shape {sky.shape} differs from the frame shape {bg.shape}"
            raise InputError(msg)
        d = d[:, sky]
    d = d[np.isfinite(d)]
    if d.size == 0:
        return bg, 1.0
    med = float(np.median(d))
    noise = 1.4826 * float(np.median(np.abs(d - med)))
    if not noise > 0:  # e.g. one frame, or a noiseless clip
        noise = max(float(np.std(d)), 1e-3)
    return bg, noise


def _check_roi(roi: Any, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = shape
    if roi is None:
        return 0, 0, w, h
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in roi)
    except (TypeError, ValueError):
        msg = f"roi must be (x0, y0, x1, y1) pixel numbers, got {roi!r}"
        raise InputError(msg) from None
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        msg = f"roi {tuple(roi)} is empty inside the frame of shape {shape} (need x0 < x1, y0 < y1)"
        raise InputError(msg)
    return x0, y0, x1, y1


class BolideSegmenter:
    """Bolide probability per pixel of a frame's ROI, from a U-Net on 224x224 tiles.

    Input: a frame and the clip's background (per-pixel median of the
    clip's frames), both ``(H, W)`` ADU, the noise (sigma of ``frame -
    background``, ADU, a number or ``(H, W)``) and an optional ROI
    ``(x0, y0, x1, y1)`` (inclusive-exclusive pixels). Output: ``(H, W)``
    float32 probability in [0, 1] (1 = bolide), 0 outside the ROI and at
    non-finite pixels. The ROI is grown by :data:`CONTEXT` pixels of context
    (inside the frame), normalised (:func:`bolide_input`) and cut into
    224x224 tiles overlapping by ``tile - stride`` pixels with tapered
    weights (:func:`skysift.learning.inference.predict_image`); when the
    ROI and its context fit in one tile they are reflect-padded to one
    224x224 tile (a single forward pass).

    Parameters
    ----------
    weights : str, path, torch.nn.Module or None, optional
        Registered weights name or ``.safetensors`` file (with its ``.json``
        card beside it), or an in-memory network. Default None: the shipped
        ``"bolide_unet"``, loaded (SHA-256 checked) at the first call.
    backend : {"auto", "torch", "onnxruntime"}, optional
        ``"auto"`` uses ONNX Runtime when installed. Default "auto".
    tile : int, optional
        Tile side in pixels (a multiple of 16). Default 224.
    stride : int, optional
        Step between tiles in pixels. Default ``tile - 32``.
    threshold : float, optional
        Probability cut of :meth:`mask`. Default: the operating threshold in
        the weights' model card (``recipe["operating_threshold"]``, chosen on
        validation tiles), else 0.5.

    Raises
    ------
    InputError
        On a bad backend, tile or stride; at the first :meth:`predict`, if
        the weights file is missing or corrupted (the message names it).

    Examples
    --------
    >>> seg = BolideSegmenter()
    >>> prob = seg.predict(frames[k], np.median(frames, axis=0), noise, roi=(400, 300, 700, 520))  # doctest: +SKIP
    """

    def __init__(
        self,
        weights: Any = None,
        *,
        backend: str = "auto",
        tile: int = 224,
        stride: int | None = None,
        threshold: float | None = None,
    ) -> None:
        if backend not in _BACKENDS:
            msg = f"backend must be one of {_BACKENDS}, got {backend!r}"
            raise InputError(msg)
        tile = int(tile)
        if tile < 32 or tile % 16:
            msg = f"tile must be a multiple of 16 and >= 32 pixels, got {tile}"
            raise InputError(msg)
        stride = tile - 32 if stride is None else int(stride)
        if not 16 <= stride <= tile or stride % 16:
            msg = f"stride must be a multiple of 16 in [16, tile={tile}], got {stride}"
            raise InputError(msg)
        if threshold is not None and not 0 < threshold < 1:
            msg = f"threshold must be a probability in (0, 1), got {threshold}"
            raise InputError(msg)
        self.weights = WEIGHTS_NAME if weights is None else weights
        self.backend, self.tile, self.stride = backend, tile, stride
        self._threshold = threshold
        self._model: Any = None
        self._runner: Any = None

    @property
    def threshold(self) -> float:
        """Probability cut of :meth:`mask` (explicit, else the model card's, else 0.5)."""
        if self._threshold is None:
            self._threshold = _card_threshold(self.weights)
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        if not 0 < value < 1:
            msg = f"threshold must be a probability in (0, 1), got {value}"
            raise InputError(msg)
        self._threshold = float(value)

    @property
    def model(self) -> Any:
        """The network (loaded at first use)."""
        if self._model is None:
            self._model = _load(self.weights)
        return self._model

    def _run(self) -> Any:
        if self._runner is None:
            # needs torch (the learn extra): imported on use
            from skysift.learning.inference import make_runner

            self._runner = make_runner(self.model, self.backend, 1)
        return self._runner

    def predict(
        self, frame: np.ndarray, background: np.ndarray, noise: Any, roi: Any = None
    ) -> np.ndarray:
        """Bolide probability map of one frame (see the class docstring).

        Parameters
        ----------
        frame, background : ndarray, shape (H, W)
            ADU; NaNs allowed (probability 0 there).
        noise : float or ndarray, shape (H, W)
            ADU sigma of ``frame - background`` on the sky.
        roi : (x0, y0, x1, y1), optional
            Pixel box, inclusive-exclusive. Default None: the whole frame.

        Returns
        -------
        ndarray, shape (H, W), float32
            Probability in [0, 1]; 0 outside ``roi``.

        Raises
        ------
        InputError
            On mismatched shapes, a bad noise or an empty ROI, or unusable weights.
        """
        # needs torch (the learn extra): imported on use
        from skysift.learning.inference import predict_image

        f = np.asarray(frame, np.float32)
        b = np.asarray(background, np.float32)
        if f.ndim != 2 or f.shape != b.shape:
            msg = (
                f"frame and background must be 2-D images of one shape, got {f.shape} and {b.shape}"
            )
            raise InputError(msg)
        h, w = f.shape
        x0, y0, x1, y1 = _check_roi(roi, (h, w))
        n = np.asarray(noise, np.float32)
        if n.ndim == 2 and n.shape != (h, w):
            msg = f"noise must be a number or an array of shape {(h, w)}, got shape {n.shape}"
            raise InputError(msg)
        cx0, cy0 = max(x0 - CONTEXT, 0), max(y0 - CONTEXT, 0)
        cx1, cy1 = min(x1 + CONTEXT, w), min(y1 + CONTEXT, h)
        sl = (slice(cy0, cy1), slice(cx0, cx1))
        x = bolide_input(f[sl], b[sl], n[sl] if n.ndim == 2 else n)
        bad = ~(np.isfinite(f[sl]) & np.isfinite(b[sl]))
        ch, cw = x.shape[1:]
        if ch <= self.tile and cw <= self.tile:
            # one tile: the crop (ROI + context) reflect-padded to tile x tile, one forward pass
            pad = ((0, 0), (0, self.tile - ch), (0, self.tile - cw))
            mode = "reflect" if min(ch, cw) > 1 else "edge"
            padded = np.pad(x, pad, mode=mode) if ch < self.tile or cw < self.tile else x
            prob = predict_image(self._run(), padded, mode="whole")[:ch, :cw]
        else:
            prob = predict_image(
                self._run(), x, tile=self.tile, stride=self.stride, mode="tiled", batch_size=4
            )
        prob = np.asarray(prob, np.float32)
        prob[bad] = 0.0
        out = np.zeros((h, w), np.float32)
        out[y0:y1, x0:x1] = prob[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
        return out

    def mask(
        self,
        frame: np.ndarray,
        background: np.ndarray,
        noise: Any,
        roi: Any = None,
        threshold: float | None = None,
    ) -> np.ndarray:
        """Bolide segmentation mask ``(H, W)`` bool (``True`` = bolide): probability >= threshold."""
        th = self.threshold if threshold is None else float(threshold)
        return self.predict(frame, background, noise, roi) >= th


def _card_threshold(weights: Any) -> float:
    """The operating threshold recorded in the weights' card (0.5 when there is none)."""
    if not isinstance(weights, (str, Path)):
        return 0.5
    # needs torch (the learn extra): imported on use
    from skysift.learning.weights import weights_info

    try:
        th = weights_info(weights).recipe.get("operating_threshold")
    except InputError:
        return 0.5
    return float(th) if isinstance(th, (int, float)) and 0 < th < 1 else 0.5


def _load(weights: Any) -> Any:
    """The network of ``weights`` (a module is used as it is), with errors naming the file."""
    try:
        # torch is the optional learn extra: imported on use
        from torch import nn
    except ImportError as err:  # pragma: no cover - torch is a dependency
        msg = "the learned bolide segmenter needs torch"
        raise InputError(msg) from err
    if isinstance(weights, nn.Module):
        return weights.eval()
    # needs torch (the learn extra): imported on use
    from skysift.learning.weights import WEIGHTS, load_weights

    name = weights
    if not (isinstance(weights, str) and weights in WEIGHTS):
        p = Path(weights)
        if p.suffix not in (".safetensors", ".json"):
            p = p.with_name(p.name + ".safetensors")
        p = p.with_suffix(".safetensors")
        if not p.is_file():
            msg = (
                f"bolide segmenter weights {str(weights)!r}: no registered name "
                f"(registered: {sorted(WEIGHTS)}) and no file {p}"
            )
            raise InputError(msg)
        name = p
    try:
        model = load_weights(name)
    except InputError as err:
        msg = f"bolide segmenter weights {weights}: {err}"
        raise InputError(msg) from err
    except Exception as err:  # noqa: BLE001 - any corruption becomes an InputError naming the file
        msg = f"bolide segmenter weights {weights}: cannot be loaded ({type(err).__name__}: {err})"
        raise InputError(msg) from err
    cfg = getattr(model, "config", {})
    if int(cfg.get("in_channels", 2)) != 2:
        msg = f"bolide segmenter weights {weights}: need a 2-channel network, got {cfg.get('in_channels')}"
        raise InputError(msg)
    return model.eval()
