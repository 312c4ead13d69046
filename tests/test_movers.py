"""Tests of skysift.movers: baseline, shift-and-stack, ADES, pipeline, mixture of experts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS
from scipy import ndimage

from skysift.errors import InputError
from skysift.movers import ades, baseline, evaluate, model, pipeline, stack, train
from skysift.simulation.movers import simulate_fast_mover, simulate_sequence

torch.set_num_threads(1)


def _mover(truth):
    t = truth.table
    return t[t["type"] == "mover"][0]


# ---------------------------------------------------------------- shift-and-stack


@pytest.fixture(scope="module")
def faint_sequence():
    # 10 frames, 2 s cadence, mover at (1.2, 0.9) px/frame (1.5 px/frame), mag 15:
    # its mean single-frame matched-filter SNR is ~4.4, below the 5-sigma single-frame limit
    frames, truths = simulate_sequence(
        10, shape=(64, 64), cadence_s=2.0, exposure_s=1.0, target_rate=(0.6, 0.45),
        target_start=(20.0, 22.0), target_mag=15.0, n_stars=10, rng=7,
    )  # fmt: skip
    return frames, truths


def test_stack_recovers_mover_below_single_frame_limit(faint_sequence):
    frames, truths = faint_sequence
    mv = [_mover(t) for t in truths]
    diff, var = stack.difference_images(frames)
    psi, phi = stack.psi_phi(diff, var, 2.5)
    single = [
        psi[k, round(m["y"]), round(m["x"])] / np.sqrt(phi[k, round(m["y"]), round(m["x"])])
        for k, m in enumerate(mv)
    ]
    assert np.mean(single) < 5.0  # below the single-frame 5-sigma limit on average
    res = stack.shift_and_stack(
        frames, rate_range=(0.5, 2.5), n_rates=11, n_angles=36, psf_fwhm=2.5, threshold=7.0
    )
    assert len(res) >= 1
    best = res[0]
    assert abs(best["rate"] - 1.5) / 1.5 < 0.05  # true rate 1.5 px/frame
    angle = np.degrees(np.arctan2(best["vy"], best["vx"]))
    assert abs(angle - np.degrees(np.arctan2(0.9, 1.2))) < 5.0
    assert np.hypot(best["x0"] - mv[0]["x"], best["y0"] - mv[0]["y"]) < 1.0
    assert best["snr"] > 2 * np.mean(single)  # the sqrt(N) gain (sqrt(10) = 3.2 ideally)
    # the PA convention: north = +y, east = -x (moving +x, +y: PA between 270 and 360)
    assert 270 < best["pa"] < 360


def test_stack_sky_rates_with_pixel_scale(faint_sequence):
    frames, _ = faint_sequence
    res = stack.shift_and_stack(
        frames, times=np.arange(10) * 2.0, rate_range=(0.25, 1.25), n_rates=11, n_angles=36,
        pixel_scale=2.0, threshold=7.0,
    )  # fmt: skip
    # 0.75 px/s × 2 "/px × 3600 s/h = 5400 "/h
    assert abs(res["rate_arcsec_h"][0] - 5400.0) / 5400.0 < 0.05


def test_no_trajectory_on_static_sequence():
    frames, _ = simulate_sequence(
        8, shape=(48, 48), target_rate=(0.0, 0.0), target_mag=40.0, n_stars=8, rng=3,
        target_start=(20.0, 20.0),
    )  # fmt: skip
    with pytest.warns(baseline.NoMoversWarning, match="no trajectory"):
        res = stack.shift_and_stack(frames, rate_range=(0.5, 2.0), n_rates=4, n_angles=12)
    assert len(res) == 0


def test_link_tracklets_links_a_line_and_leaves_noise():
    rng = np.random.default_rng(0)
    t = Table()
    fr = np.arange(6)
    t["frame"] = np.concatenate([fr, [1, 4]])
    t["x"] = np.concatenate([10 + 3.0 * fr, rng.uniform(0, 100, 2)])
    t["y"] = np.concatenate([50 - 2.0 * fr, rng.uniform(0, 100, 2)])
    out = stack.link_tracklets(t, max_rate=10, radius=1.5, min_points=4)
    assert (out["tracklet"][:6] == 0).all() and (out["tracklet"][6:] == -1).all()
    assert out["vx"][0] == pytest.approx(3.0) and out["vy"][0] == pytest.approx(-2.0)


# ---------------------------------------------------------------- classical baseline


def test_baseline_finds_trailed_mover_among_point_stars():
    m = simulate_fast_mover("sidereal", shape=(96, 96), rng=3, n_stars=20, target_rate=(15, 6))
    mv = _mover(m.truth)
    t = baseline.detect_single(m.image, mode="sidereal", psf_fwhm=2.5)
    assert len(t) == 1
    assert np.hypot(t["x"][0] - mv["x"], t["y"][0] - mv["y"]) < 1.0  # px
    assert abs(t["length"][0] - mv["length"]) / mv["length"] < 0.2
    assert abs(((t["angle"][0] - np.degrees(np.arctan2(6, 15))) + 90) % 180 - 90) < 5


def test_baseline_no_detection_on_static_star_field():
    n = 0
    for seed in range(5):
        m = simulate_fast_mover("sidereal", shape=(96, 96), rng=seed, n_stars=20, target_mag=40)
        n += len(baseline.detect_single(m.image, mode="sidereal", warn=False))
    assert n == 0
    with pytest.warns(baseline.NoMoversWarning, match="no mover"):
        t = baseline.detect_single(m.image, mode="sidereal")
    assert t.colnames == [c[0] for c in baseline.DETECTION_COLUMNS]


def test_baseline_target_mode_finds_point_mover_among_trailed_stars():
    m = simulate_fast_mover("tracking", shape=(96, 96), rng=5, n_stars=20, target_rate=(15, 6))
    mv = _mover(m.truth)
    t = baseline.detect_single(m.image, mode="target")
    d = np.hypot(t["x"] - mv["x"], t["y"] - mv["y"])
    assert d.min() < 1.0


def test_difference_imaging_finds_bright_mover_each_frame():
    frames, truths = simulate_sequence(
        6, shape=(64, 64), cadence_s=2.0, target_rate=(1.5, 1.0), target_start=(12.0, 14.0),
        target_mag=13.0, n_stars=10, rng=2,
    )  # fmt: skip
    t = baseline.detect_difference(frames)
    for k, tr in enumerate(truths):
        mv = _mover(tr)
        rows = t[t["frame"] == k]
        assert np.hypot(rows["x"] - mv["x"], rows["y"] - mv["y"]).min() < 1.0
    linked = stack.link_tracklets(t, radius=2.0, min_points=5)
    assert (linked["tracklet"] >= 0).sum() >= 5
    k = linked["tracklet"] >= 0
    # 1.5 px/s at a 2 s cadence: 3 px per frame index
    assert np.nanmedian(linked["vx"][k]) == pytest.approx(3.0, abs=0.1)
    assert np.nanmedian(linked["vy"][k]) == pytest.approx(2.0, abs=0.1)


# ---------------------------------------------------------------- ADES


def _obs():
    t = Table()
    t["trkSub"] = ["sk000001", "sk000001"]
    t["time"] = Time(["2024-03-01T01:02:03.25", "2024-03-01T01:12:03.25"], scale="utc")
    t["ra"] = [150.1234567, 150.1334567]
    t["dec"] = [-12.5, -12.51]
    t["mag"] = [17.25, np.nan]
    return t


def test_ades_psv_parses_back(tmp_path):
    p = ades.write_ades_psv(
        _obs(), tmp_path / "m.psv", stn="C51", observers=["A. Observer"],
        telescope={"aperture": 0.25, "design": "Reflector"},
    )  # fmt: skip
    header, tab = ades.read_ades_psv(p)
    assert header["version"] == "2017"
    assert header["observatory"]["mpcCode"] == "C51"
    assert header["observers"]["name"] == "A. Observer"
    assert header["telescope"] == {"aperture": "0.25", "design": "Reflector", "detector": "CCD"}
    assert tab.colnames == list(ades.ADES_FIELDS)
    assert list(tab["trkSub"]) == ["sk000001"] * 2
    assert list(tab["mode"]) == ["CCD", "CCD"] and list(tab["stn"]) == ["C51", "C51"]
    assert tab["obsTime"][0] == "2024-03-01T01:02:03.250Z"
    assert float(tab["ra"][0]) == pytest.approx(150.1234567, abs=1e-7)
    assert float(tab["dec"][1]) == pytest.approx(-12.51, abs=1e-7)
    assert tab["mag"][0] == "17.25" and tab["band"][0] == "G" and tab["mag"][1] == ""
    assert tab["astCat"][0] == "Gaia3"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"stn": "XX"}, "stn must be an MPC observatory code"),
        ({"drop": "ra"}, "missing 'ra'"),
        ({"drop": "trkSub"}, "at least one of the columns"),
        ({"trk": "toolongname"}, "at most 8 characters"),
        ({"trk": ""}, "needs a permID, provID or trkSub"),
        ({"ra": np.nan}, "non-finite position"),
    ],
)
def test_ades_errors(change, match):
    t = _obs()
    stn = change.get("stn", "C51")
    if "drop" in change:
        t.remove_column(change["drop"])
    if "trk" in change:
        t["trkSub"] = [change["trk"]] * 2
    if "ra" in change:
        t["ra"][0] = change["ra"]
    with pytest.raises(InputError, match=match):
        ades.format_ades_psv(t, stn=stn)


def test_read_ades_errors(tmp_path):
    p = tmp_path / "bad.psv"
    p.write_text("# version=2017\n! name x\n")
    with pytest.raises(InputError, match="no ADES field-name line"):
        ades.read_ades_psv(p)
    p.write_text("# version=2017\na|b|c\n1|2\n")
    with pytest.raises(InputError, match="has 2 fields, the header has 3"):
        ades.read_ades_psv(p)


# ---------------------------------------------------------------- pipeline


def _wcs(shape):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 10.0]
    w.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    w.wcs.cdelt = [-2.0 / 3600, 2.0 / 3600]  # 2"/px, north up, east left
    return w


def test_run_movers_classical_sequence_writes_outputs(tmp_path):
    from skysift.io.frame import Frame

    frames, truths = simulate_sequence(
        6, shape=(64, 64), cadence_s=60.0, exposure_s=30.0, target_rate=(0.05, 0.0),
        target_start=(14.0, 30.0), target_mag=12.0, n_stars=8, rng=4,
    )  # fmt: skip
    t0 = Time("2024-03-01T01:00:00", scale="utc")
    fr = [
        Frame(f, time=t0 + 60.0 * k * u.s, exposure=30.0, meta={"wcs": _wcs(f.shape)})
        for k, f in enumerate(frames)
    ]
    res = pipeline.run_movers(
        fr, tmp_path, method="classical", pixel_scale=2.0, stn="C51", rate_range=(2.0, 4.0),
        n_rates=5, n_angles=24,
    )  # fmt: skip
    det = res.detections
    assert {"ecsv", "psv", "overlays"} <= set(res.files)
    assert (tmp_path / "movers.ecsv").is_file() and len(res.files["overlays"]) == 6
    back = Table.read(tmp_path / "movers.ecsv")
    for c in ("frame", "time", "x", "y", "ra", "dec", "mag", "snr", "length", "angle", "score",
              "tracklet", "rate_arcsec_h", "pa"):  # fmt: skip
        assert c in back.colnames
    # the difference-image tracklet moves 3 px/frame = 0.05 px/s = 360 "/h, due west (PA 270)
    linked = det[(det["method"] == "difference") & (det["tracklet"] >= 0)]
    assert len(linked) >= 5
    assert linked["rate_arcsec_h"][0] == pytest.approx(360.0, rel=0.05)
    assert linked["pa"][0] == pytest.approx(270.0, abs=3.0)
    mv = _mover(truths[2])
    row = linked[linked["frame"] == 2][0]
    assert np.hypot(row["x"] - mv["x"], row["y"] - mv["y"]) < 1.0
    sky = _wcs((64, 64)).pixel_to_world(mv["x"], mv["y"])
    assert row["ra"] == pytest.approx(sky.ra.deg, abs=1.0 / 3600)
    header, tab = ades.read_ades_psv(tmp_path / "movers.psv")
    assert header["observatory"]["mpcCode"] == "C51" and len(tab) >= 5


def test_run_movers_errors():
    img = np.zeros((32, 32), np.float32)
    with pytest.raises(InputError, match="method must be one of"):
        pipeline.run_movers(img, method="magic")
    with pytest.raises(InputError, match="mode must be one of"):
        pipeline.run_movers(img, mode="drifting")
    with pytest.raises(InputError, match="needs at least 3 frames"):
        pipeline.run_movers(img, method="stack")
    with pytest.raises(InputError, match="inputs is empty"):
        pipeline.run_movers([])
    with pytest.raises(InputError, match="must be \\(H, W\\) or \\(T, H, W\\)"):
        pipeline.run_movers(np.zeros((2, 2, 32, 32)))
    with pytest.raises(InputError, match="one shape"):
        pipeline.run_movers([img, np.zeros((40, 40), np.float32)])


# ---------------------------------------------------------------- error paths


def test_baseline_and_stack_errors():
    img = np.zeros((32, 32), np.float32)
    with pytest.raises(InputError, match="2-D"):
        baseline.detect_single(np.zeros((3, 32, 32)))
    with pytest.raises(InputError, match="at least 16x16"):
        baseline.detect_single(np.zeros((8, 8)))
    with pytest.raises(InputError, match="threshold must be > 0"):
        baseline.detect_single(img, threshold=0)
    with pytest.raises(InputError, match="psf_fwhm must be > 0"):
        baseline.detect_single(img, psf_fwhm=-1)
    with pytest.raises(InputError, match="mask shape"):
        baseline.detect_single(img, mask=np.zeros((4, 4), bool))
    with pytest.raises(InputError, match="T >= 3"):
        baseline.detect_difference(np.zeros((2, 32, 32)))
    with pytest.raises(InputError, match="reference shape"):
        baseline.detect_difference(np.zeros((3, 32, 32)), reference=img[:8])
    with pytest.raises(InputError, match="mask shape"):
        baseline.detect_difference(np.zeros((3, 32, 32)), mask=np.zeros((3, 3), bool))
    cube = np.zeros((4, 32, 32), np.float32)
    with pytest.raises(InputError, match="T >= 2"):
        stack.shift_and_stack(img)
    with pytest.raises(InputError, match="one value per frame"):
        stack.shift_and_stack(cube, times=[0, 1])
    with pytest.raises(InputError, match="threshold must be > 0"):
        stack.shift_and_stack(cube, threshold=0)
    with pytest.raises(InputError, match="velocities must have shape"):
        stack.shift_and_stack(cube, velocities=np.zeros(3))
    with pytest.raises(InputError, match="rate_range must be"):
        stack.velocity_grid((3, 1))
    with pytest.raises(InputError, match="n_rates and n_angles"):
        stack.velocity_grid((0, 1), n_rates=0)
    with pytest.raises(InputError, match="reference shape"):
        stack.difference_images(cube, reference=img[:4])
    with pytest.raises(InputError, match="star_mask shape"):
        stack.difference_images(cube, star_mask=np.zeros((2, 2), bool))
    with pytest.raises(InputError, match="differs from var shape"):
        stack.psi_phi(cube, cube[:2])
    with pytest.raises(InputError, match="psf FWHM must be > 0"):
        stack.psi_phi(cube, cube, 0.0)
    with pytest.raises(InputError, match="missing 'y'"):
        stack.link_tracklets(Table({"frame": [0], "x": [1.0]}))
    with pytest.raises(InputError, match="min_points must be >= 2"):
        stack.link_tracklets(Table({"frame": [0], "x": [1.0], "y": [1.0]}), min_points=1)


def test_learning_errors(tmp_path):
    with pytest.raises(InputError, match="n must be >= 1"):
        train.simulate_set(0)
    with pytest.raises(InputError, match="unknown simulation setting 'colour'"):
        train.simulate_set(1, settings={"colour": 1})
    with pytest.raises(InputError, match="must be positive"):
        train.train_movers(settings=train.TrainSettings(n_train=0))
    with pytest.raises(InputError, match="n_per_mode must be >= 1"):
        evaluate.evaluate_movers(model.MoverMoE(), n_per_mode=0)
    with pytest.raises(InputError, match="unknown detectors"):
        evaluate.evaluate_movers(model.MoverMoE(), detectors=("ssd",))
    with pytest.raises(InputError, match="detector must be one of"):
        evaluate.run_detector("ssd", [])
    with pytest.raises(InputError, match="needs a model"):
        evaluate.run_detector("moe_tta", [])
    with pytest.raises(InputError, match="detector must be one of"):
        evaluate.run_detector("ssd", [])
    with pytest.raises(InputError, match="needs a model"):
        evaluate.run_detector("moe", [])
    with pytest.raises(InputError, match="one entry per image"):
        evaluate.average_precision_boxes([np.zeros((0, 5))], [])
    from skysift.movers.weights_io import load_moe

    with pytest.raises(InputError, match="not found"):
        load_moe(tmp_path / "none.safetensors")
    with pytest.raises(KeyError, match="expert must be one of"):
        model.expert_maps(model.MoverMoE()(torch.zeros(1, 2, 16, 16), torch.zeros(1, 4)), "ssd")


# ---------------------------------------------------------------- mixture of experts


def test_average_precision_on_known_boxes():
    truths = [np.array([[0, 0, 10, 10.0]]), np.array([[20, 20, 30, 30.0]])]
    preds = [
        np.array([[0, 0, 10, 10, 0.9], [50, 50, 60, 60, 0.8]]),
        np.array([[21, 21, 31, 31, 0.7]]),
    ]
    r = evaluate.average_precision_boxes(preds, truths)
    # ranked: TP (0.9), FP (0.8), TP (0.7, IoU 0.68): AP = 0.5·1 + 0.5·(2/3)
    assert r["map50"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0


def test_moe_forward_shapes_and_prior_descriptor():
    net = model.MoverMoE(width=8, feat_channels=8)
    out = net(torch.zeros(2, 2, 32, 48), torch.zeros(2, 4))
    assert out["obj1"].shape == (2, 1, 8, 12) and out["box1"].shape == (2, 4, 8, 12)
    assert out["heat2"].shape == (2, 1, 8, 12) and out["size2"].shape == (2, 2, 8, 12)
    assert out["gate"].shape == (2, 2)
    assert torch.allclose(out["gate"].sum(1), torch.ones(2))
    from skysift.simulation.movers import motion_prior

    d = model.prior_descriptor(motion_prior(2.0, (12.0, 0.0), 1.0))
    # trail length from moments, px (the rendered kernel is ~8 % long: pixel-integrated ends)
    assert d[2] * 10 == pytest.approx(12.0, rel=0.1)
    assert d[0] * 10 == pytest.approx(d[2] * 10, rel=1e-3) and abs(d[1]) < 0.05  # along x
    assert d[3] * 10 == pytest.approx(2.0 / 2.3548, rel=0.1)  # Gaussian sigma


def test_shipped_weights_detect_bright_mover():
    from skysift.movers.weights_io import WEIGHTS_DIR, load_moe

    p = WEIGHTS_DIR / "mover_moe.safetensors"
    if not p.is_file():
        pytest.skip("shipped weights not built yet (skysift train movers)")
    assert p.stat().st_size < 20e6
    net = load_moe()
    for mode in ("sidereal", "tracking", "intersection"):
        # a 9.8 px relative motion over the exposure, mag 10.5 (SNR ~100), 10 field stars
        m = simulate_fast_mover(mode, shape=(64, 64), psf=2.5, target_mag=10.5, rng=100,
                                target_rate=(9.0, 4.0), n_stars=10)  # fmt: skip
        truth = train.mover_boxes(m.truth.table, 2.5)[0]
        boxes = net.predict(m.image, m.prior, threshold=0.5)
        assert len(boxes) >= 1, mode
        best = boxes[0]
        assert evaluate._iou(best, truth[None])[0] >= 0.5, mode
        cx, cy = (best[0] + best[2]) / 2, (best[1] + best[3]) / 2
        mv = _mover(m.truth)
        assert np.hypot(cx - mv["x"], cy - mv["y"]) < 2.0, mode  # px
        if mode == "intersection":  # 8-fold test-time augmentation agrees
            tta = net.predict(m.image, m.prior, threshold=0.5, tta=True)
            assert evaluate._iou(tta[0], truth[None])[0] >= 0.5


def test_run_movers_moe_single_frame(tmp_path):
    from skysift.movers.weights_io import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "mover_moe.safetensors").is_file():
        pytest.skip("shipped weights not built yet (skysift train movers)")
    m = simulate_fast_mover("sidereal", shape=(64, 64), psf=2.5, target_mag=10.5, rng=21,
                            target_rate=(10.0, -6.0), n_stars=10)  # fmt: skip
    mv = _mover(m.truth)
    with pytest.warns(UserWarning, match="movers.psv"):  # no WCS/time: no ADES file
        res = pipeline.run_movers(m.image, tmp_path, mode="sidereal", psf_fwhm=2.5)
    assert res.config["method_used"] == "moe"
    det = res.detections
    assert len(det) >= 1
    best = det[np.argmax(det["score"])]
    assert np.hypot(best["x"] - mv["x"], best["y"] - mv["y"]) < 2.0  # px
    assert best["snr"] > 20
    assert (tmp_path / "movers.ecsv").is_file() and (tmp_path / "movers_0000.png").is_file()


def test_cli_movers_on_fits_files(tmp_path, capsys):
    """``skysift movers`` on FITS frames with a WCS and DATE-OBS finds the 360 ″/h mover."""
    from astropy.io import fits

    from skysift.cli import main

    frames, _ = simulate_sequence(
        6, shape=(64, 64), cadence_s=60.0, exposure_s=30.0, target_rate=(0.05, 0.0),
        target_start=(14.0, 30.0), target_mag=12.0, n_stars=8, rng=4,
    )  # fmt: skip
    t0 = Time("2024-03-01T01:00:00", scale="utc")
    paths = []
    for k, f in enumerate(frames):
        header = _wcs(f.shape).to_header()
        header["DATE-OBS"] = (t0 + 60.0 * k * u.s).isot
        header["EXPTIME"] = 30.0
        paths.append(tmp_path / f"f{k}.fits")
        fits.PrimaryHDU(np.asarray(f, np.float32), header=header).writeto(paths[-1])
    out = tmp_path / "out"
    args = ["movers", *map(str, paths), "--method", "classical", "--pixel-scale", "2"]
    assert main([*args, "--rate-range", "2", "4", "--stn", "C51", "--out", str(out)]) == 0
    assert "detections" in capsys.readouterr().out
    det = Table.read(out / "movers.ecsv")
    linked = det[(det["method"] == "difference") & (det["tracklet"] >= 0)]
    assert len(linked) >= 5
    assert linked["rate_arcsec_h"][0] == pytest.approx(360.0, rel=0.05)
    assert (out / "movers.psv").is_file()


# ---------------------------------------------------------------- training data and evaluation tables


def test_line_kernel_has_the_segment_length():
    k = train.line_kernel(9.0, 5.0)
    assert k.sum() == pytest.approx(1.0) and k.shape[0] % 2 == 1
    yy, xx = np.mgrid[: k.shape[0], : k.shape[1]]
    c = k.shape[0] // 2
    assert (k * xx).sum() == pytest.approx(c, abs=1e-6)  # centred
    assert (k * yy).sum() == pytest.approx(c, abs=1e-6)
    # a uniform segment of length L has variance L²/12 along it (+1/6 px² from bilinear sampling)
    var = (k * ((xx - c) * 9 + (yy - c) * 5) ** 2).sum() / (9**2 + 5**2)
    assert np.sqrt(12 * (var - 1 / 6)) == pytest.approx(np.hypot(9, 5), rel=0.03)
    assert train.line_kernel(0.1, 0.2).shape == (1, 1)


def test_composite_background_trails_real_stars_with_the_mode():
    rng = np.random.default_rng(0)
    real = rng.normal(1000.0, 10.0, (80, 80)).astype(np.float32)
    real[::16, ::16] += 2000.0  # point "stars" on a 16 px grid: every 64x64 crop holds 16
    sim = rng.normal(50.0, 2.0, (64, 64)).astype(np.float32)
    out = train.composite_background(sim, real, (12.0, 0.0), 1.0, rng)
    added = out - sim
    # the real noise (10 ADU) comes in at the simulated noise (2 ADU), smoothed by the trail
    iy, ix = np.unravel_index(np.argmax(added), added.shape)
    on = added[iy] > 0.3 * added[iy, ix]
    lo, hi = ix, ix
    while lo > 0 and on[lo - 1]:
        lo -= 1
    while hi < on.size - 1 and on[hi + 1]:
        hi += 1
    assert 10 <= hi - lo + 1 <= 14  # the point became a ~12 px trail along x
    assert (added[max(iy - 3, 0) : iy + 4, ix] > 0.3 * added[iy, ix]).sum() <= 2  # and stays thin
    with pytest.raises(InputError, match="smaller than the image"):
        train.composite_background(sim, real[:32], (0.0, 0.0), 1.0, rng)
    with pytest.raises(InputError, match="at least one image file"):
        train.load_backgrounds([])


def test_simulate_set_with_backgrounds_and_short_trails(tmp_path):
    from astropy.io import fits

    rng = np.random.default_rng(1)
    frame = rng.normal(500.0, 8.0, (100, 120)).astype(np.float32)
    fits.PrimaryHDU(frame).writeto(tmp_path / "bg.fits")
    bgs = train.load_backgrounds([tmp_path / "bg.fits"], exclude={"bg.fits": (0, 0, 119, 30)})
    assert np.isnan(bgs[0][:31]).all() and np.isfinite(bgs[0][31:]).all()
    s = train.simulate_set(
        12, seed=3, backgrounds=bgs, modes=("sidereal",),
        settings={"background_fraction": 1.0, "short_trail_fraction": 1.0},
    )  # fmt: skip
    assert all(x.meta["background"] for x in s)
    rates = np.array([x.meta["rate"] for x in s])
    assert (rates >= 4.0).all() and (rates <= 9.0).all()  # short_trail_range
    # the held-out stream is unchanged by the new settings (no extra draws at fraction 0)
    a = train.simulate_set(2, seed=5, settings=dict(evaluate.HELD_OUT))
    b = train.simulate_set(2, seed=5, settings=dict(evaluate.HELD_OUT), backgrounds=None)
    assert [x.meta for x in a] == [x.meta for x in b]


def test_evaluation_summary_pivots_detectors():
    t = Table(
        rows=[
            ("mode", "sidereal", "moe", 0.9, 0.8, 0.7, 10),
            ("mode", "sidereal", "classical", 0.5, 0.4, 0.3, 10),
            ("sky14", "all", "moe", 0.95, 0.9, 0.85, 6),
        ],
        names=["group", "bin", "detector", "map50", "precision", "recall", "n_images"],
    )
    s = evaluate.evaluation_summary(t)
    assert s.colnames == ["group", "bin", "n_images", "moe", "classical"]
    assert s["moe"][0] == 0.9 and s["classical"][0] == 0.5 and np.isnan(s["classical"][1])
    assert evaluate.evaluation_summary(t, "recall")["moe"][1] == 0.85
    with pytest.raises(InputError, match="value must be one of"):
        evaluate.evaluation_summary(t, "f1")


def test_group_rows_splits_modes_and_bins():
    s = [
        train.MoverSample(x=np.zeros(1), prior_vec=np.zeros(4), boxes=np.zeros((1, 4)), meta=m)
        for m in (
            {"mode": "sidereal", "sky": 14.0, "rate": 5.0, "length": 5.0, "snr": 50.0},
            {"mode": "tracking", "sky": 18.0, "rate": 15.0, "length": 0.0, "snr": 500.0},
        )
    ]
    g = {(a, b): idx for a, b, idx, _, _ in evaluate.group_rows(s, [np.zeros((0, 5))] * 2)}
    assert g[("mode", "sidereal")] == [0] and g[("mode", "tracking")] == [1]
    assert g[("rate", "4-8")] == [0] and g[("length", "0-4")] == [1]
    assert g[("mode/rate", "sidereal 4-8")] == [0] and g[("mode/rate", "tracking 4-8")] == []
    assert g[("snr", "300-1e+09")] == [1]


def test_train_movers_tiny_run_with_init_and_backgrounds(tmp_path):
    from astropy.io import fits

    from skysift.movers.weights_io import load_moe

    fits.PrimaryHDU(np.random.default_rng(2).normal(300, 5, (80, 80))).writeto(tmp_path / "b.fits")
    st = train.TrainSettings(n_train=4, batch_size=2, max_steps=2, width=8, feat_channels=8)
    _, info = train.train_movers(tmp_path / "w", settings=st, backgrounds=[tmp_path / "b.fits"],
                                 log=None)  # fmt: skip
    assert info["steps"] == 2 and info["backgrounds"] == ["b.fits"] and info["init"] is None
    st2 = train.TrainSettings(
        n_train=4, batch_size=2, max_steps=1, init=str(tmp_path / "w" / "mover_moe.safetensors")
    )
    net, info2 = train.train_movers(None, settings=st2, log=None)
    assert (
        info2["init"]["sha256"] == load_moe(tmp_path / "w" / "mover_moe.safetensors").card["sha256"]
    )
    assert net.config == {"width": 8, "feat_channels": 8}  # the init's architecture


def test_training_defaults_are_the_shipped_recipe():
    """``skysift train movers`` simulates the data the shipped weights were trained on."""
    import json

    from skysift.movers.weights_io import WEIGHTS_DIR

    card = json.loads((WEIGHTS_DIR / "mover_moe.json").read_text())
    for k, v in card["recipe"]["data"].items():
        have = train.TRAIN_SETTINGS[k]
        assert (list(have) if isinstance(have, tuple) else have) == v, k
    assert train.TRAIN_SETTINGS["short_trail_fraction"] == 0.0
    assert train.TrainSettings().modes == ("sidereal", "tracking", "intersection")
    assert card["recipe"]["settings"]["n_train"] == train.TrainSettings().n_train


def test_cli_evaluate_movers_writes_the_summary(tmp_path):
    from skysift.cli import main

    out = tmp_path / "ev"
    assert (
        main(["evaluate", "movers", "--n-per-mode", "2", "--n-sky14", "2", "--out", str(out)]) == 0
    )
    summary = Table.read(out / "movers_map50.ecsv")
    # one column per detector, a row per (group, bin); mAP values are fractions
    assert {"moe", "classical"} <= set(summary.colnames)
    assert {"mode", "sky14"} <= set(summary["group"])
    assert np.all((summary["moe"] >= 0) & (summary["moe"] <= 1))


def test_add_glow_is_a_ramp_and_a_glow_with_poisson_noise():
    rng = np.random.default_rng(4)
    base = np.zeros((64, 64), np.float32)
    ramp = train.add_glow(base, 100.0, 0.0, 5.0, rng)  # gradient only: 0 -> 500 e- across
    yy, xx = np.mgrid[:64, :64]
    a = np.column_stack([np.ones(xx.size), xx.ravel(), yy.ravel()])
    coef, *_ = np.linalg.lstsq(a, ramp.ravel().astype(float), rcond=None)
    plane = (a @ coef).reshape(64, 64)
    assert np.ptp(plane) == pytest.approx(500.0, rel=0.05)  # the ramp spans 5x the sky
    assert plane.min() == pytest.approx(0.0, abs=15.0)
    resid = ramp - plane
    assert resid.std() == pytest.approx(np.sqrt(plane.clip(0).mean()), rel=0.1)  # Poisson
    glow = train.add_glow(base, 100.0, 20.0, 0.0, np.random.default_rng(5))
    sm = np.convolve(glow.ravel(), np.ones(25) / 25, mode="same")  # smooth, peaked, <= 20x sky
    assert glow.max() < 2000.0 + 5 * np.sqrt(2000.0) and np.median(glow) > 0
    assert sm.max() > 3 * max(np.median(sm), 1.0)
    with pytest.raises(InputError, match="sky must be > 0"):
        train.add_glow(base, 0.0, 1.0, 1.0, rng)
    with pytest.raises(InputError, match="glow, gradient >= 0"):
        train.add_glow(base, 10.0, -1.0, 1.0, rng)


@pytest.fixture(scope="module")
def elongated_star_frame(tmp_path_factory):
    """A 'real' frame (120x160) with elongated (aberrated) static stars every 20 px."""
    from astropy.io import fits

    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[:120, :160]
    frame = rng.normal(300.0, 5.0, (120, 160))
    for y0 in range(10, 120, 20):
        for x0 in range(10, 160, 20):
            u_, v_ = (xx - x0) * 0.8 + (yy - y0) * 0.6, -(xx - x0) * 0.6 + (yy - y0) * 0.8
            frame += 400.0 * np.exp(-0.5 * (u_**2 / 2.5**2 + v_**2 / 1.0**2))
    p = tmp_path_factory.mktemp("neg") / "aberr.fits"
    fits.PrimaryHDU(frame.astype(np.float32)).writeto(p)
    return p


def test_simulate_set_real_negatives_and_glows(elongated_star_frame):
    bgs = train.load_backgrounds([elongated_star_frame])
    neg = train.simulate_set(
        8, seed=2, backgrounds=bgs, modes=("sidereal",), keep_image=True,
        settings={"negative_fraction": 1.0, "negative_empty": 1.0},
    )  # fmt: skip
    assert all(s.meta["negative"] and s.meta["background"] for s in neg)
    assert all(s.boxes.shape == (0, 4) for s in neg)  # labelled negatives: no mover box
    # the real stars are the scene: >= 4 of the 20 px grid's stars in every 64x64 crop
    for s in neg:
        z = (s.image - np.median(s.image)) / (
            1.4826 * np.median(np.abs(s.image - np.median(s.image)))
        )
        n_blobs = ndimage.label(z > 6)[1]
        assert n_blobs >= 4, n_blobs
    pos = train.simulate_set(
        6, seed=2, backgrounds=bgs, modes=("sidereal", "tracking"),
        settings={"negative_fraction": 1.0, "negative_empty": 0.0, "glow_fraction": 1.0,
                  "negative_edge": 1.0},
    )  # fmt: skip
    assert all(s.boxes.shape == (1, 4) and not s.meta["negative"] for s in pos)
    assert all(0 <= s.meta["glow"] <= 20.0 for s in pos) and any(s.meta["glow"] > 1 for s in pos)
    # the recipe's defaults keep the old stream: no extra draws at fraction 0
    a = train.simulate_set(3, seed=9, backgrounds=bgs)
    b = train.simulate_set(
        3, seed=9, backgrounds=bgs, settings={"negative_fraction": 0.0, "glow_fraction": 0.0}
    )
    assert [x.meta for x in a] == [x.meta for x in b]
    assert train.TRAIN_SETTINGS["negative_fraction"] == 0.0
    assert train.TRAIN_SETTINGS["glow_fraction"] == 0.0


def test_train_movers_tiny_run_with_negatives_and_glows(tmp_path, elongated_star_frame):
    data = {"negative_fraction": 1.0, "negative_empty": 1.0, "glow_fraction": 0.5}
    st = train.TrainSettings(n_train=4, batch_size=2, max_steps=2, width=8, feat_channels=8,
                             data=data)  # fmt: skip
    # an all-negative set (no box in any batch) trains without error
    net, info = train.train_movers(tmp_path / "w", settings=st,
                                   backgrounds=[elongated_star_frame], log=None)  # fmt: skip
    assert info["steps"] == 2 and info["data"]["negative_fraction"] == 1.0
    assert info["data"]["glow_fraction"] == 0.5 and np.isfinite(info["last_losses"]["mix"])
    assert (tmp_path / "w" / "mover_moe.safetensors").is_file()
    with pytest.raises(InputError, match="unknown simulation setting 'negative_share'"):
        train.simulate_set(2, settings={"negative_share": 0.5})


def test_composite_background_crop_near_a_given_centre_or_snapped_to_an_edge():
    rng = np.random.default_rng(8)
    real = rng.normal(1000.0, 10.0, (120, 160)).astype(np.float32)
    real[100, 150] += 5000.0  # one marked star
    real[:, 0] += 300.0  # bright first and last columns: the frame's borders
    real[:, -1] += 300.0
    sim = rng.normal(50.0, 2.0, (64, 64)).astype(np.float32)
    for _ in range(5):
        added = train.composite_background(sim, real, (0.0, 0.0), 1.0, rng, centre=(150, 100)) - sim
        iy, ix = np.unravel_index(np.argmax(added), added.shape)
        assert (ix, iy) == (150 - 96, 100 - 56)  # the crop clipped at the corner holds the star
        left = train.composite_background(sim, real, (0.0, 0.0), 1.0, rng, centre=(-160, 60)) - sim
        assert np.argmax(left.mean(axis=0)) == 0  # snapped to the left border
        right = train.composite_background(sim, real, (0.0, 0.0), 1.0, rng, centre=(320, 60)) - sim
        assert np.argmax(right.mean(axis=0)) == 63  # and to the right one
