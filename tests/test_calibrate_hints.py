"""RA/Dec hints for narrow-field plate solves (calibrate --ra --dec --radius).

Real frame: a tetra3 star-tracker image (11.4 deg field) whose blind solution
is RA 355.205, Dec +58.152 deg (tests/test_pipeline.py solves it blind).
astrometry.net searches only within the radius of the hint; a tetra3rs
solution (its search takes no hint) is rejected outside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from skysift.calibration import astrometry_net, platesolve
from skysift.calibration.pipeline import calibrate, find_stars
from skysift.calibration.platesolve import DEFAULT_HINT_RADIUS_DEG, sky_hint, solve_plate
from skysift.cli import main
from skysift.errors import CalibrationError, InputError
from skysift.io import read_frame

FRAME = (
    Path(__file__).parent
    / "data"
    / "tetra3_startracker"
    / "2019-07-29T204726_Alt40_Azi45_Try1.tiff"
)
CENTRE = (355.205, 58.152)  # the blind solution's field centre, deg
FOV_DEG = 11.4

needs_solve_field = pytest.mark.skipif(
    not astrometry_net.is_available(),
    reason="astrometry.net solve-field not installed (apt-get install astrometry.net "
    "astrometry-data-tycho2-07-littleendian ... -19)",
)


@pytest.fixture(scope="module")
def tetra3_frame():
    if not FRAME.exists():
        pytest.skip(f"{FRAME} is missing (tests/data)")
    frame = read_frame(FRAME)
    stars, _ = find_stars(frame)
    return frame, stars


@pytest.fixture(scope="module")
def anet_solution(tetra3_frame):
    """The frame solved by astrometry.net near the right hint (about 2.5 s)."""
    if not astrometry_net.is_available():
        pytest.skip("astrometry.net solve-field not installed")
    frame, stars = tetra3_frame
    try:
        return solve_plate(
            stars,
            frame.shape,
            fov_deg=FOV_DEG,
            backend="astrometry.net",
            center=CENTRE,
            radius_deg=3.0,
            timeout_s=10,
        )
    except CalibrationError as exc:  # pragma: no cover - depends on the index files
        pytest.skip(f"the installed astrometry.net index files do not solve this field: {exc}")


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("ra", "dec", "expected"),
    [
        (83.8221, -5.3911, (83.8221, -5.3911)),
        ("83.8221", "-5.3911", (83.8221, -5.3911)),
        ("05:35:17.3", "-05:23:28", (83.8221, -5.3911)),  # RA in hours, Dec in degrees
        ("5 35 17.3", "-5 23 28", (83.8221, -5.3911)),
        ("5h35m17.3s", "-5d23m28s", (83.8221, -5.3911)),
        ("83.8221d", "-5.3911d", (83.8221, -5.3911)),
        (-10.0, 90, (350.0, 90.0)),
    ],
)
def test_sky_hint_parses_degrees_and_sexagesimal(ra, dec, expected):
    centre, radius = sky_hint(ra, dec)
    assert centre.ra.deg == pytest.approx(expected[0], abs=1e-4)
    assert centre.dec.deg == pytest.approx(expected[1], abs=1e-4)
    assert radius == DEFAULT_HINT_RADIUS_DEG
    assert sky_hint(None, None) is None
    assert sky_hint(ra, dec, 2)[1] == 2.0


def test_bad_hints_raise():
    with pytest.raises(InputError, match=r"dec must be within \[-90, 90\]"):
        sky_hint(10.0, 95.0)
    with pytest.raises(InputError, match=r"dec must be within \[-90, 90\]"):
        sky_hint("1:00:00", "-91:00:00")
    with pytest.raises(InputError, match=r"radius_deg must be in \(0, 180\]"):
        sky_hint(10.0, 20.0, 0)
    with pytest.raises(InputError, match=r"radius_deg must be in \(0, 180\]"):
        sky_hint(10.0, 20.0, -3.0)
    with pytest.raises(InputError, match="radius_deg must be a number"):
        sky_hint(10.0, 20.0, "5")
    with pytest.raises(InputError, match="needs both RA and Dec"):
        sky_hint(10.0, None)
    with pytest.raises(InputError, match="needs the RA and Dec"):
        sky_hint(None, None, 5.0)
    with pytest.raises(InputError, match="ra is not an angle"):
        sky_hint("north", 20.0)
    with pytest.raises(InputError, match="dec must be finite"):
        sky_hint(10.0, float("nan"))
    with pytest.raises(InputError, match="ra must be a number of degrees or an angle string"):
        sky_hint([10.0], 20.0)
    stars = Table({"x": [1.0, 50.0, 20.0, 70.0], "y": [5.0, 9.0, 60.0, 40.0], "flux": [1.0] * 4})
    with pytest.raises(InputError, match="center must be a SkyCoord"):
        solve_plate(stars, (100, 100), center=10.0)


def test_calibrate_checks_the_hint_before_solving():
    image = np.zeros((64, 64), np.float32)
    with pytest.raises(InputError, match=r"dec must be within \[-90, 90\]"):
        calibrate(image, ra_deg=10.0, dec_deg=-100.0)
    with pytest.raises(InputError, match=r"radius_deg must be in \(0, 180\]"):
        calibrate(image, ra_deg=10.0, dec_deg=10.0, radius_deg=0.0)


def test_cli_rejects_a_bad_radius(tmp_path, capsys):
    rc = main(["calibrate", str(FRAME), "--ra", "23:40:49", "--dec", "58.15", "--radius", "0"])
    assert rc == 2
    assert "radius_deg must be in (0, 180]" in capsys.readouterr().err


# ----------------------------------------------------------------------------- astrometry.net
@needs_solve_field
def test_astrometry_net_right_hint_solves_wrong_hint_fails(tetra3_frame, anet_solution):
    sol = anet_solution
    assert sol.backend == "astrometry.net"
    assert sol.center.separation(sky_hint(*CENTRE)[0]).deg < 0.05
    assert sol.n_matched >= 10 and sol.rms_px < 1.0
    assert sol.meta["hint"]["radius_deg"] == 3.0
    assert "--ra 355.205000 --dec 58.152000 --radius 3" in sol.meta["command"]
    frame, stars = tetra3_frame
    with pytest.raises(CalibrationError, match=r"hint RA 200\.000, Dec -30\.000 deg"):
        solve_plate(
            stars,
            frame.shape,
            fov_deg=FOV_DEG,
            backend="astrometry.net",
            center=("13:20:00", "-30:00:00"),
            radius_deg=3.0,
            timeout_s=1,
        )


# ----------------------------------------------------------------------------- tetra3rs
def _tetra3rs_returns(monkeypatch, solution):
    """Stand in for the tetra3rs search (its database takes ~15 s to build): it returns
    the frame's real solution, whatever the hint; the hint check is what is tested."""
    monkeypatch.setattr(platesolve, "_solve_tetra3rs", lambda *a, **k: solution)


