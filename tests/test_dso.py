"""Tests of skysift.dso: catalogue, visibility, annotation, plate solving of narrow fields."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from skysift.dso import catalog, visibility
from skysift.dso.annotate import place_labels, render_annotated
from skysift.dso.pipeline import run_dso
from skysift.dso.solve import as_luminance, solve_image, write_wcs_files
from skysift.dso.validation import inject_and_measure, summarise_injections
from skysift.errors import InputError, NoDetectionsWarning, NotEnoughStarsError

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "seestar_dso"
SCALE = 2.4 / 3600.0  # deg per pixel (Seestar S50)


def _tan_wcs(ra: float, dec: float, shape=(1920, 1080), rot_deg: float = 0.0) -> WCS:
    h, w = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(w + 1) / 2.0, (h + 1) / 2.0]
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    wcs.wcs.cd = SCALE * np.array([[-c, s], [s, c]])
    wcs.pixel_shape = (w, h)
    return wcs


def _gnomonic_pixel(ra, dec, ra0, dec0, shape):
    """Independent TAN projection (no astropy.wcs), north up, east left, 0-based pixels."""
    ra, dec, ra0, dec0 = (np.radians(v) for v in (ra, dec, ra0, dec0))
    cosc = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    xi = np.cos(dec) * np.sin(ra - ra0) / cosc
    eta = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cosc
    h, w = shape
    return (w - 1) / 2.0 - np.degrees(xi) / SCALE, (h - 1) / 2.0 + np.degrees(eta) / SCALE


# --------------------------------------------------------------------------- catalogue
def test_lookup_names_and_aliases():
    m81 = catalog.lookup("m 81")
    assert len(m81) == 1 and m81["name"][0] == "NGC 3031" and m81["type"][0] == "G"
    assert catalog.lookup("NGC3031")["label"][0] == "M81"
    assert catalog.lookup("Crescent Nebula")["caldwell"][0] == "C27"
    # NGC 2244 is a duplicate record of NGC 2239 in OpenNGC (the Rosette cluster, C50)
    rosette = catalog.lookup("NGC 2244")
    assert rosette["name"][0] == "NGC 2239" and rosette["label"][0] == "C50"
    assert "CC-BY-SA-4.0" in catalog.load_openngc().meta["catalog"]


def test_objects_in_field_m81_m82_positions():
    m81 = catalog.lookup("M81")[0]
    m82 = catalog.lookup("M82")[0]
    wcs = _tan_wcs(float(m81["ra"]), float(m81["dec"]))
    t = catalog.objects_in_field(wcs, (1920, 1080), include_stars=False)
    labels = list(t["label"])
    assert "M81" in labels and "M82" in labels
    for obj in (m81, m82):
        row = t[labels.index(obj["label"])]
        x, y = _gnomonic_pixel(obj["ra"], obj["dec"], m81["ra"], m81["dec"], (1920, 1080))
        assert abs(row["x"] - x) < 1.0 and abs(row["y"] - y) < 1.0
    row = t[labels.index("M81")]
    assert row["major_px"] == pytest.approx(m81["major_arcmin"] * 60 / 2.4, rel=1e-3)
    # PA 157 deg E of N with north = +y and east = -x: theta = atan2(cos PA, -sin PA)
    pa = np.radians(157.0)
    expect = np.degrees(np.arctan2(np.cos(pa), -np.sin(pa)))
    assert abs((row["theta_deg"] - expect + 90) % 180 - 90) < 0.5
    assert bool(row["in_frame"])


def test_objects_in_field_rotated_and_stars():
    m81 = catalog.lookup("M81")[0]
    wcs = _tan_wcs(float(m81["ra"]), float(m81["dec"]), rot_deg=30.0)
    t = catalog.objects_in_field(wcs, (1920, 1080), max_star_mag=9.0)
    row = t[list(t["label"]).index("M81")]
    assert abs(row["x"] - 539.5) < 0.01 and abs(row["y"] - 959.5) < 0.01
    stars = t[t["type"] == "*"]
    assert len(stars) >= 1 and all(str(n).startswith("HIP") for n in stars["name"])


def test_objects_in_field_empty_warns():
    wcs = _tan_wcs(123.456, -67.89, shape=(32, 32))
    with pytest.warns(NoDetectionsWarning, match="no catalogued object"):
        t = catalog.objects_in_field(wcs, (32, 32), include_stars=False)
    assert len(t) == 0 and {"x", "y", "major_px", "label"} <= set(t.colnames)


def test_catalog_errors():
    with pytest.raises(InputError, match="celestial astropy WCS"):
        catalog.objects_in_field("not a wcs", (10, 10))
    with pytest.raises(InputError, match="shape must be"):
        catalog.objects_in_field(_tan_wcs(10, 10), (0, 10))
    with pytest.raises(InputError, match="no OpenNGC object"):
        catalog.lookup("Nonexistent Thing 42")


# --------------------------------------------------------------------------- visibility
def _star_field(rng, shape=(256, 256), n_stars=80, sigma=5.0):
    h, w = shape
    img = rng.normal(100.0, sigma, shape)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n_stars):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        img += rng.uniform(200, 3000) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.3**2))
    return img.astype(np.float32)


def _galaxy_table(x, y, a, b, theta, typ="G"):
    return Table({"x": [x], "y": [y], "major_px": [2 * a], "minor_px": [2 * b],
                  "theta_deg": [theta], "type": [typ]})  # fmt: skip


def test_visibility_recovers_injected_snr():
    from skysift.simulation.sources import render_sersic

    rng = np.random.default_rng(3)
    img = _star_field(rng)
    obj = _galaxy_table(128.0, 128.0, 16.0, 10.0, 30.0)
    before = visibility.measure_visibility(img, obj)
    assert before["verdict"][0] == "not visible" and abs(before["snr"][0]) < 3
    prof = render_sersic(img.shape, 128.0, 128.0, 1.0, 1.0, 8.0, ellipticity=0.375, pa=30.0,
                         backend="numpy", oversample=3)  # fmt: skip
    yy, xx = np.mgrid[0:256, 0:256]
    t = np.radians(30.0)
    u = (xx - 128) * np.cos(t) + (yy - 128) * np.sin(t)
    v = -(xx - 128) * np.sin(t) + (yy - 128) * np.cos(t)
    f_in = prof[(u / 16) ** 2 + (v / 10) ** 2 <= 1].sum()
    for target, expected in ((20.0, "visible"), (1.0, "not visible")):
        amp = target * before["excess_err"][0] / f_in
        after = visibility.measure_visibility(img + (amp * prof).astype(np.float32), obj)
        assert after["verdict"][0] == expected
        assert abs(after["snr"][0] - target) < 3.0  # measurement noise is 1 by construction


def test_remove_stars_fills_stars_keeps_protected_core():
    rng = np.random.default_rng(5)
    img = _star_field(rng, n_stars=0)
    yy, xx = np.mgrid[0:256, 0:256]
    star = 2000 * np.exp(-((xx - 60.0) ** 2 + (yy - 70.0) ** 2) / (2 * 1.3**2))
    core = 2000 * np.exp(-((xx - 180.0) ** 2 + (yy - 180.0) ** 2) / (2 * 1.3**2))
    starless, mask = visibility.remove_stars(img + star + core, protect=np.array([[180, 180, 20]]))
    assert mask[70, 60] and not mask[180, 180]
    assert abs(starless[70, 60] - 100.0) < 20.0  # filled from the 100 +/- 5 background
    assert starless[180, 180] > 1000.0  # the protected core is kept


def test_star_counts_find_a_cluster():
    rng = np.random.default_rng(7)
    field = np.column_stack([rng.uniform(0, 512, (400, 2)), rng.lognormal(5, 1, 400)])
    r = 40 * np.sqrt(rng.uniform(0, 1, 40))
    phi = rng.uniform(0, 2 * np.pi, 40)
    cluster = np.column_stack([256 + r * np.cos(phi), 256 + r * np.sin(phi),
                               rng.lognormal(7, 0.5, 40)])  # fmt: skip
    hit = visibility.star_count_snr(np.vstack([field, cluster]), (512, 512), 256, 256, 40, 40, 0)
    assert hit["snr"] >= visibility.SNR_VISIBLE
    miss = visibility.star_count_snr(field, (512, 512), 256, 256, 40, 40, 0)
    assert miss["snr"] < visibility.SNR_MARGINAL


def test_verdict_thresholds():
    assert visibility.verdict(5.0) == "visible"
    assert visibility.verdict(4.99) == "marginal"
    assert visibility.verdict(3.0) == "marginal"
    assert visibility.verdict(2.9) == "not visible"
    assert visibility.verdict(float("nan")) == "not visible"


def test_injection_validation_small():
    rng = np.random.default_rng(11)
    bgs = [_star_field(rng, shape=(200, 200), n_stars=40)]
    trials = inject_and_measure(bgs, n_trials=12, size=128, r_e_range=(3, 6), rng=1)
    summary, per_bin = summarise_injections(trials)
    assert summary["n_trials"] == 12 and len(per_bin) >= 1
    if summary["n_away"]:
        assert summary["agreement_away"] >= 0.9
    absent = trials[trials["injected_snr"] == 0]
    assert all(v != "visible" for v in absent["verdict"])


def _nebula_field(rng, shape, scale=40.0):
    """A positive, structured, frame-filling emission field (smoothed noise, exponentiated)."""
    from scipy import ndimage

    g = ndimage.gaussian_filter(rng.normal(0, 1, shape), scale)
    g /= g.std()
    return np.exp(g).astype(np.float32)


def test_sky_floor_blank_frame_and_frame_filling_nebula():
    """An object larger than the frame: blank sky with a gradient is not visible, a nebula is."""
    rng = np.random.default_rng(21)
    h, w = 384, 256
    yy, xx = np.mgrid[0:h, 0:w]
    blank = _star_field(rng, shape=(h, w), n_stars=60) + (0.02 * xx + 0.015 * yy).astype(np.float32)
    big = _galaxy_table(100.0, 150.0, 600.0, 400.0, 20.0, typ="HII")  # ellipse past every edge
    res = visibility.measure_visibility(blank, big)
    assert res["method"][0] == "sky floor" and bool(res["global_background"][0])
    assert abs(res["snr"][0]) < 3 and res["verdict"][0] == "not visible"
    # the truth: a blank frame's floor is its sky (100 + the plane), within a noise sigma
    floor = visibility.frame_floor(blank)
    assert abs(floor.coef[0] - 100.0) < 5.0
    assert floor.coef[1] == pytest.approx(0.02, abs=0.01) and floor.coef[2] == pytest.approx(
        0.015, abs=0.01
    )
    neb = 6.0 * _nebula_field(rng, (h, w))  # mean excess about 10, i.e. 2 sigma per pixel
    res = visibility.measure_visibility(blank + neb, big)
    assert res["method"][0] == "sky floor" and res["verdict"][0] == "visible"
    # the excess recovered over the floor is the nebula's light above its own faintest parts
    n_in = res["n_pix"][0]
    truth = float(np.sum(neb - np.quantile(neb, 0.1)))
    assert n_in == h * w and 0.5 * truth < res["excess"][0] < 1.5 * truth
    with pytest.raises(InputError, match="exclude must have the image's shape"):
        visibility.frame_floor(blank, exclude=np.zeros((4, 4), bool))


def test_bright_saturated_stars_are_counted_in_clusters():
    """Saturated stars (flat tops, big halos: sep's a is large) are stars, not nebulae."""
    rng = np.random.default_rng(9)
    img = _star_field(rng, shape=(300, 300), n_stars=150)
    yy, xx = np.mgrid[0:300, 0:300]
    cluster = ((150, 150), (165, 140), (140, 162), (158, 170), (130, 145), (172, 158), (147, 128))
    for x, y in cluster:  # seven bright, saturated stars
        img += 3000 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.5**2))
    img = np.minimum(img, 1500.0).astype(np.float32)  # saturated, flat-topped
    _, mask, sources = visibility.remove_stars(img, return_sources=True)
    for x, y in ((150, 150), (165, 140), (140, 162)):
        d = np.hypot(sources[:, 0] - x, sources[:, 1] - y)
        assert d.min() < 3.0  # counted at its position (blends shift the centroid)
        assert mask[y, x]  # and removed from the starless image
    t = _galaxy_table(150.0, 155.0, 30.0, 30.0, 0.0, typ="OCl")
    assert visibility.measure_visibility(img, t)["verdict"][0] == "visible"


