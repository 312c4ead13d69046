"""Training data for the learned star detector: synthetic stars on real star-free skies.

Each sample is a small patch of a real night-sky frame whose stars were
removed by morphological opening (:func:`skysift.simulation.background.star_free_background`,
bolide report §4.1), with fresh noise of the frame's measured sigma, on which
synthetic stars of known truth are injected (Gaussian or Moffat PSFs, an SNR
from 1.5 to 3000, saturated cores clipped at the frame's saturation level),
together with the report's negatives and nuisances (§4.7): burned-in caption
text, light-pollution gradients, dark tree/building silhouettes, satellite
streaks and bolides (rendered with :func:`skysift.simulation.streaks.render_streak`),
hot pixels and cosmic rays. Patches also come from the frames' non-sky parts
(trees, telescope structures, the real caption text), kept as they are.

The target is a segmentation mask (``True`` = star): a disk of radius
``max(1.5, 0.6 * FWHM)`` pixels around every injected star with SNR >=
``label_snr`` (3 by default); fainter stars are injected but not labelled.
Here SNR is the background-limited matched-filter SNR of a Gaussian star,

    SNR = flux / (sigma * sqrt(4 pi) * FWHM / 2.3548),

with ``sigma`` the background noise per pixel at the star (the same
definition is used by :func:`skysift.stars.evaluation.evaluate_stars`).

Patches are streamed in memory: batch ``b`` of seed ``s`` draws from
``numpy.random.default_rng([s, b])``, so the same seed gives the same bytes.

Backgrounds are split strictly: :data:`TRAIN_BACKGROUNDS` for training and
validation, :data:`HELD_OUT_BACKGROUNDS` only for evaluation.

Pixel coordinates are 0-based, (0, 0) the centre of the first pixel, x = column.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
from astropy.table import Table
from scipy import ndimage

from skysift.detection.background import estimate_background
from skysift.detection.stars import estimate_saturation
from skysift.errors import InputError
from skysift.learning.cards import JsonConfig
from skysift.simulation.background import load_background
from skysift.simulation.psf import GaussianPSF, MoffatPSF
from skysift.simulation.streaks import random_modulation, render_streak
from skysift.stars.learned import normalise_image

__all__ = [
    "TRAIN_BACKGROUNDS",
    "HELD_OUT_BACKGROUNDS",
    "StarDataConfig",
    "PreparedBackground",
    "StarPatch",
    "default_data_dir",
    "prepare_background",
    "snr_to_flux",
    "star_label",
    "render_star_patch",
    "iter_star_batches",
    "star_batch",
    "composite_frame",
]

#: Real frames (paths relative to the data folder, ``tests/data``) used for training.
TRAIN_BACKGROUNDS: tuple[str, ...] = (
    "magic_allsky/20180817_0055.fits",
    "umd_allsky/Meteor-20191028.png",
    "umd_allsky/Bug-20191028.png",
    "tetra3_startracker/2019-07-29T204726_Alt40_Azi-135_Try1.tiff",
    "tetra3_startracker/2019-07-29T204726_Alt40_Azi-45_Try1.tiff",
    "tetra3_startracker/2019-07-29T204726_Alt40_Azi45_Try1.tiff",
    "tetra3_startracker/2019-07-29T204726_Alt60_Azi-45_Try1.tiff",
    "cta_allsky/cloudy.fits.gz",
    "iceact_allsky/cloudy.fits",
    "astride_streak/long.fits",
    "fmdt_meteors/2022_tauh_maxred.jpg",
)

#: Real frames never used for training: evaluation only.
HELD_OUT_BACKGROUNDS: tuple[str, ...] = (
    "magic_allsky/20180817_0341.fits",
    "umd_allsky/Intruder-20200414.png",
    "tetra3_startracker/2019-07-29T204726_Alt60_Azi135_Try1.tiff",
)

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_CAPTION_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz:.-/ "


@dataclass
class StarDataConfig(JsonConfig):
    """Parameters of the training patches (configuration as data; saved in the model card).

    Attributes
    ----------
    size : int
        Patch side in pixels.
    phase : int
        1 = white dots on a flat noisy background (curriculum start, bolide
        report §4.1); 2 = synthetic stars on real star-free backgrounds with
        nuisances.
    n_stars_range : (int, int)
        Stars per patch, log-uniform.
    snr_range : (float, float)
        SNR of the injected stars (half log-uniform below ``snr_split``, half above).
    snr_split : float
        See ``snr_range``.
    label_snr : float
        Stars at or above this SNR are labelled; fainter ones are injected only.
    fwhm_range : (float, float)
        PSF FWHM in pixels (one per patch).
    moffat_fraction : float
        Fraction of patches with a Moffat PSF (beta in ``beta_range``), else Gaussian.
    beta_range : (float, float)
        Moffat wing index.
    label_radius : (float, float)
        The label disk radius is ``max(label_radius[0], label_radius[1] * FWHM)``.
    edge_fraction : float
        Fraction of patches placed anywhere (including non-sky parts: trees,
        structures, real captions); the others are >= 95 % sky.
    p_text, p_gradient, p_silhouette, p_streak, p_bolide, p_hot, p_cosmic : float
        Probability per patch of each nuisance.
    gain_range : (float, float)
        Gain (e-/ADU) for the stars' shot noise.
    norm_jitter : float
        Relative error put on the background level (in sigma) and rms used to
        normalise (models a background misestimate).
    """

    _label: ClassVar[str] = "star data"

    size: int = 64
    phase: int = 2
    n_stars_range: tuple[int, int] = (1, 40)
    snr_range: tuple[float, float] = (1.5, 3000.0)
    snr_split: float = 20.0
    label_snr: float = 3.0
    fwhm_range: tuple[float, float] = (1.3, 5.0)
    moffat_fraction: float = 0.5
    beta_range: tuple[float, float] = (2.0, 4.5)
    label_radius: tuple[float, float] = (1.5, 0.6)
    edge_fraction: float = 0.3
    p_text: float = 0.15
    p_gradient: float = 0.3
    p_silhouette: float = 0.12
    p_streak: float = 0.12
    p_bolide: float = 0.05
    p_hot: float = 0.4
    p_cosmic: float = 0.25
    gain_range: tuple[float, float] = (0.5, 5.0)
    norm_jitter: float = 0.1


@dataclass
class PreparedBackground:
    """A real frame prepared for star injection.

    Attributes
    ----------
    name : str
        The frame's path relative to the data folder.
    image, star_free, noise : ndarray, shape (H, W), float32
        The real frame, its star-free background and noise sigma (ADU).
    sky : ndarray of bool, shape (H, W)
        ``True`` = sky (stars are injected only there).
    level, rms : ndarray, shape (H, W), float32
        Background level and noise estimated on the real frame with its sky
        mask, as the detector does at inference (used to normalise).
    saturation : float or None
        Clipping level (ADU).
    step : float
        Quantisation step of the frame's values (0 = not quantised).
    """

    name: str
    image: np.ndarray
    star_free: np.ndarray
    noise: np.ndarray
    sky: np.ndarray
    level: np.ndarray
    rms: np.ndarray
    saturation: float | None
    step: float
    _sky_cum: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape ``(H, W)``."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))

    def sky_fraction(self, y0: int, x0: int, size: int) -> float:
        """Fraction of sky pixels in the ``size`` x ``size`` crop at (y0, x0)."""
        c = self._sky_cum
        s = c[y0 + size, x0 + size] - c[y0, x0 + size] - c[y0 + size, x0] + c[y0, x0]
        return float(s) / (size * size)


def default_data_dir() -> Path:
    """The folder of real frames: the repository's ``tests/data``.

    Raises
    ------
    InputError
        If it is not there (an installed package without the repository):
        pass ``data_dir`` explicitly.
    """
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "tests" / "data"
        if (cand / "magic_allsky").is_dir():
            return cand
    msg = "the real frames (tests/data of the skysift repository) were not found; pass data_dir"
    raise InputError(msg)


def _quantisation_step(image: np.ndarray) -> float:
    v = np.unique(image[np.isfinite(image)][:200_000])
    if len(v) < 2 or not np.allclose(v, np.round(v)):
        return 0.0
    step = float(np.round(np.min(np.diff(v))))
    return step if step >= 1.0 else 0.0


@functools.lru_cache(maxsize=32)
def _prepare_cached(path: str, name: str) -> PreparedBackground:

    bkg = load_background(path)
    image = np.asarray(bkg.image, np.float32)
    not_sky = ~bkg.sky
    est = estimate_background(np.where(np.isfinite(image), image, 0), not_sky | ~np.isfinite(image))
    sat = bkg.saturation or estimate_saturation(image)
    if sat is None:
        sat = float(np.nanmax(image))
    cum = np.zeros((image.shape[0] + 1, image.shape[1] + 1), np.int64)
    cum[1:, 1:] = np.cumsum(np.cumsum(bkg.sky, 0), 1)
    return PreparedBackground(
        name=name,
        image=image,
        star_free=np.asarray(bkg.star_free, np.float32),
        noise=np.maximum(np.asarray(bkg.noise, np.float32), 1e-3),
        sky=np.asarray(bkg.sky, bool),
        level=np.asarray(est.level, np.float32),
        rms=np.maximum(np.asarray(est.rms, np.float32), 1e-3),
        saturation=float(sat),
        step=_quantisation_step(image),
        _sky_cum=cum,
    )


def prepare_background(name: str, data_dir: str | Path | None = None) -> PreparedBackground:
    """Load and prepare one real frame (cached in memory).

    Parameters
    ----------
    name : str
        Path relative to ``data_dir`` (e.g. ``"magic_allsky/20180817_0055.fits"``).
    data_dir : path, optional
        Default :func:`default_data_dir`.

    Raises
    ------
    InputError
        If the file does not exist or cannot be read (the message names it).
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    path = (root / name).resolve()
    if not path.is_file():
        msg = f"background frame {path} does not exist"
        raise InputError(msg)
    return _prepare_cached(str(path), name)


