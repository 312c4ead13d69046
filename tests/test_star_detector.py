"""The learned star detector (shipped ``stars_unet`` weights) and its training data."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.spatial import cKDTree

from skysift.detection import sky_mask
from skysift.detection.stars import (
    STAR_FINDERS,
    ClassicalStarFinder,
    StarFlag,
    detect_stars,
    star_finder,
)
from skysift.errors import InputError, NoDetectionsWarning
from skysift.io import read_frame
from skysift.learning.weights import WEIGHTS_DIR
from skysift.simulation.psf import GaussianPSF
from skysift.stars.learned import UNetStarFinder
from skysift.stars.training_data import (
    HELD_OUT_BACKGROUNDS,
    StarDataConfig,
    iter_star_batches,
    prepare_background,
    render_star_patch,
    snr_to_flux,
    star_batch,
    star_label,
)

pytestmark = pytest.mark.filterwarnings("ignore::skysift.errors.NoDetectionsWarning")


@pytest.fixture(scope="module")
def finder() -> UNetStarFinder:
    return UNetStarFinder()


@pytest.fixture(scope="module")
def held_out():
    return prepare_background(HELD_OUT_BACKGROUNDS[0])  # MAGIC 20180817_0341, never trained on


def _composite(bg, rng, size=192, n=40, snr_range=(10.0, 300.0), fwhm=2.5):
    """A crop of a held-out star-free sky with well-separated stars of known truth."""
    h, w = bg.shape
    for _ in range(500):
        y0, x0 = int(rng.integers(0, h - size)), int(rng.integers(0, w - size))
        if bg.sky_fraction(y0, x0, size) == 1.0:
            break
    sl = (slice(y0, y0 + size), slice(x0, x0 + size))
    noise = bg.noise[sl]
    xs, ys = [], []
    while len(xs) < n:
        x, y = rng.uniform(8, size - 9, 2)
        if not xs or np.min(np.hypot(np.array(xs) - x, np.array(ys) - y)) > 10:
            xs.append(x)
            ys.append(y)
    xs, ys = np.array(xs), np.array(ys)
    snr = np.exp(rng.uniform(*np.log(snr_range), n))
    flux = snr_to_flux(snr, noise[ys.astype(int), xs.astype(int)], fwhm)
    img = bg.star_free[sl] + noise * rng.standard_normal((size, size))
    img = img + GaussianPSF(fwhm).render((size, size), xs, ys, flux)
    return img.astype(np.float32), xs, ys, snr, flux


def test_recovers_injected_stars_on_held_out_sky(finder, held_out):
    rng = np.random.default_rng(7)
    img, xs, ys, snr, flux = _composite(held_out, rng)
    t = finder(img)
    d, j = cKDTree(np.c_[t["x"], t["y"]]).query(np.c_[xs, ys])
    found = d <= 2.0
    assert found[snr >= 10].mean() >= 0.9
    # positions within 0.5 px: all stars of SNR >= 20, 95 % of those of SNR >= 10
    assert np.all(d[found & (snr >= 20)] < 0.5)
    assert np.mean(d[found] < 0.5) >= 0.95
    assert np.median(d[found]) < 0.1
    # no spurious detection: every detection is an injected star
    d2, _ = cKDTree(np.c_[xs, ys]).query(np.c_[t["x"], t["y"]])
    assert np.mean(d2 <= 2.0) >= 0.95
    # aperture fluxes close to the injected ones for bright stars
    k = found & (snr > 50)
    ratio = np.asarray(t["flux"])[j[k]] / flux[k]
    assert 0.7 < np.median(ratio) < 1.3


def test_saturated_star_with_halo_is_one_detection(finder, held_out):
    # A planet-like source: a clipped core and a broad halo, as Jupiter on MAGIC
    # 20180817_0055, once came out as several detections around the core.
    img, xs, ys, _, _ = _composite(
        held_out, np.random.default_rng(11), n=12, snr_range=(30.0, 100.0)
    )
    sat = float(np.max(img) + 20000)
    yy, xx = np.mgrid[:192, :192]
    r2 = (xx - 96.3) ** 2 + (yy - 95.6) ** 2
    bright = 40 * sat * np.exp(-r2 / (2 * 1.2**2)) + 0.05 * sat * np.exp(-r2 / (2 * 6.0**2))
    img = np.minimum(img + bright, sat).astype(np.float32)
    t = finder(img)
    d = np.hypot(np.asarray(t["x"]) - 96.3, np.asarray(t["y"]) - 95.6)
    d_inj, _ = cKDTree(np.c_[xs, ys]).query(np.c_[t["x"], t["y"]])
    assert np.count_nonzero((d < 25) & (d_inj > 2.0)) == 1
    assert d[0] < 1.0  # and it is the brightest detection
    assert t["flags"][0] & StarFlag.SATURATED
    # the injected stars outside the halo are still found
    far = np.hypot(xs - 96.3, ys - 95.6) > 15
    d_far, _ = cKDTree(np.c_[t["x"], t["y"]]).query(np.c_[xs, ys][far])
    assert np.mean(d_far <= 2.0) >= 0.9


def test_same_schema_as_classical(finder, held_out):
    img, *_ = _composite(held_out, np.random.default_rng(3), size=96, n=5)
    t = finder(img)
    c = ClassicalStarFinder()(img)
    assert t.colnames == c.colnames
    for name in t.colnames:
        assert t[name].dtype.kind == c[name].dtype.kind
        assert t[name].unit == c[name].unit
    assert np.all(np.diff(t["flux"]) <= 0)  # brightest first
    assert t.meta["probability_threshold"] == 0.5


def test_registered_lazily_without_torch():
    code = (
        "import sys, skysift.detection, skysift.stars.learned as L;"
        "from skysift.detection import STAR_FINDERS;"
        "assert 'unet' in STAR_FINDERS, 'not registered';"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    # the core names the learned finder (an entry point), built on first use
    assert STAR_FINDERS["unet"] == "skysift.stars.learned:make_unet_finder"
    assert isinstance(star_finder("unet", threshold_sigma=3.0), UNetStarFinder)


def test_detect_stars_method_unet_and_registry_keywords(held_out):
    img, *_ = _composite(held_out, np.random.default_rng(11), size=96, n=6)
    t = detect_stars(img, method="unet", threshold_sigma=3.0, saturation=60000.0)
    assert len(t) >= 5
    assert np.all(t["snr"] >= 4.0)  # the registry's 3 sigma is a minimum aperture SNR of 4
    with pytest.raises(InputError, match="probability"):
        UNetStarFinder(score_threshold=3.0)
    with pytest.raises(InputError, match="backend"):
        UNetStarFinder(backend="gpu")


def test_no_detections_in_umd_caption(finder):
    from scipy import ndimage

    data = read_frame("tests/data/umd_allsky/Meteor-20191028.png").data
    near_text = ndimage.binary_dilation(sky_mask(data).text, iterations=2)
    assert near_text.sum() > 10_000

    def n_on_text(t):
        ix = np.clip(np.round(t["x"]).astype(int), 0, data.shape[1] - 1)
        iy = np.clip(np.round(t["y"]).astype(int), 0, data.shape[0] - 1)
        return int(near_text[iy, ix].sum())

    t = finder(data)  # no mask given
    assert len(t) > 200  # the sky's stars are found
    assert n_on_text(t) == 0
    # the network alone takes the caption's colons and full stops for stars:
    # that is why the finder rejects detections on caption text by default
    raw = UNetStarFinder(reject_captions=False)(data)
    assert n_on_text(raw) > 0


def test_missing_weights(tmp_path, held_out):
    img = np.zeros((40, 40), np.float32)
    with pytest.raises(InputError, match="nope.safetensors"):
        UNetStarFinder(weights=tmp_path / "nope.safetensors")(img)
    with pytest.raises(InputError, match="not_a_weights_name"):
        UNetStarFinder(weights="not_a_weights_name")(img)


def test_corrupted_weights(tmp_path):
    for suffix in (".safetensors", ".json"):
        shutil.copy(WEIGHTS_DIR / f"stars_unet{suffix}", tmp_path / f"stars_unet{suffix}")
    path = tmp_path / "stars_unet.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-100:] = b"\x00" * 100
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="stars_unet.safetensors"):
        UNetStarFinder(weights=path)(np.zeros((40, 40), np.float32))


def test_image_smaller_than_a_tile_and_tiled_agree(finder):
    rng = np.random.default_rng(5)
    img = (100 + 5 * rng.standard_normal((21, 30))).astype(np.float32)
    img += GaussianPSF(2.5).render(img.shape, [14.3], [9.6], [3000.0]).astype(np.float32)
    t = finder(img)
    assert len(t) == 1
    assert abs(t["x"][0] - 14.3) < 0.3 and abs(t["y"][0] - 9.6) < 0.3
    # a large image goes through tiles: same stars as whole-image inference
    big = (100 + 5 * rng.standard_normal((300, 700))).astype(np.float32)
    big += (
        GaussianPSF(2.5)
        .render(big.shape, [50.2, 350.0, 600.7], [40.0, 150.5, 260.0], [3000.0] * 3)
        .astype(np.float32)
    )
    tiled = UNetStarFinder(tile=256, overlap=64)(big)
    whole = UNetStarFinder(tile=1024)(big)
    assert len(tiled) == len(whole) == 3
    np.testing.assert_allclose(np.sort(tiled["x"]), np.sort(whole["x"]), atol=0.05)


def test_nan_and_mask_handled(finder):
    rng = np.random.default_rng(9)
    img = (100 + 5 * rng.standard_normal((64, 64))).astype(np.float32)
    img += (
        GaussianPSF(2.5)
        .render(img.shape, [20.0, 45.0], [20.0, 45.0], [3000.0] * 2)
        .astype(np.float32)
    )
    img[40:50, 40:50] = np.nan  # NaNs over the second star: it is masked, not detected
    t = finder(img)
    assert len(t) == 1 and abs(t["x"][0] - 20.0) < 0.3
    mask = np.zeros(img.shape, bool)
    mask[10:30, 10:30] = True
    assert len(finder(img, mask)) == 0
    with pytest.warns(NoDetectionsWarning):
        out = finder(np.full((16, 16), np.nan, np.float32))
    assert len(out) == 0 and out.colnames[0] == "x"
    with pytest.raises(InputError, match="2-D"):
        finder(np.zeros((2, 8, 8)))


def test_data_generator_is_seeded():
    cfg = StarDataConfig(size=32)
    bgs = [prepare_background("tetra3_startracker/2019-07-29T204726_Alt40_Azi45_Try1.tiff")]
    a = star_batch(3, 5, 4, backgrounds=bgs, config=cfg)
    b = star_batch(3, 5, 4, backgrounds=bgs, config=cfg)
    c = star_batch(3, 6, 4, backgrounds=bgs, config=cfg)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == a[1].shape == (4, 1, 32, 32)


def test_masks_match_the_injected_truth():
    bg = prepare_background("magic_allsky/20180817_0055.fits")
    cfg = StarDataConfig(size=64, n_stars_range=(20, 30), p_text=0, p_silhouette=0)
    for i in range(4):
        p = render_star_patch(bg, np.random.default_rng([1, i]), cfg, augment=False)
        lab = p.truth[p.truth["labelled"]]
        assert np.all(np.asarray(p.truth["snr"])[~np.asarray(p.truth["labelled"])] < cfg.label_snr)
        expect = star_label(p.label.shape, lab["x"], lab["y"], p.fwhm, cfg.label_radius)
        np.testing.assert_array_equal(p.label, expect)
        inside = (lab["x"] > -0.5) & (lab["x"] < 63.5) & (lab["y"] > -0.5) & (lab["y"] < 63.5)
        ix = np.round(lab["x"][inside]).astype(int)
        iy = np.round(lab["y"][inside]).astype(int)
        assert p.label[iy, ix].all()
        # the disk radius is max(1.5, 0.6 FWHM)
        r = max(1.5, 0.6 * p.fwhm)
        assert p.label.sum() <= len(lab) * np.pi * (r + 1) ** 2


def test_held_out_frames_refused_for_training():
    with pytest.raises(InputError, match="held-out"):
        next(iter_star_batches(0, 1, 2, backgrounds=[HELD_OUT_BACKGROUNDS[1]]))


def test_tiny_training_smoke():
    from skysift.stars.training import train_stars

    recipe = {
        "model": {"name": "unet", "config": {"depth": 2, "width": 4, "block": "residual"}},
        "data": StarDataConfig(size=32).to_dict(),
        "batch_size": 4,
        "val_steps": 1,
        "phases": [
            {"name": "dots", "data": {"phase": 1}, "epochs": 1, "steps_per_epoch": 2},
            {"name": "composite", "data": {"phase": 2}, "epochs": 1, "steps_per_epoch": 2},
        ],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, card = train_stars(recipe, seed=0, progress=False, evaluate=False)
        model2, _ = train_stars(recipe, seed=0, progress=False, evaluate=False)
    assert [h["phase"] for h in card["recipe"]["history"]] == ["dots", "composite"]
    for (k, v), v2 in zip(model.state_dict().items(), model2.state_dict().values(), strict=True):
        assert np.array_equal(v.numpy(), v2.numpy()), k
    assert set(card["recipe"]["data_split"]["held_out"]) == set(HELD_OUT_BACKGROUNDS)


def test_recall_by_snr_bins_against_truth():
    from astropy.table import Table

    from skysift.stars.evaluation import SNR_BINS, _bin_name, _recall_by_snr

    truth = Table(
        {
            "x": [10.0, 30.0, 50.0, 70.0, 90.0, 110.0],
            "y": [10.0] * 6,
            "snr": [3.0, 5.0, 6.9, 7.0, 9.0, 500.0],
        }
    )
    # found: the SNR 5 star (1.5 px off), the SNR 7 and SNR 500 stars; a detection 3 px
    # from the SNR 6.9 star is too far (match radius 2 px), and the SNR 3 star is in no bin
    det = np.array([[10.0, 10.0], [31.5, 10.0], [50.0, 13.0], [70.0, 10.0], [110.2, 9.9]])
    out = _recall_by_snr(det, truth)
    np.testing.assert_array_equal(out, [[1, 2], [1, 2], [1, 1]])
    assert [_bin_name(*b) for b in SNR_BINS] == [
        "recall_snr_5_7",
        "recall_snr_7_10",
        "recall_snr_10_up",
    ]
