"""Gaussian-fit and aperture photometry against synthetic truth."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.errors import InputError
from skysift.measurement import (
    aperture_photometry_annulus,
    gaussian_photometry,
    instrumental_magnitude,
)
from skysift.simulation import make_star_field


@pytest.fixture(scope="module")
def field():
    return make_star_field(
        (200, 200), 12, fwhm=3.5, flux_range=(2e4, 2e5), background=200, min_separation=25, rng=11
    )


def test_gaussian_fit_recovers_position_flux_and_fwhm(field):
    image, truth = field
    rng = np.random.default_rng(0)
    # Start 0.7 px off: the recentring must bring the fit back.
    x0 = truth["x"] + rng.uniform(-0.7, 0.7, len(truth))
    y0 = truth["y"] + rng.uniform(-0.7, 0.7, len(truth))
    t = gaussian_photometry(image, x0, y0, box=13, noise=np.sqrt(np.maximum(image, 1)))
    assert np.all(t["flags"] == 0)
    assert np.max(np.hypot(t["x"] - truth["x"], t["y"] - truth["y"])) < 0.1  # px
    assert np.allclose(t["flux"] / truth["flux"], 1, atol=0.03)
    assert np.allclose(t["fwhm"], 3.5, atol=0.15)
    # Reported errors are consistent with the scatter (pull < 4 sigma).
    pull = (t["flux"] - truth["flux"]) / t["flux_err"]
    assert np.all(np.abs(pull) < 4)


def test_aperture_photometry_recovers_flux_and_background(field):
    image, truth = field
    t = aperture_photometry_annulus(
        image, truth["x"], truth["y"], radius=7, annulus=(10, 15), gain=1.0
    )
    # A 2-FWHM radius aperture holds 99.9% of a Gaussian.
    assert np.allclose(t["flux"] / truth["flux"], 1, atol=0.02)
    assert np.allclose(t["background"], 200, atol=3)
    pull = (t["flux"] - 0.999 * truth["flux"]) / t["flux_err"]
    assert np.all(np.abs(pull) < 4)


def test_saturation_and_edge_flags():
    image = np.full((60, 60), 100.0)
    yy, xx = np.mgrid[0:60, 0:60]
    image += 1e5 * np.exp(-((xx - 30) ** 2 + (yy - 30) ** 2) / 4.0)
    image = np.minimum(image, 5e4)
    t = aperture_photometry_annulus(
        image, [30, 2], [30, 30], radius=4, annulus=(6, 9), saturation=5e4
    )
    assert t["flags"][0] & 1 and not t["flags"][1] & 1
    assert t["flags"][1] & 2 and not t["flags"][0] & 2
    g = gaussian_photometry(image, [30], [30], saturation=5e4)
    assert g["flags"][0] & 1


def test_instrumental_magnitude():
    mag, err = instrumental_magnitude(
        np.array([100.0, 10000.0, -5.0]), np.array([10.0, 100.0, 1.0]), exposure=10
    )
    assert mag[0] == pytest.approx(-2.5 * np.log10(10.0))
    assert mag[1] - mag[0] == pytest.approx(-5.0)
    assert np.isnan(mag[2])
    assert err[0] == pytest.approx(0.10857, rel=1e-3)  # 1.0857 * 10 / 100


def test_photometry_errors():
    with pytest.raises(InputError, match="2-D image"):
        gaussian_photometry(np.zeros(5), [1], [1])
    with pytest.raises(InputError, match="box must be at least 5"):
        gaussian_photometry(np.zeros((20, 20)), [10], [10], box=3)
    with pytest.raises(InputError, match="same length"):
        aperture_photometry_annulus(np.zeros((20, 20)), [1, 2], [1])
    with pytest.raises(InputError, match="radius <= annulus inner"):
        aperture_photometry_annulus(np.zeros((20, 20)), [10], [10], radius=5, annulus=(4, 8))
