"""Tests of the learned DSO detector: composites, shipped weights, saliency, wiring helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS

from skysift.dso.detector import (
    CLASSES,
    WEIGHTS_DIR,
    add_detections,
    detect,
    detect_frame,
    downsample,
    load_detector,
    make_composite,
    match_detections,
    normalise,
    work_factor,
)
from skysift.errors import InputError
from skysift.simulation.sources import render_sersic

torch = pytest.importorskip("torch", reason="torch (the learn extra) not installed")

SHIPPED = WEIGHTS_DIR / "dso_unet.safetensors"
needs_weights = pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped DSO weights missing")


def _sky(rng, shape=(96, 96), n_stars=25, sigma=4.0):
    """Gaussian sky (100 +- sigma) with point-like stars (FWHM ~1.6 px, as a binned frame)."""
    h, w = shape
    img = rng.normal(100.0, sigma, shape)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n_stars):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        img += rng.uniform(30, 600) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 0.7**2))
    return img.astype(np.float32)


def _galaxy_scene(rng, shape=(96, 96), x=40.0, y=52.0, flux=9000.0):
    img = _sky(rng, shape)
    img += render_sersic(shape, x, y, flux, 1.0, 5.0, ellipticity=0.4, pa=30.0,
                         oversample=2, backend="numpy", psf=1.0).astype(np.float32)  # fmt: skip
    return img


# --------------------------------------------------------------------------- helpers
def test_downsample_work_factor_and_normalise():
    img = np.arange(36, dtype=np.float32).reshape(6, 6)
    small = downsample(img, 3)
    assert small.shape == (2, 2)
    assert small[0, 0] == pytest.approx(img[:3, :3].mean())
    assert small[1, 1] == pytest.approx(img[3:, 3:].mean())
    assert work_factor((1080, 1920)) == 8 and work_factor((400, 400)) == 2
    assert work_factor((200, 100)) == 1
    with pytest.raises(InputError, match="cannot bin"):
        downsample(img, 0)
    # clipped-to-black background (MAD = 0): finite, object well above the background
    clip = np.zeros((64, 64), np.float32)
    clip[30:34, 30:34] = 200.0
    n = normalise(clip)
    assert np.isfinite(n).all() and n[31, 31] > 3.0 and n[0, 0] == 0.0


def test_make_composite_truth_masks_and_snr():
    bg = _sky(np.random.default_rng(1), shape=(120, 120))
    gen = np.random.default_rng(5)
    seen = set()
    for _ in range(12):
        img, masks, truth = make_composite(bg, gen, size=96, augment=False, snr_range=(30, 30))
        assert img.shape == (96, 96) and masks.shape == (3, 96, 96)
        for r in truth:
            k = CLASSES.index(r["cls"])
            seen.add(r["cls"])
            assert masks[k, round(r["y"]), round(r["x"])]
            assert r["snr"] == pytest.approx(30.0)
            assert r["a"] >= r["b"] >= 3.0
    assert seen == set(CLASSES)
    with pytest.raises(InputError, match="at least 96"):
        make_composite(np.zeros((50, 50)), 0, size=96)


def test_match_and_add_detections_fill_scores_and_unidentified_rows():
    objects = Table({"label": ["M1", "M2"], "name": ["NGC 1", "NGC 2"], "type": ["G", "Neb"], "x": [100.0, 300.0],
                     "y": [100.0, 200.0], "major_px": [60.0, 20.0], "minor_px": [30.0, 20.0],
                     "theta_deg": [0.0, 0.0], "verdict": ["visible", "marginal"],
                     "snr": [20.0, 4.0], "detector_score": [np.nan, np.nan],
                     "type_desc": ["Galaxy", "Nebula"], "ra": [150.0, 150.1], "dec": [30.0, 30.1],
                     "major_arcmin": [2.4, 0.8], "minor_arcmin": [1.2, 0.8]})  # fmt: skip
    det = Table({"x": [125.0, 100.0, 500.0, 600.0], "y": [100.0, 118.0, 50.0, 60.0],
                 "cls": ["galaxy", "galaxy", "nebula", "cluster"], "score": [0.9, 0.7, 0.8, 0.3],
                 "area": [50, 50, 80, 20], "a": [10.0, 10.0, 12.0, 4.0], "b": [6.0, 6.0, 8.0, 4.0],
                 "theta": [0.0, 0.0, 45.0, 0.0]})  # fmt: skip
    score, matched = match_detections(det, objects)
    # (125, 100) is inside M1's grown ellipse (semi-axes 36 x 18); (100, 118) is just inside too
    assert score[0] == pytest.approx(0.9) and np.isnan(score[1])
    assert matched.tolist() == [True, True, False, False]
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval, wcs.wcs.crpix = [150.0, 30.0], [1.0, 1.0]
    wcs.wcs.cd = [[-2.4 / 3600, 0], [0, 2.4 / 3600]]
    out = add_detections(objects, det, wcs, 2.4)
    assert len(out) == 3  # the 0.3-score cluster is below min_unidentified_score
    new = out[2]
    assert new["verdict"] == "unidentified" and new["type"] == "unidentified"
    assert new["label"] == "U1" and "nebula" in new["name"] and "nebula" in new["type_desc"]
    ra, dec = wcs.pixel_to_world_values(500.0, 50.0)
    assert new["ra"] == pytest.approx(ra) and new["dec"] == pytest.approx(dec)
    assert new["major_px"] == pytest.approx(24.0) and new["major_arcmin"] == pytest.approx(0.96)
    assert out["detector_score"][0] == pytest.approx(0.9) and np.isnan(out["snr"][2])


def test_detect_rejects_bad_input():
    with pytest.raises(InputError, match="2-D"):
        detect(None, np.zeros((4, 4, 3)))
    with pytest.raises(InputError, match="threshold"):
        detect(None, np.zeros((32, 32)), threshold=1.5)
    with pytest.raises(InputError, match="not found"):
        load_detector("no_such_weights")


# --------------------------------------------------------------------------- training
def test_train_tiny_run_writes_loadable_weights(tmp_path):
    from skysift.dso.train import backgrounds_from_files, train_dso

    bg = _sky(np.random.default_rng(2), shape=(64, 64))
    model, info = train_dso(tmp_path, backgrounds=[bg], minutes=1.0, max_steps=2, size=32,
                            batch_size=2, depth=2, width=4, name="tiny")  # fmt: skip
    assert info["steps"] == 2 and info["composites_seen"] == 4
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["model"] == "unet" and card["config"]["depth"] == 2
    again = load_detector(tmp_path / "tiny.safetensors")
    x = normalise(bg[:32, :32])[None, None]
    assert np.allclose(again.predict(x).numpy(), model.predict(x).numpy(), atol=1e-6)
    with pytest.raises(InputError, match="minutes"):
        train_dso(tmp_path, backgrounds=[bg], minutes=0)
    # evaluation tables into ECSV files and the card
    from skysift.dso.detector import _prf_table
    from skysift.dso.evaluate import record_metrics, write_evaluation

    per = _prf_table({"galaxy": [4, 5, 3], "nebula": [2, 0, 0], "cluster": [0, 1, 0]})
    assert per["precision"][0] == pytest.approx(0.6) and per["recall"][0] == pytest.approx(0.75)
    assert per["f1"][0] == pytest.approx(2 * 0.6 * 0.75 / 1.35) and per["f1"][1] == 0.0
    summary = Table(rows=[("simulator", "galaxy", 4, 0.667, 0.5, 0.6, 0.75, 0.667)],
                    names=("kind", "cls", "n_true", "f1_median", "f1_worst", "precision",
                           "recall", "f1"))  # fmt: skip
    res = {"summary": summary, "per_file": {"simulator": {"bg.png": per}, "astropy": {}}}
    files = write_evaluation(res, tmp_path / "eval")
    assert [f.name for f in files] == ["dso_eval_summary.ecsv", "dso_eval_simulator.ecsv"]
    assert Table.read(files[1])["background"][0] == "bg.png"
    record_metrics(res, tmp_path / "tiny.safetensors", note="unit test")
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["metrics"]["simulator_galaxy"]["f1_worst"] == 0.5
    load_detector(tmp_path / "tiny.safetensors")  # the checksum still matches
    with pytest.raises(InputError, match="does not exist"):
        record_metrics(res, tmp_path / "missing.safetensors")
    with pytest.raises(InputError, match="not found"):
        backgrounds_from_files([tmp_path / "missing.png"])


def test_evaluation_error_paths():
    from skysift.dso.evaluate import evaluate_backgrounds, make_astropy_composite, run_evaluation

    with pytest.raises(InputError, match="kind"):
        evaluate_backgrounds(None, [np.zeros((100, 100))], kind="galsim")
    with pytest.raises(InputError, match="at least 88"):
        make_astropy_composite(np.zeros((40, 40)), 0)
    with pytest.raises(InputError, match="at least one background file"):
        run_evaluation([])


def test_astropy_composite_truth():
    from skysift.dso.evaluate import make_astropy_composite

    bg = _sky(np.random.default_rng(3), shape=(100, 100))
    gen = np.random.default_rng(11)
    n = 0
    for _ in range(6):
        img, masks, truth = make_astropy_composite(bg, gen)
        assert img.shape == (88, 88) and np.isfinite(img).all()
        for r in truth:
            assert masks[CLASSES.index(r["cls"]), round(r["y"]), round(r["x"])]
            n += 1
    assert n >= 3


def test_render_saliency_png(tmp_path):
    from skysift.dso.saliency import render_saliency

    img = _sky(np.random.default_rng(4), shape=(120, 200))
    sal = np.zeros((15, 25), np.float32)
    sal[5:8, 10:14] = 1.0
    det = Table({"x": [96.0], "y": [52.0], "cls": ["galaxy"], "score": [0.9], "a": [10.0],
                 "b": [6.0], "theta": [20.0]})  # fmt: skip
    p = render_saliency(img, sal, tmp_path / "saliency.png", detections=det, title="t")
    assert p.is_file() and p.stat().st_size > 2000
    with pytest.raises(InputError, match="2-D saliency"):
        render_saliency(img, np.zeros(5), tmp_path / "bad.png")


# --------------------------------------------------------------------------- shipped weights
@needs_weights
def test_shipped_detector_finds_bright_galaxy_and_saliency_peaks_on_it():
    """A bright Sérsic galaxy (r_e 5 px) on a synthetic binned star field, centre (40, 52): found."""
    from skysift.dso.saliency import frame_saliency

    model = load_detector()
    img = _galaxy_scene(np.random.default_rng(7))
    det = detect(model, img)
    assert len(det) >= 1
    d = det[np.argmin(np.hypot(det["x"] - 40.0, det["y"] - 52.0))]
    assert np.hypot(d["x"] - 40.0, d["y"] - 52.0) < 3.0  # px, working scale
    sal, f = frame_saliency(model, img, method="occlusion", patch=12, stride=6)
    assert f == 1
    py, px = np.unravel_index(np.argmax(sal), sal.shape)
    assert np.hypot(px - 40.0, py - 52.0) < 12.0  # within one occluding patch
    gsal, _ = frame_saliency(model, img)  # gradient x input (the pipeline's default)
    gy, gx = np.unravel_index(np.argmax(gsal), gsal.shape)
    assert np.hypot(gx - 40.0, gy - 52.0) < 8.0
    with pytest.raises(InputError, match="method"):
        frame_saliency(model, img, method="xrai")


@needs_weights
def test_detect_frame_returns_full_resolution_coordinates():
    """The same galaxy in a 384 x 576 frame (binned by 3): found at full-resolution (150, 240)."""
    rng = np.random.default_rng(9)
    img = _sky(rng, shape=(384, 576), n_stars=150)
    img += render_sersic(img.shape, 150.0, 240.0, 60000.0, 1.0, 15.0, ellipticity=0.4, pa=30.0,
                         oversample=1, backend="numpy", psf=3.0).astype(np.float32)  # fmt: skip
    det, prob, f = detect_frame(load_detector(), img)
    assert f == 3 and prob.shape == (3, 128, 192)
    d = det[np.argmin(np.hypot(det["x"] - 150.0, det["y"] - 240.0))]
    assert np.hypot(d["x"] - 150.0, d["y"] - 240.0) < 6.0  # px, full resolution (2 binned px)


@needs_weights
@pytest.mark.xfail(
    strict=True,
    reason="known failure of the shipped weights: galaxies are called cluster/nebula "
    "(held-out galaxy F1 0.0, docs/dso.md); strict, so a better model makes this fail",
)
def test_shipped_detector_classifies_the_galaxy():
    det = detect(load_detector(), _galaxy_scene(np.random.default_rng(7)))
    d = det[np.argmin(np.hypot(det["x"] - 40.0, det["y"] - 52.0))]
    assert d["cls"] == "galaxy"


def test_cli_train_and_evaluate_dso(tmp_path):
    from astropy.io import fits
    from astropy.table import Table

    from skysift.cli import main
    from skysift.simulation import make_star_field

    img, _ = make_star_field((400, 400), 80, fwhm=2.5, flux_range=(500, 5e4), rng=1)
    bg = tmp_path / "bg.fits"
    fits.PrimaryHDU(img.astype("f4")).writeto(bg)
    tr = tmp_path / "tr"
    assert main(["train", "dso", str(bg), "--minutes", "0.02", "--out", str(tr)]) == 0
    weights = tr / "dso_unet.safetensors"
    assert weights.stat().st_size > 10_000 and (tr / "dso_unet.md").exists()
    ev = tmp_path / "ev"
    args = ["evaluate", "dso", str(bg), "--n", "3", "--weights", str(weights), "--out", str(ev)]
    assert main(args) == 0
    summary = Table.read(ev / "dso_eval_summary.ecsv")
    assert set(summary["cls"]) == {"galaxy", "nebula", "cluster"}
    assert set(summary["kind"]) == {"simulator", "astropy"}
    # a missing background: exit 2, and no empty output folder left behind
    for cmd in ("train", "evaluate"):
        bad = tmp_path / f"bad-{cmd}"
        assert main([cmd, "dso", str(tmp_path / "missing.fits"), "--out", str(bad)]) == 2
        assert not bad.exists()