def test_injection_of_objects_larger_than_the_frame():
    """Larger than the cut: empty trials stay not visible, bright structured nebulae are visible."""
    rng = np.random.default_rng(12)
    bgs = [_star_field(rng, shape=(160, 160), n_stars=30)]
    trials = inject_and_measure(bgs, n_trials=14, size=128, large_fraction=1.0,
                                absent_fraction=0.3, snr_range=(10.0, 60.0), rng=4)  # fmt: skip
    assert bool(np.all(trials["large"]))
    assert np.all(trials["r_e"] >= 0.35 * 128)  # ellipse semi-major axis 2 r_e > the cut
    absent = trials["injected_snr"] == 0
    assert absent.any() and all(v == "not visible" for v in trials["verdict"][absent])
    nebula = (trials["n"] == 0) & ~absent
    assert nebula.sum() >= 2 and all(v == "visible" for v in trials["verdict"][nebula])
    # a glow larger than the frame is partly taken for sky: never more than injected (+ noise)
    present = ~absent
    assert np.all(trials["measured_snr"][present] < trials["injected_snr"][present] + 3.0)
    with pytest.raises(InputError, match="large_fraction must be in"):
        inject_and_measure(bgs, size=128, large_fraction=1.5)
    with pytest.raises(InputError, match="names no background"):
        inject_and_measure(bgs, size=128, large_fraction=0.5, large_backgrounds=[3])


