"""Bolide main job on held-out clips degraded like real meteor-camera video (issue 15).

Each clip is a simulated meteor (:class:`skysift.simulation.meteors.MeteorVideo`)
on a synthetic fisheye sky made to look like the FreeTure/FRIPON videos: a
vignetted lens circle cut by the sensor on a black surround, 5-20 stars,
320x240 or 640x480, 8-bit, a burned-in timestamp that changes every frame
(bottom left) and a static station name (bottom right), encoded with H.264
(libx264, through the ``imageio-ffmpeg`` binary) at 300-800 kbit/s (320x240)
or 0.8-2 Mbit/s (640x480), in MP4 or FLV. The meteors are slow (fireballs
seen low, 15-60 px/s) to fast (100-400 px/s); about half saturate the 8-bit
range at the peak. Seeds 9000+ (held out: not used by any training).

``run_bolide`` then runs with its defaults and no site or time (an
instrumental light curve). Scores per clip, against the simulator's truth:

* head found: frames where the noise-free head reaches 5 sigma (the truth's
  ``visible`` at ``mask_threshold = 5 sigma``), counted when the light curve
  has the frame and its position is within ``3 px + the frame's smear``;
* light-curve RMS: ``inst_mag - (-2.5 log10 truth_flux)`` over the found,
  unsaturated frames, less its median (the zero point is unknown), in mag;
* saturated frames: truth-saturated frames flagged / all truth-saturated
  frames, and false flags (flagged frames the truth calls unsaturated). The
  truth is the simulator's: a pixel of the head's mask reached 255 before
  clipping, shot and read noise included (so a head whose noise-free peak
  is 238 ADU can "saturate" through one noisy pixel). Beside it, the light
  that clipping removed: frames losing >= 1 % of the head's flux (>= 0.01
  mag, the ones whose magnitude is a bright limit) are counted separately
  ("clipped >= 1 %"). Unflagged saturated frames and false flags are listed
  per clip with the measured peak.

Targets (issue 15): head found in >= 95 % of frames, RMS <= 0.25 mag,
every saturated frame flagged.

Usage: python benchmarks/bolide_real_like.py [--clips 20] [--out DIR] [--method auto]

``--kinds N [--seeds 3]`` instead scores :mod:`skysift.bolide.kinds` on N
simulated 320x240 H.264 clips per kind (meteor, aircraft, satellite; see
:func:`kind_clip`) per seed: the confusion counts, median and worst over seeds
("none": nothing tracked, right for an aircraft or a satellite).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from skysift.bolide.pipeline import run_bolide
from skysift.simulation.meteors import Flare, LightCurve, Meteor, MeteorVideo

FPS = 25.0
ZP = 16.0


def ffmpeg_exe() -> str:
    """The ffmpeg binary of ``imageio-ffmpeg`` (has libx264)."""
    import imageio_ffmpeg  # optional: only this benchmark encodes H.264

    return imageio_ffmpeg.get_ffmpeg_exe()


def fisheye_sky(shape, rng) -> tuple[np.ndarray, float]:
    """Noise-free sky: a vignetted lens circle cut by the sensor, 5-20 stars. Returns (image, fwhm)."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    cx, cy = w / 2 + rng.uniform(-6, 6), h / 2 + rng.uniform(-6, 6)
    radius = rng.uniform(0.46, 0.52) * w
    r = np.hypot(xx - cx, yy - cy) / radius
    level = rng.uniform(14, 26)
    sky = np.where(r < 1, level * (1 - 0.45 * r**2), 2.0).astype(np.float32)
    fwhm = rng.uniform(1.6, 2.6) * w / 320
    s = fwhm / 2.3548
    for _ in range(int(rng.integers(5, 21))):
        a, rr = rng.uniform(0, 2 * np.pi), radius * math.sqrt(rng.uniform(0, 0.8))
        x, y = cx + rr * math.cos(a), cy + rr * math.sin(a)
        if 4 < x < w - 5 and 4 < y < h - 5:
            sky += rng.uniform(8, 120) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
    return sky, fwhm


