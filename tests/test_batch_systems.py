"""movers, stamps and dso on the Dask batch layer.

One task per stamp cube / sequence cube / image: the same files (byte for byte)
on a 2-worker LocalCluster as in one process (``--workers 0``) and as the
single-input command; a corrupt input fails with the reason (exit 5) while the
rest completes.
"""

from __future__ import annotations

import importlib
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

from skysift.batch import local_cluster
from skysift.batch.tasks import TASKS, movers_task
from skysift.cli import main
from skysift.errors import InputError
from skysift.simulation.movers import simulate_sequence
from skysift.stamps import CLASSES, HELDOUT, simulate_stamps

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")
torch.set_num_threads(1)

N_STAMPS = 24  # per cube
N_CUBES = 3
#: Mover rate of the simulated sequences, pixels per frame (60 s cadence x 0.05 px/s).
RATE_PX = 3.0


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster(2)
    c = distributed.Client(cluster)
    c.wait_for_workers(2, timeout=60)
    c.run(importlib.import_module, "skysift.batch.tasks")
    yield c
    c.close()
    cluster.close()


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.ecsv"
    }


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    """3 cubes of 24 held-out stamps (3 dithers) with their true classes, and a corrupt cube."""
    d = tmp_path_factory.mktemp("cubes")
    truth = {}
    for k in range(N_CUBES):
        x, _, t = simulate_stamps(N_STAMPS, 3000 + k, settings=HELDOUT, n_dithers=3)
        fits.PrimaryHDU(np.asarray(x[:, :3], np.float32)).writeto(d / f"cube{k}.fits")
        truth[f"cube{k}"] = [CLASSES[int(i)] for i in t["label"]]
    (d / "cube9.fits").write_bytes(b"not a fits file at all\n" * 100)
    return d, truth


def test_stamps_on_a_cluster_write_the_in_process_files(cubes, client, tmp_path, capsys):
    d, truth = cubes
    ref, par = tmp_path / "ref", tmp_path / "par"
    assert main(["stamps", str(d), "--out", str(ref), "--workers", "0"]) == 5
    captured = capsys.readouterr()
    assert "3 done, 0 skipped, 1 failed" in captured.out
    assert captured.err.count("skysift: failed:") == 1 and "cube9.fits" in captured.err
    assert main(["stamps", str(d / "*.fits"), "--out", str(par), "--scheduler",
                 client.scheduler.address]) == 5  # fmt: skip
    assert "3 done, 0 skipped, 1 failed" in capsys.readouterr().out
    a, b = _files(ref), _files(par)
    assert a == b and all(f"cube{k}/stamps.ecsv" in a for k in range(N_CUBES))
    right = total = 0
    for name, classes in truth.items():
        got = Table.read(par / name / "stamps.ecsv")
        assert len(got) == N_STAMPS
        right += int(np.sum(np.asarray(got["class"], str) == np.asarray(classes)))
        total += N_STAMPS
    assert right / total >= 0.85, right / total  # the shipped classifier: ~95 % held out
    # the single-cube command gives the same table
    one = tmp_path / "one"
    assert main(["stamps", str(d / "cube1.fits"), "--out", str(one)]) == 0
    capsys.readouterr()
    a_tab = Table.read(one / "stamps.ecsv")
    b_tab = Table.read(par / "cube1" / "stamps.ecsv")
    assert list(a_tab["class"]) == list(b_tab["class"])
    np.testing.assert_array_equal(np.asarray(a_tab["p_sso"]), np.asarray(b_tab["p_sso"]))
    # a rerun skips what is done
    assert main(["stamps", str(d), "--out", str(par), "--workers", "0"]) == 5
    assert "0 done, 3 skipped, 1 failed" in capsys.readouterr().out


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    """2 sequences (6 frames 64x64, a mover at 3 px/frame) as FITS cubes, and a corrupt one."""
    d = tmp_path_factory.mktemp("sequences")
    truth = {}
    for k in range(2):
        frames, truths = simulate_sequence(
            6, shape=(64, 64), cadence_s=60.0, exposure_s=30.0, target_rate=(0.05, 0.0),
            target_start=(14.0, 24.0 + 10 * k), target_mag=12.0, n_stars=8, rng=4 + k,
        )  # fmt: skip
        fits.PrimaryHDU(np.asarray(np.stack(frames), np.float32)).writeto(d / f"seq{k}.fits")
        movers = []
        for tr in truths:
            t = tr.table
            m = t[t["type"] == "mover"][0]
            movers.append((float(m["x"]), float(m["y"])))
        truth[f"seq{k}"] = np.array(movers)
    (d / "seq9.fits").write_bytes((d / "seq0.fits").read_bytes()[:3000])  # truncated
    return d, truth


