"""Tests of the input layer: skysift.io.read / read_frame / read_sequence."""

from __future__ import annotations

import gzip
import re
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from astropy.io import fits
from astropy.time import Time
from astropy.wcs.utils import proj_plane_pixel_scales
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from skysift.errors import InputError
from skysift.io import (
    Frame,
    FrameSequence,
    MetadataWarning,
    Site,
    iter_video,
    luminance,
    read,
    read_frame,
    read_sequence,
)

DATA = Path(__file__).parent / "data"
H, W = 24, 32  # small synthetic images


def lum(rgb: np.ndarray) -> np.ndarray:
    """The documented luminance formula, written out independently."""
    rgb = rgb.astype(np.float64)
    return 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]


def ramp(dtype=np.float32, scale: float = 1.0) -> np.ndarray:
    return (np.arange(H * W).reshape(H, W) * scale).astype(dtype)


def rgb_image(dtype=np.uint8, top: int = 255) -> np.ndarray:
    """(H, W, 3) image with distinct known channel values."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 7 % top, y * 11 % top, (x + y) * 5 % top], axis=-1)
    return img.astype(dtype)


def seconds(a: Time, b: Time | str) -> float:
    return abs((a - Time(b, scale="utc")).sec)


def write_fits(path: Path, data: np.ndarray, **cards) -> Path:
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key.replace("_", "-")] = value  # DATE_OBS -> DATE-OBS
    hdu.writeto(path)
    return path


# -- real files ------------------------------------------------------------------------------


def test_magic_fits_date_and_time_obs():
    path = DATA / "magic_allsky" / "20180817_0055.fits"
    frame = read(path)
    assert isinstance(frame, Frame)
    assert frame.shape == (1040, 1392)
    assert frame.time.isot == "2018-08-17T00:52:21.000"
    assert frame.time.scale == "utc"
    assert frame.meta["time_key"] == "DATE-OBS+TIME-OBS"
    assert frame.exposure == 60.0
    assert frame.site is None
    assert "wcs" not in frame.meta
    assert frame.meta["header"]["INSTRUME"] == "Starlight Xpress CCD"
    np.testing.assert_array_equal(frame.data, fits.getdata(path).astype(np.float32))
    assert frame.path == path and frame.name == "20180817_0055"


def test_cta_fits_gz_timeutc():
    frame = read_frame(DATA / "cta_allsky" / "cloudy.fits.gz")
    assert frame.shape == (1699, 1699)
    assert frame.time.isot == "2015-12-20T04:07:10.000"
    assert frame.meta["time_key"] == "TIMEUTC"
    assert frame.name == "cloudy"
    assert frame.data.dtype == np.float32


def test_iceact_uint16_date_obs_and_string_exposure():
    path = DATA / "iceact_allsky" / "cloudy.fits"
    frame = read(path)
    assert frame.shape == (480, 640)
    raw = fits.getdata(path)
    assert raw.dtype == np.uint16  # BZERO 32768 applied by astropy
    assert frame.meta["dtype"] == "uint16"
    np.testing.assert_array_equal(frame.data, raw.astype(np.float32))
    assert frame.data.max() > 32767  # unsigned range, not wrapped to negative
    assert seconds(frame.time, "2017-06-11T04:09:03.311554") < 1e-5
    assert frame.exposure == 120.0  # EXPOSURE = '120.0   ' (a string)


def test_astride_int16_wcs_site_and_old_date():
    path = DATA / "astride_streak" / "long.fits"
    frame = read(path)
    assert frame.shape == (512, 512)
    assert frame.meta["dtype"] == "int16"
    np.testing.assert_array_equal(frame.data, fits.getdata(path).astype(np.float32))
    # DATE-OBS = '26/07/102' (DD/MM/years since 1900), TIME-OBS = '19:36:37'
    assert frame.time.isot == "2002-07-26T19:36:37.000"
    # ... agrees with the header's JD (rounded to 1e-5 d = 0.86 s)
    assert seconds(frame.time, Time(2452482.31709, format="jd")) < 1.0
    assert frame.exposure == 60.0
    # LATITUDE = '-32:22:50', LONGITUD = '20:48:40' (+E); ELEVATIO is the pointing, not used
    assert frame.site == pytest.approx(Site(-(32 + 22 / 60 + 50 / 3600), 20 + 48 / 60 + 40 / 3600))
    assert frame.site.height == 0.0
    wcs = frame.meta["wcs"]
    assert wcs.has_celestial and list(wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    assert proj_plane_pixel_scales(wcs) * 3600 == pytest.approx([3.04, 3.04], abs=0.01)


def test_tetra3_16bit_tiff():
    path = DATA / "tetra3_startracker" / "2019-07-29T204726_Alt40_Azi-135_Try1.tiff"
    frame = read(path)
    assert frame.shape == (768, 1024)
    assert frame.color is None
    assert frame.meta["dtype"] == "uint16"
    np.testing.assert_array_equal(frame.data, tifffile.imread(path).astype(np.float32))


def test_umd_color_png_luminance():
    frame = read(DATA / "umd_allsky" / "Meteor-20191028.png")
    assert frame.shape == (1040, 1392)
    assert frame.color.shape == (1040, 1392, 3) and frame.color.dtype == np.uint8
    np.testing.assert_allclose(frame.data, lum(frame.color), rtol=1e-6, atol=1e-3)
    expected = np.asarray(Image.open(DATA / "umd_allsky" / "Meteor-20191028.png").convert("RGB"))
    np.testing.assert_array_equal(frame.color, expected)  # RGB order, not OpenCV's BGR
    assert frame.time is None  # the time is only in the burned-in caption


def test_real_folder_natural_order_skips_licence():
    seq = read(DATA / "tetra3_startracker")
    assert isinstance(seq, FrameSequence) and len(seq) == 5
    assert seq.meta["skipped"] == ["LICENSE"]
    assert seq.cube().shape == (5, 768, 1024)


# -- FITS round trips ------------------------------------------------------------------------


def test_fits_uint16_bzero_roundtrip(tmp_path):
    data = (np.arange(H * W).reshape(H, W) * 85).astype(np.uint16)
    assert data.max() > 32768
    path = tmp_path / "u16.fits"
    fits.PrimaryHDU(data).writeto(path)
    assert fits.getheader(path)["BZERO"] == 32768
    frame = read(path)
    np.testing.assert_array_equal(frame.data, data.astype(np.float32))
    assert frame.meta["dtype"] == "uint16"


def test_fits_bscale_applied(tmp_path):
    hdu = fits.PrimaryHDU(np.arange(H * W, dtype=np.int16).reshape(H, W))
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 100.0
    path = tmp_path / "scaled.fits"
    hdu.writeto(path)
    frame = read(path)
    np.testing.assert_allclose(frame.data, 100.0 + 0.5 * np.arange(H * W).reshape(H, W))


def test_fits_blank_pixels_masked(tmp_path):
    data = ramp(np.int16)
    data[3, 4] = -999
    hdu = fits.PrimaryHDU(data)
    hdu.header["BLANK"] = -999
    path = tmp_path / "blank.fits"
    hdu.writeto(path)
    frame = read(path)
    assert frame.mask[3, 4] and frame.mask.sum() == 1


@pytest.mark.parametrize(
    ("cards", "expected", "key"),
    [
        ({"DATE-OBS": "2021-05-06T07:08:09.5"}, "2021-05-06T07:08:09.500", "DATE-OBS"),
        ({"DATE-OBS": "2021-05-06 07:08:09"}, "2021-05-06T07:08:09.000", "DATE-OBS"),
        ({"DATE-OBS": "2021-05-06T07:08:09Z"}, "2021-05-06T07:08:09.000", "DATE-OBS"),
        (
            {"DATE-OBS": "2021-05-06", "TIME-OBS": "07:08:09"},
            "2021-05-06T07:08:09.000",
            "DATE-OBS+TIME-OBS",
        ),
        ({"DATE-OBS": "2021-05-06", "UT": "07:08:09.25"}, "2021-05-06T07:08:09.250", "DATE-OBS+UT"),
        ({"DATE-OBS": "2021-05-06", "UTC": "07:08"}, "2021-05-06T07:08:00.000", "DATE-OBS+UTC"),
        (
            {"DATE-OBS": "06/05/98", "TIME-OBS": "07:08:09"},
            "1998-05-06T07:08:09.000",
            "DATE-OBS+TIME-OBS",
        ),
        ({"TIMEUTC": "2021-05-06 07:08:09"}, "2021-05-06T07:08:09.000", "TIMEUTC"),
        ({"UTC": "2021-05-06T07:08:09"}, "2021-05-06T07:08:09.000", "UTC"),
        ({"MJD-OBS": 59340.25}, "2021-05-06T06:00:00.000", "MJD-OBS"),
        ({"DATE-OBS": "2021-05-06", "MJD-OBS": 59340.25}, "2021-05-06T06:00:00.000", "MJD-OBS"),
    ],
)
def test_fits_header_times(tmp_path, cards, expected, key):
    hdu = fits.PrimaryHDU(ramp())
    for k, v in cards.items():
        hdu.header[k] = v
    path = tmp_path / "t.fits"
    hdu.writeto(path)
    frame = read(path)
    assert frame.time.isot == expected
    assert frame.meta["time_key"] == key


def test_fits_date_only_gives_no_time(tmp_path):
    hdu = fits.PrimaryHDU(ramp())
    hdu.header["DATE-OBS"] = "2021-05-06"
    hdu.writeto(tmp_path / "d.fits")
    assert read(tmp_path / "d.fits").time is None


def test_fits_unreadable_date_warns(tmp_path):
    hdu = fits.PrimaryHDU(ramp())
    hdu.header["DATE-OBS"] = "yesterday"
    hdu.writeto(tmp_path / "d.fits")
    with pytest.warns(MetadataWarning, match="DATE-OBS='yesterday'"):
        frame = read(tmp_path / "d.fits")
    assert frame.time is None


@pytest.mark.parametrize(
    ("cards", "expected"),
    [
        (
            {"SITELAT": 28.7619, "SITELONG": -17.8908, "SITEELEV": 2200.0},
            (28.7619, -17.8908, 2200.0),
        ),
        (
            {"OBSLAT": "-32:22:50", "OBSLON": "20:48:40", "OBSALT": 1798},
            (-32.380556, 20.811111, 1798.0),
        ),
        (
            {"LAT-OBS": "-0:30:00", "LONG-OBS": "+17 53 27 W", "ALT-OBS": "10"},
            (-0.5, -17.890833, 10.0),
        ),
        ({"LATITUDE": "28d45m43s N", "LONGITUD": 17.8908}, (28.761944, 17.8908, 0.0)),
        (
            {"OBSGEO-X": 5326837.927, "OBSGEO-Y": -1719577.257, "OBSGEO-Z": 3051852.458},
            (28.7619, -17.8908, 2200.0),
        ),
    ],
)
def test_fits_header_sites(tmp_path, cards, expected):
    hdu = fits.PrimaryHDU(ramp())
    for k, v in cards.items():
        hdu.header[k] = v
    hdu.writeto(tmp_path / "s.fits")
    site = read(tmp_path / "s.fits").site
    assert (site.lat, site.lon) == pytest.approx(expected[:2], abs=2e-5)
    assert site.height == pytest.approx(expected[2], abs=0.5)


def test_fits_west_positive_longitude_comment(tmp_path):
    hdu = fits.PrimaryHDU(ramp())
    hdu.header["SITELAT"] = 31.96
    hdu.header["SITELONG"] = (111.6, "degrees +W")
    hdu.writeto(tmp_path / "w.fits")
    assert read(tmp_path / "w.fits").site.lon == pytest.approx(-111.6)


def test_fits_site_out_of_range_is_ignored_with_warning(tmp_path):
    hdu = fits.PrimaryHDU(ramp())
    hdu.header["SITELAT"] = 128.0
    hdu.header["SITELONG"] = 10.0
    hdu.writeto(tmp_path / "bad.fits")
    with pytest.warns(MetadataWarning, match="latitude"):
        assert read(tmp_path / "bad.fits").site is None


def test_fits_extension_by_name_and_index(tmp_path):
    path = tmp_path / "mef.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(ramp(), name="SCI"),
            fits.ImageHDU(ramp() * 2, name="VAR"),
        ]
    ).writeto(path)
    np.testing.assert_array_equal(read(path).data, ramp())  # first image HDU
    np.testing.assert_array_equal(read(path, hdu="VAR").data, ramp() * 2)
    np.testing.assert_array_equal(read(path, hdu=2).data, ramp() * 2)
    assert read(path, hdu="var").meta["hdu"] == 2


def test_fits_gz_and_tile_compressed(tmp_path):
    data = ramp(np.int32)
    plain = tmp_path / "a.fits"
    write_fits(plain, data, EXPTIME=3.5)
    gz = tmp_path / "a.fits.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    frame = read(gz)
    np.testing.assert_array_equal(frame.data, data)
    assert frame.exposure == 3.5
    fz = tmp_path / "b.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(fz)
    frame = read(fz)
    np.testing.assert_array_equal(frame.data, data)
    assert frame.name == "b"


def test_fits_cube_is_sequence(tmp_path):
    cube = np.stack([ramp() + 1000 * i for i in range(6)])
    path = write_fits(tmp_path / "cube.fits", cube, DATE_OBS="2020-01-02T03:04:05")
    seq = read(path)
    assert isinstance(seq, FrameSequence) and len(seq) == 6
    np.testing.assert_array_equal(seq.cube(), cube)
    assert seq.times is None  # no frame rate: per-plane times unknown
    assert seq.meta["start_time"].isot == "2020-01-02T03:04:05.000"

    seq = read_sequence(path, fps=2.0, stride=2, max_frames=2)
    assert [f.meta["index"] for f in seq] == [0, 2]
    np.testing.assert_array_equal(seq[1].data, cube[2])
    assert seq.fps == 1.0
    assert [t.isot for t in seq.times] == ["2020-01-02T03:04:05.000", "2020-01-02T03:04:06.000"]


def test_fits_single_plane_cube_is_a_frame(tmp_path):
    path = write_fits(tmp_path / "one.fits", ramp()[None])
    assert isinstance(read(path), Frame)


def test_fits_wcs_only_when_celestial(tmp_path):
    hdu = fits.PrimaryHDU(ramp())
    hdu.header.update({"CTYPE1": "PIXEL", "CTYPE2": "PIXEL", "CRPIX1": 1, "CRPIX2": 1})
    hdu.writeto(tmp_path / "lin.fits")
    assert "wcs" not in read(tmp_path / "lin.fits").meta


# -- images ----------------------------------------------------------------------------------


def test_png_8bit_grey(tmp_path):
    data = ramp(np.uint8)
    Image.fromarray(data).save(tmp_path / "g.png")
    frame = read(tmp_path / "g.png")
    assert frame.color is None
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta["dtype"] == "uint8"


def test_png_16bit_grey_and_colour(tmp_path):
    grey = (ramp(np.float64) * 80).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), grey)
    np.testing.assert_array_equal(read(tmp_path / "g16.png").data, grey)

    rgb = rgb_image(np.uint16, 65535) * 250
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])  # OpenCV writes BGR
    frame = read(tmp_path / "c16.png")
    assert frame.color.dtype == np.uint16
    np.testing.assert_array_equal(frame.color, rgb)
    np.testing.assert_allclose(frame.data, lum(rgb), rtol=1e-6)


def test_luminance_formula_values(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[...] = (100, 200, 50)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    frame = read(tmp_path / "c.png")
    assert frame.data[0, 0] == pytest.approx(0.2126 * 100 + 0.7152 * 200 + 0.0722 * 50, abs=1e-4)
    np.testing.assert_allclose(luminance(rgb), frame.data)


def test_png_alpha_dropped(tmp_path):
    rgba = np.dstack([rgb_image(), np.full((H, W), 7, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    frame = read(tmp_path / "a.png")
    np.testing.assert_array_equal(frame.color, rgba[..., :3])
    np.testing.assert_allclose(frame.data, lum(rgba[..., :3]), rtol=1e-6, atol=1e-4)


def _exif(dt: str, offset: str | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0132] = "2000:01:01 00:00:00"  # DateTime (file change time): DateTimeOriginal wins
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = dt  # DateTimeOriginal
    sub[0x9291] = "25"  # SubSecTimeOriginal -> +0.25 s
    if offset:
        sub[0x9011] = offset  # OffsetTimeOriginal
    sub[0x829A] = IFDRational(1, 4)  # ExposureTime 0.25 s
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (IFDRational(28), IFDRational(45), IFDRational(4284, 100))
    gps[3], gps[4] = "W", (IFDRational(17), IFDRational(53), IFDRational(2688, 100))
    gps[5], gps[6] = b"\x00", IFDRational(2200)
    return exif


def test_jpeg_exif_time_offset_exposure_gps(tmp_path):
    rgb = rgb_image()
    Image.fromarray(rgb).save(
        tmp_path / "e.jpg", quality=100, exif=_exif("2021:03:04 05:06:07", "+02:00")
    )
    frame = read(tmp_path / "e.jpg")
    assert frame.time.isot == "2021-03-04T03:06:07.250"  # 05:06 at +02:00 = 03:06 UTC
    assert frame.meta["time_key"] == "DateTimeOriginal"
    assert frame.exposure == 0.25
    assert frame.site.lat == pytest.approx(28.7619, abs=1e-6)
    assert frame.site.lon == pytest.approx(-17.8908, abs=1e-6)
    assert frame.site.height == pytest.approx(2200.0)
    assert frame.color.shape == (H, W, 3)
    np.testing.assert_array_equal(frame.color, np.asarray(Image.open(tmp_path / "e.jpg")))
    np.testing.assert_allclose(frame.data, lum(frame.color), rtol=1e-6, atol=1e-4)


def test_exif_naive_time_is_utc(tmp_path):
    Image.fromarray(rgb_image()).save(tmp_path / "n.png", exif=_exif("2021:03:04 05:06:07"))
    assert read(tmp_path / "n.png").time.isot == "2021-03-04T05:06:07.250"


def test_tiff_16bit_rgb_and_datetime(tmp_path):
    rgb = rgb_image(np.uint16, 65535) * 200
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", datetime="2022:01:02 03:04:05")
    frame = read(path)
    np.testing.assert_array_equal(frame.color, rgb)
    np.testing.assert_allclose(frame.data, lum(rgb), rtol=1e-6)
    assert frame.time.isot == "2022-01-02T03:04:05.000"
    assert frame.meta["time_key"] == "DateTime"


def test_multipage_tiff_is_sequence(tmp_path):
    stack = np.stack([ramp(np.uint16) + 100 * i for i in range(3)])
    tifffile.imwrite(tmp_path / "s.tiff", stack, photometric="minisblack")
    seq = read(tmp_path / "s.tiff")
    assert isinstance(seq, FrameSequence) and len(seq) == 3
    np.testing.assert_array_equal(seq.cube(), stack)


# -- overrides -------------------------------------------------------------------------------


def test_overrides_win_over_metadata(tmp_path):
    path = write_fits(
        tmp_path / "o.fits",
        ramp(),
        DATE_OBS="2020-01-01T00:00:00",
        EXPTIME=10.0,
        SITELAT=10.0,
        SITELONG=20.0,
    )
    frame = read(path, time="2021-06-07T08:09:10+02:00", site=(28.76, -17.89, 2200), exposure=2.5)
    assert frame.time.isot == "2021-06-07T06:09:10.000"
    assert frame.meta["time_key"] == "time="
    assert frame.site == Site(28.76, -17.89, 2200.0)
    assert frame.exposure == 2.5
    t = Time("2019-01-01T00:00:00", scale="tai")
    frame = read(path, time=t, site={"lat": 1, "lon": 2})
    assert frame.time.scale == "utc" and seconds(frame.time, t.utc) < 1e-6
    assert frame.site == Site(1.0, 2.0)
    aware = datetime(2021, 6, 7, 8, 9, 10, tzinfo=timezone(timedelta(hours=-3)))
    assert read(path, time=aware).time.isot == "2021-06-07T11:09:10.000"


def test_error_path_type():
    with pytest.raises(InputError, match="path must be a file or folder name"):
        read(np.zeros((10, 10)))


# -- video -----------------------------------------------------------------------------------


def _write_video(path: Path, n: int = 8, fps: float = 12.5, fourcc: str = "MJPG") -> list[int]:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (64, 48))
    assert writer.isOpened()
    levels = [20 + 25 * i for i in range(n)]
    for level in levels:
        frame = np.full((48, 64, 3), level, np.uint8)
        frame[5:15, 5:15] = (0, 0, 255)  # BGR: a red square
        writer.write(frame)
    writer.release()
    return levels


@pytest.mark.parametrize(("name", "fourcc"), [("v.avi", "MJPG"), ("v.mp4", "mp4v")])
def test_video_frames_fps_and_timestamps(tmp_path, name, fourcc):
    path = tmp_path / name
    levels = _write_video(path, fourcc=fourcc)
    seq = read(path)
    assert isinstance(seq, FrameSequence)
    assert len(seq) == 8
    assert seq.fps == pytest.approx(12.5)
    np.testing.assert_allclose(seq.meta["pts"], np.arange(8) / 12.5, atol=1e-3)
    assert seq.times is None  # no start time given
    means = [float(np.median(f.data[30:, 30:])) for f in seq]
    np.testing.assert_allclose(means, levels, atol=4)  # lossy codec
    red = seq[0].color[10, 10]
    assert red[0] > 200 and red[1] < 40 and red[2] < 40  # RGB order


def test_video_start_time_stride_and_max_frames(tmp_path):
    path = tmp_path / "v.avi"
    _write_video(path, n=10, fps=10.0)
    seq = read_sequence(path, time="2023-08-12T22:00:00", stride=3, max_frames=3, keep_color=False)
    assert [f.meta["index"] for f in seq] == [0, 3, 6]
    assert seq.fps == pytest.approx(10.0 / 3)
    assert [t.isot for t in seq.times] == [
        "2023-08-12T22:00:00.000",
        "2023-08-12T22:00:00.300",
        "2023-08-12T22:00:00.600",
    ]
    assert all(f.color is None for f in seq)
    forced = read(path, fps=5.0, max_frames=3)
    np.testing.assert_allclose(forced.meta["pts"], [0.0, 0.2, 0.4])
    assert len(list(iter_video(path, max_frames=4))) == 4


# -- folders ---------------------------------------------------------------------------------


def test_folder_natural_sort_and_file_times(tmp_path):
    for i in (10, 2, 1):
        write_fits(tmp_path / f"f{i}.fits", ramp() + i, DATE_OBS=f"2020-01-01T00:00:{i:02d}")
    (tmp_path / "notes.txt").write_text("not an image")
    seq = read(tmp_path)
    assert seq.meta["files"] == ["f1.fits", "f2.fits", "f10.fits"]
    assert [f.data[0, 0] for f in seq] == [1, 2, 10]
    assert [t.isot[-6:] for t in seq.times] == ["01.000", "02.000", "10.000"]
    assert seq.meta["skipped"] == ["notes.txt"]

    shifted = read(tmp_path, time="2021-01-01T00:00:00")  # keeps the spacing
    assert [t.isot for t in shifted.times] == [
        "2021-01-01T00:00:00.000",
        "2021-01-01T00:00:01.000",
        "2021-01-01T00:00:09.000",
    ]


def test_folder_of_pngs_with_fps(tmp_path):
    for i in range(3):
        Image.fromarray(ramp(np.uint8) + i).save(tmp_path / f"img_{i}.png")
    seq = read(tmp_path, time="2021-01-01T00:00:00", fps=4.0)
    assert seq.fps == 4.0
    assert [t.isot[-6:] for t in seq.times] == ["00.000", "00.250", "00.500"]


def test_read_frame_and_read_sequence_types(tmp_path):
    cube = write_fits(tmp_path / "cube.fits", np.stack([ramp()] * 3))
    with pytest.raises(
        InputError, match=r"cube\.fits: a sequence of several frames.*read_sequence"
    ):
        read_frame(cube)
    single = write_fits(tmp_path / "one.fits", ramp(), DATE_OBS="2020-01-01T00:00:00")
    seq = read_sequence(single)
    assert isinstance(seq, FrameSequence) and len(seq) == 1
    assert seq.times[0].isot == "2020-01-01T00:00:00.000"


def test_no_library_warnings_leak(tmp_path):
    path = DATA / "astride_streak" / "long.fits"  # old DATE-OBS, CROTA + CD: astropy.wcs complains
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read(path)


# -- errors ----------------------------------------------------------------------------------


def _fits_bytes(tmp_path: Path) -> bytes:
    write_fits(tmp_path / "src.fits", ramp())
    return (tmp_path / "src.fits").read_bytes()


def test_error_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.fits: no such file"):
        read(tmp_path / "nope.fits")


def test_error_empty_file(tmp_path):
    (tmp_path / "empty.png").touch()
    with pytest.raises(InputError, match=r"empty\.png: file is empty \(0 bytes\)"):
        read(tmp_path / "empty.png")


def test_error_truncated_fits(tmp_path):
    raw = _fits_bytes(tmp_path)
    (tmp_path / "t.fits").write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(InputError, match=r"t\.fits: truncated FITS file"):
        read(tmp_path / "t.fits")


def test_error_not_fits(tmp_path):
    (tmp_path / "junk.fits").write_bytes(b"this is not FITS" * 300)
    with pytest.raises(InputError, match=r"junk\.fits: not a readable FITS file"):
        read(tmp_path / "junk.fits")


def test_error_fits_without_image(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.arange(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "tab.fits")
    with pytest.raises(InputError, match=r"tab\.fits: no image HDU"):
        read(tmp_path / "tab.fits")
    with pytest.raises(InputError, match=r"tab\.fits: HDU 1 holds no image data"):
        read(tmp_path / "tab.fits", hdu=1)
    with pytest.raises(InputError, match=r"tab\.fits: no HDU 'SCI' \(the file has 0:PRIMARY"):
        read(tmp_path / "tab.fits", hdu="SCI")
    with pytest.raises(InputError, match=r"tab\.fits: no HDU 5 \(the file has 0:PRIMARY, 1:"):
        read(tmp_path / "tab.fits", hdu=5)


def test_error_1d_array(tmp_path):
    fits.PrimaryHDU(np.arange(100.0)).writeto(tmp_path / "line.fits")
    with pytest.raises(InputError, match=r"line\.fits: HDU 0 holds a 1-D array, not an image"):
        read(tmp_path / "line.fits")


def test_error_all_nan(tmp_path):
    fits.PrimaryHDU(np.full((H, W), np.nan, np.float32)).writeto(tmp_path / "nan.fits")
    with pytest.raises(
        InputError, match=r"nan\.fits: image has no finite pixel \(all NaN or inf\)$"
    ):
        read(tmp_path / "nan.fits")


def test_error_unknown_extension(tmp_path):
    (tmp_path / "image.xyz").write_bytes(b"123")
    with pytest.raises(
        InputError, match=r"image\.xyz: unknown file type '\.xyz'; supported: \.fits"
    ):
        read(tmp_path / "image.xyz")


@pytest.mark.parametrize("name", ["bad.png", "bad.jpg", "bad.tif"])
def test_error_corrupt_image(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x89PNG garbage" * 50)
    with pytest.raises(InputError, match=re.escape(name) + ": corrupt or unreadable"):
        read(tmp_path / name)


def test_error_truncated_jpeg(tmp_path):
    Image.fromarray(rgb_image()).save(tmp_path / "full.jpg")
    raw = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"cut\.jpg: corrupt or unreadable image \(.*[Tt]runcated"):
        read(tmp_path / "cut.jpg")


def test_error_unreadable_video(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 4096)
    with pytest.raises(InputError, match=r"broken\.mp4: cannot open video"):
        read(tmp_path / "broken.mp4")


def test_error_bad_time_string(tmp_path):
    path = write_fits(tmp_path / "a.fits", ramp())
    with pytest.raises(InputError, match=r"a\.fits: time= must be an ISO 8601 time.*'last night'"):
        read(path, time="last night")
    with pytest.raises(InputError, match=r"a\.fits: time= must be an ISO 8601"):
        read(path, time="2021-02-30T00:00:00")


def test_error_site_out_of_range(tmp_path):
    path = write_fits(tmp_path / "a.fits", ramp())
    with pytest.raises(
        InputError, match=r"a\.fits: site latitude must be in \[-90, 90\] deg, got 95"
    ):
        read(path, site=(95.0, 10.0))
    with pytest.raises(InputError, match=r"a\.fits: site must be a Site"):
        read(path, site="La Palma")


def test_error_bad_exposure_and_frames(tmp_path):
    path = write_fits(tmp_path / "a.fits", ramp())
    with pytest.raises(
        InputError, match=r"a\.fits: exposure= must be a positive number of seconds"
    ):
        read(path, exposure=-1)
    with pytest.raises(InputError, match=r"a\.fits: fps= must be a positive"):
        read(path, fps=0)
    with pytest.raises(InputError, match=r"a\.fits: stride= must be a positive integer"):
        read(path, stride=0)


def test_error_folder_problems(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InputError, match=r"folder holds no FITS or image files"):
        read(tmp_path)
    write_fits(tmp_path / "a.fits", ramp())
    write_fits(tmp_path / "b.fits", np.zeros((H + 2, W), np.float32))
    with pytest.raises(
        InputError, match=r"frames differ in shape: a\.fits is \(24, 32\), b\.fits is \(26, 32\)"
    ):
        read(tmp_path)


def test_pixel_limit_refuses_huge_declared_images_before_decoding(tmp_path, monkeypatch):
    """A tiny file declaring a huge image is refused from its header, fast and by name."""
    import struct
    import time
    import zlib

    from astropy.io import fits as _fits

    from skysift.io.readers import DEFAULT_MAX_PIXELS

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    w = h = 20000  # 400 megapixels in a ~400 kB PNG
    raw = zlib.compress(b"".join(b"\x00" + bytes(w) for _ in range(h)), 9)
    png = tmp_path / "bomb.png"
    png.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", raw)
        + chunk(b"IEND", b"")
    )
    hdr = _fits.Header()
    hdr["SIMPLE"], hdr["BITPIX"], hdr["NAXIS"] = True, -64, 2
    hdr["NAXIS1"] = hdr["NAXIS2"] = 200000
    big_fits = tmp_path / "huge.fits"
    big_fits.write_bytes(hdr.tostring().encode())
    for path in (png, big_fits):
        t0 = time.perf_counter()
        with pytest.raises(InputError, match=f"{path.name}: declares .* over the limit of 250"):
            read_frame(path)
        assert time.perf_counter() - t0 < 5.0
    assert DEFAULT_MAX_PIXELS == 250_000_000
    # the limit is configurable: a 64x64 image over a limit of 1000 pixels is refused
    small = tmp_path / "small.fits"
    _fits.PrimaryHDU(np.zeros((64, 64), np.float32)).writeto(small)
    monkeypatch.setenv("SKYSIFT_MAX_PIXELS", "1000")
    with pytest.raises(InputError, match="small.fits: declares 64x64"):
        read_frame(small)
    monkeypatch.setenv("SKYSIFT_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match="SKYSIFT_MAX_PIXELS must be a positive integer"):
        read_frame(small)


def test_real_flv_meteor_video_is_read():
    """FreeTure's FLV clip (GPL, in ../shared: tests only) reads as a 320x240 sequence at 25 fps."""
    from skysift.io import read_sequence

    path = Path(__file__).resolve().parents[2] / "shared/data/real/freeture_meteors/meteor5.flv"
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared real data)")
    seq = read_sequence(path, max_frames=10)
    assert len(seq) == 10
    assert seq[0].shape == (240, 320)
    assert seq.fps == pytest.approx(25.0)
