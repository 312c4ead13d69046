"""Tests of skysift.calibration.catalog: Hipparcos, names, alt/az, proper motion."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.time import Time

from skysift.calibration.catalog import (
    catalog_id,
    hp_to_v,
    load_hipparcos,
    lookup_hip,
    planet_altaz,
    propagate_proper_motion,
    resolve_star,
    star_altaz,
    star_name,
    star_names,
)
from skysift.errors import InputError
from skysift.io.frame import Site

LA_PALMA = Site(28.7619, -17.8908, 2200.0)

# Ground-based Johnson V (Yale Bright Star Catalogue) of unblended bright stars.
BSC_V = {
    69673: -0.05,  # Arcturus
    21421: 0.86,  # Aldebaran
    37826: 1.14,  # Pollux
    37279: 0.34,  # Procyon
    97649: 0.77,  # Altair
    65474: 0.97,  # Spica
    24608: 0.08,  # Capella
    102098: 1.25,  # Deneb
}


def test_load_hipparcos_cut_sorted_and_columns():
    cat = load_hipparcos(4.0)
    assert 400 < len(cat) < 600  # about 500 stars brighter than V = 4
    assert np.all(np.diff(cat["v_mag"]) >= 0)
    assert cat["v_mag"].max() <= 4.0
    for col in ("hip", "catalog_id", "ra", "dec", "pm_ra", "pm_dec", "hp_mag", "b_v", "v_mag"):
        assert col in cat.colnames
    assert cat["hip"][0] == 32349  # Sirius first
    assert cat["v_mag"][0] == pytest.approx(-1.46)
    assert cat.meta["epoch"] == 1991.25
    vega = cat[cat["hip"] == 91262][0]
    assert vega["catalog_id"] == "HIP 91262"
    assert vega["ra"] == pytest.approx(279.2347, abs=1e-3)
    assert vega["dec"] == pytest.approx(38.7837, abs=1e-3)


def test_load_hipparcos_rejects_bad_mag():
    with pytest.raises(InputError, match="max_mag"):
        load_hipparcos(float("nan"))


def test_hp_to_v_matches_ground_based_v():
    rows = lookup_hip(list(BSC_V))
    v = hp_to_v(rows["hp_mag"], rows["b_v"])
    np.testing.assert_allclose(v, list(BSC_V.values()), atol=0.05)
    assert hp_to_v(5.0, 0.0) == pytest.approx(5.0)


def test_catalog_id_and_lookup():
    assert catalog_id(91262) == "HIP 91262"
    assert catalog_id([1, 2]) == ["HIP 1", "HIP 2"]
    rows = lookup_hip([91262, 32349])
    assert list(rows["hip"]) == [91262, 32349]
    with pytest.raises(InputError, match="HIP 120400"):
        lookup_hip([91262, 120400])


@pytest.mark.parametrize(
    ("given", "hip"),
    [
        ("Vega", 91262),
        ("vega", 91262),
        ("HIP 91262", 91262),
        ("hip91262", 91262),
        ("91262", 91262),
        (91262, 91262),
        ("Sirius", 32349),
        ("Arcturus", 69673),
        ("rigil kentaurus", 71683),
        ("Rigil-Kentaurus", 71683),
    ],
)
def test_resolve_star(given, hip):
    assert resolve_star(given) == hip


def test_resolve_star_errors():
    with pytest.raises(InputError, match="unknown star 'Krypton'"):
        resolve_star("Krypton")
    with pytest.raises(InputError, match="Hipparcos numbers run from 1"):
        resolve_star(0)


def test_star_names_table_is_consistent_with_catalogue():
    names = star_names()
    assert len(names) >= 100
    assert len(set(names["name"])) == len(names)
    rows = lookup_hip(names["hip"])  # every number exists in Hipparcos
    assert np.all(hp_to_v(rows["hp_mag"], rows["b_v"]) < 5.5)
    assert star_name(91262) == "Vega"
    assert star_name(1) is None
    # The 20 brightest stars of the sky north of -30 deg all have names.
    bright = load_hipparcos(1.6)
    bright = bright[bright["dec"] > -30]
    assert set(bright["hip"]) <= set(names["hip"])


def test_polaris_altitude_is_the_latitude():
    for iso in ("2018-08-17T00:52:21", "2018-08-17T12:00:00"):
        t = Time(iso)
        aa = star_altaz(lookup_hip([11767], epoch=t), LA_PALMA, t, refraction=False)
        # Polaris is 0.66 deg from the pole in 2018.
        assert abs(aa["alt"][0] - LA_PALMA.lat) < 0.75
        assert aa["airmass"][0] == pytest.approx(1 / np.sin(np.radians(aa["alt"][0])), rel=0.01)


def test_refraction_lifts_low_stars():
    t = Time("2018-08-17T00:52:21")
    cat = load_hipparcos(3.0, epoch=t)
    with_r = star_altaz(cat, LA_PALMA, t)
    without = star_altaz(cat, LA_PALMA, t, refraction=False)
    low = (without["alt"] > 8) & (without["alt"] < 12)
    assert low.any()
    lift = np.asarray(with_r["alt"] - without["alt"])[low]
    # About 5 arcmin at 10 deg altitude, scaled by the pressure at 2200 m (~780 hPa).
    assert np.all((lift > 0.05) & (lift < 0.1))
    high = without["alt"] > 60
    assert np.all(np.asarray(with_r["alt"] - without["alt"])[high] < 0.01)


def test_proper_motion_barnards_star():
    row = lookup_hip([87937])[0]  # Barnard's star, 10.4 arcsec/yr
    ra, dec = propagate_proper_motion(
        row["ra"], row["dec"], row["pm_ra"], row["pm_dec"], Time("2021-03-17T00:00:00")
    )
    dt = Time("2021-03-17T00:00:00").jyear - 1991.25
    assert (dec - row["dec"]) * 3600 == pytest.approx(row["pm_dec"] / 1000 * dt, rel=1e-6)
    sep = np.hypot((ra - row["ra"]) * np.cos(np.radians(row["dec"])), dec - row["dec"]) * 3600
    assert sep == pytest.approx(10.36 * dt, rel=0.01)
    moved = lookup_hip([87937], epoch=2021.0)[0]
    assert moved["dec"] > row["dec"]


def test_planets_offline():
    t = Time("2018-08-17T00:52:21")
    p = planet_altaz(LA_PALMA, t)
    assert list(p["name"]) == ["mercury", "venus", "mars", "jupiter", "saturn", "moon"]
    mars = p[p["name"] == "mars"][0]
    # Mars (opposition July 2018) was up in the south-east at 01 UT.
    assert 15 < mars["alt"] < 40
    assert 150 < mars["az"] < 220


def test_star_altaz_checks_inputs():
    cat = load_hipparcos(1.0)
    with pytest.raises(InputError, match="skysift Site"):
        star_altaz(cat, (28.7, -17.9), Time("2018-08-17T00:52:21"))
    with pytest.raises(InputError, match="scalar astropy Time"):
        star_altaz(cat, LA_PALMA, "2018-08-17")