def test_nebula_texture_is_positive_structured_and_normalised():
    from skysift.dso.validation import nebula_texture

    tex = nebula_texture((96, 128), 5)
    assert tex.shape == (96, 128) and tex.min() > 0 and tex.sum() == pytest.approx(1.0)
    # log-normal with unit log-variance: bright wisps about e^2 above the dark lanes
    assert np.std(np.log(tex)) == pytest.approx(1.0, rel=0.05)
    assert np.array_equal(tex, nebula_texture((96, 128), 5))  # seeded


def test_visibility_errors():
    img = np.zeros((64, 64), np.float32)
    with pytest.raises(InputError, match="2-D"):
        visibility.measure_visibility(np.zeros((8, 8)), _galaxy_table(1, 1, 2, 2, 0))
    with pytest.raises(InputError, match="lacks column"):
        visibility.measure_visibility(img, Table({"x": [1.0]}))
    with pytest.raises(InputError, match="starless image shape"):
        visibility.measure_visibility(img, _galaxy_table(30, 30, 5, 5, 0),
                                      starless=np.zeros((32, 32)))  # fmt: skip
    with pytest.raises(InputError, match="protect must have shape"):
        visibility.remove_stars(_star_field(np.random.default_rng(0)), protect=np.ones((2, 2)))
    with pytest.raises(InputError, match="at least one 2-D background"):
        inject_and_measure([np.zeros((50, 50))], size=128)
    with pytest.raises(InputError, match="increasing and positive"):
        inject_and_measure([np.zeros((200, 200))], size=128, snr_range=(5, 1))


