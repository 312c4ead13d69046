"""The bolide and trails commands: outputs, an MP4 input, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift.cli import main
from skysift.simulation.meteors import LightCurve, Meteor, MeteorVideo


def _clip(n_frames=20, shape=(200, 280)):
    bg = np.full(shape, 40.0, np.float32)
    lc = LightCurve.meteor(4.0, 0.5, peak_fraction=0.6)
    m = Meteor((30.0, 150.0), (250.0, 50.0), speed=400.0, light_curve=lc, t_start_s=0.1, psf=2.8)
    video = MeteorVideo(bg, m, n_frames=n_frames, fps=25.0, zero_point=18.5, gain=1.0,
                        noise_sigma=3.0, saturation=255.0, mask_threshold=6.0)  # fmt: skip
    return video.render(rng=4)


@pytest.mark.parametrize("command", ["bolide", "trails", "demo"])
def test_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_bolide_command_on_a_fits_cube(tmp_path, capsys):
    cube, truth = _clip()
    path = tmp_path / "clip.fits"
    fits.PrimaryHDU(cube).writeto(path)
    out = tmp_path / "out"
    code = main(["bolide", str(path), "--fps", "25", "--method", "classical", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "bolide tracked in" in text and "report:" in text
    lc = Table.read(out / "lightcurve.ecsv")
    visible = set(truth["frame"][truth["visible"] & (truth["flux"] > 1000)])
    assert visible <= set(lc["frame"])
    assert (out / "report.html").is_file()


def test_bolide_command_on_an_mp4(tmp_path, capsys):
    imageio = pytest.importorskip("imageio.v2", reason="imageio is not installed (the video extra)")
    pytest.importorskip(
        "imageio_ffmpeg", reason="imageio-ffmpeg is not installed (the video extra)"
    )
    cube, truth = _clip()
    frames = [np.repeat(np.clip(c, 0, 255).astype(np.uint8)[..., None], 3, axis=2) for c in cube]
    path = tmp_path / "clip.mp4"
    imageio.mimwrite(path, frames, fps=25, codec="libx264", quality=9, macro_block_size=8)
    out = tmp_path / "out"
    assert main(["bolide", str(path), "--method", "classical", "--out", str(out)]) == 0
    lc = Table.read(out / "lightcurve.ecsv")
    tr = {int(r["frame"]): r for r in truth}
    # frames in the middle of the flight (in the first and last ones the light-weighted
    # head is not the mid-exposure position: the light curve is steep there)
    bright = [r for r in lc if tr[int(r["frame"])]["flux"] > 5000]
    assert len(bright) >= 5
    # the head within 1.5 px of the truth despite the compression (measured 0.07-1.44 px;
    # the largest where the light curve is steep within the 16-px smear)
    err = [
        np.hypot(r["x"] - tr[int(r["frame"])]["x"], r["y"] - tr[int(r["frame"])]["y"])
        for r in bright
    ]
    assert max(err) < 1.5
    # the clipped frames are flagged
    sat = {int(r["frame"]) for r in lc if r["saturated"]}
    assert {f for f, r in tr.items() if r["saturated"]} <= sat


def test_bolide_command_errors_are_one_line(tmp_path, capsys):
    short = tmp_path / "short.fits"
    fits.PrimaryHDU(np.zeros((2, 30, 30), np.float32)).writeto(short)
    assert main(["bolide", str(short), "--fps", "25"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "short.fits" in err and "at least 3 frames" in err
    missing = tmp_path / "nope.mp4"
    assert main(["bolide", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.mp4" in err


def test_trails_command_on_a_false_trigger(data_dir, tmp_path, capsys):
    out = tmp_path / "trails"
    assert (
        main(["trails", str(data_dir / "umd_allsky" / "Bug-20191028.png"), "--out", str(out)]) == 0
    )
    assert "0 trail(s)" in capsys.readouterr().out
    assert len(Table.read(out / "Bug-20191028.trails.ecsv")) == 0
    assert (out / "Bug-20191028.trails.png").is_file()


def test_skyfit_export_of_an_uncalibrated_clip_warns_and_writes_the_rest(tmp_path, capsys):
    """--skyfit without a site and time: one warning line, no SkyFit2 file, exit 0 with the light curve."""
    cube, _ = _clip()
    path = tmp_path / "clip.fits"
    fits.PrimaryHDU(cube).writeto(path)
    out = tmp_path / "out"
    code = main(["bolide", str(path), "--fps", "25", "--method", "classical", "--skyfit",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "skysift: warning: no SkyFit2 ECSV written" in err
    assert (out / "lightcurve.ecsv").is_file() and not list(out.glob("*_skysift.ecsv"))
