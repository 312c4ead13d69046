"""Learned streak detection (classifier + segmenter), its data and the Hough baseline, against truth."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from skysift.errors import InputError, NoDetectionsWarning
from skysift.simulation import make_star_field
from skysift.simulation.streaks import render_streak
from skysift.streaks.training_data import (
    STREAK_HELD_OUT_BACKGROUNDS,
    STREAK_TRAIN_BACKGROUNDS,
    ClassifierBatchSource,
    SegmenterBatchSource,
    StreakDataConfig,
    composite_cutout,
    eval_cutouts,
    load_backgrounds,
    normalise_windows,
)

torch = pytest.importorskip("torch", reason="torch is not installed (the learn extra)")

from skysift.streaks.hough import HoughStreakFinder  # noqa: E402
from skysift.streaks.learned import (  # noqa: E402
    LearnedStreakFinder,
    StreakImageClassifier,
    StreakSegmenter,
    window_starts,
)


def _ends_error(row, x1, y1, x2, y2):
    got = np.array([[row["x1"], row["y1"]], [row["x2"], row["y2"]]])
    true = np.array([[x1, y1], [x2, y2]])
    return min(np.abs(got - true).max(), np.abs(got[::-1] - true).max())


# --------------------------------------------------------------------------- data


def test_backgrounds_are_split_and_exclude_real_trails():
    assert not set(STREAK_TRAIN_BACKGROUNDS) & set(STREAK_HELD_OUT_BACKGROUNDS)
    for name in ("astride_streak/long.fits", "umd_allsky/Meteor-20191028.png"):
        assert name not in STREAK_TRAIN_BACKGROUNDS + STREAK_HELD_OUT_BACKGROUNDS


def test_normalisation_is_eq1_per_window():
    rng = np.random.default_rng(0)
    w = np.stack([100 + 5 * rng.standard_normal((64, 64)), 7 + 0.1 * rng.standard_normal((64, 64))])
    out = normalise_windows(w)
    expected = np.arcsinh((w[0] - 100) / 5)
    assert np.abs(out[0] - expected).mean() < 0.05  # median and 1.4826 MAD of Gaussian noise
    assert abs(np.median(out[1])) < 0.05 and 0.8 < np.std(out[1]) < 1.0
    flat = normalise_windows(np.full((32, 32), 3.0))  # quantised flat window: no NaN
    assert np.all(flat == 0)
    with pytest.raises(InputError, match="windows"):
        normalise_windows(np.zeros(5))


@pytest.fixture(scope="module")
def held_out(data_dir):
    return load_backgrounds(STREAK_HELD_OUT_BACKGROUNDS[:1], data_dir)[0]


def test_composite_cutout_truth_and_reproducibility(held_out):
    cfg = StreakDataConfig(size=128)
    a = composite_cutout(held_out, np.random.default_rng([3, 1]), cfg, streak=True)
    b = composite_cutout(held_out, np.random.default_rng([3, 1]), cfg, streak=True)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    t = a.truth
    assert t["has_streak"] and t["n_mask"] == a.mask.sum() >= cfg.min_mask_pixels
    inside = all(-0.5 <= v <= 127.5 for v in (t["x1"], t["y1"], t["x2"], t["y2"]))
    assert t["inside"] == inside
    # the truth mask lies on the segment: its pixels are within FWHM of the line
    ys, xs = np.nonzero(a.mask)
    d = np.array([t["x2"] - t["x1"], t["y2"] - t["y1"]])
    d /= np.hypot(*d)
    perp = np.abs((xs - t["x1"]) * d[1] - (ys - t["y1"]) * d[0])
    assert perp.max() <= t["fwhm"] / 2 + 1.0
    neg = composite_cutout(held_out, np.random.default_rng(4), cfg, streak=False)
    assert not neg.mask.any() and not neg.truth["has_streak"]


def test_batch_sources_shapes_balance_and_seed(data_dir):
    bgs = load_backgrounds(STREAK_TRAIN_BACKGROUNDS[:2], data_dir)
    x, y = ClassifierBatchSource(StreakDataConfig(size=128), bgs)(np.random.default_rng(0), 6)
    assert x.shape == (6, 1, 128, 128) and y.shape == (6, 1) and y.sum() == 3
    src = SegmenterBatchSource(StreakDataConfig(size=64, p_streak=1.0, min_mask_pixels=20), bgs)
    x1, y1 = src(np.random.default_rng(1), 2)
    x2, _ = src(np.random.default_rng(1), 2)
    assert np.array_equal(x1, x2) and y1.shape == (2, 1, 64, 64) and y1.sum() >= 40


# --------------------------------------------------------------------------- tiling


def test_window_starts_cover_the_axis():
    assert window_starts(100, 256, 10) == [0]
    s = window_starts(1032, 256, 128)
    assert s[0] == 0 and s[-1] == 1032 - 256 and all(np.diff(s) <= 128)
    with pytest.raises(InputError, match="step"):
        window_starts(10, 4, 0)


class _Const(torch.nn.Module):
    """Logits = a fixed value everywhere (a segmentation net)."""

    size_multiple = 8
    config = {"out_channels": 1}

    def __init__(self, value=0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(float(value)))

    def forward(self, x):
        return torch.zeros_like(x) + self.w


class _Bright(torch.nn.Module):
    """Classifier whose logit is the window's largest normalised value minus 5."""

    input_size = 32

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.w * x.amax(dim=(2, 3)) - 5.0


