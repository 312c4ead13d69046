"""Bolide light curve on held-out composite clips, and the motion zone's speed.

Held-out backgrounds: the MAGIC frame of 2018-08-17 03:38 UT and the UMD
false-trigger frames Bug-20191028 and Intruder-20200414 (none is used to train
the bolide segmenter). Each background is calibrated once; the bolides are drawn
with seed 777 (training uses other seeds). Prints one row per clip and method,
then the totals: pixel precision and recall of the masks against the truth
(signal >= 2 sigma), the RMS magnitude error over unsaturated frames (all clips
pooled, and the median of the per-clip RMS), and the saturated frames flagged.

Usage: python benchmarks/bench_bolide.py [--clips N] [--methods classical,unet] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from skysift.bolide.evaluation import evaluate_bolide_clips
from skysift.calibration.pipeline import calibrate
from skysift.errors import NoDetectionsWarning, SkysiftError
from skysift.io import read_frame
from skysift.io.frame import Site

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
UMD = Site(39.0021, -76.956, 50.0)


def backgrounds():
    from skysift.data import sample

    s = sample("magic-allsky-0341")
    frames = [
        read_frame(s.path, site=s.site),
        read_frame(
            DATA / "umd_allsky" / "Bug-20191028.png",
            site=UMD,
            time="2019-10-28T05:21:45",
            exposure=44.0,
        ),
        read_frame(
            DATA / "umd_allsky" / "Intruder-20200414.png",
            site=UMD,
            time="2020-04-14T05:11:17",
            exposure=47.0,
        ),
    ]
    out = []
    for f in frames:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoDetectionsWarning)
                cal = calibrate(f)
        except SkysiftError as exc:
            print(f"skipped (cannot be calibrated): {exc}")
            continue
        print(
            f"{Path(f.path).name}: {cal.n_matched} stars, ZP {cal.zero_point.zero_point:.2f} "
            f"+- {cal.zero_point.zero_point_err:.3f}, terms {cal.zero_point.terms}"
        )
        out.append((f, cal))
    return out


def motion_speed() -> None:
    import tempfile

    from astropy.io import fits

    from skysift.bolide.demo import demo_inputs
    from skysift.bolide.motion import motion_zone

    with tempfile.TemporaryDirectory() as tmp:
        inp = demo_inputs(tmp)
        cube = fits.getdata(inp.video).astype(np.float32)
    for scale in (1.0, 0.5, 0.25):
        t0 = time.perf_counter()
        mz = motion_zone(cube, scale=scale)
        dt = time.perf_counter() - t0
        print(
            f"motion zone, {cube.shape[0]} frames {cube.shape[2]}x{cube.shape[1]}, scale {scale}: "
            f"{dt:.2f} s ({1e3 * dt / (len(cube) - 1):.0f} ms per pair), zone {mz.roi}, "
            f"active frames {int(mz.active.sum())}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--methods", default="classical")
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-speed", action="store_true")
    a = ap.parse_args()
    if not a.no_speed:
        motion_speed()
    bgs = backgrounds()
    methods = a.methods.split(",")
    t = evaluate_bolide_clips(
        bgs,
        n_clips=a.clips,
        methods=methods,
        out_dir=a.out,
        progress=lambda d, n: print(f"  {d}/{n}", flush=True),
    )
    cols = [
        "clip",
        "method",
        "peak_mag",
        "speed",
        "n_truth",
        "n_measured",
        "n_unsaturated",
        "rms_mag",
        "bias_mag",
        "n_saturated_truth",
        "n_saturated_flagged",
        "n_false_saturated",
        "precision",
        "recall",
        "seconds",
    ]
    for c in ("peak_mag", "speed", "rms_mag", "bias_mag", "precision", "recall", "seconds"):
        t[c].format = ".3f"
    t[cols].pprint(max_lines=-1, max_width=-1)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        t[cols].write(Path(a.out) / "bench_bolide.ecsv", overwrite=True)
    for m in methods:
        s = t[t["method"] == m]
        tp, fp, fn = s["tp"].sum(), s["fp"].sum(), s["fn"].sum()
        print(
            f"\n{m}: mask precision {tp / max(1, tp + fp):.3f}, recall {tp / max(1, tp + fn):.3f} "
            f"(pixels, {len(s)} clips)"
        )
        # pooled RMS over all unsaturated frames = sqrt(sum n rms^2 / sum n)
        ok = s["n_unsaturated"] > 0
        n = np.asarray(s["n_unsaturated"][ok], float)
        rms = np.asarray(s["rms_mag"][ok], float)
        print(
            f"  light curve: pooled RMS {np.sqrt(np.sum(n * rms**2) / n.sum()):.3f} mag over "
            f"{int(n.sum())} unsaturated frames; median per-clip RMS {np.median(rms):.3f}; "
            f"worst clip {rms.max():.3f}"
        )
        print(
            f"  frames with the head tracked: {int(s['n_measured'].sum())} of {int(s['n_truth'].sum())}; "
            f"saturated flagged {int(s['n_saturated_flagged'].sum())} of {int(s['n_saturated_truth'].sum())}, "
            f"false flags {int(s['n_false_saturated'].sum())}"
        )
        print(f"  seconds per clip: {np.mean(s['seconds']):.1f}")


if __name__ == "__main__":
    main()