def snr_to_flux(snr: Any, sigma: Any, fwhm: float) -> np.ndarray:
    """Flux (ADU) of a star of background-limited SNR ``snr`` (see the module docstring)."""
    return np.asarray(snr) * np.asarray(sigma) * math.sqrt(4 * math.pi) * fwhm / _FWHM_PER_SIGMA


def flux_to_snr(flux: Any, sigma: Any, fwhm: float) -> np.ndarray:
    """Inverse of :func:`snr_to_flux`."""
    return np.asarray(flux) / (np.asarray(sigma) * math.sqrt(4 * math.pi) * fwhm / _FWHM_PER_SIGMA)


def star_label(
    shape: tuple[int, int],
    x: Any,
    y: Any,
    fwhm: float,
    label_radius: tuple[float, float] = (1.5, 0.6),
) -> np.ndarray:
    """Segmentation mask (``True`` = star): disks around (x, y).

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)``.
    x, y : array_like, shape (N,)
        Star positions in pixels.
    fwhm : float
        PSF FWHM in pixels; the disk radius is
        ``max(label_radius[0], label_radius[1] * fwhm)``.
    label_radius : (float, float), optional

    Returns
    -------
    ndarray of bool, shape (H, W)
    """
    h, w = shape
    out = np.zeros((h, w), bool)
    r = max(label_radius[0], label_radius[1] * fwhm)
    ri = int(math.ceil(r))
    off = np.arange(-ri, ri + 1)
    for xi, yi in zip(np.atleast_1d(x), np.atleast_1d(y), strict=True):
        cx, cy = int(round(float(xi))), int(round(float(yi)))
        xs, ys = cx + off, cy + off
        d2 = (xs[None, :] - xi) ** 2 + (ys[:, None] - yi) ** 2
        inside = (
            (d2 <= r * r)
            & (xs[None, :] >= 0)
            & (xs[None, :] < w)
            & (ys[:, None] >= 0)
            & (ys[:, None] < h)
        )
        yy, xx = np.nonzero(inside)
        out[ys[yy], xs[xx]] = True
    return out


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int | None = None) -> Any:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _draw_snr(rng: np.random.Generator, n: int, cfg: StarDataConfig) -> np.ndarray:
    lo, hi = cfg.snr_range
    split = min(max(cfg.snr_split, lo), hi)
    faint = rng.random(n) < 0.5
    return np.where(faint, _log_uniform(rng, lo, split, n), _log_uniform(rng, split, hi, n)).astype(
        float
    )