@pytest.mark.parametrize(("shape", "step"), [((300, 517), 64), ((100, 90), 10), ((520, 600), 250)])
def test_segmenter_average_covers_every_pixel(shape, step, torch_one_thread):
    seg = StreakSegmenter(_Const(1.0), window=64, step=step, border=10, backend="torch")
    p = seg(np.random.default_rng(0).normal(size=shape))
    assert p.shape == shape and p.dtype == np.float32
    assert np.allclose(p, 1 / (1 + np.exp(-1.0)), atol=1e-6)  # no gap, no double count
    whole = seg.replace(mode="whole")(np.zeros(shape))
    assert whole.shape == shape and np.allclose(whole, p)
    mask = np.zeros(shape, bool)
    mask[5, 7] = True
    assert seg(np.zeros(shape), mask)[5, 7] == 0.0
    with pytest.raises(InputError, match="mode"):
        StreakSegmenter(_Const(), mode="tiles")
    with pytest.raises(InputError, match="border"):
        StreakSegmenter(_Const(), window=64, border=40)


def test_classifier_image_score_is_the_best_window(torch_one_thread):
    clf = StreakImageClassifier(_Bright(), overlap=8, backend="torch")
    img = np.random.default_rng(1).normal(size=(100, 150))
    scores, corners = clf.window_scores(img)
    assert (
        corners.min() == 0 and corners[:, 0].max() == 100 - 32 and corners[:, 1].max() == 150 - 32
    )
    img[60, 130] += 1e4
    scores2, _ = clf.window_scores(img)
    best = corners[np.argmax(scores2)]
    assert best[0] <= 60 < best[0] + 32 and best[1] <= 130 < best[1] + 32
    assert clf(img) == pytest.approx(scores2.max()) and clf(img) > scores.max()
    with pytest.raises(InputError, match="threshold"):
        StreakImageClassifier(threshold=2)


# --------------------------------------------------------------------------- Hough baseline


