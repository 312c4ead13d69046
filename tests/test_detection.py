"""Star detection and sky masks, on synthetic frames with truth and on real frames."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image
from scipy.spatial import cKDTree

from skysift.detection import StarFlag, caption_text_mask, detect_stars, fisheye_circle, sky_mask
from skysift.errors import InputError, NoDetectionsWarning
from skysift.simulation import make_star_field


def _match(det, truth, radius):
    tree = cKDTree(np.column_stack([det["x"], det["y"]]))
    d, i = tree.query(np.column_stack([truth["x"], truth["y"]]), distance_upper_bound=radius)
    return d, i


def test_detects_synthetic_stars_with_subpixel_centroids():
    image, truth = make_star_field(
        (256, 256), 40, fwhm=3.0, flux_range=(3e3, 1e5), min_separation=12, rng=1
    )
    stars = detect_stars(image, threshold_sigma=5)
    d, i = _match(stars, truth, 2.0)
    found = np.isfinite(d)
    assert found.mean() >= 0.95  # recall of well-separated stars above ~30 sigma
    assert np.median(d[found]) < 0.1  # pixels
    assert np.percentile(d[found], 90) < 0.25
    # FWHM within 10% of truth.
    assert abs(np.median(stars["fwhm"][i[found]]) - 3.0) < 0.3
    # Fluxes within 5% (aperture of 1.5 FWHM holds ~99.6% of a Gaussian's flux).
    ratio = stars["flux"][i[found]] / truth["flux"][found]
    assert abs(np.median(ratio) - 1) < 0.05
    # Few spurious detections.
    assert len(stars) <= len(truth) + 3


def test_flags_saturated_edge_and_elongated():
    image, _ = make_star_field((128, 128), 0, rng=2)
    yy, xx = np.mgrid[0:128, 0:128]
    image = image + 60000 * np.exp(-((xx - 64) ** 2 + (yy - 64) ** 2) / (2 * 1.5**2))
    image = np.minimum(image, 30000).astype(np.float32)  # saturated star at (64, 64)
    image += (3000 * np.exp(-((xx - 2) ** 2 + (yy - 90) ** 2) / 2.0)).astype(
        np.float32
    )  # edge star
    trail = (np.abs((yy - 30) - 0.0 * xx) < 1.0) & (xx > 20) & (xx < 60)
    image[trail] += 2000  # a short trail
    stars = detect_stars(image, threshold_sigma=5, saturation=30000)
    sat = stars[np.hypot(stars["x"] - 64, stars["y"] - 64) < 1.0]
    assert len(sat) == 1 and sat["flags"][0] & StarFlag.SATURATED
    edge = stars[np.hypot(stars["x"] - 2, stars["y"] - 90) < 1.5]
    assert len(edge) == 1 and edge["flags"][0] & StarFlag.EDGE
    tr = stars[np.abs(stars["y"] - 30) < 2]
    assert len(tr) == 1 and tr["flags"][0] & StarFlag.ELONGATED


def test_deblends_close_pair():
    image, _ = make_star_field((96, 96), 0, rng=3)
    yy, xx = np.mgrid[0:96, 0:96]
    for x0 in (44.0, 51.0):  # two stars 7 px apart (2.3 FWHM)
        image += (
            20000 / (2 * np.pi * 1.3**2) * np.exp(-((xx - x0) ** 2 + (yy - 48) ** 2) / (2 * 1.3**2))
        ).astype(np.float32)
    stars = detect_stars(image, threshold_sigma=5)
    assert len(stars) == 2
    assert np.allclose(sorted(stars["x"]), [44.0, 51.0], atol=0.3)
    assert all(stars["flags"] & StarFlag.BLENDED)


def test_empty_frame_warns_and_returns_full_schema():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 5, (64, 64)).astype(np.float32)
    with pytest.warns(NoDetectionsWarning):
        stars = detect_stars(image, threshold_sigma=8)
    assert len(stars) == 0
    assert {"x", "y", "flux", "flux_err", "fwhm", "peak", "flags"} <= set(stars.colnames)


def test_bad_inputs():
    with pytest.raises(InputError, match="2-D image"):
        detect_stars(np.zeros(10))
    with pytest.raises(InputError, match="unknown star detection method 'nope'; valid: classical"):
        detect_stars(np.zeros((10, 10)), method="nope")
    with pytest.raises(InputError, match="mask shape"):
        detect_stars(np.zeros((10, 10)), mask=np.zeros((5, 5), bool))
    with pytest.raises(InputError, match="threshold_sigma must be > 0"):
        detect_stars(np.zeros((10, 10)), threshold_sigma=0)


def test_fisheye_circle_on_synthetic_disc():
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(5)
    image = np.where((xx - 210.0) ** 2 + (yy - 140.0) ** 2 < 120.0**2, 1000.0, 50.0) + rng.normal(
        0, 5, (h, w)
    )
    circle = fisheye_circle(image)
    assert circle is not None
    xc, yc, r = circle
    assert abs(xc - 210) < 3 and abs(yc - 140) < 3 and abs(r - 120) < 4


def test_no_fisheye_circle_on_flat_field():
    image, _ = make_star_field((200, 300), 30, rng=6)
    assert fisheye_circle(image) is None
    assert not sky_mask(image).mask.any()


def test_magic_sky_mask_keeps_sky_and_drops_ring_and_structures(data_dir):
    image = fits.getdata(data_dir / "magic_allsky" / "20180817_0055.fits").astype(np.float32)
    m = sky_mask(image)
    assert m.circle is not None
    xc, yc, r = m.circle
    # Centre of the fisheye disc and its radius, read off the frame by eye: (722, 555), ~485 px.
    assert abs(xc - 722) < 10 and abs(yc - 555) < 10 and abs(r - 485) < 15
    assert m.mask[0, 0] and m.mask[1039, 1391]  # corners: outside the circle
    assert not m.mask[555, 722]  # zenith is sky
    # The telescope structure at the top of the frame (x ~ 740..925, y ~ 0..170) is masked.
    assert m.mask[120, 820] and m.mask[150, 880]


def test_umd_caption_text_is_masked(data_dir):
    rgb = np.asarray(Image.open(data_dir / "umd_allsky" / "Meteor-20191028.png"), dtype=np.float32)
    lum = rgb @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    text = caption_text_mask(lum)
    # The three caption lines occupy x ~ 15..440, y ~ 15..105 (read off the frame).
    assert text[30, 100] and text[65, 100] and text[92, 300]
    assert text[:200, :500].sum() > 0.9 * text.sum()  # nothing outside the caption corner
    stars = detect_stars(lum, sky_mask(lum).mask)
    assert len(stars) > 40
    assert not np.any((stars["x"] < 450) & (stars["y"] < 110))


def test_detection_cap_is_named_when_hit():
    """More sources than max_objects: the brightest are kept and a warning says so."""
    from skysift.detection.stars import ClassicalStarFinder
    from skysift.errors import DetectionCapWarning

    image, truth = make_star_field((128, 128), n_stars=40, rng=5, min_separation=8.0)
    with pytest.warns(DetectionCapWarning, match=r"kept the 10 brightest \(max_objects"):
        t = ClassicalStarFinder(threshold_sigma=5.0, max_objects=10)(image)
    assert len(t) == 10 and t.meta["capped"] and t.meta["n_found"] >= 30
    full = ClassicalStarFinder(threshold_sigma=5.0)(image)
    assert not full.meta["capped"]
    # the kept ten are detections of the full run, among its brightest
    d, idx = cKDTree(np.c_[full["x"], full["y"]]).query(np.c_[t["x"], t["y"]])
    assert np.all(d < 0.05)
    rank = np.argsort(np.argsort(-np.asarray(full["flux"])))[idx]
    assert np.median(rank) < 10
