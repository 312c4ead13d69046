"""Simulated scenes: catalogue skies against a real frame, star-free backgrounds, composites, counts."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from skysift.detection import detect_stars
from skysift.errors import InputError
from skysift.io import read_frame
from skysift.io.frame import Site
from skysift.simulation.background import load_background, star_free_background
from skysift.simulation.optics import Telescope
from skysift.simulation.scenes import (
    FULL_SKY_DEG2,
    CatalogScene,
    CompositeScene,
    SimulatedScene,
    StarCounts,
    load_gaia,
)
from skysift.simulation.starfield import make_star_field

MAGIC_SITE = Site(28.7619, -17.8908, 2200)


@pytest.fixture(scope="module")
def magic(data_dir):
    from skysift.calibration.pipeline import calibrate

    frame = read_frame(data_dir / "magic_allsky" / "20180817_0055.fits", site=MAGIC_SITE)
    return calibrate(frame)


@pytest.fixture(scope="module")
def magic_bg(magic):
    return load_background(magic.frame, sky=~magic.sky.mask)


def _nearest(truth_xy, found_xy):
    d, i = cKDTree(found_xy).query(truth_xy)
    return d, i


# -- the key acceptance test ----------------------------------------------------------
def test_catalog_scene_puts_bright_stars_where_the_real_frame_has_them(magic):
    """V < 3 stars of a CatalogScene at the MAGIC frame's site/time lie on the real stars."""
    assert magic.frame.time.isot.startswith("2018-08-17T00:52:21")
    scene = CatalogScene.from_calibration(magic, max_mag=6.0)
    image, truth = scene.render(rng=1)
    real = detect_stars(magic.frame.data, magic.frame.mask | magic.sky.mask)
    bright = truth[truth["mag"] < 3]
    assert len(bright) >= 40
    d, _ = _nearest(np.c_[bright["x"], bright["y"]], np.c_[real["x"], real["y"]])
    # A bright star without any real detection within 5 px is hidden in the real
    # frame (Fomalhaut behind the structure; two stars merged into a neighbour).
    found = d < 5.0
    assert found.mean() >= 0.9
    assert np.median(d[found]) < 1.0
    assert d[found].max() < 2.0
    # the simulated frame itself shows them where the truth says
    sim = detect_stars(image, magic.sky.mask)
    ds, _ = _nearest(np.c_[bright["x"], bright["y"]], np.c_[sim["x"], sim["y"]])
    assert np.median(ds) < 0.2


def test_catalog_scene_through_a_wcs_recovers_gaia_positions_and_fluxes():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [83.8, -5.4]  # Orion
    w.wcs.crpix = [256.5, 256.5]
    w.wcs.cdelt = [-20 / 3600, 20 / 3600]
    scene = CatalogScene(
        w,
        (512, 512),
        catalog="gaia",
        max_mag=9.5,
        zero_point=22.0,
        psf=2.5,
        background=100.0,
        gain=2.0,
        read_noise=3.0,
    )
    image, truth = scene.render(rng=3)
    assert len(truth) > 40
    x, y = w.all_world2pix(truth["ra"], truth["dec"], 0)
    assert np.allclose(x, truth["x"]) and np.allclose(y, truth["y"])
    assert np.allclose(truth["flux"], 10 ** (-0.4 * (truth["mag"] - 22.0)))
    found = detect_stars(image, threshold_sigma=5)
    d, i = _nearest(np.c_[truth["x"], truth["y"]], np.c_[found["x"], found["y"]])
    # isolated, bright, away from the edges
    tree = cKDTree(np.c_[truth["x"], truth["y"]])
    n_near = np.array([len(tree.query_ball_point(p, 15.0)) for p in np.c_[truth["x"], truth["y"]]])
    ok = (truth["flux"] > 2e4) & (n_near == 1)
    ok &= (truth["x"] > 10) & (truth["x"] < 501) & (truth["y"] > 10) & (truth["y"] < 501)
    assert ok.sum() >= 10
    assert np.all(d[ok] < 0.2)
    ratio = np.asarray(found["flux"])[i[ok]] / truth["flux"][ok]
    assert np.all(np.abs(ratio - 1) < 0.05)


def test_catalog_scene_sequence_turns_with_the_sky(magic):
    scene = CatalogScene(
        magic.camera, magic.frame.shape, max_mag=2.5, zero_point=10.0, exposure_s=60.0, psf=3.0
    )
    frames, truth = scene.render_sequence(2, interval_s=600.0, rng=0)
    assert frames.shape == (2, *magic.frame.shape)
    later = truth[truth["frame"] == 1]
    direct = scene.project(magic.time + 600 * u.s)
    assert np.allclose(np.sort(later["x"]), np.sort(direct["x"]))
    first = truth[truth["frame"] == 0]
    common = np.intersect1d(first["catalog_id"], later["catalog_id"])
    a = first[np.isin(first["catalog_id"], common)]
    b = later[np.isin(later["catalog_id"], common)]
    a.sort("catalog_id")
    b.sort("catalog_id")
    # 10 minutes = 2.5 deg of rotation: stars move by several pixels
    assert np.median(np.hypot(a["x"] - b["x"], a["y"] - b["y"])) > 3


