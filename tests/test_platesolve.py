"""Tests of skysift.calibration.platesolve (tetra3rs) and .astrometry_net (solve-field).

Real data: the five tetra3 star-tracker frames (no WCS in the files: the check
is the RMS over many matched stars) and ASTRiDE's long.fits (header WCS).
Synthetic data: Gaia catalogue stars projected through a known TAN-SIP WCS.
The pattern database is built once per session into a temporary cache folder
(``SKYSIFT_CACHE``), never into the user's home.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning, Sip

from skysift.calibration import astrometry_net
from skysift.calibration.gaia import _cone
from skysift.calibration.platesolve import (
    PlateSolution,
    auto_sip_degree,
    cache_dir,
    fit_wcs_pairs,
    load_database,
    solve_plate,
)
from skysift.errors import CalibrationError, InputError, NotEnoughStarsError

DATA = Path(__file__).parent / "data"
TETRA3_FRAMES = sorted((DATA / "tetra3_startracker").glob("*.tiff"))
TETRA3_FOV_DEG = 11.4  # FLIR Blackfly S 2x2 binned, 35 mm lens (tests/data/README.md)
LONG_FITS = DATA / "astride_streak" / "long.fits"

needs_solve_field = pytest.mark.skipif(
    not astrometry_net.is_available(),
    reason="astrometry.net solve-field not installed (apt-get install astrometry.net "
    "astrometry-data-tycho2-07-littleendian astrometry-data-tycho2-08-littleendian)",
)


@pytest.fixture(scope="session")
def solver_cache(tmp_path_factory):
    """Point SKYSIFT_CACHE at a temporary folder and build the 8-16 deg database once."""
    from skysift.calibration import platesolve

    folder = tmp_path_factory.mktemp("skysift-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKYSIFT_CACHE", str(folder))
        mp.setattr(platesolve, "_DB_CACHE", {})  # build here, whatever other tests built in memory
        t0 = time.perf_counter()
        db = load_database((8.0, 16.0))
        build_s = time.perf_counter() - t0
        print(f"\ntetra3rs database 8-16 deg: {build_s:.1f} s, {db.num_patterns} patterns")
        yield folder


def _detect(image: np.ndarray) -> Table:
    """Stars of a real frame with skysift's detector (sep fallback while it is absent)."""
    try:
        from skysift.detection.stars import detect_stars
    except ImportError:  # pragma: no cover - early in the project only
        import sep

        data = image.astype(float)
        bkg = sep.Background(data)
        obj = sep.extract(data - bkg.back(), 3.0, err=bkg.globalrms, minarea=5)
        return Table({"x": obj["x"], "y": obj["y"], "flux": obj["flux"]})
    return detect_stars(image.astype(float))