# --------------------------------------------------------------------------- annotation
def test_place_labels_do_not_collide():
    rng = np.random.default_rng(2)
    x, y = rng.uniform(100, 400, 12), rng.uniform(100, 400, 12)
    corners = place_labels(x, y, np.full(12, 10.0), np.full(12, 60.0), 14.0, (500, 500))
    boxes = [(cx, cy, cx + 60, cy + 14) for cx, cy in corners if np.isfinite(cx)]
    assert len(boxes) >= 8
    for i, a in enumerate(boxes):
        assert 0 <= a[0] and a[2] <= 499 and 0 <= a[1] and a[3] <= 499
        for b in boxes[i + 1 :]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_render_annotated_writes_png(tmp_path):
    img = _star_field(np.random.default_rng(1), shape=(120, 200))
    t = _galaxy_table(100, 60, 20, 10, 15)
    t["label"] = ["M 999"]
    t["verdict"] = ["visible"]
    t["snr"] = [12.0]
    out = render_annotated(np.dstack([img] * 3), t, tmp_path / "a.png", title="test")
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (200, 120)
    with pytest.raises(InputError, match="shape"):
        render_annotated(np.zeros((4, 4, 4)), t, tmp_path / "b.png")
    with pytest.raises(InputError, match="lacks column"):
        render_annotated(img, Table({"x": [1.0]}), tmp_path / "c.png")


