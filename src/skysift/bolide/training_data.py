"""Training and evaluation data of the learned bolide segmenter: simulated bolides on real skies.

A *clip* is a short video of a region of a real night-sky frame
(:func:`skysift.stars.training_data.prepare_background`: the frame, its
star-free background, noise map and sky mask) rendered by
:class:`skysift.simulation.meteors.MeteorVideo`:

* the static sky of each frame is the real frame with fresh Gaussian noise of
  its measured sigma, its stars (``image - star_free``) scintillating by a
  common factor and, in some clips, jittering by a fraction of a pixel;
* one bolide (:class:`~skysift.simulation.meteors.Meteor`) crosses it: a
  straight path of 3 to 600 px at 1.5 to 30 px per frame, a single-body light
  curve (:meth:`~skysift.simulation.meteors.LightCurve.meteor`) or a constant
  one, fragmentation flares, an exponential wake, a Gaussian PSF of FWHM 1.3
  to 4.5 px, a peak brightness of 2 to 3000 noise sigma per pixel (40 %
  below 8 sigma: the report's weak point) and saturated heads clipped at the
  frame's saturation level;
* negatives and nuisances: slow satellites (another Meteor, < 1.5 px per
  frame, constant brightness), blinking aircraft lights, clouds (a smooth
  large-scale brightening that grows through the clip and dims the stars) and
  a burned-in caption whose timestamp changes every frame.

The clip's background is the per-pixel median of its frames and the noise the
robust sigma of ``frame - background``
(:func:`skysift.bolide.learned.clip_background_and_noise`), as the
pipeline computes them. The truth mask of a frame is MeteorVideo's ``mask``
of the bolide: noise-free bolide signal (head and wake, before shot noise
and clipping) >= ``mask_threshold = MASK_SIGMA x`` the median of the frame's
noise map over its sky (:func:`mask_threshold`), the same definition in
training and evaluation.

Backgrounds are split strictly: :data:`TRAIN_BACKGROUNDS` for training and
validation, :data:`HELD_OUT_BACKGROUNDS` (MAGIC 20180817_0341, UMD Bug and
Intruder) only for evaluation and the demo. Pixel coordinates are 0-based,
x = column; masks are segmentation masks, ``True`` = bolide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
from tqdm import tqdm

from skysift.bolide.learned import bolide_input, clip_background_and_noise
from skysift.learning.cards import JsonConfig
from skysift.simulation.meteors import Flare, LightCurve, Meteor, MeteorVideo
from skysift.stars.training_data import PreparedBackground, prepare_background

__all__ = [
    "TRAIN_BACKGROUNDS",
    "HELD_OUT_BACKGROUNDS",
    "MASK_SIGMA",
    "ZERO_POINT",
    "BolideDataConfig",
    "Clip",
    "mask_threshold",
    "render_clip",
    "make_tiles",
]

#: Real frames (relative to ``tests/data``) for training and validation, with their weights.
TRAIN_BACKGROUNDS: tuple[tuple[str, float], ...] = (
    ("magic_allsky/20180817_0055.fits", 3.0),
    ("umd_allsky/Meteor-20191028.png", 3.0),
    ("cta_allsky/cloudy.fits.gz", 1.5),
    ("iceact_allsky/cloudy.fits", 1.0),
    ("fmdt_meteors/2022_tauh_maxred.jpg", 1.0),
    ("astride_streak/long.fits", 0.5),
    ("tetra3_startracker/2019-07-29T204726_Alt40_Azi45_Try1.tiff", 0.5),
    ("tetra3_startracker/2019-07-29T204726_Alt60_Azi-45_Try1.tiff", 0.5),
)

#: Real frames never used in training: held-out evaluation and demo only.
HELD_OUT_BACKGROUNDS: tuple[str, ...] = (
    "magic_allsky/20180817_0341.fits",
    "umd_allsky/Bug-20191028.png",
    "umd_allsky/Intruder-20200414.png",
)

#: Truth mask: noise-free bolide signal >= MASK_SIGMA x the frame's median sky noise.
MASK_SIGMA = 2.0
#: Magnitude giving 1 ADU/s in the simulated clips.
ZERO_POINT = 15.0
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass
class BolideDataConfig(JsonConfig):
    """Parameters of the simulated clips (configuration as data; saved in the model card).

    Attributes
    ----------
    size : int
        Side of the training tiles in pixels (the net is fully convolutional;
        inference uses 224x224 tiles).
    context : int
        Pixels rendered around a tile (the input is computed with them, then cut).
    n_frames_range : (int, int)
        Frames per clip (uniform, inclusive).
    fps_range : (float, float)
        Frame rate (uniform); exposure = 1 / fps.
    peak_snr_range : (float, float)
        Peak brightness of the bolide in noise sigma per pixel (log-uniform),
        ``faint_fraction`` of clips drawn below ``faint_snr`` instead.
    faint_fraction, faint_snr : float
    length_range : (float, float)
        Path length in pixels (log-uniform).
    smear_range : (float, float)
        Distance travelled per frame, pixels (log-uniform).
    fwhm_range : (float, float)
        Gaussian PSF FWHM in pixels.
    p_constant, p_flare, p_wake : float
        Probability of a constant light curve, of 1-3 flares, of a wake.
    wake_fraction_range, wake_tau_range : (float, float)
        Wake light fraction and decay time (s).
    p_twinkle, twinkle_sigma : float
        Probability of star scintillation; rms of the per-frame factor.
    p_jitter, jitter_px : float
        Probability of frame jitter of the stars; rms in pixels.
    p_satellite, p_aircraft, p_cloud, p_caption : float
        Probability per clip of each negative.
    p_empty_frame : float
        Fraction of training tiles taken from frames without the bolide.
    p_no_bolide : float
        Fraction of clips with no bolide at all (negatives only).
    gain_range : (float, float)
        e-/ADU of the bolide's shot noise (log-uniform).
    samples_per_clip : int
        Training tiles cut from each clip (different frames).
    """

    _label: ClassVar[str] = "bolide data"

    size: int = 128
    context: int = 24
    n_frames_range: tuple[int, int] = (9, 25)
    fps_range: tuple[float, float] = (10.0, 30.0)
    peak_snr_range: tuple[float, float] = (2.0, 3000.0)
    faint_fraction: float = 0.4
    faint_snr: float = 8.0
    length_range: tuple[float, float] = (3.0, 600.0)
    smear_range: tuple[float, float] = (1.5, 30.0)
    fwhm_range: tuple[float, float] = (1.3, 4.5)
    p_constant: float = 0.2
    p_flare: float = 0.3
    p_wake: float = 0.4
    wake_fraction_range: tuple[float, float] = (0.05, 0.6)
    wake_tau_range: tuple[float, float] = (0.03, 0.5)
    p_twinkle: float = 0.7
    twinkle_sigma: float = 0.05
    p_jitter: float = 0.25
    jitter_px: float = 0.15
    p_satellite: float = 0.25
    p_aircraft: float = 0.15
    p_cloud: float = 0.2
    p_caption: float = 0.2
    p_empty_frame: float = 0.12
    p_no_bolide: float = 0.08
    gain_range: tuple[float, float] = (0.5, 5.0)
    samples_per_clip: int = 2


@dataclass
class Clip:
    """A rendered clip and its truth.

    Attributes
    ----------
    frames : ndarray, shape (T, H, W), float32
        ADU.
    background : ndarray, shape (H, W), float32
        Per-pixel median of ``frames``.
    noise : float
        Robust sigma of ``frame - background`` on the sky, ADU.
    masks : ndarray of bool, shape (T, H, W)
        Bolide truth masks (``True`` = bolide), all False without a bolide.
    signal : ndarray, shape (T,)
        Peak noise-free bolide signal per frame, in units of the sky noise
        (0 where the bolide is not in the frame).
    sky : ndarray of bool, shape (H, W)
        ``True`` = sky.
    params : dict
        The drawn parameters (bolide, negatives).
    """

    frames: np.ndarray
    background: np.ndarray
    noise: float
    masks: np.ndarray
    signal: np.ndarray
    sky: np.ndarray
    params: dict


def mask_threshold(bg: PreparedBackground) -> float:
    """Truth-mask threshold (ADU): ``MASK_SIGMA`` x the median noise over the frame's sky."""
    sky = bg.sky if bg.sky.any() else np.ones_like(bg.sky)
    return float(MASK_SIGMA * np.median(bg.noise[sky]))


