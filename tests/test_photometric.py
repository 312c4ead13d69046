"""Tests of skysift.calibration.photometric: zero point, extinction, radial term."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.calibration.photometric import (
    ZeroPointFit,
    airmass,
    fit_zero_point,
    magnitude_from_reference,
)
from skysift.errors import InputError, NotEnoughStarsError


def _synthetic(rng, n=400, zp=14.7, k=0.13, a2=-0.75, a4=0.0, color=0.0, noise=0.05, n_out=40):
    alt = rng.uniform(8, 90, n)
    x = airmass(alt)
    r = (90 - alt) / 90 + rng.normal(0, 0.02, n)  # radius ~ zenith angle, not identical
    bv = rng.uniform(-0.2, 1.6, n)
    cat = rng.uniform(1, 6.5, n)
    inst = cat - zp + k * x - a2 * r**2 - a4 * r**4 - color * bv + rng.normal(0, noise, n)
    bad = rng.choice(n, n_out, replace=False)
    inst[bad] += rng.choice([-1, 1], n_out) * rng.uniform(0.8, 3.0, n_out)  # blends, hot pixels
    return inst, cat, x, r, bv, bad


def test_airmass_kasten_young():
    assert airmass(90.0) == pytest.approx(1.0, abs=1e-3)
    assert airmass(30.0) == pytest.approx(1.995, abs=0.005)
    # Kasten & Young (1989): 38.09 at the horizon (tables), formula within 0.5 %
    assert airmass(0.0) == pytest.approx(38.09, rel=0.005)
    assert np.isnan(airmass(-1.0))
    np.testing.assert_allclose(airmass([90.0, 30.0]), [airmass(90.0), airmass(30.0)])


def test_recovers_zero_point_extinction_radial_with_outliers():
    rng = np.random.default_rng(1)
    inst, cat, x, r, bv, bad = _synthetic(rng)
    fit = fit_zero_point(inst, cat, airmass=x, radius=r)
    assert isinstance(fit, ZeroPointFit)
    assert fit.zero_point == pytest.approx(14.7, abs=3 * fit.zero_point_err + 0.01)
    assert fit.zero_point_err < 0.05
    assert fit.extinction_k == pytest.approx(0.13, abs=0.03)
    assert fit.radial_coeffs[0] == pytest.approx(-0.75, abs=0.06)
    assert fit.rms_mag == pytest.approx(0.05, abs=0.01)
    assert fit.rms_clipped == pytest.approx(0.05, abs=0.01)
    # The gross outliers are rejected, the good stars kept.
    assert not fit.inlier[bad].any()
    assert fit.n_used >= 400 - 40 - 5
    assert fit.terms == ("zero_point", "extinction", "radial")
    pred = fit.predict(inst, airmass=x, radius=r)
    good = np.setdiff1d(np.arange(400), bad)
    assert np.std(pred[good] - cat[good]) < 0.06


def test_single_zero_point_leaves_the_trend():
    rng = np.random.default_rng(2)
    inst, cat, x, r, bv, bad = _synthetic(rng, n_out=0)
    plain = fit_zero_point(inst, cat)
    full = fit_zero_point(inst, cat, airmass=x, radius=r)
    assert plain.rms_mag > 2 * full.rms_mag
    assert plain.extinction_k == 0.0 and plain.radial_coeffs == ()


def test_radial_order_two_and_colour_term():
    rng = np.random.default_rng(3)
    inst, cat, x, r, bv, bad = _synthetic(rng, a4=0.4, color=0.12, n_out=20, n=600)
    fit = fit_zero_point(inst, cat, airmass=x, radius=r, radial_order=2, color=bv)
    assert fit.color_coeff == pytest.approx(0.12, abs=0.02)
    assert fit.rms_mag == pytest.approx(0.05, abs=0.01)
    assert len(fit.radial_coeffs) == 2
    d = fit.to_dict()
    assert d["terms"] == ["zero_point", "extinction", "radial", "color"]
    assert d["n_total"] == 600


def test_radius_units_only_scale_the_coefficient():
    rng = np.random.default_rng(4)
    inst, cat, x, r, bv, bad = _synthetic(rng)
    a = fit_zero_point(inst, cat, airmass=x, radius=r)
    b = fit_zero_point(inst, cat, airmass=x, radius=500 * r)  # radius in "pixels"
    assert b.radial_coeffs[0] * 500**2 == pytest.approx(a.radial_coeffs[0], rel=1e-6)
    assert b.zero_point == pytest.approx(a.zero_point, abs=1e-9)


def test_predict_needs_the_fitted_terms():
    rng = np.random.default_rng(5)
    inst, cat, x, r, bv, bad = _synthetic(rng)
    fit = fit_zero_point(inst, cat, airmass=x, radius=r)
    with pytest.raises(InputError, match="give airmass"):
        fit.predict(10.0, radius=0.5)
    with pytest.raises(InputError, match="give radius"):
        fit.predict(10.0, airmass=1.2)
    assert fit.predict(-10.0, airmass=1.0, radius=0.0) == pytest.approx(
        -10.0 + fit.zero_point - fit.extinction_k
    )


def test_input_errors():
    with pytest.raises(InputError, match="catalog_mag must have one value per star"):
        fit_zero_point([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(InputError, match="extinction=True needs the airmass"):
        fit_zero_point([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], extinction=True)
    with pytest.raises(InputError, match="radial_order must be 1 or 2"):
        fit_zero_point([1.0] * 5, [1.0] * 5, radius=[0.1] * 5, radial_order=3)
    with pytest.raises(InputError, match="clip must be positive"):
        fit_zero_point([1.0] * 5, [1.0] * 5, clip=0)
    with pytest.raises(NotEnoughStarsError, match="2 usable, need 3"):
        fit_zero_point([1.0, np.nan, 2.0], [3.0, 4.0, 5.0])


def test_magnitude_from_reference():
    assert magnitude_from_reference(100.0, 100.0, 2.0) == pytest.approx(2.0)
    assert magnitude_from_reference(1000.0, 10.0, 3.0) == pytest.approx(-2.0)
    out = magnitude_from_reference([10.0, 0.0], 1.0, 0.0)
    assert out[0] == pytest.approx(-2.5)
    assert np.isnan(out[1])
    with pytest.raises(InputError, match="flux_ref must be a positive"):
        magnitude_from_reference(1.0, 0.0, 1.0)
    with pytest.raises(InputError, match="mag_ref must be a finite"):
        magnitude_from_reference(1.0, 1.0, np.nan)


def test_linearity_term_recovers_gamma_encoding():
    # Pixel values proportional to flux**gamma (gamma-encoded 8-bit frames):
    # m_inst = gamma * m_true + const, so m_cat - m_inst = ZP + s (m_inst - ref) with s = 1/gamma - 1.
    rng = np.random.default_rng(3)
    gamma = 0.75
    m_true = rng.uniform(0, 6, 300)
    m_inst = gamma * (m_true - 8.0) + rng.normal(0, 0.03, 300)
    fit = fit_zero_point(m_inst, m_true, linearity=True)
    assert fit.linearity == pytest.approx(1 / gamma - 1, abs=0.02)
    assert "linearity" in fit.terms
    assert np.allclose(fit.predict(m_inst), m_true, atol=0.15)
    assert fit.rms_mag < 0.06