# --------------------------------------------------------------------------- solving
def test_solve_errors(tmp_path):
    flat = np.random.default_rng(0).normal(10, 1, (64, 64)).astype(np.float32)
    with pytest.raises(InputError, match="fov_deg"):
        solve_image(flat, fov_deg=-1)
    with pytest.raises(InputError, match="both ra_deg and dec_deg"):
        solve_image(flat, ra_deg=10.0)
    with pytest.raises(InputError, match="dec_deg must be"):
        solve_image(flat, ra_deg=10.0, dec_deg=95.0)
    with pytest.raises(InputError, match="radius_deg"):
        solve_image(flat, radius_deg=0)
    with pytest.raises(InputError, match="pixel_aspect"):
        solve_image(flat, pixel_aspect=0.0)
    with pytest.raises(InputError, match="shape"):
        as_luminance(np.zeros((4, 4, 4)))
    with pytest.raises(NotEnoughStarsError, match="at least 8"):
        solve_image(flat)
    with pytest.raises(InputError, match="at least one input"):
        run_dso([], tmp_path)
    with pytest.raises(InputError, match="not found"):
        run_dso([tmp_path / "missing.jpg"], tmp_path)


@pytest.mark.skipif(
    shutil.which("solve-field") is None,
    reason="astrometry.net solve-field not installed (README: System packages)",
)
@pytest.mark.skipif(
    not (REAL / "NGC_6888_v2.jpg").exists(),
    reason=f"shared real data missing: {REAL} (README: Data and credits)",
)
@pytest.mark.slow
def test_run_dso_crescent_nebula(tmp_path):
    (res,) = run_dso([REAL / "NGC_6888_v2.jpg"], tmp_path, fov_deg=0.72)
    sol = res.solution
    assert sol.n_matched >= 10 and sol.rms_px < 2.0
    assert sol.pixel_scale_arcsec == pytest.approx(2.4, rel=0.05)
    row = res.objects[list(res.objects["name"]).index("NGC 6888")]
    assert row["verdict"] == "visible" and row["label"] == "C27"
    # the Crescent's ring is drawn in the middle of the frame, at about (540-1130, 800-1060)
    assert 450 < row["x"] < 700 and 800 < row["y"] < 1100
    for key in ("objects", "annotated", "calibration", "wcs", "summary"):
        assert res.files[key].exists()
    back = Table.read(res.files["objects"])
    assert "verdict" in back.colnames and "CC-BY-SA-4.0" in back.meta["catalog_credit"]
    hdr = fits.getheader(res.files["wcs"])
    with warnings.catch_warnings():  # a header-only file has NAXIS = 0
        warnings.simplefilter("ignore", FITSFixedWarning)
        w2 = WCS(hdr)
    ra, dec = sol.wcs.all_pix2world([100.0], [200.0], 0)
    x, y = w2.all_world2pix(ra, dec, 0)
    assert abs(x[0] - 100) < 0.05 and abs(y[0] - 200) < 0.05
    with pytest.raises(InputError, match="differs from the solution"):
        write_wcs_files(sol, np.zeros((64, 64), np.float32), tmp_path, "x")


_TYCHO2_08 = Path("/usr/share/astrometry/index-tycho2-08.littleendian.fits")


