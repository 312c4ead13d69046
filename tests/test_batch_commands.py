"""Every batch command on the Dask batch layer: streaks, trails, bolide, calibrate; a real scheduler.

Same files (byte for byte) on a 2-worker LocalCluster as in one process
(``--workers 0``) and as the single-input command; corrupt inputs fail with
the reason (exit 5); a rerun skips what is done.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift.batch import local_cluster, run_batch
from skysift.batch.night import is_batch_of_clips
from skysift.batch.tasks import get_task, load_calibration
from skysift.cli import main
from skysift.errors import InputError
from skysift.simulation import make_star_field
from skysift.simulation.meteors import LightCurve, Meteor, MeteorVideo
from skysift.simulation.streaks import render_streak

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")

SHAPE = (96, 128)
N_GOOD = 17
#: Streak ends (x1, y1, x2, y2) in pixels of the frames with a streak (the even ones).
ENDS = (8.0, 14.0, 118.0, 80.0)
CORRUPT = {
    "c_empty.fits": "empty",
    "c_truncated.fits": "truncated",
    "c_garbage.fits": "not a readable FITS file",
}


def _frame(i: int, ends: tuple[float, float, float, float] | None, shape=SHAPE) -> np.ndarray:
    image, _ = make_star_field(shape, 8, fwhm=2.5, flux_range=(5e3, 5e4), rng=200 + i)
    if ends is not None:
        line, _ = render_streak(shape, *ends, 6e4, 2.5)
        image = image + line
    return np.asarray(image, np.float32)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """17 frames 96x128 (a streak in the even ones) and 3 corrupt FITS files: 20 inputs."""
    d = tmp_path_factory.mktemp("frames")
    for i in range(N_GOOD):
        fits.PrimaryHDU(_frame(i, ENDS if i % 2 == 0 else None)).writeto(d / f"f{i}.fits")
    (d / "c_empty.fits").write_bytes(b"")
    (d / "c_truncated.fits").write_bytes((d / "f0.fits").read_bytes()[:4000])
    (d / "c_garbage.fits").write_bytes(b"not a fits file at all\n" * 200)
    return d


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster(2)
    c = distributed.Client(cluster)
    c.wait_for_workers(2, timeout=60)
    c.run(importlib.import_module, "skysift.batch.tasks")  # both workers ready for the first task
    yield c
    c.close()
    cluster.close()


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "run.ecsv"
    }


def _ends_err(row, ends) -> float:
    got = np.array([[row["x1"], row["y1"]], [row["x2"], row["y2"]]])
    true = np.array(ends).reshape(2, 2)
    return float(min(np.abs(got - true).max(), np.abs(got[::-1] - true).max()))


def test_streaks_on_a_cluster_write_the_in_process_files(frames, client, tmp_path, capsys):
    base = ["streaks", str(frames), "--method", "classical"]
    ref, par = tmp_path / "ref", tmp_path / "par"
    assert main([*base, "--out", str(ref), "--workers", "0"]) == 5
    err = capsys.readouterr().err
    assert err.count("skysift: failed:") == 3
    for name, reason in CORRUPT.items():
        assert f"{frames / name}" in err and reason in err
    assert main([*base, "--out", str(par), "--scheduler", client.scheduler.address]) == 5
    out = capsys.readouterr().out
    assert "17 done, 0 skipped, 3 failed" in out and "20 images, " in out and "3 failed" in out
    a, b = _files(ref), _files(par)
    assert len(a) == 3 * N_GOOD + 1 and a == b  # bit-identical tables, FITS, PNG and summary
    summary = Table.read(par / "summary.ecsv")
    assert len(summary) == 20 and int(np.sum(summary["n_streaks"] == -1)) == 3
    for i in range(
        0, N_GOOD, 2
    ):  # the streak is found, its ends within 8 px (classical finder; stars may touch the ends)
        t = Table.read(par / f"f{i}" / f"f{i}.streaks.ecsv")
        assert len(t) == 1 and _ends_err(t[0], ENDS) < 8, (i, t)
    # the tasks ran on both workers
    rows = Table.read(par / "run.ecsv")
    assert len({w for w, s in zip(rows["worker"], rows["status"], strict=True) if s == "done"}) == 2
    # the single-image command writes the same table
    single = tmp_path / "single"
    assert (
        main(["streaks", str(frames / "f4.fits"), "--method", "classical", "--out", str(single)])
        == 0
    )
    assert (single / "f4.streaks.ecsv").read_bytes() == (
        par / "f4" / "f4.streaks.ecsv"
    ).read_bytes()
    # a rerun skips the finished inputs
    assert main([*base, "--out", str(par), "--workers", "0"]) == 5
    assert "0 done, 17 skipped, 3 failed" in capsys.readouterr().out
    assert _files(par) == b


def test_streaks_of_a_sequence_are_linked_into_one_track(tmp_path, capsys):
    d = tmp_path / "seq"
    d.mkdir()
    for k in range(4):  # a satellite advancing 30 px per exposure along one line
        x0 = 10.0 + 40.0 * k  # 80 px long, inside the 96x256 frame
        ends = (x0, 10.0 + 0.25 * x0, x0 + 80.0, 30.0 + 0.25 * x0)
        fits.PrimaryHDU(_frame(50 + k, ends, (96, 256))).writeto(d / f"s{k}.fits")
    out = tmp_path / "out"
    assert (
        main(
            [
                "streaks",
                str(d),
                "--method",
                "classical",
                "--link",
                "--workers",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "1 tracks" in capsys.readouterr().out
    tracks = Table.read(out / "tracks.ecsv")
    assert list(tracks["frame"]) == [0, 1, 2, 3] and set(tracks["track_id"]) == {1}
    assert list(tracks["file"]) == [str(d / f"s{k}.fits") for k in range(4)]


def test_trails_on_a_cluster_write_the_in_process_files(frames, client, tmp_path, capsys):
    base = ["trails", str(frames / "f?.fits"), str(frames / "c_garbage.fits")]  # 10 + 1
    ref, par = tmp_path / "ref", tmp_path / "par"
    assert main([*base, "--out", str(ref), "--workers", "0"]) == 5
    assert main([*base, "--out", str(par), "--scheduler", client.scheduler.address]) == 5
    assert capsys.readouterr().err.count("skysift: failed:") == 2
    a, b = _files(ref), _files(par)
    assert a == b and sum(k.endswith(".trails.ecsv") for k in a) == 10
    # the plain command (no folder, no glob) keeps writing into --out itself
    flat = tmp_path / "flat"
    assert main(["trails", str(frames / "f3.fits"), "--out", str(flat)]) == 0
    assert (flat / "f3.trails.ecsv").read_bytes() == a["f3/f3.trails.ecsv"]


def _clip(seed: int) -> np.ndarray:
    bg = np.full((120, 160), 40.0, np.float32)
    lc = LightCurve.meteor(4.0, 0.5, peak_fraction=0.6)
    m = Meteor((20.0, 90.0), (140.0, 30.0), speed=300.0, light_curve=lc, t_start_s=0.1, psf=2.8)
    video = MeteorVideo(bg, m, n_frames=14, fps=25.0, zero_point=18.5, gain=1.0,
                        noise_sigma=3.0, saturation=255.0, mask_threshold=6.0)  # fmt: skip
    cube, truth = video.render(rng=seed)
    return cube, truth


def test_bolide_runs_one_task_per_clip_and_one_clip_stays_one(tmp_path, capsys):
    d = tmp_path / "clips"
    d.mkdir()
    truths = {}
    for k in range(2):
        cube, truth = _clip(10 + k)
        fits.PrimaryHDU(cube).writeto(d / f"clip{k}.fits")
        truths[k] = truth
    (d / "clip9.fits").write_bytes(b"broken")
    out = tmp_path / "out"
    args = (
        ["--fps", "25", "--method", "classical", "--no-plot"]
        if False
        else ["--fps", "25", "--method", "classical"]
    )
    assert main(["bolide", str(d / "*.fits"), *args, "--workers", "0", "--out", str(out)]) == 5
    assert "2 done, 0 skipped, 1 failed" in capsys.readouterr().out
    for k in range(2):
        lc = Table.read(out / f"clip{k}" / "lightcurve.ecsv")
        t = truths[k]
        visible = set(t["frame"][t["visible"] & (t["flux"] > 1000)])
        assert visible and visible <= set(lc["frame"])
    # the single clip gives the same light curve
    one = tmp_path / "one"
    assert main(["bolide", str(d / "clip1.fits"), *args, "--out", str(one)]) == 0
    assert (one / "lightcurve.ecsv").read_bytes() == (
        out / "clip1" / "lightcurve.ecsv"
    ).read_bytes()
    # decided by content: a folder of videos is a batch, a folder of frames one clip
    videos, pngs = tmp_path / "videos", tmp_path / "pngs"
    videos.mkdir(), pngs.mkdir()
    (videos / "a.mp4").write_bytes(b""), (videos / "b.avi").write_bytes(b"")
    (pngs / "0001.png").write_bytes(b""), (pngs / "0002.png").write_bytes(b"")
    assert is_batch_of_clips([videos]) and not is_batch_of_clips([pngs])
    assert not is_batch_of_clips([videos / "a.mp4"]) and is_batch_of_clips([str(videos / "*.mp4")])
    assert is_batch_of_clips([videos / "a.mp4", videos / "b.avi"])


LA_PALMA = ("28.7619", "-17.8908", "2200")


@pytest.mark.slow
def test_calibrate_many_images_gives_the_single_image_files(data_dir, frames, tmp_path, capsys):
    magic = data_dir / "magic_allsky" / "20180817_0055.fits"
    if not magic.is_file():
        pytest.skip(f"{magic} is missing")
    out = tmp_path / "many"
    args = ["--site", *LA_PALMA, "--no-plot"]
    assert main(["calibrate", str(magic), str(frames / "c_garbage.fits"), *args, "--workers", "0", "--out", str(out)]) == 5  # fmt: skip
    err = capsys.readouterr().err
    assert "skysift: failed:" in err and "not a readable FITS file" in err
    single = tmp_path / "single"
    assert main(["calibrate", str(magic), *args, "--out", str(single)]) == 0
    for name in ("stars.ecsv", "matches.ecsv"):
        assert (single / name).read_bytes() == (out / "20180817_0055" / name).read_bytes()
    assert len(Table.read(single / "matches.ecsv")) >= 50


def test_error_paths(frames, tmp_path, capsys):
    with pytest.raises(InputError, match="unknown batch task 'x'; valid: stars, calibrate"):
        get_task("x")
    bad = tmp_path / "calibration.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="not a kept calibration"):
        load_calibration(bad)
    rc = main(
        ["streaks", str(frames), "--method", "nope", "--workers", "0", "--out", str(tmp_path)]
    )
    assert rc == 2 and "method must be one of" in capsys.readouterr().err
    s = run_batch([frames / "f1.fits"], tmp_path / "b", "streaks", {"method": "classical", "threshold": 2.0}, workers=0, progress=False)  # fmt: skip
    assert s.exit_code == 2 and "threshold must be in (0, 1]" in s.failed[0][1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_stars_on_a_dask_scheduler_and_worker_started_as_processes(frames, tmp_path, capsys):
    """``dask scheduler`` and ``dask worker`` on localhost; ``skysift stars --scheduler`` uses them."""
    dask_cli = Path(sys.executable).with_name("dask")
    if not dask_cli.is_file():
        pytest.skip("the dask command is not installed beside this python")
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [subprocess.Popen([str(dask_cli), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet)]  # fmt: skip
    try:
        procs.append(subprocess.Popen([str(dask_cli), "worker", addr, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"], **quiet))  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with distributed.Client(addr, timeout=5) as c:
                    c.wait_for_workers(2, timeout=max(1.0, deadline - time.monotonic()))
                break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        glob = str(frames / "f1*.fits")  # f1, f10..f16: 8 inputs
        out, ref = tmp_path / "cluster", tmp_path / "ref"
        assert main(["stars", glob, "--no-plot", "--scheduler", addr, "--out", str(out)]) == 0
        assert "8 done, 0 skipped, 0 failed" in capsys.readouterr().out
        assert main(["stars", glob, "--no-plot", "--workers", "0", "--out", str(ref)]) == 0
        assert _files(out) == _files(ref) and len(_files(out)) == 8
        workers = set(Table.read(out / "run.ecsv")["worker"])
        assert str(os.getpid()) not in {w.split(":")[-1] for w in workers}
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