class _FastMoffat:
    """Moffat stars sampled at 3x3 sub-pixel points per pixel (fast enough for streaming).

    Same profile as :class:`skysift.simulation.psf.MoffatPSF`; the stamp
    (radius 4 FWHM) is normalised to the encircled energy at its radius.
    """

    def __init__(self, fwhm: float, beta: float) -> None:

        self.psf = MoffatPSF(fwhm, beta)
        self.fwhm = fwhm

    def render(self, shape: tuple[int, int], x: Any, y: Any, flux: Any, **_: Any) -> np.ndarray:
        h, w = shape
        out = np.zeros((h, w))
        r = int(math.ceil(4 * self.fwhm))
        off = np.arange(-r, r + 1)
        sub = (np.arange(3) - 1) / 3.0
        xs, ys, fs = (np.atleast_1d(np.asarray(v, float)) for v in (x, y, flux))
        if xs.size == 0:
            return out
        x0, y0 = np.rint(xs).astype(int), np.rint(ys).astype(int)
        dx = (off[None, :, None] + sub[None, None, :]) - (xs - x0)[:, None, None]  # (N, P, 3)
        dy = (off[None, :, None] + sub[None, None, :]) - (ys - y0)[:, None, None]
        r2 = dx[:, None, :, None, :] ** 2 + dy[:, :, None, :, None] ** 2  # (N, Py, Px, 3, 3)
        prof = self.psf.profile(np.sqrt(r2)).mean(axis=(3, 4))
        prof *= float(self.psf.encircled_energy(r)) / prof.sum(axis=(1, 2), keepdims=True)
        stamps = prof * fs[:, None, None]
        for k in range(xs.size):
            ya, yb = y0[k] - r, y0[k] + r + 1
            xa, xb = x0[k] - r, x0[k] + r + 1
            cy0, cx0 = max(ya, 0), max(xa, 0)
            cy1, cx1 = min(yb, h), min(xb, w)
            if cy1 <= cy0 or cx1 <= cx0:
                continue
            out[cy0:cy1, cx0:cx1] += stamps[k, cy0 - ya : cy1 - ya, cx0 - xa : cx1 - xa]
        return out


