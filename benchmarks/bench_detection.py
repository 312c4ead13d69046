"""Benchmark: star detection (mask + classical finder) on a 3840x2160 frame.

Prints the median wall time of several runs. Usage:
    python benchmarks/bench_detection.py [--repeat 5] [--stars 3000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from skysift.detection import detect_stars, sky_mask
from skysift.simulation import make_star_field


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stars", type=int, default=3000)
    args = parser.parse_args()
    image, truth = make_star_field((2160, 3840), args.stars, fwhm=3.0, flux_range=(2e3, 2e5), rng=0)
    t_mask, t_det = [], []
    n = 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        m = sky_mask(image)
        t1 = time.perf_counter()
        stars = detect_stars(image, m.mask)
        t2 = time.perf_counter()
        t_mask.append(t1 - t0)
        t_det.append(t2 - t1)
        n = len(stars)
    print(f"frame: 3840x2160, {args.stars} injected stars, {n} detected")
    print(f"sky mask:   median {statistics.median(t_mask):.3f} s over {args.repeat} runs")
    print(f"detection:  median {statistics.median(t_det):.3f} s over {args.repeat} runs")
    print(f"total:      median {statistics.median(np.add(t_mask, t_det)):.3f} s")


if __name__ == "__main__":
    main()
