"""Physics checks of the simulator's bands, PSFs, telescope and renderers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skysift.errors import InputError
from skysift.simulation.optics import (
    ARCSEC_PER_RAD,
    BANDS,
    AiryPSF,
    GaussianPSF,
    MoffatPSF,
    SeeingPSF,
    Telescope,
    get_band,
    make_psf,
)
from skysift.simulation.render import (
    add_sky,
    bin_image,
    convolve_psf,
    render_points,
    subpixel_centers,
)

H_PLANCK = 6.62607015e-34
C_LIGHT = 299792458.0


def measured_fwhm(psf, oversample=11, half_width_fwhm=2.0):
    """FWHM in pixels from the half-maximum crossing of a finely sampled kernel row."""
    half = math.ceil(half_width_fwhm * psf.fwhm * oversample)
    k = psf.kernel(size=2 * half + 1, oversample=oversample)
    row = k[half, half:]
    i = int(np.nonzero(row < 0.5 * row[0])[0][0])
    x = (i - 1) + (0.5 * row[0] - row[i - 1]) / (row[i] - row[i - 1])
    return 2.0 * x / oversample


def centroid(image):
    yy, xx = np.indices(image.shape)
    s = image.sum()
    return (image * xx).sum() / s, (image * yy).sum() / s


# --------------------------------------------------------------------------- bands
def test_v_zero_point_matches_bessell_1998():
    # f_lambda(V=0) = 363.1e-11 erg/s/cm^2/A at 545 nm (Bessell, Castelli & Plez
    # 1998, Table A2), width 88 nm: photons = f_lambda * dlambda / (h c / lambda).
    f_si = 363.1e-11 * 1e-7 * 1e4 * 1e10  # W/m^2/m
    expected = f_si * 88e-9 / (H_PLANCK * C_LIGHT / 545e-9)
    assert expected == pytest.approx(8.77e9, rel=0.01)
    v = BANDS["V"]
    assert v.zero_point_flux == pytest.approx(expected, rel=0.02)
    # The textbook rule of thumb: ~1000 photons/s/cm^2/A at V = 0 over 880 A.
    assert v.zero_point_flux == pytest.approx(1000 * 1e4 * 880, rel=0.02)
    assert v.wavelength_m == pytest.approx(545e-9)


def test_gaia_and_clear_zero_points():
    # Riello et al. 2021: ZP_G = 25.6874 mag for e-/s through Gaia's 0.7278 m^2.
    assert get_band("G").zero_point_flux == pytest.approx(10 ** (0.4 * 25.6874) / 0.7278)
    clear = get_band("clear")
    assert 400e-9 < clear.wavelength_m < 700e-9
    # Vega's photon flux per nm is nearly flat over 400-700 nm (f_lambda * lambda:
    # 2.8e5, 2.0e5, 1.4e5 at B, V, R), so 300 nm collect ~300/88 times V's 88 nm.
    ratio = clear.zero_point_flux / BANDS["V"].zero_point_flux
    assert ratio == pytest.approx(300 / 88, rel=0.1)


@pytest.mark.parametrize("band", sorted(BANDS))
def test_magnitude_round_trip(band):
    b = get_band(band)
    mags = np.array([-1.5, 0.0, 3.2, 12.0, 21.7])
    flux = b.mag_to_photon_flux(mags)
    np.testing.assert_allclose(b.photon_flux_to_mag(flux), mags, atol=1e-12)
    # 5 magnitudes = a factor 100 in flux
    assert b.mag_to_photon_flux(5.0) == pytest.approx(b.zero_point_flux / 100)
    assert isinstance(b.mag_to_photon_flux(1.0), float)


def test_band_errors():
    with pytest.raises(InputError, match=r"band must be one of \['G', 'V', 'clear'\].*'Q'"):
        get_band("Q")
    with pytest.raises(InputError, match="flux must be > 0"):
        BANDS["V"].photon_flux_to_mag(0.0)
    assert get_band(BANDS["G"]) is BANDS["G"]


# --------------------------------------------------------------------------- PSFs
PSF_CASES = {
    "gaussian": GaussianPSF(2.5),
    "moffat": MoffatPSF(3.0, beta=2.5),
    "moffat_b4": MoffatPSF(4.0, beta=4.0),
    "airy": AiryPSF(0.114, 550e-9, 0.3),
    "airy_obscured": AiryPSF(0.2, 550e-9, 0.2, obscuration=0.3),
    "seeing": SeeingPSF(0.1, 500e-9, 0.25),
    "moffat_jitter": MoffatPSF(3.0).with_jitter(1.0),
}


@pytest.mark.parametrize("name", sorted(PSF_CASES))
def test_kernel_normalised_and_fwhm(name):
    psf = PSF_CASES[name]
    k = psf.kernel()
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    c = k.shape[0] // 2
    assert np.unravel_index(np.argmax(k), k.shape) == (c, c)
    assert measured_fwhm(psf) == pytest.approx(psf.fwhm, rel=0.02)


def test_kernel_oversampled_is_centred_and_consistent():
    psf = MoffatPSF(3.0)
    k5 = psf.kernel(size=75, oversample=5)
    assert k5.sum() == pytest.approx(1.0)
    assert centroid(k5) == pytest.approx((37, 37), abs=1e-9)
    # binning the 5x-oversampled kernel reproduces the pixel kernel (cut to the same box)
    binned = bin_image(k5, 5)
    k1 = psf.kernel(size=15)
    np.testing.assert_allclose(binned / binned.sum(), k1 / k1.sum(), atol=2e-4)


def test_airy_fwhm_is_1_029_lambda_over_d():
    d, lam, scale = 0.114, 550e-9, 0.3
    psf = AiryPSF(d, lam, scale)
    expected_px = 1.029 * lam / d * ARCSEC_PER_RAD / scale
    assert psf.fwhm == pytest.approx(expected_px, rel=1e-3)
    assert measured_fwhm(psf) == pytest.approx(expected_px, rel=0.02)
    assert psf.lambda_over_d_px == pytest.approx(lam / d * ARCSEC_PER_RAD / scale)
    # The first dark ring at 1.22 lambda/D and the analytic encircled energy there (83.8 %).
    r1 = 1.2197 * psf.lambda_over_d_px
    assert psf.profile(np.array([r1]))[0] < 1e-6 * psf.profile(np.array([0.0]))[0]
    assert psf.encircled_energy(r1) == pytest.approx(0.838, abs=0.002)
    # Peak of the normalised pattern = collecting area / lambda^2 (per steradian).
    sr_per_px = (scale / ARCSEC_PER_RAD) ** 2
    assert psf.profile(np.array([0.0]))[0] == pytest.approx(
        math.pi * d**2 / 4 / lam**2 * sr_per_px, rel=1e-9
    )


def test_seeing_fwhm_is_0_98_lambda_over_r0():
    r0, lam, scale = 0.1, 500e-9, 0.25
    psf = SeeingPSF(r0, lam, scale)
    expected_px = 0.98 * lam / r0 * ARCSEC_PER_RAD / scale
    assert psf.fwhm == pytest.approx(expected_px, rel=1e-9)
    assert psf.fwhm_arcsec == pytest.approx(1.0108, rel=1e-3)
    assert measured_fwhm(psf) == pytest.approx(expected_px, rel=0.02)
    assert psf.beta == pytest.approx(4.765)


def test_jitter():
    g = GaussianPSF(3.0).with_jitter(1.0)
    assert g.sigma == pytest.approx(math.hypot(3.0 / 2.354820045, 1.0))
    # jitter of a Moffat broadens it; the measured FWHM agrees with the stated one
    m = MoffatPSF(3.0)
    mj = m.with_jitter(1.0)
    assert mj.fwhm > m.fwhm
    assert measured_fwhm(mj) == pytest.approx(mj.fwhm, rel=0.02)
    assert m.with_jitter(0) is m
    assert m.with_jitter(0.6).with_jitter(0.8).sigma_px == pytest.approx(1.0)
    with pytest.raises(InputError, match="sigma_px must be >= 0"):
        m.with_jitter(-1)


@pytest.mark.parametrize("psf", [GaussianPSF(2.5), MoffatPSF(3.0)])
def test_radius_keeps_999_per_mille(psf):
    assert psf.encircled_energy(psf.radius()) >= 0.999 - 1e-9
    assert psf.encircled_energy(psf.radius(0.5)) == pytest.approx(0.5, abs=1e-6)
    # half-light radius of a Gaussian = FWHM / 2
    if isinstance(psf, GaussianPSF):
        assert psf.radius(0.5) == pytest.approx(psf.fwhm / 2)


@pytest.mark.parametrize("name", sorted(PSF_CASES))
def test_render_conserves_flux_and_centroid(name):
    psf = PSF_CASES[name]
    rng = np.random.default_rng(42)
    size = 2 * psf._render_radius() + 12
    for _ in range(4):
        x, y = size / 2 + rng.uniform(-1, 1, 2)
        img = render_points((size, size), x, y, 1e4, psf)
        assert img.sum() == pytest.approx(1e4, rel=1e-3)
        cx, cy = centroid(img)
        assert abs(cx - x) < 0.01 and abs(cy - y) < 0.01


def test_gaussian_render_is_exact_pixel_integral():
    from scipy.special import erf

    psf = GaussianPSF(2.0)
    x, y = 10.3, 7.8
    img = psf.render((20, 24), x, y, 1.0)
    s = psf.sigma * math.sqrt(2)

    def integral(c, p):
        return 0.5 * (erf((p + 0.5 - c) / s) - erf((p - 0.5 - c) / s))

    for row, col in [(8, 10), (7, 11), (5, 13), (8, 14)]:
        assert img[row, col] == pytest.approx(integral(x, col) * integral(y, row), rel=1e-9)


def test_render_many_sources_is_linear_and_clips_at_edges():
    rng = np.random.default_rng(3)
    psf = MoffatPSF(2.5, beta=3.0)
    xs, ys, fs = rng.uniform(0, 100, 50), rng.uniform(0, 80, 50), rng.uniform(1, 100, 50)
    together = psf.render((80, 100), xs, ys, fs)
    separate = sum(psf.render((80, 100), x, y, f) for x, y, f in zip(xs, ys, fs, strict=True))
    np.testing.assert_allclose(together, separate, atol=1e-9)
    assert together.sum() < fs.sum()  # sources near the edges lose flux off the frame
    assert psf.render((8, 8), [-100.0], [4.0], [1.0]).sum() == 0.0
    assert psf.render((8, 8), [], [], []).shape == (8, 8)


def test_render_points_and_convolve_psf_agree():
    psf = MoffatPSF(3.0, beta=3.0)
    o = 5
    shape = (41, 45)
    yc, xc = subpixel_centers(shape, o)
    j, i = 101, 113  # a sub-pixel; its centre in native pixels:
    fine = np.zeros((shape[0] * o, shape[1] * o))
    fine[j, i] = 1.0
    conv = convolve_psf(fine, psf, oversample=o)
    direct = render_points(shape, xc[i], yc[j], 1.0, psf)
    assert conv.shape == shape
    assert conv.sum() == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(conv, direct, atol=1e-3 * direct.max())
    assert centroid(conv) == pytest.approx((xc[i], yc[j]), abs=0.01)


def test_add_sky_and_bin_image():
    img = np.zeros((4, 6))
    assert np.all(add_sky(img, 3.5) == 3.5)
    assert add_sky(img, np.ones((4, 1))).shape == (4, 6)
    assert np.all(img == 0)  # not modified in place
    with pytest.raises(InputError, match="sky level must be finite and >= 0"):
        add_sky(img, -1.0)
    assert bin_image(np.ones((6, 9)), 3).tolist() == [[9.0] * 3] * 2
    with pytest.raises(InputError, match="multiple of factor=4"):
        bin_image(np.ones((6, 9)), 4)


def test_psf_errors():
    with pytest.raises(InputError, match=r"PSF name must be one of \['airy', 'gaussian'.*'bessel'"):
        make_psf("bessel", fwhm=3)
    with pytest.raises(InputError, match="invalid parameters for PSF 'moffat'"):
        make_psf("moffat", sigma=3)
    with pytest.raises(InputError, match="fwhm must be a finite number > 0"):
        GaussianPSF(0)
    with pytest.raises(InputError, match="beta must be > 1"):
        MoffatPSF(3, beta=1.0)
    with pytest.raises(InputError, match="obscuration must be in"):
        AiryPSF(0.1, 5e-7, 1.0, obscuration=1.0)
    with pytest.raises(InputError, match="r0_m must be"):
        SeeingPSF(-0.1, 5e-7, 1.0)
    with pytest.raises(InputError, match="size must be a positive odd integer"):
        GaussianPSF(3).kernel(size=10)
    with pytest.raises(InputError, match="oversample must be an integer >= 1"):
        GaussianPSF(3).render((5, 5), 1, 1, 1, oversample=0)
    with pytest.raises(InputError, match="x, y and flux must be finite"):
        MoffatPSF(3).render((5, 5), np.nan, 1, 1)
    with pytest.raises(InputError, match="psf must be a skysift PSF"):
        render_points((5, 5), 1, 1, 1, psf="gaussian")
    psf = make_psf("gaussian", fwhm=3.0, jitter=0.5)
    assert psf.fwhm == pytest.approx(2.354820045 * math.hypot(3 / 2.354820045, 0.5))


# --------------------------------------------------------------------------- telescope
def test_telescope_photometry():
    tel = Telescope(0.114, focal_length_m=0.45, pixel_size_m=1.45e-6, obscuration=0.3)
    assert tel.collecting_area_m2 == pytest.approx(math.pi / 4 * 0.114**2 * (1 - 0.09))
    assert tel.pixel_scale_arcsec == pytest.approx(206264.806 * 1.45e-6 / 0.45)
    # 10 s on a V = 10 star
    expected = BANDS["V"].zero_point_flux * 1e-4 * tel.collecting_area_m2 * 10
    assert tel.star_photons(10.0, 10.0) == pytest.approx(expected)
    np.testing.assert_allclose(
        tel.star_photons(np.array([10.0, 12.5]), 10.0), [expected, expected / 10]
    )
    # sky of 21 mag/arcsec^2 = a star of 21 mag per arcsec^2 of pixel
    sky = tel.sky_photons_per_pixel(21.0, 10.0)
    assert sky == pytest.approx(tel.star_photons(21.0, 10.0) * tel.pixel_scale_arcsec**2)
    assert tel.seeing_psf(0.1).fwhm == pytest.approx(
        0.98 * 545e-9 / 0.1 * ARCSEC_PER_RAD / tel.pixel_scale_arcsec
    )
    assert tel.airy_psf().obscuration == 0.3
    assert Telescope(1.0, pixel_scale_arcsec=2.0, band="G").band.name == "G"


def test_telescope_errors():
    with pytest.raises(InputError, match="diameter_m must be a finite number > 0"):
        Telescope(0.0)
    with pytest.raises(InputError, match="pixel_scale_arcsec=1.0 disagrees"):
        Telescope(0.1, focal_length_m=0.45, pixel_size_m=1.45e-6, pixel_scale_arcsec=1.0)
    with pytest.raises(InputError, match="exposure_s must be >= 0 seconds, got -1"):
        Telescope(0.1).star_photons(10, -1)
    with pytest.raises(InputError, match="sky_photons_per_pixel needs pixel_scale_arcsec"):
        Telescope(0.1).sky_photons_per_pixel(21, 1)
    with pytest.raises(InputError, match="band must be one of"):
        Telescope(0.1, band="Z")
