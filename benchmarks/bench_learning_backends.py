"""Benchmark: tiled U-Net inference backends on CPU (bolide report §4.9).

For a small U-Net (width 16, depth 4) on a 1392x1040 and a 3840x2160 frame,
prints the median wall time of ``predict_image`` with torch float32, torch
bfloat16, torch after 50 % global magnitude pruning, and ONNX Runtime, all on
the same number of threads. The weights are random: speed does not depend on
them (pruned zeros are not skipped by dense kernels). Usage:
    python benchmarks/bench_learning_backends.py [--threads 2] [--repeat 1]
        [--block residual] [--tile 256] [--stride 192] [--sizes 1392x1040,3840x2160]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from skysift.learning import (
    build_model,
    count_parameters,
    global_prune,
    predict_image,
    to_precision,
)
from skysift.learning.compression import onnx_session_for


def _time(fn, repeat: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up (and ONNX export / session build for onnxruntime)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--block", default="residual")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--stride", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sizes", default="1392x1040,3840x2160", help="WxH list")
    parser.add_argument("--backends", default="torch_fp32,torch_bf16,pruned,onnxruntime")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("unet", width=16, depth=4, block=args.block).eval()
    pruned = global_prune(build_model("unet", width=16, depth=4, block=args.block).eval(), 0.5)
    bf16 = to_precision(model, "bfloat16")
    kw = {
        "tile": args.tile,
        "stride": args.stride,
        "batch_size": args.batch_size,
        "num_threads": args.threads,
        "normalise": "arcsinh",
    }
    backends = {
        "torch_fp32": lambda img: predict_image(model, img, backend="torch", **kw),
        "torch_bf16": lambda img: predict_image(bf16, img, backend="torch", **kw),
        "pruned": lambda img: predict_image(pruned, img, backend="torch", **kw),
        "onnxruntime": lambda img: predict_image(model, img, backend="onnxruntime", **kw),
    }
    chosen = [b.strip() for b in args.backends.split(",")]
    print(
        f"UNet width 16 depth 4 block={args.block}: {count_parameters(model)} parameters; "
        f"tile {args.tile} stride {args.stride} batch {args.batch_size}; {args.threads} threads"
    )
    if "onnxruntime" in chosen:
        t0 = time.perf_counter()
        onnx_session_for(model, num_threads=args.threads, use_disk_cache=False)
        print(f"  ONNX export + session build: {time.perf_counter() - t0:.2f} s (once per model)")
    rng = np.random.default_rng(0)
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        img = rng.normal(1000.0, 10.0, (h, w)).astype(np.float32)
        ref = None
        for name in chosen:
            t, out = _time(lambda name=name, img=img: backends[name](img), args.repeat)
            diff = (
                ""
                if ref is None or name == "pruned"
                else f"  max |p - p_fp32| = {np.abs(out - ref).max():.1e}"
            )
            if name == "torch_fp32":
                ref = out
            print(f"  {w}x{h} {name:12s} {t:7.2f} s  ({w * h / t / 1e6:5.2f} Mpix/s){diff}")


if __name__ == "__main__":
    main()
