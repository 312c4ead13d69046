"""Tests of skysift.calibration.pairs: the manual (clicked pairs) calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from skysift.calibration.catalog import lookup_hip, star_altaz
from skysift.calibration.fisheye import FisheyeModel
from skysift.calibration.pairs import extend_to_detections, fit_fisheye_pairs, read_pairs
from skysift.errors import InputError
from skysift.io.frame import Site

DATA = Path(__file__).parent / "data"
LA_PALMA = Site(28.7619, -17.8908, 2200.0)
T0055 = Time("2018-08-17T00:52:21")
SHAPE = (1040, 1392)

# Stars "clicked" by hand on MAGIC 20180817_0055.fits (pixel centres, 0.1 px).
CLICKS = """x,y,star
561.5,651.4,Vega
580.2,442.3,HIP 97649
703.4,633.5,Deneb
788.1,879.4,Polaris
1096.5,557.6,9884
998.5,244.9,Diphda
462.3,260.1,Nunki
409.6,550.6,Rasalhague
944.3,535.5,Alpheratz
579.0,739.3,Eltanin
"""


def _write(tmp_path, text, name="pairs.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_read_pairs_csv_and_ecsv(tmp_path):
    t = read_pairs(_write(tmp_path, CLICKS))
    assert list(t.colnames) == ["x", "y", "star", "hip"]
    assert list(t["hip"][:5]) == [91262, 97649, 102098, 11767, 9884]
    ecsv = tmp_path / "pairs.ecsv"
    Table({"x": t["x"], "y": t["y"], "star": t["star"]}).write(ecsv, format="ascii.ecsv")
    t2 = read_pairs(ecsv)
    assert list(t2["hip"]) == list(t["hip"])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "x,y,star\n1,2,Vega\n3,4,Altair\n5,6,Deneb\n",
            r"pairs\.csv has 3 star pair\(s\); need at least 4",
        ),
        (
            "x,y,name\n1,2,Vega\n3,4,Altair\n5,6,Deneb\n7,8,Polaris\n",
            r"pairs\.csv lacks column\(s\) \['star'\]",
        ),
        (
            "x,y,star\n1,2,Vega\n3,4,Altair\n5,6,Deneb\n7,8,Krypton\n",
            r"pairs\.csv, row 4: unknown star 'Krypton'",
        ),
        (
            "x,y,star\n1,2,Vega\n3,4,HIP 91262\n5,6,Deneb\n7,8,Polaris\n",
            r"pairs\.csv: star\(s\) given more than once: HIP 91262",
        ),
        (
            "x,y,star\n1,2,Vega\nnan,4,Altair\n5,6,Deneb\n7,8,Polaris\n",
            r"pairs\.csv: non-finite x or y in row\(s\) \[2\]",
        ),
    ],
)
def test_read_pairs_errors(tmp_path, text, match):
    with pytest.raises(InputError, match=match):
        read_pairs(_write(tmp_path, text))


def test_read_pairs_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"pairs file .*nope\.csv does not exist"):
        read_pairs(tmp_path / "nope.csv")


def test_fit_pairs_recovers_a_known_model():
    truth = FisheyeModel(702.0, 519.0, 81.0, (340.0, -4.0), parity=-1, shape=SHAPE)
    hips = [91262, 97649, 102098, 11767, 9884, 3419, 92855, 86032]
    cat = star_altaz(lookup_hip(hips, epoch=T0055), LA_PALMA, T0055)
    x, y = truth.altaz_to_pixel(np.asarray(cat["alt"]), np.asarray(cat["az"]))
    rng = np.random.default_rng(0)
    xy = np.column_stack([x, y]) + rng.normal(0, 0.3, (len(hips), 2))  # click errors
    sol = fit_fisheye_pairs(xy, hips, LA_PALMA, T0055, SHAPE)
    assert sol.model.parity == -1
    assert sol.model.zenith_pixel == pytest.approx(truth.zenith_pixel, abs=1.5)
    assert sol.model.rotation == pytest.approx(81.0, abs=0.5)
    assert sol.rms_px < 0.5
    assert list(sol.matches["star_index"]) == [-1] * len(hips)
    assert list(sol.matches["catalog_id"]) == [f"HIP {h}" for h in hips]


def test_fit_pairs_errors():
    with pytest.raises(InputError, match="at least 4 star pairs"):
        fit_fisheye_pairs(np.zeros((3, 2)), [1, 2, 3], LA_PALMA, T0055, SHAPE)
    with pytest.raises(InputError, match=r"shape \(N, 2\)"):
        fit_fisheye_pairs(np.zeros((4, 3)), [1, 2, 3, 4], LA_PALMA, T0055, SHAPE)
    # Canopus (dec -53) never rises at La Palma in August at night
    with pytest.raises(InputError, match=r"below the horizon.*HIP 30438"):
        fit_fisheye_pairs(np.zeros((4, 2)), [91262, 97649, 102098, 30438], LA_PALMA, T0055, SHAPE)


@pytest.mark.slow
def test_pairs_then_all_stars_on_magic(tmp_path):
    pairs = read_pairs(_write(tmp_path, CLICKS))
    xy = np.column_stack([pairs["x"], pairs["y"]])
    sol = fit_fisheye_pairs(xy, pairs["hip"], LA_PALMA, T0055, SHAPE)
    assert sol.rms_px < 1.5  # 10 stars, equidistant + k3 + k5
    img = fits.getdata(DATA / "magic_allsky" / "20180817_0055.fits").astype(float)
    bkg = sep.Background(img, bw=16, bh=16)
    obj = sep.extract(img - bkg.back(), 5.0, err=bkg.rms(), minarea=2)
    stars = Table({"x": obj["x"], "y": obj["y"], "flux": obj["flux"]})
    full = extend_to_detections(sol, stars, image=img)
    assert full.n_matched >= 300
    assert full.rms_px <= 1.0
    assert {91262, 97649, 102098, 11767} <= set(full.matches["hip"])
