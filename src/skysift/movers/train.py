"""Training data, loss and training loop of the fast-mover mixture of experts.

Data are streamed from :func:`skysift.simulation.movers.simulate_fast_mover`
in the three observing modes over ranges wider than the fast-movers paper's
(paper: FWHM 0.9-3″ at 0.9″/px, sky 14-19 mag/arcsec², motion ≤ 3.4 px per
pre-image; here FWHM 1.2-3.5 px, sky 13-19.5 mag/arcsec², trails and star
trails 4-22 px, 2-20 field stars on 64x64 patches, i.e. up to 80 per 128x128). The loss (:func:`moe_loss`) is the sum of
the YOLOX-style expert loss (BCE objectness + IoU box loss), the
CenterNet-style expert loss (penalty-reduced focal loss + L1 offset/size),
the same focal and IoU terms on the gated mixture, and the cosine-similarity
term between the experts' feature maps (the paper's diversity term: the
experts are pushed to look at the data differently).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import signal
from torch.nn import functional as F

from skysift.errors import InputError
from skysift.io.readers import read_frame
from skysift.movers.model import (
    STRIDE,
    MoverMoE,
    _robust,
    expert_maps,
    make_inputs,
    prior_descriptor,
)
from skysift.movers.weights_io import load_moe, save_moe
from skysift.simulation.detector import Detector
from skysift.simulation.movers import simulate_fast_mover
from skysift.simulation.optics import Telescope

__all__ = [
    "NEGATIVE_GLOW_DATA",
    "SHORT_TRAIL_DATA",
    "SHORT_TRAIL_MODES",
    "TRAIN_MODES",
    "TRAIN_SETTINGS",
    "MoverSample",
    "TrainSettings",
    "add_glow",
    "composite_background",
    "line_kernel",
    "load_backgrounds",
    "moe_loss",
    "mover_boxes",
    "simulate_set",
    "train_movers",
]

#: Simulation settings of the training set (the held-out set uses others, see evaluate.py).
TRAIN_SETTINGS: dict[str, Any] = {
    "shape": (64, 64),
    "fwhm_range": (1.2, 3.5),
    "sky_range": (13.0, 19.5),
    "target_mag_range": (9.0, 12.5),
    "trail_range": (4.0, 22.0),
    "n_stars_range": (2, 20),
    "aperture_m": 0.25,
    "pixel_scale": 2.0,
    "read_noise": 5.0,
    "qe": 0.8,
    # share of images whose mover trail is drawn from short_trail_range instead
    # (short trails, where a trail and a round star look alike, are the hard case)
    "short_trail_fraction": 0.0,
    "short_trail_range": (4.0, 9.0),
    # share of images composited on a crop of a real frame (when backgrounds are given)
    "background_fraction": 0.35,
    # strength of the real crop's noise relative to the simulated noise
    "background_strength": (0.4, 1.0),
    # share of images built on a real crop as the main scene (when backgrounds are
    # given): no simulated field stars, the crop added at negative_strength times
    # the simulated noise, centred near a bright real star half of the time
    # (off-axis, aberration-elongated stars must be learned as background)
    "negative_fraction": 0.0,
    # of those, the share with no mover at all (labelled negatives)
    "negative_empty": 0.5,
    "negative_strength": (1.5, 3.0),
    # of those, the share whose crop is snapped to a border of the real frame (the
    # detector sees frame edges, with their vignetting and padding, at inference)
    "negative_edge": 0.0,
    # share of images with a smooth sky glow and a linear gradient added (with its
    # Poisson noise), each peaking at a uniform 0-glow_max times the sky level
    "glow_fraction": 0.0,
    "glow_max": 20.0,
}

#: The real-negative + glow mix fine-tuned from the short-trail candidate (see docs/movers.md):
#: ``TrainSettings(modes=SHORT_TRAIL_MODES, data=NEGATIVE_GLOW_DATA)`` with real backgrounds.
NEGATIVE_GLOW_DATA: dict[str, Any] = {
    "fwhm_range": (1.0, 4.0),
    "short_trail_fraction": 0.35,
    "negative_fraction": 0.3,
    "glow_fraction": 0.25,
}

#: Modes of the shipped weights' training images, cycled.
TRAIN_MODES = ("sidereal", "tracking", "intersection")

#: The short-trail mix of the 2026-12 candidate (not shipped, see docs/movers.md):
#: ``TrainSettings(modes=SHORT_TRAIL_MODES, data=SHORT_TRAIL_DATA)`` with real backgrounds.
SHORT_TRAIL_MODES = ("sidereal", "intersection", "sidereal", "tracking", "intersection")
SHORT_TRAIL_DATA: dict[str, Any] = {"fwhm_range": (1.0, 4.0), "short_trail_fraction": 0.35}


@dataclass
class MoverSample:
    """One simulated training/evaluation image.

    Attributes
    ----------
    x : ndarray of float32, shape (2, H, W)
        Network inputs (:func:`~skysift.movers.model.make_inputs`).
    prior_vec : ndarray of float32, shape (4,)
    boxes : ndarray, shape (M, 4)
        Mover boxes ``[x1, y1, x2, y2]``, pixels (:func:`mover_boxes`).
    image : ndarray, shape (H, W) or None
        The raw image (kept for the classical baseline).
    prior : ndarray, shape (K, K) or None
    meta : dict
        ``mode``, ``sky``, ``rate`` (mover trail length over the exposure, px),
        ``fwhm``, ``n_stars``, ``mag``, ``snr``.
    """

    x: np.ndarray
    prior_vec: np.ndarray
    boxes: np.ndarray
    image: np.ndarray | None = None
    prior: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def mover_boxes(truth: Any, fwhm: float) -> np.ndarray:
    """Evaluation boxes of the movers: the trail's bounding box grown by ``max(FWHM, 2)`` px.

    Parameters
    ----------
    truth : astropy.table.Table
        Simulator truth (rows of ``type == "mover"`` are used).
    fwhm : float
        PSF FWHM, pixels.

    Returns
    -------
    ndarray, shape (M, 4)
    """
    m = truth[truth["type"] == "mover"]
    r = max(float(fwhm), 2.0)
    x1 = np.minimum(m["x1"], m["x2"]) - r
    x2 = np.maximum(m["x1"], m["x2"]) + r
    y1 = np.minimum(m["y1"], m["y2"]) - r
    y2 = np.maximum(m["y1"], m["y2"]) + r
    return np.column_stack([x1, y1, x2, y2]).astype(float)


def line_kernel(dx: float, dy: float) -> np.ndarray:
    """A normalised kernel of a straight segment ``(dx, dy)`` px long, centred (bilinear samples).

    Parameters
    ----------
    dx, dy : float
        Segment vector, pixels.

    Returns
    -------
    ndarray, shape (K, K)
        Odd-sized, sum 1; ``[[1.0]]`` for a segment shorter than 0.5 px.
    """
    length = float(np.hypot(dx, dy))
    if length < 0.5:
        return np.ones((1, 1))
    hs = int(np.ceil(max(abs(dx), abs(dy)) / 2.0)) + 1
    k = np.zeros((2 * hs + 1, 2 * hs + 1))
    t = np.linspace(-0.5, 0.5, max(int(np.ceil(4 * length)), 2) + 1)
    xs, ys = hs + t * dx, hs + t * dy
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for ox, oy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                       (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):  # fmt: skip
        np.add.at(k, (y0 + oy, x0 + ox), wt)
    return k / k.sum()


def load_backgrounds(
    paths: list[str | Path], *, exclude: dict[str, tuple[float, float, float, float]] | None = None
) -> list[np.ndarray]:
    """Real frames for compositing, as float32 images with excluded boxes set to NaN.

    Parameters
    ----------
    paths : list of str or Path
        Image files readable by :func:`skysift.io.readers.read_frame` (FITS, TIFF, ...).
    exclude : dict, optional
        File name -> box ``(x1, y1, x2, y2)`` (0-based pixels) to leave out (a
        real streak, a mover): crops touching it are never drawn.

    Returns
    -------
    list of ndarray, shape (H, W)

    Raises
    ------
    InputError
        For an empty list or an unreadable file (from the reader).
    """
    if not paths:
        msg = "backgrounds must name at least one image file, got none"
        raise InputError(msg)
    out = []
    for p in paths:
        img = np.asarray(read_frame(str(p)).data, dtype=np.float32)
        if img.ndim == 3:  # colour: the mean of the channels
            img = img.mean(axis=-1)
        box = (exclude or {}).get(Path(p).name)
        if box is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            img = img.copy()
            img[max(y1, 0) : y2 + 1, max(x1, 0) : x2 + 1] = np.nan
        out.append(img)
    return out


def composite_background(
    image: np.ndarray,
    background: np.ndarray,
    star_motion: tuple[float, float],
    strength: float,
    rng: np.random.Generator,
    centre: tuple[int, int] | None = None,
) -> np.ndarray:
    """Add a random crop of a real frame to a simulated image.

    The crop is robustly z-scored, smeared along the star motion of the mode
    (its real stars then trail like the simulated ones: a real frame with
    point stars is a sidereal exposure) and added at ``strength`` times the
    simulated image's robust noise, so the real stars, hot pixels, gradients
    and noise texture come on top of the simulated scene.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Simulated image.
    background : ndarray, shape (H_b, W_b)
        Real frame (NaN where excluded), at least as large as ``image``.
    star_motion : (float, float)
        Star trail over the exposure on the detector, pixels.
    strength : float
        Real noise / simulated noise.
    rng : numpy.random.Generator
    centre : (int, int), optional
        ``(x, y)`` pixel of the real frame the crop should contain (shifted by
        up to a third of the image size); default: a uniformly random crop.

    Returns
    -------
    ndarray, shape (H, W)

    Raises
    ------
    InputError
        If the real frame is smaller than the image.
    """
    h, w = image.shape
    hb, wb = background.shape
    if hb < h or wb < w:
        msg = f"background frame {hb}x{wb} is smaller than the image {h}x{w}"
        raise InputError(msg)
    crop = background[:h, :w]
    for _ in range(20):  # a crop clear of excluded (NaN) pixels
        if centre is not None:
            jx, jy = rng.integers(-(w // 3), w // 3 + 1), rng.integers(-(h // 3), h // 3 + 1)
            x0 = int(np.clip(centre[0] - w // 2 + jx, 0, wb - w))
            y0 = int(np.clip(centre[1] - h // 2 + jy, 0, hb - h))
        else:
            y0, x0 = int(rng.integers(0, hb - h + 1)), int(rng.integers(0, wb - w + 1))
        crop = background[y0 : y0 + h, x0 : x0 + w]
        if np.isfinite(crop).all():
            break
    crop = np.nan_to_num(crop, nan=float(np.nanmedian(crop)))
    cmed, csig = _robust(crop)
    z = (crop - cmed) / csig
    k = line_kernel(*star_motion)
    if k.size > 1:
        z = signal.fftconvolve(z, k, mode="same")
    _, sig = _robust(np.asarray(image, dtype=np.float32))
    return (np.asarray(image, dtype=np.float32) + strength * sig * z).astype(np.float32)


def add_glow(
    image: np.ndarray, sky: float, glow: float, gradient: float, rng: np.random.Generator
) -> np.ndarray:
    """Add a smooth sky glow and a linear gradient, with their Poisson noise.

    As in the stress suite's renderer (``benchmarks/stress/render.py``): a
    linear light-pollution ramp from 0 to ``gradient`` times the sky across
    the image in a random direction, and a Moon/city-dome glow
    ``glow * sky * (1 + r²/s²)^-1.5`` centred anywhere in (or just outside)
    the image, core radius ``s`` 0.1-0.6 times the image width.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Image in electrons (gain 1).
    sky : float
        Sky level, electrons per pixel (> 0).
    glow, gradient : float
        Peak of the glow and of the gradient, in units of ``sky`` (≥ 0).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of float32, shape (H, W)

    Raises
    ------
    InputError
        For a non-positive sky or a negative glow or gradient.
    """
    if not sky > 0 or glow < 0 or gradient < 0:
        msg = f"sky must be > 0 and glow, gradient >= 0, got {sky}, {glow}, {gradient}"
        raise InputError(msg)
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    a = rng.uniform(0, 2 * np.pi)
    t = xx * np.cos(a) + yy * np.sin(a)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-9)
    gx, gy = rng.uniform(-0.2 * w, 1.2 * w), rng.uniform(-0.2 * h, 1.2 * h)
    sc = rng.uniform(0.1, 0.6) * w
    g = sky * (gradient * t + glow * (1 + ((xx - gx) ** 2 + (yy - gy) ** 2) / sc**2) ** -1.5)
    noisy = g + rng.normal(0.0, 1.0, g.shape) * np.sqrt(g)
    return (np.asarray(image, dtype=np.float32) + noisy).astype(np.float32)


def _bright_spots(background: np.ndarray) -> np.ndarray:
    """``(x, y)`` of the pixels of a real frame at robust z > 8 (its stars), shape (N, 2)."""
    med, sig = _robust(np.nan_to_num(background, nan=float(np.nanmedian(background))))
    z = np.nan_to_num((background - med) / sig, nan=0.0)
    ys, xs = np.nonzero(z > 8)
    return np.column_stack([xs, ys])


def _star_motion(mode: str, rate: tuple[float, float], track: tuple[float, float] | None):
    """Star trail over the 1 s exposure on the detector (minus the tracking rate)."""
    if mode == "sidereal":
        return (0.0, 0.0)
    if mode == "tracking":
        return (-rate[0], -rate[1])
    return (-track[0], -track[1]) if track is not None else (0.0, 0.0)


def _one(
    rng: np.random.Generator, mode: str, s: dict[str, Any], keep_image: bool,
    backgrounds: list[np.ndarray] | None = None,
    spots: list[np.ndarray] | None = None,
) -> MoverSample:  # fmt: skip
    fwhm = float(rng.uniform(*s["fwhm_range"]))
    sky = float(rng.uniform(*s["sky_range"]))
    mag = float(rng.uniform(*s["target_mag_range"]))
    trail = float(rng.uniform(*s["trail_range"]))
    # extra draws only when asked for, so the held-out stream is unchanged
    if s["short_trail_fraction"] > 0 and rng.uniform() < s["short_trail_fraction"]:
        trail = float(rng.uniform(*s["short_trail_range"]))
    n_stars = int(rng.integers(s["n_stars_range"][0], s["n_stars_range"][1] + 1))
    # extra draws only when asked for (as above): a real crop as the scene, no mover
    real_scene = empty = False
    if backgrounds and s["negative_fraction"] > 0 and rng.uniform() < s["negative_fraction"]:
        real_scene, n_stars = True, 0
        empty = bool(rng.uniform() < s["negative_empty"])
    ang = rng.uniform(0, 2 * np.pi)
    rate = (trail * np.cos(ang), trail * np.sin(ang))
    track = None
    if mode == "intersection":
        f = rng.uniform(0.3, 0.7)
        rot = np.radians(rng.uniform(30, 70)) * rng.choice([-1, 1])
        c, sn = np.cos(rot), np.sin(rot)
        track = (f * (c * rate[0] - sn * rate[1]), f * (sn * rate[0] + c * rate[1]))
        # keep the mover's own trail (relative to the detector) in range
        rel = np.hypot(rate[0] - track[0], rate[1] - track[1])
        if rel < s["trail_range"][0]:
            track = (0.3 * track[0], 0.3 * track[1])
    tel = Telescope(s["aperture_m"], pixel_scale_arcsec=s["pixel_scale"], band="V")
    det = Detector(qe=s["qe"], read_noise=s["read_noise"], gain=1.0, bit_depth=16)
    res = simulate_fast_mover(
        mode, shape=s["shape"], psf=fwhm, telescope=tel, detector=det, exposure_s=1.0,
        n_sub=4, target_mag=40.0 if empty else mag, target_rate=rate, track_rate=track,
        n_stars=n_stars, star_mag_range=(7.0, 15.0), sky_mag=sky, rng=rng,
    )  # fmt: skip
    image = res.image
    glow = 0.0
    if s["glow_fraction"] > 0 and rng.uniform() < s["glow_fraction"]:
        sky_e = max(res.sigma_e**2 - s["read_noise"] ** 2, 1.0)
        glow = float(rng.uniform(0, s["glow_max"]))
        image = add_glow(image, sky_e, glow, float(rng.uniform(0, s["glow_max"])), rng)
    bg_used = False
    if real_scene:
        k = int(rng.integers(len(backgrounds)))
        pts = spots[k] if spots is not None else np.zeros((0, 2))
        centre = None
        if len(pts) and rng.uniform() < 0.5:
            centre = tuple(int(v) for v in pts[int(rng.integers(len(pts)))])
        if s["negative_edge"] > 0 and rng.uniform() < s["negative_edge"]:
            hb, wb = backgrounds[k].shape
            cx, cy = int(rng.integers(wb)), int(rng.integers(hb))
            side = int(rng.integers(4))  # left, right, bottom, top: beyond it, then clipped
            centre = (-wb if side == 0 else 2 * wb if side == 1 else cx,
                      -hb if side == 2 else 2 * hb if side == 3 else cy)  # fmt: skip
        image = composite_background(
            image,
            backgrounds[k],
            _star_motion(mode, rate, track),
            float(rng.uniform(*s["negative_strength"])),
            rng,
            centre=centre,
        )
        bg_used = True
    elif backgrounds and rng.uniform() < s["background_fraction"]:
        bg = backgrounds[int(rng.integers(len(backgrounds)))]
        image = composite_background(
            image,
            bg,
            _star_motion(mode, rate, track),
            float(rng.uniform(*s["background_strength"])),
            rng,
        )
        bg_used = True
    tab = res.truth.table
    mv = tab[tab["type"] == "mover"]
    if empty:
        mv = mv[:0]
    meta = {
        "background": bg_used, "negative": empty, "glow": glow,
        "mode": mode, "sky": sky, "fwhm": fwhm, "n_stars": n_stars, "mag": mag,
        "rate": trail, "length": float(mv["length"][0]) if len(mv) else 0.0,
        "snr": float(mv["snr_tot"][0]) if len(mv) else 0.0,
    }  # fmt: skip
    return MoverSample(
        x=make_inputs(image, res.prior),
        prior_vec=prior_descriptor(res.prior),
        boxes=np.zeros((0, 4)) if empty else mover_boxes(tab, fwhm),
        image=image if keep_image else None,
        prior=res.prior if keep_image else None,
        meta=meta,
    )


def simulate_set(
    n: int,
    *,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
    modes: tuple[str, ...] = ("sidereal", "tracking", "intersection"),
    keep_image: bool = False,
    backgrounds: list[np.ndarray] | None = None,
) -> list[MoverSample]:
    """Simulate ``n`` images cycling over ``modes`` (seeded, reproducible).

    Parameters
    ----------
    n : int
        Number of images, ≥ 1.
    seed : int, optional
    settings : dict, optional
        Overrides of :data:`TRAIN_SETTINGS`.
    modes : tuple of str, optional
    keep_image : bool, optional
        Keep raw images and priors (for the baseline). Default False.
    backgrounds : list of ndarray, optional
        Real frames (:func:`load_backgrounds`); a ``background_fraction``
        share of the images is composited on crops of them
        (:func:`composite_background`). Default none.

    Returns
    -------
    list of MoverSample

    Raises
    ------
    InputError
        For ``n`` < 1 or an unknown settings key.
    """
    if int(n) < 1:
        msg = f"n must be >= 1 images, got {n}"
        raise InputError(msg)
    s = dict(TRAIN_SETTINGS)
    for k, v in (settings or {}).items():
        if k not in s:
            msg = f"unknown simulation setting {k!r}; valid: {sorted(s)}"
            raise InputError(msg)
        s[k] = v
    rng = np.random.default_rng(seed)
    bgs = list(backgrounds) if backgrounds else None
    spots = [_bright_spots(b) for b in bgs] if bgs and s["negative_fraction"] > 0 else None
    return [_one(rng, modes[i % len(modes)], s, keep_image, bgs, spots) for i in range(int(n))]


def _augment(x: np.ndarray, pv_kernel_free: np.ndarray, boxes: np.ndarray, k: int, flip: bool):
    """Rotate by k×90° and optionally flip an input, its prior descriptor and boxes."""
    h, w = x.shape[1:]
    b = boxes.copy()
    pv = pv_kernel_free.copy()
    # descriptor (L cos2θ, L sin2θ): rotation by 90° maps 2θ → 2θ + 180°; flip x: 2θ → -2θ
    for _ in range(k % 4):
        x = np.rot90(x, 1, axes=(1, 2))  # (row, col) → counter-clockwise in array view
        # new col = row, new row = (w - 1) - col
        b = np.column_stack([b[:, 1], (w - 1) - b[:, 2], b[:, 3], (w - 1) - b[:, 0]])
        pv[0], pv[1] = -pv[0], -pv[1]
        h, w = w, h
    if flip:
        x = x[:, :, ::-1]
        b = np.column_stack([(w - 1) - b[:, 2], b[:, 1], (w - 1) - b[:, 0], b[:, 3]])
        pv[1] = -pv[1]
    return np.ascontiguousarray(x), pv, b


def _targets(boxes_list: list[np.ndarray], h: int, w: int) -> dict[str, torch.Tensor]:
    """Dense targets at stride 4 for a batch."""
    bsz = len(boxes_list)
    gh, gw = h // STRIDE, w // STRIDE
    pos1 = torch.zeros(bsz, gh, gw)
    heat = torch.zeros(bsz, gh, gw)
    box_t = torch.zeros(bsz, 4, gh, gw)
    centre = torch.zeros(bsz, gh, gw, dtype=torch.bool)
    off_t = torch.zeros(bsz, 2, gh, gw)
    yy, xx = torch.meshgrid(torch.arange(gh).float(), torch.arange(gw).float(), indexing="ij")
    for i, bxs in enumerate(boxes_list):
        for x1, y1, x2, y2 in bxs:
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            gx, gy = (cx + 0.5) / STRIDE, (cy + 0.5) / STRIDE  # continuous cell coordinates
            ix, iy = int(np.clip(np.floor(gx), 0, gw - 1)), int(np.clip(np.floor(gy), 0, gh - 1))
            sig = max(0.6, min(x2 - x1, y2 - y1) / STRIDE / 6)
            g = torch.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sig * sig))
            heat[i] = torch.maximum(heat[i], g)
            centre[i, iy, ix] = True
            off_t[i, 0, iy, ix] = gx - ix
            off_t[i, 1, iy, ix] = gy - iy
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    jx, jy = ix + dx, iy + dy
                    if 0 <= jx < gw and 0 <= jy < gh:
                        ccx, ccy = (jx + 0.5) * STRIDE - 0.5, (jy + 0.5) * STRIDE - 0.5
                        if x1 < ccx < x2 and y1 < ccy < y2 or (dx == 0 and dy == 0):
                            pos1[i, jy, jx] = 1.0
                            box_t[i, :, jy, jx] = torch.tensor(
                                [x1, y1, x2, y2], dtype=torch.float32
                            )
    return {"pos1": pos1, "heat": heat, "box": box_t, "centre": centre, "off": off_t}


def _iou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU for rows of [x1, y1, x2, y2]."""
    ix1, iy1 = torch.maximum(pred[:, 0], target[:, 0]), torch.maximum(pred[:, 1], target[:, 1])
    ix2, iy2 = torch.minimum(pred[:, 2], target[:, 2]), torch.minimum(pred[:, 3], target[:, 3])
    inter = (ix2 - ix1).clamp_min(0) * (iy2 - iy1).clamp_min(0)
    ap = (pred[:, 2] - pred[:, 0]).clamp_min(0) * (pred[:, 3] - pred[:, 1]).clamp_min(0)
    at = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = ap + at - inter
    iou = inter / union.clamp_min(1e-6)
    cx1, cy1 = torch.minimum(pred[:, 0], target[:, 0]), torch.minimum(pred[:, 1], target[:, 1])
    cx2, cy2 = torch.maximum(pred[:, 2], target[:, 2]), torch.maximum(pred[:, 3], target[:, 3])
    hull = ((cx2 - cx1) * (cy2 - cy1)).clamp_min(1e-6)
    return (1 - iou + (hull - union) / hull).mean()


