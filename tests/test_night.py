"""``skysift night``: find a night's clips and frames, calibrate per camera, search, index.html."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift.batch.night import camera_of, find_night, run_night
from skysift.cli import main
from skysift.errors import InputError
from skysift.simulation import make_star_field
from skysift.simulation.meteors import LightCurve, Meteor, MeteorVideo
from skysift.simulation.streaks import render_streak

pytest.importorskip("distributed", reason="dask[distributed] is not installed")

SHAPE = (96, 128)
ENDS = (8.0, 14.0, 118.0, 80.0)


def _frame(i: int, streak: bool) -> np.ndarray:
    image, _ = make_star_field(SHAPE, 8, fwhm=2.5, flux_range=(5e3, 5e4), rng=300 + i)
    if streak:
        line, _ = render_streak(SHAPE, *ENDS, 6e4, 2.5)
        image = image + line
    return np.asarray(image, np.float32)


def _mp4(path: Path) -> Table:
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    bg = np.full((120, 160), 40.0, np.float32)
    lc = LightCurve.meteor(4.0, 0.5, peak_fraction=0.6)
    m = Meteor((20.0, 90.0), (140.0, 30.0), speed=300.0, light_curve=lc, t_start_s=0.1, psf=2.8)
    video = MeteorVideo(bg, m, n_frames=16, fps=25.0, zero_point=18.5, gain=1.0,
                        noise_sigma=3.0, saturation=255.0, mask_threshold=6.0)  # fmt: skip
    cube, truth = video.render(rng=5)
    frames = [np.repeat(np.clip(c, 0, 255).astype(np.uint8)[..., None], 3, axis=2) for c in cube]
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=25, codec="libx264", quality=9, macro_block_size=8)
    return truth


@pytest.fixture(scope="module")
def night_dir(tmp_path_factory) -> tuple[Path, Table]:
    """camA/: 3 frames 96x128 (a streak in f1) and a corrupt FITS; meteor/: one MP4 clip."""
    d = tmp_path_factory.mktemp("night")
    (d / "camA").mkdir()
    for i in range(3):
        fits.PrimaryHDU(_frame(i, i == 1)).writeto(d / "camA" / f"f{i}.fits")
    (d / "camA" / "f9.fits").write_bytes(b"not a fits file\n" * 100)
    (d / "camA" / "notes.txt").write_text("not an input")
    truth = _mp4(d / "meteor" / "clip.mp4")
    return d, truth


def test_find_night_sorts_clips_from_frames_and_names_cameras(night_dir):
    d, _ = night_dir
    n = find_night(d)
    assert [p.name for p in n.clips] == ["clip.mp4"]
    assert [p.name for p in n.frames] == ["f0.fits", "f1.fits", "f2.fits", "f9.fits"]
    assert n.cameras[d / "camA" / "f0.fits"] == "camA 128x96"
    assert n.cameras[d / "meteor" / "clip.mp4"] == "meteor 160x120"
    assert camera_of(d / "camA" / "f9.fits", d) == "camA ?"  # unreadable: no camera
    assert list(n.groups()) == ["camA 128x96"]
    assert len(n.groups()["camA 128x96"]) == 3


def test_night_command_searches_everything_writes_the_index_and_resumes(
    night_dir, tmp_path, capsys
):
    d, truth = night_dir
    out = tmp_path / "out"
    args = ["night", str(d), "--out", str(out), "--workers", "0"]
    args += ["--streaks-method", "classical", "--bolide-method", "classical"]
    assert main(args) == 5  # the corrupt frame failed, the rest done
    std = capsys.readouterr()
    assert "4 done, 0 skipped, 1 failed" in std.out and "0 of 1 cameras calibrated" in std.out
    assert "calibration failed" in std.err  # no site or time in these frames
    assert "skysift: failed:" in std.err and "f9.fits" in std.err
    # the streak frame: one streak, ends within 8 px; the others none
    t = Table.read(out / "f1" / "f1.streaks.ecsv")
    got = np.array([[t["x1"][0], t["y1"][0]], [t["x2"][0], t["y2"][0]]])
    true = np.array(ENDS).reshape(2, 2)
    assert len(t) == 1 and min(np.abs(got - true).max(), np.abs(got[::-1] - true).max()) < 8
    assert len(Table.read(out / "f0" / "f0.streaks.ecsv")) == 0
    assert (out / "f0" / "f0.trails.ecsv").is_file()
    # the clip: the bolide tracked in the frames where it is bright
    lc = Table.read(out / "clip" / "lightcurve.ecsv")
    bright = set(truth["frame"][truth["visible"] & (truth["flux"] > 5000)])
    assert bright and bright <= set(lc["frame"])
    # the index: a row per input, relative links that resolve, the failure shown
    page = (out / "index.html").read_text()
    assert page.count("<tr class=") == 5 and '<tr class="failed">' in page
    assert "1 streak(s)" in page and f"bolide in {len(lc)} frame(s)" in page
    links = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert links and all(not Path(h).is_absolute() for h in links)
    assert all((out / h).exists() for h in links), [h for h in links if not (out / h).exists()]
    assert "f1/f1.mask.png" in links and "clip/lightcurve.ecsv" in links
    m = Table.read(out / "run.ecsv")
    assert len(m) == 5 and sorted(m["status"]) == ["done"] * 4 + ["failed"]
    # a rerun skips what is done
    before = (out / "f1" / "f1.streaks.ecsv").read_bytes()
    assert main(args) == 5
    assert "0 done, 4 skipped, 1 failed" in capsys.readouterr().out
    assert (out / "f1" / "f1.streaks.ecsv").read_bytes() == before


def test_night_errors(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        find_night(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no clips .* or frames"):
        find_night(tmp_path / "empty")
    (tmp_path / "only_out" / "out").mkdir(parents=True)
    fits.PrimaryHDU(_frame(0, False)).writeto(tmp_path / "only_out" / "out" / "x.fits")
    with pytest.raises(InputError, match="outside the output folder"):
        find_night(tmp_path / "only_out", exclude=tmp_path / "only_out" / "out")


@pytest.mark.slow
def test_night_calibrates_a_camera_once_and_reuses_it(data_dir, tmp_path):
    """Two MAGIC frames of one camera: calibrated once, both frames' streaks get RA/Dec."""
    src = data_dir / "magic_allsky"
    if not (src / "20180817_0055.fits").is_file():
        pytest.skip(f"{src} is missing")
    d = tmp_path / "night" / "magic"
    d.mkdir(parents=True)
    for name in ("20180817_0055.fits", "20180817_0341.fits"):
        shutil.copy(src / name, d / name)
    out = tmp_path / "out"
    res = run_night(
        tmp_path / "night", out, site=(28.7619, -17.8908, 2200.0), streaks_method="classical",
        workers=0, progress=False,
    )  # fmt: skip
    assert res.exit_code == 0 and list(res.cameras) == ["magic 1392x1040"]
    assert len(res.calibration.rows) == 1  # one calibration for the two frames
    (pkl,) = res.cameras.values()
    assert Path(pkl).is_file() and (Path(pkl).parent / "calibration.json").is_file()
    for stem in ("20180817_0055", "20180817_0341"):
        t = Table.read(out / stem / f"{stem}.streaks.ecsv")
        assert {"ra1", "dec1", "ra2", "dec2"} <= set(t.colnames)
    assert 'href="calibration/' in (out / "index.html").read_text()


