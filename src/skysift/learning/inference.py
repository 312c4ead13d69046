"""Inference on images of any size: normalisation, tiling with tapered overlap, backends.

:func:`predict_image` runs a segmentation net (a torch model or an ONNX
Runtime session) on a whole ``(H, W)`` frame, tile by tile or in one pass;
:class:`Predictor` bundles a model with the normalisation used at training
time (stored in the weights metadata) and the tiling settings.

Tiling
------
The image is reflect-padded by ``lead`` pixels at the top/left (``margin``
rounded up to a multiple of the net's ``size_multiple`` so the pooling grid
stays aligned with the whole image) and at the bottom/right up to a whole
number of tiles. Tiles start every ``stride`` pixels. Each tile's prediction
is weighted by a separable window that is 0 for the ``margin`` pixels next to
the tile edge, rises as ``sin²`` across the rest of the overlap and is 1 in
the middle (edges touching the padded canvas get weight 1); overlapping
windows sum to one, so seams vanish. With ``margin`` at least the
receptive-field radius of the net and ``stride`` a multiple of
``size_multiple``, tiled and whole-image predictions agree to float rounding
away from the image border (nets with global pooling — squeeze-excitation —
or group norm differ slightly by design). An image smaller than a tile is
padded to one tile.

NaN handling
------------
Non-finite pixels are replaced by the median of their 5×5 neighbourhood
(after a first fill with the global median) before normalisation, and the
output probability is set to 0 there.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from skysift.errors import InputError

__all__ = [
    "NORMALISATIONS",
    "Normalisation",
    "Predictor",
    "make_runner",
    "predict_image",
    "taper_window",
]

# --------------------------------------------------------------------------- normalisation


def _robust_stats(data: np.ndarray) -> tuple[float, float]:
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return 0.0, 1.0
    med = float(np.median(finite))
    mad = float(np.median(np.abs(finite - med))) * 1.4826
    if not mad > 0:
        mad = float(np.std(finite)) or 1.0
    return med, mad


def _moment_stats(data: np.ndarray) -> tuple[float, float]:
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return 0.0, 1.0
    return float(finite.mean()), float(finite.std()) or 1.0


#: Normalisation names and their parameters, see :class:`Normalisation`.
NORMALISATIONS = ("arcsinh", "median_mad", "zscore", "none")


@dataclass(frozen=True)
class Normalisation:
    """Per-image intensity normalisation applied before the net (and at training time).

    Parameters
    ----------
    name : {"arcsinh", "median_mad", "zscore", "none"}
        ``"arcsinh"``: ``D̃ = arcsinh((D − μ) / (scale·σ))`` (satellite paper
        eq. 1) with μ, σ the median and 1.4826·MAD (``robust=True``) or the
        mean and standard deviation of the image; ``"median_mad"``:
        ``(D − median) / (scale·1.4826·MAD)``; ``"zscore"``: ``(D − mean) / std``;
        ``"none"``: unchanged. Statistics ignore non-finite pixels and are
        taken per image over all channels.
    params : dict, optional
        ``scale`` (default 1) and, for arcsinh, ``robust`` (default True).

    Raises
    ------
    InputError
        If ``name`` is unknown.
    """

    name: str = "arcsinh"
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in NORMALISATIONS:
            msg = f"unknown normalisation {self.name!r}; valid names: {list(NORMALISATIONS)}"
            raise InputError(msg)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Normalise an ``(H, W)`` or ``(C, H, W)`` array; returns float32."""
        data = np.asarray(image, dtype=np.float32)
        if self.name == "none":
            return data
        scale = float(self.params.get("scale", 1.0))
        if self.name == "zscore" or (
            self.name == "arcsinh" and not self.params.get("robust", True)
        ):
            mu, sigma = _moment_stats(data)
        else:
            mu, sigma = _robust_stats(data)
        out = (data - np.float32(mu)) / np.float32(scale * sigma)
        if self.name == "arcsinh":
            out = np.arcsinh(out)
        return out.astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in model cards)."""
        return {"name": self.name, **self.params}

    @classmethod
    def from_spec(cls, spec: str | dict | Normalisation | None) -> Normalisation:
        """From a name, a :meth:`to_dict` dict, an instance, or None (→ ``"none"``)."""
        if spec is None:
            return cls("none")
        if isinstance(spec, Normalisation):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        params = dict(spec)
        return cls(params.pop("name", "none"), params)


def _as_normaliser(spec: Any) -> Callable[[np.ndarray], np.ndarray]:
    if callable(spec) and not isinstance(spec, str | dict):
        return spec
    return Normalisation.from_spec(spec)


# --------------------------------------------------------------------------- NaN


def _fill_nans(data: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Replace non-finite pixels by the local 5×5 median; return data and the bad mask (H, W)."""
    bad = ~np.isfinite(data)
    if not bad.any():
        return data, None
    if bad.all():
        msg = "the image has no finite pixel"
        raise InputError(msg)

    out = data.copy()
    for c in range(out.shape[0]):
        plane, b = out[c], bad[c]
        if not b.any():
            continue
        plane[b] = np.median(plane[~b])
        local = cv2.medianBlur(np.ascontiguousarray(plane, dtype=np.float32), 5)
        plane[b] = local[b]
    return out, bad.any(axis=0)


