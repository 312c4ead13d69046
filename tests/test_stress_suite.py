"""The stress suite's independent renderer and all-sky grid: their truth is right."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest

STRESS = Path(__file__).resolve().parents[1] / "benchmarks" / "stress"


@pytest.fixture(scope="module")
def stress():
    sys.path.insert(0, str(STRESS))
    try:
        yield {n: importlib.import_module(n) for n in ("render", "allsky", "evaluate")}
    finally:
        sys.path.remove(str(STRESS))


@pytest.mark.parametrize("psf", ["gaussian", "moffat"])
def test_bright_star_position_and_flux(stress, psf):
    from photutils.aperture import CircularAperture, aperture_photometry
    from photutils.centroids import centroid_com

    render = stress["render"]
    im = render.render_star_field(
        (160, 160),
        n_stars=1,
        snr_range=(1500.0, 1600.0),
        gradient=2.0,
        glow=0.0,
        vignetting=0.35,
        cloud=0.5,
        caption=False,
        psf=psf,
        fwhm=2.6,
        rng=1,
    )
    star = im.truth[0]
    x, y = float(star["x"]), float(star["y"])
    assert 20 < x < 140 and 20 < y < 140  # isolated and far from the edges (seed chosen)
    resid = im.data - im.background
    # Observed flux = intrinsic flux through vignetting and cloud: both attenuate here.
    assert star["flux"] < 0.97 * star["flux_intrinsic"]
    ap = CircularAperture((x, y), r=4 * im.fwhm)
    flux = float(aperture_photometry(resid, ap)["aperture_sum"][0])
    assert flux == pytest.approx(float(star["flux"]), rel=0.02)
    i0, j0 = round(y), round(x)
    cut = resid[i0 - 6 : i0 + 7, j0 - 6 : j0 + 7]
    cx, cy = centroid_com(np.clip(cut, 0, None))
    assert abs(j0 - 6 + cx - x) < 0.1
    assert abs(i0 - 6 + cy - y) < 0.1
    # The truth SNR is the matched-filter SNR: flux * ||psf||_2 / sigma.
    sig = float(im.noise[i0, j0])
    assert star["snr"] == pytest.approx(star["flux"] * np.sqrt((im.kernel**2).sum()) / sig)
    assert 400 < star["snr"] < 1600


def test_region_labels_cover_the_glow_and_caption(stress):
    render = stress["render"]
    im = render.render_star_field(
        (512, 512), n_stars=50, gradient=0.0, glow=20.0, vignetting=0.3, caption=True, rng=4
    )
    code = {v: k for k, v in render.REGIONS.items()}
    gx, gy, s = im.meta["glow_xy_scale"]
    yy, xx = np.mgrid[0:512, 0:512]
    glow = 20.0 * (1 + ((xx - gx) ** 2 + (yy - gy) ** 2) / s**2) ** -1.5  # in units of the sky
    core = (glow >= 0.5) & (im.regions != code["edge"]) & (im.regions != code["caption"])
    assert core.sum() > 5000
    assert np.all(im.regions[core] == code["glow"])
    assert np.all(im.regions[glow < 0.5] != code["glow"])
    # The glow is really there: the noise-free sky at its centre is ~20x brighter than far away.
    far = im.background[im.regions == code["dark"]]
    assert far.size > 1000
    assert im.background[round(gy), round(gx)] > 10 * np.median(far)
    # The caption box is labelled and holds the burned-in text (pixels far above the sky).
    cap = im.regions == code["caption"]
    assert cap.any() and im.data[cap].max() > im.background[~cap].max()


def test_oracle_finds_the_bright_stars(stress):
    render, evaluate = stress["render"], stress["evaluate"]
    im = render.render_star_field((256, 256), n_stars=300, glow=8.0, caption=False, rng=5)
    det = render.oracle_matched_filter(im, threshold=5.0)
    rows = evaluate.score_finder(np.c_[det["x"], det["y"]], im.truth, im.regions, render.REGIONS)
    bright = im.truth[(im.truth["snr"] > 20) & ~im.truth["saturated"]]
    assert len(bright) > 20
    allrow = next(r for r in rows if r["region"] == "all")
    assert allrow["recall"] > 0.85
    assert allrow["precision"] > 0.95


def test_allsky_grid_covers_the_issue(stress):
    allsky = stress["allsky"]
    cams = allsky.camera_grid()
    assert len(cams) == 24
    combos = {(c.projection, c.parity, c.k3) for c in cams}
    assert len(combos) == 24
    for c in cams:
        h, w = c.shape
        assert abs(c.x0 - (w - 1) / 2) <= 0.05 * w and abs(c.y0 - (h - 1) / 2) <= 0.05 * h
        assert 0 <= c.tilt_deg <= 5


def test_allsky_round_trip_every_projection_and_handedness(stress):
    allsky = stress["allsky"]
    rng = np.random.default_rng(0)
    for cam in allsky.camera_grid():
        h, w = cam.shape
        x = rng.uniform(0, w - 1, 3000)
        y = rng.uniform(0, h - 1, 3000)
        keep = np.hypot(x - cam.x0, y - cam.y0) < cam.radius(math.radians(cam.theta_max_deg))
        alt, az = cam.pixel_to_altaz(x[keep], y[keep])
        x2, y2 = cam.altaz_to_pixel(alt, az)
        assert np.max(np.hypot(x2 - x[keep], y2 - y[keep])) < 0.01, cam.name


def test_allsky_projection_formulas(stress):
    allsky = stress["allsky"]
    base = {
        "parity": 1,
        "k3": 0.0,
        "f": 300.0,
        "x0": 700.0,
        "y0": 500.0,
        "rotation_deg": 0.0,
        "tilt_deg": 0.0,
        "tilt_az_deg": 0.0,
        "theta_max_deg": 90.0,
    }
    z = math.radians(60.0)
    expected = {
        "equidistant": z,
        "equisolid": 2 * math.sin(z / 2),
        "stereographic": 2 * math.tan(z / 2),
        "orthographic": math.sin(z),
    }
    for proj, g in expected.items():
        cam = allsky.AllSkyCamera(projection=proj, **base)
        # Altitude 30 deg due north: rotation 0 puts north along +x.
        x, y = cam.altaz_to_pixel(np.array([30.0]), np.array([0.0]))
        assert x[0] == pytest.approx(700 + 300 * g) and y[0] == pytest.approx(500.0)
        # East follows north towards +y (parity +1) or -y (mirrored).
        _, ye = cam.altaz_to_pixel(np.array([30.0]), np.array([90.0]))
        mir = allsky.AllSkyCamera(projection=proj, **{**base, "parity": -1})
        _, ym = mir.altaz_to_pixel(np.array([30.0]), np.array([90.0]))
        assert ye[0] == pytest.approx(500 + 300 * g) and ym[0] == pytest.approx(500 - 300 * g)


def test_allsky_render_places_stars_at_truth(stress):
    from photutils.centroids import centroid_com

    allsky = stress["allsky"]
    cam = allsky.camera_grid()[3]
    fr = allsky.render_allsky(cam, max_mag=3.0, rng=1)
    t = fr.truth[fr.truth["inside"] & (fr.truth["v_mag"] > 1.5) & (fr.truth["v_mag"] < 3.0)]
    assert len(t) > 30
    errs = []
    for row in t:
        i0, j0 = round(row["y"]), round(row["x"])
        if not (6 <= i0 < fr.data.shape[0] - 6 and 6 <= j0 < fr.data.shape[1] - 6):
            continue
        cut = fr.data[i0 - 4 : i0 + 5, j0 - 4 : j0 + 5].astype(float)
        cut = np.clip(cut - np.median(fr.data[i0 - 6 : i0 + 7, j0 - 6 : j0 + 7]), 0, None)
        cx, cy = centroid_com(cut)
        errs.append(np.hypot(j0 - 4 + cx - row["x"], i0 - 4 + cy - row["y"]))
    assert np.median(errs) < 0.15


def test_errors(stress):
    render, allsky = stress["render"], stress["allsky"]
    with pytest.raises(ValueError, match="psf must be 'gaussian' or 'moffat'"):
        render.psf_model("airy", 2.0)
    with pytest.raises(ValueError, match="fwhm must be a positive number"):
        render.psf_model("gaussian", 0.0)
    with pytest.raises(ValueError, match="shape must be at least 64x64"):
        render.render_star_field((32, 32))
    with pytest.raises(ValueError, match="gradient must be in"):
        render.render_star_field((64, 64), gradient=-1.0)
    cam = allsky.camera_grid()[0]
    bad = allsky.AllSkyCamera(**{**cam.__dict__, "projection": "fisheye"})
    with pytest.raises(ValueError, match="projection must be one of"):
        bad.radius(0.5)


@pytest.mark.slow
def test_quick_stress_run(stress, tmp_path):
    """The quick run end to end, every part (about 3 min on 2 cores, 3.3 GB peak in part d).

    Measured 2026-12-02: classical finder, dark regions, recall of SNR >= 5
    stars 0.48-0.74 over the quick frames (the issue's 0.9 is not reached, so
    it is not asserted); the oracle matched filter finds >= 0.9 of them.
    """
    from astropy.table import Table

    run = importlib.import_module("run")
    assert run.main(["--quick", "--out", str(tmp_path)]) == 0
    a = Table.read(tmp_path / "a_star_fields.ecsv")
    dark = a[a["region"] == "dark"]
    oracle, classical = dark[dark["finder"] == "oracle"], dark[dark["finder"] == "classical"]
    assert oracle["n_found"].sum() / oracle["n_true"].sum() >= 0.9
    n_det = classical["n_det"].sum()
    assert n_det > 0 and (n_det - classical["n_fp"].sum()) / n_det >= 0.95
    b = Table.read(tmp_path / "b_allsky_grid.ecsv")
    assert len(b) == 6 and set(b["mode"]) == {"(none)", "allsky"}
    # Solved cameras are scored against the truth (identifications within 2 px).
    solved = b[b["solved"]]
    assert np.all((solved["frac_correct"] >= 0) & (solved["frac_correct"] <= 1))
    d = Table.read(tmp_path / "d_big_frame.ecsv")
    assert list(d["finder"]) == ["classical"]
    # Measured 0.81 recall of SNR >= 5 stars on the 7380x4928 frame (classical).
    assert d["n_found"][0] > 1000 and d["recall_all"][0] > 0.7