@pytest.mark.slow
def test_night_recalibrates_a_narrow_camera_that_moved(data_dir, tmp_path):
    """Three star-tracker frames at three pointings: one plate solution each, not one for all."""
    src = data_dir / "tetra3_startracker"
    names = sorted(p.name for p in src.glob("*Alt40*.tiff"))
    if len(names) < 3:
        pytest.skip(f"{src} is missing")
    d = tmp_path / "night" / "tracker"
    d.mkdir(parents=True)
    for name in names[:3]:
        shutil.copy(src / name, d / name)
    res = run_night(tmp_path / "night", tmp_path / "out", site=None, mode="narrow",
                    streaks_method="classical", workers=0, progress=False)  # fmt: skip
    assert res.exit_code == 0
    cams = sorted(res.cameras)
    assert cams == [
        "tracker 1024x768",
        "tracker 1024x768 pointing 2",
        "tracker 1024x768 pointing 3",
    ]
    centres = set()
    for pkl in res.cameras.values():
        cal = json.loads((Path(pkl).parent / "calibration.json").read_text())
        assert cal["model_type"] == "tan-sip"
        centres.add(Path(pkl).parent.name)
    assert len(centres) == 3  # each pointing solved on its own frame
    assert len(res.calibration.rows) == 3 and res.calibration.n_failed == 0
    assert (tmp_path / "out" / "calibration" / "pointings" / "run.ecsv").is_file()


def test_night_help(capsys):
    assert main(["night", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and "--site" in out and "--workers" in out and "--scheduler" in out


def test_night_on_a_missing_folder_makes_no_output(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["night", str(tmp_path / "nope"), "--out", str(out), "--workers", "0"]) == 2
    assert "nope: not a folder" in capsys.readouterr().err and not out.exists()


def _field(shift: float, seed: int) -> np.ndarray:
    from skysift.simulation import make_star_field

    big, _ = make_star_field((300, 360), 150, fwhm=2.5, rng=7)  # the same sky every time
    rng = np.random.default_rng(seed)
    moved = np.roll(big, int(round(shift)), axis=1)[20:280, 20:340]
    return (moved + rng.normal(0, 3, moved.shape)).astype(np.float32)


def test_frames_of_a_camera_that_moved_split_into_pointings(tmp_path):
    """8 frames: 4 at one pointing, then 4 moved by 20 px: two pointings, the reference's first."""
    from astropy.io import fits

    from skysift.batch.night import _registration_image, frame_shift, pointing_groups

    paths = []
    for i in range(8):
        p = tmp_path / f"f{i}.fits"
        fits.PrimaryHDU(_field(0.0 if i < 4 else 20.0, seed=i)).writeto(p)
        paths.append(p)
    a, b = _registration_image(paths[0]), _registration_image(paths[5])
    assert abs(frame_shift(a, b) - 20.0) < 1.0  # measured to the pixel
    assert frame_shift(a, _registration_image(paths[1])) < 1.0
    groups = pointing_groups(paths, paths[1])
    assert groups == [paths[:4], paths[4:]]
    groups = pointing_groups(paths, paths[6])
    assert groups == [paths[4:], paths[:4]]
    assert pointing_groups(paths, paths[1], drift_px=30.0) == [paths]
