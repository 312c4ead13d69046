"""The configuration file: named stations whose settings become option defaults."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from skysift.cli import app, core, main
from skysift.cli.config import (
    apply_utc_offset,
    build_default_map,
    find_config,
    load_config,
    resolve_settings,
)
from skysift.errors import InputError
from skysift.io.metadata import parse_time

GOOD = """
[defaults]
station = "chaligny"
threshold = 4.5

[stations.chaligny]
site = [48.62, 6.08, 250]
fps = 25
utc_offset = "+01:00"

[stations.sutherland]
site = [-32.38, 20.81, 1798]
pixel-scale = 1.5

[defaults.streaks]
threshold = 0.7

[stations.sutherland.streaks]
method = "classical"
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty working folder, HOME and XDG_CONFIG_HOME: no configuration anywhere."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("SKYSIFT_CONFIG", raising=False)
    return tmp_path


@pytest.fixture
def seen(monkeypatch):
    """What `skysift calibrate` passes to read_frame; the run stops there with an InputError."""
    got: dict = {}

    def fake_read_frame(image, **kwargs):
        got.update(kwargs, image=image)
        msg = f"{image}: stopped by the test"
        raise InputError(msg)

    monkeypatch.setattr(core, "read_frame", fake_read_frame)
    return got


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_default_station_site_reaches_the_command(home, seen, capsys):
    _write(Path("skysift.toml"), GOOD)
    assert main(["calibrate", "x.png"]) == 2
    assert seen["site"] == pytest.approx((48.62, 6.08, 250.0))
    assert "stopped by the test" in capsys.readouterr().err


def test_named_station_and_explicit_site_wins(home, seen):
    _write(Path("skysift.toml"), GOOD)
    assert main(["--station", "sutherland", "calibrate", "x.png"]) == 2
    assert seen["site"] == pytest.approx((-32.38, 20.81, 1798.0))
    assert main(["--station", "sutherland", "calibrate", "x.png", "--site", "10", "20", "30"]) == 2
    assert seen["site"] == pytest.approx((10.0, 20.0, 30.0))


def test_no_configuration_leaves_defaults(home, seen):
    assert find_config() is None
    assert main(["calibrate", "x.png"]) == 2
    assert seen["site"] is None
    assert seen["time"] is None


def test_utc_offset_applies_to_a_naive_time(home, seen):
    _write(Path("skysift.toml"), GOOD)
    assert main(["calibrate", "x.png", "--time", "2026-01-01T22:30:00"]) == 2
    assert seen["time"] == "2026-01-01T22:30:00+01:00"
    # 22:30 local at UTC+1 is 21:30 UTC
    assert parse_time(seen["time"]).isot == "2026-01-01T21:30:00.000"
    assert main(["calibrate", "x.png", "--time", "2026-01-01T22:30:00Z"]) == 2
    assert parse_time(seen["time"]).isot == "2026-01-01T22:30:00.000"
    # the other station has no offset: the time is UTC
    assert (
        main(["--station", "sutherland", "calibrate", "x.png", "--time", "2026-01-01 22:30"]) == 2
    )
    assert seen["time"] == "2026-01-01 22:30"


@pytest.mark.parametrize(
    ("time", "offset", "expected"),
    [
        ("2018-08-17T00:52:21", "+02:00", "2018-08-17T00:52:21+02:00"),
        ("2018-08-17 00:52", "-05:30", "2018-08-17 00:52-05:30"),
        ("2018-08-17T00:52:21.25", "+02:00", "2018-08-17T00:52:21.25+02:00"),
        ("2018-08-17T00:52:21Z", "+02:00", "2018-08-17T00:52:21Z"),
        ("2018-08-17T00:52:21 UTC", "+02:00", "2018-08-17T00:52:21 UTC"),
        ("2018-08-17T00:52:21-0300", "+02:00", "2018-08-17T00:52:21-0300"),
        ("2018-08-17", "+02:00", "2018-08-17"),  # no time of day: left alone
        ("2018-08-17T00:52:21", None, "2018-08-17T00:52:21"),
        (None, "+02:00", None),
    ],
)
def test_apply_utc_offset(time, offset, expected):
    assert apply_utc_offset(time, offset) == expected


