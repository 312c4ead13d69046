"""Tests of skysift.stamps: shipped weights, baseline, pipeline and error paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

from skysift.errors import InputError
from skysift.simulation.sources import render_galaxy, render_stars
from skysift.simulation.streaks import render_sso_trail
from skysift.stamps import (
    CLASSES,
    HELDOUT,
    BaselineClassifier,
    StampClassifier,
    classify_stamps,
    evaluate_stamps,
    fit_temperature,
    load_stamp_classifier,
    prepare_stamps,
    purity_at_abundance,
    roc_curve,
    run_stamps,
    simulate_stamps,
)
from skysift.stamps.data import EXPOSURE_S, PIXEL_SCALE

SSO = CLASSES.index("sso")


@pytest.fixture(scope="module")
def heldout():
    """200 held-out stamps (3 dithers), a seed the training never used."""
    return simulate_stamps(200, 2024, settings=HELDOUT, n_dithers=3)


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_stamp_classifier()


def test_shipped_weights_accuracy(heldout, model):
    x, nc, truth = heldout
    tab = classify_stamps(x[:, :3], weights=model)
    y = np.asarray(truth["label"])
    pred = np.array([CLASSES.index(c) for c in tab["class"]])
    acc4 = np.mean(pred == y)
    acc2 = np.mean((pred == SSO) == (y == SSO))
    assert acc4 >= 0.93, acc4
    assert acc2 >= 0.96, acc2
    p = np.stack([tab["p_sso"], tab["p_star"], tab["p_galaxy"], tab["p_cosmic"]], axis=1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_single_exposure_accuracy(model):
    x, nc, truth = simulate_stamps(120, 77, settings=HELDOUT, n_dithers=1)
    tab = classify_stamps(x[:, 0], weights=model)  # (N, H, W) input
    y = np.asarray(truth["label"])
    pred = np.array([CLASSES.index(c) for c in tab["class"]])
    assert np.mean(pred == y) >= 0.75


def test_baseline_accuracy(heldout):
    x, nc, truth = heldout
    out = BaselineClassifier()(x[:, :3], psf_fwhm=np.asarray(truth["psf_fwhm"]))
    y = np.asarray(truth["label"])
    pred = np.asarray(out["label"])
    assert np.mean(pred == y) >= 0.65
    assert np.mean((pred == SSO) == (y == SSO)) >= 0.88
    # the CR rule finds most cosmic rays
    assert np.mean(pred[y == CLASSES.index("cosmic_ray")] == CLASSES.index("cosmic_ray")) >= 0.8


def test_evaluate_small(heldout):
    res = evaluate_stamps(n_per_class=50, stamps=heldout, baseline=False)
    assert res["cnn"]["accuracy_2class"] >= 0.96
    assert res["cnn"]["auc_sso"] >= 0.98
    cm = np.asarray(res["cnn"]["confusion"])
    assert cm.sum() == 200 and np.trace(cm) / 200 == pytest.approx(res["cnn"]["accuracy_4class"])


def test_roc_and_purity_known_values():
    fpr, tpr, auc = roc_curve(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0], bool))
    assert auc == pytest.approx(0.75)
    # perfectly separated scores: purity 1 at any abundance
    s = np.r_[np.ones(10), np.zeros(1000)]
    r = purity_at_abundance(s, s > 0.5, 1e-4)
    assert r["purity"] == pytest.approx(1.0) and r["completeness"] == pytest.approx(1.0)
    # one negative above all positives among 1000 negatives: at abundance 1e-3 its weight is
    # (1 - 1e-3) / 1e-3 * 10 / 1000 = 9.99 -> purity at completeness 1 = 10 / 19.99
    s2 = s.copy()
    s2[-1] = 2.0
    r2 = purity_at_abundance(s2, s > 0.5, 1e-3)
    assert r2["purity"] == pytest.approx(10 / (10 + 9.99), rel=1e-3)


def test_fit_temperature_recovers_known_value():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (4000, 4))
    p = np.exp(z / 2.0)
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=pi) for pi in p])
    assert fit_temperature(z, y) == pytest.approx(2.0, rel=0.15)


def test_run_stamps_on_cube(tmp_path, heldout, model):
    x, _, truth = heldout
    cube = x[:40, :3]
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(cube).writeto(path)
    tab = run_stamps(path, tmp_path / "out")
    assert len(tab) == 40
    back = Table.read(tmp_path / "out" / "stamps.ecsv")
    y = np.asarray(truth["label"][:40])
    pred = np.array([CLASSES.index(c) for c in back["class"]])
    assert np.mean(pred == y) >= 0.9
    assert (tmp_path / "out" / "contact_sso.png").is_file()


def _dithered_frames(n=3, size=128, interval=1.2, seed=3):
    """Registered frames with 6 stars, a galaxy and one SSO; the SSO moves 20 px per exposure."""
    rng = np.random.default_rng(seed)
    fwhm, bkg = 1.8, 100.0
    sx = np.array([20.3, 40.7, 100.2, 25.5, 105.1, 70.4])
    sy = np.array([25.6, 100.1, 20.8, 70.2, 105.3, 40.9])
    stars, _ = render_stars((size, size), sx, sy, np.full(6, 2e4), fwhm)
    gal, _ = render_galaxy(
        (size, size), 95.0, 65.0, 3e4, 1.0, 4.0, ellipticity=0.3, pa=20.0, psf=fwhm
    )
    v = np.array([16.0, 12.0])  # pixels per exposure: 20 px -> rate 12.7 arcsec/h
    start = np.array([40.0, 48.0])
    frames = []
    for c in range(n):
        a = start + interval * c * v
        sso, _ = render_sso_trail((size, size), a[0], a[1], a[0] + v[0], a[1] + v[1], 2e4, fwhm)
        img = stars + gal + sso + bkg
        frames.append(rng.poisson(img) + rng.normal(0, 4.5, img.shape))
    return np.array(frames, np.float32), (sx, sy), start + v / 2, v


def test_run_stamps_on_dithered_frames(tmp_path, model):
    frames, (sx, sy), sso_mid, v = _dithered_frames()
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [64.0, 64.0]
    w.wcs.cdelt = [-PIXEL_SCALE / 3600, PIXEL_SCALE / 3600]
    paths = []
    for c, f in enumerate(frames):
        p = tmp_path / f"dither{c}.fits"
        fits.PrimaryHDU(f, header=w.to_header()).writeto(p)
        paths.append(p)
    tab = run_stamps(paths, tmp_path / "out", n_dithers=3, dither_interval=1.2)
    x, y = np.asarray(tab["x"]), np.asarray(tab["y"])
    # every star is found within 1 px and classified as a star
    for xs, ys in zip(sx, sy, strict=True):
        d = np.hypot(x - xs, y - ys)
        assert d.min() < 1.0
        assert tab["class"][int(np.argmin(d))] == "star"
    # the SSO is found at its trail midpoint in dither 0 and classified as SSO
    d = np.hypot(x - sso_mid[0], y - sso_mid[1])
    k = int(np.argmin(d))
    assert d[k] < 1.0
    assert tab["class"][k] == "sso"
    true_rate = np.hypot(*v) * PIXEL_SCALE / (EXPOSURE_S / 3600.0)
    assert tab["rate"][k] == pytest.approx(true_rate, rel=0.05)
    assert tab["pa"][k] == pytest.approx(np.degrees(np.arctan2(v[1], v[0])), abs=2.0)
    sky = w.pixel_to_world(sx[0], sy[0])
    d = np.hypot(x - sx[0], y - sy[0])
    k = int(np.argmin(d))
    assert tab["ra"][k] == pytest.approx(sky.ra.deg, abs=1.0 / 3600 * PIXEL_SCALE)
    assert tab["dec"][k] == pytest.approx(sky.dec.deg, abs=1.0 / 3600 * PIXEL_SCALE)
    assert (tmp_path / "out" / "stamps.ecsv").is_file()


def test_empty_input_gives_empty_table(model):
    tab = classify_stamps(np.zeros((0, 3, 32, 32)), weights=model)
    assert len(tab) == 0 and "p_sso" in tab.colnames


def test_prepare_is_scale_free(heldout):
    x = heldout[0][:8, :3]
    np.testing.assert_allclose(prepare_stamps(x), prepare_stamps(7.0 * x + 300.0), atol=1e-4)


# ---------------------------------------------------------------- error paths


def test_wrong_size_raises(model):
    with pytest.raises(InputError, match="at least 32x32"):
        classify_stamps(np.ones((2, 3, 16, 16)), weights=model)
    with pytest.raises(InputError, match=r"\(N, C, H, W\) or \(N, H, W\)"):
        classify_stamps(np.ones((32, 32)), weights=model)
    with pytest.raises(InputError, match="1 to 4 dither channels"):
        classify_stamps(np.ones((2, 5, 32, 32)), weights=model)


def test_nan_raises_or_fills(heldout, model):
    x = heldout[0][:4, :3].copy()
    x[1, 0, 5, 5] = np.nan
    with pytest.raises(InputError, match=r"stamps \[1\] contain NaN"):
        classify_stamps(x, weights=model)
    tab = classify_stamps(x, weights=model, nan="fill")
    assert np.isfinite(tab["p_sso"]).all()
    with pytest.raises(InputError, match="nan must be"):
        classify_stamps(x, weights=model, nan="zero")


def test_missing_dither_raises(heldout, model):
    x = heldout[0][:4, :3].copy()
    x[2, 1] = np.nan
    with pytest.raises(InputError, match="stamp 2 has a missing dither: channel 1"):
        classify_stamps(x, weights=model)
    x = heldout[0][:4, :3].copy()
    x[0, 2] = 0.0
    with pytest.raises(InputError, match="stamp 0 has a missing dither: channel 2 is constant"):
        classify_stamps(x, weights=model)


def test_run_stamps_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        run_stamps(tmp_path / "nope.fits", tmp_path / "out")
    f = np.zeros((64, 64), np.float32)
    for c in range(2):
        fits.PrimaryHDU(f + c).writeto(tmp_path / f"d{c}.fits")
    with pytest.raises(InputError, match="expected 3 registered dither frames, got 2 frames"):
        run_stamps(tmp_path, tmp_path / "out", n_dithers=3)
    with pytest.raises(InputError, match="n_dithers must be 1 to 4"):
        run_stamps(tmp_path, tmp_path / "out", n_dithers=7)
    fits.PrimaryHDU(np.zeros((3, 32, 32), np.float32)).writeto(tmp_path / "s1.fits")
    with pytest.raises(InputError, match="different shapes"):
        run_stamps([tmp_path / "d0.fits", tmp_path / "s1.fits"], tmp_path / "out")


def test_other_errors(tmp_path):
    with pytest.raises(InputError, match="n_dithers must be 1 to 4"):
        simulate_stamps(4, 0, n_dithers=5)
    with pytest.raises(InputError, match="kinds must be among"):
        simulate_stamps(4, 0, kinds=("comet",))
    with pytest.raises(InputError, match="n must be >= 1"):
        simulate_stamps(0, 0)
    with pytest.raises(InputError, match="thresholds must be > 0"):
        BaselineClassifier(size_factor=0)
    with pytest.raises(InputError, match=r"abundance must be in \(0, 1\)"):
        purity_at_abundance(np.ones(3), np.array([1, 0, 1], bool), 0.0)
    with pytest.raises(InputError, match="source must be 'wide' or 'paper'"):
        evaluate_stamps(n_per_class=1, source="real")
    with pytest.raises(InputError, match="do not exist"):
        load_stamp_classifier(tmp_path / "missing.safetensors")
    with pytest.raises(InputError, match=r"needs \(B, 8, 32, 32\)"):
        StampClassifier()(torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputError, match="multiple of 8"):
        StampClassifier(input_size=30)


def test_paper_stamps_centred_on_object():
    from skysift.stamps import paper_stamps

    x, nc, t = paper_stamps(4, 5, n_dithers=2)
    assert list(t["kind"]) == list(CLASSES) and (nc == 2).all()
    star = x[CLASSES.index("star"), 0]
    yy, xx = np.unravel_index(np.argmax(star), star.shape)
    assert abs(xx - t["x"][3]) <= 1 and abs(yy - t["y"][3]) <= 1
    assert abs(t["x"][3] - 15.5) <= 1.5 and abs(t["y"][3] - 15.5) <= 1.5
    with pytest.raises(InputError, match="n_dithers must be 1 to 4"):
        paper_stamps(1, 0, n_dithers=0)


def test_purity_with_negatives_small(model):
    from skysift.stamps.evaluate import purity_with_negatives

    r = purity_with_negatives(n_negatives=60, n_sso=40, seed=5)
    assert r["completeness"] == pytest.approx(0.8, abs=0.05)
    assert r["false_positives"] <= 1
    assert r["0.01"]["purity_lower95"] <= r["0.01"]["purity"]
    with pytest.raises(InputError, match="completeness in"):
        purity_with_negatives(n_negatives=10, completeness=1.5)


def test_corrupted_weights_raise(tmp_path):
    import shutil

    from skysift.stamps.train import DEFAULT_WEIGHTS

    for suffix in (".safetensors", ".json"):
        shutil.copy(DEFAULT_WEIGHTS.with_suffix(suffix), tmp_path / f"w{suffix}")
    with open(tmp_path / "w.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(InputError, match="corrupted or changed"):
        load_stamp_classifier(tmp_path / "w.safetensors")


def test_cli_stamps_on_a_cube(tmp_path, heldout, capsys):
    """``skysift stamps CUBE`` writes the same classes as the library call."""
    from skysift.cli import main

    x, _, _ = heldout
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.asarray(x[:12, :3], np.float32)).writeto(path)
    assert main(["stamps", str(path), "--out", str(tmp_path / "cli")]) == 0
    assert "12 stamps" in capsys.readouterr().out
    back = Table.read(tmp_path / "cli" / "stamps.ecsv")
    direct = run_stamps(path, tmp_path / "lib")
    assert list(back["class"]) == list(direct["class"])
