"""Tests of skysift.calibration.fitswcs (a FITS WCS for all-sky calibrations) and of the
FITS files of skysift.calibration.report (calibration.wcs.fits, calibrated.fits).

Truth: the fisheye camera model itself. A WCS "agrees within 1 px" when, for
pixels of the image above 20 deg elevation, the sky position the WCS gives
maps back through the camera model to within 1 px, and the pixel the WCS gives
for a sky position is within 1 px of the camera model's.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from skysift.calibration.camera import FisheyeCamera, SkyCamera
from skysift.calibration.fisheye import FisheyeModel, FisheyeSolution
from skysift.calibration.fitswcs import fisheye_to_fits_wcs, fisheye_wcs_header
from skysift.calibration.frame import CalibrationResult
from skysift.calibration.photometric import ZeroPointFit
from skysift.calibration.plate import PlateSolution
from skysift.calibration.platesolve import fit_wcs_pairs
from skysift.calibration.report import write_calibrated_fits, write_calibration
from skysift.errors import CalibrationError, InputError
from skysift.io import read_frame
from skysift.io.frame import Frame, Site

LA_PALMA = Site(28.7619, -17.8908, 2200.0)
SHAPE = (1040, 1392)
TIME = Time("2015-12-20T04:07:10")
MAGIC = Path(__file__).parent / "data" / "magic_allsky" / "20180817_0055.fits"

#: Equidistant, and a distorted, tilted, mirrored lens (as in test_fisheye.py).
MODELS = {
    "equidistant": FisheyeModel(700.3, 515.8, 123.4, (330.0,), parity=1, shape=SHAPE),
    "distorted": FisheyeModel(
        700.3, 515.8, 303.4, (330.0, -6.0, 1.5), parity=-1, tilt=(0.4, -0.3), shape=SHAPE
    ),
}


def _sky_pixels(model: FisheyeModel, shape, n=400, min_alt=20.0, rng=0):
    """Random pixels of the image above ``min_alt`` (not on the fitting grid)."""
    gen = np.random.default_rng(rng)
    h, w = shape
    x, y = gen.uniform(-0.5, w - 0.5, 20 * n), gen.uniform(-0.5, h - 0.5, 20 * n)
    alt, az = model.pixel_to_altaz(x, y)
    x2, y2 = model.altaz_to_pixel(alt, az)
    ok = (alt >= min_alt) & (np.hypot(x2 - x, y2 - y) < 1e-3)
    return x[ok][:n], y[ok][:n]


def _agreement(wcs: WCS, camera: FisheyeCamera, x, y) -> tuple[float, float]:
    """Largest pixel error of pixel -> sky (WCS) -> pixel (camera), and sky -> pixel."""
    ra, dec = wcs.all_pix2world(x, y, 0)
    cx, cy = camera.radec_to_pixel(ra, dec)
    forward = float(np.max(np.hypot(cx - x, cy - y)))
    tra, tdec = camera.pixel_to_radec(x, y)
    wx, wy = wcs.all_world2pix(tra, tdec, 0, tolerance=1e-6, maxiter=100)
    backward = float(np.max(np.hypot(wx - x, wy - y)))
    return forward, backward


def _read_quietly(path: Path) -> tuple[fits.Header, np.ndarray | None, WCS]:
    """Open a FITS file and build its WCS with every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(path) as hdul:
            header = hdul[0].header.copy()
            data = None if hdul[0].data is None else np.array(hdul[0].data)
        return header, data, WCS(header)


# ----------------------------------------------------------------------------- simulated
@pytest.mark.parametrize("name", sorted(MODELS))
def test_allsky_wcs_agrees_with_the_camera_model_within_1px(name):
    model = MODELS[name]
    camera = FisheyeCamera("fisheye", model, LA_PALMA, TIME)
    wcs, stats = fisheye_to_fits_wcs(camera, SHAPE)
    assert stats.max_px < 0.2  # the default search stops below 0.2 px
    assert stats.inverse_max_px < 1.0
    assert stats.projection in ("ARC", "ZEA") and 2 <= stats.sip_order <= 9
    assert wcs.wcs.ctype[0] == f"RA---{stats.projection}-SIP"
    assert wcs.pixel_shape == (SHAPE[1], SHAPE[0])
    # independent check on random pixels, through the header as another program reads it
    header = fisheye_wcs_header(wcs, stats)
    assert header["WCSMAXER"] == pytest.approx(stats.max_px, abs=1e-4)
    assert header["WCSMINAL"] == 20.0 and header["IMAGEW"] == SHAPE[1]
    assert header["DATE-AVG"].startswith("2015-12-20T04:07:10")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_back = WCS(header)
    x, y = _sky_pixels(model, SHAPE)
    forward, backward = _agreement(read_back, camera, x, y)
    assert forward < 1.0 and backward < 1.0
    # the zenith (at the tilt's offset from the axis) is where the WCS says
    zx, zy = model.zenith_pixel
    zra, zdec = camera.pixel_to_radec(np.array([zx]), np.array([zy]))
    wx, wy = read_back.all_world2pix(zra, zdec, 0)
    assert np.hypot(wx[0] - zx, wy[0] - zy) < 0.05