@pytest.mark.parametrize("seed", [0, 1])
def test_hough_finds_a_streak_on_a_star_field_and_nothing_on_stars(seed):
    stars, _ = make_star_field((512, 512), 150, rng=seed)
    streak, _ = render_streak((512, 512), 60.4, 80.2, 400.7, 300.3, 1e5, 3.0, sigma=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        d = HoughStreakFinder()(stars + streak)
    assert len(d.table) == 1
    assert _ends_error(d.table[0], 60.4, 80.2, 400.7, 300.3) < 3.0
    with pytest.warns(NoDetectionsWarning):
        e = HoughStreakFinder()(stars)
    assert len(e.table) == 0
    with pytest.raises(InputError, match="line_length"):
        HoughStreakFinder(line_length=0)


# --------------------------------------------------------------------------- shipped weights


@pytest.fixture(scope="module")
def shipped():
    from skysift.learning.weights import WEIGHTS

    if not {"streak_classifier", "streak_segmenter"} <= set(WEIGHTS):
        pytest.skip("streak weights not shipped (skysift train streaks builds them)")
    return StreakImageClassifier(num_threads=1), StreakSegmenter(num_threads=1)


def test_shipped_classifier_scores_streak_and_empty_cutouts(shipped, held_out):
    clf, _ = shipped
    cfg = StreakDataConfig(size=128, snr_avg_range=(10.0, 30.0), edge_fraction=0.0)
    pos = [
        composite_cutout(held_out, np.random.default_rng([11, k]), cfg, streak=True)
        for k in range(4)
    ]
    neg = [
        composite_cutout(held_out, np.random.default_rng([12, k]), cfg, streak=False)
        for k in range(4)
    ]
    s_pos = clf.score_windows(np.stack([c.image for c in pos]))
    s_neg = clf.score_windows(np.stack([c.image for c in neg]))
    assert np.all(s_pos > 0.5) and np.all(s_neg < 0.5)


def test_shipped_segmenter_recovers_streak_endpoints(shipped, held_out):
    # bright streaks fully inside 384x384 held-out cutouts (some modulated, some crossing stars)
    clf, seg = shipped
    cfg = StreakDataConfig(size=384, snr_avg_range=(8.0, 20.0), length_range=(150, 250))
    finder = LearnedStreakFinder(clf, seg)
    errors, recall = [], []
    for k in range(30):
        c = composite_cutout(held_out, np.random.default_rng([21, k]), cfg, streak=True)
        t = c.truth
        if not t["inside"]:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            d = finder(c.image)
        assert d.p_streak > 0.5 and len(d.table) == 1
        errors.append(_ends_error(d.table[0], t["x1"], t["y1"], t["x2"], t["y2"]))
        recall.append(np.median(d.prob[c.mask]))
    assert len(errors) >= 6
    assert np.median(errors) < 4.0 and np.mean(np.array(errors) < 4.0) >= 0.5
    assert np.median(recall) > 0.5  # the probability is high on the truth mask


def test_shipped_finder_skips_unflagged_images_unless_all(shipped, held_out):
    clf, seg = shipped
    c = composite_cutout(
        held_out, np.random.default_rng(5), StreakDataConfig(size=256), streak=False
    )
    with pytest.warns(NoDetectionsWarning):
        d = LearnedStreakFinder(clf, seg)(c.image)
    assert d.p_streak < 0.5 and not d.prob.any() and len(d.table) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        d_all = LearnedStreakFinder(clf, seg, segment_all=True)(c.image)
    assert d_all.prob.any()


def test_shipped_learned_finder_on_the_real_long_streak(shipped, data_dir):
    # The C pipeline measured two segments of one streak spanning x 20..342, y 309..338.
    from skysift.streaks.pipeline import find_streaks

    clf, seg = shipped
    res = find_streaks(
        data_dir / "astride_streak" / "long.fits", finder=LearnedStreakFinder(clf, seg)
    )
    t = res.table
    assert len(t) == 1 and res.p_streak > 0.5
    left, right = sorted([(t["x1"][0], t["y1"][0]), (t["x2"][0], t["y2"][0])])
    assert np.hypot(left[0] - 20, left[1] - 338) < 5
    assert np.hypot(right[0] - 342, right[1] - 309) < 5
    assert np.isfinite(t["ra1"][0]) and np.isfinite(t["dec2"][0])


def test_eval_cutouts_are_fixed(data_dir):
    cfg = StreakDataConfig(size=64, min_mask_pixels=20)
    a = eval_cutouts(3, cfg, seed=9, data_dir=data_dir, count_stars=True)
    b = eval_cutouts(3, cfg, seed=9, data_dir=data_dir, count_stars=False)
    assert [c.truth["has_streak"] for c in a] == [True, False, True]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert all(c.truth["n_stars"] >= 0 for c in a) and all(c.truth["n_stars"] == -1 for c in b)


def test_learned_runner_reports_bad_input_mid_sequence_and_completes(shipped, data_dir, tmp_path):
    import shutil

    from skysift.streaks.pipeline import run_streaks

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(data_dir / "astride_streak" / "long.fits", src / "a_long.fits")
    (src / "b_broken.fits").write_bytes(b"SIMPLE  = garbage")
    empty, _ = make_star_field((200, 240), 30, rng=4)
    from astropy.io import fits

    fits.PrimaryHDU(empty.astype(np.float32)).writeto(src / "c_stars.fits")
    summary = run_streaks(src, tmp_path / "out", progress=False)
    rows = {r["file"].split("/")[-1]: r for r in summary}
    assert rows["a_long.fits"]["n_streaks"] == 1 and rows["a_long.fits"]["p_streak"] > 0.5
    assert (
        rows["b_broken.fits"]["n_streaks"] == -1
        and "b_broken.fits" in rows["b_broken.fits"]["error"]
    )
    assert rows["c_stars.fits"]["n_streaks"] == 0
    assert (tmp_path / "out" / "c_stars.streaks.ecsv").exists()


def test_training_recipe_is_reproducible_and_rejects_bad_keys(data_dir, torch_one_thread):
    from skysift.streaks.training import default_recipe, train_streak_model

    rec = default_recipe()["streak_segmenter"]
    tiny = {
        "phases": [dict(p, epochs=1, steps_per_epoch=1, batch_size=2) for p in rec["phases"][:2]],
        "val_steps": 1,
    }
    m1, card = train_streak_model("streak_segmenter", tiny, progress=False, data_dir=data_dir)
    m2, _ = train_streak_model("streak_segmenter", tiny, progress=False, data_dir=data_dir)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert card["recipe"]["data_split"]["held_out"] == list(STREAK_HELD_OUT_BACKGROUNDS)
    with pytest.raises(InputError, match="unknown recipe key"):
        train_streak_model("streak_segmenter", {"epochs": 3})
    with pytest.raises(InputError, match="unknown streak model"):
        train_streak_model("streak_finder")
