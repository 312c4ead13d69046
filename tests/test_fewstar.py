"""Few-star all-sky calibration: a simulated camera recovered from 6 identified stars."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from astropy.time import Time

from skysift.calibration.catalog import load_hipparcos, star_altaz
from skysift.calibration.fewstar import (
    detect_point_sources,
    lens_circle,
    solve_fewstar,
    stack_frames,
)
from skysift.calibration.fisheye import FisheyeModel
from skysift.errors import InputError, NotEnoughStarsError
from skysift.io.frame import Site

SITE = Site(48.62, 6.08, 250.0)
TIME = Time("2015-03-14T22:47:00", scale="utc")
SHAPE = (240, 320)
TRUTH = FisheyeModel(
    x0=158.3, y0=126.1, rotation=104.0, radial=(108.0,), parity=-1, shape=SHAPE
)  # horizon radius 170 px, like a 320x240 meteor camera


def _six_stars(rng, n_junk=2, sigma=0.4):
    """The 6 brightest catalogue stars (V <= 2.5, alt >= 15 deg) the camera sees, plus junk."""
    cat = star_altaz(load_hipparcos(2.5, epoch=TIME), SITE, TIME)
    cat = cat[np.asarray(cat["alt"]) >= 15]
    cat.sort("v_mag")
    x, y = TRUTH.altaz_to_pixel(np.asarray(cat["alt"]), np.asarray(cat["az"]))
    inside = (x > 8) & (x < SHAPE[1] - 9) & (y > 8) & (y < SHAPE[0] - 9)
    sel = np.flatnonzero(inside)[:6]
    xs = x[sel] + sigma * rng.standard_normal(6)
    ys = y[sel] + sigma * rng.standard_normal(6)
    flux = 10 ** (-0.4 * (np.asarray(cat["v_mag"])[sel] - 10))
    jx, jy = rng.uniform(20, 300, n_junk), rng.uniform(20, 220, n_junk)
    t = Table({"x": np.r_[xs, jx], "y": np.r_[ys, jy], "flux": np.r_[flux, np.full(n_junk, 30.0)]})
    return t, cat[sel]


def test_fewstar_recovers_a_simulated_camera_from_six_stars():
    rng = np.random.default_rng(4)
    stars, truth_cat = _six_stars(rng)
    circle = (TRUTH.x0, TRUTH.y0, 0.95 * TRUTH.radial[0] * np.pi / 2)
    sol = solve_fewstar(stars, SITE, TIME, SHAPE, circle=circle, planets=False)
    assert sol.meta["method"] == "fewstar"
    assert sol.n_matched == 6
    assert set(sol.matches["hip"]) == set(truth_cat["hip"])
    assert sol.model.parity == TRUTH.parity
    # the pixel <-> sky mapping agrees within 1 px over the sky above 15 deg
    alt, az = np.meshgrid(np.arange(15.0, 90.0, 5.0), np.arange(0.0, 360.0, 10.0))
    x0, y0 = TRUTH.altaz_to_pixel(alt.ravel(), az.ravel())
    x1, y1 = sol.model.altaz_to_pixel(alt.ravel(), az.ravel())
    assert np.max(np.hypot(x1 - x0, y1 - y0)) < 1.0
    # the stated uncertainty is honest: RMS near the 0.4 px noise, errors below 1 px / 1 deg
    assert 0.1 < sol.rms_px < 0.8
    assert sol.meta["param_err"]["x0"] < 1.0 and sol.meta["param_err"]["rotation_deg"] < 1.0


def test_fewstar_without_the_lens_circle():
    rng = np.random.default_rng(7)
    stars, _ = _six_stars(rng, n_junk=0)
    sol = solve_fewstar(stars, SITE, TIME, SHAPE, planets=False)
    assert abs(sol.model.x0 - TRUTH.x0) < 2 and abs(sol.model.y0 - TRUTH.y0) < 2


def test_fewstar_refuses_too_few_stars():
    rng = np.random.default_rng(1)
    stars, _ = _six_stars(rng, n_junk=0)
    with pytest.raises(NotEnoughStarsError, match="need 5"):
        solve_fewstar(stars[:3], SITE, TIME, SHAPE)
    junk = Table({"x": rng.uniform(20, 300, 8), "y": rng.uniform(20, 220, 8), "flux": np.ones(8)})
    with pytest.raises(NotEnoughStarsError, match="few-star calibration"):
        solve_fewstar(junk, SITE, TIME, SHAPE, planets=False)
    with pytest.raises(InputError, match="missing 'flux'"):
        solve_fewstar(Table({"x": [1.0], "y": [2.0]}), SITE, TIME, SHAPE)
    with pytest.raises(InputError, match="skysift Site"):
        solve_fewstar(stars, (48.0, 6.0, 0.0), TIME, SHAPE)


def test_stack_detect_and_lens_circle_on_a_synthetic_fisheye_clip():
    rng = np.random.default_rng(2)
    h, w = SHAPE
    yy, xx = np.mgrid[:h, :w]
    lit = np.hypot(xx - 160.0, yy - 118.0) < 150.0
    sky = np.where(lit, 40.0, 3.0).astype(np.float32)
    stars = [(100.0, 80.0), (200.5, 150.2), (60.0, 160.0)]
    for x, y in stars:
        sky += 6.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.0**2))
    cube = sky + 4.0 * rng.standard_normal((40, h, w)).astype(np.float32)
    cube[5:10, 100:110, 200:210] += 200.0  # a transient, left out of the stack
    img = stack_frames(cube, exclude=range(5, 8))
    assert abs(float(np.median(img[100:110, 200:210] - sky[100:110, 200:210]))) < 1.5
    found = detect_point_sources(img)
    assert len(found) >= 3
    for x, y in stars:
        assert np.min(np.hypot(found["x"] - x, found["y"] - y)) < 0.7
    cx, cy, r = lens_circle(img)
    assert abs(cx - 160) < 2 and abs(cy - 118) < 2 and abs(r - 150) < 3
    with pytest.raises(InputError, match="every frame is excluded"):
        stack_frames(cube[:3], exclude=[0, 1, 2])
    with pytest.raises(InputError, match="T, H, W"):
        stack_frames(img)


def test_calibrate_names_both_failures_when_even_few_stars_fail():
    from skysift.calibration.pipeline import calibrate
    from skysift.io.frame import Frame

    rng = np.random.default_rng(0)
    frame = Frame(data=rng.normal(100, 3, SHAPE).astype(np.float32))
    with pytest.raises(NotEnoughStarsError, match="not enough stars to calibrate.*few-star model"):
        calibrate(frame, site=SITE, time=TIME, fewstar=True)
    # a frame not taken as all-sky (no lens circle, auto mode) never gets the few-star model
    with pytest.raises(NotEnoughStarsError) as err:
        calibrate(frame, site=SITE, time=TIME)
    assert "few-star" not in str(err.value)
