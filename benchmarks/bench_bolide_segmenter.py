"""Benchmark: learned bolide segmenter per 224x224 ROI tile and per full 1392x1040 frame.

A MAGIC held-out frame (20180817_0341) with fresh noise is the frame; its
noise-free version the background. Prints the median wall time of several
runs for each backend (one thread, as in the pipeline). ``--figures DIR``
also draws held-out composite frames (difference image, truth, learned and
classical masks) into ``DIR/bolide_seg_examples.png``. Usage:
    python benchmarks/bench_bolide_segmenter.py [--repeat 5] [--weights bolide_unet] [--figures docs/images]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from skysift.bolide.learned import BolideSegmenter
from skysift.stars.training_data import prepare_background


def _time(fn, repeat: int) -> float:
    fn()  # warm-up (ONNX export / session, caches)
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def figures(out_dir: str, weights: str, seeds=(7, 11, 20, 33)) -> None:
    """Held-out examples: difference, truth, U-Net and classical masks, one row per clip."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skysift.bolide.training import ROI_PAD, classical_baseline
    from skysift.bolide.training_data import HELD_OUT_BACKGROUNDS, render_clip

    seg = BolideSegmenter(weights)
    classical, _ = classical_baseline()
    fig, axes = plt.subplots(len(seeds), 4, figsize=(12, 3 * len(seeds)))
    for row, seed in zip(axes, seeds, strict=True):
        bg = prepare_background(HELD_OUT_BACKGROUNDS[seed % 3])
        clip = render_clip(bg, np.random.default_rng([999, seed]), bolide=True)
        k = int(np.argmax(clip.masks.reshape(len(clip.masks), -1).sum(1)))
        ys, xs = np.nonzero(clip.masks.any(0))
        h, w = bg.shape
        roi = (
            max(int(xs.min()) - ROI_PAD, 0),
            max(int(ys.min()) - ROI_PAD, 0),
            min(int(xs.max()) + 1 + ROI_PAD, w),
            min(int(ys.max()) + 1 + ROI_PAD, h),
        )
        sl = (slice(roi[1], roi[3]), slice(roi[0], roi[2]))
        d = (clip.frames[k] - clip.background)[sl] / clip.noise
        pu = seg.mask(clip.frames[k], clip.background, clip.noise, roi)[sl]
        pc = np.asarray(classical(clip.frames[k], clip.background, clip.noise, roi), bool)[sl]
        t = clip.masks[k][sl]
        title = f"{bg.name.split('/')[-1]} peak {clip.signal[k]:.0f} sigma"
        panels = (
            (np.arcsinh(d / 2), title),
            (t, "truth (signal >= 2 sigma)"),
            (pu, "U-Net"),
            (pc, "classical"),
        )
        for ax, (img, name) in zip(row, panels, strict=True):
            ax.imshow(img, cmap="gray", interpolation="nearest")
            ax.set_title(name, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    path = Path(out_dir) / "bolide_seg_examples.png"
    fig.savefig(path, dpi=80)
    print(f"figure -> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--weights", default="bolide_unet")
    parser.add_argument("--figures", default=None)
    args = parser.parse_args()
    if args.figures:
        figures(args.figures, args.weights)
    import torch

    torch.set_num_threads(1)
    bg = prepare_background("magic_allsky/20180817_0341.fits")
    rng = np.random.default_rng(0)
    background = bg.image
    frame = background + rng.normal(0, 70.0, background.shape).astype(np.float32)
    noise = 70.0
    h, w = frame.shape
    roi = (600, 400, 600 + 160, 400 + 160)  # grows to 224x224 with the 32 px context
    for backend in ("torch", "onnxruntime"):
        seg = BolideSegmenter(args.weights, backend=backend)
        t_tile = _time(lambda s=seg: s.predict(frame, background, noise, roi), args.repeat)
        t_full = _time(lambda s=seg: s.predict(frame, background, noise), max(args.repeat // 2, 1))
        print(
            f"{backend:<12} one 224x224 tile (ROI 160x160 + context): {1000 * t_tile:7.1f} ms   "
            f"full {w}x{h} frame: {t_full:6.2f} s"
        )


if __name__ == "__main__":
    main()
