"""Timings of the learned streak detectors on 1032x768 frames (satellite paper §4.1).

Prints, on the given number of threads (default 2):

- the image classifier: seconds for ``--frames`` frames of 1032x768 (target:
  400 frames in <= 5 s), 128x128 windows overlapping by 20 px;
- the segmenter on one positive 1032x768 frame: at the default step, in
  whole-image mode, and at the paper's step of 10 px (extrapolated from
  ``--step10-windows`` windows unless ``--full-step10``; target: <= 2 s at the
  default step);
- the classical and Hough baselines on the same frame.

Run from the repository root (the frames are built on a held-out real
background from tests/data)::

    python benchmarks/bench_streaks.py --frames 400 --threads 2
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def _frames(n_distinct: int, seed: int = 7) -> list[np.ndarray]:
    from skysift.streaks.training_data import (
        STREAK_HELD_OUT_BACKGROUNDS,
        StreakDataConfig,
        composite_cutout,
        load_backgrounds,
    )

    bg = load_backgrounds((STREAK_HELD_OUT_BACKGROUNDS[0],))[0]
    cfg = StreakDataConfig(size=768, edge_fraction=0.0, sky_fraction=0.0)
    out = []
    for k in range(n_distinct):
        c = composite_cutout(bg, np.random.default_rng([seed, k]), cfg, streak=k % 2 == 0)
        x0 = 200 + 50 * k
        img = np.asarray(bg.image[:768, x0 : x0 + 1032], np.float32).copy()
        img[:, :768] = c.image
        out.append(img)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400, help="frames to classify")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--step10-windows", type=int, default=64, help="windows timed at step 10")
    parser.add_argument("--full-step10", action="store_true", help="segment fully at step 10")
    args = parser.parse_args()

    import torch

    from skysift.streaks.detection import ClassicalStreakFinder
    from skysift.streaks.hough import HoughStreakFinder
    from skysift.streaks.learned import (
        DEFAULT_STEP,
        StreakImageClassifier,
        StreakSegmenter,
    )

    torch.set_num_threads(args.threads)
    frames = _frames(8)
    clf = StreakImageClassifier(num_threads=args.threads)
    clf(frames[0])  # load, export to ONNX, warm up
    n_win = len(clf.window_scores(frames[0])[0])
    t = time.perf_counter()
    scores = [clf(frames[i % len(frames)]) for i in range(args.frames)]
    dt = time.perf_counter() - t
    print(f"backend: {clf._run().run.backend}, {args.threads} threads")
    print(
        f"classifier: {args.frames} frames of 1032x768 ({n_win} windows each) in {dt:.2f} s "
        f"({1e3 * dt / args.frames:.1f} ms/frame; 400 frames: {400 * dt / args.frames:.1f} s, "
        f"target 5 s); positives scored {np.mean(scores[0::2]):.3f}, "
        f"negatives {np.mean(scores[1::2]):.3f}"
    )

    positive = frames[0]
    seg = StreakSegmenter(num_threads=args.threads)
    seg(positive[:256, :256])  # load and warm up
    rows = []
    for label, s in (
        (f"default step {DEFAULT_STEP}", seg),
        ("whole image", seg.replace(mode="whole")),
        ("step 64", seg.replace(step=64)),
    ):
        t = time.perf_counter()
        s(positive)
        rows.append((label, s.n_windows(positive.shape), time.perf_counter() - t, ""))
    s10 = seg.replace(step=10)
    n10 = s10.n_windows(positive.shape)
    if args.full_step10:
        t = time.perf_counter()
        s10(positive)
        rows.append(("step 10 (paper)", n10, time.perf_counter() - t, "measured"))
    else:
        from skysift.streaks.training_data import normalise_windows

        k = min(args.step10_windows, n10)
        batch = normalise_windows(
            np.stack([positive[:256, 10 * i : 10 * i + 256] for i in range(k)])
        )
        run = s10._run()
        t = time.perf_counter()
        run.logits(batch[:, None], s10.batch_size)
        per = (time.perf_counter() - t) / k
        rows.append(("step 10 (paper)", n10, per * n10, f"extrapolated from {k} windows"))
    for label, n, secs, note in rows:
        print(f"segmenter, {label:<22} {n:>5} windows  {secs:8.2f} s per frame  {note}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, finder in (
            ("classical", ClassicalStreakFinder()),
            ("hough", HoughStreakFinder()),
        ):
            t = time.perf_counter()
            finder.score_map(positive)
            print(f"{name} baseline: {time.perf_counter() - t:.2f} s per frame")


if __name__ == "__main__":
    main()
