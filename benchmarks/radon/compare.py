"""Our Radon detector against the naive reference (``naive_radon.py``) on the held-out composites.

Same set, metrics and table layout as ``benchmarks/bench_streaks_radon.py``
part (a). Run: ``python benchmarks/radon/compare.py --n-pos 50 --n-neg 100``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_streaks_radon as bench  # noqa: E402
from naive_radon import naive_radon  # noqa: E402


def make_sim(n_pos: int, n_neg: int, seed: int) -> list[dict]:
    """Like ``bench.make_composites`` on the simulator's own star fields (no real background)."""
    from skysift.simulation.generate import sample_streaks

    out = []
    for k in range(n_pos + n_neg):
        rng = np.random.default_rng([seed, k])
        pos = k < n_pos
        bright = (0.2, 30.0) if pos else (1e-12, 1e-12)
        smp = sample_streaks(rng, size=512, length_range=(20.0, 800.0), brightness_range=bright)
        row = smp.truth[0]
        ends = tuple(float(row[c]) for c in ("x1", "y1", "x2", "y2"))
        out.append({
            "image": smp.image, "mask": smp.mask.astype(bool) if pos else np.zeros((512, 512), bool),
            "fwhm": float(smp.meta["fwhm"]), "snr_avg": float(row["snr_avg"]) if pos else np.nan,
            "pos": pos, "inside": all(-0.5 <= v <= 511.5 for v in ends), "ends": ends,
        })  # fmt: skip
    return out


def score_naive(frames: list[dict]) -> tuple[np.ndarray, np.ndarray, float]:
    maps = np.zeros((len(frames), 512, 512), np.float32)
    stats = np.zeros(len(frames))
    t0 = time.perf_counter()
    for i, fr in enumerate(frames):
        maps[i], stats[i], _ = naive_radon(fr["image"], fr["fwhm"])
    return maps, stats, (time.perf_counter() - t0) / len(frames)


def matched_filter_limit(frames: list[dict]) -> None:
    """Per SNR_avg bin: the integrated (white-noise, optimal) matched-filter SNR of the streaks.

    ``snr_int = snr_avg * FWHM * sqrt(L_in) / (0.76 (4 pi s^2)^(1/4))`` with ``L_in`` the
    in-frame length (mask pixels / FWHM), ``s = FWHM / 2.355`` and 0.76 the PSF fraction
    inside the truth capsule (Nir et al. 2018, eq. 6 for a Gaussian PSF).
    """
    print("matched-filter limit (white noise, optimal): integrated SNR per SNR_avg bin")
    for lo, hi in bench.BINS:
        vals = [
            bench.integrated_snr(f)
            for f in frames
            if f["pos"] and lo <= f["snr_avg"] < (hi if hi < 30 else 1e9)
        ]
        if vals:
            v = np.asarray(vals)
            print(f"  SNR_avg [{lo}, {hi}): n={v.size}, integrated SNR median {np.median(v):.1f}, "
                  f"{np.mean(v < 5):.0%} below 5, {np.mean(v < 8):.0%} below 8")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-pos", type=int, default=50)
    ap.add_argument("--n-neg", type=int, default=100)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--methods", default="ours,naive", help="comma list; empty: only the limit")
    ap.add_argument("--sim", action="store_true", help="simulated star fields, not real skies")
    ap.add_argument("--dump", default="", help="save per-frame statistics to this .npz")
    args = ap.parse_args()
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    build = make_sim if args.sim else bench.make_composites
    frames = build(args.n_pos, args.n_neg, args.seed)
    bins = " | ".join(f"TPR [{lo},{hi})" for lo, hi in bench.BINS)
    kind = "simulated star fields" if args.sim else "held-out composites"
    print(f"{args.n_pos} positive + {args.n_neg} negative 512x512 {kind}, seed {args.seed}")
    print(f"| method | pixel AUC | TPR@1e-5 | {bins} | P@90%R | image TPR@1% inside | all "
          "| image AUC | s/frame |")  # fmt: skip
    print("|" + "---|" * (9 + len(bench.BINS)))
    matched_filter_limit(frames)
    dump = {}
    for m in filter(None, args.methods.split(",")):
        fn = {"ours": bench.score_radon, "naive": score_naive}[m]
        maps, stats, sec = fn(frames)
        dump[m] = stats
        bench.print_metrics({"ours": "Radon (ours)", "naive": "naive skimage Radon"}[m],
                            bench.metrics(frames, maps, stats), sec)  # fmt: skip
        if not args.sim:
            bench.per_background(frames, stats)
    if args.dump:
        np.savez(args.dump, pos=[f["pos"] for f in frames], snr=[f["snr_avg"] for f in frames],
                 inside=[f["inside"] for f in frames], **dump)  # fmt: skip


if __name__ == "__main__":
    main()
