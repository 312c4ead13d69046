"""Benchmark: one complete 256x256 streak training sample (background + streak + truth).

Prints the median time per sample from ``skysift.simulation.generate.sample("streaks")``
on a real background crop (the bundled MAGIC frame) and on a fully synthetic
star field (telescope + PSF + detector noise chain). Single process, one core.
    python benchmarks/bench_sim_training_cutout.py [--n 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

from skysift.data import sample as bundled
from skysift.simulation.generate import sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    for label, bg in (
        ("real background (MAGIC crop)", [bundled("magic-allsky").path]),
        ("synthetic star field", None),
    ):
        sample("streaks", 0, 0, backgrounds=bg)  # warm caches (background load, PSF kernels)
        times = []
        for i in range(1, args.n + 1):
            t0 = time.perf_counter()
            sample("streaks", 0, i, backgrounds=bg)
            times.append(time.perf_counter() - t0)
        print(
            f"{label:<32} median {1e3 * statistics.median(times):6.2f} ms per 256x256 sample (n={args.n})"
        )


if __name__ == "__main__":
    main()
