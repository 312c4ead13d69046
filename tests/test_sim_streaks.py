"""Physics of the pixel-perfect streaks, their truth and the Euclid-style SSO trails."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from skysift.errors import InputError
from skysift.simulation.optics import GaussianPSF, make_psf
from skysift.simulation.streaks import (
    periodic_modulation,
    rasterize_polygons,
    render_sso_trail,
    render_streak,
    sso_trail_points,
    streak_endpoints,
    streak_polygons,
    wavy_jitter,
)
from skysift.simulation.truth import TRUTH_COLUMNS, empty_truth_table, snr_avg, snr_tot, streak_mask

SHAPE = (96, 96)
YY, XX = np.indices(SHAPE)


def _moments(img):
    s = img.sum()
    return s, (img * XX).sum() / s, (img * YY).sum() / s


def _random_streaks(n, length_range, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        length = rng.uniform(*length_range)
        cx, cy = rng.uniform(47, 49, 2)  # any sub-pixel offset
        yield cx, cy, streak_endpoints(SHAPE, length, rng.uniform(0, 360), centre=(cx, cy))


@pytest.mark.parametrize("psf", [None, 2.5, make_psf("moffat", fwhm=3.0, beta=3.0)])
def test_flux_and_centre_any_angle(psf):
    # 50 random angles / sub-pixel centres, before (psf=None) and after PSF convolution.
    # Δ >= 6 px: the pixel-sampled centroid of a pixelised rectangle has an
    # intrinsic bias <= 1 / (8 (Δ + 1)) px (see render_streak Notes).
    for cx, cy, (x1, y1, x2, y2) in _random_streaks(50, (6.0, 70.0), seed=1):
        img, _ = render_streak(SHAPE, x1, y1, x2, y2, 1e4, psf)
        s, mx, my = _moments(img)
        assert abs(s / 1e4 - 1) < 0.005
        assert np.hypot(mx - cx, my - cy) < 0.02


def test_short_streaks_centre_with_oversampling():
    for cx, cy, (x1, y1, x2, y2) in _random_streaks(30, (0.0, 6.0), seed=2):
        img, _ = render_streak(SHAPE, x1, y1, x2, y2, 1e4, 2.5, oversample=3)
        s, mx, my = _moments(img)
        assert abs(s / 1e4 - 1) < 0.005
        assert np.hypot(mx - cx, my - cy) < 0.02


def test_unitary_rectangle_area_is_length_plus_one():
    rng = np.random.default_rng(3)
    for _ in range(20):
        x1, y1, x2, y2 = rng.uniform(10, 80, 4)
        polys, weights = streak_polygons(x1, y1, x2, y2)
        cov, _ = rasterize_polygons(polys)  # unit weight: pure areas
        assert cov.sum() == pytest.approx(np.hypot(x2 - x1, y2 - y1) + 1, rel=1e-12)
        assert cov.max() <= 1 + 1e-12 and cov.min() >= -1e-12
        # normalised weights: whole streak integrates to 1
        assert weights.sum() * (np.hypot(x2 - x1, y2 - y1) + 1) == pytest.approx(1)


def test_exact_pixel_areas_known_case():
    # a 1 x 1 square centred at (0.3, 0) covers 0.7 of pixel 0 and 0.3 of pixel 1
    sq = np.array([[[-0.2, -0.5], [0.8, -0.5], [0.8, 0.5], [-0.2, 0.5]]])
    cov, (r0, c0) = rasterize_polygons(sq)
    assert (r0, c0) == (0, 0)
    np.testing.assert_allclose(cov, [[0.7, 0.3]], atol=1e-14)
    # a 45-degree unit square (diamond) of area 1 centred on pixel (0, 0)
    d = np.array(
        [[[0.0, -np.sqrt(0.5)], [np.sqrt(0.5), 0.0], [0.0, np.sqrt(0.5)], [-np.sqrt(0.5), 0.0]]]
    )
    cov, _ = rasterize_polygons(d)
    assert cov.sum() == pytest.approx(1.0)
    tip = np.sqrt(0.5) - 0.5  # each tip out of the centre pixel: a triangle of area tip^2
    assert cov[1, 1] == pytest.approx(1 - 4 * tip**2, rel=1e-12)
    assert cov[0, 1] == pytest.approx(tip**2, rel=1e-12)


def test_zero_length_streak_is_a_point_source():
    psf = GaussianPSF(2.5)
    for x, y in [(40.0, 50.0), (40.3, 50.7)]:
        img, truth = render_streak(SHAPE, x, y, x, y, 5e3, psf)
        s, mx, my = _moments(img)
        assert s == pytest.approx(5e3, rel=1e-6)
        assert (mx, my) == pytest.approx((x, y), abs=1e-9)
        point = psf.render(SHAPE, x, y, 5e3)
        # a point through the PSF, broadened by the one-pixel box: at a fractional
        # offset f it is split over two pixels (+ f (1 - f) <= 0.25 px^2 of variance)
        for coord, c0 in ((XX, x), (YY, y)):
            var = (img * (coord - c0) ** 2).sum() / 5e3
            var_point = (point * (coord - c0) ** 2).sum() / 5e3
            assert -0.01 <= var - var_point <= 0.25 + 1e-6  # kernel cut at 99.9 % flux
        assert truth.table["length"][0] == 0
    img, _ = render_streak(SHAPE, 40.0, 50.0, 40.0, 50.0, 5e3, psf)
    np.testing.assert_allclose(img, 5e3 * _embed(psf.kernel(), 40, 50), atol=1e-9)


def _embed(kernel, x, y):
    out = np.zeros(SHAPE)
    h = kernel.shape[0] // 2
    out[y - h : y + h + 1, x - h : x + h + 1] = kernel
    return out


def test_modulation_and_jitter_keep_flux_and_shape_light():
    mod = periodic_modulation(0.8, 0.25)
    img, _ = render_streak(SHAPE, 20, 30, 80, 60, 1e4, 2.0, modulation=mod)
    assert img.sum() == pytest.approx(1e4, rel=1e-6)
    # light follows the modulation: profile along the streak peaks where m(s) does
    s = np.linspace(0, 1, 61)
    xs, ys = 20 + 60 * s, 30 + 30 * s
    along = img[np.rint(ys).astype(int), np.rint(xs).astype(int)]
    assert np.corrcoef(along, mod(s))[0, 1] > 0.95
    jit = wavy_jitter(3.0, 0.5)
    img2, truth = render_streak(SHAPE, 20, 30, 80, 30, 1e4, 2.0, jitter=jit)
    assert img2.sum() == pytest.approx(1e4, rel=1e-6)
    col = 20 + 60 * 0.125  # d(s=0.125) = +3 px (a crest): the light moved off the line
    ycen = (img2[:, int(col)] * np.arange(SHAPE[0])).sum() / img2[:, int(col)].sum()
    assert ycen == pytest.approx(33.0, abs=0.3)
    assert truth.mask[33, int(col)]


def test_streak_leaving_the_frame_keeps_only_visible_light():
    img, _ = render_streak(SHAPE, -1000.0, 48.0, 1000.0, 48.0, 2001.0, None)
    # 1 unit per pixel of length along row 48; the frame sees 96 pixels of it
    np.testing.assert_allclose(img[48], 1.0, atol=1e-9)
    assert img.sum() == pytest.approx(96.0)


def test_snr_hand_computed():
    sig = np.zeros((5, 5))
    sig[2, 1:4] = [2.0, 4.0, 6.0]
    sig[1, 2] = 100.0  # outside the mask: ignored
    mask = np.zeros((5, 5), bool)
    mask[2, :] = True  # 5 pixels, summed signal 12
    assert snr_tot(sig, mask, 2.0) == pytest.approx(12 / 2)
    assert snr_avg(sig, mask, 2.0) == pytest.approx(12 / 5 / 2)
    with pytest.raises(InputError, match="sigma"):
        snr_avg(sig, mask, 0.0)
    with pytest.raises(InputError, match="shape"):
        snr_tot(sig, mask[:4], 1.0)


def test_truth_mask_width_and_flux_coverage():
    fwhm = 3.0
    x1, y1, x2, y2 = 15.2, 20.7, 80.4, 70.1
    img, truth = render_streak(SHAPE, x1, y1, x2, y2, 1e4, fwhm, sigma=5.0)
    m = truth.mask
    length = np.hypot(x2 - x1, y2 - y1)
    # documented width: the capsule of diameter FWHM, area L*D + pi D^2/4
    assert m.sum() == pytest.approx(length * fwhm + np.pi * fwhm**2 / 4, rel=0.03)
    # across the streak the mask is FWHM wide: every masked pixel centre within D/2 of the line
    ref = streak_mask(SHAPE, x1, y1, x2, y2, fwhm)
    np.testing.assert_array_equal(m, ref)
    # light in the paper's mask: ~erf(sqrt(ln 2)) = 76% of a Gaussian line, a bit less
    # with the one-pixel box; for Gaussian PSFs of FWHM >= 2 px a disk of 3 x FWHM
    # holds >= 99% (not for Moffat wings: ~95% for beta = 3)
    frac = img[m].sum() / img.sum()
    assert erf(np.sqrt(np.log(2))) - 0.08 < frac < erf(np.sqrt(np.log(2))) + 0.02
    for f in (2.0, 3.0, 5.0):
        im, _ = render_streak(SHAPE, x1, y1, x2, y2, 1e4, f)
        wide = streak_mask(SHAPE, x1, y1, x2, y2, f, diameter=3.0 * f)
        assert im[wide].sum() / im.sum() >= 0.99
    # table: SNRs from the rendered signal, bbox of the mask, geometry
    row = truth.table[0]
    assert row["snr_tot"] == pytest.approx(img[m].sum() / 5.0)
    assert row["snr_avg"] == pytest.approx(img[m].sum() / m.sum() / 5.0)
    assert row["length"] == pytest.approx(length)
    assert row["angle"] == pytest.approx(np.degrees(np.arctan2(y2 - y1, x2 - x1)))
    rows, cols = np.nonzero(m)
    assert truth.boxes[0] == pytest.approx(
        [cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5]
    )


def test_empty_table_keeps_schema():
    t = empty_truth_table()
    assert t.colnames == list(TRUTH_COLUMNS) and len(t) == 0
    assert str(t["flux"].unit) == "electron"
    with pytest.warns(UserWarning, match="empty"):
        empty_truth_table(warn=True)


def test_sso_trail_magnitude_bookkeeping_and_flux():
    x, y, f, m = sso_trail_points(10.0, 20.0, 40.0, 35.0, 3000.0, mag=18.0)
    n = x.size
    assert n == round(np.hypot(30, 15) * 10) + 1
    assert f.sum() == pytest.approx(3000.0)
    np.testing.assert_allclose(m, 18.0 + 2.5 * np.log10(n))
    assert np.sum(10 ** (-0.4 * m)) == pytest.approx(10 ** (-0.4 * 18.0))
    img, truth = render_sso_trail(SHAPE, 30.3, 40.6, 60.1, 55.2, 3000.0, 2.5, mag=18.0)
    s, mx, my = _moments(img)
    assert s == pytest.approx(3000.0, rel=0.005)
    assert (mx, my) == pytest.approx((45.2, 47.9), abs=0.02)
    # same light as the pixel-perfect streak of the same segment
    ref, _ = render_streak(SHAPE, 30.3, 40.6, 60.1, 55.2, 3000.0, 2.5, oversample=5)
    # (the unitary streak is 1 px longer and 1 px wider than the line of points)
    assert np.abs(img - ref).sum() / 3000.0 < 0.1
    assert truth.table["type"][0] == "sso"


def test_invalid_parameters():
    with pytest.raises(InputError, match="must_fit"):
        render_streak(SHAPE, 10, 10, 150, 10, 1e3, 2.0, must_fit=True)
    with pytest.raises(InputError, match="length=200.0"):
        streak_endpoints(SHAPE, 200.0, 0.0, must_fit=True)
    with pytest.raises(InputError, match="flux"):
        render_streak(SHAPE, 10, 10, 50, 10, -1.0, 2.0)
    with pytest.raises(InputError, match="FWHM"):
        render_streak(SHAPE, 10, 10, 50, 10, 1.0, -2.0)
    with pytest.raises(InputError, match="oversample"):
        render_streak(SHAPE, 10, 10, 50, 10, 1.0, 2.0, oversample=0)
    with pytest.raises(InputError, match="amplitude"):
        periodic_modulation(1.5, 0.2)
