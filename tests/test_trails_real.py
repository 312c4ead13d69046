"""Meteor trails in single exposures on real-like scenes: sky mask, joined fragments, profiles, RA/Dec.

The composites come from ``benchmarks/trails_real_like.py`` (``make_composite``):
a sky with stars, a tree line from the bottom edge (dark, ragged, textured,
bare branches), a lit roof from the right edge, the Moon (saturated disc, glow
and glare spikes), caption text, a faint meteor and a fragmenting fireball
(collinear pieces with gaps, one with a saturated flare), with exact truth.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from skysift.bolide.trails import (
    find_meteor_trails,
    find_trails_and_profiles,
    merge_collinear,
    saturation_level,
    trail_profile,
)
from skysift.detection.masks import glare_mask, horizon_mask, scene_mask
from skysift.errors import InputError

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "trails_real_like.py"
SHAPE = (400, 560)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("trails_real_like", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=[2, 3])
def composite(request, bench):
    img, truth = bench.make_composite(request.param, shape=SHAPE)
    trails, profiles = find_trails_and_profiles(img)
    return img, truth, trails, profiles


def _ends_error(row, seg) -> float:
    f = np.array([[row["x1"], row["y1"]], [row["x2"], row["y2"]]])
    t = np.array([seg[:2], seg[2:]])
    return float(
        min(
            max(np.hypot(*(f[0] - t[0])), np.hypot(*(f[1] - t[1]))),
            max(np.hypot(*(f[0] - t[1])), np.hypot(*(f[1] - t[0]))),
        )
    )


def test_no_false_trail_on_trees_roof_moon_or_caption(composite, bench):
    _, truth, trails, _ = composite
    s = bench.score_composite(trails, truth)
    assert s["false_on_obstruction_or_glare"] == 0
    assert s["false_other"] == 0
    # exactly the two meteors
    assert len(trails) == 2


def test_faint_meteor_found_with_its_ends(composite, bench):
    _, truth, trails, _ = composite
    rows = [r for r in trails if bench.on_line(r, truth["meteor"])]
    assert len(rows) == 1
    # both ends within 4 px (measured 1.2 and 1.1 px; over the benchmark's 20
    # larger composites the median is 1.9 px, see the report)
    assert _ends_error(rows[0], truth["meteor"]) < 4.0
    assert not rows[0]["saturated"]


def test_fragmenting_fireball_is_one_trail_with_its_saturated_flare(composite, bench):
    _, truth, trails, _ = composite
    rows = [r for r in trails if bench.on_line(r, truth["fireball"])]
    assert len(rows) == 1
    r = rows[0]
    assert r["n_pieces"] >= 2
    assert r["saturated"]
    # from the first piece's start to the last piece's end (flare and gaps included)
    assert _ends_error(r, truth["fireball"]) < 6.0


def test_profile_flux_matches_the_injected_flux(composite, bench):
    _, truth, trails, profiles = composite
    (r,) = [r for r in trails if bench.on_line(r, truth["meteor"])]
    p = profiles[profiles["id"] == r["id"]]
    # the trail's flux is its profile's sum; within 10 % of the injected (measured -6 %, +2 %)
    assert float(np.sum(p["flux"])) == pytest.approx(r["flux"])
    assert r["flux"] == pytest.approx(truth["meteor_flux"], rel=0.10)
    # the bins follow the trail from (x1, y1) to (x2, y2)
    assert p["x"][0] == pytest.approx(r["x1"], abs=4) and p["y"][0] == pytest.approx(r["y1"], abs=4)
    assert p["x"][-1] == pytest.approx(r["x2"], abs=4)
    assert not np.any(p["saturated"])
    assert r["peak_flux"] == pytest.approx(np.max(p["flux"]) / p.meta["bin_px"])


def test_fireball_profile_flags_the_saturated_bins(composite, bench):
    _, truth, trails, profiles = composite
    (r,) = [r for r in trails if bench.on_line(r, truth["fireball"])]
    p = profiles[profiles["id"] == r["id"]]
    sat = np.asarray(p["saturated"])
    assert sat.any() and not sat.all()
    # the brightest bin is a saturated one (the flare)
    assert sat[int(np.argmax(p["flux"]))]


def test_scene_mask_covers_the_obstructions_and_the_glare(bench):
    img, truth = bench.make_composite(0, shape=SHAPE)
    m = scene_mask(img)
    obst = truth["obstruction"]
    # at least 95 % of the tree, roof and caption pixels (measured 97 %)
    assert m.mask[obst].mean() > 0.95
    # open sky kept: at most 15 % of the non-obstruction sky outside the glare masked
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    mx, my, r_glow = truth["moon"]
    open_sky = ~obst & (np.hypot(xx - mx, yy - my) > r_glow)
    assert m.mask[open_sky].mean() < 0.15
    # one glare disc on the Moon: the radius where the glow meets 2x the noise within
    # 20 % (measured -15 % here, where the glow reaches the frame's edges; -2 % to
    # -7 % in 600x800 frames), plus the 20-px margin of scene_mask
    assert len(m.glare_discs) == 1
    x, y, r = m.glare_discs[0]
    assert np.hypot(x - mx, y - my) < 2.0
    glow_only = 10.0 + 25.0 * np.sqrt((3000.0 / 16.0) ** (2 / 3) - 1)  # no spikes
    assert abs((r - 20.0) / glow_only - 1.0) < 0.20


def test_elongated_saturation_is_not_glare():
    img = np.full((200, 300), 100.0, np.float32)
    img[95:101, 40:260] = 4095.0  # a saturated meteor body
    img[40:60, 200:220] = 4095.0  # a round saturated blob (lamp)
    mask, discs = glare_mask(img, saturation=4000.0)
    assert len(discs) == 1 and discs[0][0] == pytest.approx(209.5, abs=1)
    assert not mask[98, 40:150].any()


def test_without_mask_the_obstructions_give_false_trails(bench):
    img, truth = bench.make_composite(0, shape=SHAPE)
    trails = find_meteor_trails(img, sky=np.ones(SHAPE, bool))
    s = bench.score_composite(trails, truth)
    # the reason for the mask (measured 1 false trail on the obstructions here)
    assert s["false_on_obstruction_or_glare"] >= 1


def test_collinear_pieces_join_and_others_do_not():
    pieces = np.array(
        [
            [10.0, 10.0, 60.0, 35.0],  # three fragments of one line with gaps
            [70.0, 40.0, 120.0, 65.0],
            [135.0, 72.5, 170.0, 90.0],
            [10.0, 30.0, 60.0, 55.0],  # parallel, 18 px off
            [200.0, 10.0, 210.0, 60.0],  # another direction
            [300.0, 150.0, 340.0, 170.0],  # collinear but far beyond (gap > half the lengths)
        ]
    )
    groups = merge_collinear(pieces)
    assert sorted(groups) == [[0, 1, 2], [3], [4], [5]]
    assert merge_collinear(pieces[:3], max_gap_fraction=0.05) == [[0], [1], [2]]


def test_trail_profile_sums_a_known_line():
    from skysift.simulation.streaks import render_streak

    rng = np.random.default_rng(3)
    img = rng.normal(0.0, 5.0, (120, 200))
    line, _ = render_streak(img.shape, 30.0, 40.0, 170.0, 90.0, 20000.0, 3.0)
    img += line
    p = trail_profile(img, 30.0, 40.0, 170.0, 90.0, fwhm=3.0, noise=5.0, bin_px=2.0)
    assert float(np.sum(p["flux"])) == pytest.approx(line.sum(), rel=0.03)
    assert set(p.colnames) == {"s", "x", "y", "flux", "saturated", "star"}


def test_saturation_level():
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert saturation_level(img) == np.inf
    img[0, :3] = 255.0
    assert saturation_level(img) == pytest.approx(0.999 * 255.0)


def test_error_paths_name_the_problem():
    with pytest.raises(InputError, match=r"ends must have shape \(N, 4\)"):
        merge_collinear(np.zeros((3, 3)))
    with pytest.raises(InputError, match="horizon mask needs a 2-D image"):
        horizon_mask(np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match="region shape"):
        horizon_mask(np.zeros((30, 40)), np.ones((10, 10), bool))
    with pytest.raises(InputError, match="glare mask needs a 2-D image"):
        glare_mask(np.zeros(5))
    with pytest.raises(InputError, match="scene mask needs a 2-D image"):
        scene_mask(np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match="trail finding needs a 2-D image"):
        find_trails_and_profiles(np.zeros((2, 3, 4)))


@pytest.fixture(scope="module")
def umd_calibrated(data_dir, tmp_path_factory):
    """The real UMD meteor frame with its caption's site and time (calibrates in a few s)."""
    from skysift.bolide.trails_pipeline import find_trails_in

    path = data_dir / "umd_allsky" / "Meteor-20191028.png"
    if not path.exists():
        pytest.skip(f"real frame missing: {path}")
    out = tmp_path_factory.mktemp("trails")
    table, written = find_trails_in(
        path, out, site=(39.0021, -76.956, 50.0), time="2019-10-28T07:01:26"
    )
    return table, written, path


