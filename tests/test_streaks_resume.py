"""The streak pipeline's output names and resume: unique names, reuse only on same input and parameters."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift.errors import InputError
from skysift.simulation import make_star_field
from skysift.simulation.streaks import render_streak
from skysift.streaks.pipeline import output_stems, run_streaks

SHAPE = (128, 160)
#: The streak of the frames "with a streak": from (10, 20) to (150, 100), pixels.
ENDS = (10.0, 20.0, 150.0, 100.0)


def _frame(seed: int, streak: bool) -> np.ndarray:
    stars, _ = make_star_field(SHAPE, 20, rng=seed)
    if streak:
        line, _ = render_streak(SHAPE, *ENDS, 5e4, 3.0)
        stars = stars + line
    return np.asarray(stars, np.float32)


def _fits(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data).writeto(path, overwrite=True)
    return path


def _png(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scaled = np.clip((data - data.min()) / (np.percentile(data, 99.99) - data.min()), 0, 1)
    assert cv2.imwrite(str(path), (scaled * 65535).astype(np.uint16))
    return path


def _ends_ok(table: Table) -> bool:
    """One streak, its ends within 5 px of the truth (either order)."""
    if len(table) != 1:
        return False
    r = table[0]
    got = np.array([[r["x1"], r["y1"]], [r["x2"], r["y2"]]])
    true = np.array(ENDS).reshape(2, 2)
    err = min(np.abs(got - true).max(), np.abs(got[::-1] - true).max())
    return bool(err < 5)


def _by_file(summary: Table) -> dict[str, dict]:
    return {str(r["file"]): dict(zip(summary.colnames, r, strict=True)) for r in summary}


def test_same_stem_in_two_folders_gives_two_results(tmp_path):
    a = _fits(tmp_path / "a" / "x.fits", _frame(0, streak=True))
    b = _fits(tmp_path / "b" / "x.fits", _frame(1, streak=False))
    out = tmp_path / "out"
    summary = run_streaks([a, b], out, method="classical", progress=False)
    rows = _by_file(summary)
    assert rows[str(a)]["n_streaks"] == 1 and rows[str(b)]["n_streaks"] == 0
    sa, sb = rows[str(a)]["stem"], rows[str(b)]["stem"]
    assert sa != sb and sa.startswith("x-") and sb.startswith("x-")
    ta = Table.read(out / f"{sa}.streaks.ecsv")
    tb = Table.read(out / f"{sb}.streaks.ecsv")
    assert _ends_ok(ta) and len(tb) == 0
    assert ta.meta["input"] == str(a) and tb.meta["input"] == str(b)
    assert fits.getdata(out / f"{sa}.prob.fits").max() > 0.5
    assert fits.getdata(out / f"{sb}.prob.fits").max() < 0.5
    # stable: a second run names them the same and reuses both
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("x-*")}
    time.sleep(0.02)
    again = run_streaks([a, b], out, method="classical", progress=False)
    assert list(again["stem"]) == [sa, sb]
    assert {p: p.stat().st_mtime_ns for p in out.glob("x-*")} == mtimes
    assert list(again["n_streaks"]) == [1, 0]


def test_same_stem_other_suffix_keeps_the_suffix(tmp_path):
    # as `skysift simulate streaks` writes them: streaks_00001.fits and streaks_00001.png
    f = _fits(tmp_path / "in" / "s.fits", _frame(2, streak=False))
    p = _png(tmp_path / "in" / "s.png", _frame(3, streak=True))
    out = tmp_path / "out"
    summary = run_streaks(tmp_path / "in", out, method="classical", progress=False)
    rows = _by_file(summary)
    assert rows[str(f)]["stem"] == "s.fits" and rows[str(p)]["stem"] == "s.png"
    assert rows[str(f)]["n_streaks"] == 0 and rows[str(p)]["n_streaks"] == 1
    assert _ends_ok(Table.read(out / "s.png.streaks.ecsv"))
    assert len(Table.read(out / "s.fits.streaks.ecsv")) == 0
    assert not (out / "s.streaks.ecsv").exists()


def test_output_stems_rules(tmp_path):
    a, b = tmp_path / "a" / "x.fits", tmp_path / "b" / "X.FITS"
    u = tmp_path / "a" / "u.fits.gz"
    stems = output_stems([a, b, u, a])
    assert stems[2] == "u"  # unique stems are kept as before
    assert stems[0] != stems[1]  # differs only in case: still a clash
    assert stems[0] == stems[3]  # the same file twice: the same name
    assert stems == output_stems([a, b, u, a])  # stable
    assert stems[0] == output_stems([b, a])[1]  # independent of the order


def test_resume_recomputes_when_parameters_change(tmp_path):
    src = _fits(tmp_path / "img.fits", _frame(0, streak=True))
    out = tmp_path / "out"
    run_streaks([src], out, method="classical", threshold=0.5, progress=False)
    ecsv = out / "img.streaks.ecsv"
    t = Table.read(ecsv)
    assert t.meta["params"] == {"method": "classical", "threshold": 0.5, "segment_all": False}
    mask_half = cv2.imread(str(out / "img.mask.png"), cv2.IMREAD_UNCHANGED) > 0
    first = ecsv.stat().st_mtime_ns
    time.sleep(0.02)
    # another threshold: searched again, and the mask follows the new threshold
    run_streaks([src], out, method="classical", threshold=0.95, progress=False)
    t = Table.read(ecsv)
    assert ecsv.stat().st_mtime_ns != first
    assert t.meta["params"]["threshold"] == 0.95
    mask_high = cv2.imread(str(out / "img.mask.png"), cv2.IMREAD_UNCHANGED) > 0
    assert mask_high.sum() < mask_half.sum()
    # another method: searched again with it
    second = ecsv.stat().st_mtime_ns
    time.sleep(0.02)
    run_streaks([src], out, method="hough", threshold=0.95, progress=False)
    assert ecsv.stat().st_mtime_ns != second
    assert Table.read(ecsv).meta["params"]["method"] == "hough"


def test_resume_recomputes_when_the_input_changes(tmp_path):
    src = _fits(tmp_path / "img.fits", _frame(0, streak=False))
    out = tmp_path / "out"
    s1 = run_streaks([src], out, method="classical", progress=False)
    assert list(s1["n_streaks"]) == [0]
    _fits(src, _frame(0, streak=True))  # same name, new content
    s2 = run_streaks([src], out, method="classical", progress=False)
    assert list(s2["n_streaks"]) == [1]
    t = Table.read(out / "img.streaks.ecsv")
    assert _ends_ok(t)
    import hashlib

    assert t.meta["input_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()


def test_resume_recomputes_a_result_without_provenance(tmp_path):
    # a result of an older skysift (no input hash, no parameters) is not trusted
    src = _fits(tmp_path / "img.fits", _frame(0, streak=True))
    out = tmp_path / "out"
    run_streaks([src], out, method="classical", progress=False)
    ecsv = out / "img.streaks.ecsv"
    t = Table.read(ecsv)
    t.meta = {"p_streak": 0.0}
    t.remove_rows(slice(None))
    t.write(ecsv, format="ascii.ecsv", overwrite=True)
    again = run_streaks([src], out, method="classical", progress=False)
    assert list(again["n_streaks"]) == [1]
    assert _ends_ok(Table.read(ecsv))


@pytest.mark.parametrize(("threshold", "match"), [(0.0, r"in \(0, 1\]"), ("0.5", "a number")])
def test_bad_threshold_is_refused(tmp_path, threshold, match):
    src = _fits(tmp_path / "img.fits", _frame(0, streak=False))
    with pytest.raises(InputError, match=match):
        run_streaks([src], tmp_path / "out", method="classical", threshold=threshold)
    assert not (tmp_path / "out").exists()
