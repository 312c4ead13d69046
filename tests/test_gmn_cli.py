"""GMN formats through the CLI: a platepar written by ``skysift calibrate --platepar``,
and the bolide light curve exported for SkyFit2 (``--skyfit``) and mapped with a
station's platepar (``--platepar``) on the real FRIPON clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from skysift.calibration.platepar import (
    platepar_from_calibration,
    read_platepar,
    write_platepar,
    xy_to_radec,
)
from skysift.cli import main

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "freeture_meteors"
M5 = REAL / "meteor5.flv"
M5_ARGS = ["--site", "48.62", "6.08", "250", "--time", "2015-03-14T22:46:52"]


def test_calibrate_writes_a_platepar_that_maps_the_matched_stars(data_dir, tmp_path, capsys):
    """The platepar of a MAGIC calibration puts every identified star within 1 px
    of its detection's sky position (RMS), read back from the file."""
    image = data_dir / "magic_allsky" / "20180817_0055.fits"
    out = tmp_path / "cal"
    code = main(["calibrate", str(image), "--site", "28.7619", "-17.8908", "2200",
                 "--platepar", "--station-code", "ES0001", "--no-plot", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "platepar ->" in capsys.readouterr().out
    pp = read_platepar(out / "platepar_cmn2010.cal")
    assert pp.station_code == "ES0001"
    m = Table.read(out / "matches.ecsv") if (out / "matches.ecsv").exists() else None
    if m is None:
        pytest.skip("calibration wrote no matches.ecsv")
    ra, dec = xy_to_radec(pp, np.asarray(m["x"]), np.asarray(m["y"]), pp.JD)
    d = np.hypot((np.asarray(ra) - np.asarray(m["ra"])) * np.cos(np.radians(m["dec"])),
                 np.asarray(dec) - np.asarray(m["dec"]))  # fmt: skip
    # one MAGIC pixel is about 0.14 deg; the camera model's own RMS is about 0.6 px
    assert np.median(d) < 0.14 and np.sqrt(np.mean(d**2)) < 0.3


def test_bolide_on_meteor5_exports_skyfit_and_reuses_a_platepar(tmp_path, capsys):
    if not M5.exists():
        pytest.skip(f"GPL FreeTure data not available at {M5}")
    from skysift.bolide.pipeline import run_bolide

    out1 = tmp_path / "m5"
    code = main(["bolide", str(M5), *M5_ARGS, "--skyfit", "--station-code", "FR0001",
                 "--method", "classical", "--out", str(out1)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    ecsv = sorted(out1.glob("*_FR0001.ecsv"))
    assert len(ecsv) == 1
    t = Table.read(ecsv[0], format="ascii.ecsv")
    assert len(t) >= 100  # the fireball is tracked in ~110 frames
    for col in ("datetime", "ra", "dec", "azimuth", "altitude", "x_image", "y_image", "mag_data"):
        assert col in t.colnames
    assert str(t["datetime"][0]).startswith("2015-03-14T22:46:5")
    # a platepar fitted to that calibration, given back: the same sky track within 0.2 deg
    result = run_bolide(M5, None, site=(48.62, 6.08, 250.0), time="2015-03-14T22:46:52",
                        method="classical")  # fmt: skip
    fit = platepar_from_calibration(result.calibration)
    path = write_platepar(fit.platepar, tmp_path / "platepar_cmn2010.cal")
    again = run_bolide(M5, None, time="2015-03-14T22:46:52", method="classical", platepar=path)
    a, b = result.lightcurve, again.lightcurve
    assert len(a) == len(b)
    sep = np.hypot((np.asarray(a["ra"]) - np.asarray(b["ra"])) * np.cos(np.radians(a["dec"])),
                   np.asarray(a["dec"]) - np.asarray(b["dec"]))  # fmt: skip
    assert np.nanmedian(sep) < 0.2


def test_calibrate_platepar_of_a_mirrored_camera_warns_and_keeps_the_calibration(
    data_dir, tmp_path, capsys
):
    """A platepar cannot hold a mirror image: one warning line, the calibration files still written."""
    from astropy.io import fits

    with fits.open(data_dir / "magic_allsky" / "20180817_0055.fits") as hdul:
        mirrored = tmp_path / "mirrored.fits"
        fits.PrimaryHDU(np.fliplr(hdul[0].data), header=hdul[0].header).writeto(mirrored)
    out = tmp_path / "cal"
    code = main(["calibrate", str(mirrored), "--site", "28.7619", "-17.8908", "2200",
                 "--platepar", "--no-plot", "--out", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "skysift: warning: no platepar written" in captured.err
    assert (out / "calibration.json").is_file() and not (out / "platepar_cmn2010.cal").exists()
