"""Models, blocks, losses and the weights registry of skysift.learning (tiny inputs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from skysift.errors import InputError
from skysift.learning import (
    MODELS,
    build_model,
    count_parameters,
    load_weights,
    make_loss,
    save_weights,
    weights_info,
)
from skysift.learning.blocks import FusedMBConv, MBConv, ResidualBlock, make_block
from skysift.learning.losses import DiceLoss, JaccardLoss, TverskyLoss

pytestmark = pytest.mark.usefixtures("torch_one_thread")


SEGMENTERS = [
    ("unet", {"depth": 2, "width": 4}),
    ("unet", {"depth": 2, "width": 4, "block": "plain", "upsample": "transpose"}),
    ("unet", {"depth": 2, "width": 4, "block": "mbconv", "downsample": "stride"}),
    ("unet", {"depth": 2, "width": 4, "block": "fused_mbconv", "act": "silu"}),
    ("unet", {"depth": 3, "width": 4, "block": "efficientnetv2", "norm": "group"}),
    ("cosmic_conn", {"depth": 2, "width": 8}),
]


@pytest.mark.parametrize(("name", "config"), SEGMENTERS)
def test_segmenter_keeps_odd_sizes_and_rebuilds(name, config):
    torch.manual_seed(0)
    model = build_model(name, in_channels=2, **config)
    x = torch.rand(2, 2, 37, 53)
    logits = model(x)
    assert logits.shape == (2, 1, 37, 53)
    assert logits.dtype == torch.float32
    # tiny input, smaller than the padding multiple
    assert model(torch.rand(1, 2, 3, 5)).shape == (1, 1, 3, 5)
    # config is JSON data that rebuilds the same architecture
    config2 = json.loads(json.dumps(model.config))
    twin = build_model(name, **config2)
    assert count_parameters(twin) == count_parameters(model)
    assert [(k, v.shape) for k, v in twin.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()
    ]
    twin.load_state_dict(model.state_dict())
    model.eval()
    twin.eval()
    with torch.no_grad():
        assert torch.equal(twin(x), model(x))


def test_predict_is_sigmoid_of_logits_and_restores_mode():
    torch.manual_seed(0)
    model = build_model("unet", depth=2, width=4)
    model.train()
    x = torch.rand(1, 1, 40, 24)
    prob = model.predict(x.numpy())
    assert model.training  # mode restored
    assert not prob.requires_grad
    model.eval()
    with torch.no_grad():
        assert torch.allclose(prob, torch.sigmoid(model(x)))


def test_unet_is_shift_equivariant_by_size_multiple():
    """A fully convolutional net: shifting the input by 2**depth shifts the output (interior)."""
    torch.manual_seed(1)
    model = build_model("unet", depth=2, width=4).eval()
    m = model.size_multiple
    assert m == 4
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        a = model(x)
        b = model(torch.roll(x, shifts=(m, 2 * m), dims=(2, 3)))
    ref = torch.roll(a, shifts=(m, 2 * m), dims=(2, 3))
    assert torch.allclose(b[..., 24:-24, 24:-24], ref[..., 24:-24, 24:-24], atol=1e-5)


def test_streak_classifier_contract():
    torch.manual_seed(0)
    model = build_model("streak_classifier")
    x = torch.rand(3, 1, 128, 128)
    assert model(x).shape == (3, 1)
    prob = model.predict(x)
    assert prob.shape == (3, 1)
    assert bool(((prob > 0) & (prob < 1)).all())
    # paper §3.1 layout: conv5x5x32, pool4, conv4x4x64, pool4, FC 512, FC 16, FC 1
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(32, (5, 5)), (64, (4, 4))]
    fcs = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert fcs == [512, 16, 1]
    assert count_parameters(build_model("streak_classifier", **model.config)) == count_parameters(
        model
    )
    with pytest.raises(InputError, match=r"\(B, 1, 128, 128\)"):
        model(torch.rand(1, 1, 64, 64))


def test_unknown_model_lists_valid_names():
    with pytest.raises(
        InputError, match="valid names.*candidate_mlp.*cosmic_conn.*streak_classifier.*unet"
    ):
        build_model("resnet")
    with pytest.raises(InputError, match="bad configuration"):
        build_model("unet", colour=3)
    with pytest.raises(InputError, match="unknown block"):
        build_model("unet", block="transformer")
    assert set(MODELS) == {"unet", "cosmic_conn", "streak_classifier", "candidate_mlp"}


def test_blocks_shortcuts_and_strides():
    x = torch.rand(2, 8, 16, 16)
    assert MBConv(8, 8).use_shortcut
    assert MBConv(8, 16, stride=2)(x).shape == (2, 16, 8, 8)
    assert FusedMBConv(8, 8, expand_ratio=1)(x).shape == x.shape
    assert make_block("plain", 8, 4, stride=2)(x).shape == (2, 4, 8, 8)
    # residual block with a zeroed residual branch is ReLU(identity)
    block = ResidualBlock(8, 8).eval()
    torch.nn.init.zeros_(block.conv2[1].weight)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))


# --------------------------------------------------------------------------- losses


def _logits(mask: torch.Tensor, strength: float = 30.0) -> torch.Tensor:
    return (mask * 2 - 1) * strength


def test_dice_perfect_and_disjoint():
    t = torch.zeros(2, 1, 16, 16)
    t[:, :, 2:8, 3:9] = 1
    other = torch.zeros_like(t)
    other[:, :, 10:15, 10:15] = 1
    dice = DiceLoss(smooth=1e-6)
    assert dice(_logits(t), t).item() == pytest.approx(0.0, abs=1e-6)
    assert dice(_logits(other), t).item() == pytest.approx(1.0, abs=1e-6)
    assert make_loss("jaccard", smooth=1e-6)(_logits(other), t).item() == pytest.approx(
        1.0, abs=1e-6
    )


def test_tversky_half_half_is_dice_and_jaccard_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    t = (torch.rand(2, 3, 8, 8) > 0.6).float()
    assert torch.equal(
        TverskyLoss(0.5, 0.5, smooth=0.3)(logits, t), DiceLoss(smooth=0.3)(logits, t)
    )
    p = torch.sigmoid(logits)
    inter = (p * t).sum(dim=(0, 2, 3))
    union = p.sum(dim=(0, 2, 3)) + t.sum(dim=(0, 2, 3)) - inter
    expected = 1 - (inter / union).mean()
    assert JaccardLoss(smooth=0.0)(logits, t).item() == pytest.approx(expected.item(), rel=1e-6)
    dice_hand = 1 - (2 * inter / (p.sum(dim=(0, 2, 3)) + t.sum(dim=(0, 2, 3)))).mean()
    assert DiceLoss(smooth=0.0)(logits, t).item() == pytest.approx(dice_hand.item(), rel=1e-6)


def test_tversky_beta_penalises_missed_objects():
    t = torch.zeros(1, 1, 10, 10)
    t[..., :, :4] = 1
    missed = torch.zeros_like(t)  # half the object missed (FN)
    missed[..., :, :2] = 1
    extra = t.clone()  # object found plus as many extra pixels (FP)
    extra[..., :, 4:6] = 1
    recall_loss = TverskyLoss(alpha=0.3, beta=0.7, smooth=0)
    assert recall_loss(_logits(missed), t) > recall_loss(_logits(extra), t)


def test_bce_pos_weight_and_combo():
    logits = torch.tensor([[[[2.0, -1.0]]]])
    t = torch.tensor([[[[1.0, 0.0]]]])
    expected = (3 * np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
    assert make_loss("bce", pos_weight=3.0)(logits, t).item() == pytest.approx(expected, rel=1e-6)
    combo = make_loss("bce+dice", weights=[1.0, 2.0])
    assert combo(logits, t).item() == pytest.approx(
        (make_loss("bce")(logits, t) + 2 * make_loss("dice")(logits, t)).item(), rel=1e-6
    )
    assert type(make_loss("bce_dice")).__name__ == "ComboLoss"
    with pytest.raises(InputError, match="valid names"):
        make_loss("focal")
    with pytest.raises(InputError, match="does not accept"):
        make_loss("dice", pos_weight=2.0)
    with pytest.raises(InputError, match="same shape"):
        make_loss("dice")(logits, t[..., :1])


# --------------------------------------------------------------------------- weights


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(3)
    model = build_model("unet", depth=2, width=4)
    model.train()
    model(torch.rand(2, 1, 16, 16))  # move the BN running statistics away from their defaults
    card = {
        "normalisation": {"name": "arcsinh"},
        "metrics": {"auc": 0.5},
        "recipe": {"epochs": 1},
        "seed": 3,
        "command": "python -m skysift.stars.training --seed 3",
        "description": "test weights",
    }
    w = save_weights(model, tmp_path / "tiny_unet", card)
    return model, w, tmp_path / "tiny_unet.safetensors"


def test_weights_round_trip_is_bit_identical(saved):
    model, w, path = saved
    assert path.is_file()
    assert path.with_suffix(".json").is_file()
    assert "sha256" in path.with_suffix(".md").read_text()
    assert w.size == path.stat().st_size
    loaded = load_weights(path)
    assert not loaded.training
    a, b = model.state_dict(), loaded.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    info = weights_info(path)
    assert info.normalisation == {"name": "arcsinh"}
    assert info.model == "unet"
    assert info.config == model.config


def test_weights_corrupted_or_missing_file(saved):
    _, _, path = saved
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"tiny_unet\.safetensors is corrupted"):
        load_weights(path)
    path.unlink()
    with pytest.raises(InputError, match=r"tiny_unet\.safetensors.*missing"):
        load_weights(path)
    with pytest.raises(InputError, match="no registered name"):
        load_weights("no_such_weights")
