"""Tests of skysift.calibration.fisheye: the model, its JSON, and the automatic solve."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from PIL import Image
from scipy import ndimage

from skysift.calibration.allsky import _illuminated_region, _polish_centre, solve_fisheye
from skysift.calibration.catalog import load_hipparcos, star_altaz
from skysift.calibration.fisheye import FisheyeModel, FisheyeSolution, fisheye_from_similarity
from skysift.calibration.photometric import fit_zero_point
from skysift.errors import InputError, NotEnoughStarsError
from skysift.io.frame import Site

DATA = Path(__file__).parent / "data"
LA_PALMA = Site(28.7619, -17.8908, 2200.0)
UMD = Site(39.0021, -76.956, 50.0)
SHAPE = (1040, 1392)


def _unit(alt, az):
    alt, az = np.radians(alt), np.radians(az)
    return np.stack([np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt)], -1)


def _angle_deg(alt1, az1, alt2, az2):
    chord = np.linalg.norm(_unit(alt1, az1) - _unit(alt2, az2), axis=-1)
    return np.degrees(2 * np.arcsin(np.clip(chord / 2, 0, 1)))


MODELS = [
    FisheyeModel(700.3, 515.8, 123.4, (330.0,), parity=1),
    FisheyeModel(700.3, 515.8, 303.4, (330.0, -6.0, 1.5), parity=-1, tilt=(0.4, -0.3)),
    FisheyeModel(12.0, -40.0, -10.0, (500.0, 20.0), parity=-1, tilt=(-2.0, 3.0)),
]


@pytest.mark.parametrize("model", MODELS)
def test_roundtrip_altaz_pixel_altaz(model):
    alt, az = np.meshgrid(np.linspace(0.5, 89.9, 60), np.linspace(0, 359, 73))
    x, y = model.altaz_to_pixel(alt, az)
    alt2, az2 = model.pixel_to_altaz(x, y)
    assert np.max(_angle_deg(alt, az, alt2, az2)) < 1e-6
    # away from the zenith the azimuth itself round-trips
    far = alt < 89
    daz = (az2 - az + 180) % 360 - 180
    assert np.max(np.abs(daz[far])) < 1e-6
    # and pixel -> altaz -> pixel
    xs, ys = np.meshgrid(np.linspace(300, 1100, 9), np.linspace(100, 900, 9))
    a, b = model.pixel_to_altaz(xs, ys)
    x3, y3 = model.altaz_to_pixel(a, b)
    assert np.max(np.hypot(x3 - xs, y3 - ys)) < 1e-6


def test_model_geometry_conventions():
    m = FisheyeModel(600.0, 500.0, 90.0, (300.0,), parity=1)
    assert m.altaz_to_pixel(90.0, 0.0) == pytest.approx((600.0, 500.0))
    # north at position angle 90 deg: +y; east follows (parity +1) at 180 deg: -x
    x, y = m.altaz_to_pixel(0.0, 0.0)
    assert (x, y) == pytest.approx((600.0, 500.0 + 300.0 * np.pi / 2))
    x, y = m.altaz_to_pixel(0.0, 90.0)
    assert (x, y) == pytest.approx((600.0 - 300.0 * np.pi / 2, 500.0))
    mirrored = replace(m, parity=-1)
    x, y = mirrored.altaz_to_pixel(0.0, 90.0)
    assert (x, y) == pytest.approx((600.0 + 300.0 * np.pi / 2, 500.0))
    assert m.horizon_radius == pytest.approx(300.0 * np.pi / 2)
    # a tilt towards north moves the zenith away from north in the image
    tilted = replace(m, tilt=(0.0, 1.0))
    zx, zy = tilted.zenith_pixel
    assert zx == pytest.approx(600.0, abs=1e-6)
    assert zy == pytest.approx(500.0 - 300.0 * np.radians(1.0), abs=1e-6)


def test_json_roundtrip(tmp_path):
    m = FisheyeModel(
        700.3, 515.8, 303.4, (330.0, -6.0, 1.5), parity=-1, tilt=(0.4, -0.3), shape=SHAPE
    )
    d = m.to_dict()
    assert d["model"] == "fisheye" and d["version"] == 1
    assert set(d) == {
        "model",
        "version",
        "x0",
        "y0",
        "rotation_deg",
        "parity",
        "radial_px",
        "tilt_deg",
        "shape",
        "projection",
    }
    assert FisheyeModel.from_dict(json.loads(json.dumps(d))) == m
    path = m.save(tmp_path / "camera.json")
    assert FisheyeModel.load(path) == m
    # a file written before the projection family reads as equidistant
    del d["projection"]
    assert FisheyeModel.from_dict(d).projection == "equidistant"


@pytest.mark.parametrize(
    ("projection", "g"),
    [
        ("equidistant", lambda z: z),
        ("equisolid", lambda z: 2 * np.sin(z / 2)),
        ("stereographic", lambda z: 2 * np.tan(z / 2)),
        ("orthographic", np.sin),
    ],
)
def test_projection_family_radius_and_inverse(projection, g):
    """r = k1 g(z) + k3 z^3 for each standard projection, and its inverse to 1e-9 rad."""
    m = FisheyeModel(700.0, 520.0, 30.0, (400.0, -8.0), projection=projection, shape=SHAPE)
    z = np.radians(np.linspace(0.0, 75.0, 50))
    np.testing.assert_allclose(m.radius(z), 400.0 * g(z) - 8.0 * z**3, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(m.zenith_angle(m.radius(z)), z, atol=1e-9)
    alt, az = np.array([10.0, 45.0, 80.0]), np.array([20.0, 200.0, 310.0])
    x, y = m.altaz_to_pixel(alt, az)
    a2, z2 = m.pixel_to_altaz(x, y)
    np.testing.assert_allclose(a2, alt, atol=1e-7)
    np.testing.assert_allclose(z2, az, atol=1e-7)


def test_no_direction_beyond_the_turnover():
    """Past the radius where r(z) turns over, pixel_to_altaz gives NaN, not a wrong altitude."""
    m = FisheyeModel(700.0, 520.0, 0.0, (400.0,), projection="orthographic", shape=SHAPE)
    assert m.max_zenith_angle == pytest.approx(np.pi / 2, abs=2e-3)
    alt, _ = m.pixel_to_altaz(np.array([700.0 + 399.0, 700.0 + 401.0]), np.array([520.0, 520.0]))
    assert np.isfinite(alt[0]) and alt[0] < 5.0
    assert np.isnan(alt[1])


def test_unknown_projection_is_refused():
    with pytest.raises(InputError, match="projection must be one of"):
        FisheyeModel(0, 0, 0, (300.0,), projection="fisheye")


def test_model_errors(tmp_path):
    with pytest.raises(InputError, match="parity must be"):
        FisheyeModel(0, 0, 0, (300.0,), parity=0)
    with pytest.raises(InputError, match="positive k1"):
        FisheyeModel(0, 0, 0, (-300.0,))
    with pytest.raises(InputError, match="finite"):
        FisheyeModel(np.nan, 0, 0, (300.0,))
    with pytest.raises(InputError, match="not a fisheye model"):
        FisheyeModel.from_dict({"model": "wcs"})
    with pytest.raises(InputError, match="unsupported fisheye model version"):
        FisheyeModel.from_dict({"model": "fisheye", "version": 7})
    with pytest.raises(InputError, match="missing or has a bad value"):
        FisheyeModel.from_dict({"model": "fisheye", "version": 1, "x0": 1})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        FisheyeModel.load(bad)


def test_similarity_closed_form_exact_for_equidistant():
    m = FisheyeModel(690.0, 530.0, 250.0, (335.0,), parity=-1)
    rng = np.random.default_rng(0)
    alt, az = rng.uniform(10, 85, 8), rng.uniform(0, 360, 8)
    x, y = m.altaz_to_pixel(alt, az)
    fit, rms = fisheye_from_similarity(x, y, alt, az)
    assert rms < 1e-8
    assert fit.parity == -1
    assert (fit.x0, fit.y0, fit.rotation, fit.radial[0]) == pytest.approx(
        (690.0, 530.0, 250.0, 335.0)
    )


# -- synthetic automatic solve ------------------------------------------------

TRUTH = FisheyeModel(
    701.3, 520.8, 123.4, (338.0, -5.0, -1.5), parity=-1, tilt=(0.5, -0.3), shape=SHAPE
)
T_SYN = Time("2018-08-17T00:52:21")


def _synthetic_stars(rng, model=TRUTH, noise=0.05, n_fake=150):
    cat = star_altaz(load_hipparcos(5.8, epoch=T_SYN), LA_PALMA, T_SYN)
    cat = cat[cat["alt"] > 5]
    x, y = model.altaz_to_pixel(np.asarray(cat["alt"]), np.asarray(cat["az"]))
    x = x + rng.normal(0, noise, x.size)
    y = y + rng.normal(0, noise, y.size)
    flux = 10 ** (-0.4 * (np.asarray(cat["v_mag"]) - 15)) * rng.lognormal(0, 0.3, x.size)
    # spurious detections (hot pixels, structures) anywhere in the circle
    r = model.horizon_radius * np.sqrt(rng.uniform(0, 1, n_fake))
    t = rng.uniform(0, 2 * np.pi, n_fake)
    fx, fy = model.x0 + r * np.cos(t), model.y0 + r * np.sin(t)
    ffl = 10 ** (-0.4 * (rng.uniform(1, 7, n_fake) - 15))
    stars = Table({"x": np.r_[x, fx], "y": np.r_[y, fy], "flux": np.r_[flux, ffl]})
    inside = (
        (stars["x"] > 0)
        & (stars["x"] < SHAPE[1] - 1)
        & (stars["y"] > 0)
        & (stars["y"] < SHAPE[0] - 1)
    )
    stars = stars[inside]
    n_true = int(inside[: x.size].sum())
    perm = rng.permutation(len(stars))
    return stars[perm], n_true, np.argsort(perm)[:n_true]


def test_solve_recovers_a_known_model():
    rng = np.random.default_rng(42)
    stars, n_true, true_rows = _synthetic_stars(rng)
    sol = solve_fisheye(stars, LA_PALMA, T_SYN, SHAPE, max_mag=5.8)
    assert isinstance(sol, FisheyeSolution)
    m = sol.model
    assert m.parity == TRUTH.parity
    assert (m.rotation - TRUTH.rotation + 180) % 360 - 180 == pytest.approx(0, abs=0.05)
    assert m.radial[0] == pytest.approx(TRUTH.radial[0], rel=0.005)
    assert m.zenith_pixel == pytest.approx(TRUTH.zenith_pixel, abs=0.1)
    # positions all over the sky agree to sub-0.1 px
    alt, az = np.meshgrid(np.linspace(5, 90, 30), np.linspace(0, 360, 37))
    x1, y1 = m.altaz_to_pixel(alt, az)
    x0, y0 = TRUTH.altaz_to_pixel(alt, az)
    assert np.max(np.hypot(x1 - x0, y1 - y0)) < 0.1
    assert sol.rms_px < 0.1
    assert sol.n_matched >= 0.97 * n_true
    # the matches point back at the right rows of the input, with the right stars
    assert set(sol.matches["star_index"]) <= set(true_rows)
    assert sol.matches.colnames[:13] == [
        "star_index",
        "x",
        "y",
        "catalog_id",
        "hip",
        "ra",
        "dec",
        "alt",
        "az",
        "catalog_mag",
        "b_v",
        "airmass",
        "residual_px",
    ]
    row = sol.matches[0]
    assert row["catalog_id"] == f"HIP {row['hip']}"
    assert stars["x"][row["star_index"]] == row["x"]


def test_solve_from_an_initial_model():
    rng = np.random.default_rng(7)
    stars, n_true, _ = _synthetic_stars(rng, n_fake=0)
    start = replace(
        TRUTH, x0=TRUTH.x0 + 6, rotation=TRUTH.rotation - 1.0, radial=(330.0,), tilt=(0, 0)
    )
    sol = solve_fisheye(stars, LA_PALMA, T_SYN, SHAPE, max_mag=5.8, initial=start)
    assert sol.n_matched >= 0.97 * n_true
    assert sol.rms_px < 0.1


def test_polish_moves_a_hypothesis_into_the_refinement_basin():
    # A tilted camera's vote lands 15-30 px and a few per cent off; the
    # refinement converges from about 10 px. The polish must bring the
    # zenith within 6 px and the stars' median offset below 8 px.
    rng = np.random.default_rng(11)
    stars, _, _ = _synthetic_stars(rng, n_fake=50)
    xy = np.column_stack([np.asarray(stars["x"], float), np.asarray(stars["y"], float)])
    cat = star_altaz(load_hipparcos(5.0, epoch=T_SYN), LA_PALMA, T_SYN)
    cat = cat[cat["alt"] > 8]
    untilted = replace(TRUTH, radial=(TRUTH.radial[0],), tilt=(0.0, 0.0))
    zx, zy = TRUTH.zenith_pixel
    start = replace(
        untilted, x0=zx + 18.0, y0=zy - 14.0, radial=(TRUTH.radial[0] * 1.03,), rotation=125.0
    )
    polished = _polish_centre(start, xy, np.asarray(cat["alt"]), np.asarray(cat["az"]), 15.6)
    assert np.hypot(polished.x0 - zx, polished.y0 - zy) < 6.0
    # stars above 20 deg land within the refinement's first match radius (30 px)
    alt, az = np.meshgrid(np.linspace(20, 85, 14), np.linspace(0, 330, 12))
    d0 = np.hypot(*(np.subtract(start.altaz_to_pixel(alt, az), TRUTH.altaz_to_pixel(alt, az))))
    d1 = np.hypot(*(np.subtract(polished.altaz_to_pixel(alt, az), TRUTH.altaz_to_pixel(alt, az))))
    assert np.median(d1) < 8.0 < np.median(d0)
    assert np.hypot(start.x0 - zx, start.y0 - zy) > 20.0  # it did move


def test_random_points_raise_not_enough_stars():
    rng = np.random.default_rng(3)
    n = 600
    r = 520 * np.sqrt(rng.uniform(0, 1, n))
    t = rng.uniform(0, 2 * np.pi, n)
    stars = Table(
        {"x": 700 + r * np.cos(t), "y": 520 + r * np.sin(t), "flux": rng.lognormal(5, 1, n)}
    )
    stars = stars[(stars["y"] > 0) & (stars["y"] < 1039)]
    with pytest.raises(
        NotEnoughStarsError, match=r"not enough stars to calibrate: \d+ matched, need \d+"
    ):
        solve_fisheye(stars, LA_PALMA, T_SYN, SHAPE)


def test_solve_input_errors():
    stars = Table({"x": [1.0] * 30, "y": [1.0] * 30})
    with pytest.raises(InputError, match="lacks column"):
        solve_fisheye(stars, LA_PALMA, T_SYN, SHAPE)
    stars["flux"] = 1.0
    with pytest.raises(InputError, match="shape must be"):
        solve_fisheye(stars, LA_PALMA, T_SYN, (5,))
    with pytest.raises(InputError, match="skysift Site"):
        solve_fisheye(stars, (28.0, -17.0), T_SYN, SHAPE)
    with pytest.raises(NotEnoughStarsError, match="usable detections"):
        solve_fisheye(stars[:3], LA_PALMA, T_SYN, SHAPE)


# -- real frames ----------------------------------------------------------------


def _detect(image, threshold=5.0):
    """Stand-in star detection with sep (background, extraction in the sky region)."""
    img = np.ascontiguousarray(image, dtype=np.float64)
    region = _illuminated_region(img)
    mask = ~region[0] if region is not None else np.zeros(img.shape, bool)
    bkg = sep.Background(img, mask=mask, bw=16, bh=16)
    sub = img - bkg.back()
    edge = ~ndimage.binary_erosion(~mask, iterations=10)
    obj = sep.extract(sub, threshold, err=bkg.rms(), mask=edge, minarea=2)
    stars = Table({"x": obj["x"], "y": obj["y"], "flux": obj["flux"], "peak": obj["peak"]})
    return stars, sub, bkg


def _magic(name):
    path = DATA / "magic_allsky" / name
    hdr = fits.getheader(path)
    return fits.getdata(path).astype(float), Time(f"{hdr['DATE-OBS']}T{hdr['TIME-OBS']}")


@pytest.fixture(scope="module")
def magic_solutions():
    out = {}
    for name in ("20180817_0055.fits", "20180817_0341.fits"):
        img, t = _magic(name)
        stars, sub, bkg = _detect(img)
        out[name] = (solve_fisheye(stars, LA_PALMA, t, img.shape, image=img), img, sub, bkg)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["20180817_0055.fits", "20180817_0341.fits"])
def test_magic_astrometry(magic_solutions, name):
    sol = magic_solutions[name][0]
    assert sol.n_matched >= 300
    assert sol.rms_px <= 1.0
    assert sol.n_matched > 5 * sol.n_chance
    # Known bright stars in view at both times are identified.
    assert {"HIP 91262", "HIP 97649", "HIP 102098"} <= set(
        sol.matches["catalog_id"]
    )  # Vega, Altair, Deneb


@pytest.mark.slow
def test_magic_two_frames_agree(magic_solutions):
    """The camera did not move between 00:52 and 03:38: same zenith, rotation, scale."""
    a = magic_solutions["20180817_0055.fits"][0].model
    b = magic_solutions["20180817_0341.fits"][0].model
    assert a.parity == b.parity
    assert np.hypot(*np.subtract(a.zenith_pixel, b.zenith_pixel)) < 1.0
    assert abs((a.rotation - b.rotation + 180) % 360 - 180) < 0.2
    alt, az = np.meshgrid(np.linspace(10, 90, 20), np.linspace(0, 360, 25))
    xa, ya = a.altaz_to_pixel(alt, az)
    xb, yb = b.altaz_to_pixel(alt, az)
    assert np.median(np.hypot(xa - xb, ya - yb)) < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["20180817_0055.fits", "20180817_0341.fits"])
def test_magic_photometric_zero_point(magic_solutions, name):
    sol, img, sub, bkg = magic_solutions[name]
    m = sol.matches
    x, y = np.asarray(m["x"]), np.asarray(m["y"])
    flux, _, _ = sep.sum_circle(sub, x, y, 3.0, err=bkg.rms(), bkgann=(6.0, 9.0))
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    unsaturated = (img[iy, ix] < 60000) & (flux > 0)
    inst = -2.5 * np.log10(flux[unsaturated])
    cat = np.asarray(m["catalog_mag"])[unsaturated]
    airmass = np.asarray(m["airmass"])[unsaturated]
    r = np.hypot(x - sol.model.x0, y - sol.model.y0)[unsaturated] / sol.model.horizon_radius
    plain = fit_zero_point(inst, cat)
    full = fit_zero_point(inst, cat, airmass=airmass, radius=r)
    assert full.n_used >= 300
    assert full.rms_mag <= 0.25
    assert plain.rms_mag > full.rms_mag + 0.05
    assert 0.05 < full.extinction_k < 0.4  # mag/airmass, plausible for La Palma


@pytest.mark.slow
def test_umd_meteor_frame():
    path = DATA / "umd_allsky" / "Meteor-20191028.png"
    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    stars, _, _ = _detect(img, threshold=5.0)
    # The caption gives the exposure start (07:01:26, 44 s): use mid-exposure.
    t = Time("2019-10-28T07:01:48")
    sol = solve_fisheye(stars, UMD, t, img.shape, image=img)
    m = sol.matches
    assert sol.n_matched >= 40
    assert sol.rms_px <= 1.0
    # Nothing in the burned-in caption (top-left block of text).
    assert not np.any((m["x"] < 450) & (m["y"] < 110))
    # The meteor runs from (454, 351) to (525, 410); its head is not a star, and
    # anything matched along its trail is a catalogue star within 1 px.
    p0, p1 = np.array([454.0, 351.0]), np.array([525.0, 410.0])
    u = (p1 - p0) / np.hypot(*(p1 - p0))
    d = np.column_stack([m["x"], m["y"]]) - p0
    along, across = d @ u, np.abs(d[:, 0] * u[1] - d[:, 1] * u[0])
    on_trail = (along > -6) & (along < np.hypot(*(p1 - p0)) + 6) & (across < 4)
    assert np.all(np.asarray(m["residual_px"])[on_trail] < 1.0)
    assert not np.any(np.hypot(m["x"] - 454.0, m["y"] - 351.0) < 6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "site", "time"),
    [
        ("cta_allsky/cloudy.fits.gz", LA_PALMA, "2015-12-20T04:07:10"),
        ("iceact_allsky/cloudy.fits", Site(-89.99, 0.0, 2835.0), "2017-06-11T04:09:03"),
    ],
)
def test_cloudy_frames_raise(path, site, time):
    img = fits.getdata(DATA / path).astype(float)
    stars, _, _ = _detect(img)
    with pytest.raises(NotEnoughStarsError, match="not enough stars to calibrate"):
        solve_fisheye(stars, site, Time(time), img.shape, image=img)


def test_similarity_fit_under_each_projection_and_a_bad_one():
    """The closed-form start recovers an equisolid camera exactly; an unknown projection is refused."""
    from skysift.calibration.fisheye import fisheye_from_similarity

    truth = FisheyeModel(
        700.0, 520.0, 40.0, (420.0,), parity=-1, shape=SHAPE, projection="equisolid"
    )
    alt = np.array([80.0, 60.0, 45.0, 30.0, 20.0, 70.0])
    az = np.array([10.0, 100.0, 200.0, 300.0, 45.0, 250.0])
    x, y = truth.altaz_to_pixel(alt, az)
    m, rms = fisheye_from_similarity(x, y, alt, az, shape=SHAPE, projection="equisolid")
    assert rms < 1e-6 and m.parity == -1 and m.projection == "equisolid"
    assert abs(m.x0 - 700.0) < 1e-6 and abs(m.radial[0] - 420.0) < 1e-6
    with pytest.raises(InputError, match="projection must be one of"):
        fisheye_from_similarity(x, y, alt, az, projection="gnomonic")
