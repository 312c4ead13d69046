"""Throughput of ``skysift streaks`` and ``skysift stars`` on the batch layer, 1 vs 2 Dask workers.

Simulates N frames of 1032x768 once (star fields, a satellite streak in every
fourth) into a temporary folder, then times :func:`skysift.batch.run_batch`
with the tasks the commands run (``streaks``, ``stars``) on a ``LocalCluster``
of 1 and of 2 worker processes (one thread each; the cluster's start is timed
apart), and the per-task overhead of the batch layer: the same tiny frames
(32x32) in process (``--workers 0``) and on 2 workers, and a task that does
nothing.

    .venv/bin/python benchmarks/batch_throughput.py [--n 400] [--streaks-method classical]

Numbers depend on what else runs on the machine: report its load with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from skysift.batch import local_cluster, run_batch
from skysift.simulation import make_star_field
from skysift.simulation.streaks import render_streak

SHAPE = (768, 1032)


def noop_task(input_path, out_dir, params):  # noqa: ANN001, ANN201, ARG001
    """A task that does nothing: its time is the batch layer's overhead."""
    return {}


def _frames(folder: Path, n: int, shape: tuple[int, int], n_stars: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        image, _ = make_star_field(shape, n_stars, rng=i)
        if i % 4 == 0 and shape[0] > 64:
            x1, y1 = rng.uniform(0, shape[1] / 3), rng.uniform(0, shape[0])
            x2, y2 = rng.uniform(2 * shape[1] / 3, shape[1]), rng.uniform(0, shape[0])
            line, _ = render_streak(shape, x1, y1, x2, y2, 2e5, 2.5)
            image = image + line
        fits.PrimaryHDU(np.asarray(image, np.float32)).writeto(folder / f"frame{i:04d}.fits")


def _run(label: str, folder: Path, out: Path, task, params, **kw) -> float:  # noqa: ANN001, ANN003
    t0 = time.perf_counter()
    s = run_batch([folder], out, task, params, progress=False, resume=False, **kw)
    dt = time.perf_counter() - t0
    if s.n_failed:
        raise SystemExit(f"{label}: {s.n_failed} failed: {s.failed[:3]}")
    n = s.n_done
    print(
        f"{label:<40} {n} inputs in {dt:7.2f} s = {n / dt:6.2f} inputs/s "
        f"({1e3 * dt / n:7.1f} ms each)",
        flush=True,
    )
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="frames of 1032x768")
    ap.add_argument("--n-tiny", type=int, default=200, help="tiny frames for the overhead")
    ap.add_argument("--streaks-method", default="classical")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    args = ap.parse_args()
    # dask[distributed] is needed for the parallel runs: imported on use
    import cloudpickle
    from dask.distributed import Client

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # noop_task to the workers
    counts = [int(w) for w in args.workers.split(",")]
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big, tiny = tmp / "big", tmp / "tiny"
        big.mkdir(), tiny.mkdir()
        t0 = time.perf_counter()
        _frames(big, args.n, SHAPE, 300)
        _frames(tiny, args.n_tiny, (32, 32), 2)
        print(f"simulated {args.n} frames 1032x768 in {time.perf_counter() - t0:.1f} s", flush=True)
        stars = {"method": "classical", "threshold": 3.0, "mask": True, "plot": False}
        streaks = {"method": args.streaks_method, "threshold": 0.5, "segment_all": False}
        times: dict[tuple[str, int], float] = {}
        for w in counts:
            t0 = time.perf_counter()
            cluster = local_cluster(w)
            client = Client(cluster)
            client.wait_for_workers(w)
            client.run(__import__, "skysift.batch.tasks")
            print(
                f"cluster of {w} worker(s) started in {time.perf_counter() - t0:.1f} s", flush=True
            )
            try:
                for name, params in (("streaks", streaks), ("stars", stars)):
                    label = f"{name} ({params['method']}), {w} worker(s)"
                    times[(name, w)] = _run(
                        label, big, tmp / f"{name}{w}", name, params, client=client
                    )
                if w == max(counts):
                    dt_d = _run(f"stars tiny 32x32, {w} workers", tiny, tmp / "t_d", "stars", stars, client=client)  # fmt: skip
                    dt_n = _run(f"noop task, {w} workers", tiny, tmp / "n_d", noop_task, {}, client=client)  # fmt: skip
            finally:
                client.close()
                cluster.close()
        dt_0 = _run("stars tiny 32x32, in process", tiny, tmp / "t_0", "stars", stars, workers=0)
        dt_n0 = _run("noop task, in process", tiny, tmp / "n_0", noop_task, {}, workers=0)
        print()
        if len(counts) >= 2:
            a, b = counts[0], counts[-1]
            for name in ("streaks", "stars"):
                r = times[(name, a)] / times[(name, b)]
                print(f"{name}: {b} workers / {a} worker speed-up = {r:.2f}x")
        n = args.n_tiny
        print(
            f"per-task overhead, Dask vs in process (tiny stars): {1e3 * (dt_d - dt_0) / n:.1f} ms"
        )
        print(f"per-task time of a no-op task: Dask {1e3 * dt_n / n:.1f} ms, in process {1e3 * dt_n0 / n:.1f} ms")  # fmt: skip
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
