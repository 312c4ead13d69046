"""Benchmark: simulator rendering and detector on a 1392x1040 frame and a 256x256 cutout.

Prints the median wall time of several runs (after one warm-up run that builds
the PSF stamp tables). Usage:
    python benchmarks/bench_sim_render.py [--repeat 7] [--stars 2000] [--fwhm 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from skysift.simulation.detector import Detector
from skysift.simulation.optics import GaussianPSF, MoffatPSF, SeeingPSF, Telescope
from skysift.simulation.render import add_sky, convolve_psf, render_points


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (stamp tables, page faults)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--stars", type=int, default=2000)
    parser.add_argument("--fwhm", type=float, default=3.0)
    args = parser.parse_args()

    shape = (1040, 1392)
    rng = np.random.default_rng(0)
    tel = Telescope(0.114, focal_length_m=0.45, pixel_size_m=4.65e-6, band="V")
    x = rng.uniform(0, shape[1], args.stars)
    y = rng.uniform(0, shape[0], args.stars)
    flux = tel.star_photons(rng.uniform(8, 16, args.stars), 1.0)
    sky = tel.sky_photons_per_pixel(20.5, 1.0)
    det = Detector(qe=0.8, dark_current=0.05, read_noise=3.0, gain=1.0, offset=100.0, bit_depth=12)

    print(
        f"frame {shape[1]}x{shape[0]}, {args.stars} stars, FWHM {args.fwhm} px, "
        f"median of {args.repeat} runs"
    )
    for psf in (
        GaussianPSF(args.fwhm),
        MoffatPSF(args.fwhm, beta=2.5),
        MoffatPSF(args.fwhm, beta=4.765),
        SeeingPSF(0.1, 545e-9, tel.pixel_scale_arcsec),
    ):
        t = _median_time(lambda psf=psf: render_points(shape, x, y, flux, psf), args.repeat)
        print(f"render_points {psf!r:<70s} {1e3 * t:8.1f} ms")

    photons = add_sky(render_points(shape, x, y, flux, GaussianPSF(args.fwhm)), sky)
    t = _median_time(lambda: det.expose(photons, 1.0, rng), args.repeat)
    print(
        f"Detector.expose full frame                                             {1e3 * t:8.1f} ms"
    )
    cut = photons[:256, :256]
    t = _median_time(lambda: det.expose(cut, 1.0, rng), args.repeat)
    print(
        f"Detector.expose 256x256 cutout                                         {1e3 * t:8.1f} ms"
    )
    cx, cy = rng.uniform(0, 256, 40), rng.uniform(0, 256, 40)
    cf = flux[:40]

    def cutout() -> object:
        return det.expose(
            add_sky(render_points((256, 256), cx, cy, cf, GaussianPSF(args.fwhm)), sky), 1.0, rng
        )

    t = _median_time(cutout, args.repeat)
    print(
        f"256x256 cutout: render 40 stars + sky + expose                         {1e3 * t:8.1f} ms"
    )
    stack = np.repeat(cut[None], 8, axis=0) / 8
    t = _median_time(lambda: det.expose_stack(stack, 1.0 / 8, rng), args.repeat)
    print(
        f"Detector.expose_stack 8 x 256x256                                      {1e3 * t:8.1f} ms"
    )
    streak = np.zeros((256 * 5, 256 * 5))
    streak[640, 100:1100] = 1e3
    t = _median_time(lambda: convolve_psf(streak, MoffatPSF(args.fwhm), oversample=5), args.repeat)
    print(
        f"convolve_psf 256x256 at oversample 5 (Moffat)                          {1e3 * t:8.1f} ms"
    )


if __name__ == "__main__":
    main()
