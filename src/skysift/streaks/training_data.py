"""Training and evaluation data of the learned streak detectors: synthetic streaks on real skies.

Composite cutouts follow the Unistellar satellite-streak paper (§2.2): a
crop of a *real* night-sky frame (its stars, noise, gradients, clouds and
structures kept as they are) on which one "pixel perfect" streak of known
truth is rendered with :func:`skysift.simulation.streaks.render_streak`, with
photon noise, the frame's saturation level and quantisation.

Streak brightness is set by its SNR_avg, the mean streak signal per pixel of
its truth mask over the background sigma (the paper's bins run from 0 to 30):
a Gaussian-blurred line of flux ``F`` per pixel of length and FWHM ``f`` puts
a fraction ``erf(sqrt(ln 2)) = 0.761`` of its light in the mask of diameter
``f``, so ``F = SNR_avg * sigma * f / 0.761``. The realised SNR_avg and
SNR_tot (summed signal in the mask over sigma) are measured on the rendered
streak (:func:`skysift.simulation.truth.object_row`) and stored in the truth.

The truth mask (``True`` = streak) is the paper's capsule: the segment
convolved with a disk of diameter the PSF FWHM (§2.2.4).

Backgrounds are split strictly: :data:`STREAK_TRAIN_BACKGROUNDS` for
training and validation, :data:`STREAK_HELD_OUT_BACKGROUNDS` (the same three
frames the star detector holds out) only for evaluation. Frames with real
streaks or meteors (the ASTRiDE streak frame, the UMD meteor frame, the
tau-Herculids max-reduction) are used by neither: their real trails would be
labelled as background.

Cutouts are drawn from ``numpy.random.default_rng([seed, k])``: the same
seed gives the same bytes. Pixel coordinates are 0-based, (0, 0) the centre
of the first pixel, x = column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from skysift.errors import InputError
from skysift.learning.cards import JsonConfig
from skysift.simulation.streaks import random_modulation, render_streak
from skysift.stars.training_data import (
    HELD_OUT_BACKGROUNDS,
    PreparedBackground,
    prepare_background,
)

__all__ = [
    "STREAK_TRAIN_BACKGROUNDS",
    "STREAK_HELD_OUT_BACKGROUNDS",
    "StreakDataConfig",
    "StreakCutout",
    "normalise_windows",
    "composite_cutout",
    "ClassifierBatchSource",
    "SegmenterBatchSource",
    "eval_cutouts",
    "load_backgrounds",
]

#: Real frames (relative to ``tests/data``) whose sky is used for training.
STREAK_TRAIN_BACKGROUNDS: tuple[str, ...] = (
    "magic_allsky/20180817_0055.fits",
    "umd_allsky/Bug-20191028.png",
    "tetra3_startracker/2019-07-29T204726_Alt40_Azi-135_Try1.tiff",
    "tetra3_startracker/2019-07-29T204726_Alt40_Azi-45_Try1.tiff",
    "tetra3_startracker/2019-07-29T204726_Alt40_Azi45_Try1.tiff",
    "tetra3_startracker/2019-07-29T204726_Alt60_Azi-45_Try1.tiff",
    "cta_allsky/cloudy.fits.gz",
    "iceact_allsky/cloudy.fits",
)
#: Real frames never used for training (evaluation only).
STREAK_HELD_OUT_BACKGROUNDS: tuple[str, ...] = HELD_OUT_BACKGROUNDS

#: Fraction of a Gaussian line's light inside a band of full width one FWHM.
_MASK_FRACTION = math.erf(math.sqrt(math.log(2.0)))


@dataclass
class StreakDataConfig(JsonConfig):
    """Parameters of the composite cutouts (configuration as data; saved in the model cards).

    Attributes
    ----------
    size : int
        Cutout side in pixels (128 for the classifier, 256 for the segmenter).
    p_streak : float
        Probability that a cutout holds a streak.
    snr_avg_range : (float, float)
        SNR_avg drawn log-uniform in this range (see the module docstring).
    length_range : (float, float)
        Length of the whole segment in pixels, log-uniform (the part in the
        cutout may be shorter).
    fwhm_range : (float, float)
        PSF FWHM in pixels (Gaussian), uniform.
    min_mask_pixels : int
        A streak cutout must hold at least this many truth-mask pixels
        (paper §3.1: 100); the streak is redrawn until it does.
    sky_fraction : float
        Cutouts are crops with at least this fraction of sky pixels, except a
        fraction ``edge_fraction`` placed anywhere (trees, domes, captions).
    edge_fraction : float
        See ``sky_fraction``.
    p_modulation : float
        Probability of a random flux modulation along the streak (tumbling,
        scintillation; log-amplitude up to 0.5).
    gain_range : (float, float)
        Gain (e-/ADU) for the streak's photon noise, log-uniform.
    augment : bool
        Random 90° rotations and flips of the cutout.
    """

    _label: ClassVar[str] = "streak data"

    size: int = 128
    p_streak: float = 0.5
    snr_avg_range: tuple[float, float] = (0.15, 50.0)
    length_range: tuple[float, float] = (20.0, 800.0)
    fwhm_range: tuple[float, float] = (1.5, 4.5)
    min_mask_pixels: int = 100
    sky_fraction: float = 0.95
    edge_fraction: float = 0.15
    p_modulation: float = 0.3
    gain_range: tuple[float, float] = (0.5, 5.0)
    augment: bool = True


@dataclass
class StreakCutout:
    """One composite cutout with its truth.

    Attributes
    ----------
    image : ndarray, shape (S, S), float32
        Pixel values (ADU), real background plus the streak.
    mask : ndarray of bool, shape (S, S)
        Truth mask, ``True`` = streak.
    truth : dict
        ``has_streak``, ``background`` (frame name), ``sigma`` (ADU),
        ``n_stars`` (real stars above 5 sigma in the crop) and, with a
        streak, ``x1, y1, x2, y2`` (pixels, may lie outside), ``fwhm``
        (pixels), ``snr_avg``, ``snr_tot``, ``length`` (pixels of segment
        inside the cutout), ``n_mask`` and ``inside`` (both ends in the cutout).
    """

    image: np.ndarray
    mask: np.ndarray
    truth: dict[str, Any] = field(default_factory=dict)


def normalise_windows(windows: np.ndarray) -> np.ndarray:
    """Eq. 1 of the satellite paper on each window: ``arcsinh((D - mu) / sigma)``.

    ``mu`` is the median and ``sigma`` 1.4826 times the median absolute
    deviation of the window (taken on every second pixel of every second row,
    4x cheaper and the same to a percent); non-finite pixels count as ``mu``.

    Parameters
    ----------
    windows : ndarray, shape (H, W) or (N, H, W)

    Returns
    -------
    ndarray of float32, same shape
    """
    w = np.asarray(windows, dtype=np.float32)
    single = w.ndim == 2
    if single:
        w = w[None]
    if w.ndim != 3:
        msg = f"normalise_windows needs (H, W) or (N, H, W) windows, got shape {w.shape}"
        raise InputError(msg)
    sub = w[:, ::2, ::2].reshape(len(w), -1)
    finite = np.isfinite(sub)
    if not finite.all():
        sub = np.where(finite, sub, np.nan)
        mu = np.nan_to_num(np.nanmedian(sub, axis=1))
        mad = np.nan_to_num(np.nanmedian(np.abs(sub - mu[:, None]), axis=1))
    else:
        mu = np.median(sub, axis=1)
        mad = np.median(np.abs(sub - mu[:, None]), axis=1)
    sigma = 1.4826 * mad
    # flat (quantised) windows: fall back on the standard deviation, then on 1
    bad = ~(sigma > 0)
    if bad.any():
        std = np.nan_to_num(np.nanstd(np.where(finite, sub, np.nan), axis=1))
        sigma = np.where(bad, np.where(std > 0, std, 1.0), sigma)
    out = np.arcsinh((w - mu[:, None, None].astype(np.float32)) / sigma[:, None, None]).astype(
        np.float32
    )
    out[~np.isfinite(out)] = 0.0
    return out[0] if single else out


def load_backgrounds(
    names: tuple[str, ...], data_dir: str | Path | None = None
) -> list[PreparedBackground]:
    """Prepared real frames (see :func:`skysift.stars.training_data.prepare_background`).

    Raises
    ------
    InputError
        If a frame is missing or unreadable (the message names it).
    """
    return [prepare_background(n, data_dir) for n in names]


def _crop(bg: PreparedBackground, rng: np.random.Generator, size: int, cfg: StreakDataConfig):
    h, w = bg.shape
    if h < size or w < size:
        msg = f"background {bg.name} of shape {bg.shape} is smaller than the cutout size {size}"
        raise InputError(msg)
    anywhere = rng.random() < cfg.edge_fraction
    best = None
    for _ in range(100):
        y0 = int(rng.integers(0, h - size + 1))
        x0 = int(rng.integers(0, w - size + 1))
        f = bg.sky_fraction(y0, x0, size)
        if best is None or f > best[0]:
            best = (f, y0, x0)
        if anywhere or f >= cfg.sky_fraction:
            break
    _, y0, x0 = best
    return y0, x0


def _clipped_length(x1: float, y1: float, x2: float, y2: float, size: int) -> float:
    """Length of the segment inside the box [-0.5, size - 0.5]^2 (Liang-Barsky)."""
    dx, dy = x2 - x1, y2 - y1
    t0, t1 = 0.0, 1.0
    lo, hi = -0.5, size - 0.5
    for p, q in ((-dx, x1 - lo), (dx, hi - x1), (-dy, y1 - lo), (dy, hi - y1)):
        if p == 0:
            if q < 0:
                return 0.0
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
    return max(t1 - t0, 0.0) * math.hypot(dx, dy)


def _count_stars(bg: PreparedBackground, y0: int, x0: int, size: int) -> int:
    sl = (slice(y0, y0 + size), slice(x0, x0 + size))
    resid = bg.image[sl] - bg.star_free[sl]
    sky = bg.sky[sl]
    _, n = ndimage.label((resid > 5 * bg.noise[sl]) & sky)
    return int(n)


def composite_cutout(
    bg: PreparedBackground,
    rng: np.random.Generator,
    cfg: StreakDataConfig,
    *,
    streak: bool | None = None,
    count_stars: bool = False,
) -> StreakCutout:
    """One composite cutout: a crop of a real frame, with or without a synthetic streak.

    Parameters
    ----------
    bg : PreparedBackground
        The real frame.
    rng : numpy.random.Generator
    cfg : StreakDataConfig
    streak : bool, optional
        Force a streak (True) or none (False). Default: with probability
        ``cfg.p_streak``.
    count_stars : bool, optional
        Fill ``truth["n_stars"]`` (costs a labelling pass). Default False (-1).

    Returns
    -------
    StreakCutout
        Not normalised, not augmented (see :func:`normalise_windows`).

    Raises
    ------
    InputError
        If the frame is smaller than the cutout.
    """

    size = int(cfg.size)
    y0, x0 = _crop(bg, rng, size, cfg)
    sl = (slice(y0, y0 + size), slice(x0, x0 + size))
    base = np.array(bg.image[sl], dtype=np.float64)
    finite = np.isfinite(base)
    if not finite.all():
        base[~finite] = np.median(base[finite]) if finite.any() else 0.0
    noise = bg.noise[sl][bg.sky[sl]]
    sigma = float(np.median(noise)) if noise.size else float(np.median(bg.noise[sl]))
    truth: dict[str, Any] = {
        "has_streak": False,
        "background": bg.name,
        "sigma": sigma,
        "n_stars": _count_stars(bg, y0, x0, size) if count_stars else -1,
    }
    mask = np.zeros((size, size), bool)
    if streak is None:
        streak = bool(rng.random() < cfg.p_streak)
    if streak:
        for _ in range(50):
            fwhm = float(rng.uniform(*cfg.fwhm_range))
            length = float(np.exp(rng.uniform(*np.log(cfg.length_range))))
            angle = float(rng.uniform(0.0, 180.0))
            cx, cy = rng.uniform(-0.5, size - 0.5, 2)
            ux, uy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            x1, y1 = cx - 0.5 * length * ux, cy - 0.5 * length * uy
            x2, y2 = cx + 0.5 * length * ux, cy + 0.5 * length * uy
            snr = float(np.exp(rng.uniform(*np.log(cfg.snr_avg_range))))
            flux = snr * sigma * fwhm / _MASK_FRACTION * length
            mod = None
            if rng.random() < cfg.p_modulation:
                mod = random_modulation(float(rng.uniform(0.1, 0.5)), rng=rng)
            img, sim = render_streak(
                (size, size), x1, y1, x2, y2, flux, fwhm, modulation=mod, sigma=sigma
            )
            if int(sim.mask.sum()) >= cfg.min_mask_pixels:
                break
        gain = float(np.exp(rng.uniform(*np.log(cfg.gain_range))))
        lit = img > 0
        noisy = img.copy()
        noisy[lit] += rng.normal(0.0, 1.0, int(lit.sum())) * np.sqrt(img[lit] / gain)
        base += noisy
        if bg.saturation is not None:
            base = np.minimum(base, bg.saturation)
        if bg.step > 0:
            base[lit] = np.round(base[lit] / bg.step) * bg.step
        mask = np.asarray(sim.mask, bool)
        row = sim.table[0]
        inside = all(-0.5 <= v <= size - 0.5 for v in (x1, y1, x2, y2))
        truth.update(
            has_streak=True,
            x1=x1, y1=y1, x2=x2, y2=y2, fwhm=fwhm,
            snr_avg=float(row["snr_avg"]), snr_tot=float(row["snr_tot"]),
            length=_clipped_length(x1, y1, x2, y2, size),
            n_mask=int(mask.sum()), inside=bool(inside),
        )  # fmt: skip
    return StreakCutout(image=base.astype(np.float32), mask=mask, truth=truth)


def _augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    k = int(rng.integers(4))
    x, y = np.rot90(x, k), np.rot90(y, k)
    if rng.random() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


class _Source:
    def __init__(self, config: StreakDataConfig, backgrounds: list[PreparedBackground]) -> None:
        if not backgrounds:
            msg = "a streak batch source needs at least one background"
            raise InputError(msg)
        self.config = config
        self.backgrounds = backgrounds

    def _cutouts(self, rng: np.random.Generator, n: int) -> list[StreakCutout]:
        out = []
        for k in range(n):
            bg = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
            # balanced: alternate positives and negatives within a batch
            streak = (k % 2 == 0) if self.config.p_streak == 0.5 else None
            out.append(composite_cutout(bg, rng, self.config, streak=streak))
        return out


class ClassifierBatchSource(_Source):
    """Balanced streak / no-streak 128x128 cutouts for the image classifier (paper §3.1).

    ``source(rng, batch_size)`` returns ``x`` ``(B, 1, S, S)`` float32
    (normalised with :func:`normalise_windows`) and ``y`` ``(B, 1)`` float32
    (1 = streak with at least ``min_mask_pixels`` mask pixels).
    """

    def __call__(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for c in self._cutouts(rng, batch_size):
            x = c.image
            if self.config.augment:
                x, _ = _augment(x, c.mask, rng)
            xs.append(x)
            ys.append(float(c.truth["has_streak"]))
        x = normalise_windows(np.stack(xs))[:, None]
        return x, np.asarray(ys, np.float32)[:, None]


class SegmenterBatchSource(_Source):
    """Composite 256x256 cutouts and their truth masks for the segmenter (paper §3.2).

    ``source(rng, batch_size)`` returns ``x`` ``(B, 1, S, S)`` float32
    (normalised with :func:`normalise_windows`) and ``y`` ``(B, 1, S, S)``
    float32 (1 = streak pixel).
    """

    def __call__(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for c in self._cutouts(rng, batch_size):
            x, y = c.image, c.mask
            if self.config.augment:
                x, y = _augment(x, y, rng)
            xs.append(x)
            ys.append(y)
        x = normalise_windows(np.stack(xs))[:, None]
        return x, np.stack(ys)[:, None].astype(np.float32)


def eval_cutouts(
    n: int,
    config: StreakDataConfig,
    *,
    seed: int = 1000,
    backgrounds: tuple[str, ...] = STREAK_HELD_OUT_BACKGROUNDS,
    data_dir: str | Path | None = None,
    count_stars: bool = True,
) -> list[StreakCutout]:
    """A fixed held-out composite set: cutout ``k`` from ``default_rng([seed, k])``.

    Cutouts cycle over ``backgrounds``; cutout ``k`` holds a streak with
    probability ``config.p_streak`` (exactly alternating when it is 0.5).

    Parameters
    ----------
    n : int
        Number of cutouts.
    config : StreakDataConfig
        ``augment`` is ignored.
    seed : int, optional
        Default 1000.
    backgrounds : tuple of str, optional
        Default :data:`STREAK_HELD_OUT_BACKGROUNDS`.
    data_dir : path, optional
        Folder of the real frames (default ``tests/data``).
    count_stars : bool, optional
        Fill ``truth["n_stars"]``. Default True.

    Returns
    -------
    list of StreakCutout
    """
    bgs = load_backgrounds(tuple(backgrounds), data_dir)
    out = []
    for k in range(int(n)):
        rng = np.random.default_rng([int(seed), k])
        streak = (k % 2 == 0) if config.p_streak == 0.5 else bool(rng.random() < config.p_streak)
        out.append(
            composite_cutout(bgs[k % len(bgs)], rng, config, streak=streak, count_stars=count_stars)
        )
    return out
