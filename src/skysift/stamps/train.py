"""Training of the stamp classifier on simulated stamps, and loading of its weights.

Recipe (:func:`train_stamps`): a fixed simulated training set
(:data:`~skysift.stamps.data.TRAINING` settings, 1–4 dithers), random
rot90/flip, extra noise and sky gradients at every step
(:func:`~skysift.stamps.model.augment_stamps`), cross-entropy with label
smoothing, AdamW with a one-cycle learning rate, then temperature scaling on
a validation set. The weights are written with
:func:`skysift.learning.weights.save_weights` (safetensors + JSON/markdown
model card with data, recipe and metrics).
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from skysift.errors import InputError
from skysift.learning.weights import Weights, save_weights, sha256_file
from skysift.outputs.files import atomic_path
from skysift.stamps.data import CLASSES, HELDOUT, TRAINING, simulate_stamps
from skysift.stamps.model import StampClassifier, augment_stamps, fit_temperature, prepare_stamps

__all__ = ["DEFAULT_WEIGHTS", "load_stamp_classifier", "simulated_set", "train_stamps"]

#: The shipped weights.
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "stamps_classifier.safetensors"


def load_stamp_classifier(weights: str | Path | None = None) -> StampClassifier:
    """Load a :class:`StampClassifier` (eval mode); never downloads.

    Parameters
    ----------
    weights : str or Path, optional
        A ``.safetensors`` file written by :func:`train_stamps` (its JSON card
        beside it is read for the architecture and SHA-256). Default the
        shipped :data:`DEFAULT_WEIGHTS`.

    Raises
    ------
    InputError
        If the file or its card is missing, the SHA-256 differs from the card,
        or the weights do not fit the architecture.
    """
    # torch is the optional learn extra: imported on use
    from safetensors.torch import load_file

    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        msg = (
            f"stamp classifier weights {path} do not exist (train with skysift.stamps.train_stamps)"
        )
        raise InputError(msg)
    card = Weights.from_json(path.with_suffix(".json"))
    if card.sha256 and sha256_file(path) != card.sha256:
        msg = f"weights file {path} is corrupted or changed: its sha256 differs from the card's"
        raise InputError(msg)
    model = StampClassifier(**card.config)
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        msg = f"weights file {path} does not fit StampClassifier({card.config}): {exc}"
        raise InputError(msg) from exc
    return model.eval()


def simulated_set(
    name: str,
    n: int,
    seed: int,
    *,
    settings: Any = TRAINING,
    n_chunks: int = 2,
    cache_dir: str | Path | None = None,
    chunks: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A simulated set in ``n_chunks`` chunks (chunk k seeded ``[seed, k]``), cached as ``.npz``.

    With ``cache_dir``, each chunk is read from ``<cache_dir>/<name>_<seed>_<n>_<k>.npz``
    when present, else simulated and written there (so chunks can be
    built in parallel processes with ``chunks=[k]``).

    Returns
    -------
    stamps : ndarray of float32, shape (n, 4, 32, 32)
    n_channels : ndarray of int, shape (n,)
    labels : ndarray of int, shape (n,)
    """
    parts = []
    sizes = [n // n_chunks + (1 if k < n % n_chunks else 0) for k in range(n_chunks)]
    for k in chunks if chunks is not None else range(n_chunks):
        f = Path(cache_dir) / f"{name}_{seed}_{n}_{k}.npz" if cache_dir is not None else None
        if f is not None and f.is_file():
            with np.load(f) as z:
                parts.append((z["x"], z["n"], z["y"]))
            continue
        x, nc, t = simulate_stamps(sizes[k], np.random.default_rng([seed, k]), settings=settings)
        part = (x, nc, np.asarray(t["label"], int))
        if f is not None:
            f.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(f) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, x=part[0], n=part[1], y=part[2])
        parts.append(part)
    return tuple(np.concatenate(a) for a in zip(*parts, strict=True))  # type: ignore[return-value]


