"""Train and evaluate the learned DSO detector (issue 19).

    python benchmarks/bench_dso_detector.py --train --minutes 11   # writes src/skysift/dso/weights
    python benchmarks/bench_dso_detector.py --n 300                # tables

Training backgrounds: NGC_2244_v2.jpg (end strips), four tetra3 TIFFs,
long.fits. Held out entirely: NGC_6888_v2.jpg and the tetra3 TIFF
``Alt60_Azi135``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
TETRA = sorted((REAL / "tetra3_startracker").glob("*.tiff"))
HELD_TETRA = [p for p in TETRA if "Alt60_Azi135" in p.name]
TRAIN_FILES = (
    [REAL / "seestar_dso" / "NGC_2244_v2.jpg"]
    + [p for p in TETRA if p not in HELD_TETRA]
    + [REAL / "astride_streak" / "long.fits"]
)
TEST_FILES = [REAL / "seestar_dso" / "NGC_6888_v2.jpg", *HELD_TETRA]
WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "skysift" / "dso" / "weights"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--train", action="store_true", help="train and write the shipped weights")
    ap.add_argument("--minutes", type=float, default=11.0)
    ap.add_argument("--out", default=str(WEIGHTS))
    ap.add_argument("--n", type=int, default=300, help="composites per evaluation set")
    ap.add_argument("--weights", default=None, help="a .safetensors path (default: shipped)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="continue training from this .safetensors")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--record", action="store_true", help="write the summary into the model card")
    args = ap.parse_args(argv)
    if not REAL.is_dir():
        print(f"skipped: shared real data missing ({REAL})")
        return 0
    import torch

    torch.set_num_threads(1)
    if args.train:
        from skysift.dso.train import backgrounds_from_files, train_dso

        bgs = backgrounds_from_files(TRAIN_FILES)
        t0 = time.perf_counter()
        _, info = train_dso(args.out, backgrounds=bgs, minutes=args.minutes, seed=args.seed, init=args.init, lr=args.lr,
                            sources=[p.name for p in TRAIN_FILES],
                            log=lambda s: print(s, flush=True))  # fmt: skip
        print(
            f"trained {info['steps']} steps in {time.perf_counter() - t0:.0f} s -> {info['weights']}"
        )
        return 0
    from skysift.dso.evaluate import print_report, run_evaluation

    res = run_evaluation(TEST_FILES, n_images=args.n, weights=args.weights, rng=args.seed + 1000)
    print_report(res)
    if args.record:
        from skysift.dso.evaluate import record_metrics

        w = args.weights or str(WEIGHTS / "dso_unet.safetensors")
        note = (f"python benchmarks/bench_dso_detector.py --n {args.n} --record: held-out "
                f"backgrounds {[p.name for p in TEST_FILES]}, composite side 88, bins 5/8 and 4, "
                "SNR 5-80, threshold 0.5; per class median/worst F1 over the 2 files")  # fmt: skip
        print("card:", record_metrics(res, w, note=note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