def _make_psf(rng: np.random.Generator, cfg: StarDataConfig) -> tuple[Any, float]:

    fwhm = float(rng.uniform(*cfg.fwhm_range))
    if rng.random() < cfg.moffat_fraction:
        return _FastMoffat(fwhm, float(rng.uniform(*cfg.beta_range))), fwhm
    return GaussianPSF(fwhm), fwhm


@dataclass
class StarPatch:
    """One training sample.

    Attributes
    ----------
    image : ndarray, shape (S, S), float32
        The patch in ADU (before normalisation and augmentation).
    x : ndarray, shape (S, S), float32
        The network input (normalised, augmented).
    label : ndarray of bool, shape (S, S)
        The target (``True`` = star), augmented like ``x``.
    truth : astropy.table.Table
        Injected stars (coordinates of ``image``, before augmentation):
        ``x``, ``y`` (px), ``flux`` (ADU), ``snr``, ``labelled``.
    fwhm : float
        PSF FWHM (px).
    """

    image: np.ndarray
    x: np.ndarray
    label: np.ndarray
    truth: Table
    fwhm: float


def _crop(bg: PreparedBackground, rng: np.random.Generator, size: int, anywhere: bool):
    h, w = bg.shape
    if h < size or w < size:
        msg = f"background {bg.name} of shape {bg.shape} is smaller than the patch size {size}"
        raise InputError(msg)
    best = None
    for _ in range(60):
        y0 = int(rng.integers(0, h - size + 1))
        x0 = int(rng.integers(0, w - size + 1))
        f = bg.sky_fraction(y0, x0, size)
        if (anywhere and f >= 0.1) or f >= 0.95:
            return y0, x0
        if best is None or f > best[0]:
            best = (f, y0, x0)
    return best[1], best[2]


