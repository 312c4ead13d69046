"""Smaller and faster models: pruning, reduced precision, ONNX export and sessions.

Bolide report §4.9: global magnitude pruning with fine-tuning, reduced
precision and an ONNX Runtime backend for CPU inference. ONNX files are not
shipped with the package: :func:`onnx_session_for` builds one at first use
into ``cache_dir()/onnx`` (``$SKYSIFT_CACHE``, else
``$XDG_CACHE_HOME/skysift``, else ``~/.cache/skysift``), named by a
fingerprint of the weights, and reuses it afterwards.

Exported graphs take ``(B, C, H, W)`` float32 and return *logits*. For the
segmentation nets the graph has no internal padding: H and W must be
multiples of ``size_multiple`` (stored in the ONNX metadata); the inference
code in :mod:`skysift.learning.inference` pads for you.

References
----------
.. [1] Han, S., Pool, J., Tran, J. & Dally, W. 2015, "Learning both Weights
   and Connections for Efficient Neural Networks", NeurIPS, §3 (magnitude
   pruning and retraining).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import warnings
import weakref
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from skysift.errors import InputError

__all__ = [
    "PRUNABLE",
    "cache_dir",
    "export_onnx",
    "fingerprint",
    "global_prune",
    "onnx_metadata",
    "onnx_session",
    "onnx_session_for",
    "sparsity",
    "to_precision",
]

#: Layer types whose ``weight`` is pruned.
PRUNABLE: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def cache_dir() -> Path:
    """Folder of built artefacts: ``$SKYSIFT_CACHE``, else ``$XDG_CACHE_HOME/skysift``, else ``~/.cache/skysift``.

    Read when called (never at import); created on first write.
    """
    env = os.environ.get("SKYSIFT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "skysift"


# --------------------------------------------------------------------------- pruning
def _prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero values among the weights of :data:`PRUNABLE` layers (biases and norms excluded)."""
    params = [getattr(m, name) for m, name in _prunable(model)]
    total = sum(p.numel() for p in params)
    if total == 0:
        return 0.0
    return float(sum((p == 0).sum().item() for p in params)) / total


def global_prune(
    model: nn.Module,
    amount: float,
    *,
    train_batches: Any = None,
    val_batches: Any = None,
    config: Any = None,
) -> nn.Module:
    """Global magnitude (L1) pruning of conv and linear weights, made permanent.

    The ``amount`` fraction of the weights with the smallest absolute value
    over all :data:`PRUNABLE` layers together is set to zero ([1]_ §3). When
    ``train_batches`` is given the model is fine-tuned with
    :class:`~skysift.learning.trainer.Trainer` while the pruning masks are
    active (pruned weights stay zero), then the masks are removed and the
    zeros baked into the weights.

    Parameters
    ----------
    model : nn.Module
        Pruned in place and returned.
    amount : float
        Fraction of weights to remove, in [0, 1).
    train_batches, val_batches : BatchSource, optional
        Fine-tuning data (see :meth:`Trainer.fit`).
    config : TrainConfig, optional
        Fine-tuning configuration (default: ``TrainConfig(epochs=5, lr=1e-4)``).

    Returns
    -------
    nn.Module
        The same model; :func:`sparsity` of it equals ``amount`` (to one weight).

    Raises
    ------
    InputError
        If ``amount`` is outside [0, 1) or the model has no prunable layer.

    Notes
    -----
    Unstructured zeros make the file compressible but do not speed up dense
    CPU kernels by themselves; see ``benchmarks/bench_learning_backends.py``.
    """
    if not 0 <= amount < 1:
        msg = f"pruning amount must be in [0, 1), got {amount}"
        raise InputError(msg)
    targets = _prunable(model)
    if not targets:
        msg = f"{type(model).__name__} has no conv or linear layer to prune"
        raise InputError(msg)
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=float(amount))
    try:
        if train_batches is not None:
            # needs torch (the learn extra): imported on use
            from skysift.learning.trainer import TrainConfig, Trainer

            cfg = (
                config
                if config is not None
                else TrainConfig(name="prune-finetune", epochs=5, lr=1e-4)
            )
            Trainer(model, cfg).fit(train_batches, val_batches, phase=f"prune{amount:g}")
    finally:
        for m, name in targets:
            prune.remove(m, name)
    return model


# --------------------------------------------------------------------------- precision
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def to_precision(model: nn.Module, dtype: str | torch.dtype = "bfloat16") -> nn.Module:
    """Copy of ``model`` with parameters and buffers cast to ``dtype``.

    ``predict`` of the copy casts its input to the same dtype; the inference
    code returns float32 probabilities whatever the model dtype. On CPU,
    bfloat16 only pays where the processor has native bf16 matrix units
    (AVX512-BF16 / AMX); elsewhere it is usually *slower* than float32 — see
    ``benchmarks/bench_learning_backends.py``.

    Raises
    ------
    InputError
        If ``dtype`` is not float32, bfloat16 or float16.
    """
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            msg = f"unknown dtype {dtype!r}; valid: {sorted(_DTYPES)}"
            raise InputError(msg)
        dtype = _DTYPES[dtype]
    return copy.deepcopy(model).to(dtype=dtype).eval()