def test_error_falls_with_the_sip_order():
    """Order 2 cannot follow a distorted lens over 70 deg; order 5 gets well under 1 px."""
    model = MODELS["distorted"]
    _, low = fisheye_to_fits_wcs(model, SHAPE, TIME, LA_PALMA, sip_order=2, projection="ZEA")
    _, high = fisheye_to_fits_wcs(model, SHAPE, TIME, LA_PALMA, sip_order=5, projection="ZEA")
    assert low.max_px > 2.0
    assert high.max_px < 0.1 < low.max_px / 20
    assert list(high.tried) == ["ZEA-5"]


def test_wider_sky_is_harder():
    """Down to 5 deg elevation the same order is still within 1 px for this lens."""
    model = MODELS["distorted"]
    _, s20 = fisheye_to_fits_wcs(model, SHAPE, TIME, LA_PALMA, sip_order=4)
    _, s5 = fisheye_to_fits_wcs(model, SHAPE, TIME, LA_PALMA, sip_order=4, min_alt_deg=5.0)
    assert s5.n_points > s20.n_points
    assert s5.max_px >= s20.max_px


def test_bad_inputs_raise():
    model = MODELS["equidistant"]
    with pytest.raises(InputError, match="source must be a fisheye"):
        fisheye_to_fits_wcs("calibration.json", SHAPE, TIME, LA_PALMA)
    with pytest.raises(InputError, match="needs its site and time"):
        fisheye_to_fits_wcs(model, SHAPE)
    with pytest.raises(InputError, match="needs its time"):
        fisheye_to_fits_wcs(model, SHAPE, site=LA_PALMA)
    with pytest.raises(InputError, match="image shape"):
        fisheye_to_fits_wcs(FisheyeModel(10.0, 10.0, 0.0, (5.0,)), None, TIME, LA_PALMA)
    with pytest.raises(InputError, match="time must be"):
        fisheye_to_fits_wcs(model, SHAPE, "yesterday", LA_PALMA)
    with pytest.raises(InputError, match="site must be"):
        fisheye_to_fits_wcs(model, SHAPE, TIME, (28.7, -17.9))
    with pytest.raises(InputError, match="projection must be"):
        fisheye_to_fits_wcs(model, SHAPE, TIME, LA_PALMA, projection="TAN")
    with pytest.raises(InputError, match="sip_order must be"):
        fisheye_to_fits_wcs(model, SHAPE, TIME, LA_PALMA, sip_order=1)
    with pytest.raises(InputError, match="min_alt_deg must be"):
        fisheye_to_fits_wcs(model, SHAPE, TIME, LA_PALMA, min_alt_deg=95)
    with pytest.raises(CalibrationError, match="too few pixels"):
        fisheye_to_fits_wcs(model, SHAPE, TIME, LA_PALMA, min_alt_deg=88.9)


# ----------------------------------------------------------------------------- files
def _zero_point() -> ZeroPointFit:
    return ZeroPointFit(
        zero_point=10.325,
        zero_point_err=0.015,
        extinction_k=0.121,
        extinction_k_err=0.01,
        rms_mag=0.21,
        n_used=439,
        terms=("zero_point", "extinction"),
    )


def _fisheye_result(frame: Frame, model: FisheyeModel, site: Site, time: Time):
    """A fisheye CalibrationResult with a few matches placed by the model itself."""
    alt = np.array([30.0, 45.0, 60.0, 75.0, 50.0])
    az = np.array([10.0, 100.0, 200.0, 300.0, 250.0])
    x, y = model.altaz_to_pixel(alt, az)
    ra, dec = FisheyeCamera("fisheye", model, site, time).altaz_to_radec(alt, az)
    matches = Table(
        {
            "star_index": np.arange(5),
            "x": x,
            "y": y,
            "catalog_id": [f"HIP {i}" for i in range(5)],
            "ra": ra,
            "dec": dec,
            "alt": alt,
            "az": az,
            "catalog_mag": np.full(5, 2.0),
            "residual_px": np.zeros(5),
        }
    )
    stars = Table({"x": x, "y": y, "flux": np.full(5, 1e4), "flags": np.zeros(5, int)})
    sol = FisheyeSolution(model, matches, 0.3, 5, site=site, time=time)
    return CalibrationResult(
        frame=frame,
        stars=stars,
        matches=matches,
        model_type="fisheye",
        solution=sol,
        zero_point=_zero_point(),
        sky=None,
        site=site,
        time=time,
    )