@pytest.mark.skipif(
    shutil.which("solve-field") is None or not _TYCHO2_08.exists(),
    reason="astrometry.net solve-field or its Tycho-2 index (astrometry-data-tycho2-08, the "
    "Seestar 44-60' quads) not installed (README: System packages)",
)
@pytest.mark.skipif(
    not (REAL / "NGC_2244_v2.jpg").exists(),
    reason=f"shared real data missing: {REAL} (README: Data and credits)",
)
def test_rosette_ngc2244_judged_visible():
    """The Seestar Rosette frame: NGC 2244 and the Rosette Nebula visible, for stated reasons."""
    import inspect

    from skysift.dso.pipeline import analyse_image

    path = REAL / "NGC_2244_v2.jpg"
    sol = solve_image(path, fov_deg=0.72, ra_deg=98.0, dec_deg=5.0, radius_deg=1.0)
    assert sol.n_matched >= 20 and sol.rms_px < 1.5
    kw = {"detector": None} if "detector" in inspect.signature(analyse_image).parameters else {}
    objects, *_ = analyse_image(path, solution=sol, **kw)
    by_name = {str(r["name"]): r for r in objects}
    # NGC 2244 is NGC 2239 in OpenNGC (C50): a cluster with its nebula, in the frame centre
    c50 = by_name["NGC 2239"]
    assert c50["label"] == "C50" and 550 < c50["x"] < 750 and 900 < c50["y"] < 1100
    assert c50["verdict"] == "visible" and c50["snr"] >= 5.0
    assert c50["method"] in ("star counts + nebula", "nebula over sky floor", "star counts")
    # the Rosette Nebula records (80' ellipses, larger than the 43' x 77' frame): over the floor
    for name in ("NGC 2237", "NGC 2238"):
        row = by_name[name]
        assert row["method"] == "sky floor" and bool(row["global_background"])
        assert row["verdict"] == "visible"
    # a small nebula record in a dark patch of the same frame is not visible
    assert by_name["NGC 2246"]["verdict"] == "not visible"


@pytest.mark.skipif(
    shutil.which("solve-field") is None,
    reason="astrometry.net solve-field not installed (README: System packages)",
)
@pytest.mark.skipif(
    not (REAL / "m81_golden.png").exists(),
    reason=f"shared real data missing: {REAL} (README: Data and credits)",
)
def test_solve_squashed_thumbnail_m81(tmp_path):
    """m81_golden is a 1080 x 1920 Seestar frame resized to 400 x 400 (pixels 1.78x taller)."""
    from scipy import ndimage

    path = REAL / "m81_golden.png"
    sol = solve_image(path, pixel_aspect=1920 / 1080)
    assert sol.n_matched >= 10 and sol.rms_px < 1.0
    w_deg, h_deg = sol.fov_deg
    assert w_deg == pytest.approx(0.72, rel=0.05) and h_deg == pytest.approx(1.28, rel=0.05)
    t = catalog.objects_in_field(sol.wcs, sol.shape, include_stars=False)
    m81 = t[list(t["label"]).index("M81")]
    # independent truth: the galaxy's bright core, the peak of the smoothed image near the centre
    lum, _, _ = as_luminance(path)
    sm = ndimage.gaussian_filter(lum, 3.0)[150:250, 150:250]
    py, px = np.unravel_index(np.argmax(sm), sm.shape)
    assert abs(m81["x"] - (px + 150)) < 3 and abs(m81["y"] - (py + 150)) < 3
    # the FITS copy: luminance + R, G, B planes, each with a WCS that maps M81 back onto it
    fits_path, wcs_path = write_wcs_files(sol, path, tmp_path, "m81")
    assert wcs_path.name == "m81.wcs"
    with fits.open(fits_path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "RED", "GREEN", "BLUE"]
        for hdu in hdul:
            x, y = WCS(hdu.header).all_world2pix([m81["ra"]], [m81["dec"]], 0)
            assert abs(x[0] - m81["x"]) < 0.01 and abs(y[0] - m81["y"]) < 0.01


def test_as_luminance_colour_and_blanks():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 30, 60, 90
    lum, color, frame = as_luminance(rgb)
    assert lum.shape == (20, 30) and np.allclose(lum, 60.0) and color is rgb and frame is None
    img = np.full((20, 20), 5.0)
    img[3, 4] = np.nan
    lum, _, _ = as_luminance(img)
    assert np.isfinite(lum).all() and lum[3, 4] == 5.0


# --------------------------------------------------------------------------- detector
class _StubModel:
    """Stands in for the U-Net: per-class probability = a fixed map, or the image itself."""

    def __init__(self, prob=None):
        self.prob = prob

    def predict(self, x):
        import torch

        x = torch.as_tensor(np.asarray(x))
        if self.prob is not None:
            return torch.as_tensor(self.prob[None])
        p = torch.sigmoid(x[:, :1] - 3.0)  # bright (normalised > 3) pixels
        return torch.cat([p, torch.zeros_like(p), torch.zeros_like(p)], dim=1)


