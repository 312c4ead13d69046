"""The stress suite: skysift's star finders and calibration on data skysift did not make.

    python benchmarks/stress/run.py [--quick] [--out stress-out] [--parts abcd]

(a) star finders on the independent photutils renderer (:mod:`render`):
    precision / recall of SNR >= 5 stars per region class and finder, median
    and worst over frames, detections in the caption, and the oracle matched
    filter (true PSF, background and noise) beside them;
(b) ``skysift.calibrate`` on the all-sky camera grid (:mod:`allsky`), with no
    mode and with ``mode="allsky"``: solved or the error, correct
    identifications, RMS against the truth, photometric scatter;
(c) calibrate and find_stars on the real still frames of ../shared/data/real;
(d) a 7380x4928 fisheye DSLR-like frame: time, peak memory (each finder in
    its own process, ``ru_maxrss``), stars found, found outside the lens circle.

Tables are printed and written as ECSV under ``--out`` (one per part).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import allsky as allsky_mod  # noqa: E402
import evaluate  # noqa: E402
import render  # noqa: E402

REAL = HERE.parents[1].parent / "shared" / "data" / "real"
METHODS = ("classical", "unet", "hybrid", "matched")
LA_PALMA = (28.7619, -17.8908, 2200.0)
UMD = (39.0021, -76.956, 50.0)

#: Real still frames: (relative path, site or None, time or None (from the header), exposure).
REAL_FRAMES = (
    ("magic_allsky/20180817_0055.fits", LA_PALMA, None),
    ("magic_allsky/20180817_0341.fits", LA_PALMA, None),
    ("cta_allsky/cloudy.fits.gz", LA_PALMA, "2015-12-20T04:07:10"),
    ("iceact_allsky/cloudy.fits", (-89.99, 0.0, 2835.0), None),
    ("umd_allsky/Meteor-20191028.png", UMD, "2019-10-28T07:01:26"),
    ("umd_allsky/Bug-20191028.png", UMD, None),
    ("umd_allsky/Intruder-20200414.png", UMD, None),
    ("tetra3_startracker/2019-07-29T204726_Alt40_Azi-135_Try1.tiff", None, "2019-07-29T20:47:26"),
    ("tetra3_startracker/2019-07-29T204726_Alt40_Azi-45_Try1.tiff", None, "2019-07-29T20:47:26"),
    ("tetra3_startracker/2019-07-29T204726_Alt40_Azi45_Try1.tiff", None, "2019-07-29T20:47:26"),
    ("tetra3_startracker/2019-07-29T204726_Alt60_Azi-45_Try1.tiff", None, "2019-07-29T20:47:26"),
    ("tetra3_startracker/2019-07-29T204726_Alt60_Azi135_Try1.tiff", None, "2019-07-29T20:47:26"),
    ("astride_streak/long.fits", (-32.3806, 20.8111, 1798.0), None),
)
QUICK_REAL = (0, 7)


def _print(title: str, t: Table, fmt: str = "%.3f") -> None:
    t = t.copy()
    for c in t.colnames:
        if t[c].dtype.kind == "f":
            t[c].info.format = fmt
    print(f"\n== {title} ==")
    t.pprint_all()


def _write(t: Table, out: Path, name: str) -> None:
    from skysift.outputs.files import write_table

    write_table(t, out / f"{name}.ecsv")


def _field_params(i: int) -> dict:
    """The schedule of the rendered star fields: every stress factor, varied across frames."""
    rng = np.random.default_rng(1000 + i)
    return {
        "gradient": (1.5, 3.0, 5.0, 2.5, 4.0, 5.0)[i % 6],
        "glow": (20.0, 10.0, 15.0, 5.0, 20.0, 12.0)[i % 6],
        "cloud": 0.0 if i % 2 == 0 else 0.4,
        "vignetting": float(rng.uniform(0.25, 0.5)),
        "psf": "moffat" if i % 4 == 1 else "gaussian",
        "fwhm": float(rng.uniform(2.0, 3.5)),
        "saturation": 15000.0 if i % 3 == 2 else None,
        "quantize_8bit": i % 4 == 3,
        "n_stars": 2500,
        "rng": 2000 + i,
    }


def _frame(data: np.ndarray, meta: dict):
    import skysift

    m = {}
    if meta.get("saturation") is not None:
        m["saturation"] = float(meta["saturation"])
    if meta.get("quantize_8bit"):
        m["dtype"] = "uint8"
    return skysift.Frame(data=data, meta=m)


def _find(frame, method: str):
    import skysift

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stars, _ = skysift.find_stars(frame, method=method)
    return stars


#: Detection threshold (sigma) passed to ``skysift.find_stars`` in part (a); ``--threshold``.
THRESHOLD = 3.0


def _find_with_sky(frame, method: str):
    import skysift

    kw = {}
    if THRESHOLD != 3.0:
        import inspect

        # The keyword was renamed threshold -> threshold_sigma during the layout refactor.
        params = inspect.signature(skysift.find_stars).parameters
        kw["threshold_sigma" if "threshold_sigma" in params else "threshold"] = THRESHOLD
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stars, sky = skysift.find_stars(frame, method=method, **kw)
    return stars, (sky.mask if sky is not None else None)


def part_a(n_frames: int, methods, out: Path) -> Table:
    rows = []
    for i in tqdm(range(n_frames), desc="(a) star fields"):
        p = _field_params(i)
        im = render.render_star_field(**p)
        frame = _frame(im.data, im.meta)
        finders = {"oracle": lambda im=im: (render.oracle_matched_filter(im), None)}
        for m in methods:
            finders[m] = lambda m=m, frame=frame: _find_with_sky(frame, m)
        for name, fn in finders.items():
            t0 = time.perf_counter()
            try:
                det, mask = fn()
                err = ""
            except Exception as e:  # noqa: BLE001 - a benchmark reports every failure
                det, mask, err = Table({"x": [], "y": []}), None, f"{type(e).__name__}: {e}"
            dt = time.perf_counter() - t0
            xy = np.c_[np.asarray(det["x"], float), np.asarray(det["y"], float)]
            for r in evaluate.score_finder(xy, im.truth, im.regions, render.REGIONS, mask):
                rows.append({"frame": i, "finder": name, "seconds": dt, "error": err[:120], **r})
    t = Table(rows=rows)
    _write(t, out, "a_star_fields")
    s = evaluate.summarise(
        t[np.isin(t["region"], (*evaluate.SCORED, "all"))],
        ["finder", "region"],
        ["precision", "recall", "n_true", "n_true_masked"],
        {"precision": "min", "recall": "min", "n_true": "min", "n_true_masked": "max"},
    )
    _print("(a) SNR >= 5 stars per region: median and worst over frames; pooled", s)
    _write(s, out, "a_star_fields_summary")
    b = evaluate.summarise(
        t[np.char.startswith(np.asarray(t["region"]).astype(str), "snr")],
        ["finder", "region"],
        ["recall"],
        {"recall": "min"},
    )
    _print("(a) recall per SNR bin (all scored regions)", b)
    _write(b, out, "a_star_fields_snr_bins")
    c = evaluate.summarise(
        t[np.isin(t["region"], ("caption", "outside"))],
        ["finder", "region"],
        ["n_det", "n_fp", "seconds"],
        {"n_det": "max", "n_fp": "max", "seconds": "max"},
    )
    _print(
        "(a) detections in the caption box (n_fp: not a star) / outside the sky, per frame; time per frame",
        c,
    )
    _write(c, out, "a_star_fields_caption")
    return t


def _calib_one(fr, mode: str | None) -> dict:
    from astropy.time import Time

    import skysift

    frame = skysift.Frame(data=fr.data)
    cam = fr.camera
    kw = {"site": skysift.Site(*cam.site), "time": Time(cam.time)}
    if mode is not None:
        kw["mode"] = mode
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = skysift.calibrate(frame, **kw)
        row = {"solved": True, "error": "", **evaluate.score_calibration(res, fr)}
    except Exception as e:  # noqa: BLE001 - a benchmark reports every failure
        row = {
            "solved": False,
            "error": f"{type(e).__name__}: {e}"[:160],
            "model_type": "",
            "n_matched": 0,
        }
        for k in (
            "frac_correct",
            "rms_truth_px",
            "median_truth_px",
            "rms_truth_alt20_px",
            "pipeline_rms_px",
        ):
            row[k] = np.nan
        for k in ("p95_truth_px", "max_truth_px"):
            row[k] = np.nan
        for k in ("phot_scatter_mag", "phot_std_mag", "zp_rms_mag"):
            row[k] = np.nan
    row["seconds"] = time.perf_counter() - t0
    return row


def part_b(n_cameras: int | None, out: Path) -> Table:
    cams = allsky_mod.camera_grid()
    if n_cameras is not None:
        cams = cams[:: max(1, len(cams) // n_cameras)][:n_cameras]
    rows = []
    for j, cam in enumerate(tqdm(cams, desc="(b) all-sky grid")):
        fr = allsky_mod.render_allsky(cam, rng=3000 + j)
        for mode in (None, "allsky"):
            r = _calib_one(fr, mode)
            rows.append(
                {
                    "camera": cam.name,
                    "projection": cam.projection,
                    "parity": cam.parity,
                    "k3": cam.k3,
                    "ring": cam.ring,
                    "mode": mode or "(none)",
                    "n_true_inside": int(fr.truth["inside"].sum()),
                    **r,
                }
            )
    t = Table(rows=rows)
    _write(t, out, "b_allsky_grid")
    cols = ["camera", "mode", "solved", "n_matched", "frac_correct", "rms_truth_px"]
    cols += ["median_truth_px", "rms_truth_alt20_px", "phot_scatter_mag", "seconds", "error"]
    _print("(b) all-sky grid, per camera", t[cols])
    t2 = t.copy()
    t2["solved_f"] = np.asarray(t2["solved"], float)
    s = evaluate.summarise(
        t2,
        ["mode"],
        [
            "solved_f",
            "frac_correct",
            "rms_truth_px",
            "rms_truth_alt20_px",
            "phot_scatter_mag",
            "seconds",
        ],
        {
            "solved_f": "min",
            "frac_correct": "min",
            "rms_truth_px": "max",
            "rms_truth_alt20_px": "max",
            "phot_scatter_mag": "max",
            "seconds": "max",
        },
    )
    _print("(b) all-sky grid: median and worst over cameras (solved cameras for the figures)", s)
    _write(s, out, "b_allsky_summary")
    p = evaluate.summarise(
        t2,
        ["mode", "projection"],
        ["solved_f", "frac_correct", "rms_truth_px"],
        {"solved_f": "min", "frac_correct": "min", "rms_truth_px": "max"},
    )
    _print("(b) all-sky grid per projection", p)
    _write(p, out, "b_allsky_by_projection")
    return t


def part_c(indices, methods, out: Path) -> Table:
    import skysift

    rows = []
    frames = [REAL_FRAMES[i] for i in indices]
    for rel, site, t_iso in tqdm(frames, desc="(c) real frames"):
        path = REAL / rel
        row: dict = {"file": rel}
        if not path.exists():
            row["error"] = "missing"
            rows.append(row)
            continue
        kw = {}
        if site is not None:
            kw["site"] = skysift.Site(*site)
        if t_iso is not None:
            kw["time"] = t_iso
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = skysift.read_frame(path)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = skysift.calibrate(frame, **kw)
            row.update(
                solver=res.model_type,
                n_matched=res.n_matched,
                rms_px=res.astrometric_rms_px,
                zp_rms_mag=float(res.zero_point.rms_mag) if res.zero_point is not None else np.nan,
                error="",
            )
        except Exception as e:  # noqa: BLE001 - a benchmark reports every failure
            row.update(solver="", n_matched=0, rms_px=np.nan, zp_rms_mag=np.nan)
            row["error"] = f"{type(e).__name__}: {e}"[:160]
        row["calib_s"] = time.perf_counter() - t0
        for m in methods:
            t0 = time.perf_counter()
            try:
                row[f"n_{m}"] = len(_find(frame, m))
            except Exception:  # noqa: BLE001
                row[f"n_{m}"] = -1
            row[f"{m}_s"] = time.perf_counter() - t0
        rows.append(row)
    t = Table(rows=rows)
    _write(t, out, "c_real_frames")
    _print("(c) real frames: calibrate (no mode) and stars found per finder", t)
    return t


def _big_child(method: str, npy: str, result: str) -> None:
    """Run one finder on the big frame; write its detections and the process's peak memory."""
    import torch

    torch.set_num_threads(2)
    data = np.load(npy)
    frame = _frame(data.astype(np.float32), {"quantize_8bit": True})
    del data
    t0 = time.perf_counter()
    stars = _find(frame, method)
    dt = time.perf_counter() - t0
    t = Table({"x": np.asarray(stars["x"], float), "y": np.asarray(stars["y"], float)})
    t["flux"] = np.asarray(stars["flux"], float) if "flux" in stars.colnames else np.nan
    t.meta["seconds"] = dt
    t.meta["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t.write(result, format="ascii.ecsv", overwrite=True)


def part_d(methods, out: Path, timeout: float) -> Table:
    im = render.render_dslr_fisheye(rng=7)
    npy = out / "d_big_frame.npy"
    np.save(npy, im.data.astype(np.uint8))
    x0, y0, rad = im.meta["circle"]
    rows = []
    for m in tqdm(methods, desc="(d) 7380x4928 frame"):
        res = out / f"d_big_{m}.ecsv"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--big-child", m, str(npy), str(res)]
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
            err = "" if p.returncode == 0 else p.stderr.strip().splitlines()[-1][:160]
        except subprocess.TimeoutExpired:
            err = f"timed out after {timeout:.0f} s"
        wall = time.perf_counter() - t0
        row = {"finder": m, "wall_s": wall, "error": err}
        if not err and res.exists():
            det = Table.read(res, format="ascii.ecsv")
            xy = np.c_[np.asarray(det["x"]), np.asarray(det["y"])]
            outside = np.hypot(xy[:, 0] - x0, xy[:, 1] - y0) >= rad
            sc = {
                r["region"]: r
                for r in evaluate.score_finder(xy, im.truth, im.regions, render.REGIONS)
            }
            row.update(
                find_s=float(det.meta["seconds"]),
                peak_mem_mb=float(det.meta["maxrss_mb"]),
                n_found=len(det),
                n_outside_circle=int(outside.sum()),
                n_negative_flux=int((np.asarray(det["flux"], float) < 0).sum()),
                recall_all=sc["all"]["recall"],
                precision_all=sc["all"]["precision"],
            )
        rows.append(row)
    npy.unlink(missing_ok=True)
    t = Table(rows=rows)
    t.meta["n_true_snr5"] = int(((im.truth["snr"] >= 5) & ~im.truth["saturated"]).sum())
    _write(t, out, "d_big_frame")
    _print(
        f"(d) 7380x4928 fisheye frame ({len(im.truth)} stars, {t.meta['n_true_snr5']} at SNR >= 5)",
        t,
    )
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small run (<= 3 min)")
    ap.add_argument("--out", type=Path, default=Path("stress-out"), help="ECSV folder")
    ap.add_argument("--parts", default="abcd", help="which parts to run (default abcd)")
    ap.add_argument("--methods", default=",".join(METHODS), help="star finders, comma-separated")
    ap.add_argument("--frames", type=int, default=None, help="star fields in (a)")
    ap.add_argument(
        "--cameras", type=int, default=None, help="grid cameras in (b) (default all 24)"
    )
    ap.add_argument(
        "--threshold", type=float, default=3.0, help="find_stars threshold in (a) (default 3)"
    )
    ap.add_argument("--big-timeout", type=float, default=300.0, help="seconds per finder in (d)")
    ap.add_argument(
        "--big-child", nargs=3, metavar=("METHOD", "NPY", "OUT"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.big_child:
        _big_child(*args.big_child)
        return 0
    import torch

    global THRESHOLD
    THRESHOLD = args.threshold
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    t0 = time.perf_counter()
    summary: dict = {"quick": args.quick, "methods": methods}
    if "a" in args.parts:
        part_a(args.frames or (2 if args.quick else 12), methods, args.out)
    if "b" in args.parts:
        part_b(args.cameras or (3 if args.quick else None), args.out)
    if "c" in args.parts:
        idx = QUICK_REAL if args.quick else range(len(REAL_FRAMES))
        part_c(idx, ["classical"] if args.quick else methods, args.out)
    if "d" in args.parts:
        part_d(["classical"] if args.quick else methods, args.out, args.big_timeout)
    summary["seconds"] = time.perf_counter() - t0
    (args.out / "run.json").write_text(json.dumps(summary, indent=1))
    print(f"\nstress run done in {summary['seconds']:.0f} s; tables in {args.out}/")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