def test_magic_fits_copy_has_the_input_and_an_allsky_wcs_within_1px(tmp_path):
    """The bundled MAGIC frame with the camera model calibrate() fits to it."""
    if not MAGIC.exists():
        pytest.skip(f"{MAGIC} is missing (tests/data)")
    digest = hashlib.sha256(MAGIC.read_bytes()).hexdigest()
    frame = read_frame(MAGIC, site=LA_PALMA)
    # skysift calibrate of this frame (658 stars identified, RMS 0.3 px)
    model = FisheyeModel(
        x0=726.0008578458624,
        y0=527.2418993086204,
        rotation=81.14813557868705,
        radial=(340.6777551733515, -6.071466052577552, 0.3740028381263787, -0.613106689592604),
        parity=-1,
        tilt=(-0.7222149487737903, -0.16452078917222082),
        shape=frame.shape,
    )
    result = _fisheye_result(frame, model, LA_PALMA, frame.mid_time)
    paths = write_calibration(result, tmp_path, plot=False)
    assert hashlib.sha256(MAGIC.read_bytes()).hexdigest() == digest  # input untouched
    assert paths["fits"] == tmp_path / "calibrated.fits"

    header, data, wcs = _read_quietly(paths["fits"])
    original = fits.getdata(MAGIC)
    src = fits.getheader(MAGIC)
    assert header["BITPIX"] == src["BITPIX"] and np.array_equal(data, original)
    for key in ("DATE-OBS", "TELESCOP", "INSTRUME", "EXPTIME"):
        if key in src:
            assert header[key] == src[key]
    assert header["MAGZP"] == pytest.approx(10.325) and header["MAGZPERR"] == pytest.approx(0.015)
    assert header["MAGZPEXT"] == pytest.approx(0.121) and header["MAGZPN"] == 439
    assert header["MAGZPBND"] == "V"
    assert header["WCSMAXER"] < 1.0
    camera = FisheyeCamera("fisheye", model, LA_PALMA, frame.mid_time)
    x, y = _sky_pixels(model, frame.shape, n=300, rng=1)
    forward, backward = _agreement(wcs, camera, x, y)
    assert forward < 1.0 and backward < 1.0

    wcs_header, wcs_data, wcs2 = _read_quietly(paths["wcs"])
    assert wcs_header["NAXIS"] == 2 and wcs_data.size == 0
    assert (wcs_header["IMAGEW"], wcs_header["IMAGEH"]) == (frame.shape[1], frame.shape[0])
    assert _agreement(wcs2, camera, x[:50], y[:50])[0] < 1.0
    info = json.loads(paths["calibration"].read_text())
    assert info["fits_wcs"]["max_px"] == pytest.approx(header["WCSMAXER"], abs=1e-4)
    assert info["fits_file"] == "calibrated.fits" and info["wcs_file"] == "calibration.wcs.fits"
    # the fisheye camera still loads from calibration.json
    loaded = SkyCamera.load(paths["calibration"])
    assert loaded.model_type == "fisheye"


def test_png_input_becomes_a_fits_image_of_its_luminance(tmp_path):
    model = MODELS["equidistant"]
    data = np.random.default_rng(3).uniform(0, 255, SHAPE).astype(np.float32)
    frame = Frame(data, time=TIME, exposure=4.0, site=LA_PALMA, path=tmp_path / "sky.png")
    result = _fisheye_result(frame, model, LA_PALMA, TIME)
    paths = write_calibration(result, tmp_path / "out", plot=False)
    header, pixels, wcs = _read_quietly(paths["fits"])
    assert header["BITPIX"] == -32 and np.array_equal(pixels, data)
    assert header["ORIGFILE"] == "sky.png" and header["EXPTIME"] == 4.0
    assert header["DATE-OBS"].startswith("2015-12-20T04:07:10")
    assert header["MAGZPUNT"] == "ADU/s"
    camera = FisheyeCamera("fisheye", model, LA_PALMA, TIME)
    x, y = _sky_pixels(model, SHAPE, n=100, rng=2)
    assert max(_agreement(wcs, camera, x, y)) < 1.0