# --------------------------------------------------------------------------- windows


def taper_window(tile: int, stride: int, margin: int) -> np.ndarray:
    """1-D blending weights of one tile, shape ``(tile,)``.

    0 for the ``margin`` pixels at each end, ``sin²`` ramp over the remaining
    ``tile - stride - 2·margin`` pixels of the overlap, 1 in between. Windows
    shifted by ``stride`` sum to exactly 1 (``sin² + cos² = 1``).

    Raises
    ------
    InputError
        If ``stride > tile`` or ``2·margin > tile - stride``.
    """
    overlap = tile - stride
    if stride < 1 or overlap < 0 or margin < 0 or 2 * margin > overlap:
        msg = (
            f"tiling needs 1 <= stride <= tile and 0 <= 2*margin <= tile - stride, "
            f"got tile={tile}, stride={stride}, margin={margin}"
        )
        raise InputError(msg)
    w = np.ones(tile, dtype=np.float64)
    ramp = overlap - 2 * margin
    if overlap:
        head = np.zeros(overlap)
        j = np.arange(ramp)
        head[margin : margin + ramp] = np.sin(0.5 * np.pi * (j + 0.5) / ramp) ** 2
        head[margin + ramp :] = 1.0
        w[:overlap] = head
        w[tile - overlap :] = np.minimum(w[tile - overlap :], head[::-1])
    return w


# --------------------------------------------------------------------------- backends


def _is_session(obj: Any) -> bool:
    return hasattr(obj, "run") and hasattr(obj, "get_inputs") and not isinstance(obj, nn.Module)