# --------------------------------------------------------------------------- ONNX
class _OnnxCore(nn.Module):
    """Graph exported to ONNX: the net without the internal H/W padding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fwd = getattr(self.model, "_forward", None)
        return fwd(x) if fwd is not None and hasattr(self.model, "size_multiple") else self.model(x)


def _example_input(model: nn.Module) -> torch.Tensor:
    cfg = getattr(model, "config", {})
    c = int(cfg.get("in_channels", 1))
    if "input_size" in cfg:
        s = int(cfg["input_size"])
    else:
        s = max(64, int(getattr(model, "size_multiple", 1)))
    p = next(model.parameters())
    return torch.zeros(1, c, s, s, dtype=p.dtype, device=p.device)


def export_onnx(model: nn.Module, path: str | Path | None = None, *, opset: int = 17) -> bytes:
    """Export a model to ONNX (opset >= 17) with dynamic batch, H and W.

    Segmentation nets are exported without their internal padding (H, W must
    be multiples of ``size_multiple``; :mod:`skysift.learning.inference`
    pads); the classifier keeps its fixed input size with a dynamic batch.
    The graph input is ``"image"`` ``(B, C, H, W)``, the output ``"logits"``.
    The model name, config and ``size_multiple`` are written into the ONNX
    metadata (see :func:`onnx_metadata`).

    Uses the TorchScript-based exporter (``dynamo=False``), which needs no
    extra package (the torch.export-based one needs ``onnxscript``); its
    deprecation warning is silenced here.

    Parameters
    ----------
    model : nn.Module
    path : str or Path, optional
        Also write the file here (parent folders created).
    opset : int, optional
        ONNX opset. Default 17.

    Returns
    -------
    bytes
        The serialised ONNX model.

    Raises
    ------
    InputError
        If ``opset < 17``.
    """
    if opset < 17:
        msg = f"ONNX opset must be >= 17, got {opset}"
        raise InputError(msg)
    core = _OnnxCore(copy.deepcopy(model).float()).eval()
    x = _example_input(core.model).float()
    classifier = "input_size" in getattr(model, "config", {})
    axes = {0: "batch"} if classifier else {0: "batch", 2: "height", 3: "width"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter DeprecationWarning and TracerWarnings
        torch.onnx.export(
            core,
            (x,),
            buf,
            opset_version=opset,
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": dict(axes)},
        )
    data = buf.getvalue()
    try:
        # torch is the optional learn extra: imported on use
        import onnx
    except ImportError:  # pragma: no cover - onnx comes with torch's exporter
        pass
    else:
        proto = onnx.load_from_string(data)
        meta = {
            "skysift_model": getattr(model, "name", type(model).__name__),
            "skysift_config": json.dumps(dict(getattr(model, "config", {}))),
            "skysift_size_multiple": str(int(getattr(model, "size_multiple", 1))),
        }
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        data = proto.SerializeToString()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data


def onnx_session(source: str | Path | bytes, *, num_threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU provider.

    Parameters
    ----------
    source : path or bytes
        ONNX file or serialised model.
    num_threads : int, optional
        Intra-op threads (default: ``torch.get_num_threads()``).

    Raises
    ------
    InputError
        If onnxruntime is not installed or the file is missing.
    """
    try:
        # onnxruntime is the optional learn extra: imported on use
        import onnxruntime as ort
    except ImportError as exc:
        msg = "onnxruntime is not installed; `pip install onnxruntime` or use backend='torch'"
        raise InputError(msg) from exc
    if not isinstance(source, bytes):
        source = Path(source)
        if not source.is_file():
            msg = f"ONNX file {source} does not exist"
            raise InputError(msg)
        source = str(source)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(num_threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_metadata(session: Any) -> dict[str, Any]:
    """``model``, ``config`` and ``size_multiple`` stored by :func:`export_onnx` (empty if absent)."""
    props = session.get_modelmeta().custom_metadata_map
    out: dict[str, Any] = {}
    if "skysift_model" in props:
        out["model"] = props["skysift_model"]
    if "skysift_config" in props:
        out["config"] = json.loads(props["skysift_config"])
    out["size_multiple"] = int(props.get("skysift_size_multiple", 1))
    return out


def fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex) of the model name, config and every parameter and buffer."""
    h = hashlib.sha256()
    h.update(getattr(model, "name", type(model).__name__).encode())
    h.update(json.dumps(dict(getattr(model, "config", {})), sort_keys=True).encode())
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(str(value.dtype).encode())
        h.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


_SESSIONS: weakref.WeakKeyDictionary[nn.Module, tuple[str, int, Any]] = weakref.WeakKeyDictionary()


def onnx_session_for(
    model: nn.Module, *, num_threads: int | None = None, use_disk_cache: bool = True
) -> Any:
    """ONNX Runtime session of ``model``, exported at first use and cached.

    In memory per model object (re-exported when its weights change) and on
    disk as ``cache_dir()/onnx/<name>-<fingerprint[:16]>.onnx``.

    Raises
    ------
    InputError
        If onnxruntime is not installed.
    """
    fp = fingerprint(model)
    threads = int(num_threads or torch.get_num_threads())
    hit = _SESSIONS.get(model)
    if hit is not None and hit[0] == fp and hit[1] == threads:
        return hit[2]
    data: bytes | None = None
    path = cache_dir() / "onnx" / f"{getattr(model, 'name', 'model')}-{fp[:16]}.onnx"
    if use_disk_cache and path.is_file():
        data = path.read_bytes()
    if data is None:
        data = export_onnx(model)
        if use_disk_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(data)
                tmp.replace(path)
            except OSError:  # read-only cache: keep it in memory only
                pass
    session = onnx_session(data, num_threads=threads)
    _SESSIONS[model] = (fp, threads, session)
    return session