def test_ra_dec_of_the_real_meteor_from_the_calibration(umd_calibrated):
    from skysift.bolide.trails_pipeline import add_sky_coordinates
    from skysift.calibration.pipeline import calibrate
    from skysift.io import read_frame

    table, written, path = umd_calibrated
    back = Table.read(written)
    assert len(back) == 1
    for c in ("ra1", "dec1", "ra2", "dec2", "alt1", "az1", "alt2", "az2"):
        assert c in back.colnames and str(back[c].unit) == "deg"
    assert back.meta["calibration"]["model_type"] == "fisheye"
    # correctness against the catalogue: identified stars within 150 px of the
    # trail, put through the same column code, land on their catalogue RA/Dec
    cal = calibrate(read_frame(path), site=(39.0021, -76.956, 50.0), time="2019-10-28T07:01:26")
    m = cal.matches
    mid = np.array([0.5 * (back["x1"][0] + back["x2"][0]), 0.5 * (back["y1"][0] + back["y2"][0])])
    near = np.hypot(np.asarray(m["x"]) - mid[0], np.asarray(m["y"]) - mid[1]) < 150
    assert near.sum() >= 3
    stars = Table({"x1": m["x"][near], "y1": m["y"][near], "x2": m["x"][near], "y2": m["y"][near]})
    add_sky_coordinates(stars, cal)
    ra, dec = np.radians(stars["ra1"].value), np.radians(stars["dec1"].value)
    cra, cdec = np.radians(np.asarray(m["ra"][near])), np.radians(np.asarray(m["dec"][near]))
    cos = np.sin(dec) * np.sin(cdec) + np.cos(dec) * np.cos(cdec) * np.cos(ra - cra)
    sep_arcmin = np.degrees(np.arccos(np.clip(cos, -1, 1))) * 60
    # within 10 arcmin (the camera's pixels are about 13 arcmin)
    assert np.median(sep_arcmin) < 10.0


