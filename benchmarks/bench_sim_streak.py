"""Benchmark: one 256x256 cutout with a pixel-perfect streak and its truth, on one core.

Prints the median wall time per cutout (target <= 5 ms) for a Gaussian and a
Moffat PSF, with the truth as records + mask and with the astropy truth
table built too. Usage:
    python benchmarks/bench_sim_streak.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from skysift.simulation.optics import GaussianPSF, make_psf
from skysift.simulation.streaks import render_streak, streak_endpoints


def _time(fn, repeat: int) -> float:
    fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    ends = [
        streak_endpoints((256, 256), rng.uniform(20, 250), rng.uniform(0, 180), rng=rng)
        for _ in range(64)
    ]
    it = iter(range(10**9))
    for name, psf in (
        ("gaussian fwhm 3", GaussianPSF(3.0)),
        ("moffat fwhm 3 beta 2.5", make_psf("moffat", fwhm=3.0, beta=2.5)),
    ):

        def one(psf=psf, table=False):
            x1, y1, x2, y2 = ends[next(it) % len(ends)]
            img, truth = render_streak((256, 256), x1, y1, x2, y2, 1e4, psf, sigma=10.0)
            if table:
                truth.table  # noqa: B018 - build the astropy table
            return img

        t_rec = _time(one, args.repeat)
        t_tab = _time(lambda one=one: one(table=True), args.repeat)
        print(
            f"{name:24s} image + mask + records: {t_rec:.2f} ms   + astropy table: {t_tab:.2f} ms"
        )


if __name__ == "__main__":
    main()
