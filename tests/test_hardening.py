"""Hardening of the command line (issue 21, defect 8): messages for CLI users, no empty
output folders after a failed run, temporary files of killed runs cleaned on the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skysift.cli import main
from skysift.errors import InputError
from skysift.outputs.files import (
    _host_tag,
    atomic_path,
    clean_stale_temps,
    ensure_out_dir,
    prepared_out_dir,
)
from skysift.simulation import make_star_field


def _cube(path: Path, n: int = 3) -> Path:
    fits.PrimaryHDU(np.zeros((n, 24, 24), np.float32)).writeto(path)
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("skysift: error: ")
    return err


# ---------------------------------------------------------------- messages for CLI users
@pytest.mark.parametrize("command", ["stars", "trails"])
def test_a_cube_given_for_one_image_says_what_to_do_on_the_command_line(command, tmp_path, capsys):
    cube = _cube(tmp_path / "cube.fits")
    rc = main([command, str(cube), "--out", str(tmp_path / "out")])
    assert rc == 2
    err = _one_error_line(capsys)
    assert "cube.fits: a sequence of several frames, not one image" in err
    assert "give a single image file" in err and "`skysift bolide`" in err
    assert not err.endswith("use read_sequence()")  # a Python name alone is no help here


# ---------------------------------------------------------------- no empty output folders
def test_failed_bolide_leaves_no_output_folder(tmp_path, capsys):
    out = tmp_path / "new" / "run1"
    assert main(["bolide", str(tmp_path / "nope.mp4"), "--out", str(out)]) == 2
    assert "nope.mp4" in _one_error_line(capsys)
    assert not out.exists() and not (tmp_path / "new").exists()  # both were made by the run


def test_failed_bolide_keeps_a_users_existing_folder(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    assert main(["bolide", str(tmp_path / "nope.mp4"), "--out", str(out)]) == 2
    _one_error_line(capsys)
    assert out.is_dir()


def test_failed_bolide_without_out_leaves_no_default_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    short = _cube(tmp_path / "short.fits", n=2)
    assert main(["bolide", str(short), "--fps", "25"]) == 2
    assert "at least 3 frames" in _one_error_line(capsys)
    assert not (tmp_path / "skysift-out").exists()


def test_failed_trails_leaves_no_output_folder(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # truncated
    out = tmp_path / "trails-out"
    assert main(["trails", str(bad), "--out", str(out)]) == 2
    assert "bad.png" in _one_error_line(capsys)
    assert not out.exists()


def test_trails_keeps_the_folder_once_something_was_written(tmp_path, capsys):
    image, _ = make_star_field((96, 128), 15, rng=3)
    good = tmp_path / "good.fits"
    fits.PrimaryHDU(np.asarray(image, np.float32)).writeto(good)
    out = tmp_path / "trails-out"
    assert main(["trails", str(good), str(tmp_path / "missing.fits"), "--out", str(out)]) == 2
    assert "missing.fits" in _one_error_line(capsys)
    assert (out / "good.trails.ecsv").is_file()  # the first image's result is kept


def test_prepared_out_dir_rules(tmp_path):
    made = tmp_path / "a" / "b"
    with pytest.raises(KeyboardInterrupt), prepared_out_dir(made, "x") as folder:
        assert folder == made and folder.is_dir()
        raise KeyboardInterrupt
    assert not (tmp_path / "a").exists()
    with pytest.raises(InputError, match="boom"), prepared_out_dir(made, "x") as folder:
        (folder / "partial.ecsv").write_text("x")
        raise InputError("boom")
    assert (made / "partial.ecsv").is_file()  # something was written: kept
    (tmp_path / "f").write_text("a file")
    with pytest.raises(InputError, match="a file of that name is in the way"):
        with prepared_out_dir(tmp_path / "f", "x"):
            pass
    assert (tmp_path / "f").read_text() == "a file"


# ---------------------------------------------------------------- temporary files of killed runs
_KILLED_WRITER = """
import os, signal, sys
from skysift.outputs.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half a table")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and process checks are POSIX")
def test_temp_file_of_a_killed_run_is_cleaned_on_the_next_run(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "summary.ecsv"
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], check=False)
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in out.iterdir() if p.name.startswith(".summary.ecsv.")]
    assert len(left) == 1 and left[0].name.endswith(".tmp.ecsv") and not target.exists()
    # the next run on the folder removes it
    image, _ = make_star_field((64, 64), 5, rng=1)
    img = tmp_path / "img.fits"
    fits.PrimaryHDU(np.asarray(image, np.float32)).writeto(img)
    rc = main(["streaks", str(img), "--method", "classical", "--out", str(out)])
    capsys.readouterr()
    assert rc == 0
    assert not left[0].exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_clean_stale_temps_removes_only_abandoned_files(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(done.stdout)
    here = _host_tag()
    other = "000000" if here != "000000" else "111111"
    old = time.time() - 2 * 24 * 3600
    files = {
        "dead": f".a.ecsv.{here}-{dead}-abcd1234.tmp.ecsv",
        "mine": f".b.ecsv.{here}-{os.getpid()}-abcd1234.tmp.ecsv",
        "other_recent": f".c.fits.{other}-{dead}-abcd1234.tmp.fits",
        "other_old": f".d.fits.{other}-{dead}-abcd1234.tmp.fits",
        "legacy_recent": ".e.ecsv.k2j4_x9a.tmp.ecsv",
        "legacy_old": ".f.ecsv.k2j4_x9b.tmp.ecsv",
        "user_hidden": ".notes.tmp",
        "user_file": "g.ecsv",
    }
    for key, name in files.items():
        p = tmp_path / name
        p.write_text(key)
        if key.endswith("_old") or key.startswith("user"):
            os.utime(p, (old, old))
    removed = {p.name for p in clean_stale_temps(tmp_path)}
    assert removed == {files["dead"], files["other_old"], files["legacy_old"]}
    left = {p.name for p in tmp_path.iterdir()}
    assert left == set(files.values()) - removed
    assert clean_stale_temps(tmp_path / "missing") == []


def test_atomic_path_names_its_temp_file_for_cleaning(tmp_path):
    with atomic_path(tmp_path / "x.ecsv") as tmp:
        assert tmp.name.startswith(f".x.ecsv.{_host_tag()}-{os.getpid()}-")
        assert tmp.name.endswith(".tmp.ecsv")
        tmp.write_text("ok")
        assert clean_stale_temps(tmp_path) == []  # a running writer's file stays
    assert (tmp_path / "x.ecsv").read_text() == "ok"
    ensure_out_dir(tmp_path, "x")
    assert [p.name for p in tmp_path.iterdir()] == ["x.ecsv"]


# ---------------------------------------------------------------- --verbose / --quiet
def _star_image(tmp_path: Path) -> Path:
    image, _ = make_star_field((64, 64), 5, rng=1)
    path = tmp_path / "img.fits"
    fits.PrimaryHDU(np.asarray(image, np.float32)).writeto(path)
    return path


def test_quiet_hides_the_progress_bar(tmp_path, capsys):
    img = _star_image(tmp_path)
    args = ["streaks", str(img), "--method", "classical", "--no-resume"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    shown = capsys.readouterr()
    assert "streaks:" in shown.err and "image" in shown.err  # the tqdm bar
    assert main(["--quiet", *args, "--out", str(tmp_path / "b")]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == ""
    assert "1 images, 0 streaks" in quiet.out  # the result line stays


@pytest.mark.parametrize(
    ("flags", "level", "shown"),
    [
        ([], "INFO", {"info", "warning"}),
        (["--verbose"], "DEBUG", {"debug", "info", "warning"}),
        (["-v"], "DEBUG", {"debug", "info", "warning"}),
        (["--quiet"], "WARNING", {"warning"}),
        (["-q"], "WARNING", {"warning"}),
    ],
)
def test_verbose_and_quiet_set_the_skysift_logger(
    flags, level, shown, monkeypatch, capsys, tmp_path
):
    import logging

    from astropy.table import Table

    import skysift.cli.streaks as cli_streaks

    seen = {}

    def fake_run_streaks(inputs, out_dir, **kwargs):
        log = logging.getLogger("skysift.streaks")
        seen["level"] = logging.getLevelName(logging.getLogger("skysift").level)
        log.debug("msg-debug")
        log.info("msg-info")
        log.warning("msg-warning")
        return Table(names=["file", "p_streak", "n_streaks", "error"], dtype=[str, float, int, str])

    monkeypatch.setattr(cli_streaks, "run_streaks", fake_run_streaks)
    assert main([*flags, "streaks", "x.fits", "--out", str(tmp_path)]) == 0
    assert seen["level"] == level
    err = capsys.readouterr().err
    got = {k for k in ("debug", "info", "warning") if f"msg-{k}" in err}
    assert got == shown


def test_verbose_and_quiet_together_are_refused(capsys):
    assert main(["--verbose", "--quiet", "stars", "x.fits"]) == 2
    assert "--verbose and --quiet cannot be used together" in _one_error_line(capsys)


@pytest.mark.parametrize("command", ["stars", "streaks", "trails"])
def test_a_negative_axis_length_is_refused(command, tmp_path, capsys):
    """A FITS header with NAXIS1 = -5 (a corrupt file) fails with one line, not a 10x144 image."""
    path = tmp_path / "negative.fits"
    fits.PrimaryHDU(np.zeros((10, 144), np.float32)).writeto(path)
    raw = bytearray(path.read_bytes())
    card = raw.find(b"NAXIS1  =")
    raw[card : card + 80] = b"NAXIS1  =".ljust(9) + b"-5".rjust(21) + b" " * 50
    path.write_bytes(bytes(raw))
    code = main([command, str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0
    assert "every axis must be a positive integer" in err and "negative.fits" in err


def test_native_library_noise_is_silenced(tmp_path):
    """FFmpeg's and libpng's own stderr lines do not precede skysift's one-line error."""
    mp4 = tmp_path / "text.mp4"
    mp4.write_text("not a video\n" * 50)
    png = tmp_path / "cut.png"
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (128, 128), dtype=np.uint8)
    Image.fromarray(noise).save(png)
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])  # cut inside the image data
    for path, command in ((mp4, "bolide"), (png, "stars")):
        proc = subprocess.run(
            [sys.executable, "-m", "skysift", command, str(path), "--out", str(tmp_path / "o")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert lines and all(ln.startswith("skysift") for ln in lines), proc.stderr


def test_calibrate_reports_its_stages_to_a_progress_callback(data_dir):
    """calibrate() tells a progress bar its stages in order (the CLI shows them on a terminal)."""
    from skysift.calibration.pipeline import calibrate
    from skysift.io import read_frame

    seen: list[tuple[str, float]] = []
    frame = read_frame(data_dir / "magic_allsky" / "20180817_0055.fits")
    calibrate(frame, site=(28.7619, -17.8908, 2200.0), progress=lambda s, f: seen.append((s, f)))
    assert [s for s, _ in seen] == ["detection", "astrometry", "photometry", "photometry"]
    assert [f for _, f in seen] == sorted(f for _, f in seen) and seen[-1][1] == 1.0


def test_trails_inputs_sharing_a_stem_get_their_own_tables(tmp_path, capsys):
    """x.fits and x.png in one `skysift trails` run: two tables, neither overwrites the other."""
    from PIL import Image

    img = _star_image(tmp_path)
    data = fits.getdata(img).astype(np.float32)
    fits.PrimaryHDU(data).writeto(tmp_path / "x.fits")
    u8 = np.clip(data / max(float(data.max()), 1.0) * 255, 0, 255).astype(np.uint8)
    Image.fromarray(u8).save(tmp_path / "x.png")
    out = tmp_path / "out"
    assert main(["trails", str(tmp_path / "x.fits"), str(tmp_path / "x.png"), "--out", str(out)]) == 0
    assert (out / "x.fits.trails.ecsv").is_file() and (out / "x.png.trails.ecsv").is_file()
    assert not (out / "x.trails.ecsv").exists()
