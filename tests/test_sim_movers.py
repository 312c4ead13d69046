"""Fast movers in the three modes, sub-exposure stacking, sequences, galaxies and cosmic rays."""

from __future__ import annotations

import numpy as np
import pytest
from photutils.aperture import EllipticalAperture
from scipy.optimize import brentq

from skysift.errors import InputError
from skysift.simulation.detector import Detector
from skysift.simulation.movers import MODES, motion_prior, simulate_fast_mover, simulate_sequence
from skysift.simulation.optics import GaussianPSF, Telescope
from skysift.simulation.sources import render_cosmic_rays, render_sersic, render_stars, sersic_bn

TEL = Telescope(0.25, pixel_scale_arcsec=2.0, band="V")


def _rows(truth, kind):
    t = truth.table
    return t[t["type"] == kind]


def test_modes_streak_the_right_objects():
    rate, exp = (30.0, -10.0), 1.0
    speed = np.hypot(*rate)
    sid = simulate_fast_mover("sidereal", target_rate=rate, exposure_s=exp, rng=1)
    assert np.all(_rows(sid.truth, "star")["length"] == 0)
    assert _rows(sid.truth, "mover")["length"][0] == pytest.approx(speed * exp)
    kern = GaussianPSF(2.5).kernel()  # static stars: the prior is the PSF
    c, h = sid.prior.shape[0] // 2, kern.shape[0] // 2
    np.testing.assert_allclose(sid.prior[c - h : c + h + 1, c - h : c + h + 1], kern, atol=1e-12)
    trk = simulate_fast_mover("tracking", target_rate=rate, exposure_s=exp, rng=1)
    stars = _rows(trk.truth, "star")
    # tracking: stars are streaks of length rate x exposure, the mover a point
    np.testing.assert_allclose(stars["length"], speed * exp)
    np.testing.assert_allclose(stars["vx"], -rate[0])
    assert _rows(trk.truth, "mover")["length"][0] == pytest.approx(0.0, abs=1e-9)
    # the prior is the star trail: its second moment along the motion is that of the
    # unitary streak ((L + 1)^2 / 12) + the PSF's (sigma^2 + 1/12 of pixel integration)
    k = trk.prior
    yy, xx = np.indices(k.shape) - k.shape[0] // 2
    u = (xx * rate[0] + yy * rate[1]) / speed
    assert k.sum() == pytest.approx(1.0)
    assert (k * u**2).sum() == pytest.approx(
        (speed + 1) ** 2 / 12 + (2.5 / 2.3548) ** 2 + 1 / 12, rel=0.01
    )
    inter = simulate_fast_mover("intersection", target_rate=rate, exposure_s=exp, rng=1)
    s, m = _rows(inter.truth, "star")[0], _rows(inter.truth, "mover")[0]
    assert s["length"] > 1 and m["length"] > 1
    assert abs(s["length"] - m["length"]) > 1 and abs(s["angle"] - m["angle"]) > 5


def test_mover_light_and_snr_bookkeeping():
    det = Detector(qe=0.8, read_noise=5.0, gain=1.0)
    r = simulate_fast_mover(
        "sidereal",
        target_rate=(20, 5),
        target_mag=10.0,
        telescope=TEL,
        detector=det,
        n_stars=0,
        rng=2,
    )
    mover = r.truth.table[0]
    assert mover["flux"] == pytest.approx(TEL.star_photons(10.0, 1.0) * 0.8)
    sky_e = TEL.sky_photons_per_pixel(17.0, 1.0) * 0.8
    assert r.sigma_e == pytest.approx(np.sqrt(sky_e + 25 + 1 / 12), rel=1e-6)
    # the recorded mover light is in the image: mask sum minus sky ~ flux in mask
    m = r.truth.mask
    excess = float((r.image[m] + 0.5 - sky_e).sum())  # +0.5: floor of the ADC
    assert excess == pytest.approx(mover["snr_tot"] * r.sigma_e, rel=0.05)


def test_stack_has_read_noise_of_one_read():
    det = Detector(qe=1.0, read_noise=10.0, gain=1.0, offset=1000)
    frames = np.zeros((8, 64, 64))  # dark sky: only read noise remains
    img = det.expose_stack(frames, 0.1, 0)
    assert np.var(img) == pytest.approx(100 + 1 / 12, rel=0.05)  # not 8 x 100
    r = simulate_fast_mover(
        "sidereal",
        telescope=TEL,
        detector=Detector(qe=0.8, read_noise=10.0, offset=1000),
        n_sub=8,
        n_stars=0,
        sky_mag=30.0,
        target_mag=30.0,
        rng=3,
    )
    assert np.var(r.image) == pytest.approx(100 + 1 / 12, rel=0.05)