def _logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """A smooth random field in [0, 1] on ``shape`` (bicubic upsampling of a coarse grid)."""
    h, w = shape
    coarse = rng.random((cells, cells)).astype(np.float32)
    f = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    f -= f.min()
    return f / max(float(f.max()), 1e-6)


def _caption_canvas(
    text: str, shape: tuple[int, int], org: tuple[int, int], scale: float
) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def _dot(shape: tuple[int, int], x: float, y: float, amp: float, fwhm: float) -> np.ndarray:
    h, w = shape
    s = fwhm / _FWHM_PER_SIGMA
    r = int(math.ceil(4 * s)) + 1
    xi, yi = int(round(x)), int(round(y))
    out = np.zeros(shape, np.float32)
    ya, yb, xa, xb = max(yi - r, 0), min(yi + r + 1, h), max(xi - r, 0), min(xi + r + 1, w)
    if ya >= yb or xa >= xb:
        return out
    yy, xx = np.mgrid[ya:yb, xa:xb]
    out[ya:yb, xa:xb] = amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
    return out


def _static_frames(
    bg: PreparedBackground,
    box: tuple[int, int, int, int],
    n_frames: int,
    fps: float,
    rng: np.random.Generator,
    cfg: BolideDataConfig,
    params: dict,
) -> np.ndarray:
    """(T, h, w) sky without the bolide: stars, noise off the sky, nuisances."""
    y0, x0, h, w = box
    sl = (slice(y0, y0 + h), slice(x0, x0 + w))
    image, free = bg.image[sl], bg.star_free[sl]
    sky, noise = bg.sky[sl], bg.noise[sl]
    stars = np.where(sky, image - free, 0.0).astype(np.float32)
    base = np.where(sky, free, image).astype(np.float32)
    sigma = float(np.median(noise[sky])) if sky.any() else float(np.median(noise))
    t = np.arange(n_frames)
    scint = np.ones(n_frames, np.float32)
    if rng.random() < cfg.p_twinkle:
        scint = (1 + rng.normal(0, cfg.twinkle_sigma * rng.uniform(0.2, 1.5), n_frames)).astype(
            np.float32
        )
        params["twinkle"] = True
    jitter = rng.random() < cfg.p_jitter
    cloud = None
    if rng.random() < cfg.p_cloud:
        field = _smooth_field(rng, (h, w), int(rng.integers(2, 6)))
        amp = _logu(rng, 1.0, 15.0) * sigma
        ramp = np.clip(
            (t - rng.uniform(-0.5, 0.7) * n_frames) / (rng.uniform(0.3, 1.0) * n_frames), 0, 1
        )
        cloud = (field, amp, ramp.astype(np.float32))
        params["cloud_sigma"] = round(amp / sigma, 2)
    caption = None
    if rng.random() < cfg.p_caption:
        scale = float(rng.uniform(0.35, 0.8))
        org = (int(rng.integers(-w // 3, max(w // 2, 1))), int(rng.integers(12, max(h, 13))))
        top = (bg.saturation or float(np.max(image))) - float(np.median(base))
        value = float(np.median(base)) + float(rng.uniform(0.2, 1.0)) * top
        start = int(rng.integers(0, 100000))
        caption = (scale, org, value, start)
        params["caption"] = True
    aircraft = None
    if rng.random() < cfg.p_aircraft:
        v = rng.uniform(0.1, 1.5) * fps
        ang = rng.uniform(0, 2 * np.pi)
        ax, ay = rng.uniform(0, w), rng.uniform(0, h)
        period = int(rng.integers(2, 8))
        amp = _logu(rng, 5, 300) * sigma
        aircraft = (ax, ay, v * np.cos(ang) / fps, v * np.sin(ang) / fps, period, amp)
        params["aircraft"] = True
    out = np.empty((n_frames, h, w), np.float32)
    for k in range(n_frames):
        s = stars
        if jitter:
            dx, dy = rng.normal(0, cfg.jitter_px, 2)
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            s = cv2.warpAffine(
                stars, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        f = base + s * scint[k]
        if cloud is not None:
            field, amp, ramp = cloud
            f = f + field * amp * ramp[k] - s * scint[k] * field * 0.5 * ramp[k]
        if caption is not None:
            scale, org, value, start = caption
            n = start + k
            text = f"UTC 07:{(n // 600) % 60:02d}:{(n // 10) % 60:02d}.{n % 10}"
            alpha = _caption_canvas(text, (h, w), org, scale)
            f = f * (1 - alpha) + alpha * value
        if aircraft is not None:
            ax, ay, vx, vy, period, amp = aircraft
            if k % period == 0:
                f = f + _dot((h, w), ax + vx * k, ay + vy * k, amp, 2.0)
        out[k] = f
    # fresh noise off the sky (MeteorVideo adds it on the sky only)
    if (~sky).any():
        out += (rng.standard_normal(out.shape, dtype=np.float32) * noise) * (~sky)
    return out


def _peak_factor(smear: float, fwhm: float) -> float:
    """Peak pixel value per unit flux of a Gaussian-PSF segment of length ``smear`` px."""
    s = fwhm / _FWHM_PER_SIGMA
    return 1.0 / (2 * np.pi * s * s) * min(1.0, math.sqrt(2 * np.pi) * s / max(smear, 1e-6))


def _draw_bolide(
    rng: np.random.Generator,
    cfg: BolideDataConfig,
    shape: tuple[int, int],
    sky: np.ndarray,
    sigma: float,
    n_frames: int,
    fps: float,
    anchor: tuple[float, float] | None,
) -> tuple[Any, dict]:

    h, w = shape
    length = _logu(rng, *cfg.length_range)
    smear = _logu(rng, *cfg.smear_range)
    speed = smear * fps
    duration = length / speed
    if anchor is None:
        ys, xs = np.nonzero(sky)
        if len(xs) == 0:
            ys, xs = np.array([h // 2]), np.array([w // 2])
        i = int(rng.integers(len(xs)))
        anchor = (float(xs[i]) + rng.uniform(-0.5, 0.5), float(ys[i]) + rng.uniform(-0.5, 0.5))
    ang = rng.uniform(0, 2 * np.pi)
    frac = rng.uniform(0, 1)
    ux, uy = math.cos(ang), math.sin(ang)
    start = (anchor[0] - frac * length * ux, anchor[1] - frac * length * uy)
    end = (start[0] + length * ux, start[1] + length * uy)
    clip_s = n_frames / fps
    # the anchor is passed at a time inside the clip's middle 80 %
    t_anchor = rng.uniform(0.1, 0.9) * clip_s
    t0 = t_anchor - frac * duration
    fwhm = float(rng.uniform(*cfg.fwhm_range))
    if rng.random() < cfg.faint_fraction:
        peak_snr = _logu(rng, cfg.peak_snr_range[0], cfg.faint_snr)
    else:
        peak_snr = _logu(rng, cfg.faint_snr, cfg.peak_snr_range[1])
    flux_frame = peak_snr * sigma / _peak_factor(smear, fwhm)
    peak_mag = ZERO_POINT - 2.5 * math.log10(flux_frame * fps)
    flares = []
    if rng.random() < cfg.p_flare:
        for _ in range(int(rng.integers(1, 4))):
            flares.append(
                Flare(
                    float(rng.uniform(0.1, 0.95) * duration),
                    float(rng.uniform(0.3, 2.0)),
                    float(max(rng.uniform(0.3, 2.0) / fps, 1e-3)),
                )
            )
    if rng.random() < cfg.p_constant or duration < 3 / fps:
        lc = LightCurve.constant(peak_mag, duration, flares)
    else:
        lc = LightCurve.meteor(
            peak_mag, duration, peak_fraction=float(rng.uniform(0.4, 0.85)), flares=flares
        )
    wake_fraction, wake_tau = 0.0, 0.1
    if rng.random() < cfg.p_wake:
        wake_fraction = float(rng.uniform(*cfg.wake_fraction_range))
        wake_tau = _logu(rng, *cfg.wake_tau_range)
    m = Meteor(
        start,
        end,
        speed,
        lc,
        t_start_s=t0,
        wake_fraction=wake_fraction,
        wake_tau_s=wake_tau,
        psf=fwhm,
    )
    params = {
        "length_px": round(length, 2),
        "smear_px": round(smear, 2),
        "speed_px_s": round(speed, 2),
        "peak_snr": round(peak_snr, 2),
        "fwhm": round(fwhm, 2),
        "n_flares": len(flares),
        "wake_fraction": round(wake_fraction, 3),
        "wake_tau_s": round(wake_tau, 3),
    }
    return m, params


def _satellite(rng, shape, sigma, n_frames, fps) -> Any:

    h, w = shape
    v = rng.uniform(0.1, 1.5) * fps
    ang = rng.uniform(0, 2 * np.pi)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    half = v * n_frames / fps
    snr = _logu(rng, 2.0, 60.0)
    fwhm = float(rng.uniform(1.3, 3.5))
    flux = snr * sigma / _peak_factor(v / fps, fwhm)
    mag = ZERO_POINT - 2.5 * math.log10(flux * fps)
    start = (cx - half * math.cos(ang), cy - half * math.sin(ang))
    end = (cx + half * math.cos(ang), cy + half * math.sin(ang))
    return Meteor(start, end, v, mag, t_start_s=-n_frames / fps / 2 - 1e-3, psf=fwhm)


def render_clip(
    bg: PreparedBackground,
    rng: np.random.Generator,
    config: BolideDataConfig | None = None,
    *,
    box: tuple[int, int, int, int] | None = None,
    anchor: tuple[float, float] | None = None,
    bolide: bool | None = None,
) -> Clip:
    """Render one clip of a region of a real frame with a simulated bolide and nuisances.

    Parameters
    ----------
    bg : PreparedBackground
        The real frame (:func:`skysift.stars.training_data.prepare_background`).
    rng : numpy.random.Generator
    config : BolideDataConfig, optional
    box : (y0, x0, h, w), optional
        Region of the frame (pixels). Default: the whole frame.
    anchor : (x, y), optional
        A point of the bolide's path, region pixels. Default: a random sky pixel.
    bolide : bool, optional
        Put a bolide in the clip. Default: with probability ``1 - p_no_bolide``.

    Returns
    -------
    Clip
    """

    cfg = config or BolideDataConfig()
    h0, w0 = bg.shape
    box = (0, 0, h0, w0) if box is None else tuple(int(v) for v in box)
    y0, x0, h, w = box
    sl = (slice(y0, y0 + h), slice(x0, x0 + w))
    sky, noise = bg.sky[sl], bg.noise[sl]
    n_frames = int(rng.integers(cfg.n_frames_range[0], cfg.n_frames_range[1] + 1))
    fps = float(rng.uniform(*cfg.fps_range))
    sigma = float(np.median(noise[sky])) if sky.any() else float(np.median(noise))
    params: dict[str, Any] = {
        "background": getattr(bg, "name", ""),
        "n_frames": n_frames,
        "fps": round(fps, 2),
    }
    static = _static_frames(bg, box, n_frames, fps, rng, cfg, params)
    if bolide is None:
        bolide = bool(rng.random() >= cfg.p_no_bolide)
    meteors = []
    if bolide:
        m, p = _draw_bolide(rng, cfg, (h, w), sky, sigma, n_frames, fps, anchor)
        meteors.append(m)
        params.update(p)
    if rng.random() < cfg.p_satellite:
        meteors.append(_satellite(rng, (h, w), sigma, n_frames, fps))
        params["satellite"] = True
    thr = mask_threshold(bg)
    gain = _logu(rng, *cfg.gain_range)
    if meteors:
        video = MeteorVideo(
            static,
            meteors,
            n_frames=n_frames,
            fps=fps,
            zero_point=ZERO_POINT,
            gain=gain,
            noise_sigma=noise,
            saturation=bg.saturation,
            sky=sky,
            mask_threshold=thr,
        )
        frames, truth = video.render(rng)
        # the noise-free bolide signal alone (peak per frame, for binning)
        if bolide:
            dry = MeteorVideo(
                np.zeros((h, w), np.float32),
                meteors[:1],
                n_frames=n_frames,
                fps=fps,
                zero_point=ZERO_POINT,
                gain=None,
                sky=sky,
                mask_threshold=thr,
            )
            sig, _ = dry.render(0)
            signal = sig.reshape(n_frames, -1).max(axis=1) / (thr / MASK_SIGMA)
            sel = np.asarray(truth["meteor"]) == 0
            masks = np.stack(list(truth["mask"][sel])).astype(bool)
        else:
            signal = np.zeros(n_frames)
            masks = np.zeros((n_frames, h, w), bool)
    else:
        frames = static + (rng.standard_normal(static.shape, dtype=np.float32) * noise * sky)
        if bg.saturation is not None:
            frames = np.minimum(frames, np.float32(bg.saturation))
        signal = np.zeros(n_frames)
        masks = np.zeros((n_frames, h, w), bool)
    frames = frames.astype(np.float32)
    if bg.step >= 1.0:  # quantised cameras (8/16-bit) stay quantised
        frames = np.round(frames / bg.step) * bg.step
    background, clip_noise = clip_background_and_noise(frames, sky)
    return Clip(frames, background, clip_noise, masks, np.asarray(signal, float), sky, params)


def _tile_box(
    bg: PreparedBackground, rng: np.random.Generator, side: int
) -> tuple[int, int, int, int]:
    h, w = bg.shape
    for _ in range(60):
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        if bg.sky[y0 : y0 + side, x0 : x0 + side].mean() >= 0.3:
            return y0, x0, side, side
    return y0, x0, side, side


def make_tiles(
    n: int,
    seed: int,
    config: BolideDataConfig | None = None,
    *,
    backgrounds: tuple[tuple[str, float], ...] = TRAIN_BACKGROUNDS,
    data_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Render ``n`` training tiles: network input, truth mask and clip parameters.

    Clip ``k`` draws from ``numpy.random.default_rng([seed, k])`` (same seed,
    same bytes). Each clip is ``size + 2 context`` pixels square; the input
    (:func:`~skysift.bolide.learned.bolide_input`) is computed on
    it and the central ``size`` square kept. Tiles come from frames where the
    bolide is inside the tile, or (``p_empty_frame``) from any frame.

    Returns
    -------
    x : ndarray, shape (n, 2, size, size), float16
    y : ndarray of bool, shape (n, size, size)
    params : list of dict
        One per tile (its clip's parameters and frame).
    """

    cfg = config or BolideDataConfig()
    s, c = int(cfg.size), int(cfg.context)
    side = s + 2 * c
    names = [b[0] for b in backgrounds]
    wts = np.array([b[1] for b in backgrounds], float)
    wts /= wts.sum()
    bgs = [prepare_background(nm, data_dir) for nm in names]
    xs = np.zeros((n, 2, s, s), np.float16)
    ys = np.zeros((n, s, s), bool)
    meta: list[dict] = []
    i, k = 0, 0
    it = None
    if progress:
        it = tqdm(total=n, desc="bolide tiles")
    while i < n:
        rng = np.random.default_rng([int(seed), k])
        k += 1
        bg = bgs[int(rng.choice(len(bgs), p=wts))]
        box = _tile_box(bg, rng, side)
        sky = bg.sky[box[0] : box[0] + side, box[1] : box[1] + side]
        anchor = None
        cy, cx = np.nonzero(sky[c : c + s, c : c + s])
        if len(cx):
            j = int(rng.integers(len(cx)))
            anchor = (float(cx[j] + c), float(cy[j] + c))
        clip = render_clip(bg, rng, cfg, box=box, anchor=anchor)
        inner = clip.masks[:, c : c + s, c : c + s].reshape(len(clip.frames), -1).any(axis=1)
        order = rng.permutation(len(clip.frames))
        chosen: list[int] = []
        for _ in range(int(cfg.samples_per_clip)):
            want_empty = rng.random() < cfg.p_empty_frame or not inner.any()
            pool = [f for f in order if f not in chosen and (want_empty or inner[f])]
            if not pool:
                break
            chosen.append(int(pool[0]))
        for f in chosen:
            if i >= n:
                break
            x = bolide_input(clip.frames[f], clip.background, clip.noise)
            xs[i] = x[:, c : c + s, c : c + s]
            ys[i] = clip.masks[f, c : c + s, c : c + s]
            meta.append({**clip.params, "frame": f, "signal": round(float(clip.signal[f]), 2)})
            i += 1
            if it is not None:
                it.update(1)
    if it is not None:
        it.close()
    return xs, ys, meta
