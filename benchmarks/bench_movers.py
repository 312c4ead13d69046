"""Fast movers: held-out mAP, external scenes, shift-and-stack depth gain, false movers, speed.

Sections (all by default, or pick with flags)::

    python benchmarks/bench_movers.py --map --n-per-mode 150 --n-sky14 100 --n-real-bg 60
    python benchmarks/bench_movers.py --map --weights FILE --map-detectors moe,moe_tta
    python benchmarks/bench_movers.py --external --n-external 30
    python benchmarks/bench_movers.py --depth --trials 8
    python benchmarks/bench_movers.py --false --out /tmp/movers_overlays
    python benchmarks/bench_movers.py --speed --speed-velocities 40

- ``--map``: :func:`skysift.movers.evaluate.evaluate_movers` on held-out
  simulations (per mode, sky bin, rate bin, trail length and SNR bin, and at
  14 mag/arcsec²; ``--n-real-bg`` more per mode composited on the real
  tetra3 frame held out from training, :data:`HELD_OUT_FRAME`) for the MoE,
  each expert and the classical baseline.
- ``--external``: scenes skysift's simulator did not make: the sky, gradient,
  glow, cloud and noise of the stress suite's photutils/astropy renderer
  (``benchmarks/stress/render.py``) with stars and one mover rendered as
  photutils PSFs (Gaussian or Moffat) summed along their trails, per mode, in
  :data:`EXTERNAL_CONDITIONS`; mAP@0.5 of the MoE, each expert and the
  classical baseline, median and worst over the conditions per mode.
- ``--depth``: 20 registered frames built on a real star-tracker background
  (a tetra3 frame of ../shared/data/real, each frame given independent
  Gaussian noise equal to the frame's own robust noise), a Gaussian PSF mover
  injected at Δm below the single-frame 5σ limit (matched-filter SNR 5);
  recovery = a trajectory within 1 px of the truth at frame 0, rate within
  5 %, stacked SNR ≥ 5. The 50 % completeness Δm is compared with
  1.25·log10(20) = 1.63 mag.
- ``--false``: detections of the classical detector and of the MoE on the
  static real frames (five tetra3 TIFFs; ASTRiDE long.fits outside its
  streak's box) with overlays written to ``--out``.
- ``--speed``: one 1024x1024 frame (classical and MoE), and shift-and-stack
  of 20 frames of 1024x1024 timed on ``--speed-velocities`` velocities and
  extrapolated to 10⁴.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
#: The real frame held out of the shipped weights' training backgrounds (the other four
#: tetra3 frames were composited into training), used for the real-background evaluation.
HELD_OUT_FRAME = REAL / "tetra3_startracker" / "2019-07-29T204726_Alt60_Azi135_Try1.tiff"


def _robust_sigma(a: np.ndarray) -> float:
    q25, q75 = np.percentile(a[::2, ::2], [25, 75])
    return float(0.7413 * (q75 - q25))


def bench_map(
    n_per_mode: int, n_sky14: int, n_real_bg: int = 0, out: Path | None = None,
    weights: str = "mover_moe", detectors: tuple[str, ...] | None = None,
) -> None:  # fmt: skip
    from skysift.movers.evaluate import DETECTORS, evaluate_movers, evaluation_summary

    bgs = [HELD_OUT_FRAME] if n_real_bg and HELD_OUT_FRAME.is_file() else None
    if n_real_bg and bgs is None:
        print(f"(real-background set skipped: {HELD_OUT_FRAME} missing)")
    t0 = time.time()
    tab = evaluate_movers(
        weights, n_per_mode=n_per_mode, n_sky14=n_sky14, backgrounds=bgs,
        n_real_bg=n_real_bg, detectors=detectors or DETECTORS,
    )  # fmt: skip
    print(f"\n== held-out mAP@0.5 ({n_per_mode}/mode, {n_sky14}/mode at 14 mag sky, "
          f"{n_real_bg if bgs else 0}/mode on the held-out real frame), "
          f"{time.time() - t0:.0f} s")  # fmt: skip
    evaluation_summary(tab).pprint(max_lines=-1, max_width=-1)
    for v in ("precision", "recall"):
        print(f"\n{v} at score 0.5 (classical 0.3):")
        summ = evaluation_summary(tab, v)
        summ[np.isin(summ["group"], ["all", "mode", "sky14", "real_bg"])].pprint(
            max_lines=-1, max_width=-1
        )
    if out is not None:
        from skysift.outputs.files import write_table

        out.mkdir(parents=True, exist_ok=True)
        write_table(tab, out / "movers_evaluation.ecsv")


def _gauss(shape, x, y, flux, fwhm):
    s = fwhm / 2.3548
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return flux * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s)) / (2 * np.pi * s * s)


def _tetra3_crop(size: int) -> np.ndarray | None:
    files = sorted((REAL / "tetra3_startracker").glob("*.tiff"))
    if not files:
        return None
    import skysift

    data = skysift.read_frame(str(files[0])).data.astype(np.float32)
    h, w = data.shape
    return data[(h - size) // 2 : (h + size) // 2, (w - size) // 2 : (w + size) // 2].copy()


def bench_depth(trials: int, size: int = 160, n_frames: int = 20, fwhm: float = 2.5) -> None:
    from skysift.movers.stack import shift_and_stack

    bg = _tetra3_crop(size)
    if bg is None:
        print("\n== depth: skipped (../shared/data/real/tetra3_startracker missing)")
        return
    sigma = _robust_sigma(bg)
    # difference-image noise per frame: sigma * sqrt(1 + ~1.57/N) (median template); the
    # single-frame 5-sigma limit is the flux with matched-filter SNR 5 in one difference image
    s = fwhm / 2.3548
    sum_p2 = 1.0 / (4 * np.pi * s * s)
    sig_d = sigma * np.sqrt(1 + 1.5708 / n_frames)
    f5 = 5 * sig_d / np.sqrt(sum_p2)
    expect = 1.25 * np.log10(n_frames)
    print(
        f"\n== shift-and-stack depth on a real tetra3 background ({size}x{size}, {n_frames} frames)"
    )
    print(
        f"frame noise {sigma:.2f} ADU; single-frame 5σ flux {f5:.0f} ADU; expected gain {expect:.2f} mag"
    )
    rng = np.random.default_rng(42)
    t_frames = np.arange(n_frames, dtype=float)
    rows = []
    for dm in (1.0, 1.25, 1.5, 1.63, 1.75, 2.0, 2.25):
        flux = f5 * 10 ** (-0.4 * dm)
        ok = 0
        rate_err = []
        for _ in range(trials):
            rate = rng.uniform(0.6, 1.4)
            ang = rng.uniform(0, 2 * np.pi)
            vx, vy = rate * np.cos(ang), rate * np.sin(ang)
            x0 = (
                rng.uniform(20, size - 20 - vx * (n_frames - 1))
                if vx > 0
                else rng.uniform(20 - vx * (n_frames - 1), size - 20)
            )
            y0 = (
                rng.uniform(20, size - 20 - vy * (n_frames - 1))
                if vy > 0
                else rng.uniform(20 - vy * (n_frames - 1), size - 20)
            )
            cube = np.empty((n_frames, size, size), np.float32)
            for k in range(n_frames):
                cube[k] = (
                    bg
                    + rng.normal(0, sigma, bg.shape)
                    + _gauss(bg.shape, x0 + vx * k, y0 + vy * k, flux, fwhm)
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = shift_and_stack(
                    cube, times=t_frames, rate_range=(0.5, 1.5), n_rates=11, n_angles=40,
                    psf_fwhm=fwhm, threshold=5.0, max_candidates=30, warn=False,
                )  # fmt: skip
            if len(res):
                d = np.hypot(res["x0"] - x0, res["y0"] - y0)
                j = int(np.argmin(d))
                rerr = abs(res["rate"][j] - rate) / rate
                if d[j] < 1.0 and rerr < 0.05:
                    ok += 1
                    rate_err.append(rerr)
        rows.append((dm, ok / trials, np.median(rate_err) if rate_err else np.nan))
        print(f"Δm {dm:4.2f} below single-frame limit: recovered {ok}/{trials}"
              f" (median rate error {rows[-1][2] * 100:.1f} %)")  # fmt: skip
    dms = np.array([r[0] for r in rows])
    comp = np.array([r[1] for r in rows])
    # 50 % completeness by linear interpolation of the completeness curve
    below = np.nonzero(comp < 0.5)[0]
    if below.size and below[0] > 0:
        i = below[0]
        m50 = dms[i - 1] + (0.5 - comp[i - 1]) * (dms[i] - dms[i - 1]) / (comp[i] - comp[i - 1])
        print(f"50 % completeness {m50:.2f} mag below the single-frame limit; "
              f"expected {expect:.2f}; difference {m50 - expect:+.2f} mag (target |Δ| ≤ 0.3)")  # fmt: skip
    else:
        print("50 % completeness outside the tested range")


def _static_frames() -> list[tuple[str, np.ndarray, tuple[float, float, float, float] | None]]:
    import skysift

    out = []
    for f in sorted((REAL / "tetra3_startracker").glob("*.tiff")):
        out.append((f.name, skysift.read_frame(str(f)).data, None))
    p = REAL / "astride_streak" / "long.fits"
    if p.is_file():
        # streak box of the original C pipeline: x 20..342, y 309..338 (FITS 1-based), padded
        out.append((p.name, skysift.read_frame(str(p)).data, (0.0, 290.0, 362.0, 360.0)))
    return out


def bench_false(
    out_dir: Path | None, weights: str = "mover_moe", moe_threshold: float = 0.5
) -> None:
    from skysift.movers.pipeline import run_movers

    frames = _static_frames()
    if not frames:
        print("\n== false movers: skipped (../shared/data/real missing)")
        return
    print("\n== false movers on static real frames (run_movers per file, sidereal, FWHM 2.5 px)")
    for name, img, streak in frames:
        counts = {}
        for method in ("classical", "moe"):
            sub = None if out_dir is None else out_dir / f"{Path(name).stem}_{method}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.time()
                det = run_movers(
                    img,
                    sub,
                    mode="sidereal",
                    psf_fwhm=2.5,
                    method=method,
                    weights=weights,
                    moe_threshold=moe_threshold,
                ).detections
                dt = time.time() - t0
            if streak is not None and len(det):
                x1, y1, x2, y2 = streak
                inside = (det["x"] >= x1) & (det["x"] <= x2) & (det["y"] >= y1) & (det["y"] <= y2)
                counts[method] = (int((~inside).sum()), len(det), dt)
            else:
                counts[method] = (len(det), len(det), dt)
        note = " outside the streak box" if streak else ""
        print(f"{name}: {img.shape[1]}x{img.shape[0]}; "
              + "; ".join(f"{m} {c[0]} false{note} [{c[1]} total, {c[2]:.2f} s]"
                          for m, c in counts.items()))  # fmt: skip


def bench_speed(n_vel: int) -> None:
    import torch

    from skysift.movers.baseline import detect_single
    from skysift.movers.pipeline import _moe_detect
    from skysift.movers.stack import _stack_all, difference_images, psi_phi
    from skysift.movers.weights_io import load_moe

    print(f"\n== speed ({torch.get_num_threads()} torch threads)")
    rng = np.random.default_rng(1)
    img = rng.normal(100, 5, (1024, 1024)).astype(np.float32)
    for _ in range(300):
        x, y = rng.uniform(5, 1019, 2)
        img[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3] += rng.uniform(50, 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.time()
        detect_single(img, mode="sidereal", warn=False)
        t1 = time.time()
        model = load_moe()
        t2 = time.time()
        _moe_detect(model, img, "sidereal", 2.5, None, 0, 0.5)
        t3 = time.time()
    print(f"one 1024x1024 frame: classical {t1 - t0:.2f} s; MoE {t3 - t2:.2f} s (target ≤ 1 s)")
    cube = rng.normal(0, 5, (20, 1024, 1024)).astype(np.float32)
    t0 = time.time()
    d, v = difference_images(cube)
    psi, phi = psi_phi(d, v, 2.5)
    t1 = time.time()
    vel = rng.uniform(-2, 2, (n_vel, 2))
    _stack_all(psi, phi, np.arange(20.0), vel)
    t2 = time.time()
    per = (t2 - t1) / n_vel
    print(f"shift-and-stack 20x1024x1024: preparation (difference, psi, phi) {t1 - t0:.1f} s; "
          f"{per * 1000:.1f} ms per velocity over all 1024² start pixels -> 10^4 velocities "
          f"≈ {t1 - t0 + per * 1e4:.0f} s (target ≤ 60 s); velocities in 60 s: "
          f"{max(0, (60 - (t1 - t0)) / per):.0f}")  # fmt: skip


# ---------------------------------------------------------------- external (not our simulator)

#: Render conditions of the external scenes (benchmarks/stress/render.py keywords):
#: PSF shape, sky level (ADU), read noise, light-pollution gradient and glow (in units
#: of the sky; a 96 px scene is a small part of a frame, so they are milder than the
#: stress suite's full-frame values), thin cloud; vignetting 5 % at the corners.
EXTERNAL_CONDITIONS: dict[str, dict] = {
    "gauss_dark": {"psf": "gaussian", "sky": 100.0, "read_noise": 5.0},
    "moffat_dark": {"psf": "moffat", "sky": 100.0, "read_noise": 5.0},
    "gauss_gradient": {"psf": "gaussian", "sky": 300.0, "read_noise": 6.0, "gradient": 0.3},
    "moffat_glow": {"psf": "moffat", "sky": 300.0, "read_noise": 6.0, "glow": 1.0},
    "gauss_cloud": {"psf": "gaussian", "sky": 300.0, "read_noise": 8.0, "cloud": 0.4},
    "moffat_bright_sky": {"psf": "moffat", "sky": 3000.0, "read_noise": 10.0, "gradient": 0.1},
}


def _trail_model_image(shape, model, ksize, segments, fluxes):
    """Sum of PSF models along straight segments (a line-convolved PSF), via photutils.

    ``segments``: rows ``(x1, y1, x2, y2)`` (a point when the ends coincide); each
    segment is sampled every 0.25 px and its flux shared equally by the samples.
    """
    from astropy.table import Table
    from photutils.datasets import make_model_image

    xs, ys, fs = [], [], []
    for (x1, y1, x2, y2), f in zip(segments, fluxes, strict=True):
        n = max(int(np.ceil(4 * np.hypot(x2 - x1, y2 - y1))), 1) + 1
        t = np.linspace(0.0, 1.0, n)
        xs.append(x1 + t * (x2 - x1))
        ys.append(y1 + t * (y2 - y1))
        fs.append(np.full(n, f / n))
    if not xs:
        return np.zeros(shape)
    x, y, f = np.concatenate(xs), np.concatenate(ys), np.concatenate(fs)
    # samples whose model box only touches the frame are dropped (photutils'
    # overlap_slices fails on a box ending exactly at the edge; they add nothing)
    half = ksize // 2
    k = (x > 1 - half) & (x < shape[1] - 2 + half) & (y > 1 - half) & (y < shape[0] - 2 + half)
    if not k.any():
        return np.zeros(shape)
    tab = Table({"x_0": x[k], "y_0": y[k], "flux": f[k]})
    return np.asarray(make_model_image(shape, model, tab, model_shape=(ksize, ksize)), float)


def render_mover_scene(mode: str, condition: dict, rng: np.random.Generator, size: int = 96):
    """One external scene: stars + one trailed mover rendered with photutils, on a stress sky.

    The sky, its gradient/glow/cloud, read and Poisson noise come from
    ``render.render_star_field`` (no stars); stars and the mover are sums of
    photutils PSF models along their trails (points in the mode where they do
    not move), with their own Poisson noise. Returns (image, prior, box, meta).
    """
    from render import psf_kernel, psf_model, render_star_field

    from skysift.simulation.movers import motion_prior

    fwhm = float(rng.uniform(1.3, 3.6))
    sky = render_star_field(
        (size, size), n_stars=0, fwhm=fwhm, psf=condition["psf"], sky=condition["sky"],
        read_noise=condition["read_noise"], gradient=condition.get("gradient", 0.0),
        glow=condition.get("glow", 0.0), glow_scale=40.0, cloud=condition.get("cloud", 0.0),
        vignetting=0.05,
        caption=False, rng=rng,
    )  # fmt: skip
    model = psf_model(condition["psf"], fwhm)
    ksize = 2 * int(np.ceil(4 * fwhm)) + 1
    norm = float(np.sqrt((psf_kernel(model, ksize) ** 2).sum()))
    sigma = float(np.sqrt(condition["read_noise"] ** 2 + condition["sky"]))
    # the mover's motion on the sky over the exposure and the telescope's tracking
    length = float(rng.uniform(4.0, 20.0))
    ang = rng.uniform(0, 2 * np.pi)
    rate = np.array([length * np.cos(ang), length * np.sin(ang)])
    if mode == "sidereal":
        track = np.zeros(2)
    elif mode == "tracking":
        track = rate.copy()
    else:  # staring: the tracking is neither the stars' nor the mover's
        f, rot = rng.uniform(0.3, 0.7), np.radians(rng.uniform(30, 70)) * rng.choice([-1, 1])
        c, s = np.cos(rot), np.sin(rot)
        track = f * np.array([c * rate[0] - s * rate[1], s * rate[0] + c * rate[1]])
    star_v, mover_v = -track, rate - track
    # stars: power-law SNR (N(>s) ~ s^-0.7, SNR 3-3000), spread over the area their trails cross
    n_stars = int(rng.integers(5, 41))
    u = rng.uniform(0, 1, n_stars)
    a, b = 3.0**-0.7, 3000.0**-0.7
    snr_star = (a - u * (a - b)) ** (-1 / 0.7)
    cx = rng.uniform(-0.5, size - 0.5, n_stars) + star_v[0] * rng.uniform(-0.5, 0.5, n_stars)
    cy = rng.uniform(-0.5, size - 0.5, n_stars) + star_v[1] * rng.uniform(-0.5, 0.5, n_stars)
    segs = [(x - star_v[0] / 2, y - star_v[1] / 2, x + star_v[0] / 2, y + star_v[1] / 2)
            for x, y in zip(cx, cy, strict=True)]  # fmt: skip
    fluxes = list(snr_star * sigma / norm)
    # the mover: matched-filter SNR log-uniform in 15-300 for its trailed profile
    hx, hy = abs(mover_v[0]) / 2 + 4, abs(mover_v[1]) / 2 + 4
    mx, my = rng.uniform(hx, size - 1 - hx), rng.uniform(hy, size - 1 - hy)
    mseg = (mx - mover_v[0] / 2, my - mover_v[1] / 2, mx + mover_v[0] / 2, my + mover_v[1] / 2)
    unit = _trail_model_image((64, 64), model, ksize,
                              [(32 - mover_v[0] / 2, 32 - mover_v[1] / 2,
                                32 + mover_v[0] / 2, 32 + mover_v[1] / 2)], [1.0])  # fmt: skip
    snr = float(np.exp(rng.uniform(np.log(15.0), np.log(300.0))))
    mflux = snr * sigma / float(np.sqrt((unit**2).sum()))
    src = _trail_model_image((size, size), model, ksize, [*segs, mseg], [*fluxes, mflux])
    image = sky.data + rng.poisson(np.clip(src, 0, None)).astype(np.float32)
    prior = motion_prior(fwhm, (float(star_v[0]), float(star_v[1])), 1.0)
    r = max(fwhm, 2.0)
    box = np.array([[min(mseg[0], mseg[2]) - r, min(mseg[1], mseg[3]) - r,
                     max(mseg[0], mseg[2]) + r, max(mseg[1], mseg[3]) + r]])  # fmt: skip
    meta = {"mode": mode, "fwhm": fwhm, "rate": length, "snr": snr, "sky": condition["sky"],
            "length": float(np.hypot(*mover_v)), "n_stars": n_stars}  # fmt: skip
    return image.astype(np.float32), prior, box, meta


def bench_external(
    n: int, detectors: tuple[str, ...], seed: int = 7, out: Path | None = None,
    weights: str = "mover_moe",
):  # fmt: skip
    """MoE, each expert and the classical baseline on the external scenes, per mode and condition."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "stress"))
    from astropy.table import Table

    from skysift.movers.evaluate import average_precision_boxes, run_detector
    from skysift.movers.model import make_inputs, prior_descriptor
    from skysift.movers.train import MoverSample
    from skysift.movers.weights_io import load_moe

    # several weights (comma-separated) are compared on the same scenes
    names = weights.split(",")
    models = {w: load_moe(w) for w in names}
    rng = np.random.default_rng(seed)
    t0 = time.time()
    sets: dict[tuple[str, str], list] = {}
    for cname, cond in EXTERNAL_CONDITIONS.items():
        for mode in ("sidereal", "tracking", "intersection"):
            ss = []
            for _ in range(n):
                img, prior, box, meta = render_mover_scene(mode, cond, rng)
                ss.append(MoverSample(x=make_inputs(img, prior), prior_vec=prior_descriptor(prior),
                                      boxes=box, image=img, prior=prior, meta=meta))  # fmt: skip
            sets[(cname, mode)] = ss
    t_render = time.time() - t0
    rows = []
    runs = [(d, w) for w in names for d in detectors if d != "classical" or w == names[0]]
    labels = []
    for det, w in runs:
        thr = 0.3 if det == "classical" else 0.5
        label = det if len(names) == 1 or det == "classical" else f"{det}@w{names.index(w)}"
        labels.append(label)
        for (cname, mode), ss in sets.items():
            p = run_detector(det, ss, models[w])
            r = average_precision_boxes(p, [s.boxes for s in ss], threshold=thr)
            rows.append({"condition": cname, "mode": mode, "detector": label, **r})
            snr = np.array([s.meta["snr"] for s in ss])
            for lo, hi in ((15, 40), (40, 300.1)):
                k = np.nonzero((snr >= lo) & (snr < hi))[0]
                if len(k):
                    r = average_precision_boxes([p[i] for i in k], [ss[i].boxes for i in k],
                                                threshold=thr)  # fmt: skip
                    rows.append({"condition": f"{cname} snr{lo}-{hi:g}", "mode": mode,
                                 "detector": label, **r})  # fmt: skip
    tab = Table(rows=rows)
    base = tab[[" snr" not in c for c in tab["condition"]]]
    print(f"\n== external scenes (benchmarks/stress/render.py sky + photutils trails, not "
          f"skysift.simulation): {n} per condition and mode, {len(EXTERNAL_CONDITIONS)} "
          f"conditions; rendering {t_render:.0f} s")  # fmt: skip
    if len(names) > 1:
        print("weights: " + "; ".join(f"w{i} = {w}" for i, w in enumerate(names)))
    print("mAP@0.5 per mode: median / worst over the conditions (worst condition)")
    summ = []
    for mode in ("sidereal", "tracking", "intersection"):
        row = {"mode": mode}
        for det in labels:
            sel = base[(base["mode"] == mode) & (base["detector"] == det)]
            j = int(np.argmin(sel["map50"]))
            row[det] = (f"{np.median(sel['map50']):.3f} / {sel['map50'][j]:.3f} "
                        f"({sel['condition'][j]})")  # fmt: skip
        summ.append(row)
    Table(rows=summ).pprint(max_lines=-1, max_width=-1)
    for c in ("map50", "precision", "recall"):
        tab[c].format = ".3f"
    print("\nper condition and mode (P/R at score 0.5; classical 0.3):")
    tab.pprint(max_lines=-1, max_width=-1)
    if out is not None:
        from skysift.outputs.files import write_table

        out.mkdir(parents=True, exist_ok=True)
        write_table(tab, out / "movers_external.ecsv")
    return tab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", action="store_true")
    ap.add_argument("--depth", action="store_true")
    ap.add_argument("--false", action="store_true")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--external", action="store_true")
    ap.add_argument("--n-external", type=int, default=30, help="scenes per condition and mode")
    ap.add_argument("--external-detectors", default="moe,moe_tta,yolox,centernet,classical")
    ap.add_argument("--n-real-bg", type=int, default=60)
    ap.add_argument(
        "--map-detectors", default=None, help="comma-separated subset for --map (default all)"
    )
    ap.add_argument("--weights", default="mover_moe", help="shipped name or .safetensors path")
    ap.add_argument(
        "--moe-threshold", type=float, default=0.5, help="MoE score threshold (--false)"
    )
    ap.add_argument("--n-per-mode", type=int, default=150)
    ap.add_argument("--n-sky14", type=int, default=100)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--speed-velocities", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    every = not (a.map or a.depth or a.false or a.speed or a.external)
    if a.map or every:
        dets = tuple(a.map_detectors.split(",")) if a.map_detectors else None
        bench_map(a.n_per_mode, a.n_sky14, a.n_real_bg, a.out, a.weights.split(",")[0], dets)
    if a.external or every:
        bench_external(a.n_external, tuple(a.external_detectors.split(",")), out=a.out,
                       weights=a.weights)  # fmt: skip
    if a.depth or every:
        bench_depth(a.trials)
    if a.false or every:
        bench_false(a.out, a.weights.split(",")[0], a.moe_threshold)
    if a.speed or every:
        bench_speed(a.speed_velocities)


if __name__ == "__main__":
    main()
