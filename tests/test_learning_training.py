"""Trainer, TrainConfig, checkpoints, pseudo-labels and pruning (tiny nets, 32x32 data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skysift.errors import InputError
from skysift.learning import (
    TrainConfig,
    Trainer,
    build_model,
    global_prune,
    load_checkpoint,
    pseudo_label,
    sparsity,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def squares(rng: np.random.Generator, n: int, size: int = 32):
    """Bright squares on unit Gaussian noise, with their masks (the truth)."""
    x = rng.normal(0.0, 1.0, (n, 1, size, size)).astype(np.float32)
    y = np.zeros_like(x)
    for i in range(n):
        r, c = rng.integers(2, size - 8, 2)
        s = int(rng.integers(3, 7))
        x[i, 0, r : r + s, c : c + s] += 3.0
        y[i, 0, r : r + s, c : c + s] = 1.0
    return x, y


def tiny_unet(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("unet", depth=2, width=8)


def test_tiny_unet_learns_bright_squares():
    model = tiny_unet()
    cfg = TrainConfig(
        num_threads=1, epochs=6, steps_per_epoch=10, batch_size=8, lr=1e-2, loss="bce+dice"
    )
    res = Trainer(model, cfg).fit(squares, squares)
    assert len(res.history) == 6
    assert res.best_val_loss < 0.3 * res.val_losses[0]
    # recovery against the truth on fresh data
    x, y = squares(np.random.default_rng(123), 16)
    pred = model.predict(x).numpy() > 0.5
    truth = y > 0.5
    iou = (pred & truth).sum() / (pred | truth).sum()
    assert iou > 0.8


def _train_once(seed: int):
    model = tiny_unet(0)
    cfg = TrainConfig(
        num_threads=1,
        epochs=2,
        steps_per_epoch=3,
        batch_size=4,
        lr=1e-2,
        seed=seed,
        scheduler="cyclic",
    )
    Trainer(model, cfg).fit(squares, squares)
    return model.state_dict()


def test_same_seed_same_weights_and_settings_restored():
    threads = torch.get_num_threads()
    a = _train_once(7)
    b = _train_once(7)
    c = _train_once(8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_early_stopping_restores_best_checkpoint(tmp_path):
    model = tiny_unet()
    path = tmp_path / "ckpt" / "best.pt"
    # min_delta so large that no epoch after the first counts as an improvement
    cfg = TrainConfig(
        num_threads=1,
        epochs=20,
        steps_per_epoch=3,
        batch_size=4,
        lr=1e-2,
        min_delta=1e3,
        early_stopping_patience=2,
        scheduler="none",
        checkpoint_path=str(path),
    )
    trainer = Trainer(model, cfg)
    val = squares(np.random.default_rng(99), 8)  # one (x, y) batch
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    res = trainer.fit(squares, val)
    assert torch.equal(torch.rand(3), before)  # fit leaves the caller's torch RNG alone
    assert res.stopped_early
    assert len(res.history) == 3
    assert res.best_epoch == 1
    # the model holds epoch-1 weights: its validation loss is epoch 1's, not the last one's
    assert trainer._evaluate(trainer._validation_set(val, cfg, 0)) == pytest.approx(
        res.val_losses[0], rel=1e-6
    )
    assert res.val_losses[-1] != pytest.approx(res.val_losses[0], rel=1e-6)
    assert all(torch.equal(v, res.best_state[k]) for k, v in model.state_dict().items())
    loaded, info = load_checkpoint(path)
    assert info["train_config"]["min_delta"] == 1e3
    assert info["model_config"] == model.config
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_phases_and_sources_of_several_kinds():
    model = tiny_unet()
    trainer = Trainer(
        model,
        TrainConfig(num_threads=1, epochs=1, steps_per_epoch=2, batch_size=2, scheduler="cyclic"),
    )
    rng = np.random.default_rng(0)
    fixed = [squares(rng, 2) for _ in range(3)]
    # phase 1: a list of numpy batches (cycled); phase 2: a generator of torch tensors, (B, H, W)
    trainer.fit(fixed, fixed, phase="white dots")
    gen = (
        (torch.from_numpy(x[:, 0]), torch.from_numpy(y[:, 0]))
        for x, y in iter(lambda: squares(rng, 2), None)
    )
    trainer.fit(gen, lambda r: squares(r, 2), phase="real backgrounds")
    assert [r.phase for r in trainer.results] == ["white dots", "real backgrounds"]
    assert all(r.model_name == "unet" for r in trainer.results)
    with pytest.raises(InputError, match="ran out"):
        trainer.fit(iter(fixed[:1]), fixed)


def test_train_config_is_data():
    rows = TrainConfig.describe()
    names = [r["name"] for r in rows]
    assert {"lr", "scheduler", "seed", "early_stopping_patience", "loss"} <= set(names)
    assert all(r["description"] for r in rows)
    cfg = TrainConfig(lr=5e-4, loss_params={"pos_weight": 4.0})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="scheduler"):
        TrainConfig(scheduler="cosine")
    with pytest.raises(InputError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_cyclic_lr_stays_between_bounds():
    model = tiny_unet()
    cfg = TrainConfig(
        num_threads=1,
        epochs=4,
        steps_per_epoch=2,
        batch_size=2,
        scheduler="cyclic",
        cyclic_base_lr=1e-4,
        cyclic_max_lr=1e-3,
        cyclic_step_size=3,
    )
    res = Trainer(model, cfg).fit(squares, None)
    lrs = [h["lr"] for h in res.history]
    assert all(1e-4 - 1e-12 <= lr <= 1e-3 + 1e-12 for lr in lrs)
    assert len(set(np.round(lrs, 10))) > 1


def test_pseudo_label_accepts_only_good_frames():
    # a "trained" detector: logit = 10 (x - 1.5), a 1x1 convolution
    net = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(10.0)
        net.bias.fill_(-15.0)
    rng = np.random.default_rng(4)
    images, truths = [], []
    for k in range(3):
        img = rng.normal(0, 0.1, (40, 50)).astype(np.float32)
        truth = np.zeros(img.shape, bool)
        if k != 1:
            truth[10:14, 20:25] = True
            img[truth] += 3.0
        images.append(img)
        truths.append(truth)
    pairs = pseudo_label(
        net, images, 0.5, accept=lambda im, p, m: m.sum() > 0, backend="torch", tile=32, stride=16
    )
    assert len(pairs) == 2
    for (img, mask), k in zip(pairs, [0, 2], strict=True):
        np.testing.assert_array_equal(img, images[k])
        assert mask.dtype == bool
        np.testing.assert_array_equal(mask, truths[k])


def test_global_pruning_fraction_and_finetune_keeps_zeros():
    model = tiny_unet()
    global_prune(model, 0.6)
    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert abs(sparsity(model) - 0.6) <= 1.0 / total
    assert not any("weight_orig" in k or "weight_mask" in k for k in model.state_dict())
    model2 = tiny_unet()
    cfg = TrainConfig(num_threads=1, epochs=1, steps_per_epoch=2, batch_size=2, lr=1e-2)
    global_prune(model2, 0.3, train_batches=squares, val_batches=squares, config=cfg)
    assert abs(sparsity(model2) - 0.3) <= 1.0 / total
    with pytest.raises(InputError, match=r"\[0, 1\)"):
        global_prune(model2, 1.5)
