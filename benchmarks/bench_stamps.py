"""Stamp classifier (SSO / cosmic ray / galaxy / star): full evaluation, speed and ZTF alerts.

Prints and writes (``--out``, default ``./skysift-out/bench_stamps``):

- held-out simulated stamps (:data:`skysift.stamps.HELDOUT` settings, seed
  12345, ``--n-per-class`` per class) with 3 dithers and with 1 exposure:
  4-class and 2-class accuracy, AUC, confusion matrix, completeness vs rate
  and magnitude, purity at completeness ≥ 0.8 for SSO abundances 1e-4,
  1e-3, 1e-2, for the CNN and the classical baseline
  (``stamps_eval_3dithers.json``, ``stamps_eval_1dither.json`` and PNG figures);
- the simulator's own Euclid-paper stamps
  (:func:`skysift.stamps.paper_stamps`, ``--n-paper`` per class);
- speed: seconds to classify 10⁴ stamps of 3 dithers on ``--threads`` threads
  (target ≤ 10 s on 2 cores);
- real ZTF alerts (``../shared/data/real/ztf_alerts/alerts.parquet``,
  Apache-2.0, needs pyarrow): science stamps centre-cropped to 32×32 and
  classified on the 1-channel path; the share of PS1 star-like alerts
  (``sgscore1 > 0.5``) classified as star and the class of every known SSO
  (``ssnamenr``). Skipped with a message if the file or pyarrow is missing.

Run from the repository root::

    python benchmarks/bench_stamps.py --threads 2
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

ZTF = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "real"
    / "ztf_alerts"
    / "alerts.parquet"
)


def _headline(name: str, res: dict) -> None:
    for m in ("cnn", "baseline"):
        if m not in res:
            continue
        r = res[m]
        ab = {k: round(v["purity"], 3) for k, v in r["abundance"].items()}
        print(
            f"{name} {m:8s}: acc4 {r['accuracy_4class']:.4f} acc2 {r['accuracy_2class']:.4f} "
            f"AUC {r['auc_sso']:.4f} SSO completeness {r['sso_completeness']:.3f} "
            f'(5-10"/h: {r.get("completeness_5_10", float("nan")):.3f}) purity@C>=0.8 {ab}'
        )


def ztf_alerts(path: Path = ZTF) -> dict | None:
    """Classify the science stamps of the ZTF alerts (1-channel path)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        print("ZTF alerts: skipped (pyarrow is not installed)")
        return None
    if not path.is_file():
        print(f"ZTF alerts: skipped ({path} is missing)")
        return None
    from astropy.io import fits

    from skysift.stamps import classify_stamps

    t = pq.read_table(path, columns=["objectId", "candidate", "cutoutScience"]).to_pylist()
    stamps, meta = [], []
    for r in t:
        raw = r["cutoutScience"]["stampData"]
        with warnings.catch_warnings():  # ZTF cutouts have a non-standard SIMPLE card
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            with fits.open(io.BytesIO(gzip.decompress(raw))) as h:
                img = np.asarray(h[0].data, np.float32)
        if img.shape != (63, 63):
            continue
        stamps.append(img)
        c = r["candidate"]
        meta.append((r["objectId"], c.get("sgscore1"), c.get("ssnamenr"), c.get("rb")))
    tab = classify_stamps(np.array(stamps), nan="fill")
    sg = np.array([m[1] if m[1] is not None else np.nan for m in meta], float)
    cls = np.asarray(tab["class"])
    star_like = sg > 0.5
    out = {
        "n_alerts": len(t),
        "n_classified": len(tab),
        "n_star_like": int(star_like.sum()),
        "share_star_like_as_star": float(np.mean(cls[star_like] == "star"))
        if star_like.any()
        else None,
        "star_like_classes": {k: int(np.sum(cls[star_like] == k)) for k in np.unique(cls)},
        "all_classes": {k: int(np.sum(cls == k)) for k in np.unique(cls)},
        "known_sso": [
            {
                "objectId": m[0],
                "ssnamenr": m[2],
                "class": str(cls[i]),
                "p_sso": float(tab["p_sso"][i]),
            }
            for i, m in enumerate(meta)
            if m[2] not in (None, "", "null")
        ],
    }
    rb = np.array([m[3] if m[3] is not None else np.nan for m in meta], float)
    bogus = rb < 0.5
    out["n_bogus_rb_lt_0.5"] = int(bogus.sum())
    out["bogus_as_sso"] = int(np.sum(cls[bogus] == "sso"))
    print(f"ZTF alerts: {json.dumps(out)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--n-per-class", type=int, default=1000, help="held-out stamps per class")
    parser.add_argument("--n-paper", type=int, default=250, help="paper-simulator stamps per class")
    parser.add_argument("--n-speed", type=int, default=10_000, help="stamps for the speed test")
    parser.add_argument("--out", type=Path, default=Path("skysift-out/bench_stamps"))
    parser.add_argument("--skip-eval", action="store_true", help="only speed and ZTF")
    parser.add_argument("--n-negatives", type=int, default=30000, help="negatives for purity")
    parser.add_argument("--only-negatives", action="store_true", help="only the purity check")
    args = parser.parse_args()

    import torch

    from skysift.outputs.files import write_json
    from skysift.stamps import (
        classify_stamps,
        evaluate_stamps,
        load_stamp_classifier,
        simulate_stamps,
    )
    from skysift.stamps.plots import save_evaluation_figure

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if args.only_negatives:
        from skysift.stamps.evaluate import purity_with_negatives

        t0 = time.perf_counter()
        res = purity_with_negatives(n_negatives=args.n_negatives)
        print(f"purity check ({time.perf_counter() - t0:.0f} s): {json.dumps(res)}")
        write_json(res, args.out / "stamps_purity.json")
        return
    if not args.skip_eval:
        for nd in (3, 1):
            t0 = time.perf_counter()
            res = evaluate_stamps(n_per_class=args.n_per_class, seed=12345, n_dithers=nd)
            print(
                f"evaluated {res['n']} stamps with {nd} dither(s) in {time.perf_counter() - t0:.0f} s"
            )
            _headline(f"held-out {nd}d", res)
            write_json(res, args.out / f"stamps_eval_{nd}dither{'s' if nd > 1 else ''}.json")
            save_evaluation_figure(
                res, args.out / f"stamps_eval_{nd}dither{'s' if nd > 1 else ''}.png"
            )
            results[f"heldout_{nd}"] = res
        res = evaluate_stamps(n_per_class=args.n_paper, seed=54321, source="paper", n_dithers=3)
        _headline("paper-sim 3d", res)
        write_json(res, args.out / "stamps_eval_paper.json")
        results["paper"] = res

    model = load_stamp_classifier()
    x, _, _ = simulate_stamps(500, 999, n_dithers=3)
    big = np.concatenate([x[:, :3]] * (args.n_speed // 500 + 1))[: args.n_speed]
    classify_stamps(big[:256], weights=model)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    classify_stamps(big, weights=model)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"speed: {args.n_speed} stamps (3 dithers) in {dt:.2f} s wall, {cpu:.2f} s CPU "
        f"on {args.threads} threads (load average {os.getloadavg()[0]:.1f})"
    )
    results["speed"] = {
        "n": args.n_speed,
        "seconds": dt,
        "cpu_seconds": cpu,
        "threads": args.threads,
    }
    results["ztf"] = ztf_alerts()
    write_json(
        {k: v for k, v in results.items() if k in ("speed", "ztf")}, args.out / "stamps_bench.json"
    )


if __name__ == "__main__":
    main()
