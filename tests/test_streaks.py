"""Streak geometry, the classical streak finder and the streak pipeline, against truth."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift.errors import InputError, NoDetectionsWarning
from skysift.simulation import make_star_field
from skysift.simulation.streaks import render_streak
from skysift.streaks.detection import ClassicalStreakFinder
from skysift.streaks.measurement import streaks_from_probability
from skysift.streaks.pipeline import find_streaks, run_streaks

SEGMENTS = [
    (30.3, 40.7, 210.2, 150.1),
    (20.0, 100.0, 230.0, 100.0),
    (100.0, 20.0, 101.0, 230.0),
    (50.0, 200.0, 200.0, 30.0),
]


def _ends_error(row, x1, y1, x2, y2):
    got = np.array([[row["x1"], row["y1"]], [row["x2"], row["y2"]]])
    true = np.array([[x1, y1], [x2, y2]])
    return min(np.abs(got - true).max(), np.abs(got[::-1] - true).max())  # either orientation


def _angle(x1, y1, x2, y2):
    return np.degrees(np.arctan2(y2 - y1, x2 - x1)) % 180.0


@pytest.mark.parametrize("seg", SEGMENTS)
def test_geometry_from_true_mask(seg):
    _, truth = render_streak((256, 256), *seg, 5e4, 3.0, sigma=10.0)
    t = streaks_from_probability(truth.mask.astype(float))
    assert len(t) == 1
    assert _ends_error(t[0], *seg) < 2.0
    da = abs(t["angle"][0] - _angle(*seg))
    assert min(da, 180 - da) < 0.5
    true_len = np.hypot(seg[2] - seg[0], seg[3] - seg[1])
    assert abs(t["length"][0] / true_len - 1) < 0.02
    assert abs(t["width"][0] - 3.0) < 1.0  # the capsule diameter: the FWHM


def test_geometry_with_image_flux_snr_and_fit():
    seg = SEGMENTS[0]
    rng = np.random.default_rng(1)
    img, truth = render_streak((256, 256), *seg, 5e4, 3.0, sigma=10.0)
    noisy = img + 100 + rng.normal(0, 10, img.shape)
    t = streaks_from_probability(truth.mask.astype(float), noisy)
    assert _ends_error(t[0], *seg) < 1.0
    # the capsule mask of diameter FWHM holds ~3/4 of the light (truth docstring)
    assert 0.6 < t["flux"][0] / 5e4 < 0.85
    expected_snr = t["flux"][0] / (10.0 * np.sqrt(t["n_pix"][0]))
    assert t["snr"][0] == pytest.approx(expected_snr, rel=0.1)


def test_collinear_pieces_merge():
    mask = np.zeros((200, 300), float)
    _, a = render_streak(mask.shape, 20, 50, 120, 100, 1e4, 3.0)
    _, b = render_streak(mask.shape, 140, 110, 260, 170, 1e4, 3.0)  # 22 px gap
    mask = (a.mask | b.mask).astype(float)
    t = streaks_from_probability(mask)
    assert len(t) == 1 and t["n_segments"][0] == 2
    assert _ends_error(t[0], 20, 50, 260, 170) < 2.0
    # a gap larger than merge_gap_px keeps them apart
    assert len(streaks_from_probability(mask, merge_gap_px=10)) == 2


def test_empty_probability_map_warns_with_full_schema():
    with pytest.warns(NoDetectionsWarning):
        t = streaks_from_probability(np.zeros((64, 64)))
    assert len(t) == 0 and {"x1", "angle", "snr", "crosses_border"} <= set(t.colnames)


def test_bad_inputs_raise():
    with pytest.raises(InputError, match="2-D"):
        streaks_from_probability(np.zeros(10))
    with pytest.raises(InputError, match="threshold"):
        streaks_from_probability(np.zeros((10, 10)), threshold=0)
    with pytest.raises(InputError, match="image shape"):
        streaks_from_probability(np.zeros((10, 10)), np.zeros((5, 5)))
    with pytest.raises(InputError, match="smooth_fwhm"):
        ClassicalStreakFinder(smooth_fwhm=0)
    with pytest.raises(InputError, match="method"):
        find_streaks(np.zeros((10, 10)), method="bogus")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_classical_finder_bright_streak_on_star_field(seed):
    stars, _ = make_star_field((512, 512), 150, rng=seed)
    streak, _ = render_streak((512, 512), 60.4, 80.2, 400.7, 300.3, 1e5, 3.0, sigma=10.0)
    d = ClassicalStreakFinder()(stars + streak)
    assert len(d.table) == 1
    assert _ends_error(d.table[0], 60.4, 80.2, 400.7, 300.3) < 3.0
    assert d.p_streak > 0.9


@pytest.mark.parametrize("seed", range(5))
def test_classical_finder_no_streak_on_star_field(seed):
    stars, _ = make_star_field((512, 512), 150, rng=seed)
    with pytest.warns(NoDetectionsWarning):
        d = ClassicalStreakFinder()(stars)
    assert len(d.table) == 0 and d.p_streak == 0.0


def test_real_long_streak_matches_c_pipeline(data_dir):
    # The C pipeline (tests/data/astride_streak/long.fits.c_pipeline_streaks.txt)
    # measured two segments of one streak spanning x 20..342, y 309..338.
    res = find_streaks(data_dir / "astride_streak" / "long.fits")
    t = res.table
    assert len(t) == 1
    left, right = sorted([(t["x1"][0], t["y1"][0]), (t["x2"][0], t["y2"][0])])
    assert np.hypot(left[0] - 20, left[1] - 338) < 5
    assert np.hypot(right[0] - 342, right[1] - 309) < 5
    assert {"ra1", "dec1", "ra2", "dec2"} <= set(t.colnames)
    assert np.isfinite(t["ra1"][0]) and np.isfinite(t["dec2"][0])


def _write_fits(path, data):
    fits.PrimaryHDU(np.asarray(data, np.float32)).writeto(path)


def test_run_streaks_outputs_resume_and_errors(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        stars, _ = make_star_field((128, 160), 20, rng=i)
        if i == 0:
            streak, _ = render_streak((128, 160), 10, 20, 150, 100, 5e4, 3.0)
            stars = stars + streak
        _write_fits(src / f"img{i}.fits", stars)
    (src / "broken.fits").write_bytes(b"not a fits file at all")
    out = tmp_path / "out"
    summary = run_streaks(src, out, method="classical", progress=False)
    assert len(summary) == 4
    by_file = {os.path.basename(f): r for f, r in zip(summary["file"], summary, strict=True)}
    assert by_file["broken.fits"]["n_streaks"] == -1
    assert "broken.fits" in by_file["broken.fits"]["error"]
    assert by_file["img0.fits"]["n_streaks"] == 1
    assert by_file["img1.fits"]["n_streaks"] == 0
    for i in range(3):
        prob = fits.getdata(out / f"img{i}.prob.fits")
        assert prob.shape == (128, 160) and prob.dtype.kind == "f" and prob.dtype.itemsize == 4
        assert (out / f"img{i}.mask.png").exists()
    t0 = Table.read(out / "img0.streaks.ecsv")
    assert t0.colnames[:10] == [
        "x1",
        "y1",
        "x2",
        "y2",
        "length",
        "angle",
        "width",
        "flux",
        "snr",
        "score",
    ]
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("img*")}
    time.sleep(0.02)
    again = run_streaks(src, out, method="classical", progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.glob("img*")} == mtimes
    assert list(again["n_streaks"]) == list(summary["n_streaks"])
    assert Table.read(out / "summary.ecsv")["error"][0] == summary["error"][0]