def test_fits_copy_never_overwrites_the_input(tmp_path):
    src = tmp_path / "calibrated.fits"
    fits.PrimaryHDU(np.zeros(SHAPE, np.float32)).writeto(src)
    frame = read_frame(src)
    result = _fisheye_result(frame, MODELS["equidistant"], LA_PALMA, TIME)
    with pytest.raises(InputError, match="refusing to overwrite the input"):
        write_calibrated_fits(result, src)
    paths = write_calibration(result, tmp_path, plot=False)
    assert paths["fits"].name == "calibrated.calibrated.fits"
    assert fits.getheader(src).get("CTYPE1") is None  # the input is as it was


def test_narrow_calibration_wcs_file_opens_without_warnings(tmp_path):
    """calibration.wcs.fits of a TAN-SIP solution: NAXIS 2 (no data), no astropy warning."""
    shape = (600, 800)
    truth = WCS(naxis=2)
    truth.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    truth.wcs.crval = [83.8, -5.4]
    truth.wcs.crpix = [400.5, 300.5]
    truth.wcs.cd = np.array([[-1.0, 0.0], [0.0, 1.0]]) * 40 / 3600
    gen = np.random.default_rng(4)
    xy = np.column_stack([gen.uniform(0, 799, 40), gen.uniform(0, 599, 40)])
    radec = np.column_stack(truth.all_pix2world(xy[:, 0], xy[:, 1], 0))
    sol = fit_wcs_pairs(xy, radec, shape)
    stars = Table({"x": xy[:, 0], "y": xy[:, 1], "flux": np.ones(40), "flags": np.zeros(40, int)})
    frame = Frame(np.zeros(shape, np.float32), path=tmp_path / "field.jpg")
    result = CalibrationResult(
        frame=frame,
        stars=stars,
        matches=sol.matches,
        model_type="tan-sip",
        solution=sol,
        zero_point=None,
        sky=None,
        site=None,
        time=None,
    )
    paths = write_calibration(result, tmp_path / "out", plot=False)
    header, data, wcs = _read_quietly(paths["wcs"])
    assert header["NAXIS"] == 2 and data.size == 0 and header["IMAGEW"] == 800
    assert "MAGZP" not in header  # no zero point fitted, none written
    back = PlateSolution.load(paths["wcs"])
    assert back.n_matched == sol.n_matched and back.shape == shape
    cam = SkyCamera.load(paths["calibration"])
    x, y = cam.radec_to_pixel(radec[:, 0], radec[:, 1])
    assert np.max(np.hypot(x - xy[:, 0], y - xy[:, 1])) < 0.01
    header, data, wcs = _read_quietly(paths["fits"])
    assert data.shape == shape
    ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
    assert np.max(np.abs(ra - radec[:, 0])) < 1e-5 and np.max(np.abs(dec - radec[:, 1])) < 1e-5


def test_fits_copy_replaces_an_old_wcs_and_keeps_integer_storage(tmp_path):
    """An image in extension 1, uint16 (BZERO 32768), with a stale TAN WCS and a ZD card."""
    model = MODELS["distorted"]
    raw = np.random.default_rng(5).integers(0, 65535, SHAPE, dtype=np.uint16)
    image = fits.ImageHDU(raw, name="SCI")
    image.header["CTYPE1"], image.header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    image.header["CRVAL1"], image.header["CRVAL2"] = 10.0, 20.0
    image.header["CD1_1"], image.header["CD2_2"] = 0.1, 0.1
    image.header["ZD"] = (12.5, "zenith distance, deg")
    src = tmp_path / "ext.fits"
    fits.HDUList([fits.PrimaryHDU(), image]).writeto(src)
    frame = read_frame(src)
    result = _fisheye_result(frame, model, LA_PALMA, TIME)
    path = write_calibrated_fits(result, tmp_path / "copy.fits")
    header, data, wcs = _read_quietly(path)
    assert header["BITPIX"] == 16 and header["BZERO"] == 32768
    assert data.dtype.kind == "u" and np.array_equal(data, raw)
    assert header["ZD"] == 12.5 and "CD1_1" not in header and "EXTNAME" not in header
    assert header["CTYPE1"].endswith("-SIP") and header["MAGZP"] == pytest.approx(10.325)
    camera = FisheyeCamera("fisheye", model, LA_PALMA, TIME)
    x, y = _sky_pixels(model, SHAPE, n=100, rng=6)
    assert max(_agreement(wcs, camera, x, y)) < 1.0
