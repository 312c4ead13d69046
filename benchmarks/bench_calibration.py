"""Benchmark: full calibration (mask, stars, fisheye astrometry, zero point) of a MAGIC frame.

Prints per-stage and total wall times (median of several runs; the first
run, which loads the Hipparcos catalogue, is reported separately). Usage:
    python benchmarks/bench_calibration.py [--repeat 3] [FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from skysift.calibration.pipeline import calibrate
from skysift.data import sample
from skysift.io import read_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    s = sample("magic-allsky")
    path = args.file or s.path
    t0 = time.perf_counter()
    frame = read_frame(path, site=s.site)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = calibrate(frame)
    first = time.perf_counter() - t0
    totals, stages = [], {}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = calibrate(frame)
        totals.append(time.perf_counter() - t0)
        for k, v in result.timings.items():
            stages.setdefault(k, []).append(v)
    print(f"file: {path.name} {frame.shape[1]}x{frame.shape[0]}; read {t_read:.3f} s")
    print(f"first calibration (catalogue load included): {first:.2f} s")
    for k, v in stages.items():
        print(f"  {k:<12} median {statistics.median(v):.2f} s")
    print(f"calibration: median {statistics.median(totals):.2f} s over {args.repeat} runs")
    zp = result.zero_point
    print(
        f"result: {result.n_matched} stars identified, RMS {result.astrometric_rms_px:.2f} px, "
        f"photometric RMS {zp.rms_mag:.3f} mag"
        if zp is not None
        else "no zero point"
    )


if __name__ == "__main__":
    main()