def test_a_failed_calibration_writes_the_table_without_sky_columns(tmp_path, capsys):
    """--site/--time on a frame with too few stars: one warning line, no RA/Dec, exit 0."""
    from astropy.io import fits

    from skysift.cli import main

    rng = np.random.default_rng(5)
    img = (100.0 + 5.0 * rng.standard_normal((160, 220))).astype(np.float32)
    path = tmp_path / "empty.fits"
    fits.PrimaryHDU(img).writeto(path)
    out = tmp_path / "out"
    args = ["trails", str(path), "--site", "39.0", "-76.9", "50", "--time", "2019-10-28T07:01:26"]
    assert main([*args, "--no-mask", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skysift: warning: empty.fits: not calibrated" in err
    t = Table.read(out / "empty.trails.ecsv")
    assert len(t) == 0 and "ra1" not in t.colnames and t.meta["mask"] is False
    assert (out / "empty.trails_profile.ecsv").is_file() and (out / "empty.trails.png").is_file()


def test_trails_along_the_lens_rim_are_dropped_radial_ones_kept():
    """A line tangent to the rim of a fisheye circle is a vignetting artefact; a radial one is kept."""
    from astropy.table import Table

    from skysift.bolide.trails_pipeline import drop_rim_tangents

    circle = (500.0, 500.0, 400.0)
    t = Table(
        {
            "id": [1, 2, 3],
            # tangent near the top rim; radial near the right rim; tangent but well inside
            "x1": [420.0, 850.0, 400.0], "y1": [130.0, 500.0, 300.0],
            "x2": [580.0, 890.0, 600.0], "y2": [130.0, 505.0, 300.0],
        }
    )  # fmt: skip
    p = Table({"id": [1, 1, 2, 3], "s": [0.0, 2.0, 0.0, 0.0]})
    t2, p2 = drop_rim_tangents(t, p, circle)
    assert list(t2["x1"]) == [850.0, 400.0] and list(t2["id"]) == [1, 2]
    assert list(p2["id"]) == [1, 2] and t2.meta["rim_trails_dropped"] == 1
