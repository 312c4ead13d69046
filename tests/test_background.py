"""Background maps: the morphological opening background (rolling ball)."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.detection.background import opening_background, opening_background_rms
from skysift.errors import InputError
from skysift.simulation.psf import GaussianPSF


def _sky(rng, size=128, sigma=2.0):
    yy, xx = np.mgrid[0:size, 0:size]
    sky = 50 + 0.2 * xx + 8 * np.exp(-((xx - 80) ** 2 + (yy - 40) ** 2) / (2 * 15.0**2))
    stars = GaussianPSF(2.5).render(
        (size, size), [30.2, 64.7, 100.1], [40.5, 90.2, 20.9], [3000.0, 800.0, 5000.0]
    )
    noise = sigma * rng.standard_normal((size, size))
    return sky, stars, (sky + stars + noise).astype(np.float32)


def test_opening_background_removes_stars_and_keeps_the_sky():
    rng = np.random.default_rng(0)
    sigma = 2.0
    sky, stars, img = _sky(rng, sigma=sigma)
    bkg = opening_background(img, radius=5.0, smooth_sigma=1.0, box_size=32)
    inner = (slice(8, -8), slice(8, -8))
    # the sky (gradient + a wide bump) within 0.3 sigma on average, 1 sigma everywhere
    err = (bkg - sky)[inner]
    assert abs(float(np.mean(err))) < 0.3 * sigma
    assert float(np.percentile(np.abs(err), 99.5)) < 1.0 * sigma
    # the stars are not in the background: their flux stays in image - background (within 5 %)
    resid = img - bkg
    for x, y, f in ((30.2, 40.5, 3000.0), (64.7, 90.2, 800.0), (100.1, 20.9, 5000.0)):
        xi, yi = round(x), round(y)
        s = resid[yi - 6 : yi + 7, xi - 6 : xi + 7].sum()
        assert abs(s - f) < 0.05 * f + 13 * 13 * 0.3 * sigma


def test_opening_background_mask_and_errors():
    rng = np.random.default_rng(1)
    _, _, img = _sky(rng)
    mask = np.zeros(img.shape, bool)
    mask[:, :20] = True  # a masked strip (a tree line) far brighter than the sky
    img[:, :20] = 5000.0
    img[5, 60] = np.nan
    bkg = opening_background(img, mask, radius=5.0, smooth_sigma=1.0)
    # masked and non-finite pixels keep their value; the bright strip does not leak into the sky
    assert np.all(bkg[:, :20] == 5000.0)
    assert np.isnan(bkg[5, 60])
    assert float(np.max(bkg[10:-10, 22:40])) < 120.0
    with pytest.raises(InputError, match="radius"):
        opening_background(img, radius=0)
    with pytest.raises(InputError, match="smooth_sigma"):
        opening_background(img, smooth_sigma=-1)
    with pytest.raises(InputError, match="mask shape"):
        opening_background(img, np.zeros((3, 3), bool))
    with pytest.raises(InputError, match="2-D"):
        opening_background(np.zeros(10))


def test_opening_background_rms_and_fully_masked_image():
    rng = np.random.default_rng(2)
    sigma = 2.0
    _, _, img = _sky(rng, sigma=sigma)
    # the rms of image - opening is the pixel noise (within 15 %), sky structure and stars aside
    _, rms = opening_background_rms(img, radius=5.0, smooth_sigma=1.0, box_size=32)
    assert abs(float(np.median(rms[8:-8, 8:-8])) - sigma) < 0.15 * sigma
    # no sky pixel at all: the image comes back unchanged, with a finite rms
    bkg, rms = opening_background_rms(img, np.ones(img.shape, bool), radius=5.0)
    np.testing.assert_array_equal(bkg, img)
    assert np.all(np.isfinite(rms))