def _focal(p: torch.Tensor, heat: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on probabilities (Zhou et al. 2019, eq. 1)."""
    p = p.clamp(1e-5, 1 - 1e-5)
    pos = centre.float()
    lp = -((1 - p) ** 2) * torch.log(p) * pos
    ln = -((1 - heat) ** 4) * p**2 * torch.log(1 - p) * (1 - pos)
    return (lp.sum() + ln.sum()) / pos.sum().clamp_min(1.0)


def moe_loss(
    out: dict[str, torch.Tensor], tg: dict[str, torch.Tensor], *, cos_weight: float = 0.1
) -> tuple[torch.Tensor, dict[str, float]]:
    """The mixture-of-experts loss: expert 1 + expert 2 + mixture + cosine-similarity term.

    Parameters
    ----------
    out : dict
        :class:`~skysift.movers.model.MoverMoE` outputs.
    tg : dict
        Dense targets (internal ``_targets``).
    cos_weight : float, optional
        Weight of the mean cosine similarity between the experts' feature
        vectors (per cell). Default 0.1.

    Returns
    -------
    loss : torch.Tensor
    parts : dict of float
    """

    pos1 = tg["pos1"]
    npos = pos1.sum().clamp_min(1.0)
    # expert 1 (YOLOX): BCE objectness (positives: centre sampling) + GIoU on positives
    l_obj = F.binary_cross_entropy_with_logits(out["obj1"][:, 0], pos1, reduction="sum") / npos
    _, box1 = expert_maps(out, "yolox")
    m1 = pos1 > 0
    tb = tg["box"].permute(0, 2, 3, 1)[m1]
    l_box1 = _iou_loss(box1.permute(0, 2, 3, 1)[m1], tb) if m1.any() else out["obj1"].sum() * 0
    # expert 2 (CenterNet): focal heatmap + L1 offset + L1 size at the centre cell
    c = tg["centre"]
    l_heat = _focal(torch.sigmoid(out["heat2"][:, 0]), tg["heat"], c)
    _, box2 = expert_maps(out, "centernet")
    if c.any():
        l_off = F.l1_loss(out["off2"].permute(0, 2, 3, 1)[c], tg["off"].permute(0, 2, 3, 1)[c])
        tbc = tg["box"].permute(0, 2, 3, 1)[c]
        size_t = torch.stack([tbc[:, 2] - tbc[:, 0], tbc[:, 3] - tbc[:, 1]], 1)
        l_size = F.l1_loss(torch.log(out["size2"].permute(0, 2, 3, 1)[c]), torch.log(size_t))
        l_box2 = _iou_loss(box2.permute(0, 2, 3, 1)[c], tbc)
    else:
        l_off = l_size = l_box2 = out["heat2"].sum() * 0
    # the mixture: focal on the gated score + GIoU of the gated box at the centre
    s, box = expert_maps(out, "moe")
    l_mix = _focal(s, tg["heat"], c)
    if c.any():
        l_mix = l_mix + _iou_loss(box.permute(0, 2, 3, 1)[c], tg["box"].permute(0, 2, 3, 1)[c])
    # cosine similarity between the experts' per-cell features (diversity term)
    l_cos = F.cosine_similarity(out["feat1"], out["feat2"], dim=1).mean()
    loss = l_obj + 2 * l_box1 + l_heat + l_off + l_size + l_box2 + l_mix + cos_weight * l_cos
    parts = {
        "obj1": l_obj.item(), "box1": l_box1.item(), "heat2": l_heat.item(),
        "box2": l_box2.item(), "mix": l_mix.item(), "cos": l_cos.item(),
    }  # fmt: skip
    return loss, parts


def _batch(samples: list[MoverSample], idx: np.ndarray, rng: np.random.Generator, augment: bool):
    xs, pvs, bxs = [], [], []
    for i in idx:
        s = samples[i]
        if augment:
            x, pv, b = _augment(
                s.x, s.prior_vec, s.boxes, int(rng.integers(4)), bool(rng.integers(2))
            )
        else:
            x, pv, b = s.x, s.prior_vec, s.boxes
        xs.append(x)
        pvs.append(pv)
        bxs.append(b)
    x = torch.from_numpy(np.stack(xs))
    return x, torch.from_numpy(np.stack(pvs)), _targets(bxs, x.shape[2], x.shape[3])


@dataclass
class TrainSettings:
    """Training recipe of the shipped weights (saved into the model card).

    ``max_minutes`` is the wall-clock budget of the whole run (simulation
    included); training stops at ``max_steps`` or when the budget is spent,
    so the number of steps depends on the machine's load (recorded in the card).
    """

    n_train: int = 2000
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_minutes: float = 11.5
    max_steps: int = 4000
    cos_weight: float = 0.1
    width: int = 16
    feat_channels: int = 32
    seed: int = 0
    num_threads: int = 1
    #: modes of the training images, cycled
    modes: tuple[str, ...] = TRAIN_MODES
    #: weights to start from (a shipped name or a .safetensors path); None: from scratch
    init: str | None = None
    #: learning-rate warm-up steps
    warmup: int = 100
    #: overrides of :data:`TRAIN_SETTINGS` for the simulated data
    data: dict[str, Any] = field(default_factory=dict)


def train_movers(
    out_dir: str | Path | None = None,
    *,
    settings: TrainSettings | None = None,
    backgrounds: list[str | Path] | None = None,
    exclude: dict[str, tuple[float, float, float, float]] | None = None,
    log: Any = print,
) -> tuple[MoverMoE, dict[str, Any]]:
    """Train the mixture of experts on simulated images and (optionally) save the weights.

    Parameters
    ----------
    out_dir : str or Path, optional
        Folder for ``mover_moe.safetensors`` and its card (``.json``, ``.md``);
        the shipped weights live in ``skysift/movers/weights/``. Nothing is
        written when None.
    settings : TrainSettings, optional
        Recipe. Default :class:`TrainSettings`.
    backgrounds : list of str or Path, optional
        Real frames to composite a share of the training images on
        (:func:`load_backgrounds`; e.g. star-tracker frames). Keep the frames
        used for evaluation out of this list.
    exclude : dict, optional
        File name -> box ``(x1, y1, x2, y2)`` never cropped (a real streak).
    log : callable, optional
        Progress printer (``print`` by default; ``None`` for silence).

    Returns
    -------
    model : MoverMoE
        Trained, in eval mode.
    info : dict
        Recipe, timings and the last losses.

    Raises
    ------
    InputError
        For a non-positive ``n_train``, batch size or time budget.
    """
    st = settings or TrainSettings()
    if st.n_train < 1 or st.batch_size < 1 or not st.max_minutes > 0:
        msg = (
            "n_train, batch_size and max_minutes must be positive, got "
            f"{st.n_train}, {st.batch_size}, {st.max_minutes}"
        )
        raise InputError(msg)
    say = log or (lambda *a: None)
    torch.set_num_threads(int(st.num_threads))
    torch.manual_seed(st.seed)
    t0 = time.time()
    bgs = load_backgrounds(list(backgrounds), exclude=exclude) if backgrounds else None
    samples = simulate_set(
        st.n_train, seed=st.seed, settings=st.data, modes=tuple(st.modes), backgrounds=bgs
    )
    t_sim = time.time() - t0
    say(f"simulated {len(samples)} images in {t_sim:.0f} s")
    if st.init is not None:
        model = load_moe(st.init)
        model.train()
        init_card = {"name": str(st.init), "sha256": model.card.get("sha256")}
        say(f"starting from {st.init}")
    else:
        init_card = None
        model = MoverMoE(width=st.width, feat_channels=st.feat_channels)
    opt = torch.optim.AdamW(model.parameters(), lr=st.lr, weight_decay=st.weight_decay)
    # the time budget covers the whole run, simulation included
    budget = max(st.max_minutes * 60 - t_sim, 30.0)
    rng = np.random.default_rng(st.seed + 1)
    step, parts = 0, {}
    t1 = time.time()
    model.train()
    while step < st.max_steps and time.time() - t1 < budget:
        frac = min((time.time() - t1) / budget, step / st.max_steps)
        for g in opt.param_groups:  # cosine decay over the time/step budget, short warm-up
            g["lr"] = (
                st.lr * min(1.0, (step + 1) / max(st.warmup, 1)) * 0.5 * (1 + np.cos(np.pi * frac))
            )
        idx = rng.integers(0, len(samples), st.batch_size)
        x, pv, tg = _batch(samples, idx, rng, augment=True)
        out = model(x, pv)
        loss, parts = moe_loss(out, tg, cos_weight=st.cos_weight)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            say(f"step {step} {time.time() - t1:.0f}s loss {float(loss.detach()):.3f} "
                + " ".join(f"{k}={v:.3f}" for k, v in parts.items()))  # fmt: skip
    model.eval()
    info = {
        "settings": st.__dict__.copy(),
        "data": dict(TRAIN_SETTINGS) | dict(st.data),
        "steps": step,
        "simulate_s": round(t_sim, 1),
        "train_s": round(time.time() - t1, 1),
        "total_s": round(time.time() - t0, 1),
        "last_losses": parts,
    }
    info["data"] = {k: list(v) if isinstance(v, tuple) else v for k, v in info["data"].items()}
    info["settings"]["modes"] = list(st.modes)
    info["backgrounds"] = [Path(b).name for b in backgrounds or []]
    info["init"] = init_card
    if out_dir is not None:
        save_moe(model, Path(out_dir) / "mover_moe.safetensors", info)
    return model, info