@needs_solve_field
def test_tetra3rs_solution_outside_the_hint_is_rejected_naming_the_hint(
    tetra3_frame, anet_solution, monkeypatch
):
    frame, _ = tetra3_frame
    _tetra3rs_returns(monkeypatch, anet_solution)
    with pytest.raises(CalibrationError, match=r"from the hint RA 200\.000, Dec -30\.000 deg"):
        calibrate(frame, mode="narrow", fov_deg=FOV_DEG, ra_deg=200.0, dec_deg=-30.0)
    result = calibrate(
        frame, mode="narrow", fov_deg=FOV_DEG, ra_deg="23:40:49", dec_deg="+58:09:07"
    )
    assert result.model_type == "tan-sip"
    assert result.solution.meta["hint"]["separation_deg"] < 0.05


@needs_solve_field
def test_cli_hint_options_reach_the_solver(
    tetra3_frame, anet_solution, monkeypatch, tmp_path, capsys
):
    _tetra3rs_returns(monkeypatch, anet_solution)
    out = tmp_path / "t3"
    args = ["calibrate", str(FRAME), "--mode", "narrow", "--fov", "11.4", "--no-plot"]
    rc = main([*args, "--ra", "23:40:49", "--dec=+58:09:07", "--radius", "2", "--out", str(out)])
    assert rc == 0
    info = json.loads((out / "calibration.json").read_text())
    assert info["model_type"] == "tan-sip"
    capsys.readouterr()
    rc = main([*args, "--ra", "10", "--dec", "-40", "--radius", "2", "--out", str(tmp_path / "x")])
    assert rc == 3  # calibration failed
    assert "from the hint RA 10.000, Dec -40.000 deg" in capsys.readouterr().err


@pytest.mark.slow
def test_tetra3rs_with_real_database_and_hints(tetra3_frame, tmp_path, monkeypatch):
    """The real tetra3rs search (builds an 8-16 deg database into a temporary cache)."""
    pytest.importorskip("tetra3rs", reason="tetra3rs is not installed")
    monkeypatch.setenv("SKYSIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(platesolve, "_DB_CACHE", {})
    frame, _ = tetra3_frame
    result = calibrate(frame, mode="narrow", fov_deg=FOV_DEG, ra_deg=355.0, dec_deg=58.0)
    assert result.solution.backend == "tetra3rs"
    assert result.solution.meta["hint"]["separation_deg"] < 0.5
    with pytest.raises(CalibrationError, match=r"hint RA 175\.000, Dec -58\.000 deg"):
        calibrate(frame, mode="narrow", fov_deg=FOV_DEG, ra_deg=175.0, dec_deg=-58.0)
