"""The batch layer: Dask LocalCluster vs in-process, failures, resume, exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift.batch import (
    TASKS,
    expand_inputs,
    local_cluster,
    output_names,
    read_manifest,
    run_batch,
    stars_task,
    worker_cache,
)
from skysift.batch.tasks import cache_info, get_task
from skysift.cli import main
from skysift.errors import InputError
from skysift.simulation import make_star_field

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")

N_GOOD = 9
CORRUPT = {
    "c_empty.fits": "empty",
    "c_truncated.fits": "truncated",
    "c_garbage.fits": "not a readable FITS file",
}
PARAMS = {"method": "classical", "threshold": 3.0, "mask": True, "plot": False}


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> tuple[Path, dict[str, Table]]:
    """9 synthetic 96x96 star fields (with truth) and 3 corrupt FITS files."""
    d = tmp_path_factory.mktemp("night")
    truths = {}
    for i in range(N_GOOD):
        image, truth = make_star_field(
            (96, 96), 6, fwhm=3.0, flux_range=(1e4, 1e5), min_separation=12, rng=100 + i
        )
        fits.PrimaryHDU(image.astype(np.float32)).writeto(d / f"frame{i}.fits")
        truths[f"frame{i}"] = truth
    (d / "c_empty.fits").write_bytes(b"")
    good = (d / "frame0.fits").read_bytes()
    (d / "c_truncated.fits").write_bytes(good[:4000])
    (d / "c_garbage.fits").write_bytes(b"not a fits file at all\n" * 200)
    (d / "notes.txt").write_text("not an image: left out of folder expansion")
    return d, truths


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster(2)
    c = distributed.Client(cluster)
    c.wait_for_workers(2, timeout=60)  # both processes up before tasks go out (a loaded CI runner)
    yield c
    c.close()
    cluster.close()


def _check_truth(table_path: Path, truth: Table) -> None:
    t = Table.read(table_path)
    d = np.min(np.hypot(t["x"][:, None] - truth["x"][None], t["y"][:, None] - truth["y"][None]), 0)
    assert np.all(d < 0.3), d


def _cached_stars(input_path, out_dir, params):
    worker_cache(("test", "model"), lambda: object())
    return stars_task(input_path, out_dir, params)


def _crash_on_name(input_path, out_dir, params):
    name = Path(input_path).name
    marker = Path(out_dir).parent / f".{name}.killed"
    if "crash" in name or ("once" in name and not marker.exists()):
        marker.touch()
        os._exit(1)  # a worker process dying mid-task (out of memory, killed)
    return stars_task(input_path, out_dir, params)


def test_expand_inputs_files_folders_globs(night, tmp_path):
    d, _ = night
    files = expand_inputs([d / "frame3.fits", str(d / "frame1*.fits"), d])
    names = [p.name for p in files]
    assert len(names) == N_GOOD + 3 and "notes.txt" not in names
    # natural order, each file once although named up to three times
    assert names[:3] == ["c_empty.fits", "c_garbage.fits", "c_truncated.fits"]
    assert names[3:] == [f"frame{i}.fits" for i in range(N_GOOD)]
    missing = tmp_path / "missing.fits"
    assert expand_inputs([missing]) == [missing]  # its task fails with the reason
    with pytest.raises(InputError, match="no input files found"):
        expand_inputs([tmp_path / "*.fits"])


def test_output_names_unique_and_stable(tmp_path):
    a, b = tmp_path / "a" / "x.fits", tmp_path / "b" / "x.fits"
    names = output_names([a, b, tmp_path / "x.png", tmp_path / "y.fits.gz"])
    assert len(set(names)) == 4 and names[2:] == ["x.png", "y"]
    assert names[0].startswith("x-") and names[1].startswith("x-")
    assert output_names([a, b]) == names[:2]


def test_local_cluster_gives_the_in_process_tables(night, client, tmp_path, capsys):
    d, truths = night
    ref = run_batch([d], tmp_path / "ref", "stars", PARAMS, workers=0, progress=False)
    par = run_batch([d], tmp_path / "par", "stars", PARAMS, client=client, progress=False)
    for s in (ref, par):
        assert (s.n_done, s.n_skipped, s.n_failed) == (N_GOOD, 0, 3)
        failed = dict(s.failed)
        for name, reason in CORRUPT.items():
            assert reason in failed[str(d / name)], failed
    for i in range(N_GOOD):
        a = (tmp_path / "ref" / f"frame{i}" / "stars.ecsv").read_bytes()
        b = (tmp_path / "par" / f"frame{i}" / "stars.ecsv").read_bytes()
        assert a == b  # bit-identical
        _check_truth(tmp_path / "par" / f"frame{i}" / "stars.ecsv", truths[f"frame{i}"])
    # the tasks ran on both worker processes
    workers = {r["worker"] for r in par.rows if r["status"] == "done"}
    assert len(workers) == 2 and all(w.split(":")[-1] != str(os.getpid()) for w in workers)
    # and the single-image command writes the same table
    out = tmp_path / "single"
    assert main(["stars", str(d / "frame4.fits"), "--out", str(out), "--no-plot"]) == 0
    assert (out / "stars.ecsv").read_bytes() == (tmp_path / "par/frame4/stars.ecsv").read_bytes()
    m = read_manifest(tmp_path / "par" / "run.ecsv")
    assert len(m) == N_GOOD + 3
    row = m[str((d / "frame2.fits").resolve())]
    assert row["status"] == "done" and row["outputs"] == "frame2/stars.ecsv"
    assert len(row["sha256"]) == 64 and row["seconds"] > 0


def test_models_load_once_per_worker(night, client, tmp_path):
    import cloudpickle  # this module's functions go to the workers by value

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        d, _ = night
        s = run_batch([d / "frame*.fits"], tmp_path, _cached_stars, PARAMS, client=client)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert s.n_done == N_GOOD
    loads = client.run(cache_info)
    per_worker = [info["loads"].get(repr(("test", "model")), 0) for info in loads.values()]
    assert sum(per_worker) >= 1 and max(per_worker) == 1, loads
    calls = []
    key = ("test-local", os.urandom(4).hex())
    assert worker_cache(key, lambda: calls.append(1) or "m") == "m"
    assert worker_cache(key, lambda: calls.append(1) or "n") == "m"
    assert calls == [1]


def test_rerun_skips_done_and_recomputes_on_change(night, tmp_path, monkeypatch):
    d, _ = night
    out = tmp_path / "run"
    calls = []

    def interrupted(input_path, out_dir, params):
        if len(calls) == 6:
            raise KeyboardInterrupt  # Ctrl+C in the middle of the run
        calls.append(input_path)
        return stars_task(input_path, out_dir, params)

    monkeypatch.setitem(TASKS, "stars", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_batch([d], out, "stars", PARAMS, workers=0, progress=False)
    monkeypatch.setitem(TASKS, "stars", stars_task)
    rows = read_manifest(out / "run.ecsv")
    assert len(rows) == 6  # 3 failed + 3 done, written as they finished
    s = run_batch([d], out, "stars", PARAMS, workers=0, progress=False)
    # only what was left is computed (the failed ones are tried again)
    assert (s.n_done, s.n_skipped, s.n_failed) == (N_GOOD - 3, 3, 3)
    s = run_batch([d], out, "stars", PARAMS, workers=0, progress=False)
    assert (s.n_done, s.n_skipped, s.n_failed) == (0, N_GOOD, 3)
    # a changed parameter recomputes everything; a changed file or a lost output recomputes it
    s = run_batch([d], out, "stars", {**PARAMS, "threshold": 4.0}, workers=0, progress=False)
    assert (s.n_done, s.n_skipped) == (N_GOOD, 0)
    changed = tmp_path / "copy"
    changed.mkdir()
    for i in range(3):
        (changed / f"f{i}.fits").write_bytes((d / f"frame{i}.fits").read_bytes())
    run_batch([changed], out, "stars", PARAMS, workers=0, progress=False)
    image, _ = make_star_field((96, 96), 6, rng=7)
    (changed / "f1.fits").unlink()
    fits.PrimaryHDU(image.astype(np.float32)).writeto(changed / "f1.fits")
    (out / "f2" / "stars.ecsv").unlink()
    s = run_batch([changed], out, "stars", PARAMS, workers=0, progress=False)
    assert (s.n_done, s.n_skipped) == (2, 1)
    assert [r["status"] for r in s.rows] == ["skipped", "done", "done"]


def test_cli_exit_codes_and_failures_named(night, client, tmp_path, capsys):
    d, _ = night
    base = ["--no-plot", "--workers", "0"]
    assert main(["stars", str(d), "--out", str(tmp_path / "a"), *base]) == 5
    err = capsys.readouterr().err
    assert err.count("skysift: failed:") == 3
    for name, reason in CORRUPT.items():
        assert f"skysift: failed: {d / name}: " in err and reason in err
    bad = [str(d / n) for n in CORRUPT]
    assert main(["stars", *bad, "--out", str(tmp_path / "b"), *base]) == 2
    assert capsys.readouterr().err.count("skysift: failed:") == 3
    good = str(d / "frame[0-4].fits")
    assert main(["stars", good, "--out", str(tmp_path / "c"), *base]) == 0
    out = capsys.readouterr().out
    assert "5 done, 0 skipped, 0 failed" in out
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        *(f"frame{i}" for i in range(5)),
        "run.ecsv",
    ]
    # the same command on an existing scheduler; a rerun there skips all
    addr = client.scheduler.address
    cmd = ["stars", good, "--out", str(tmp_path / "d"), "--no-plot", "--scheduler", addr]
    assert main(cmd) == 0
    assert main(cmd) == 0
    assert "0 done, 5 skipped, 0 failed" in capsys.readouterr().out
    e = str(tmp_path / "e")
    assert main(["stars", good, "--out", e, "--workers", "-1"]) == 2
    assert "--workers must be >= 0, got -1" in capsys.readouterr().err
    assert main(["stars", good, "--out", e, "--workers", "1", "--scheduler", addr]) == 2
    assert "cannot be used together" in capsys.readouterr().err


def test_error_paths(night, tmp_path):
    d, _ = night
    with pytest.raises(InputError, match="unknown batch task 'nope'; valid: stars"):
        get_task("nope")
    with pytest.raises(InputError, match="must be JSON-serialisable"):
        run_batch([d], tmp_path, "stars", {"x": object()}, workers=0)
    with pytest.raises(InputError, match="workers must be >= 1 for a local cluster, got 0"):
        local_cluster(0)
    (tmp_path / "run.ecsv").write_text("this is not ecsv")
    with pytest.raises(InputError, match="not a run manifest|not a readable run manifest"):
        run_batch([d], tmp_path, "stars", PARAMS, workers=0)
    Table({"input": ["a"]}).write(tmp_path / "m.ecsv")
    with pytest.raises(InputError, match=r"not a run manifest \(missing columns name"):
        read_manifest(tmp_path / "m.ecsv")
    with pytest.raises(InputError, match="--scheduler tcp://127.0.0.1:9: cannot connect"):
        run_batch([d], tmp_path / "s", scheduler="tcp://127.0.0.1:9", connect_timeout=0.5)


def test_a_killed_worker_is_retried_once_then_failed(night, client, tmp_path):
    """A worker dying under a task: the task runs once more; dying twice, it fails.

    Two runs, so that no good task shares a dying worker twice: right after a
    worker dies the survivors may hold two tasks for a moment, and a task on a
    worker that dies counts that death (see skysift.batch.runner).
    """
    d, _ = night
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("frame0.fits", "frame1.fits"):
        (inputs / name).write_bytes((d / name).read_bytes())
    (inputs / "once.fits").write_bytes((d / "frame3.fits").read_bytes())
    (tmp_path / "crash.fits").write_bytes((d / "frame2.fits").read_bytes())
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        s = run_batch([inputs], tmp_path / "out", _crash_on_name, PARAMS, client=client)
        s2 = run_batch(
            [tmp_path / "crash.fits"], tmp_path / "out", _crash_on_name, PARAMS, client=client
        )
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    # killed once: recovered on another try, the same table; the others complete
    assert (s.n_done, s.n_failed) == (3, 0), s.failed
    assert (tmp_path / "out" / ".once.fits.killed").exists()
    ref = stars_task(d / "frame3.fits", tmp_path / "ref", PARAMS)["stars"]
    assert (tmp_path / "out" / "once" / "stars.ecsv").read_bytes() == Path(ref).read_bytes()
    # killed twice: failed with the reason, in the manifest too
    ((name, error),) = s2.failed
    assert name.endswith("crash.fits") and "KilledWorker" in error
    row = read_manifest(tmp_path / "out" / "run.ecsv")[str((tmp_path / "crash.fits").resolve())]
    assert row["status"] == "failed" and "KilledWorker" in row["error"]