def test_sequence_moves_target_and_applies_dithers():
    offs = np.array([[0.0, 0.0], [5.0, -3.0], [-4.0, 2.0]])
    frames, truths = simulate_sequence(
        3, cadence_s=2.0, exposure_s=1.0, target_rate=(6.0, 2.0), dither_offsets=offs, rng=4
    )
    assert frames.shape == (3, 128, 128)
    mover = [t.table[t.table["type"] == "mover"][0] for t in truths]
    for k in range(1, 3):
        dx = mover[k]["x"] - mover[0]["x"]
        dy = mover[k]["y"] - mover[0]["y"]
        assert dx == pytest.approx(6.0 * 2.0 * k + offs[k, 0])
        assert dy == pytest.approx(2.0 * 2.0 * k + offs[k, 1])
    star0 = truths[0].table[truths[0].table["type"] == "star"]
    star2 = truths[2].table[truths[2].table["type"] == "star"]
    np.testing.assert_allclose(star2["x"] - star0["x"], offs[2, 0])
    assert [t.table["frame"][0] for t in truths] == [0, 1, 2]


def test_sersic_flux_and_half_light_radius():
    assert sersic_bn(4.0) == pytest.approx(7.669, abs=1e-3)
    for n in (0.5, 1.0, 2.0, 4.0):
        img = render_sersic((161, 161), 80.3, 79.6, 1e5, n, 2.5, ellipticity=0.3, pa=40.0)
        assert img.sum() == pytest.approx(1e5, rel=0.01)
        img = render_sersic((161, 161), 80.3, 79.6, 1e5, n, 6.0, ellipticity=0.4, pa=30.0)

        def enclosed(a, img=img):
            ap = EllipticalAperture((80.3, 79.6), a, 0.6 * a, theta=np.radians(30.0))
            return ap.do_photometry(img, method="exact")[0][0] - 5e4

        assert brentq(enclosed, 1.0, 40.0) == pytest.approx(6.0, rel=0.03)
    with pytest.raises(InputError, match="r_e"):
        render_sersic((32, 32), 16, 16, 1e3, 1.0, -1.0)
    with pytest.raises(InputError, match="backend"):
        render_sersic((32, 32), 16, 16, 1e3, 1.0, 2.0, backend="magic")


def test_cosmic_rays_are_sharper_than_the_psf():
    img, truth = render_cosmic_rays((128, 128), 20, 5, length_range=(0.0, 15.0))
    t = truth.table
    assert len(t) == 20 and set(t["type"]) == {"cosmic_ray"}
    assert img[truth.mask].sum() == pytest.approx(img.sum())
    assert t["flux"].sum() == pytest.approx(img.sum())
    # no PSF wings: a ray of length L lights at most ~1.5 (L + 1) pixels
    for row, k in zip(t, range(1, 21), strict=True):
        n_pix = (truth.labels == k).sum()
        assert n_pix <= 1.5 * (row["length"] + 1) + 2
    # versus a star of FWHM 2: its brightest pixel holds < 25 % of the light
    star, _ = render_stars((32, 32), [16.2], [15.7], [1e4], 2.0)
    single, _ = render_cosmic_rays((32, 32), 1, 6, length_range=(0.0, 0.0))
    assert star.max() / star.sum() < 0.25
    assert single.max() / single.sum() == pytest.approx(1.0)


def test_invalid_mover_parameters():
    with pytest.raises(InputError, match="sidereal"):
        simulate_fast_mover("orbit")
    with pytest.raises(InputError, match="n_sub"):
        simulate_fast_mover("sidereal", n_sub=0)
    with pytest.raises(InputError, match="larger than"):
        simulate_fast_mover("sidereal", target_rate=(500.0, 0.0))
    with pytest.raises(InputError, match="dither_offsets"):
        simulate_sequence(3, dither_offsets=np.zeros((2, 2)))
    assert motion_prior(2.5, (0.0, 0.0), 1.0).sum() == pytest.approx(1.0)
    assert set(MODES) == {"sidereal", "tracking", "intersection"}