def make_clip(k: int, out: Path):
    """One degraded clip: returns (path, truth, params dict)."""
    rng = np.random.default_rng(9000 + k)
    shape = (240, 320) if k % 2 == 0 else (480, 640)
    h, w = shape
    sky, fwhm = fisheye_sky(shape, rng)
    noise = rng.uniform(1.5, 3.0)
    slow = k % 3 == 0
    speed = (rng.uniform(15, 60) if slow else rng.uniform(100, 400)) * w / 320
    dur = rng.uniform(1.5, 3.0) if slow else rng.uniform(0.5, 1.2)
    length = min(speed * dur, 0.6 * w)
    a = rng.uniform(0, 2 * np.pi)
    x0, y0 = w / 2 + rng.uniform(-0.25, 0.25) * w, h / 2 + rng.uniform(-0.2, 0.2) * h
    x1 = float(np.clip(x0 + length * math.cos(a), 0.1 * w, 0.9 * w))
    y1 = float(np.clip(y0 + length * math.sin(a), 0.1 * h, 0.8 * h))
    # peak brightness: about half the clips saturate 8 bits at the peak
    smear = max(speed / FPS, 1.0)
    peak_px = rng.uniform(60, 900)
    peak_flux = peak_px * 2.5 * (fwhm / 2.3548) * (smear + fwhm)
    peak_mag = ZP - 2.5 * math.log10(peak_flux * FPS)  # the zero point is per second
    flares = (Flare(0.5, 0.8, 0.04),) if rng.random() < 0.5 else ()
    lc = LightCurve.meteor(peak_mag, dur, peak_fraction=rng.uniform(0.4, 0.75), flares=flares)
    meteor = Meteor((x0, y0), (x1, y1), speed=speed, light_curve=lc, t_start_s=0.2,
                    psf=fwhm)  # fmt: skip
    n_frames = int(math.ceil((dur + 0.6) * FPS))
    video = MeteorVideo(
        sky, meteor, n_frames=n_frames, fps=FPS, zero_point=ZP, gain=2.0, noise_sigma=noise,
        saturation=None, mask_threshold=5 * noise,
    )  # fmt: skip
    # rendered unclipped (same random draws), clipped here: the truth also gets the clipped light
    cube, truth = video.render(rng=rng)
    over = np.clip(cube - 255.0, 0, None)
    truth["saturated"] = [bool(np.any(cube[i][m] >= 255.0)) for i, m in
                          zip(truth["frame"], truth["mask"], strict=True)]  # fmt: skip
    truth["clipped_fraction"] = [
        float(over[i][m].sum() / f) if f > 0 else 0.0
        for i, m, f in zip(truth["frame"], truth["mask"], truth["flux"], strict=True)
    ]
    cube8 = np.clip(np.round(cube), 0, 255).astype(np.uint8)
    scale = 0.35 * w / 320
    for i in range(n_frames):
        ms = int(1000 * i / FPS) % 1000
        cv2.putText(cube8[i], f"2015/03/14 23:46:{52 + i // 25:02d} {ms:03d} LT", (2, h - 3),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1)  # fmt: skip
        cv2.putText(cube8[i], "Station FR", (w - int(70 * w / 320), h - 3),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1)  # fmt: skip
    kbps = int(rng.uniform(300, 800) if w == 320 else rng.uniform(800, 2000))
    fmt = "flv" if k % 4 == 1 else "mp4"
    path = out / f"clip_{k:02d}_{w}x{h}_{kbps}k.{fmt}"
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "gray",
           "-s", f"{w}x{h}", "-r", f"{FPS:g}", "-i", "-", "-c:v", "libx264", "-b:v", f"{kbps}k",
           "-pix_fmt", "yuv420p", "-f", fmt, str(path)]  # fmt: skip
    subprocess.run(cmd, input=cube8.tobytes(), check=True)
    params = {"shape": f"{w}x{h}", "kbps": kbps, "fmt": fmt, "speed_px_s": speed,
              "peak_px": peak_px, "noise": noise, "fwhm": fwhm}  # fmt: skip
    return path, truth, params