def _logits(model: StampClassifier, x: np.ndarray, bs: int = 1024) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), bs):
            out.append(model(torch.from_numpy(x[i : i + bs])).numpy())
    return np.concatenate(out)


def _accuracy(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = p.argmax(1)
    sso = CLASSES.index("sso")
    return {
        "accuracy_4class": float(np.mean(pred == y)),
        "accuracy_2class": float(np.mean((pred == sso) == (y == sso))),
    }


def train_stamps(
    out_dir: str | Path,
    seed: int = 0,
    *,
    n_train: int = 24000,
    n_val: int = 4000,
    n_heldout: int = 2000,
    epochs: int = 8,
    batch_size: int = 128,
    lr: float = 3e-3,
    width: int = 16,
    max_minutes: float = 11.0,
    n_threads: int = 1,
    cache_dir: str | Path | None = None,
    log: Any = print,
) -> Path:
    """Train the stamp classifier; write ``stamps_classifier.safetensors`` + its card.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created).
    seed : int, optional
        Seed of the data (training ``seed``, validation ``seed + 1``, held-out
        ``seed + 2``) and of the initial weights. Default 0.
    n_train, n_val, n_heldout : int, optional
        Simulated stamps (equal class shares) for training, temperature
        fitting and the held-out metrics of the card. Defaults 24000, 4000, 2000.
    epochs : int, optional
        Passes over the training set (one-cycle schedule). Default 8.
    batch_size, lr, width : optional
        Batch size (128), peak learning rate (3e-3), first-stage width (16).
    max_minutes : float, optional
        Wall-time budget for the whole call; training stops early (keeping the
        schedule) when it would run over. Default 11.
    n_threads : int, optional
        Torch CPU threads during training (restored afterwards). Default 1.
    cache_dir : str or Path, optional
        Folder of cached simulated sets (:func:`simulated_set`); default none.
    log : callable, optional
        Progress messages (default print; ``None`` silences).

    Returns
    -------
    Path
        The ``.safetensors`` file.

    Raises
    ------
    InputError
        For non-positive sizes.
    """
    if min(n_train, n_val, n_heldout, epochs, batch_size, width) < 1 or not lr > 0:
        msg = "n_train, n_val, n_heldout, epochs, batch_size, width must be >= 1 and lr > 0"
        raise InputError(msg)
    say = log or (lambda *_: None)
    t_start = time.perf_counter()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed + 100)
        xtr, ntr, ytr = simulated_set("train", n_train, seed, cache_dir=cache_dir)
        xva, nva, yva = simulated_set("val", n_val, seed + 1, cache_dir=cache_dir, n_chunks=1)
        pva = prepare_stamps(xva, nva)
        say(f"simulated {n_train}+{n_val} stamps in {time.perf_counter() - t_start:.0f} s")
        model = StampClassifier(width=width)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        steps_per_epoch = n_train // batch_size
        total_steps = epochs * steps_per_epoch
        budget = max_minutes * 60.0 - 60.0  # leave time for the held-out set and writing
        t_train = time.perf_counter()
        train_budget = max(budget - (t_train - t_start), 30.0)
        step = 0
        history = []
        stopped_early = False
        for ep in range(epochs):
            model.train()
            order = rng.permutation(n_train)
            t_ep, tot = time.perf_counter(), 0.0
            for k in range(steps_per_epoch):
                idx = order[k * batch_size : (k + 1) * batch_size]
                xb = augment_stamps(xtr[idx], ntr[idx], rng)
                # random dither dropout: fewer dithers than simulated (keep >= 1)
                nb = ntr[idx].copy()
                drop = rng.random(len(idx)) < 0.1
                nb[drop] = np.maximum(1, nb[drop] - rng.integers(1, 3, drop.sum()))
                inp = torch.from_numpy(prepare_stamps(xb, nb))
                loss = F.cross_entropy(model(inp), torch.from_numpy(ytr[idx]), label_smoothing=0.02)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                # one-cycle on progress = max(step fraction, time fraction): warm-up over
                # the first 10 %, cosine decay to 1 % after; the time term ends the
                # schedule within the budget on a loaded machine
                prog = max(step / total_steps, (time.perf_counter() - t_train) / train_budget)
                f = (
                    prog / 0.1
                    if prog < 0.1
                    else 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, (prog - 0.1) / 0.9)))
                )
                for g in opt.param_groups:
                    g["lr"] = lr * f
                if prog >= 1.0:
                    break
                tot += float(loss.detach())
            acc = _accuracy(torch.softmax(torch.from_numpy(_logits(model, pva)), 1).numpy(), yva)
            history.append({"epoch": ep + 1, "loss": tot / steps_per_epoch, **acc})
            say(
                f"epoch {ep + 1}: loss {tot / steps_per_epoch:.4f} val {acc} ({time.perf_counter() - t_ep:.0f} s)"
            )
            if step < (ep + 1) * steps_per_epoch or prog >= 1.0:
                stopped_early = step < total_steps
                if stopped_early:
                    say(f"stopped at step {step}/{total_steps}: time budget")
                break
        zva = _logits(model, pva)
        temp = fit_temperature(zva, yva)
        model.temperature.fill_(temp)
        xho, nho, tho = simulate_stamps(n_heldout, seed + 2, settings=HELDOUT)
        pho = model.predict_proba(prepare_stamps(xho, nho))
        metrics = {
            **{f"val_{k}": v for k, v in _accuracy(torch.softmax(torch.from_numpy(zva), 1).numpy(), yva).items()},
            **{f"heldout_{k}": v for k, v in _accuracy(pho, np.asarray(tho["label"], int)).items()},
            "temperature": temp,
        }  # fmt: skip
        say(f"metrics {metrics}")
        recipe = {
            "data": {
                "simulator": "skysift.stamps.data.simulate_stamps",
                "train": {"n": n_train, "seed": seed, "chunks": 2, "settings": TRAINING.to_dict()},
                "val": {"n": n_val, "seed": seed + 1, "chunks": 1, "settings": "TRAINING"},
                "heldout": {"n": n_heldout, "seed": seed + 2, "settings": HELDOUT.to_dict()},
            },
            "optimiser": {
                "name": "AdamW",
                "lr": lr,
                "weight_decay": 1e-4,
                "schedule": "warm-up 10 % + cosine on max(step, time) progress",
            },
            "steps": step,
            "steps_planned": total_steps,
            "loss": "cross-entropy, label smoothing 0.02",
            "augmentation": "rot90/flip, extra noise p=0.3, sky gradient p=0.2, dither dropout p=0.1",
            "epochs": len(history),
            "epochs_planned": epochs,
            "stopped_early": stopped_early,
            "batch_size": batch_size,
            "history": history,
            "threads": n_threads,
            "wall_s": round(time.perf_counter() - t_start, 1),
        }
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        args = (
            f"out_dir={str(out)!r}, seed={seed}, n_train={n_train}, epochs={epochs}, width={width}"
        )
        card = {
            "name": "stamps_classifier",
            "normalisation": {
                "name": "skysift.stamps.model.prepare_stamps",
                "stretch": "arcsinh(x/3)",
            },
            "metrics": metrics,
            "recipe": recipe,
            "seed": seed,
            "command": "python -c "
            + shlex.quote(f"from skysift.stamps import train_stamps; train_stamps({args})"),
            "description": (
                "SSO / cosmic-ray / galaxy / star classifier of 32x32 Euclid-VIS-like stamps "
                "(0.1 arcsec/px) with 1-4 dithers as channels; temperature-scaled probabilities."
            ),
        }
        path = out / "stamps_classifier.safetensors"
        save_weights(model, path, card)
        return path
    finally:
        torch.set_num_threads(old_threads)
