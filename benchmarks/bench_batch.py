"""Throughput of ``skysift stars`` on the batch layer: in-process, 1 and 2 Dask workers.

Writes N synthetic 512x512 star fields, then times :func:`skysift.batch.run_batch`
with ``workers=0`` (no Dask), a 1-worker and a 2-worker ``LocalCluster`` (the
cluster's start is timed apart), and the per-task overhead of Dask measured
with a task that does nothing.

    .venv/bin/python benchmarks/bench_batch.py [--n 100] [--size 512] [--plot]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from skysift.batch import local_cluster, run_batch
from skysift.simulation import make_star_field


def noop_task(input_path, out_dir, params):  # noqa: ANN001, ANN201, ARG001
    """A task that does nothing: its time is the batch layer's overhead."""
    return {}


def _frames(folder: Path, n: int, size: int) -> None:
    for i in range(n):
        image, _ = make_star_field((size, size), 150, rng=i)
        fits.PrimaryHDU(image.astype(np.float32)).writeto(folder / f"frame{i:04d}.fits")


def _timed(label: str, *args, **kwargs) -> float:  # noqa: ANN002, ANN003
    t0 = time.perf_counter()
    s = run_batch(*args, progress=False, **kwargs)
    dt = time.perf_counter() - t0
    assert s.n_failed == 0, s.failed
    n = s.n_done
    print(
        f"{label:<34} {n} inputs in {dt:6.2f} s = {n / dt:6.2f} inputs/s ({1e3 * dt / n:.1f} ms each)"
    )
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--plot", action="store_true", help="also write stars.png (as the CLI default)")
    args = ap.parse_args()
    # dask[distributed] is needed for the parallel runs: imported on use
    import cloudpickle
    from dask.distributed import Client

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # noop_task to the workers
    params = {"method": "classical", "threshold": 3.0, "mask": True, "plot": args.plot}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        _frames(root / "in", args.n, args.size)
        print(f"{args.n} frames of {args.size}x{args.size}, plot={args.plot}")
        t_in = _timed(
            "in-process (workers=0)", [root / "in"], root / "o0", "stars", params, workers=0
        )
        times = {}
        for n_workers in (1, 2):
            t0 = time.perf_counter()
            cluster = local_cluster(n_workers)
            client = Client(cluster)
            print(f"LocalCluster({n_workers}) start: {time.perf_counter() - t0:.2f} s")
            # one task per worker first, so imports are not counted as throughput
            client.run(lambda: __import__("skysift.batch.tasks"))
            times[n_workers] = _timed(
                f"{n_workers} worker(s)",
                [root / "in"],
                root / f"o{n_workers}",
                "stars",
                params,
                client=client,
            )
            if n_workers == 2:
                t_noop = _timed(
                    "no-op task, 2 workers",
                    [root / "in"],
                    root / "noop",
                    noop_task,
                    {},
                    client=client,
                )
                t_noop0 = _timed(
                    "no-op task, in-process",
                    [root / "in"],
                    root / "noop0",
                    noop_task,
                    {},
                    workers=0,
                )
            client.close()
            cluster.close()
        print(f"speed-up 2 workers / 1 worker: {times[1] / times[2]:.2f}x")
        print(f"speed-up 2 workers / in-process: {t_in / times[2]:.2f}x")
        print(
            f"per-task overhead: {1e3 * t_noop / args.n:.1f} ms on Dask (2 workers, with the "
            f"manifest write), {1e3 * t_noop0 / args.n:.1f} ms in-process (manifest write, SHA-256)"
        )


if __name__ == "__main__":
    main()