def encode(cube8: np.ndarray, path: Path, kbps: int) -> Path:
    """Burn in the overlays and encode an 8-bit (T, H, W) cube with H.264 (format from the suffix)."""
    t, h, w = cube8.shape
    scale = 0.35 * w / 320
    for i in range(t):
        cv2.putText(cube8[i], f"2015/03/14 23:46:{52 + i // 25:02d} {int(40 * i) % 1000:03d} LT",
                    (2, h - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1)  # fmt: skip
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "gray",
           "-s", f"{w}x{h}", "-r", f"{FPS:g}", "-i", "-", "-c:v", "libx264", "-b:v", f"{kbps}k",
           "-pix_fmt", "yuv420p", "-f", path.suffix[1:], str(path)]  # fmt: skip
    subprocess.run(cmd, input=np.ascontiguousarray(cube8).tobytes(), check=True)
    return path


def kind_clip(kind: str, seed: int, out: Path) -> tuple[Path, dict]:
    """A 320x240 H.264 clip of 3 s with one meteor, aircraft or satellite (issue 15, item 3).

    Meteors as :func:`make_clip` (slow 15-60 px/s or fast 100-400 px/s, rising
    and fading inside the clip). Satellites and aircraft as the negatives of
    :mod:`skysift.bolide.training_data`: 0.1-1.5 px/frame on a straight line
    across the whole clip; a satellite at constant brightness (5-60 noise
    sigma at the peak pixel), an aircraft a strobe flashing every 2-7 frames
    (one frame on, 5-300 sigma) with, in half the clips, a steady navigation
    light of 3-15 sigma.
    """
    rng = np.random.default_rng(seed)
    h, w = 240, 320
    sky, fwhm = fisheye_sky((h, w), rng)
    noise = rng.uniform(1.5, 3.0)
    n_frames = 75
    sig = fwhm / 2.3548
    meteors = []
    params: dict = {"kind": kind}
    if kind == "meteor":
        slow = rng.random() < 0.4
        speed = rng.uniform(15, 60) if slow else rng.uniform(100, 400)
        dur = rng.uniform(1.0, 2.2) if slow else rng.uniform(0.4, 1.2)
        a = rng.uniform(0, 2 * np.pi)
        x0, y0 = w / 2 + rng.uniform(-0.25, 0.25) * w, h / 2 + rng.uniform(-0.2, 0.2) * h
        length = min(speed * dur, 0.6 * w)
        x1 = float(np.clip(x0 + length * math.cos(a), 0.1 * w, 0.9 * w))
        y1 = float(np.clip(y0 + length * math.sin(a), 0.1 * h, 0.8 * h))
        smear = max(speed / FPS, 1.0)
        peak_flux = rng.uniform(40, 900) * 2.5 * sig * (smear + fwhm)
        lc = LightCurve.meteor(ZP - 2.5 * math.log10(peak_flux * FPS), dur,
                               peak_fraction=rng.uniform(0.4, 0.75))  # fmt: skip
        meteors.append(Meteor((x0, y0), (x1, y1), speed=speed, light_curve=lc,
                              t_start_s=rng.uniform(0.2, 0.6), psf=fwhm))  # fmt: skip
        params["speed_px_frame"] = speed / FPS
    else:
        v = rng.uniform(0.1, 1.5)  # px/frame
        ang = rng.uniform(0, 2 * np.pi)
        cx, cy = w / 2 + rng.uniform(-0.2, 0.2) * w, h / 2 + rng.uniform(-0.2, 0.2) * h
        half = v * n_frames / 2 + 2
        start = (cx - half * math.cos(ang), cy - half * math.sin(ang))
        end = (cx + half * math.cos(ang), cy + half * math.sin(ang))
        params["speed_px_frame"] = v
        if kind == "satellite":
            peak = math.exp(rng.uniform(math.log(5), math.log(60))) * noise
            flux = peak * 2 * np.pi * sig * sig * max(1.0, v / (math.sqrt(2 * np.pi) * sig))
            meteors.append(Meteor(start, end, speed=v * FPS, light_curve=ZP - 2.5 *
                                  math.log10(flux * FPS), t_start_s=-1e-3, psf=fwhm))  # fmt: skip
    video = MeteorVideo(
        sky, meteors or [], n_frames=n_frames, fps=FPS, zero_point=ZP, gain=2.0,
        noise_sigma=noise, saturation=None, mask_threshold=5 * noise,
    ) if meteors else None  # fmt: skip
    if video is not None:
        cube, _ = video.render(rng=rng)
    else:
        cube = sky + rng.normal(0, noise, (n_frames, h, w)).astype(np.float32)
    if kind == "aircraft":
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        period = int(rng.integers(2, 8))
        amp = math.exp(rng.uniform(math.log(5), math.log(300))) * noise
        nav = rng.uniform(3, 15) * noise if rng.random() < 0.5 else 0.0
        phase = int(rng.integers(0, period))
        for i in range(n_frames):
            x = start[0] + (end[0] - start[0]) * (i + 0.5) / n_frames
            y = start[1] + (end[1] - start[1]) * (i + 0.5) / n_frames
            a_i = nav + (amp if (i + phase) % period == 0 else 0.0)
            cube[i] += a_i * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sig * sig))
        params.update(period=period, strobe_sigma=amp / noise, nav_sigma=nav / noise)
    cube8 = np.clip(np.round(cube), 0, 255).astype(np.uint8)
    path = encode(cube8, out / f"{kind}_{seed}.mp4", int(rng.uniform(300, 800)))
    return path, params


