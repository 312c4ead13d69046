"""Physics checks of the simulator's detector: noise chain, digitisation, Bayer, stacking."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.errors import InputError
from skysift.simulation.detector import BAYER_PATTERNS, Detector, bayer_colors, bayer_mosaic

SHAPE = (512, 512)


@pytest.mark.parametrize("photons", [0.0, 30.0, 400.0, 5000.0])
def test_flat_field_variance_matches_noise_model(photons):
    det = Detector(qe=0.7, dark_current=0.5, read_noise=3.0, gain=2.0, offset=100.0)
    t = 10.0
    frame = det.expose(np.full(SHAPE, photons), t, rng=1)
    electrons = 0.7 * photons + 0.5 * t
    # photon + dark shot noise, read noise, through the gain, plus 1/12 ADU^2 truncation
    expected_var = (electrons + 9.0) / 4.0 + 1.0 / 12.0
    assert det.noise_sigma_adu(photons, t) ** 2 == pytest.approx(expected_var)
    assert frame.var() == pytest.approx(expected_var, rel=0.03)
    # floor() biases the mean by -0.5 ADU
    assert frame.mean() == pytest.approx(electrons / 2.0 + 100.0 - 0.5, abs=0.02)


def test_read_noise_var_is_the_variance():
    a = Detector(read_noise_var=16.0, offset=1000.0)
    assert a.read_noise == pytest.approx(4.0) and a.read_noise_var == pytest.approx(16.0)
    frame = a.expose(np.zeros(SHAPE), 1.0, rng=0)
    assert frame.var() == pytest.approx(16.0 + 1 / 12, rel=0.03)
    quiet = a.expose(np.zeros(SHAPE), 1.0, rng=0, add_read_noise=False)
    assert np.all(quiet == 1000.0)


def test_saturation_and_integer_truncation():
    det = Detector(qe=0.5, read_noise=2.0, gain=1.5, bit_depth=12, offset=10.0)
    sat = det.expose(np.full((64, 64), 1e7), 1.0, rng=0)
    assert det.saturation_adu == 4095.0
    assert np.all(sat == 4095.0) and sat.dtype == np.float32
    noisy = det.expose(np.random.default_rng(0).uniform(0, 9000, (64, 64)), 1.0, rng=0)
    assert np.all(noisy == np.floor(noisy)) and noisy.max() <= 4095 and noisy.min() >= 0
    # no noise at all: offset 10.7 ADU is truncated to 10
    quiet = Detector(read_noise=0.0, offset=10.7).expose(np.zeros((8, 8)), 5.0, rng=0)
    assert np.all(quiet == 10.0)
    # 8-bit: saturation at 255
    assert Detector(bit_depth=8).expose(np.full((4, 4), 1e6), 1.0, rng=0).max() == 255.0


def test_electrons_to_adu():
    det = Detector(gain=2.5, offset=100.0)
    assert det.electrons_to_adu(250.0) == pytest.approx(200.0)
    assert det.adu_to_electrons(200.0) == pytest.approx(250.0)
    np.testing.assert_allclose(det.electrons_to_adu(np.array([0.0, 5.0])), [100.0, 102.0])


@pytest.mark.parametrize("pattern", sorted(BAYER_PATTERNS))
def test_bayer_puts_each_colour_where_the_pattern_says(pattern):
    names = {"R": 0, "G": 1, "B": 2}
    colors = bayer_colors((6, 8), pattern)
    cell = [names[c] for c in pattern]  # (0,0), (0,1), (1,0), (1,1)
    for (r, c), want in zip([(0, 0), (0, 1), (1, 0), (1, 1)], cell, strict=True):
        assert np.all(colors[r::2, c::2] == want)
    assert bayer_colors((5, 7), pattern).shape == (5, 7)

    rgb = np.zeros((6, 8, 3))
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1.0, 2.0, 3.0
    mosaic = bayer_mosaic(rgb, pattern, white_balance=(2.0, 1.0, 0.5))
    np.testing.assert_allclose(mosaic, np.array([2.0, 2.0, 1.5])[colors])

    # through the detector: R, G, B at very different levels are told apart per pixel
    det = Detector(qe=1.0, read_noise=1.0, bayer=pattern, bit_depth=20)
    rgb = np.zeros((32, 32, 3))
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100.0, 10_000.0, 300_000.0
    frame = det.expose(rgb, 1.0, rng=3)
    measured = np.digitize(frame, [1_000.0, 100_000.0])
    np.testing.assert_array_equal(measured, bayer_colors((32, 32), pattern))


def test_white_balance_scales_each_channel_in_the_mean():
    det = Detector(qe=0.8, read_noise=0.0, bayer="RGGB", white_balance=(0.5, 1.0, 0.25))
    frame = det.expose(np.full((200, 200, 3), 1000.0), 1.0, rng=0)
    colors = bayer_colors(frame.shape, "RGGB")
    for c, wb in enumerate((0.5, 1.0, 0.25)):
        assert frame[colors == c].mean() == pytest.approx(800.0 * wb, rel=0.01)


def test_hot_pixels_at_the_stated_fraction():
    det = Detector(qe=0.8, read_noise=2.0, hot_pixel_fraction=0.01, hot_pixel_rate=1000.0)
    hot = det.hot_pixel_map((200, 300))
    assert hot.sum() == 600
    np.testing.assert_array_equal(hot, det.hot_pixel_map((200, 300)))  # fixed pattern
    frame = det.expose(np.full((200, 300), 10.0), 1.0, rng=4)
    np.testing.assert_array_equal(frame > 500, hot)
    assert Detector().hot_pixel_map((10, 10)).sum() == 0


def test_flat_and_vignetting_scale_the_signal():
    flat = np.ones((100, 100))
    flat[:, 50:] = 0.5
    det = Detector(qe=0.8, read_noise=0.0, flat=flat, vignetting=lambda shape: np.full(shape, 0.9))
    frame = det.expose(np.full((100, 100), 2000.0), 1.0, rng=0)  # integer e-: no floor bias
    assert frame[:, :50].mean() == pytest.approx(2000 * 0.8 * 0.9, rel=0.005)
    assert frame[:, 50:].mean() == pytest.approx(2000 * 0.8 * 0.9 * 0.5, rel=0.005)
    with pytest.raises(InputError, match=r"qe x white_balance x flat x vignetting must be <= 1"):
        Detector(qe=0.9, flat=np.full((4, 4), 1.2)).expose(np.zeros((4, 4)), 1.0)
    with pytest.raises(InputError, match=r"flat must have the image shape \(4, 4\)"):
        Detector(flat=np.ones((3, 3))).expose(np.zeros((4, 4)), 1.0)


def test_dark_current_and_reproducibility():
    det = Detector(qe=0.8, dark_current=2.0, read_noise=0.0, gain=1.0)
    frame = det.expose(np.zeros(SHAPE), 30.0, rng=7)
    # no read noise, gain 1: integer electrons are digitised exactly (no floor bias)
    assert frame.mean() == pytest.approx(60.0, rel=0.005)
    assert frame.var() == pytest.approx(60.0, rel=0.03)
    np.testing.assert_array_equal(frame, det.expose(np.zeros(SHAPE), 30.0, rng=7))


def test_stack_has_the_read_noise_of_one_read():
    det = Detector(qe=0.8, read_noise=5.0, gain=1.0, offset=1000.0)
    n_frames = 16
    dark = det.expose_stack(np.zeros((n_frames, *SHAPE)), 0.1, rng=5)
    # one read: 25 e-^2 (+1/12 truncation), not 16 x 25
    assert dark.var() == pytest.approx(25.0 + 1 / 12, rel=0.03)
    lit = det.expose_stack(np.full((8, *SHAPE), 50.0), 0.1, rng=6)
    assert lit.var() == pytest.approx(8 * 0.8 * 50 + 25.0 + 1 / 12, rel=0.03)
    assert lit.mean() + 0.5 == pytest.approx(1000 + 8 * 0.8 * 50, abs=0.1)
    # Bayer stacks take (T, H, W, 3)
    colour = Detector(bayer="GRBG").expose_stack(np.ones((3, 8, 8, 3)), 1.0, rng=0)
    assert colour.shape == (8, 8)


def test_detector_errors():
    with pytest.raises(InputError, match="exposure_s must be >= 0 seconds, got -1"):
        Detector().expose(np.zeros((4, 4)), -1.0)
    with pytest.raises(InputError, match="exposure_s must be >= 0 seconds"):
        Detector().expose_stack(np.zeros((2, 4, 4)), -0.5)
    with pytest.raises(
        InputError,
        match=r"bayer pattern must be one of \['BGGR', 'GBRG', 'GRBG', 'RGGB'\], got 'RGBG'",
    ):
        Detector(bayer="RGBG")
    with pytest.raises(InputError, match="bayer pattern must be one of"):
        bayer_colors((4, 4), "XYZW")
    with pytest.raises(InputError, match="gain must be > 0 e-/ADU, got 0"):
        Detector(gain=0)
    with pytest.raises(InputError, match="gain must be > 0"):
        Detector(gain=-1.0)
    with pytest.raises(InputError, match="bit_depth must be an integer from 8 to 32, got 40"):
        Detector(bit_depth=40)
    with pytest.raises(InputError, match=r"qe must be in \(0, 1\], got 1.5"):
        Detector(qe=1.5)
    with pytest.raises(InputError, match="read_noise must be >= 0"):
        Detector(read_noise=-1)
    with pytest.raises(InputError, match="read_noise_var must be >= 0"):
        Detector(read_noise_var=-1)
    with pytest.raises(InputError, match="dark_current must be >= 0"):
        Detector(dark_current=-0.1)
    with pytest.raises(InputError, match="hot_pixel_fraction must be in"):
        Detector(hot_pixel_fraction=1.5)
    with pytest.raises(InputError, match="white_balance must be three numbers"):
        Detector(white_balance=(1.0, 0.0, 1.0))
    with pytest.raises(InputError, match=r"photons must have shape \(H, W\)"):
        Detector().expose(np.zeros((4, 4, 3)), 1.0)
    with pytest.raises(InputError, match=r"Bayer \(RGGB\) detector must have shape \(H, W, 3\)"):
        Detector(bayer="RGGB").expose(np.zeros((4, 4)), 1.0)
    with pytest.raises(InputError, match="photons must be finite and >= 0"):
        Detector().expose(-np.ones((4, 4)), 1.0)
    with pytest.raises(InputError, match=r"photon_frames must have shape \(T, H, W\)"):
        Detector().expose_stack(np.zeros((4, 4)), 1.0)
    with pytest.raises(InputError, match="rgb must have shape"):
        bayer_mosaic(np.zeros((4, 4)), "RGGB")