# -- star-free background -----------------------------------------------------------------
def test_star_free_background_removes_stars_and_keeps_smooth_structure():
    sigma = 10.0
    img, truth = make_star_field(
        (512, 512),
        200,
        fwhm=3.0,
        background=0.0,
        read_noise=sigma,
        flux_range=(1e3, 1e5),
        gain=1e9,
        rng=1,
    )
    yy, xx = np.mgrid[0:512, 0:512]
    smooth = 1000 + 0.5 * xx + 300 * np.exp(-((xx - 250) ** 2) / (2 * 60.0**2))  # + Milky Way band
    bg = star_free_background(img + smooth, radius=6)
    ix, iy = np.round(truth["x"]).astype(int), np.round(truth["y"]).astype(int)
    assert np.max(bg[iy, ix] - smooth[iy, ix]) < 3 * sigma
    rel = np.abs(bg - smooth) / smooth
    inner = (slice(16, -16), slice(16, -16))
    assert np.percentile(rel[inner], 99) < 0.01
    assert rel.max() < 0.03


def test_star_free_background_respects_the_mask():
    img = np.full((100, 100), 50.0, np.float32)
    img[:, :30] = 0.0  # a dark non-sky region
    mask = np.zeros(img.shape, bool)
    mask[:, :30] = True
    bg = star_free_background(img, 5, mask=mask, level_correction=False)
    assert np.allclose(bg[:, 30:], 50.0)
    assert np.array_equal(bg[:, :30], img[:, :30])


# -- composites ------------------------------------------------------------------------------
def test_composite_injected_stars_keep_their_truth(magic, magic_bg):
    scene = CompositeScene(
        magic_bg, n_stars=40, flux_range=(3e4, 5e5), psf=3.0, min_separation=40, border=20
    )
    image, truth = scene.render(rng=5)
    assert len(truth) == 40
    assert np.all(magic_bg.sky[np.round(truth["y"]).astype(int), np.round(truth["x"]).astype(int)])
    found = detect_stars(image, ~magic_bg.sky, threshold_sigma=10)
    d, i = _nearest(np.c_[truth["x"], truth["y"]], np.c_[found["x"], found["y"]])
    # bright = SNR > ~70 in the Milky Way's noise; a clean detection is an
    # unflagged star-sized source (not merged with Milky Way structure)
    bright = truth["flux"] > 1e5
    fwhm = np.asarray(found["fwhm"])[i]
    clean = (np.asarray(found["flags"])[i] == 0) & (np.abs(fwhm / 3.0 - 1) < 0.3)
    assert bright.sum() >= 15
    assert (bright & clean).sum() >= 0.9 * bright.sum()
    ok = bright & clean
    assert np.all(d[ok] < 0.2)
    # the detector's own aperture flux (mesh background): bright ones within 5 %;
    # a star landing on the site of a removed real star may read a few % more
    ratio = np.asarray(found["flux"])[i[ok]] / truth["flux"][ok]
    assert np.mean(np.abs(ratio - 1) < 0.05) >= 0.9
    assert np.median(np.abs(ratio - 1)) < 0.02
    # the injected light itself: image - star-free background in a 2-FWHM aperture
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    resid = image - magic_bg.star_free
    for x, y, flux in zip(
        truth["x"][bright], truth["y"][bright], truth["flux"][bright], strict=True
    ):
        ap = (xx - x) ** 2 + (yy - y) ** 2 < 36
        assert resid[ap].sum() == pytest.approx(flux, rel=0.03)
    # nothing outside the sky changed
    assert np.array_equal(image[~magic_bg.sky], magic_bg.image[~magic_bg.sky])


def _far_from(truth, shape, radius=15.0):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    far = np.ones(shape, bool)
    for x, y in zip(truth["x"], truth["y"], strict=True):
        far &= (xx - x) ** 2 + (yy - y) ** 2 > radius**2
    return far