def run_kinds(n: int, seeds: list[int], out: Path, method: str) -> None:
    """Confusion counts of :mod:`skysift.bolide.kinds` on simulated clips, per seed."""
    from collections import Counter

    kinds = ("meteor", "aircraft", "satellite")
    cols = ("meteor", "aircraft", "satellite", "unknown", "none")
    per_seed = []
    for seed in seeds:
        conf = {k: Counter() for k in kinds}
        for j, kind in enumerate(kinds):
            for i in range(n):
                path, p = kind_clip(kind, 10_000 * seed + 100 * j + i, out)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # no site/time, maybe nothing found
                    res = run_bolide(path, method=method, overlays=False)
                got = (
                    str(res.rejected["kind"][0]) if res.rejected is not None
                    else str(res.lightcurve["kind"][0]) if len(res.lightcurve) else "none"
                )  # fmt: skip
                conf[kind][got] += 1
                verdict = [m for m in res.messages if m.startswith("kind:")]
                print(f"seed {seed} {kind:9s} -> {got:9s} {p} {verdict}", flush=True)
        per_seed.append(conf)
        print(f"seed {seed}: " + "; ".join(
            f"{k}: " + " ".join(f"{c}={conf[k][c]}" for c in cols) for k in kinds
        ), flush=True)  # fmt: skip
    print(f"CONFUSION over {len(seeds)} seeds x {n} clips per kind (median [worst] per seed):")
    for k in kinds:
        right = [c[k][k] if k == "meteor" else c[k][k] + c[k]["none"] for c in per_seed]
        meteor_calls = [c[k]["meteor"] for c in per_seed]
        print(
            f"  {k:9s} " + " ".join(
                f"{c}={np.median([s[k][c] for s in per_seed]):g}" for c in cols
            ) + f"  | correct (non-meteors: or not tracked) median {np.median(right):g} "
            f"worst {min(right)}/{n}; called meteor: median {np.median(meteor_calls):g} "
            f"worst {max(meteor_calls) if k != 'meteor' else min(meteor_calls)}"
        )  # fmt: skip


