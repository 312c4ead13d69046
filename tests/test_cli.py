"""The command line: help for every command, outputs, and one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift.cli import app, main
from skysift.simulation import make_star_field


def _one_line_error(capsys, path_part: str, problem: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("skysift: error: ")
    assert path_part in err
    assert problem in err


@pytest.mark.parametrize(
    "command",
    [
        None,
        "stars",
        "calibrate",
        "demo",
        "simulate",
        "streaks",
        "train",
        "train stars",
        "evaluate",
        "evaluate stars",
    ],
)
def test_every_command_has_help(command, capsys):
    args = ["--help"] if command is None else [*command.split(), "--help"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Usage" in out
    if command is None:
        for name in ("stars", "calibrate", "demo", "simulate", "streaks", "train", "evaluate"):
            assert name in out


def test_registered_commands():
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert {"stars", "calibrate", "demo"} <= names


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("skysift ")


def test_stars_writes_table_with_truth(tmp_path, capsys):
    image, truth = make_star_field(
        (200, 240), 25, fwhm=3.0, flux_range=(5e3, 1e5), min_separation=12, rng=4
    )
    path = tmp_path / "field.fits"
    fits.PrimaryHDU(image).writeto(path)
    out = tmp_path / "out"
    assert main(["stars", str(path), "--out", str(out)]) == 0
    t = Table.read(out / "stars.ecsv")
    assert {"x", "y", "flux", "flux_err", "fwhm", "peak", "flags"} <= set(t.colnames)
    assert (out / "stars.png").stat().st_size > 1000
    # Every true star is found within 0.3 px (0-based pixel convention end to end).
    d = np.min(
        np.hypot(t["x"][:, None] - truth["x"][None], t["y"][:, None] - truth["y"][None]), axis=0
    )
    assert np.all(d < 0.3)


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    assert main(["stars", str(empty)]) != 0
    _one_line_error(capsys, "empty.fits", "empty")

    good = tmp_path / "good.fits"
    fits.PrimaryHDU(np.zeros((64, 64), np.float32)).writeto(good)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[:5000])
    assert main(["stars", str(truncated)]) != 0
    _one_line_error(capsys, "truncated.fits", "truncated")

    oned = tmp_path / "oned.fits"
    fits.PrimaryHDU(np.arange(100, dtype=np.float32)).writeto(oned)
    assert main(["stars", str(oned)]) != 0
    _one_line_error(capsys, "oned.fits", "1-D")

    nan = tmp_path / "nan.fits"
    fits.PrimaryHDU(np.full((64, 64), np.nan, np.float32)).writeto(nan)
    assert main(["stars", str(nan)]) != 0
    _one_line_error(capsys, "nan.fits", "NaN")

    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    assert main(["stars", str(video)]) != 0
    _one_line_error(capsys, "broken.mp4", "video")


def test_site_out_of_range(tmp_path, capsys):
    image, _ = make_star_field((64, 64), 3, rng=1)
    path = tmp_path / "f.fits"
    fits.PrimaryHDU(image).writeto(path)
    assert (
        main(["calibrate", str(path), "--site", "95", "10", "100", "--time", "2020-01-01T00:00:00"])
        == 2
    )
    _one_line_error(capsys, "", "latitude must be in [-90, 90]")


def test_image_without_stars_cannot_be_calibrated(tmp_path, capsys):
    rng = np.random.default_rng(3)
    path = tmp_path / "blank.fits"
    fits.PrimaryHDU(rng.normal(1000, 10, (128, 128)).astype(np.float32)).writeto(path)
    out = tmp_path / "out"
    assert main(["calibrate", str(path), "--out", str(out)]) == 4
    _one_line_error(capsys, "blank", "not enough stars to calibrate")
    assert not (out / "calibration.json").exists()


def test_calibration_json_round_trip_is_valid_json(tmp_path):
    # A tiny check that JSON writing is atomic: a failing writer leaves no partial file.
    from skysift.outputs.files import atomic_path, write_json

    target = tmp_path / "c.json"
    write_json({"a": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_python_dash_m_and_exit_code_in_a_real_process(tmp_path):
    import subprocess
    import sys

    ok = subprocess.run(
        [sys.executable, "-m", "skysift", "--version"], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0 and ok.stdout.startswith("skysift ")
    missing = subprocess.run(
        [sys.executable, "-m", "skysift", "stars", str(tmp_path / "none.fits")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == f"skysift: error: {tmp_path / 'none.fits'}: no such file or folder"
    )


def test_streaks_command_on_the_real_streak_frame(data_dir, tmp_path, capsys):
    out = tmp_path / "st"
    assert main(["streaks", str(data_dir / "astride_streak" / "long.fits"), "--out", str(out)]) == 0
    t = Table.read(out / "long.streaks.ecsv")
    assert len(t) == 1
    # The original C pipeline measured this streak over x 20..342, y 309..338.
    assert min(t["x1"][0], t["x2"][0]) < 25 and max(t["x1"][0], t["x2"][0]) > 335
    assert {"ra1", "dec1", "ra2", "dec2"} <= set(t.colnames)
    summary = Table.read(out / "summary.ecsv")
    assert list(summary["n_streaks"]) == [1]
    assert "1 images, 1 streaks" in capsys.readouterr().out


def test_ctrl_c_exits_130_and_says_so(monkeypatch, tmp_path, capsys):
    """A KeyboardInterrupt inside a command exits 130 with one line, not 0 and silence."""
    import skysift.cli.core as core

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    path = tmp_path / "field.fits"
    image, _ = make_star_field((64, 64), n_stars=5, rng=1)
    fits.PrimaryHDU(image.astype(np.float32)).writeto(path)
    monkeypatch.setattr(core, "find_stars", interrupted)
    assert main(["stars", str(path), "--out", str(tmp_path / "o")]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_unusable_out_is_refused_before_computing(tmp_path, capsys):
    path = tmp_path / "field.fits"
    image, _ = make_star_field((64, 64), n_stars=5, rng=1)
    fits.PrimaryHDU(image.astype(np.float32)).writeto(path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for out in (blocker, blocker / "inside"):
        assert main(["stars", str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("skysift: error: --out "), err
    assert blocker.read_text() == "x"


def test_streaks_exit_code_names_failed_inputs(tmp_path, capsys):
    """Every input bad: exit 2; some bad: exit 5; each failure named on stderr."""
    missing = tmp_path / "nonexistent.fits"
    assert (
        main(["streaks", str(missing), "--out", str(tmp_path / "a"), "--method", "classical"]) == 2
    )
    err = capsys.readouterr().err
    assert f"skysift: failed: {missing}" in err
    good = tmp_path / "sky.fits"
    fits.PrimaryHDU(np.random.default_rng(0).normal(100, 3, (64, 64)).astype("f4")).writeto(good)
    rc = main(
        ["streaks", str(good), str(missing), "--out", str(tmp_path / "b"), "--method", "classical"]
    )
    out = capsys.readouterr()
    assert rc == 5
    assert "2 images, 0 streaks, 1 failed" in out.out
    assert out.err.count("skysift: failed:") == 1


def test_warnings_are_one_line(tmp_path, capsys):
    """A warning inside a command prints one 'skysift: warning:' line, no source line."""
    import warnings

    import skysift.cli.core as core

    def warns(*args, **kwargs):
        warnings.warn(
            "12000 sources above 3 sigma: kept the 10 brightest", UserWarning, stacklevel=2
        )
        raise KeyboardInterrupt

    path = tmp_path / "field.fits"
    image, _ = make_star_field((64, 64), n_stars=5, rng=1)
    fits.PrimaryHDU(image.astype(np.float32)).writeto(path)
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("always")
        mp.setattr(core, "find_stars", warns)
        assert main(["stars", str(path), "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err.splitlines()
    assert "skysift: warning: 12000 sources above 3 sigma: kept the 10 brightest" in err
    assert not any("warnings.warn" in line for line in err)


def test_the_command_line_starts_without_importing_torch():
    """torch (the learn extra) is imported by the commands that need it, not at start-up."""
    import subprocess
    import sys

    code = "import sys, skysift.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