def test_station_options_go_to_every_command_that_has_them(home):
    config = load_config(_write(home / "c.toml", GOOD))
    settings = resolve_settings(config)
    assert settings.station == "chaligny"
    assert settings.values["utc_offset"] == "+01:00"
    dm = build_default_map(typer.main.get_command(app), settings)
    assert dm["calibrate"]["site"] == [48.62, 6.08, 250.0]
    assert dm["bolide"]["fps"] == 25
    assert dm["bolide"]["site"] == [48.62, 6.08, 250.0]
    assert "fps" not in dm["calibrate"]  # calibrate has no --fps
    assert dm["stars"]["threshold"] == 4.5  # from [defaults]
    assert "utc_offset" not in dm["calibrate"]  # read by --time, not an option
    # a command's own table wins over the station-wide value, for that command only
    assert dm["streaks"]["threshold"] == 0.7
    assert "method" not in dm["streaks"]
    other = build_default_map(typer.main.get_command(app), resolve_settings(config, "sutherland"))
    assert other["movers"]["pixel_scale"] == 1.5
    assert other["stamps"]["pixel_scale"] == 1.5
    assert other["streaks"] == {"threshold": 0.7, "method": "classical"}  # [defaults.streaks] too
    assert other["stars"] == {"threshold": 4.5}


def test_search_order(home, monkeypatch):
    xdg = _write(home / "xdg" / "skysift" / "config.toml", GOOD)
    dot = _write(home / "home" / ".config" / "skysift" / "config.toml", GOOD)
    assert find_config() == dot  # ~/.config without XDG_CONFIG_HOME
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    assert find_config() == xdg
    local = _write(Path("skysift.toml"), GOOD)
    assert find_config().resolve() == local.resolve()
    env = _write(home / "env.toml", GOOD)
    monkeypatch.setenv("SKYSIFT_CONFIG", str(env))
    assert find_config() == env
    explicit = _write(home / "explicit.toml", GOOD)
    assert find_config(explicit) == explicit


