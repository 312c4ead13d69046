"""Training machinery kept apart from the models: configuration, loop, checkpoints.

``Trainer(model, TrainConfig(...)).fit(train_batches, val_batches)`` trains
any model of :mod:`skysift.learning.models` on batches streamed from a
simulator (no data set on disk). ``fit`` can be called again with other batch
sources for the staged training of the bolide report (§4.1, §4.8): white
dots on black, then synthetic stars on real backgrounds, then real frames
labelled by the model itself (:func:`pseudo_label`).

Reproducibility: with the same ``TrainConfig.seed``, the same initial weights
(seed ``torch.manual_seed`` before building the model) and the same data
source, two runs on CPU give bit-identical weights. ``fit`` seeds torch and a
:class:`numpy.random.Generator` handed to the data source, enables
``torch.use_deterministic_algorithms`` and sets the thread count, and restores
all of that when it returns (the caller's torch RNG state included); nothing
is changed at import.

References
----------
.. [1] Kingma, D. P. & Ba, J. 2015, "Adam: A Method for Stochastic
   Optimization", ICLR, §2 (Algorithm 1).
.. [2] Smith, L. N. 2017, "Cyclical Learning Rates for Training Neural
   Networks", WACV, §3.1 (triangular policy).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from skysift.errors import InputError
from skysift.learning.losses import make_loss

__all__ = [
    "BatchSource",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "load_checkpoint",
    "pseudo_label",
]

#: A batch source: an iterable of ``(x, y)`` batches, or a callable
#: ``source(rng, batch_size) -> (x, y)`` (or ``source(rng) -> (x, y)``) called
#: once per step with the trainer's :class:`numpy.random.Generator`.
#: ``x`` is ``(B, C, H, W)`` float (tensor or array); ``y`` has the shape of the logits.
BatchSource = Iterable[tuple[Any, Any]] | Callable[..., tuple[Any, Any]]


def _f(default: Any, description: str, **kw: Any) -> Any:
    if isinstance(default, dict | list):
        return field(
            default_factory=lambda: copy.deepcopy(default),
            metadata={"description": description, **kw},
        )
    return field(default=default, metadata={"description": description, **kw})


@dataclass
class TrainConfig:
    """Training configuration as data; saved into every checkpoint and model card.

    :meth:`describe` lists every field with its default and description.
    Schedulers follow the bolide report §4.6: ``"plateau"``
    (ReduceLROnPlateau on the validation loss, once per epoch) or ``"cyclic"``
    (triangular CyclicLR, Smith 2017, "Cyclical Learning Rates for Training
    Neural Networks", WACV, §3, stepped every batch).

    Raises
    ------
    InputError
        On construction, if a value is out of range.
    """

    name: str = _f("run", "Name of the run, written into checkpoints and model cards.")
    epochs: int = _f(20, "Maximum number of epochs.")
    steps_per_epoch: int = _f(50, "Training batches per epoch (streamed sources are endless).")
    val_steps: int = _f(
        4, "Validation batches drawn once per fit from a streaming validation source."
    )
    batch_size: int = _f(8, "Batch size asked of callable batch sources.")
    lr: float = _f(1e-3, "Adam learning rate (the initial one for 'plateau').")
    weight_decay: float = _f(0.0, "Adam weight decay (L2).")
    scheduler: str = _f("plateau", "Learning-rate schedule: 'plateau', 'cyclic' or 'none'.")
    plateau_factor: float = _f(0.5, "ReduceLROnPlateau: factor applied to the learning rate.")
    plateau_patience: int = _f(2, "ReduceLROnPlateau: epochs without improvement before reducing.")
    cyclic_base_lr: float = _f(1e-4, "CyclicLR: lower learning rate.")
    cyclic_max_lr: float = _f(3e-3, "CyclicLR: upper learning rate.")
    cyclic_step_size: int | None = _f(None, "CyclicLR: batches per half cycle (None: 2 epochs).")
    early_stopping_patience: int = _f(
        5, "Stop after this many epochs without validation improvement (0: never)."
    )
    min_delta: float = _f(
        0.0, "Smallest decrease of the validation loss that counts as improvement."
    )
    loss: str = _f("bce+dice", "Loss name for skysift.learning.losses.make_loss.")
    loss_params: dict = _f(
        {}, "Keyword arguments of the loss (pos_weight, alpha, beta, smooth, weights)."
    )
    grad_clip: float | None = _f(None, "Clip the gradient norm to this value (None: no clipping).")
    seed: int = _f(0, "Seed of torch and of the numpy Generator handed to the batch source.")
    num_threads: int | None = _f(
        2, "torch threads during fit (restored afterwards; None: unchanged)."
    )
    deterministic: bool = _f(True, "Use torch.use_deterministic_algorithms during fit.")
    progress: bool = _f(False, "Show a tqdm progress bar over epochs.")
    checkpoint_path: str | None = _f(
        None, "Also write the best checkpoint to this file (None: memory only)."
    )

    def __post_init__(self) -> None:
        for key in ("epochs", "steps_per_epoch", "val_steps", "batch_size"):
            if int(getattr(self, key)) < 1:
                msg = f"TrainConfig.{key} must be >= 1, got {getattr(self, key)}"
                raise InputError(msg)
        if self.scheduler not in ("plateau", "cyclic", "none"):
            msg = f"TrainConfig.scheduler must be 'plateau', 'cyclic' or 'none', got {self.scheduler!r}"
            raise InputError(msg)
        if not self.lr > 0:
            msg = f"TrainConfig.lr must be > 0, got {self.lr}"
            raise InputError(msg)
        if self.early_stopping_patience < 0:
            msg = f"TrainConfig.early_stopping_patience must be >= 0, got {self.early_stopping_patience}"
            raise InputError(msg)

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Every field as ``{"name", "default", "description"}``."""
        out = []
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            out.append(
                {"name": f.name, "default": default, "description": f.metadata["description"]}
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output.

        Raises
        ------
        InputError
            If a key is not a field.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            msg = f"unknown TrainConfig fields {sorted(unknown)}; valid: {sorted(names)}"
            raise InputError(msg)
        return cls(**data)


@dataclass
class TrainResult:
    """Outcome of one :meth:`Trainer.fit` call (one training phase).

    Attributes
    ----------
    history : list of dict
        Per epoch: ``epoch`` (1-based), ``train_loss``, ``val_loss``, ``lr``
        (at the end of the epoch), ``seconds``.
    best_epoch : int
        Epoch of the lowest validation loss (its weights are restored in the model).
    best_val_loss : float
    best_state : dict of str to Tensor
        Copy of the best ``state_dict``.
    stopped_early : bool
    phase : str
    config : dict
        ``TrainConfig.to_dict()`` of the run.
    model_name : str
    model_config : dict
    seconds : float
        Wall time of the fit.
    """

    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    best_state: dict[str, torch.Tensor]
    stopped_early: bool
    phase: str
    config: dict[str, Any]
    model_name: str
    model_config: dict[str, Any]
    seconds: float

    @property
    def val_losses(self) -> list[float]:
        """Validation loss per epoch."""
        return [h["val_loss"] for h in self.history]

    @property
    def train_losses(self) -> list[float]:
        """Mean training loss per epoch."""
        return [h["train_loss"] for h in self.history]


def _to_tensor(a: Any, what: str) -> torch.Tensor:
    t = (
        torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if isinstance(a, np.ndarray)
        else torch.as_tensor(a)
    )
    t = t.float()
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim not in (2, 4):
        msg = f"{what} must be (B, C, H, W) (or (B, H, W), or (B, K) for classifiers), got shape {tuple(t.shape)}"
        raise InputError(msg)
    return t


def _batches(
    source: BatchSource, rng: np.random.Generator, batch_size: int
) -> Iterator[tuple[Any, Any]]:
    """Endless stream of batches from a callable or iterable source."""
    if callable(source) and not isinstance(source, Iterable):
        n_args = len(inspect.signature(source).parameters)
        while True:
            yield source(rng, batch_size) if n_args >= 2 else source(rng)
    else:
        restartable = iter(source) is not source
        while True:
            n = 0
            for item in source:
                n += 1
                yield item
            if n == 0 or not restartable:
                msg = "the batch source ran out of batches"
                raise InputError(msg)


def _seed_int(seed: int, phase_index: int) -> int:
    return int(np.random.SeedSequence([seed, phase_index]).generate_state(1)[0])


class Trainer:
    """Adam + scheduler + early stopping around a model (which stays a plain ``nn.Module``).

    Parameters
    ----------
    model : nn.Module
        Returns logits; for segmentation ``(B, C, H, W)``, for classifiers ``(B, K)``.
    config : TrainConfig, optional
        Default ``TrainConfig()``.
    loss : nn.Module, optional
        Overrides ``config.loss`` / ``config.loss_params``.
    device : str or torch.device, optional
        Default ``"cpu"``.

    Attributes
    ----------
    results : list of TrainResult
        One per :meth:`fit` call, in order (the training phases).

    Examples
    --------
    >>> trainer = Trainer(build_model("unet", depth=2, width=8), TrainConfig(epochs=3))  # doctest: +SKIP
    >>> res = trainer.fit(lambda rng, n: make_batch(rng, n), lambda rng, n: make_batch(rng, n))  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig | None = None,
        *,
        loss: nn.Module | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.model = model
        self.config = TrainConfig() if config is None else config
        self.loss_fn = (
            loss if loss is not None else make_loss(self.config.loss, **self.config.loss_params)
        )
        self.device = torch.device(device)
        self.results: list[TrainResult] = []

    def fit(
        self,
        train_batches: BatchSource,
        val_batches: BatchSource | None = None,
        *,
        phase: str | None = None,
    ) -> TrainResult:
        """Train, keep the weights of the best validation epoch and restore them.

        Parameters
        ----------
        train_batches : BatchSource
            ``(x, y)`` batches as tensors or arrays, ``x`` ``(B, C, H, W)``
            (``(B, H, W)`` gets a channel axis), ``y`` the same shape as the
            logits. A callable is called as ``source(rng, batch_size)`` with a
            seeded :class:`numpy.random.Generator`, once per step; an iterable
            is cycled (re-iterated when exhausted if it can be).
        val_batches : BatchSource, optional
            A list/tuple of batches (or one ``(x, y)`` batch) is used whole
            every epoch; another source gives
            ``config.val_steps`` batches drawn once at the start (from an rng
            independent of training) and reused every epoch. None: the mean
            training loss of the epoch is monitored instead.
        phase : str, optional
            Label of this training phase (default ``"phase<k>"``).

        Returns
        -------
        TrainResult

        Raises
        ------
        InputError
            If a batch has a bad shape or a source runs dry.
        FloatingPointError
            If the training loss becomes NaN or infinite.
        """
        cfg = self.config
        k = len(self.results)
        phase = phase or f"phase{k}"
        old_threads = torch.get_num_threads()
        old_det = torch.are_deterministic_algorithms_enabled()
        old_det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        det_flags = torch.utils.deterministic
        old_fill = det_flags.fill_uninitialized_memory
        try:
            if cfg.num_threads is not None:
                torch.set_num_threads(int(cfg.num_threads))
            if cfg.deterministic:
                torch.use_deterministic_algorithms(True)
                # NaN-filling every torch.empty costs ~3x on CPU and changes no result
                det_flags.fill_uninitialized_memory = False
            with torch.random.fork_rng(devices=[]):  # the caller's torch RNG state survives fit
                result = self._fit(train_batches, val_batches, phase, k)
        finally:
            torch.set_num_threads(old_threads)
            torch.use_deterministic_algorithms(old_det, warn_only=old_det_warn)
            det_flags.fill_uninitialized_memory = old_fill
        self.results.append(result)
        return result

    def _fit(
        self, train_src: BatchSource, val_src: BatchSource | None, phase: str, k: int
    ) -> TrainResult:
        cfg = self.config
        t_start = time.perf_counter()
        torch.manual_seed(_seed_int(cfg.seed, k))
        rng = np.random.default_rng([cfg.seed, k, 0])
        model = self.model.to(self.device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched: Any = None
        if cfg.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
            )
        elif cfg.scheduler == "cyclic":
            step = cfg.cyclic_step_size or 2 * cfg.steps_per_epoch
            sched = torch.optim.lr_scheduler.CyclicLR(
                opt,
                base_lr=cfg.cyclic_base_lr,
                max_lr=cfg.cyclic_max_lr,
                step_size_up=step,
                mode="triangular",
                cycle_momentum=False,
            )
        val = self._validation_set(val_src, cfg, k)
        stream = _batches(train_src, rng, cfg.batch_size)
        history: list[dict[str, float]] = []
        best_loss, best_epoch, since_best = math.inf, 0, 0
        best_state = copy.deepcopy(model.state_dict())
        stopped = False
        epochs: Iterable[int] = range(1, cfg.epochs + 1)
        bar = None
        if cfg.progress:
            bar = tqdm(epochs, desc=f"{cfg.name}:{phase}", unit="epoch")
            epochs = bar
        for epoch in epochs:
            t0 = time.perf_counter()
            model.train()
            total, n = 0.0, 0
            for _ in range(cfg.steps_per_epoch):
                xb, yb = next(stream)
                x = _to_tensor(xb, "x").to(self.device)
                y = _to_tensor(yb, "y").to(self.device)
                opt.zero_grad(set_to_none=True)
                loss = self.loss_fn(model(x), y)
                if not torch.isfinite(loss):
                    msg = f"training loss became {loss.item()} at epoch {epoch} of {phase!r}; lower the learning rate"
                    raise FloatingPointError(msg)
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                if cfg.scheduler == "cyclic":
                    sched.step()
                total += loss.item() * x.shape[0]
                n += x.shape[0]
            train_loss = total / n
            val_loss = self._evaluate(val) if val is not None else train_loss
            if cfg.scheduler == "plateau":
                sched.step(val_loss)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - t0,
                }
            )
            if bar is not None:
                bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
            if val_loss < best_loss - cfg.min_delta:
                best_loss, best_epoch, since_best = val_loss, epoch, 0
                best_state = {key: v.detach().clone() for key, v in model.state_dict().items()}
                if cfg.checkpoint_path:
                    self._save(cfg.checkpoint_path, best_state, history, phase)
            else:
                since_best += 1
                if cfg.early_stopping_patience and since_best >= cfg.early_stopping_patience:
                    stopped = True
                    break
        if bar is not None:
            bar.close()
        model.load_state_dict(best_state)
        return TrainResult(
            history=history,
            best_epoch=best_epoch,
            best_val_loss=best_loss,
            best_state=best_state,
            stopped_early=stopped,
            phase=phase,
            config=cfg.to_dict(),
            model_name=getattr(model, "name", type(model).__name__),
            model_config=dict(getattr(model, "config", {})),
            seconds=time.perf_counter() - t_start,
        )

    def _validation_set(self, src: BatchSource | None, cfg: TrainConfig, k: int) -> list | None:
        if src is None:
            return None
        if isinstance(src, tuple) and len(src) == 2 and hasattr(src[0], "shape"):
            src = [src]  # a single (x, y) batch
        items = list(src) if isinstance(src, Sequence) else None
        if items is None:
            stream = _batches(src, np.random.default_rng([cfg.seed, k, 1]), cfg.batch_size)
            items = [next(stream) for _ in range(cfg.val_steps)]
        if not items:
            msg = "the validation source is empty"
            raise InputError(msg)
        return [
            (_to_tensor(x, "x").to(self.device), _to_tensor(y, "y").to(self.device))
            for x, y in items
        ]

    def _evaluate(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        model = self.model
        was_training = model.training
        model.eval()
        total, n = 0.0, 0
        with torch.no_grad():
            for x, y in batches:
                total += self.loss_fn(model(x), y).item() * x.shape[0]
                n += x.shape[0]
        model.train(was_training)
        return total / n

    def _save(self, path: str | Path, state: dict, history: list, phase: str) -> None:
        payload = {
            "state_dict": state,
            "model_name": getattr(self.model, "name", type(self.model).__name__),
            "model_config": json.dumps(dict(getattr(self.model, "config", {}))),
            "train_config": json.dumps(self.config.to_dict()),
            "history": json.dumps(history),
            "phase": phase,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, path)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by ``TrainConfig.checkpoint_path``.

    Returns
    -------
    model : nn.Module
        With the best weights, in eval mode.
    info : dict
        ``train_config``, ``history``, ``phase``, ``model_name``, ``model_config``.

    Raises
    ------
    InputError
        If the file is missing or not a skysift checkpoint.
    """
    # needs torch (the learn extra): imported on use
    from skysift.learning.models import build_model

    path = Path(path)
    if not path.is_file():
        msg = f"checkpoint file {path} does not exist"
        raise InputError(msg)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        info = {
            "model_name": payload["model_name"],
            "model_config": json.loads(payload["model_config"]),
            "train_config": json.loads(payload["train_config"]),
            "history": json.loads(payload["history"]),
            "phase": payload["phase"],
        }
    except (KeyError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        msg = f"{path} is not a skysift training checkpoint: {exc}"
        raise InputError(msg) from exc
    model = build_model(info["model_name"], **info["model_config"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), info


def pseudo_label(
    model: Any,
    images: Iterable[np.ndarray],
    threshold: float = 0.5,
    *,
    accept: Callable[[np.ndarray, np.ndarray, np.ndarray], bool] | None = None,
    **predict_kwargs: Any,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Label real frames with a trained model (the last phase of bolide report §4.8).

    Parameters
    ----------
    model : nn.Module or Predictor
        A segmentation model (run through
        :func:`skysift.learning.inference.predict_image`) or a
        :class:`~skysift.learning.inference.Predictor`.
    images : iterable of ndarray, shape (H, W)
    threshold : float, optional
        Probability above which a pixel is labelled object. Default 0.5.
    accept : callable, optional
        ``accept(image, probability, mask) -> bool``; keeps a frame only when
        true (e.g. enough stars, few ambiguous pixels in 0.3–0.7, agreement
        with a classical finder). Default: keep all.
    **predict_kwargs
        Passed to ``predict_image`` (``tile``, ``stride``, ``normalise``, ...).

    Returns
    -------
    list of (image, mask)
        Accepted frames as float32 ``(H, W)`` and boolean masks
        ``(H, W)`` (``True`` = object); NaN pixels are never labelled.
    """
    # needs torch (the learn extra): imported on use
    from skysift.learning.inference import Predictor, predict_image

    out = []
    for image in images:
        image = np.asarray(image, dtype=np.float32)
        prob = (
            model(image)
            if isinstance(model, Predictor)
            else predict_image(model, image, **predict_kwargs)
        )
        mask = prob >= threshold
        if accept is None or accept(image, prob, mask):
            out.append((image, mask))
    return out