class _TorchRunner:
    backend = "torch"

    def __init__(self, model: nn.Module, num_threads: int | None) -> None:
        self.model = model
        self.num_threads = num_threads
        self.size_multiple = int(getattr(model, "size_multiple", 1))
        self.out_channels = int(getattr(model, "config", {}).get("out_channels", 1))
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits of an aligned batch (B, C, h, w) → (B, K, h, w) float32."""
        old = torch.get_num_threads()
        was_training = self.model.training
        try:
            if self.num_threads:
                torch.set_num_threads(self.num_threads)
            self.model.eval()
            with torch.inference_mode():
                t = torch.from_numpy(x).to(device=self.device, dtype=self.dtype)
                # channels-last activations: ~1.5x (float32) to ~3x (bfloat16) faster on CPU
                t = t.contiguous(memory_format=torch.channels_last)
                return self.model(t).float().cpu().numpy()
        finally:
            torch.set_num_threads(old)
            self.model.train(was_training)


class _OrtRunner:
    backend = "onnxruntime"

    def __init__(self, session: Any, size_multiple: int | None = None) -> None:
        # needs torch (the learn extra): imported on use
        from skysift.learning.compression import onnx_metadata

        meta = onnx_metadata(session)
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.size_multiple = int(size_multiple or meta.get("size_multiple", 1))
        self.out_channels = int(meta.get("config", {}).get("out_channels", 1))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[
            0
        ]


def make_runner(model: Any, backend: str, num_threads: int | None) -> _TorchRunner | _OrtRunner:
    """A callable running ``model`` on a batch (``(B, C, H, W)`` float32 -> logits).

    Parameters
    ----------
    model : torch.nn.Module
    backend : {"auto", "torch", "onnxruntime"}
        ``"auto"`` takes onnxruntime when it is installed, else torch.
    num_threads : int or None
        Threads of the runner (None: the library's default).

    Raises
    ------
    InputError
        If the backend is unknown or not installed.
    """
    if backend not in ("auto", "torch", "onnxruntime"):
        msg = f"unknown backend {backend!r}; valid: ['auto', 'onnxruntime', 'torch']"
        raise InputError(msg)
    if isinstance(model, _TorchRunner | _OrtRunner):
        return model
    if _is_session(model):
        if backend == "torch":
            msg = "backend='torch' needs a torch model, got an ONNX Runtime session"
            raise InputError(msg)
        return _OrtRunner(model)
    if not isinstance(model, nn.Module):
        msg = f"predict_image needs a torch model or an ONNX Runtime session, got {type(model).__name__}"
        raise InputError(msg)
    if backend == "torch":
        return _TorchRunner(model, num_threads)
    # needs torch (the learn extra): imported on use
    from skysift.learning.compression import onnx_session_for

    if backend == "onnxruntime":
        return _OrtRunner(
            onnx_session_for(model, num_threads=num_threads), getattr(model, "size_multiple", 1)
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return _TorchRunner(model, num_threads)
    if next(model.parameters()).dtype != torch.float32:
        return _TorchRunner(
            model, num_threads
        )  # a reduced-precision copy asked for torch speed/size
    try:
        session = onnx_session_for(model, num_threads=num_threads)
    except Exception as exc:  # noqa: BLE001 - any export failure falls back to torch
        warnings.warn(
            f"ONNX export failed ({exc}); using the torch backend", RuntimeWarning, stacklevel=3
        )
        return _TorchRunner(model, num_threads)
    return _OrtRunner(session, getattr(model, "size_multiple", 1))


# --------------------------------------------------------------------------- prediction


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x, dtype=np.float32)
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


def _pad_to(data: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    if not (top or bottom or left or right):
        return data
    h, w = data.shape[-2:]
    mode = "reflect" if h > 1 and w > 1 else "edge"
    return np.pad(data, ((0, 0), (top, bottom), (left, right)), mode=mode)


def _run_whole(run: _TorchRunner | _OrtRunner, data: np.ndarray) -> np.ndarray:
    h, w = data.shape[-2:]
    m = run.size_multiple
    padded = _pad_to(data, 0, (-h) % m, 0, (-w) % m)
    return run(padded[None])[0, :, :h, :w]


def _run_tiled(
    run: _TorchRunner | _OrtRunner,
    data: np.ndarray,
    tile: int,
    stride: int,
    margin: int,
    batch_size: int,
) -> np.ndarray:
    m = run.size_multiple
    if tile % m:
        msg = f"tile ({tile}) must be a multiple of the net's size_multiple ({m})"
        raise InputError(msg)
    h, w = data.shape[-2:]
    lead = int(math.ceil(margin / m) * m)

    def n_tiles(size: int) -> int:
        return max(1, int(math.ceil(max(lead + size + margin - tile, 0) / stride)) + 1)

    ny, nx = n_tiles(h), n_tiles(w)
    hc, wc = (ny - 1) * stride + tile, (nx - 1) * stride + tile
    canvas = _pad_to(data, lead, hc - h - lead, lead, wc - w - lead)
    base = taper_window(tile, stride, margin)

    def window(k: int, n: int) -> np.ndarray:
        win = base.copy()
        if k == 0:
            win[: tile // 2] = 1.0
        if k == n - 1:
            win[tile // 2 :] = np.maximum(win[tile // 2 :], 1.0)
        return win

    wy = [window(k, ny) for k in range(ny)]
    wx = [window(k, nx) for k in range(nx)]
    acc: np.ndarray | None = None
    wsum = np.zeros((hc, wc), dtype=np.float64)
    coords = [(i, j) for i in range(ny) for j in range(nx)]
    for start in range(0, len(coords), batch_size):
        chunk = coords[start : start + batch_size]
        batch = np.stack(
            [
                canvas[:, i * stride : i * stride + tile, j * stride : j * stride + tile]
                for i, j in chunk
            ]
        )
        out = run(batch)
        if acc is None:
            acc = np.zeros((out.shape[1], hc, wc), dtype=np.float64)
        for (i, j), pred in zip(chunk, out, strict=True):
            w2 = np.outer(wy[i], wx[j])
            ys, xs = slice(i * stride, i * stride + tile), slice(j * stride, j * stride + tile)
            acc[:, ys, xs] += pred * w2
            wsum[ys, xs] += w2
    if acc is None:  # pragma: no cover - there is always at least one tile
        msg = "no tile was predicted"
        raise InputError(msg)
    return (acc / wsum)[:, lead : lead + h, lead : lead + w].astype(np.float32)


def predict_image(
    model: Any,
    image: np.ndarray,
    *,
    tile: int = 256,
    stride: int = 192,
    margin: int | None = None,
    batch_size: int = 8,
    mode: str = "tiled",
    normalise: Any = None,
    backend: str = "auto",
    num_threads: int | None = None,
    return_logits: bool = False,
) -> np.ndarray:
    """Probability map of a segmentation net on an image of any size.

    Parameters
    ----------
    model : nn.Module or onnxruntime.InferenceSession
        Net returning logits (see :mod:`skysift.learning.models`), or a
        session made by :func:`~skysift.learning.compression.onnx_session`.
    image : ndarray, shape (H, W) or (C, H, W)
        Raw pixel values; NaN/inf allowed (see the module docstring).
    tile : int, optional
        Tile side in pixels, a multiple of the net's ``size_multiple``. Default 256.
    stride : int, optional
        Step between tiles in pixels (``tile - stride`` is the overlap); keep it
        a multiple of ``size_multiple``. Default 192.
    margin : int, optional
        Pixels next to each tile edge that get zero weight; set it to the
        receptive-field radius for exact agreement with whole-image
        prediction. Default ``(tile - stride) // 4``.
    batch_size : int, optional
        Tiles per forward pass. Default 8.
    mode : {"tiled", "whole"}, optional
        ``"whole"`` runs the fully convolutional net on the entire image at
        once (more memory, no seams at all). Default ``"tiled"``.
    normalise : str, dict, Normalisation or callable, optional
        Intensity normalisation as at training time (e.g. ``"arcsinh"``).
        Default None (the image is used as is).
    backend : {"auto", "torch", "onnxruntime"}, optional
        ``"auto"`` uses ONNX Runtime when installed (the model is exported
        once and cached, see :func:`~skysift.learning.compression.onnx_session_for`)
        and torch otherwise, or for reduced-precision models. Default ``"auto"``.
    num_threads : int, optional
        CPU threads of the backend (default: torch's current setting).
    return_logits : bool, optional
        Return logits instead of probabilities (NaN pixels then hold ``-inf``).

    Returns
    -------
    ndarray of float32, shape (H, W), or (K, H, W) for a net with K > 1 outputs
        Probability that each pixel belongs to an object (``1`` = object);
        0 at non-finite input pixels.

    Raises
    ------
    InputError
        For a bad image shape, tiling parameters, mode or backend.
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or min(data.shape[-2:]) < 1:
        msg = f"predict_image needs an (H, W) or (C, H, W) image, got shape {np.shape(image)}"
        raise InputError(msg)
    if mode not in ("tiled", "whole"):
        msg = f"mode must be 'tiled' or 'whole', got {mode!r}"
        raise InputError(msg)
    if batch_size < 1:
        msg = f"batch_size must be >= 1, got {batch_size}"
        raise InputError(msg)
    run = make_runner(model, backend, num_threads)
    data, bad = _fill_nans(data)
    data = np.ascontiguousarray(_as_normaliser(normalise)(data), dtype=np.float32)
    if mode == "whole":
        logits = _run_whole(run, data)
    else:
        margin = (tile - stride) // 4 if margin is None else int(margin)
        taper_window(tile, stride, margin)  # validates
        logits = _run_tiled(run, data, tile, stride, margin, batch_size)
    out = logits if return_logits else _sigmoid(logits)
    if bad is not None:
        out[:, bad] = -np.inf if return_logits else 0.0
    return out[0] if out.shape[0] == 1 else out


class Predictor:
    """A net plus the normalisation and tiling it was trained for; call it on raw frames.

    Input: an ``(H, W)`` (or ``(C, H, W)``) raw image of any size, NaNs allowed.
    Output: float32 probability map ``(H, W)`` (``1`` = object), 0 at NaNs.

    Parameters
    ----------
    model : nn.Module or onnxruntime.InferenceSession
    normalisation : str, dict, Normalisation or callable, optional
        Default ``"arcsinh"`` (satellite paper eq. 1).
    tile, stride, margin, batch_size, mode, backend, num_threads
        As in :func:`predict_image`; the backend is resolved once (an ONNX
        session is built at construction for ``"auto"``/``"onnxruntime"``).
    threshold : float, optional
        Used by :meth:`mask`. Default 0.5.
    """

    def __init__(
        self,
        model: Any,
        *,
        normalisation: Any = "arcsinh",
        tile: int = 256,
        stride: int = 192,
        margin: int | None = None,
        batch_size: int = 8,
        mode: str = "tiled",
        backend: str = "auto",
        num_threads: int | None = None,
        threshold: float = 0.5,
    ) -> None:
        self.model = model
        self.normalisation = (
            normalisation
            if callable(normalisation) and not isinstance(normalisation, str | dict)
            else Normalisation.from_spec(normalisation)
        )
        self.tile, self.stride, self.margin = tile, stride, margin
        self.batch_size, self.mode, self.threshold = batch_size, mode, threshold
        self._run = make_runner(model, backend, num_threads)

    @property
    def backend(self) -> str:
        """The backend in use: ``"torch"`` or ``"onnxruntime"``."""
        return self._run.backend

    @classmethod
    def from_weights(cls, name_or_path: str | Path, **kwargs: Any) -> Predictor:
        """Load registered or saved weights (sha256-checked) with their stored normalisation.

        Raises
        ------
        InputError
            If the weights are unknown, missing or corrupted.
        """
        # needs torch (the learn extra): imported on use
        from skysift.learning.weights import load_weights, weights_info

        model = load_weights(name_or_path)
        info = weights_info(name_or_path)
        kwargs.setdefault("normalisation", info.normalisation or None)
        return cls(model, **kwargs)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Probability map of ``image`` (see the class docstring)."""
        return predict_image(
            self._run,
            image,
            tile=self.tile,
            stride=self.stride,
            margin=self.margin,
            batch_size=self.batch_size,
            mode=self.mode,
            normalise=self.normalisation,
        )

    def mask(self, image: np.ndarray) -> np.ndarray:
        """Boolean object mask ``(H, W)``: probability >= ``threshold`` (``True`` = object)."""
        return self(image) >= self.threshold