def test_make_composite_truth_and_batches():
    from skysift.dso.detector import CLASSES, batch_source, make_composite

    bg = _star_field(np.random.default_rng(4), shape=(100, 100), n_stars=20)
    gen = np.random.default_rng(8)
    n_obj = 0
    for _ in range(6):
        img, masks, truth = make_composite(bg, gen, size=64)
        assert img.shape == (64, 64) and masks.shape == (3, 64, 64)
        for r in truth:
            k = CLASSES.index(r["cls"])
            assert masks[k, round(r["y"]), round(r["x"])]  # the centre is inside its mask
            # the object adds light inside its ellipse: mean excess > 0
            yy, xx = np.mgrid[0:64, 0:64]
            inside = ((xx - r["x"]) / r["a"]) ** 2 + ((yy - r["y"]) / r["b"]) ** 2 <= 0.2
            n_obj += 1
            assert inside.any()
    assert n_obj >= 2
    x, y = batch_source([bg], size=64)(np.random.default_rng(0), 3)
    assert x.shape == (3, 1, 64, 64) and y.shape == (3, 3, 64, 64)
    with pytest.raises(InputError, match="at least 64"):
        make_composite(np.zeros((30, 30)), 0, size=64)
    with pytest.raises(InputError, match="at least one background"):
        batch_source([np.zeros((30, 30))], size=64)


def test_detect_evaluate_and_saliency_with_stub_model():
    from skysift.dso.detector import detect, evaluate_dso, occlusion_saliency

    prob = np.zeros((3, 64, 64), np.float32)
    prob[0, 10:20, 30:40] = 0.9  # a galaxy blob centred at (34.5, 14.5)
    prob[2, 40:50, 5:15] = 0.8  # a cluster blob centred at (9.5, 44.5)
    det = detect(_StubModel(prob), np.zeros((64, 64), np.float32))
    assert sorted(det["cls"]) == ["cluster", "galaxy"]
    g = det[det["cls"] == "galaxy"][0]
    assert g["x"] == pytest.approx(34.5) and g["y"] == pytest.approx(14.5)
    assert g["score"] == pytest.approx(0.9) and g["area"] == 100
    bg = _star_field(np.random.default_rng(4), shape=(100, 100), n_stars=0)
    ev = evaluate_dso(_StubModel(np.zeros((3, 64, 64), np.float32)), [bg], n_images=4, rng=1)
    assert list(ev["cls"]) == ["galaxy", "nebula", "cluster"]
    assert ev["n_true"].sum() > 0 and ev["tp"].sum() == 0 and ev["n_detected"].sum() == 0
    img = np.random.default_rng(0).normal(0, 1, (32, 32)).astype(np.float32)
    img[16:24, 8:16] += 50.0
    sal = occlusion_saliency(_StubModel(), img, patch=8, stride=8)
    py, px = np.unravel_index(np.argmax(sal), sal.shape)
    assert 16 <= py < 24 and 8 <= px < 16
    with pytest.raises(InputError, match="2-D"):
        detect(_StubModel(prob), np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="patch, stride"):
        occlusion_saliency(_StubModel(), img, patch=0)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("solve-field") is None,
    reason="astrometry.net solve-field not installed (README: System packages)",
)
@pytest.mark.skipif(
    not (REAL / "m92_golden.png").exists(),
    reason=f"shared real data missing: {REAL} (README: Data and credits)",
)
def test_cli_dso_names_m92_visible(tmp_path, capsys):
    """``skysift dso`` on the squashed M92 thumbnail: solved blind, M92 named and visible."""
    from skysift.cli import main

    out = tmp_path / "out"
    rc = main(
        ["dso", str(REAL / "m92_golden.png"), "--pixel-aspect", str(1920 / 1080), "--out", str(out)]
    )
    assert rc == 0, capsys.readouterr().err
    assert "M92" in capsys.readouterr().out
    objects = Table.read(out / "objects.ecsv")
    row = objects[list(objects["label"]).index("M92")]
    assert row["verdict"] == "visible"
    assert (out / "annotated.png").is_file() and (out / "calibration.wcs.fits").is_file()
