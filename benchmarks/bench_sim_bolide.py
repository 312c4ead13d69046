"""Benchmark: time per 1392x1040 bolide video frame on the real MAGIC all-sky background.

A fireball (peak V = -8, two fragmentation flares, a wake with 30 % of the
head's light and a 0.25 s decay) crosses the sky along a great circle through
the fisheye model the calibration core fits to the MAGIC frame, at 25 fps.
Prints the median time per frame (target <= 50 ms). Usage:
    python benchmarks/bench_sim_bolide.py [--frames 50] [--mode star-free|frame]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from skysift.calibration.pipeline import calibrate
from skysift.io import read_frame
from skysift.io.frame import Site
from skysift.simulation.background import load_background
from skysift.simulation.meteors import Flare, LightCurve, Meteor, MeteorVideo

FRAME = Path(__file__).parent.parent / "tests" / "data" / "magic_allsky" / "20180817_0055.fits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--mode", default="star-free", choices=("star-free", "frame"))
    args = parser.parse_args()
    frame = read_frame(FRAME, site=Site(28.7619, -17.8908, 2200))
    result = calibrate(frame)
    sb = load_background(frame, sky=~result.sky.mask)
    duration = args.frames / 25.0
    lc = LightCurve.meteor(
        -8.0, duration, flares=[Flare(0.55 * duration, 1.5, 0.04), Flare(0.7 * duration, 2.0, 0.03)]
    )
    bolide = Meteor(
        (65.0, 30.0),
        (20.0, 200.0),
        speed=(95.0 / duration),
        light_curve=lc,
        camera=result.camera,
        wake_fraction=0.3,
        wake_tau_s=0.25,
        psf=3.9,
    )
    video = MeteorVideo(
        sb,
        bolide,
        n_frames=args.frames,
        fps=25.0,
        zero_point=result.zero_point.zero_point,
        mode=args.mode,
    )
    rng = np.random.default_rng(0)
    video.render_frame(0, rng)  # warm-up
    times, n_sat = [], 0
    for i in range(args.frames):
        t0 = time.perf_counter()
        _, truth = video.render_frame(i, rng)
        times.append(time.perf_counter() - t0)
        n_sat += int(truth["saturated"][0])
    h, w = video.shape
    print(f"frame: {w}x{h}, mode {args.mode}, {args.frames} frames at 25 fps, {n_sat} saturated")
    print(
        f"per frame: median {1e3 * statistics.median(times):.1f} ms, max {1e3 * max(times):.1f} ms"
    )


if __name__ == "__main__":
    main()
