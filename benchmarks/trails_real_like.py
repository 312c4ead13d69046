"""Benchmark of single-exposure meteor trails on real-like composites and real frames.

(a) Composites (``make_composite``): a sky (gradient, noise, a few hundred
    stars, 12-bit saturation) with a tree line rising from the bottom edge
    (dark, ragged, textured: sky showing through the foliage, bare
    branches), a lit roof and wall from a side edge (bright, textured
    masonry, straight edges), the Moon (a saturated disc, its glow and four
    faint glare spikes), burned-in caption text, a faint meteor, and a
    fragmenting fireball (several collinear bright pieces separated by
    gaps, one with a saturated flare). Counted: trails on the obstructions
    or the glare (false), other false trails, the faint meteor found, the
    fireball reported as one trail (and how many trails it gave), the
    profile flux of the faint meteor against the injected flux.
(b) Real frames with no meteor (UMD Bug and Intruder, MAGIC, CTA, IceAct,
    tetra3, ASTRiDE) and with one (UMD Meteor-20191028): trails found.

Run: ``python benchmarks/trails_real_like.py [--n 20] [--no-mask] [--out DIR]``
(about 2 minutes on one core). Real frames come from ``tests/data`` or
``/work/shared/data/real``; a missing frame is skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_DIRS = (ROOT / "tests" / "data", Path("/work/shared/data/real"))
REAL_NO_METEOR = (
    "umd_allsky/Bug-20191028.png",
    "umd_allsky/Intruder-20200414.png",
    "magic_allsky/20180817_0055.fits",
    "magic_allsky/20180817_0341.fits",
    "cta_allsky/cloudy.fits.gz",
    "iceact_allsky/cloudy.fits",
    "tetra3_startracker/2019-07-29T204726_Alt40_Azi-135_Try1.tiff",
    "tetra3_startracker/2019-07-29T204726_Alt60_Azi135_Try1.tiff",
    "seestar_dso/NGC_6888_v2.jpg",
)
REAL_METEOR = {"umd_allsky/Meteor-20191028.png": (455.0, 352.0, 530.0, 410.0)}
SATURATION = 4095.0


def _find(rel: str) -> Path | None:
    for d in DATA_DIRS:
        p = d / rel
        if p.exists():
            return p
    return None


def _smooth_walk(rng: np.random.Generator, n: int, scale: float, corr: int) -> np.ndarray:
    steps = rng.standard_normal(n // corr + 2)
    x = np.interp(np.arange(n), np.arange(steps.size) * corr, np.cumsum(steps))
    return scale * (x - x.mean()) / max(x.std(), 1e-6)


def make_composite(
    rng: np.random.Generator | int | None = None,
    *,
    shape: tuple[int, int] = (600, 800),
    trees: bool = True,
    roof: bool = True,
    moon: bool = True,
    caption: bool = True,
    meteor: bool = True,
    fireball: bool = True,
    sky_level: float = 300.0,
    noise: float = 8.0,
) -> tuple[np.ndarray, dict]:
    """A night photograph with a landscape, the Moon, a faint meteor and a fragmenting fireball.

    Parameters
    ----------
    rng : Generator, int or None
        Random state.
    shape : (int, int), optional
        ``(H, W)``. Default (600, 800).
    trees, roof, moon, caption, meteor, fireball : bool, optional
        Which parts to draw. Default all.
    sky_level, noise : float, optional
        Sky level and per-pixel noise (ADU). Defaults 300 and 8.

    Returns
    -------
    image : ndarray, shape (H, W), float32
        ADU, clipped at 4095 (12-bit saturation).
    truth : dict
        ``meteor`` and ``fireball``: ``(x1, y1, x2, y2)`` or None;
        ``meteor_flux`` (ADU in the frame); ``fireball_pieces``;
        ``obstruction`` (bool mask of trees, roof and text, ``True`` =
        obstruction); ``moon``: ``(x, y, r_glow)`` with ``r_glow`` where the
        glow falls to 2x the noise, or None.
    """
    from skysift.simulation.streaks import render_streak

    rng = np.random.default_rng(rng)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # sky: a light dome towards the bottom left
    img = sky_level * (1.0 + 0.4 * np.exp(-((xx / w) ** 2 + ((h - yy) / h) ** 2) / 0.5))
    # stars
    n_stars = int(0.0008 * h * w)
    sx, sy = rng.uniform(0, w, n_stars), rng.uniform(0, h, n_stars)
    amp = np.exp(rng.uniform(np.log(15.0), np.log(6000.0), n_stars))
    s2 = (2.5 / 2.3548) ** 2
    for x0, y0, a in zip(sx, sy, amp, strict=True):
        r0, r1 = int(max(0, y0 - 8)), int(min(h, y0 + 9))
        c0, c1 = int(max(0, x0 - 8)), int(min(w, x0 + 9))
        img[r0:r1, c0:c1] += a * np.exp(
            -((xx[r0:r1, c0:c1] - x0) ** 2 + (yy[r0:r1, c0:c1] - y0) ** 2) / (2 * s2)
        )
    obstruction = np.zeros((h, w), bool)
    truth: dict = {"meteor": None, "fireball": None, "moon": None, "meteor_flux": 0.0}
    truth["fireball_pieces"] = []
    # the moon: a saturated disc, its glow and four faint glare spikes
    if moon:
        mx, my = rng.uniform(0.65 * w, 0.85 * w), rng.uniform(0.12 * h, 0.3 * h)
        r = np.hypot(xx - mx, yy - my)
        r_disc, r0 = 10.0, 25.0
        glow = 3000.0 * (1 + (np.maximum(r - r_disc, 0) / r0) ** 2) ** -1.5
        ang = np.arctan2(yy - my, xx - mx)
        spikes = 0.6 * glow * np.exp(-((np.sin(2 * (ang - 0.3)) * r / 1.5) ** 2))
        img += glow + spikes + 1e5 * (r <= r_disc)
        # where the glow (spikes included) falls to 2x the noise
        r_glow = r_disc + r0 * np.sqrt((1.6 * 3000.0 / (2 * noise)) ** (2 / 3) - 1)
        truth["moon"] = (float(mx), float(my), float(r_glow))
    # the meteor and fireball are drawn before the obstructions (they are behind)
    if meteor:
        # steeply down in the upper left: clear of the fireball and the Moon
        x1, y1 = rng.uniform(0.04 * w, 0.1 * w), rng.uniform(0.08 * h, 0.15 * h)
        ang = rng.uniform(1.1, 1.45)
        ln = rng.uniform(0.25, 0.35) * h
        x2, y2 = x1 + ln * np.cos(ang), y1 + ln * np.sin(ang)
        flux = rng.uniform(25.0, 40.0) * noise * ln / 2.5
        trail, _ = render_streak((h, w), x1, y1, x2, y2, flux, 2.5)
        img += trail
        truth["meteor"] = (float(x1), float(y1), float(x2), float(y2))
        truth["meteor_flux"] = float(trail.sum())
    if fireball:
        x1, y1 = rng.uniform(0.28 * w, 0.36 * w), rng.uniform(0.1 * h, 0.18 * h)
        ang = rng.uniform(0.9, 1.3)  # going down and to the right
        ln = rng.uniform(0.3, 0.4) * h
        n_pieces = int(rng.integers(3, 5))
        # pieces of at least 12 % of the length each (the gaps are 8 %)
        share = 0.12 + 0.08 + rng.dirichlet(np.ones(n_pieces)) * (1.0 - 0.2 * n_pieces)
        edges = np.concatenate([[0.0], np.cumsum(share)])
        edges[-1] = 1.0
        flare = int(rng.integers(0, n_pieces))
        for k in range(n_pieces):
            a, b = edges[k] + 0.04, edges[k + 1] - 0.04  # gaps of 8 % of the length
            if b - a < 0.03:
                continue
            pa = (x1 + a * ln * np.cos(ang), y1 + a * ln * np.sin(ang))
            pb = (x1 + b * ln * np.cos(ang), y1 + b * ln * np.sin(ang))
            plen = (b - a) * ln
            per_px = rng.uniform(40.0, 120.0) * noise * (20.0 if k == flare else 1.0)
            mod = (lambda s: 1.0 + 3.0 * np.exp(-(((s - 0.5) / 0.15) ** 2))) if k == flare else None
            piece, _ = render_streak((h, w), *pa, *pb, per_px * plen, 2.5, modulation=mod)
            img += piece
            truth["fireball_pieces"].append((*pa, *pb))
        p = truth["fireball_pieces"]
        truth["fireball"] = (p[0][0], p[0][1], p[-1][2], p[-1][3])
    # trees along the bottom edge: dark, ragged, textured, with bare branches
    if trees:
        top = h * 0.8 + _smooth_walk(rng, w, 0.05 * h, 12)
        for _ in range(int(rng.integers(3, 6))):  # crowns
            cx, cw, ch = rng.uniform(0, w), rng.uniform(30, 90), rng.uniform(0.08, 0.2) * h
            dx = (np.arange(w) - cx) / cw
            crown = ch * np.sqrt(np.clip(1 - dx**2, 0, 1))
            top = np.minimum(top, h * 0.85 - crown)
        top += rng.normal(0, 2.0, w)
        tree = yy >= top[None, :]
        foliage = (rng.random((h, w)) < 0.15) & tree & (yy < top[None, :] + 25)
        dark = np.where(foliage, img * 0.8, 25.0 + rng.normal(0, 3.0, (h, w)))
        img = np.where(tree, dark, img)
        for _ in range(int(rng.integers(6, 12))):  # bare branches: dark lines into the sky
            bx = int(rng.uniform(0, w))
            by = int(top[bx])
            ba = rng.uniform(-2.6, -0.5)
            bl = rng.uniform(20, 60)
            mask = np.zeros((h, w), np.uint8)
            cv2.line(mask, (bx, by), (int(bx + bl * np.cos(ba)), int(by + bl * np.sin(ba))), 1, 2)
            img = np.where(mask > 0, 25.0, img)
            obstruction |= mask > 0
        obstruction |= tree
    # a lit wall and roof from the right edge: bright masonry with straight edges
    if roof:
        x0 = int(w * rng.uniform(0.8, 0.88))
        eave = int(h * rng.uniform(0.55, 0.65))
        ridge = eave - int(h * rng.uniform(0.08, 0.15))
        poly = np.array([[x0, h], [x0, eave], [w, ridge], [w, h]], np.int32)
        house = np.zeros((h, w), np.uint8)
        cv2.fillPoly(house, [poly], 1)
        house = house > 0
        lit = 900.0 + 150.0 * rng.standard_normal((h, w)) + 200.0 * ((yy.astype(int) // 6) % 2)
        img = np.where(house, lit, img)
        obstruction |= house
    img = img + rng.normal(0.0, noise, (h, w))
    if caption:
        text = np.zeros((h, w), np.uint8)
        cv2.putText(text, "CAM-01 2024-08-12 01:23:45 UTC EXP 30s", (8, 22),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1, 1, cv2.LINE_AA)  # fmt: skip
        img = np.where(text > 0, SATURATION, img)
        obstruction[:30, :400] = True
    truth["obstruction"] = obstruction
    return np.clip(img, 0.0, SATURATION).astype(np.float32), truth


def _seg_dist(p: np.ndarray, seg: tuple) -> float:
    a, b = np.array(seg[:2]), np.array(seg[2:])
    d = b - a
    t = np.clip(np.dot(p - a, d) / max(np.dot(d, d), 1e-9), 0.0, 1.0)
    return float(np.hypot(*(p - (a + t * d))))


def on_line(row, seg: tuple, tol: float = 6.0) -> bool:
    """A found trail lies on a true segment: both ends and the middle within ``tol`` px."""
    p1, p2 = np.array([row["x1"], row["y1"]]), np.array([row["x2"], row["y2"]])
    return all(_seg_dist(p, seg) <= tol for p in (p1, p2, 0.5 * (p1 + p2)))


def end_errors(row, seg: tuple) -> float:
    """Largest distance (px) of the found ends to the true ends, either orientation."""
    f = np.array([[row["x1"], row["y1"]], [row["x2"], row["y2"]]])
    t = np.array([seg[:2], seg[2:]])
    e1 = max(np.hypot(*(f[0] - t[0])), np.hypot(*(f[1] - t[1])))
    e2 = max(np.hypot(*(f[0] - t[1])), np.hypot(*(f[1] - t[0])))
    return float(min(e1, e2))


def score_composite(table, truth: dict) -> dict:
    """Classify the trails of one composite against its truth."""
    obst = cv2.dilate(truth["obstruction"].astype(np.uint8), np.ones((31, 31), np.uint8)) > 0
    moon = truth["moon"]
    n_obst = n_other = n_fire = 0
    meteor_row = None
    for r in table:
        if truth["meteor"] is not None and on_line(r, truth["meteor"]):
            meteor_row = r
            continue
        if truth["fireball"] is not None and on_line(r, truth["fireball"]):
            n_fire += 1
            continue
        mid = np.array([0.5 * (r["x1"] + r["x2"]), 0.5 * (r["y1"] + r["y2"])])
        ix, iy = (
            int(np.clip(mid[0], 0, obst.shape[1] - 1)),
            int(np.clip(mid[1], 0, obst.shape[0] - 1)),
        )
        near_moon = moon is not None and np.hypot(mid[0] - moon[0], mid[1] - moon[1]) < moon[2] + 30
        if obst[iy, ix] or near_moon:
            n_obst += 1
        else:
            n_other += 1
    out = {"n_trails": len(table), "false_on_obstruction_or_glare": n_obst, "false_other": n_other}
    out["meteor_found"] = meteor_row is not None
    out["meteor_end_err_px"] = (
        None if meteor_row is None else end_errors(meteor_row, truth["meteor"])
    )
    out["meteor_flux_ratio"] = (
        None if meteor_row is None else float(meteor_row["flux"]) / truth["meteor_flux"]
    )
    out["fireball_trails"] = n_fire
    return out


def main() -> None:
    """Run the benchmark and print (and optionally write) its numbers."""
    import warnings

    from skysift.bolide.trails import find_meteor_trails
    from skysift.bolide.trails_pipeline import find_trails_in

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="Composites.")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--no-mask", action="store_true", help="Search the whole frame.")
    ap.add_argument("--out", type=Path, default=None, help="Write trails_real_like.json here.")
    args = ap.parse_args()
    kw = {}
    results: dict = {"composites": [], "real": {}}
    t0 = time.perf_counter()
    for i in range(args.n):
        img, truth = make_composite(args.seed + i)
        if args.no_mask:
            kw = {"sky": np.ones(img.shape, bool)}
        table = find_meteor_trails(img, **kw)
        s = score_composite(table, truth)
        results["composites"].append(s)
        print(f"composite {i}: {s}")
    comp = results["composites"]
    summary = {
        "n_composites": len(comp),
        "false_on_obstruction_or_glare": int(sum(c["false_on_obstruction_or_glare"] for c in comp)),
        "false_other": int(sum(c["false_other"] for c in comp)),
        "meteor_found": int(sum(c["meteor_found"] for c in comp)),
        "meteor_end_err_px_max": max(
            (c["meteor_end_err_px"] for c in comp if c["meteor_found"]), default=None
        ),
        "meteor_flux_ratio": [round(c["meteor_flux_ratio"], 3) for c in comp if c["meteor_found"]],
        "fireball_one_trail": int(sum(c["fireball_trails"] == 1 for c in comp)),
        "fireball_trails_total": int(sum(c["fireball_trails"] for c in comp)),
        "seconds_per_composite": round((time.perf_counter() - t0) / max(1, len(comp)), 2),
    }
    results["summary"] = summary
    for rel in (*REAL_NO_METEOR, *REAL_METEOR):
        p = _find(rel)
        if p is None:
            print(f"{rel}: missing, skipped")
            continue
        with warnings.catch_warnings():  # what `skysift trails FILE` runs (scene mask, rim filter)
            warnings.simplefilter("ignore")
            t, _ = find_trails_in(p, None, mask=not args.no_mask)
        entry = {"n_trails": len(t), "meteor": rel in REAL_METEOR}
        if rel in REAL_METEOR:
            entry["on_meteor"] = int(sum(on_line(r, REAL_METEOR[rel], 8.0) for r in t))
        results["real"][rel] = entry
        print(f"{rel}: {entry}")
    print(json.dumps(summary, indent=1))
    if args.out is not None:
        from skysift.outputs.files import write_json

        args.out.mkdir(parents=True, exist_ok=True)
        write_json(results, args.out / "trails_real_like.json")


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    main()
