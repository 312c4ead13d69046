"""Learned bolide segmenter: input, shipped weights against truth, errors, ROI, NaNs, data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from skysift.bolide.learned import (
    BolideSegmenter,
    bolide_input,
    clip_background_and_noise,
)
from skysift.errors import InputError

SIGMA = 10.0


def _composite(bright: bool = True, seed: int = 1):
    """A small clip: flat noisy sky with a few stars, one bolide; frames, truth masks."""
    from skysift.simulation.meteors import LightCurve, Meteor, MeteorVideo

    rng = np.random.default_rng(seed)
    h, w = 180, 260
    sky = np.full((h, w), 500.0, np.float32)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(15):  # static stars
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        sky += rng.uniform(50, 3000) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.2**2))
    meteors = []
    if bright:
        lc = LightCurve.meteor(1.0, 0.4, peak_fraction=0.6)
        meteors.append(Meteor((40, 40), (220, 140), 450.0, lc, t_start_s=0.1, psf=2.5))
    video = MeteorVideo(
        sky,
        meteors,
        n_frames=15,
        fps=25,
        noise_sigma=SIGMA,
        mask_threshold=2 * SIGMA,
        saturation=20000.0,
    )
    frames, truth = video.render(seed)
    masks = np.zeros(frames.shape, bool)
    if bright:
        masks = np.stack(list(truth["mask"]))
    return frames, masks


@pytest.fixture(scope="module")
def segmenter():
    pytest.importorskip("torch", reason="torch is not installed (the learn extra)")
    return BolideSegmenter(backend="torch")


def test_bolide_input_channels_match_definition():
    rng = np.random.default_rng(0)
    bg = 100 + rng.normal(0, 1, (40, 50)).astype(np.float32)
    frame = bg.copy()
    frame[20, 25] += 30.0
    frame[3, 4] = np.nan
    x = bolide_input(frame, bg, 5.0)
    assert x.shape == (2, 40, 50) and x.dtype == np.float32
    assert x[0, 20, 25] == pytest.approx(np.arcsinh(30.0 / 5.0 / 2.0), rel=1e-5)
    assert x[0, 10, 10] == 0.0  # no change, no signal
    assert np.all(x[:, 3, 4] == 0.0)
    with pytest.raises(InputError, match="one shape"):
        bolide_input(frame, bg[:-1], 5.0)
    with pytest.raises(InputError, match="noise"):
        bolide_input(frame, bg, np.zeros((3, 3)))


def test_clip_background_and_noise_recovers_sigma():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1000, (60, 70)).astype(np.float32)
    frames = base + rng.normal(0, SIGMA, (21, 60, 70)).astype(np.float32)
    frames[5, 10:20, 10:40] += 5000  # a bolide does not inflate it
    bg, noise = clip_background_and_noise(frames)
    # frame - median(frames) has about the frames' own sigma (each frame is in the median)
    assert noise == pytest.approx(SIGMA, rel=0.08)
    assert np.median(np.abs(bg - base)) < 0.3 * SIGMA


def test_shipped_weights_find_bright_bolide(segmenter):
    frames, masks = _composite()
    bg, noise = clip_background_and_noise(frames)
    tp = fp = fn = 0
    for k in range(len(frames)):
        pred = segmenter.mask(frames[k], bg, noise)  # the card's operating threshold
        tp += int(np.sum(pred & masks[k]))
        fp += int(np.sum(pred & ~masks[k]))
        fn += int(np.sum(masks[k] & ~pred))
    # measured with the shipped weights: 689 tp, 44 fp, 18 fn (P 0.94, R 0.97)
    assert tp > 500
    assert tp / (tp + fp) > 0.9
    assert tp / (tp + fn) > 0.95


def test_threshold_comes_from_the_model_card(segmenter):
    from skysift.learning.weights import weights_info

    card = weights_info("bolide_unet")
    assert segmenter.threshold == pytest.approx(card.recipe["operating_threshold"])
    assert BolideSegmenter(threshold=0.7).threshold == 0.7
    with pytest.raises(InputError, match="threshold"):
        BolideSegmenter(threshold=1.5)


def test_empty_clip_gives_no_mask(segmenter):
    frames, _ = _composite(bright=False, seed=2)
    bg, noise = clip_background_and_noise(frames)
    for k in (0, 7, 14):
        assert not segmenter.mask(frames[k], bg, noise).any()


def test_roi_smaller_than_tile_and_zero_outside(segmenter):
    frames, masks = _composite()
    bg, noise = clip_background_and_noise(frames)
    k = int(np.argmax(masks.reshape(len(masks), -1).sum(1)))
    ys, xs = np.nonzero(masks[k])
    roi = (int(xs.min()) - 10, int(ys.min()) - 10, int(xs.max()) + 11, int(ys.max()) + 11)
    prob = segmenter.predict(frames[k], bg, np.full(bg.shape, noise), roi=roi)
    assert prob.shape == bg.shape and prob.dtype == np.float32
    inside = np.zeros(bg.shape, bool)
    inside[roi[1] : roi[3], roi[0] : roi[2]] = True
    assert np.all(prob[~inside] == 0)
    full = segmenter.predict(frames[k], bg, noise)
    pred, pred_full = prob >= 0.5, full >= 0.5
    # the ROI result agrees with the whole-frame one on the bolide
    assert np.sum(pred & masks[k]) >= 0.9 * np.sum(pred_full & masks[k] & inside)
    with pytest.raises(InputError, match="roi"):
        segmenter.predict(frames[k], bg, noise, roi=(50, 50, 50, 60))


def test_nans_give_zero_probability(segmenter):
    frames, masks = _composite()
    bg, noise = clip_background_and_noise(frames)
    k = int(np.argmax(masks.reshape(len(masks), -1).sum(1)))
    f = frames[k].copy()
    f[:20, :30] = np.nan
    prob = segmenter.predict(f, bg, noise)
    assert np.all(np.isfinite(prob))
    assert np.all(prob[:20, :30] == 0)
    assert np.sum((prob >= 0.5) & masks[k]) > 0.8 * masks[k][20:].sum()


def test_missing_and_corrupt_weights(tmp_path):
    frames, _ = _composite(bright=False)
    with pytest.raises(InputError, match="no registered name"):
        BolideSegmenter(tmp_path / "nope.safetensors").predict(frames[0], frames[0], 1.0)
    from skysift.learning.weights import WEIGHTS_DIR

    for ext in ("safetensors", "json"):
        shutil.copy(WEIGHTS_DIR / f"bolide_unet.{ext}", tmp_path / f"bolide_unet.{ext}")
    path = tmp_path / "bolide_unet.safetensors"
    data = bytearray(path.read_bytes())
    data[-100:] = b"\x00" * 100
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupted"):
        BolideSegmenter(path).predict(frames[0], frames[0], 1.0)
    with pytest.raises(InputError, match="backend"):
        BolideSegmenter(backend="cuda")
    with pytest.raises(InputError, match="tile"):
        BolideSegmenter(tile=100)


def test_training_tiles_are_seeded_and_labelled():
    from skysift.bolide.training_data import BolideDataConfig, make_tiles

    cfg = BolideDataConfig(size=48, context=8, n_frames_range=(7, 7), p_empty_frame=0.0)
    x1, y1, m1 = make_tiles(3, 5, cfg)
    x2, y2, _ = make_tiles(3, 5, cfg)
    assert x1.shape == (3, 2, 48, 48) and y1.shape == (3, 48, 48)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    # labelled pixels are where the difference channel is positive on average
    pos = x1[:, 0].astype(np.float32)[y1]
    if pos.size:
        assert np.median(pos) > 0.4
    assert all("background" in m and "held" not in m["background"] for m in m1)
    with pytest.raises(InputError, match="unknown bolide data"):
        BolideDataConfig.from_dict({"nope": 1})


def test_held_out_backgrounds_never_in_training():
    from skysift.bolide.training_data import HELD_OUT_BACKGROUNDS, TRAIN_BACKGROUNDS

    assert not set(HELD_OUT_BACKGROUNDS) & {n for n, _ in TRAIN_BACKGROUNDS}
    assert "magic_allsky/20180817_0341.fits" in HELD_OUT_BACKGROUNDS


def test_cli_bolide_commands_have_help():
    from typer.testing import CliRunner

    from skysift.cli import app

    runner = CliRunner()
    for cmd in (["train", "bolide", "--help"], ["evaluate", "bolide", "--help"]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 0, res.output
        assert "bolide" in res.output.lower()