def score(lc, truth, speed: float) -> dict:
    tr = {int(r["frame"]): r for r in truth if r["visible"]}
    tol = 3.0 + speed / FPS
    found, errs, sat_t, sat_f, false_sat = 0, [], 0, 0, 0
    clip_t = clip_f = 0
    missed, false = [], []
    rows = {int(r["frame"]): r for r in lc}
    for f, t in tr.items():
        clipped = float(t["clipped_fraction"]) >= 0.01
        sat_t += int(bool(t["saturated"]))
        clip_t += int(clipped)
        r = rows.get(f)
        if r is None or math.hypot(r["x"] - t["x"], r["y"] - t["y"]) > tol:
            if t["saturated"]:
                missed.append(f"{f}:not tracked")
            continue
        found += 1
        clip_f += int(clipped and bool(r["saturated"]))
        if t["saturated"]:
            sat_f += int(bool(r["saturated"]))
            if not r["saturated"]:
                missed.append(f"{f}:peak {float(r['peak']):.0f}")
        elif r["saturated"]:
            false_sat += 1
            false.append(f"{f}:peak {float(r['peak']):.0f}")
        elif r["flux"] > 0 and t["flux"] > 0:
            errs.append(float(r["inst_mag"]) + 2.5 * math.log10(float(t["flux"])))
    e = np.asarray(errs)
    rms = float(np.sqrt(np.mean((e - np.median(e)) ** 2))) if e.size >= 2 else float("nan")
    return {"n_truth": len(tr), "n_found": found, "rms_mag": rms, "n_unsat": int(e.size),
            "sat_truth": sat_t, "sat_flagged": sat_f, "false_sat": false_sat,
            "clip_truth": clip_t, "clip_flagged": clip_f, "missed": missed,
            "false": false}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--method", default="auto")
    ap.add_argument(
        "--kinds",
        type=int,
        default=0,
        help="instead: N clips per kind (meteor/aircraft/satellite) per seed",
    )
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    out = args.out or Path(tempfile.mkdtemp(prefix="bolide_real_like_"))
    out.mkdir(parents=True, exist_ok=True)
    if args.kinds:
        run_kinds(args.kinds, list(range(1, args.seeds + 1)), out, args.method)
        return
    tot = {"n_truth": 0, "n_found": 0, "sat_truth": 0, "sat_flagged": 0, "false_sat": 0,
           "clip_truth": 0, "clip_flagged": 0}  # fmt: skip
    rms_all, sq = [], []
    for k in range(args.clips):
        path, truth, p = make_clip(k, out)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no site/time: "calibration failed" is expected
            res = run_bolide(path, method=args.method, overlays=False)
        s = score(res.lightcurve, truth, p["speed_px_s"])
        for key in tot:
            tot[key] += s[key]
        if np.isfinite(s["rms_mag"]):
            rms_all.append(s["rms_mag"])
            sq.append((s["rms_mag"] ** 2, s["n_unsat"]))
        print(
            f"{path.name:28s} {p['speed_px_s']:6.0f} px/s peak {p['peak_px']:4.0f} ADU  "
            f"found {s['n_found']:3d}/{s['n_truth']:3d}  RMS {s['rms_mag']:.3f} mag "
            f"({s['n_unsat']} unsat)  sat {s['sat_flagged']}/{s['sat_truth']} "
            f"false {s['false_sat']}  {time.perf_counter() - t0:.1f} s"
            + (f"  unflagged [{', '.join(s['missed'])}]" if s["missed"] else "")
            + (f"  false [{', '.join(s['false'])}]" if s["false"] else ""),
            flush=True,
        )
    pooled = math.sqrt(sum(a * n for a, n in sq) / max(1, sum(n for _, n in sq)))
    print(
        f"TOTAL {args.clips} clips: head found {tot['n_found']}/{tot['n_truth']} "
        f"({100 * tot['n_found'] / max(1, tot['n_truth']):.1f} %), light-curve RMS pooled "
        f"{pooled:.3f} mag, median per clip {np.median(rms_all):.3f} mag; saturated flagged "
        f"{tot['sat_flagged']}/{tot['sat_truth']}, false flags {tot['false_sat']}; "
        f"clipped >= 1 % flagged {tot['clip_flagged']}/{tot['clip_truth']}"
    )


if __name__ == "__main__":
    main()
