"""Benchmark: the learned star detector against the classical one (bolide report Tables 3 and 4).

For each backend of the learned finder (torch, onnxruntime, pruned, bf16)
it prints the object-level precision/recall on held-out composite frames
(:func:`skysift.stars.evaluation.evaluate_stars`) and the wall time per frame
for a 1392x1040 and a 3840x2160 frame (median of ``--repeat`` runs, the
first run excluded); the hybrid finder (U-Net + matched filter + learned
candidate scorer, :mod:`skysift.stars.hybrid`) and the classical finder
beside them. With ``--real`` it
also calibrates the real MAGIC and UMD frames with the three finders and
prints ``n_matched`` (catalogue-identified stars); ``--out`` gets the PR
plot and overlay PNGs. ``--sweep`` prints only the operating points of the
shipped model (probability cut, minimum region area) with the recall per
SNR bin, and the classical finder's. Usage:

    python benchmarks/bench_star_detector.py [--frames 9] [--repeat 3] [--real] [--out DIR]
    python benchmarks/bench_star_detector.py --sweep [--frames 9]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from skysift.detection.stars import ClassicalStarFinder
from skysift.errors import NoDetectionsWarning
from skysift.stars.evaluation import evaluate_stars
from skysift.stars.hybrid import HybridStarFinder
from skysift.stars.learned import UNetStarFinder
from skysift.stars.training_data import HELD_OUT_BACKGROUNDS, composite_frame, prepare_background

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def _time(fn, image, mask, repeat):
    fn(image, mask)  # warm-up (model load, ONNX export, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(image, mask)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _pruned(amount: float = 0.5):
    """The shipped net with ``amount`` of its weights pruned (global magnitude), briefly fine-tuned."""
    from skysift.learning.compression import global_prune, sparsity
    from skysift.learning.trainer import TrainConfig
    from skysift.learning.weights import load_weights
    from skysift.stars.training import StarBatchSource
    from skysift.stars.training_data import TRAIN_BACKGROUNDS, StarDataConfig

    model = copy.deepcopy(load_weights("stars_unet"))
    bgs = [prepare_background(n) for n in TRAIN_BACKGROUNDS]
    src = StarBatchSource(StarDataConfig(), bgs)
    cfg = TrainConfig(
        epochs=2,
        steps_per_epoch=50,
        batch_size=32,
        lr=5e-4,
        val_steps=4,
        loss="bce+dice",
        num_threads=1,
        seed=0,
    )
    model = global_prune(model, amount, train_batches=src, val_batches=src, config=cfg).eval()
    return model, sparsity(model)


def _big_frame(seed: int = 0) -> np.ndarray:
    """A 3840x2160 frame: four held-out composites (MAGIC, UMD, tetra3) tiled and cropped."""
    tiles = []
    for i, name in enumerate(HELD_OUT_BACKGROUNDS[:2] * 2):
        img, _ = composite_frame(prepare_background(name), np.random.default_rng([seed, i]))
        tiles.append((img - np.median(img)) / np.std(img))
    row1 = np.concatenate([tiles[0], tiles[1], tiles[2]], 1)
    row2 = np.concatenate([tiles[3], tiles[0], tiles[1]], 1)
    big = np.concatenate([row1, row2, row1], 0)[:2160, :3840]
    return np.ascontiguousarray(big * 50 + 1000, np.float32)


def _overlay(image, mask, learned, classical, path):
    import cv2

    v = image[np.isfinite(image)]
    lo, hi = np.percentile(v, [1, 99.7])
    g = (np.clip((image - lo) / (hi - lo + 1e-9), 0, 1) * 255).astype(np.uint8)
    rgb = np.stack([g, g, g], -1)
    if mask is not None:
        rgb[mask] = (rgb[mask] * 0.6).astype(np.uint8)
        rgb[mask, 2] = np.maximum(rgb[mask, 2], 60)
    for t, colour, r in ((classical, (0, 0, 255), 7), (learned, (0, 255, 0), 4)):
        for x, y in zip(t["x"], t["y"], strict=True):
            cv2.circle(rgb, (int(round(x)), int(round(y))), r, colour, 1)
    cv2.imwrite(str(path), rgb)


def _real_frames(out: Path | None):
    from skysift.calibration.pipeline import calibrate
    from skysift.io import read_frame

    frames = [
        (
            "MAGIC 20180817_0341 (held out)",
            DATA / "magic_allsky" / "20180817_0341.fits",
            {"site": (28.7619, -17.8908, 2200.0)},
        ),
        (
            "MAGIC 20180817_0055",
            DATA / "magic_allsky" / "20180817_0055.fits",
            {"site": (28.7619, -17.8908, 2200.0)},
        ),
        (
            "UMD Meteor-20191028",
            DATA / "umd_allsky" / "Meteor-20191028.png",
            {"site": (39.0021, -76.956, 50.0), "time": "2019-10-28T07:01:26", "exposure": 44.0},
        ),
    ]
    print("\nReal frames: catalogue-identified stars (calibrate(frame, method=...).n_matched)")
    print(f"{'frame':<34} {'method':<10} {'detected':>8} {'n_matched':>9} {'rms px':>7}")
    for label, path, kw in frames:
        frame = read_frame(path, **kw)
        res = {}
        for method in ("classical", "unet", "hybrid"):
            try:
                r = calibrate(frame, method=method)
                res[method] = r
                print(
                    f"{label:<34} {method:<10} {len(r.stars):>8} {r.n_matched:>9} "
                    f"{r.astrometric_rms_px:>7.2f}"
                )
            except Exception as err:  # noqa: BLE001 - report and go on
                print(f"{label:<34} {method:<10} failed: {err}")
        if out is not None and {"unet", "classical"} <= set(res):
            stem = path.stem.replace("-", "_")
            mask = res["unet"].sky.mask if res["unet"].sky is not None else None
            _overlay(
                frame.data,
                mask,
                res["unet"].stars,
                res["classical"].stars,
                out / f"overlay_{stem}.png",
            )
            if "hybrid" in res:
                _overlay(
                    frame.data,
                    mask,
                    res["hybrid"].stars,
                    res["classical"].stars,
                    out / f"overlay_{stem}_hybrid.png",
                )
            # and without any mask: does the network itself avoid captions, trees, structures?
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoDetectionsWarning)
                _overlay(
                    frame.data,
                    None,
                    UNetStarFinder()(frame.data),
                    ClassicalStarFinder()(frame.data),
                    out / f"overlay_{stem}_nomask.png",
                )
                _overlay(
                    frame.data,
                    None,
                    HybridStarFinder()(frame.data),
                    ClassicalStarFinder()(frame.data),
                    out / f"overlay_{stem}_hybrid_nomask.png",
                )


#: (probability cut, min_area) operating points printed by ``--sweep``.
SWEEP = (
    (0.5, 3),
    (0.4, 3),
    (0.3, 3),
    (0.2, 3),
    (0.1, 3),
    (0.05, 3),
    (0.04, 3),
    (0.04, 4),
    (0.03, 3),
    (0.01, 3),
)


def _sweep(n_frames: int) -> None:
    """Precision, recall and recall per SNR bin of the shipped model at each :data:`SWEEP` point."""
    cols = ("recall_snr_5_7", "recall_snr_7_10", "recall_snr_10_up")
    print(f"Held-out composites, {n_frames} frames; recall over SNR >= 5, match radius 2 px")
    print(f"{'setting':<28} {'P':>6} {'R':>6} {'R 5-7':>6} {'R 7-10':>6} {'R >=10':>6} {'fp':>5}")
    for th, min_area in SWEEP:
        ev = evaluate_stars(n_frames=n_frames, threshold=th, finder_kwargs={"min_area": min_area})
        u = ev[ev["detector"] == "unet"][0]
        bins = " ".join(f"{u[c]:>6.3f}" for c in cols)
        label = f"unet p>={th} min_area={min_area}"
        print(f"{label:<28} {u['precision']:>6.3f} {u['recall']:>6.3f} {bins} {u['fp']:>5}")
    c = ev[ev["detector"] == "classical"][0]
    bins = " ".join(f"{c[k]:>6.3f}" for k in cols)
    label = "classical (3 sigma)"
    print(f"{label:<28} {c['precision']:>6.3f} {c['recall']:>6.3f} {bins} {c['fp']:>5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="also calibrate the real frames")
    parser.add_argument("--no-pruned", action="store_true", help="skip the pruned model")
    parser.add_argument("--out", type=Path, default=None, help="folder for plots and overlays")
    parser.add_argument(
        "--sweep", action="store_true", help="only the operating points of the shipped model"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.sweep:
        _sweep(args.frames)
        return
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)

    bg = prepare_background(HELD_OUT_BACKGROUNDS[0])
    img1, _ = composite_frame(bg, np.random.default_rng(0))
    mask1 = ~bg.sky
    img4 = _big_frame()
    variants = {
        "torch": {"backend": "torch"},
        "onnxruntime": {"backend": "onnxruntime"},
        "bf16": {"backend": "bf16"},
    }
    if not args.no_pruned:
        t0 = time.perf_counter()
        pruned, sp = _pruned()
        print(f"pruned: sparsity {sp:.2f}, fine-tuned in {time.perf_counter() - t0:.0f} s")
        variants["pruned"] = {"model": pruned}
    rows = []
    curves = {}
    for name, v in variants.items():
        if "model" in v:
            finder = UNetStarFinder.from_model(v["model"], backend="onnxruntime")
            ev = evaluate_stars(v["model"], n_frames=args.frames, backend="onnxruntime")
        else:
            finder = UNetStarFinder(backend=v["backend"])
            hybrid = "stars_rerank" if name == "onnxruntime" else None
            ev = evaluate_stars(n_frames=args.frames, backend=v["backend"], hybrid=hybrid)
        u = ev[ev["detector"] == "unet"][0]
        curves[name] = ev.meta["curves"]["unet"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            t1 = _time(finder, img1, mask1, args.repeat)
            t4 = _time(finder, img4, None, max(1, args.repeat - 1))
        rows.append(
            (
                f"unet/{name}",
                u["precision"],
                u["recall"],
                u["recall_at_precision_95"],
                u["centroid_rms"],
                t1,
                t4,
            )
        )
        c = ev[ev["detector"] == "classical"][0]
        if "hybrid" in ev["detector"]:
            h = ev[ev["detector"] == "hybrid"][0]
            curves["hybrid"] = ev.meta["curves"]["hybrid"]
            hfinder = HybridStarFinder(backend=v["backend"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoDetectionsWarning)
                t1 = _time(hfinder, img1, mask1, args.repeat)
                t4 = _time(hfinder, img4, None, max(1, args.repeat - 1))
            hybrid_row = (
                f"hybrid/{name}",
                h["precision"],
                h["recall"],
                h["recall_at_precision_95"],
                h["centroid_rms"],
                t1,
                t4,
            )
    rows.append(hybrid_row)
    curves["classical"] = ev.meta["curves"]["classical"]
    classical = ClassicalStarFinder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        t1 = _time(classical, img1, mask1, args.repeat)
        t4 = _time(classical, img4, None, max(1, args.repeat - 1))
    rows.append(
        (
            "classical (3 sigma)",
            c["precision"],
            c["recall"],
            c["recall_at_precision_95"],
            c["centroid_rms"],
            t1,
            t4,
        )
    )
    print(f"\nHeld-out composites ({args.frames} frames; {ev.meta['definition']})")
    print(
        f"{'detector':<20} {'P':>6} {'R':>6} {'R@P>=.95':>9} {'cen rms':>7} "
        f"{'1392x1040 s':>11} {'3840x2160 s':>11}"
    )
    for r in rows:
        print(
            f"{r[0]:<20} {r[1]:>6.3f} {r[2]:>6.3f} {r[3]:>9.3f} {r[4]:>7.3f} {r[5]:>11.2f} "
            f"{r[6]:>11.2f}"
        )
    for pf in ev.meta["per_frame"]:
        print("  ", pf)
    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        for name, cv in curves.items():
            ax.plot(cv["recall"], cv["precision"], label=name)
        ax.set_xlabel("recall (SNR >= 5)")
        ax.set_ylabel("precision")
        ax.set_xlim(0.3, 1.0)
        ax.set_ylim(0.5, 1.005)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out / "pr_star_detector.png", dpi=120)
        print(f"PR plot: {args.out / 'pr_star_detector.png'}")
    if args.real:
        _real_frames(args.out)


if __name__ == "__main__":
    main()