def test_config_option_and_show(home, monkeypatch):
    path = _write(home / "mine.toml", GOOD)
    runner = CliRunner()
    result = runner.invoke(
        app, ["--config", str(path), "--station", "sutherland", "config", "show"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"configuration: {path}" in out
    assert "stations: chaligny, sutherland" in out
    assert "station: sutherland\n" in out
    assert "site = -32.38 20.81 1798" in out
    assert "skysift calibrate: --site -32.38 20.81 1798" in out
    assert "skysift movers:" in out and "--pixel-scale 1.5" in out
    assert "  streaks.method = classical" in out
    assert "skysift streaks: --threshold 0.7 --method classical" in out
    result = runner.invoke(app, ["config", "show"])  # no file anywhere
    assert result.exit_code == 0
    assert "no configuration file" in result.output
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    assert runner.invoke(app, ["config", "path"]).exit_code == 1
    xdg = _write(home / "xdg" / "skysift" / "config.toml", GOOD)
    result = runner.invoke(app, ["config", "path"])
    assert result.exit_code == 0
    assert result.output.strip() == str(xdg)


def test_verbose_names_the_configuration(home, seen, capsys):
    path = _write(Path("skysift.toml"), GOOD)
    assert main(["--verbose", "calibrate", "x.png"]) == 2
    err = capsys.readouterr().err
    assert "configuration:" in err and path.name in err
    assert "station: chaligny" in err
    assert main(["calibrate", "x.png"]) == 2
    assert "configuration:" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[stations.a]\nsite = [48.6, 6.1]\n", "[stations.a] site: site must be 3 numbers"),
        ("[stations.a]\nsite = [95, 6.1, 200]\n", "latitude must be within ±90 degrees, got 95"),
        ("[stations.a]\nsite = [45, 400, 200]\n", "longitude must be within"),
        ('[stations.a]\nsite = ["45", 6, 200]\n', "site must be 3 numbers"),
        ("[stations.a]\nsite = [45, 6, 99999]\n", "height must be within"),
        ("[stations.a]\nfps = 0\n", "[stations.a] fps: fps must be a number"),
        ('[stations.a]\nutc_offset = "1 hour"\n', "utc_offset must be '+hh:mm'"),
        ('[stations.a]\nutc_offset = "+15:00"\n', "utc_offset must be within"),
        ('[stations.a]\ntime = "2020-01-01"\n', "'time' cannot be set in a configuration file"),
        ("[stations.a]\nsite = [45, 6\n", "not valid TOML"),
        ('[defaults]\nstation = "b"\n[stations.a]\nfps = 25\n', "station 'b' is not defined"),
        ("[station.a]\nfps = 25\n", "unknown table or key 'station'"),
        ("[stations.a]\nfoo = 3\n", "foo: no command has an option 'foo'"),
        ('[stations.a]\nthreshold = "high"\n', "invalid value 'high' for stars --threshold"),
        ("[stations.a.bolide.x]\nfps = 3\n", "[stations.a.bolide] x: expected a value, got a"),
        (
            "[stations.a.nocmd]\nfps = 3\n",
            "nocmd: no command 'nocmd' (commands: bolide, calibrate,",
        ),
        ("[stations.a.calibrate]\nfps = 3\n", "skysift calibrate has no option 'fps'"),
        ("stations = 3\n", "stations must be tables"),
    ],
)
def test_bad_file_exits_2_with_one_line(home, capsys, text, problem):
    path = _write(Path("skysift.toml"), text)
    with pytest.raises(InputError, match=r"skysift\.toml"):
        resolve_settings(load_config(path), "a" if "stations.a" in text else None)
        build_default_map(typer.main.get_command(app), resolve_settings(load_config(path), "a"))
    assert main(["--station", "a", "calibrate", "x.png"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("skysift: error: ")
    assert str(path.resolve()) in err or "skysift.toml" in err
    assert problem in err


def test_unknown_station_lists_the_known_ones(home, capsys):
    path = _write(Path("skysift.toml"), GOOD).resolve()
    assert main(["--station", "nowhere", "calibrate", "x.png"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"skysift: error: {path}: unknown station 'nowhere' (stations: chaligny, sutherland)"
    )


@pytest.mark.parametrize("how", ["option", "env", "no file"])
def test_missing_file_exits_2(home, monkeypatch, capsys, how):
    args = ["calibrate", "x.png"]
    if how == "option":
        args = ["--config", "missing.toml", *args]
        problem = r"missing\.toml: configuration file not found \(--config\)"
    elif how == "env":
        monkeypatch.setenv("SKYSIFT_CONFIG", "missing.toml")
        problem = r"missing\.toml: configuration file not found \(\$SKYSIFT_CONFIG\)"
    else:
        args = ["--station", "a", *args]
        problem = r"--station a: no configuration file found \(looked in .*skysift\.toml"
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(problem, err), err
    with pytest.raises(InputError, match=problem):
        if how == "no file":
            resolve_settings(None, "a")
        else:
            find_config(Path("missing.toml") if how == "option" else None)


def test_unreadable_file(home):
    folder = Path("skysift.toml")
    folder.mkdir()  # a folder named like the file is skipped, not read
    assert find_config() is None
    with pytest.raises(InputError, match="cannot read the configuration file"):
        load_config(folder)


def test_config_group_has_help(capsys):
    assert main(["config", "--help"]) == 0
    out = capsys.readouterr().out
    assert "show" in out and "path" in out


def test_slow_tests_skip_unless_asked(tmp_path):
    """tests/conftest.py: @pytest.mark.slow skips by default; --runslow and -m slow run them."""
    (tmp_path / "conftest.py").write_text((Path(__file__).parent / "conftest.py").read_text())
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\n@pytest.mark.slow\ndef test_slow():\n    pass\n\n"
        "def test_fast():\n    pass\n"
    )

    def run(*args: str) -> str:
        cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:randomly", "-p", "no:cacheprovider", *args]  # fmt: skip
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        return done.stdout

    out = run()
    assert "1 passed, 1 skipped" in out and "run with --runslow" in out
    assert "2 passed" in run("--runslow")
    assert "1 passed, 1 deselected" in run("-m", "slow")