def test_movers_on_a_cluster_write_the_in_process_files(sequences, client, tmp_path, capsys):
    d, truth = sequences
    base = ["movers", str(d), "--method", "classical", "--rate-range", "2", "4"]
    ref, par = tmp_path / "ref", tmp_path / "par"
    assert main([*base, "--out", str(ref), "--workers", "0"]) == 5
    captured = capsys.readouterr()
    assert "2 done, 0 skipped, 1 failed" in captured.out
    assert captured.err.count("skysift: failed:") == 1 and "seq9.fits" in captured.err
    assert main([*base, "--out", str(par), "--scheduler", client.scheduler.address]) == 5
    assert "2 done, 0 skipped, 1 failed" in capsys.readouterr().out
    a, b = _files(ref), _files(par)
    assert a == b and "seq0/movers.ecsv" in a and "seq1/movers.ecsv" in a
    for name, xy in truth.items():
        det = Table.read(par / name / "movers.ecsv")
        linked = det[(det["method"] == "difference") & (det["tracklet"] >= 0)]
        assert len(linked) >= 5, (name, det)
        for row in linked:  # each linked detection within 2 px of the mover in its frame
            tx, ty = xy[int(row["frame"])]
            assert np.hypot(row["x"] - tx, row["y"] - ty) < 2.0, (name, row)
    # the single-sequence command gives the same table
    one = tmp_path / "one"
    with warnings.catch_warnings():  # no WCS: no ADES file, said on stderr
        warnings.filterwarnings("always", message="no calibrated, timed detection")
        assert main([*base[:1], str(d / "seq1.fits"), *base[2:], "--out", str(one)]) == 0
    assert "skysift: warning: no calibrated, timed detection" in capsys.readouterr().err
    assert (one / "movers.ecsv").read_bytes() == (par / "seq1" / "movers.ecsv").read_bytes()


def test_movers_task_outputs_and_registry(sequences, tmp_path):
    d, _ = sequences
    assert {"movers", "stamps", "dso"} <= set(TASKS)
    params = {"method": "classical", "rate_range": [2, 4]}
    with pytest.warns(UserWarning, match="movers.psv"):  # no WCS: no ADES file
        out = movers_task(d / "seq0.fits", tmp_path / "o", params)
    assert set(out) == {"ecsv", *(f"overlay_{k:04d}" for k in range(6))}
    assert all(Path(p).is_file() for p in out.values())
    with pytest.raises(InputError, match="method must be one of"):
        movers_task(d / "seq0.fits", tmp_path / "p", {"method": "nope"})


def test_dso_batch_reports_each_failure(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"
    assert main(["dso", str(bad), str(missing), "--workers", "0", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("skysift: failed:")]
    assert len(lines) == 2
    assert any("bad.jpg" in ln for ln in lines) and any("missing.png" in ln for ln in lines)
    assert any("input image not found" in ln for ln in lines)
    assert "0 done, 0 skipped, 2 failed" in captured.out
    rows = Table.read(out / "run.ecsv")
    assert list(rows["status"]) == ["failed", "failed"]


REAL_DSO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "seestar_dso"


@pytest.mark.skipif(
    shutil.which("solve-field") is None,
    reason="astrometry.net solve-field not installed (README: System packages)",
)
@pytest.mark.skipif(
    not (REAL_DSO / "m92_golden.png").exists(),
    reason=f"shared real data missing: {REAL_DSO} (README: Data and credits)",
)
def test_dso_on_a_cluster_names_m92_as_in_process(client, tmp_path, capsys):
    d = tmp_path / "images"
    d.mkdir()
    shutil.copy(REAL_DSO / "m92_golden.png", d / "m92.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    base = ["dso", str(d), "--pixel-aspect", str(1920 / 1080)]
    ref, par = tmp_path / "ref", tmp_path / "par"
    assert main([*base, "--out", str(ref), "--workers", "0"]) == 5
    captured = capsys.readouterr()
    assert "1 done, 0 skipped, 1 failed" in captured.out
    assert captured.err.count("skysift: failed:") == 1 and "broken.jpg" in captured.err
    assert main([*base, "--out", str(par), "--scheduler", client.scheduler.address]) == 5
    assert "1 done, 0 skipped, 1 failed" in capsys.readouterr().out
    # the tables hold the same values (the files differ by the solve time in their header,
    # and the WCS file by its date, also between two single-image runs)
    a, b = Table.read(ref / "m92" / "objects.ecsv"), Table.read(par / "m92" / "objects.ecsv")
    assert a.colnames == b.colnames and len(a) == len(b) >= 1
    for c in a.colnames:
        x, y = np.asarray(a[c]), np.asarray(b[c])
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), c
    objects = b
    row = objects[list(objects["label"]).index("M92")]
    assert row["verdict"] == "visible"


def test_movers_batch_takes_a_folder_of_frames_as_one_sequence(sequences, tmp_path, capsys):
    """Folders of 2-D frames (a glob of them) are one sequence each, as their cubes are."""
    d, _ = sequences
    root = tmp_path / "frames"
    for k in range(2):
        cube = fits.getdata(d / f"seq{k}.fits")
        (root / f"seq{k}").mkdir(parents=True)
        for i, frame in enumerate(cube):
            fits.PrimaryHDU(frame).writeto(root / f"seq{k}" / f"f{i:02d}.fits")
    args = ["--method", "classical", "--rate-range", "2", "4", "--workers", "0"]
    assert main(["movers", str(root / "seq*"), *args, "--out", str(tmp_path / "a")]) == 0
    assert "2 done, 0 skipped, 0 failed" in capsys.readouterr().out
    assert main(["movers", str(d / "seq0.fits"), str(d / "seq1.fits"), *args,
                 "--out", str(tmp_path / "b")]) == 0  # fmt: skip
    for k in range(2):
        a = Table.read(tmp_path / "a" / f"seq{k}" / "movers.ecsv")
        b = Table.read(tmp_path / "b" / f"seq{k}" / "movers.ecsv")
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(np.asarray(a["x"]), np.asarray(b["x"]), atol=1e-6)
    # a rerun skips both folders (their digest covers every frame)
    assert main(["movers", str(root / "seq*"), *args, "--out", str(tmp_path / "a")]) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out