def _caption(out: np.ndarray, rng: np.random.Generator, level: float, top: float) -> np.ndarray:
    """Burn caption text into ``out`` (in place); return its pixel mask."""
    s = out.shape[0]
    canvas = np.zeros(out.shape, np.uint8)
    n = int(rng.integers(4, 16))
    text = "".join(rng.choice(list(_CAPTION_CHARS), n))
    font = int(
        rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX])
    )
    scale = float(rng.uniform(0.3, 1.1))
    thick = int(rng.integers(1, 3))
    org = (int(rng.integers(-s // 2, s // 2)), int(rng.integers(8, s + 8)))
    line = cv2.LINE_AA if rng.random() < 0.7 else cv2.LINE_8
    cv2.putText(canvas, text, org, font, scale, 255, thick, line)
    alpha = canvas.astype(np.float32) / 255.0
    value = level + float(rng.uniform(0.25, 1.0)) * (top - level)
    out *= 1.0 - alpha
    out += alpha * value
    return canvas > 0


def _silhouette(
    out: np.ndarray, rng: np.random.Generator, level: float, sigma: float
) -> np.ndarray:
    """Paint a dark silhouette (tree line, building) rising from the bottom edge."""
    s = out.shape[0]
    n = int(rng.integers(4, 24))
    xs = np.linspace(-2, s + 1, n)
    base = rng.uniform(0.2, 0.8) * s
    ys = s - np.clip(base + np.cumsum(rng.normal(0, s / 8, n)), 2, s - 2)
    if rng.random() < 0.5:  # building: flat roofs
        ys = np.round(ys / 8) * 8
    poly = np.concatenate([[[-2, s + 2]], np.stack([xs, ys], 1), [[s + 2, s + 2]]]).astype(np.int32)
    canvas = np.zeros(out.shape, np.uint8)
    cv2.fillPoly(canvas, [poly], 1)
    for _ in range(int(rng.integers(0, 6))):  # foliage blobs
        c = (int(rng.uniform(0, s)), int(rng.uniform(s / 3, s)))
        cv2.circle(canvas, c, int(rng.integers(2, 10)), 1, -1)
    inside = canvas > 0
    dark = level - float(rng.uniform(0.0, 8.0)) * sigma
    out[inside] = dark + rng.normal(0, float(rng.uniform(0.2, 1.0)) * sigma, int(inside.sum()))
    return inside


def _streak(
    out: np.ndarray, rng: np.random.Generator, sigma: float, fwhm: float, bolide: bool
) -> None:

    s = out.shape[0]
    length = float(_log_uniform(rng, 15, 200) if not bolide else _log_uniform(rng, 30, 300))
    angle = rng.uniform(0, np.pi)
    cx, cy = rng.uniform(0, s - 1, 2)
    dx, dy = 0.5 * length * np.cos(angle), 0.5 * length * np.sin(angle)
    width = fwhm * (float(rng.uniform(0.8, 1.5)) if not bolide else float(rng.uniform(1.5, 4)))
    b = float(_log_uniform(rng, 2, 60) if not bolide else _log_uniform(rng, 20, 600))
    mod = random_modulation(float(rng.uniform(0.2, 1.0)), rng=rng) if bolide else None
    img, _ = render_streak(
        (s, s),
        cx - dx,
        cy - dy,
        cx + dx,
        cy + dy,
        b * sigma * width * length,
        width,
        modulation=mod,
    )
    out += img.astype(np.float32)


def render_star_patch(
    bg: PreparedBackground | None,
    rng: np.random.Generator,
    config: StarDataConfig | None = None,
    *,
    augment: bool = True,
) -> StarPatch:
    """Draw one training patch.

    Parameters
    ----------
    bg : PreparedBackground or None
        The real background; ``None`` (or ``config.phase == 1``) gives a flat
        background with white Gaussian noise and no nuisances.
    rng : numpy.random.Generator
    config : StarDataConfig, optional
    augment : bool, optional
        Random 90-degree rotation, flips and normalisation jitter. Default True.

    Returns
    -------
    StarPatch
    """

    cfg = config or StarDataConfig()
    s = int(cfg.size)
    flat = bg is None or cfg.phase == 1
    if flat:
        sigma0 = float(_log_uniform(rng, 2.0, 200.0))
        level0 = float(rng.uniform(5, 50)) * sigma0
        base = (level0 + sigma0 * rng.standard_normal((s, s))).astype(np.float32)
        sky = np.ones((s, s), bool)
        noise = np.full((s, s), sigma0, np.float32)
        level = np.full((s, s), level0, np.float32)
        rms = noise.copy()
        saturation, step = None, 0.0
    else:
        y0, x0 = _crop(bg, rng, s, rng.random() < cfg.edge_fraction)
        sl = (slice(y0, y0 + s), slice(x0, x0 + s))
        sky = bg.sky[sl]
        noise = bg.noise[sl]
        base = np.where(
            sky, bg.star_free[sl] + noise * rng.standard_normal((s, s)), bg.image[sl]
        ).astype(np.float32)
        level, rms = bg.level[sl], bg.rms[sl]
        saturation, step = bg.saturation, bg.step
    psf, fwhm = _make_psf(rng, cfg)
    lo, hi = cfg.n_stars_range
    n = int(round(float(_log_uniform(rng, max(lo, 0.5), max(hi, 1)))))
    xs = rng.uniform(-1.5, s + 0.5, n)
    ys = rng.uniform(-1.5, s + 0.5, n)
    ix = np.clip(np.round(xs).astype(int), 0, s - 1)
    iy = np.clip(np.round(ys).astype(int), 0, s - 1)
    on_sky = sky[iy, ix]
    xs, ys, ix, iy = xs[on_sky], ys[on_sky], ix[on_sky], iy[on_sky]
    snr = _draw_snr(rng, len(xs), cfg)
    flux = snr_to_flux(snr, noise[iy, ix], fwhm)
    out = base.astype(np.float32)
    if len(xs):
        signal = psf.render((s, s), xs, ys, flux, oversample=3) * sky
        gain = float(rng.uniform(*cfg.gain_range))
        signal = signal + np.sqrt(np.clip(signal, 0, None) / gain) * rng.standard_normal((s, s))
        out += signal.astype(np.float32)
    hidden = np.zeros((s, s), bool)
    lvl, sig = float(np.median(level)), float(np.median(noise))
    top = saturation if saturation is not None else lvl + 300 * sig
    if not flat:
        if rng.random() < cfg.p_gradient:
            yy, xx = np.mgrid[0:s, 0:s] / s
            a = rng.normal(0, 1, 2) * float(_log_uniform(rng, 0.3, 8)) * sig
            out += (a[0] * (xx - 0.5) + a[1] * (yy - 0.5)).astype(np.float32)
        if rng.random() < cfg.p_streak:
            _streak(out, rng, sig, fwhm, bolide=False)
        if rng.random() < cfg.p_bolide:
            _streak(out, rng, sig, fwhm, bolide=True)
        if rng.random() < cfg.p_hot:
            k = int(rng.integers(1, 6))
            hy, hx = rng.integers(0, s, k), rng.integers(0, s, k)
            out[hy, hx] += (_log_uniform(rng, 5, 1000, k) * sig).astype(np.float32)
        if rng.random() < cfg.p_cosmic:
            canvas = np.zeros((s, s), np.float32)
            for _ in range(int(rng.integers(1, 4))):
                p = rng.uniform(0, s, 2)
                d = rng.normal(0, 1, 2)
                d = d / (np.hypot(*d) + 1e-9) * float(rng.uniform(2, 14))
                cv2.line(
                    canvas,
                    tuple(int(v) for v in p),
                    tuple(int(v) for v in p + d),
                    float(_log_uniform(rng, 10, 500)) * sig,
                    1,
                    cv2.LINE_8,
                )
            out += canvas
        if rng.random() < cfg.p_silhouette:
            hidden |= _silhouette(out, rng, lvl, sig)
        if rng.random() < cfg.p_text:
            hidden |= _caption(out, rng, lvl, top)
    if saturation is not None:
        out = np.minimum(out, saturation)
    if step > 0:
        out = np.clip(np.round(out / step) * step, 0, None)
    labelled = snr >= cfg.label_snr
    if len(xs):
        labelled &= ~hidden[iy, ix]
    label = star_label((s, s), xs[labelled], ys[labelled], fwhm, tuple(cfg.label_radius))
    lvl_n, rms_n = level, rms
    if augment and cfg.norm_jitter > 0:
        j = cfg.norm_jitter
        lvl_n = level + float(rng.normal(0, j)) * rms
        rms_n = rms * float(np.exp(rng.normal(0, j)))
    x = normalise_image(out, lvl_n, rms_n)
    lab = label
    if augment:
        k = int(rng.integers(4))
        x, lab = np.rot90(x, k), np.rot90(lab, k)
        if rng.random() < 0.5:
            x, lab = x[:, ::-1], lab[:, ::-1]
    truth = Table({"x": xs, "y": ys, "flux": flux, "snr": snr, "labelled": labelled})
    return StarPatch(
        out, np.ascontiguousarray(x, np.float32), np.ascontiguousarray(lab), truth, fwhm
    )


def _train_set(
    backgrounds: Sequence[str] | None, data_dir: str | Path | None
) -> list[PreparedBackground]:
    names = TRAIN_BACKGROUNDS if backgrounds is None else tuple(backgrounds)
    leaked = set(names) & set(HELD_OUT_BACKGROUNDS)
    if leaked:
        msg = f"held-out frames cannot be used for training: {sorted(leaked)}"
        raise InputError(msg)
    return [prepare_background(n, data_dir) for n in names]


def star_batch(
    seed: int,
    index: int,
    batch_size: int,
    *,
    backgrounds: Sequence[PreparedBackground] = (),
    config: StarDataConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``index`` of the stream of seed ``seed``.

    Returns
    -------
    x : ndarray, shape (B, 1, S, S), float32
        Normalised patches.
    y : ndarray, shape (B, 1, S, S), float32
        Targets (1 = star).
    """
    cfg = config or StarDataConfig()
    rng = np.random.default_rng([int(seed), int(index)])
    xs, ys = [], []
    for _ in range(int(batch_size)):
        bg = backgrounds[int(rng.integers(len(backgrounds)))] if backgrounds else None
        p = render_star_patch(bg, rng, cfg)
        xs.append(p.x)
        ys.append(p.label)
    return (
        np.stack(xs)[:, None].astype(np.float32),
        np.stack(ys)[:, None].astype(np.float32),
    )


def iter_star_batches(
    seed: int,
    n_batches: int,
    batch_size: int = 32,
    *,
    config: StarDataConfig | None = None,
    backgrounds: Sequence[str] | None = None,
    data_dir: str | Path | None = None,
    start: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream ``n_batches`` batches of (patch, star mask) pairs.

    Parameters
    ----------
    seed : int
        Batch ``b`` draws from ``numpy.random.default_rng([seed, b])``.
    n_batches : int
    batch_size : int, optional
        Default 32.
    config : StarDataConfig, optional
    backgrounds : sequence of str, optional
        Frame names relative to ``data_dir``; default :data:`TRAIN_BACKGROUNDS`.
        Held-out frames are refused.
    data_dir : path, optional
    start : int, optional
        Index of the first batch. Default 0.

    Yields
    ------
    (x, y) : ndarray, shapes (B, 1, S, S), float32
        See :func:`star_batch`.

    Raises
    ------
    InputError
        If a held-out frame is asked for, or a frame cannot be read.
    """
    cfg = config or StarDataConfig()
    bgs = [] if cfg.phase == 1 else _train_set(backgrounds, data_dir)
    for b in range(int(start), int(start) + int(n_batches)):
        yield star_batch(seed, b, batch_size, backgrounds=bgs, config=cfg)


def composite_frame(
    bg: PreparedBackground,
    rng: np.random.Generator | int | None = None,
    *,
    n_stars: int = 600,
    snr_min: float = 2.0,
    snr_max: float = 3000.0,
    slope: float = 0.7,
    fwhm: float | None = None,
    border: float = 6.0,
) -> tuple[np.ndarray, Table]:
    """A full evaluation frame: stars of known truth on a real frame's star-free sky.

    Sky pixels are the star-free background plus fresh noise plus the
    injected stars; non-sky pixels (trees, structures, captions) keep the
    real frame's values. SNRs follow a power law ``N(> SNR) ~ SNR^-slope``
    (more faint stars than bright ones, as in real star counts).

    Parameters
    ----------
    bg : PreparedBackground
    rng : Generator, int or None
    n_stars : int, optional
        Default 600.
    snr_min, snr_max : float, optional
    slope : float, optional
        Default 0.7.
    fwhm : float, optional
        Gaussian PSF FWHM (px); default uniform in (1.8, 3.5).
    border : float, optional
        Minimum distance (px) from non-sky pixels. Default 6.

    Returns
    -------
    image : ndarray, shape (H, W), float32
    truth : astropy.table.Table
        ``x``, ``y`` (px), ``flux`` (ADU), ``snr``, ``fwhm`` (px).
    """

    rng = np.random.default_rng(rng)
    fwhm = float(rng.uniform(1.8, 3.5)) if fwhm is None else float(fwhm)
    allowed = ndimage.distance_transform_edt(np.pad(bg.sky, 1))[1:-1, 1:-1] > border
    iy, ix = np.nonzero(allowed)
    k = rng.integers(len(ix), size=n_stars)
    xs = ix[k] + rng.uniform(-0.5, 0.5, n_stars)
    ys = iy[k] + rng.uniform(-0.5, 0.5, n_stars)
    snr = np.minimum(snr_min * rng.random(n_stars) ** (-1.0 / slope), snr_max)
    sigma = bg.noise[iy[k], ix[k]]
    flux = snr_to_flux(snr, sigma, fwhm)
    signal = GaussianPSF(fwhm).render(bg.shape, xs, ys, flux) * bg.sky
    signal = signal + np.sqrt(np.clip(signal, 0, None)) * rng.standard_normal(bg.shape)
    noise = bg.noise * rng.standard_normal(bg.shape)
    out = np.where(bg.sky, bg.star_free + noise + signal, bg.image)
    if bg.saturation is not None:
        out = np.minimum(out, bg.saturation)
    if bg.step > 0:
        out = np.clip(np.round(out / bg.step) * bg.step, 0, None)
    truth = Table({"x": xs, "y": ys, "flux": flux, "snr": snr})
    truth["fwhm"] = fwhm
    return out.astype(np.float32), truth
