"""The hybrid star finder: matched filter + U-Net candidates, learned scorer (``stars_rerank``)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from skysift.detection.stars import STAR_FINDERS, detect_stars
from skysift.errors import InputError
from skysift.evaluation.metrics import match_objects
from skysift.learning.models import CandidateMLP, build_model
from skysift.learning.weights import WEIGHTS_DIR, save_weights
from skysift.simulation.psf import GaussianPSF
from skysift.stars.hybrid import (
    FEATURE_NAMES,
    HybridStarFinder,
    candidate_features,
    make_hybrid_finder,
    matched_filter_maps,
    psf_fwhm_from_stars,
)
from skysift.stars.learned import UNetStarFinder
from skysift.stars.training_data import HELD_OUT_BACKGROUNDS, prepare_background, snr_to_flux
from skysift.stars.training_rerank import label_candidates

pytestmark = pytest.mark.filterwarnings("ignore::skysift.errors.NoDetectionsWarning")


@pytest.fixture(scope="module")
def held_out():
    return prepare_background(HELD_OUT_BACKGROUNDS[0])  # MAGIC 20180817_0341, never trained on


def _field(rng, size=160, n=30, snr_range=(6.0, 200.0), fwhm=2.4, sky=100.0, sigma=5.0):
    """Flat sky with white noise and well-separated Gaussian stars of known matched-filter SNR."""
    xs, ys = [], []
    while len(xs) < n:
        x, y = rng.uniform(10, size - 11, 2)
        if not xs or np.min(np.hypot(np.array(xs) - x, np.array(ys) - y)) > 12:
            xs.append(x)
            ys.append(y)
    xs, ys = np.array(xs), np.array(ys)
    snr = np.exp(rng.uniform(*np.log(snr_range), n))
    flux = snr_to_flux(snr, sigma, fwhm)
    img = sky + sigma * rng.standard_normal((size, size))
    img = img + GaussianPSF(fwhm).render((size, size), xs, ys, flux)
    return img.astype(np.float32), xs, ys, snr


def test_matched_filter_snr_is_calibrated():
    rng = np.random.default_rng(3)
    sigma, fwhm = 5.0, 2.4
    noise_only = (100 + sigma * rng.standard_normal((200, 200))).astype(np.float32)
    maps = matched_filter_maps(noise_only, np.ones((200, 200), bool), fwhm)
    inner = maps.snr[20:-20, 20:-20]
    # unit variance on pure noise (within 10 %), zero mean
    assert abs(float(inner.std()) - 1.0) < 0.1
    assert abs(float(inner.mean())) < 0.1
    # an isolated star of matched-filter SNR 20: the map peaks at 20 +- 2.5 within 1 px
    img = noise_only + GaussianPSF(fwhm).render(
        (200, 200), [100.3], [99.6], [snr_to_flux(20.0, sigma, fwhm)]
    ).astype(np.float32)
    m = matched_filter_maps(img, np.ones((200, 200), bool), fwhm)
    y, x = np.unravel_index(np.argmax(m.snr), m.snr.shape)
    assert np.hypot(x - 100.3, y - 99.6) <= 1.0
    assert abs(float(m.snr[y, x]) - 20.0) < 2.5


def test_psf_fwhm_recovered():
    rng = np.random.default_rng(11)
    for fwhm in (1.9, 3.2):
        img, *_ = _field(rng, size=200, n=40, snr_range=(30.0, 300.0), fwhm=fwhm)
        stars = UNetStarFinder()(img)
        assert abs(psf_fwhm_from_stars(img, stars) - fwhm) < 0.15


def test_finds_injected_stars_on_held_out_sky(held_out):
    """On a crop of the held-out MAGIC sky: SNR >= 8 stars found, centroids within 0.5 px."""
    rng = np.random.default_rng(21)
    size, fwhm = 192, 2.5
    h, w = held_out.shape
    for _ in range(500):
        y0, x0 = int(rng.integers(0, h - size)), int(rng.integers(0, w - size))
        if held_out.sky_fraction(y0, x0, size) == 1.0:
            break
    sl = (slice(y0, y0 + size), slice(x0, x0 + size))
    noise = held_out.noise[sl]
    _, xs, ys, snr = _field(rng, size=size, n=40, snr_range=(8.0, 300.0), fwhm=fwhm)
    flux = snr_to_flux(snr, noise[ys.astype(int), xs.astype(int)], fwhm)
    img = held_out.star_free[sl] + noise * rng.standard_normal((size, size))
    img = (img + GaussianPSF(fwhm).render((size, size), xs, ys, flux)).astype(np.float32)
    t = HybridStarFinder()(img)
    m = match_objects(np.c_[t["x"], t["y"]], np.c_[xs, ys], 1.5)
    assert m.recall >= 0.95
    assert m.fp <= 2
    assert np.sqrt(np.mean(m.dx**2 + m.dy**2)) < 0.5
    assert set(t.colnames) >= {"x", "y", "flux", "snr", "flags", "score", "mf_snr"}
    assert np.all((t["score"] >= 0.5) & (t["score"] <= 1.0))
    assert abs(t.meta["psf_fwhm"] - fwhm) < 0.3


def test_pure_noise_gives_few_detections():
    rng = np.random.default_rng(5)
    img = (100 + 5 * rng.standard_normal((256, 256))).astype(np.float32)
    # a matched filter at 3.4 sigma alone gives tens of noise peaks here; the scorer keeps few
    finder = HybridStarFinder(fwhm=2.4)
    x, y, feats, maps = finder.candidates(img)
    assert len(x) >= 10
    assert len(finder(img)) <= 3


def test_registered_and_threshold_keywords():
    assert "hybrid" in STAR_FINDERS
    f = make_hybrid_finder(threshold_sigma=3.0, score_threshold=0.7)
    assert isinstance(f, HybridStarFinder)
    assert f.score_threshold == 0.7
    assert f.min_snr > 0
    rng = np.random.default_rng(2)
    img, xs, ys, snr = _field(rng, n=10, snr_range=(30.0, 100.0))
    t = detect_stars(img, method="hybrid")
    m = match_objects(np.c_[t["x"], t["y"]], np.c_[xs, ys], 1.5)
    assert m.recall == 1.0


def test_bad_parameters_and_inputs():
    with pytest.raises(InputError, match="threshold"):
        HybridStarFinder(score_threshold=1.5)
    with pytest.raises(InputError, match="candidate_snr"):
        HybridStarFinder(candidate_snr=-1)
    with pytest.raises(InputError, match="fwhm"):
        HybridStarFinder(fwhm=0.0)
    with pytest.raises(InputError, match="fwhm"):
        matched_filter_maps(np.zeros((20, 20)), np.ones((20, 20), bool), float("nan"))
    with pytest.raises(InputError, match="one shape"):
        matched_filter_maps(np.zeros((20, 20)), np.ones((20, 21), bool), 2.0)
    with pytest.raises(InputError, match="no sky"):
        matched_filter_maps(np.zeros((20, 20)), np.zeros((20, 20), bool), 2.0)
    with pytest.raises(InputError, match="every pixel is masked"):
        HybridStarFinder().candidates(np.zeros((20, 20)), np.ones((20, 20), bool))
    with pytest.raises(InputError, match="threshold"):
        make_hybrid_finder(threshold_sigma=-1.0)
    with pytest.raises(InputError, match="unet_threshold"):
        HybridStarFinder(unet_threshold=0.0)


def test_nan_pixels_are_masked():
    rng = np.random.default_rng(8)
    img, xs, ys, _ = _field(rng, n=12, snr_range=(30.0, 100.0))
    img[:, :20] = np.nan
    t = HybridStarFinder()(img)
    assert np.all(t["x"] > 20)
    keep = xs > 25
    m = match_objects(np.c_[t["x"], t["y"]], np.c_[xs[keep], ys[keep]], 1.5)
    assert m.recall == 1.0


def test_missing_corrupted_and_wrong_scorer_weights(tmp_path):
    img = np.zeros((64, 64), np.float32)
    with pytest.raises(InputError, match="nope.safetensors"):
        HybridStarFinder(rerank_weights=tmp_path / "nope.safetensors", fwhm=2.0)(img + 1)
    for suffix in (".safetensors", ".json"):
        shutil.copy(WEIGHTS_DIR / f"stars_rerank{suffix}", tmp_path / f"stars_rerank{suffix}")
    path = tmp_path / "stars_rerank.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-64:] = b"\x00" * 64
    path.write_bytes(bytes(raw))
    rng = np.random.default_rng(1)
    img = (100 + 5 * rng.standard_normal((64, 64))).astype(np.float32)
    with pytest.raises(InputError, match="stars_rerank.safetensors"):
        HybridStarFinder(rerank_weights=path, fwhm=2.0)(img)
    wrong = CandidateMLP(5)
    wpath = save_weights(wrong, tmp_path / "wrong.safetensors", {"name": "wrong"}).path
    with pytest.raises(InputError, match="features"):
        HybridStarFinder(rerank_weights=wpath, fwhm=2.0)(img)
    with pytest.raises(InputError, match="not candidate-scorer weights"):
        HybridStarFinder(rerank_weights="stars_unet", fwhm=2.0)(img)


def test_candidate_mlp_standardises_and_checks_shape():
    m = build_model("candidate_mlp", n_features=3, width=4, depth=1)
    m.set_standardisation(np.array([1.0, 2.0, 3.0]), np.array([2.0, 0.0, 1.0]))
    assert torch.allclose(m.scale, torch.tensor([2.0, 1e-6, 1.0]))
    p = m.predict(np.array([[1.0, np.nan, np.inf]], np.float32))
    assert p.shape == (1, 1) and torch.isfinite(p).all()
    with pytest.raises(InputError, match=r"\(B, 3\)"):
        m(torch.zeros(2, 4))
    with pytest.raises(InputError, match="sizes"):
        CandidateMLP(0)


def test_candidate_labels_against_truth():
    x = np.array([10.0, 20.0, 30.5, 50.0])
    y = np.array([10.0, 20.0, 30.0, 50.0])
    truth = np.array([[10.5, 10.0], [30.0, 30.0], [20.0, 21.0]])
    snr = np.array([10.0, 2.0, 6.0])
    lab, use = label_candidates(x, y, truth, snr, label_snr=3.0)
    # 10,10 -> star (SNR 10); 20,20 -> star (SNR 6); 30.5,30 -> star of SNR 2: not used; 50 -> not a star
    assert lab.tolist() == [1, 1, 1, 0]
    assert use.tolist() == [True, True, False, True]


def test_features_have_the_documented_length():
    rng = np.random.default_rng(4)
    img, *_ = _field(rng, n=8, snr_range=(10.0, 50.0))
    sky = np.ones(img.shape, bool)
    maps = matched_filter_maps(img, sky, 2.4)
    x, y, f = candidate_features(maps, np.zeros(img.shape, np.float32), sky)
    assert f.shape == (len(x), len(FEATURE_NAMES)) and np.isfinite(f).all()


def test_star_in_a_small_sky_gap_is_measured():
    """Regression: a star whose photometric annulus is entirely masked used to crash sep."""
    rng = np.random.default_rng(9)
    img = (100 + 5 * rng.standard_normal((120, 120))).astype(np.float32)
    img += GaussianPSF(2.5).render(img.shape, [60.2], [59.7], [20000.0]).astype(np.float32)
    mask = np.ones(img.shape, bool)
    mask[52:69, 52:69] = False  # a 17-px window: the 10-16 px annulus falls on masked pixels
    t = UNetStarFinder()(img, mask)
    assert len(t) == 1
    assert np.hypot(t["x"][0] - 60.2, t["y"][0] - 59.7) < 0.3


def test_tiny_reranker_training_is_reproducible_and_loadable(tmp_path):
    from safetensors.torch import load_file

    from skysift.stars.training_rerank import train_star_reranker

    cfg = {"n_frames": 1, "steps": 200, "batch": 256, "n_val_frames": 1}
    paths = []
    for run in ("a", "b"):
        model, card = train_star_reranker(cfg, out=tmp_path / run, evaluate=False, progress=False)
        assert card["recipe"]["candidates"] > 100 and 0 < card["recipe"]["positives"]
        paths.append(tmp_path / run / "stars_rerank.safetensors")
        # the validation table (training backgrounds): precision rises with the cut
        val = card["metrics"]["validation"]
        assert val["frames"] == 1 and len(val["threshold"]) == len(val["precision"]) == 9
        assert val["precision"][-1] >= val["precision"][0]
        assert "Validation" in (tmp_path / run / "stars_rerank.md").read_text()
    a, b = load_file(paths[0]), load_file(paths[1])
    assert all(torch.equal(a[k], b[k]) for k in a)
    rng = np.random.default_rng(6)
    img, xs, ys, _ = _field(rng, n=10, snr_range=(40.0, 100.0))
    t = HybridStarFinder(rerank_weights=paths[0])(img)
    # even this briefly trained scorer keeps bright, isolated stars
    m = match_objects(np.c_[t["x"], t["y"]], np.c_[xs, ys], 1.5)
    assert m.recall >= 0.9
    with pytest.raises(InputError, match="unknown reranker option"):
        train_star_reranker({"epochs": 3}, evaluate=False, progress=False)


def test_opening_snr_follows_sky_structure_and_is_calibrated():
    """Sky structure wider than the opening disk makes no candidate; a star beside it keeps its SNR."""
    rng = np.random.default_rng(11)
    size, sigma, fwhm = 200, 5.0, 2.4
    sky = np.full((size, size), 100.0)
    sky[:, 90:110] += 10 * sigma  # a sharp-edged band 20 px wide (a cloud edge, the Milky Way)
    x0, y0, snr0 = 84.3, 100.6, 12.0  # a star 6 px outside the band's edge
    star = GaussianPSF(fwhm).render((size, size), [x0], [y0], snr_to_flux([snr0], sigma, fwhm))
    img = (sky + star + sigma * rng.standard_normal((size, size))).astype(np.float32)
    maps = matched_filter_maps(img, np.ones((size, size), bool), fwhm)
    inner = (slice(20, -20), slice(20, -20))
    # pure noise away from the band: the opening SNR has unit variance (within 15 %)
    quiet = np.r_[
        maps.snr_opening_local_noise[20:-20, 20:70].ravel(),
        maps.snr_opening_local_noise[20:-20, 130:-20].ravel(),
    ]
    assert abs(float(quiet.std()) - 1.0) < 0.15
    # along the band's edges (no star): no candidate-level peak
    edges = np.zeros((size, size), bool)
    edges[:, 86:94] = edges[:, 106:114] = True
    edges[95:107, :] = False  # leave out the star's rows
    assert float(maps.snr_opening_local_noise[inner][edges[inner]].max()) < 4.5
    # the star: its SNR within 25 % of the truth, at its pixel (1 px)
    yy, xx = np.mgrid[0:size, 0:size]
    near = np.hypot(xx - x0, yy - y0) <= 1.5
    assert abs(float(maps.snr_opening[near].max()) - snr0) < 0.25 * snr0
    x, y, feats = candidate_features(
        maps, np.zeros((size, size), np.float32), np.ones((size, size), bool)
    )
    assert np.min(np.hypot(x - x0, y - y0)) <= 1.5  # a candidate at the star's pixel or the next
    assert feats.shape[1] == len(FEATURE_NAMES)


def test_no_hybrid_detections_in_umd_caption():
    """With no mask given, caption text is still not sky: no candidate, no detection there."""
    from scipy import ndimage

    from skysift.detection.masks import sky_mask
    from skysift.io import read_frame

    data = read_frame("tests/data/umd_allsky/Meteor-20191028.png").data
    near_text = ndimage.binary_dilation(sky_mask(data).text, iterations=2)
    assert near_text.sum() > 10_000
    t = HybridStarFinder()(data)
    ix = np.clip(np.round(t["x"]).astype(int), 0, data.shape[1] - 1)
    iy = np.clip(np.round(t["y"]).astype(int), 0, data.shape[0] - 1)
    assert len(t) > 200
    assert int(near_text[iy, ix].sum()) == 0
    # without the caption rejection the matched filter takes the text's strokes for stars
    raw = HybridStarFinder(reject_captions=False)(data)
    ix = np.clip(np.round(raw["x"]).astype(int), 0, data.shape[1] - 1)
    iy = np.clip(np.round(raw["y"]).astype(int), 0, data.shape[0] - 1)
    assert int(near_text[iy, ix].sum()) > 0