def test_composite_background_statistics_unchanged(magic_bg):
    real = magic_bg.image
    # star-free mode: a sky region without injected objects keeps median and sigma
    scene = CompositeScene(magic_bg, n_stars=30, flux_range=(1e4, 1e5), min_separation=30)
    image, truth = scene.render(rng=2)
    region = magic_bg.sky & _far_from(truth, real.shape)
    region[:, : real.shape[1] // 2] = False  # one half of the sky, away from the dome edge
    region &= magic_bg.noise > 0
    for a, b in ((real, image),):
        ma, mb = np.median(a[region]), np.median(b[region])
        sa = 1.4826 * np.median(np.abs(a[region] - ma))
        sb = 1.4826 * np.median(np.abs(b[region] - mb))
        assert abs(mb - ma) / ma < 0.02
        assert abs(sb - sa) / sa < 0.05
    # frame mode: the real pixels themselves, untouched away from injected stars
    scene = CompositeScene(magic_bg, mode="frame", n_stars=30, flux_range=(1e4, 1e5), gain=None)
    image, truth = scene.render(rng=2)
    far = _far_from(truth, real.shape, 20.0)
    assert np.array_equal(image[far], real[far])


def test_composite_sequence_has_fresh_noise_and_fixed_truth(magic_bg):
    scene = CompositeScene(magic_bg, n_stars=5)
    frames, truth = scene.render_sequence(2, rng=0)
    assert frames.shape == (2, *magic_bg.shape) and len(truth) == 5
    diff = (frames[1] - frames[0])[magic_bg.sky]
    assert np.std(diff) > 0.5 * np.sqrt(2) * np.median(magic_bg.noise[magic_bg.sky])


# -- number counts --------------------------------------------------------------------------
def test_gaia_counts_whole_sky():
    counts = StarCounts.from_gaia((6.0, 10.0))
    assert 0.38 < counts.slope < 0.48
    n10 = np.count_nonzero(load_gaia(10.0)["mag"] < 10.0)
    assert counts.cumulative(10.0) == pytest.approx(n10 / FULL_SKY_DEG2, rel=1e-6)
    # the defaults are this measurement
    assert StarCounts().slope == pytest.approx(counts.slope, abs=0.005)
    # richer and steeper towards the Galactic centre than at the Galactic pole
    gc = StarCounts.from_gaia(center=(266.4, -28.9))
    ngp = StarCounts.from_gaia(center=(192.9, 27.1))
    assert gc.cumulative(10) > 3 * ngp.cumulative(10) and gc.slope > ngp.slope


def test_simulated_magnitudes_follow_the_counts_slope():
    counts = StarCounts(slope=0.35, log10_density=1.0)
    scene = SimulatedScene(
        (2048, 2048),
        psf=2.0,
        counts=counts,
        mag_range=(8.0, 15.0),
        exposure_s=1.0,
        telescope=Telescope(0.1, pixel_scale_arcsec=20.0),
    )
    truth = scene.draw_stars(rng=4)
    expected = counts.expected((8.0, 15.0), scene.area_deg2)
    assert abs(len(truth) - expected) < 5 * np.sqrt(expected)
    m = np.asarray(truth["mag"])
    # maximum-likelihood slope of a truncated exponential, by bisection on the score
    lo, hi, mean = 8.0, 15.0, m.mean()

    def mean_of(b):  # E[m] for dN/dm ∝ 10**(b m) on [lo, hi]; increases with b
        k, span = b * np.log(10), hi - lo
        return lo + span / -np.expm1(-k * span) - 1 / k

    a, c = 0.05, 1.0
    for _ in range(60):
        mid = 0.5 * (a + c)
        a, c = (mid, c) if mean_of(mid) < mean else (a, mid)
    assert 0.5 * (a + c) == pytest.approx(0.35, abs=0.02)


def test_simulated_scene_renders_the_drawn_stars():
    scene = SimulatedScene((128, 128), psf=2.5, n_stars=5, mag_range=(9.0, 10.0), exposure_s=0.5)
    image, truth = scene.render(rng=0)
    assert image.shape == (128, 128) and len(truth) == 5
    found = detect_stars(image, threshold_sigma=10)
    d, _ = _nearest(np.c_[truth["x"], truth["y"]], np.c_[found["x"], found["y"]])
    inside = (truth["x"] > 5) & (truth["x"] < 122) & (truth["y"] > 5) & (truth["y"] < 122)
    assert np.all(d[inside] < 0.3)


# -- errors ------------------------------------------------------------------------------------
def test_invalid_parameters_raise_input_error(tmp_path, magic):
    with pytest.raises(InputError, match="exposure_s"):
        SimulatedScene(exposure_s=-1.0)
    with pytest.raises(InputError, match="exposure_s"):
        CatalogScene(magic.camera, (100, 100), exposure_s=0.0)
    with pytest.raises(InputError, match="mag_range"):
        StarCounts().sample(10, (10.0, 5.0))
    with pytest.raises(InputError, match="slope"):
        StarCounts(slope=-0.3)
    bad = tmp_path / "not_a_frame.fits"
    bad.write_text("this is not FITS")
    with pytest.raises(InputError, match="not_a_frame.fits"):
        CompositeScene(bad)
    with pytest.raises(InputError, match="missing.fits"):
        load_background(tmp_path / "missing.fits")
    with pytest.raises(InputError, match="background"):
        CatalogScene(magic.camera, (100, 100), background=np.zeros((50, 50)))
    with pytest.raises(InputError, match="sky mask shape"):
        CatalogScene(magic.camera, (100, 100), sky=np.ones((10, 10), bool))
    with pytest.raises(InputError, match="mode"):
        CompositeScene(np.zeros((64, 64)), mode="nonsense")
    with pytest.raises(InputError, match="radius"):
        star_free_background(np.zeros((10, 10)), radius=-2)
    with pytest.raises(InputError, match="camera"):
        CatalogScene("not a camera", (10, 10))
    with pytest.raises(InputError, match="stars table"):
        CompositeScene(
            np.zeros((64, 64)),
            stars=Table({"x": [1.0]}),
        )
