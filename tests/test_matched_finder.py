"""The matched-filter star finder (``method="matched"``): recovery under a strong glow."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift.cli import main
from skysift.detection.matched import (
    MATCHED_PER_SIGMA,
    MatchedStarFinder,
    make_matched_finder,
    matched_background,
)
from skysift.detection.stars import STAR_COLUMNS, StarFlag, detect_stars, star_finder
from skysift.errors import DetectionCapWarning, InputError, NoDetectionsWarning
from skysift.evaluation.matching import match_objects
from skysift.simulation.starfield import make_star_field

STRESS = Path(__file__).resolve().parents[1] / "benchmarks" / "stress" / "render.py"

FWHM = 2.5
SIGMA_PSF = FWHM / 2.3548
#: ||psf||_2 of a Gaussian: the matched-filter SNR is flux * NORM / sigma_pixel.
NORM = 1.0 / (np.sqrt(4 * np.pi) * SIGMA_PSF)


def _glow(shape, peak, centre, scale):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    r2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2
    return peak * (1.0 + r2 / scale**2) ** -1.5


def _simulated_glow_frame(seed=3):
    """skysift.simulation stars (no sky) plus a sky with a glow of 20x the sky, Poisson noise."""
    rng = np.random.default_rng(seed)
    shape = (256, 256)
    sky = 100.0
    stars, truth = make_star_field(
        shape,
        60,
        fwhm=FWHM,
        flux_range=(300.0, 3e4),
        background=0.0,
        read_noise=0.0,
        saturation=None,
        border=8.0,
        min_separation=6.0,
        rng=rng,
    )
    bg = sky + _glow(shape, 20 * sky, (110.0, 140.0), 40.0)
    image = stars + rng.poisson(bg).astype(np.float32) + rng.normal(0, 5.0, shape)
    sigma = np.sqrt(bg + 25.0)
    xi = np.round(np.asarray(truth["x"])).astype(int)
    yi = np.round(np.asarray(truth["y"])).astype(int)
    truth["snr"] = np.asarray(truth["flux"]) * NORM / sigma[yi, xi]
    return image.astype(np.float32), truth, bg


def _match(det: Table, truth: Table, radius: float = 2.0):
    return match_objects(
        np.c_[np.asarray(det["x"]), np.asarray(det["y"])],
        np.c_[np.asarray(truth["x"]), np.asarray(truth["y"])],
        radius,
    )


def test_simulated_glow_recovered_within_0p3_px():
    image, truth, _ = _simulated_glow_frame()
    det = MatchedStarFinder()(image)
    m = _match(det, truth)
    snr = np.asarray(truth["snr"])
    found = np.zeros(len(truth), bool)
    found[m.true_index] = True
    assert found[snr >= 5].mean() >= 0.95
    # precision >= 0.95 (the target): the glow yields few detections of its own
    assert m.fp <= 0.05 * len(det)
    bright = snr[m.true_index] >= 20
    err = np.hypot(m.dx, m.dy)[bright]
    assert bright.sum() >= 20
    assert np.max(err) < 0.3
    assert abs(det.meta["fwhm"] - FWHM) < 0.4


def test_background_follows_the_glow_core():
    image, _, bg = _simulated_glow_frame()
    b = matched_background(image, fwhm=FWHM)
    sigma = np.sqrt(bg + 25.0)
    core = _glow(image.shape, 1.0, (110.0, 140.0), 40.0) > 0.5  # the glow's core, r < 30 px
    err = (b.level - bg) / sigma
    assert abs(np.median(err[core])) < 0.1
    assert abs(np.median(err)) < 0.05
    # the measured per-pixel noise follows the photon noise of the glow: within 15 % over
    # the frame, within 30 % in the core (a few noise blocks of 16 px only)
    ratio = b.pixel_rms / sigma
    assert 0.7 < np.median(ratio[core]) < 1.3
    assert 0.85 < np.median(ratio) < 1.15


def _load_stress_renderer():
    if not STRESS.exists():
        pytest.skip(f"the stress renderer is missing ({STRESS})")
    name = "skysift_stress_render"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, STRESS)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # its dataclasses look their module up there
        spec.loader.exec_module(mod)
    return sys.modules[name]


def test_photutils_rendered_glow_recall_and_centroids():
    render = _load_stress_renderer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # photutils' own deprecations are not ours
        im = render.render_star_field(
            (384, 384),
            n_stars=800,
            fwhm=FWHM,
            gradient=3.0,
            glow=20.0,
            glow_scale=70.0,
            vignetting=0.3,
            caption=False,
            rng=11,
        )
    det = MatchedStarFinder()(im.data)
    truth = im.truth
    m = _match(det, truth)
    found = np.zeros(len(truth), bool)
    found[m.true_index] = True
    good = (np.asarray(truth["snr"]) >= 5) & ~np.asarray(truth["saturated"])
    glow = good & (np.asarray(truth["region"]) == "glow")
    assert glow.sum() >= 50
    # Stated levels for this small frame (measured 0.91 overall, 0.86-0.92 under the glow
    # over seeds 11-13; precision 0.985-1.0): recall >= 0.88, >= 0.85 under the glow.
    assert found[good].mean() >= 0.88
    assert found[glow].mean() >= 0.85
    precision = 1.0 - m.fp / max(len(det), 1)
    assert precision >= 0.95
    bright = np.asarray(truth["snr"])[m.true_index] >= 20
    assert np.sqrt(np.mean(m.dx[bright] ** 2 + m.dy[bright] ** 2)) < 0.3


def test_no_detection_in_a_caption_block():
    rng = np.random.default_rng(5)
    image, truth = make_star_field(
        (256, 256), 30, fwhm=FWHM, flux_range=(3e3, 3e4), background=100.0, rng=rng
    )
    text = np.zeros(image.shape, np.uint8)
    cv2.putText(text, "CAM-07 2025-03-14 03:21:55", (8, 246), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
    image = np.where(text > 0, 3000.0, image).astype(np.float32)
    ys, xs = np.nonzero(text)
    box = (xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3)
    det = MatchedStarFinder()(image)  # no mask given: captions are masked by the finder
    x, y = np.asarray(det["x"]), np.asarray(det["y"])
    in_box = (x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])
    assert not in_box.any()
    outside = truth[
        ~(
            (truth["x"] >= box[0] - 5)
            & (truth["x"] <= box[2] + 5)
            & (truth["y"] >= box[1] - 5)
            & (truth["y"] <= box[3] + 5)
        )
    ]
    assert len(_match(det, outside).true_index) >= 0.95 * len(outside)


def test_registry_and_threshold_mapping():
    finder = star_finder("matched", threshold_sigma=3.0)
    assert isinstance(finder, MatchedStarFinder)
    assert finder.threshold == pytest.approx(3.0 * MATCHED_PER_SIGMA)
    assert make_matched_finder(threshold_sigma=3.0, threshold=5.0).threshold == 5.0
    image, truth, _ = _simulated_glow_frame(seed=8)
    det = detect_stars(image, method="matched", threshold_sigma=3.0)
    for name, _, _ in STAR_COLUMNS:
        assert name in det.colnames
    assert len(_match(det, truth[np.asarray(truth["snr"]) >= 10]).true_index) >= 0.95 * np.sum(
        np.asarray(truth["snr"]) >= 10
    )


def test_false_alarm_threshold_on_pure_noise():
    finder = MatchedStarFinder(false_alarms=10.0)
    t = finder.significance_threshold(FWHM)
    assert 4.0 < t < 4.6
    rng = np.random.default_rng(0)
    noise = (500.0 + 10.0 * rng.normal(size=(512, 512))).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        det = MatchedStarFinder(fwhm=FWHM)(noise)
    # 10 per million pixels by the continuous-field formula (2.6 here); on the pixel grid a
    # 1 px kernel has more maxima: 12 local maxima above 4.2 sigma measured in the
    # significance map, 9-10 detections after the shape cuts (seed 0)
    assert len(det) <= 12


def test_saturated_star_is_one_flagged_detection():
    image, _ = make_star_field((128, 128), 0, fwhm=3.0, background=100.0, saturation=None, rng=1)
    yy, xx = np.mgrid[0:128, 0:128]
    star = 5e5 * np.exp(-((xx - 64.3) ** 2 + (yy - 60.7) ** 2) / (2 * 1.6**2))
    image = np.minimum(image + star, 4000.0).astype(np.float32)
    det = MatchedStarFinder(saturation=4000.0)(image)
    near = np.hypot(np.asarray(det["x"]) - 64.3, np.asarray(det["y"]) - 60.7) < 6
    assert near.sum() == 1
    assert det["flags"][near][0] & StarFlag.SATURATED
    assert abs(det["x"][near][0] - 64.3) < 0.5 and abs(det["y"][near][0] - 60.7) < 0.5


def test_close_pair_is_deblended():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:96, 0:96]
    s = SIGMA_PSF
    pair = [(40.2, 47.6), (40.2 + 2.2 * FWHM, 48.1)]
    image = 100.0 + sum(
        3e3 / (2 * np.pi * s * s) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
        for x, y in pair
    )
    image = rng.poisson(image).astype(np.float32)
    det = MatchedStarFinder(fwhm=FWHM)(image)
    m = match_objects(np.c_[det["x"], det["y"]], np.array(pair), 1.0)
    assert len(m.true_index) == 2


def test_cap_and_empty_results():
    image, _, _ = _simulated_glow_frame()
    with pytest.warns(DetectionCapWarning, match="max_objects"):
        det = MatchedStarFinder(max_objects=5)(image)
    assert len(det) == 5 and det.meta["capped"]
    with pytest.warns(NoDetectionsWarning, match="every pixel is masked"):
        empty = MatchedStarFinder()(image, np.ones(image.shape, bool))
    assert len(empty) == 0 and "significance" in empty.colnames


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0.0}, "threshold must be > 0"),
        ({"false_alarms": -1.0}, "false_alarms must be > 0"),
        ({"fwhm": 0.1}, r"fwhm must be in \[0.8, 30\]"),
        ({"initial_fwhm": 50.0}, r"initial_fwhm must be in \[0.8, 30\]"),
        ({"max_objects": 0}, "max_objects must be >= 1"),
        ({"max_size_ratio": 0.0}, "max_size_ratio must be > 0 or None"),
        ({"max_asymmetry": float("nan")}, "max_asymmetry must be > 0 or None"),
        ({"max_psf_excess": 0.0}, "max_psf_excess must be > 0 or None"),
        ({"faint_size_ratio": -1.0}, "faint_size_ratio must be > 0 or None"),
    ],
)
def test_finder_parameter_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        MatchedStarFinder(**kwargs)


def test_input_errors():
    with pytest.raises(InputError, match="threshold_sigma must be > 0"):
        make_matched_finder(threshold_sigma=-1.0)
    with pytest.raises(InputError, match="needs a 2-D image"):
        MatchedStarFinder()(np.zeros(100))
    with pytest.raises(InputError, match="at least 16x16"):
        MatchedStarFinder()(np.zeros((8, 40)))
    image = np.zeros((64, 64), np.float32)
    with pytest.raises(InputError, match=r"fwhm must be a number of pixels in \[0.5, 30\]"):
        matched_background(image, fwhm=0.1)
    with pytest.raises(InputError, match=r"mesh_size must be in \[2, 256\]"):
        matched_background(image, mesh_size=1)
    with pytest.raises(InputError, match=r"smooth_meshes must be in \[1, 20\]"):
        matched_background(image, smooth_meshes=0)
    with pytest.raises(InputError, match="every pixel is masked"):
        matched_background(image, np.ones((64, 64), bool))


def test_step_edge_in_the_sky_is_not_a_star():
    """The bright side of a sharp step in the sky (a roof or tree line in the sky mask)."""
    rng = np.random.default_rng(4)
    image = np.full((160, 160), 200.0)
    image[:, 80:] += 150.0  # a step of ~10 sigma per pixel
    yy, xx = np.mgrid[0:160, 0:160]
    stars = np.array([(40.3, 40.6), (120.2, 118.7), (73.6, 100.4), (87.1, 60.2)])
    for x, y in stars:  # matched-filter SNR ~ 30, two of them 6-7 px from the step
        image += (
            2000.0
            / (2 * np.pi * SIGMA_PSF**2)
            * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * SIGMA_PSF**2))
        )
    image = rng.poisson(image).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        det = MatchedStarFinder(fwhm=FWHM)(image)
        strict = MatchedStarFinder(fwhm=FWHM, max_asymmetry=0.15)(image)
    # measured before the local noise floor and the PSF-fit cut: 25 false stars along the
    # step without the shape cuts, 11 with the defaults; now none, and the stars near the
    # step are kept, within 0.3 px
    for found in (det, strict):
        m = match_objects(np.c_[found["x"], found["y"]], stars, 1.0)
        assert len(m.true_index) == 4
        assert m.fp == 0
        assert np.max(np.hypot(m.dx, m.dy)) < 0.3


def test_cli_stars_method_matched_under_a_glow(tmp_path):
    image, truth, _ = _simulated_glow_frame(seed=5)
    path = tmp_path / "glow.fits"
    fits.PrimaryHDU(image).writeto(path)
    out = tmp_path / "out"
    assert main(["stars", str(path), "--method", "matched", "--out", str(out)]) == 0
    det = Table.read(out / "stars.ecsv")
    m = _match(det, truth)
    found = np.zeros(len(truth), bool)
    found[m.true_index] = True
    assert found[np.asarray(truth["snr"]) >= 5].mean() >= 0.9


def test_psf_fit_excess_separates_stars_from_a_step():
    """The PSF-fit test of ``max_psf_excess``: stars (single or blended) fit, a step does not."""
    from skysift.detection.matched import _psf_excess

    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[0:120, 0:120]
    truth = 100.0 + 200.0 * (xx >= 80)  # a sharp step of 20 sigma per pixel
    stars = [(30.3, 30.6), (30.2, 80.4), (30.2 + 1.5 * FWHM, 80.9)]  # one alone, a blend
    for x, y in stars:
        truth = truth + 4000.0 / (2 * np.pi * SIGMA_PSF**2) * np.exp(
            -((xx - x) ** 2 + (yy - y) ** 2) / (2 * SIGMA_PSF**2)
        )
    resid = (truth - 100.0 + rng.normal(0, 10.0, truth.shape)).astype(np.float32)
    bad = np.zeros(truth.shape, bool)
    rms = np.full(truth.shape, 10.0, np.float32)
    x = np.array([30.3, 30.2, 33.95, 80.0])  # the three stars, then a point on the step
    y = np.array([30.6, 80.4, 80.9, 60.0])
    z, r = _psf_excess(resid, bad, rms, x, y, FWHM, x, y)
    # stars: chi^2 within 4 sigma of its expectation, misfit under the gain of the PSF
    assert np.all(np.abs(z[:3]) < 4) and np.all(r[:3] < 1.0)
    assert z[3] > 10 and r[3] > 3  # the step: rejected by the defaults (10 sigma, 3x)
    # without the neighbour's PSF in the fit, a blend would look like a misfit
    z0, _ = _psf_excess(resid, bad, rms, x[1:3], y[1:3], FWHM, x[1:3], y[1:3], n_neighbours=0)
    assert np.all(z0 > 10)


@pytest.mark.parametrize("shape", [(101, 133), (99, 99)])
def test_odd_shapes_and_a_masked_border_are_handled(shape):
    """Odd sizes (2x2 bins with a leftover row) and the crop to the unmasked box."""
    image, truth = make_star_field(
        shape,
        15,
        fwhm=FWHM,
        flux_range=(3e3, 3e4),
        background=100.0,
        min_separation=8.0,
        rng=1,
    )
    mask = np.zeros(shape, bool)
    mask[:, :30] = True  # a third of the frame masked: the finder works on the rest
    det = MatchedStarFinder()(image, mask)
    assert np.all(np.asarray(det["x"]) >= 30)
    inside = truth[(truth["x"] >= 34) & (truth["x"] <= shape[1] - 5)]
    inside = inside[(inside["y"] >= 4) & (inside["y"] <= shape[0] - 5)]
    m = _match(det, inside, 0.5)
    assert len(inside) >= 6
    assert len(m.true_index) == len(inside)