def _synthetic_field(
    ra0, dec0, scale_arcsec, shape, *, rot_deg=30.0, sip=True, n_max=300, noise_px=0.05, rng=0
):
    """Gaia stars (bundled catalogue) seen through a known TAN(-SIP) WCS: (wcs, stars table)."""
    h, w = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if sip else ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = [(w + 1) / 2 + 7.3, (h + 1) / 2 - 4.1]
    th = np.radians(rot_deg)
    wcs.wcs.cd = (
        scale_arcsec / 3600 * np.array([[-np.cos(th), np.sin(th)], [np.sin(th), np.cos(th)]])
    )
    if sip:  # a little barrel-like distortion: ~1.5 px at the corners of a 1024 px frame
        a = np.zeros((4, 4))
        b = np.zeros((4, 4))
        k = 512.0 / w
        a[2, 0], b[0, 2], a[3, 0], b[1, 2] = 2e-6 * k, -1.5e-6 * k, -3e-9 * k**2, 2e-9 * k**2
        wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    wcs.pixel_shape = (w, h)
    cat = _cone(ra0, dec0, np.hypot(w, h) * scale_arcsec / 3600 / 2 * 1.2, None)
    x, y = wcs.all_world2pix(cat["ra"], cat["dec"], 0)
    inside = (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
    order = np.argsort(cat["mag"][inside])[:n_max]
    gen = np.random.default_rng(rng)
    stars = Table(
        {
            "x": x[inside][order] + gen.normal(0, noise_px, len(order)),
            "y": y[inside][order] + gen.normal(0, noise_px, len(order)),
            "flux": 10 ** (-0.4 * cat["mag"][inside][order]),
        }
    )
    return wcs, stars


def _max_pixel_disagreement(wcs_a, wcs_b, shape, n=15):
    """Largest pixel distance between a grid and its image through wcs_a -> sky -> wcs_b."""
    h, w = shape
    gx, gy = np.meshgrid(np.linspace(0, w - 1, n), np.linspace(0, h - 1, n))
    ra, dec = wcs_a.all_pix2world(gx.ravel(), gy.ravel(), 0)
    x, y = wcs_b.all_world2pix(ra, dec, 0)
    return float(np.max(np.hypot(x - gx.ravel(), y - gy.ravel())))


# ----------------------------------------------------------------------------- real data
@pytest.mark.slow
@pytest.mark.parametrize("path", TETRA3_FRAMES, ids=lambda p: p.name[18:-10])
def test_tetra3_frames_solve_blind(solver_cache, path):
    import tifffile

    image = tifffile.imread(path)
    stars = _detect(image)
    t0 = time.perf_counter()
    sol = solve_plate(stars, image.shape, fov_deg=TETRA3_FOV_DEG, sip_degree=3)
    dt = time.perf_counter() - t0
    print(
        f"{path.name}: {len(stars)} stars, {sol.n_matched} matched, "
        f"RMS {sol.rms_px:.3f} px, SIP {sol.meta['sip_degree']}, {dt:.2f} s"
    )
    assert sol.backend == "tetra3rs"
    assert sol.n_matched >= 50
    assert sol.rms_px <= 1.0
    assert np.all(sol.matches["residual_px"] < 3.0)
    assert 11.2 < sol.fov_deg < 11.6
    assert 39.0 < sol.pixel_scale_arcsec < 41.0
    # matches point back to the rows of the input table
    row = stars[np.asarray(sol.matches["star_index"])]
    np.testing.assert_allclose(row["x"], sol.matches["x"])
    assert all(c.startswith(("Gaia DR3 ", "HIP ")) for c in sol.matches["catalog_id"])
    # the refined WCS agrees with tetra3rs' own pinhole solution on the pointing
    t3 = sol.meta["tetra3rs"]
    boresight = SkyCoord(t3["ra_deg"], t3["dec_deg"], unit="deg")
    assert sol.center.separation(boresight).deg < 0.1


@pytest.mark.slow
def test_tetra3_pointings_agree_with_file_names(solver_cache):
    """Independent truth: the frames were taken at one instant from one site, pointing
    at the altitude/azimuth in their names, so the angular distances between the
    solved centres must equal those between the nominal pointings (mount accuracy
    and refraction allow a few degrees; a wrong solution would be off by tens)."""
    import itertools
    import re

    import tifffile

    centres, nominal = [], []
    for path in TETRA3_FRAMES:
        image = tifffile.imread(path)
        centres.append(solve_plate(_detect(image), image.shape, fov_deg=TETRA3_FOV_DEG).center)
        alt, az = (float(v) for v in re.search(r"Alt(-?\d+)_Azi(-?\d+)", path.name).groups())
        nominal.append(SkyCoord(az, alt, unit="deg", frame="altaz"))
    for i, j in itertools.combinations(range(len(centres)), 2):
        solved = centres[i].separation(centres[j]).deg
        expected = nominal[i].separation(nominal[j]).deg
        assert abs(solved - expected) < 3.0, (TETRA3_FRAMES[i].name, TETRA3_FRAMES[j].name)


@pytest.mark.slow
def test_unknown_fov_within_range_gives_same_solution(solver_cache):
    import tifffile

    image = tifffile.imread(TETRA3_FRAMES[0])
    stars = _detect(image)
    known = solve_plate(stars, image.shape, fov_deg=TETRA3_FOV_DEG)
    blind = solve_plate(stars, image.shape, fov_range=(8.0, 16.0))
    assert _max_pixel_disagreement(known.wcs, blind.wcs, image.shape) < 0.1


@pytest.mark.slow
@needs_solve_field
def test_long_fits_astrometry_net_agrees_with_header():
    """long.fits (0.43 deg) is too narrow for the G < 10 catalogue: astrometry.net backend.

    Known outcome with Debian's Tycho-2 index files (07, 08): no solution. The
    header WCS is itself inconsistent with the sky: it puts Gaia stars of
    G = 8.6 and 9.0 at pixels (340.6, 342.0) and (364.1, 275.9), where the
    frame shows blank background, and solve-field's verification of the header
    WCS against Tycho-2 gives log-odds 0. A deeper index (2MASS/Gaia 52xx) is
    needed to solve it; then the assertion below applies.
    """
    image = fits.getdata(LONG_FITS).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # DATE-OBS '26/07/102'
        header_wcs = WCS(fits.getheader(LONG_FITS)).celestial
    stars = _detect(image)
    try:
        sol = solve_plate(stars, image.shape, fov_deg=0.43, backend="auto", timeout_s=6)
    except CalibrationError as exc:
        pytest.xfail(f"long.fits does not solve with the installed index files: {exc}")
    assert sol.backend == "astrometry.net"
    assert _max_pixel_disagreement(header_wcs, sol.wcs, image.shape) <= 2.0


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_tan_sip_recovered(solver_cache):
    shape = (768, 1024)
    truth, stars = _synthetic_field(83.8, -5.4, 40.0, shape, rng=1)
    sol = solve_plate(stars, shape, fov_deg=TETRA3_FOV_DEG, sip_degree=3)
    assert sol.meta["sip_degree"] == 3
    assert sol.n_matched >= 250
    # CRVAL: the sky position of the true reference pixel, within 1 arcsec
    crpix0 = truth.wcs.crpix - 1
    ra, dec = sol.wcs.all_pix2world([crpix0[0]], [crpix0[1]], 0)
    true_ref = SkyCoord(*truth.wcs.crval, unit="deg")
    assert true_ref.separation(SkyCoord(ra[0], dec[0], unit="deg")).arcsec < 1.0
    assert _max_pixel_disagreement(truth, sol.wcs, shape) < 0.1


def test_mirrored_field_solves(solver_cache):
    """A mirror image (det CD > 0, as through a diagonal mirror) solves as well."""
    shape = (768, 1024)
    truth, stars = _synthetic_field(300.0, -60.0, 40.0, shape, rng=5)
    stars["x"] = (shape[1] - 1) - stars["x"]
    sol = solve_plate(stars, shape, fov_deg=TETRA3_FOV_DEG)
    assert np.linalg.det(sol.wcs.wcs.cd) > 0
    gx, gy = np.meshgrid(np.linspace(0, 1023, 11), np.linspace(0, 767, 11))
    ra, dec = truth.all_pix2world(gx.ravel(), gy.ravel(), 0)
    x, y = sol.wcs.all_world2pix(ra, dec, 0)
    assert np.max(np.hypot(x - (1023 - gx.ravel()), y - gy.ravel())) < 0.1


def test_save_load_round_trip(solver_cache, tmp_path):
    shape = (768, 1024)
    _, stars = _synthetic_field(200.0, 40.0, 40.0, shape, rng=2)
    sol = solve_plate(stars, shape, fov_deg=TETRA3_FOV_DEG)
    path = sol.save(tmp_path / "calibration.wcs.fits")
    hdr = fits.getheader(path)
    assert hdr["CTYPE1"] == "RA---TAN-SIP" and hdr["A_ORDER"] == 3 and hdr["AP_ORDER"] == 4
    assert hdr["IMAGEW"] == 1024 and hdr["PSNMATCH"] == sol.n_matched
    assert hdr["NAXIS"] == 2 and hdr["NAXIS1"] == 0  # no NAXIS 0: WCS(header) does not warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert WCS(hdr).has_celestial
    back = PlateSolution.load(path)
    assert back.backend == "tetra3rs" and back.n_matched == sol.n_matched
    assert back.shape == shape
    assert list(back.matches["catalog_id"]) == list(sol.matches["catalog_id"])
    assert back.matches.meta["catalog_mag_band"] == sol.matches.meta["catalog_mag_band"]
    assert back.matches.meta["catalog_epoch"] == 2016.0
    np.testing.assert_allclose(back.matches["residual_px"], sol.matches["residual_px"])
    assert back.rms_px == pytest.approx(sol.rms_px)
    assert _max_pixel_disagreement(sol.wcs, back.wcs, shape) < 1e-6
    # a bare WCS header file (astrometry.net's .wcs) loads with no matches
    bare = tmp_path / "frame.wcs"
    hdr = sol.wcs.to_header(relax=True)
    hdr["IMAGEW"], hdr["IMAGEH"] = 1024, 768
    fits.PrimaryHDU(header=hdr).writeto(bare)
    plain = PlateSolution.load(bare)
    assert plain.n_matched == 0 and np.isnan(plain.rms_px) and plain.shape == shape
    assert abs(plain.fov_deg - sol.fov_deg) < 1e-6
    (tmp_path / "junk.fits").write_text("not a FITS file")
    with pytest.raises(InputError, match="cannot read plate solution"):
        PlateSolution.load(tmp_path / "junk.fits")
    # the inverse SIP (AP, BP) written for other software inverts the forward one
    # (round trip pix -> foc -> pix; astropy's foc2pix adds a constant origin offset)
    gx, gy = np.meshgrid(np.linspace(0, 1023, 9), np.linspace(0, 767, 9))
    pix = np.column_stack([gx.ravel(), gy.ravel()])
    assert np.abs(back.wcs.sip.pix2foc(pix, 0) - (pix + 1 - back.wcs.wcs.crpix)).max() > 0.5
    round_trip = back.wcs.sip.foc2pix(back.wcs.sip.pix2foc(pix, 0), 0) - pix
    assert np.ptp(round_trip, axis=0).max() < 0.05


def test_fit_wcs_pairs_recovers_tan():
    shape = (600, 800)
    truth, stars = _synthetic_field(10.0, 60.0, 30.0, shape, sip=False, n_max=12, noise_px=0.0)
    xy = np.column_stack([stars["x"], stars["y"]])
    radec = np.column_stack(truth.all_pix2world(xy[:, 0], xy[:, 1], 0))
    sol = fit_wcs_pairs(xy, radec, shape)
    assert sol.backend == "manual" and sol.n_matched == 12
    assert sol.rms_px < 0.01
    assert _max_pixel_disagreement(truth, sol.wcs, shape) < 0.01


def test_fit_wcs_pairs_needs_four_pairs():
    with pytest.raises(InputError, match="at least 4 star pairs"):
        fit_wcs_pairs(np.zeros((3, 2)), np.zeros((3, 2)), (100, 100))
    with pytest.raises(InputError, match=r"shape \(N, 2\)"):
        fit_wcs_pairs(np.zeros((5, 3)), np.zeros((5, 2)), (100, 100))


@needs_solve_field
def test_astrometry_net_synthetic():
    shape = (1000, 1200)
    truth, stars = _synthetic_field(250.0, 36.0, 7.0, shape, rng=3)
    sol = astrometry_net.solve_field(stars, shape, fov_deg=7.0 * 1200 / 3600, timeout_s=30)
    assert sol.backend == "astrometry.net"
    assert sol.n_matched >= 20
    assert sol.matches["catalog_id"][0].startswith("index-41")
    row = stars[np.asarray(sol.matches["star_index"])]
    np.testing.assert_allclose(row["x"], sol.matches["x"])  # 1-based xylist undone
    assert _max_pixel_disagreement(truth, sol.wcs, shape) < 0.3


# ----------------------------------------------------------------------------- errors
def test_too_few_stars():
    stars = Table({"x": [10.0, 20.0, 30.0], "y": [5.0, 50.0, 80.0], "flux": [3.0, 2.0, 1.0]})
    with pytest.raises(NotEnoughStarsError, match="at least 4 stars"):
        solve_plate(stars, (100, 100), fov_deg=10.0)


def test_bad_inputs():
    stars = Table({"x": [1.0] * 5, "y": [1.0] * 5})
    with pytest.raises(InputError, match="lacks column"):
        solve_plate(stars, (100, 100))
    ok = Table({"x": [1.0] * 5, "y": [1.0] * 5, "flux": [1.0] * 5})
    with pytest.raises(InputError, match="backend must be one of"):
        solve_plate(ok, (100, 100), backend="gaia")
    with pytest.raises(InputError, match=r"shape must be \(height, width\)"):
        solve_plate(ok, 100)
    with pytest.raises(InputError, match="fov_range must satisfy"):
        solve_plate(ok, (100, 100), fov_range=(10.0, 5.0))


def test_narrow_field_refused_by_tetra3rs():
    ok = Table({"x": np.arange(10.0), "y": np.arange(10.0), "flux": np.ones(10)})
    with pytest.raises(CalibrationError, match="narrower than"):
        solve_plate(ok, (512, 512), fov_deg=0.4, backend="tetra3rs")


def test_random_dots_do_not_solve(solver_cache):
    gen = np.random.default_rng(42)
    n = 150
    stars = Table(
        {"x": gen.uniform(0, 1023, n), "y": gen.uniform(0, 767, n), "flux": gen.pareto(1.5, n) + 1}
    )
    with pytest.raises(CalibrationError, match="no solution"):
        solve_plate(stars, (768, 1024), fov_deg=TETRA3_FOV_DEG, timeout_s=5)


# ----------------------------------------------------------------------------- database
def test_database_cached_on_disk_and_reused(solver_cache, monkeypatch):
    from skysift.calibration import platesolve

    files = sorted((solver_cache / "tetra3rs").glob("tetra3rs-*_fov8-16.bin"))
    assert len(files) == 1
    assert cache_dir() == solver_cache
    # a fresh process (empty memory cache) loads the file instead of rebuilding
    monkeypatch.setattr(platesolve, "_DB_CACHE", {})
    t0 = time.perf_counter()
    db = load_database((9.0, 14.0))  # contained in 8-16: reused
    assert time.perf_counter() - t0 < 3.0
    assert (db.min_fov_deg, round(db.max_fov_deg)) == (8.0, 16)
    # an explicit database object is used as given
    _, stars = _synthetic_field(120.0, 20.0, 40.0, (768, 1024), rng=4)
    sol = solve_plate(stars, (768, 1024), fov_deg=TETRA3_FOV_DEG, database=db)
    assert sol.meta["database"]["fov_range_deg"][0] == 8.0


def test_epoch_moves_high_proper_motion_stars(solver_cache):
    from astropy.time import Time

    shape = (768, 1024)
    _, stars = _synthetic_field(83.8, -5.4, 40.0, shape, rng=6)
    a = solve_plate(stars, shape, fov_deg=TETRA3_FOV_DEG)
    b = solve_plate(stars, shape, fov_deg=TETRA3_FOV_DEG, epoch=Time("2026-01-01"))
    assert a.matches.meta["catalog_epoch"] == 2016.0
    assert b.matches.meta["catalog_epoch"] == pytest.approx(2026.0, abs=0.01)
    with pytest.raises(InputError, match="epoch must be"):
        solve_plate(stars, shape, fov_deg=TETRA3_FOV_DEG, epoch=-5)


def test_bad_fov_range_for_database():
    with pytest.raises(InputError, match="fov_range must satisfy"):
        load_database((0.0, 10.0))


# ----------------------------------------------------------------------------- helpers
def test_auto_sip_degree():
    assert auto_sip_degree(500, 3) == 3
    assert auto_sip_degree(40, 3) == 2
    assert auto_sip_degree(20, 3) == 0
    assert auto_sip_degree(500, None) == 0


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SKYSIFT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SKYSIFT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "skysift"
