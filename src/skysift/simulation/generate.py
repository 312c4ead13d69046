"""Sample generators for training and for ``skysift simulate``: one place that joins the simulator.

Each kind has a generator ``sample_<kind>(rng, **params) -> Sample`` that
returns an image (or a stack), its truth table and its segmentation mask,
in memory: training code streams them with :func:`iter_samples` without
touching the disk. :func:`write_samples` writes FITS (image + mask
extension), ECSV truth and PNG previews (and MP4 for bolide clips); the same
seed gives the same bytes, because sample ``i`` draws from
``numpy.random.default_rng([seed, i])``.

Kinds: ``stars`` (a star field, synthetic or on a real background),
``streaks`` (a 256x256 cutout with a satellite streak), ``moving`` (a fast
mover in one of the three observing modes), ``bolide`` (a meteor-camera clip
on a real all-sky background), ``stamps`` (SSO / cosmic ray / galaxy / star
postage stamps, 3 dithers as channels).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack
from PIL import Image
from tqdm import tqdm

from skysift.data import sample as bundled
from skysift.errors import InputError
from skysift.outputs.files import atomic_path, write_table
from skysift.simulation.background import load_background
from skysift.simulation.meteors import LightCurve, Meteor, MeteorVideo
from skysift.simulation.movers import MODES, simulate_fast_mover
from skysift.simulation.scenes import CompositeScene, SimulatedScene
from skysift.simulation.stamps import STAMP_KINDS, make_stamp
from skysift.simulation.streaks import render_streak

__all__ = ["KINDS", "Sample", "iter_samples", "sample", "write_samples", "load_config"]


@dataclass
class Sample:
    """One simulated sample.

    Attributes
    ----------
    image : ndarray, float32
        ``(H, W)`` image, ``(T, H, W)`` clip or ``(C, H, W)`` dithered stamp, in ADU.
    truth : astropy.table.Table
        Per-object (or per-frame) truth.
    mask : ndarray of bool or None
        Segmentation mask, ``True`` = object; same leading shape as ``image``.
    meta : dict
        Parameters of the sample (kind, index, seed, ...).
    """

    image: np.ndarray
    truth: Table
    mask: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _robust_sigma(image: np.ndarray) -> float:
    # 1.4826 MAD on every 3rd pixel of every 3rd row: plenty for a noise level, 9x cheaper.
    sub = image[::3, ::3]
    v = sub[np.isfinite(sub)]
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) or 1.0


@functools.lru_cache(maxsize=8)
def _background(path: str) -> Any:

    return load_background(path)


def _backgrounds(paths: Sequence[str | os.PathLike[str]] | None) -> list[Any]:
    out = []
    for p in paths or ():
        p = Path(p)
        if not p.is_file():
            msg = f"background file {p} does not exist"
            raise InputError(msg)
        out.append(_background(str(p.resolve())))
    return out


def _sky_crop(bkg: Any, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size`` x ``size`` crop of a background, mostly sky."""
    h, w = bkg.shape
    if h < size or w < size:
        msg = f"background of shape {bkg.shape} is smaller than the cutout size {size}"
        raise InputError(msg)
    for _ in range(200):
        y0 = int(rng.integers(0, h - size + 1))
        x0 = int(rng.integers(0, w - size + 1))
        sky = bkg.sky[y0 : y0 + size, x0 : x0 + size]
        if sky.mean() > 0.95:
            break
    return bkg.image[y0 : y0 + size, x0 : x0 + size].astype(np.float32), sky


def sample_stars(
    rng: np.random.Generator,
    *,
    shape: tuple[int, int] = (256, 256),
    backgrounds: Sequence[Any] = (),
    n_stars: int = 40,
    fwhm: float = 3.0,
    **kw: Any,
) -> Sample:
    """A star field: :class:`SimulatedScene`, or a :class:`CompositeScene` on a real background crop."""

    if backgrounds:
        bkg = backgrounds[int(rng.integers(len(backgrounds)))]
        scene = CompositeScene(bkg, n_stars=n_stars, psf=fwhm, **kw)
        image, truth = scene.render(rng)
    else:
        image, truth = SimulatedScene(shape=tuple(shape), psf=fwhm, **kw).render(rng)
    return Sample(image.astype(np.float32), truth, None, {"fwhm": fwhm})


def sample_streaks(
    rng: np.random.Generator,
    *,
    size: int = 256,
    backgrounds: Sequence[Any] = (),
    fwhm_range: tuple[float, float] = (1.5, 4.0),
    length_range: tuple[float, float] = (10.0, 400.0),
    brightness_range: tuple[float, float] = (0.2, 30.0),
    **kw: Any,
) -> Sample:
    """A ``size`` x ``size`` cutout with one satellite streak and its truth.

    The streak's flux per pixel of length is ``b * sigma * FWHM`` with ``b``
    log-uniform in ``brightness_range`` (from invisible to bright), so its
    SNR_avg spans the satellite paper's bins. It may cross the border.
    """

    fwhm = float(rng.uniform(*fwhm_range))
    if backgrounds:
        bkg = backgrounds[int(rng.integers(len(backgrounds)))]
        base, _ = _sky_crop(bkg, size, rng)
    else:
        base, _ = SimulatedScene(shape=(size, size), psf=fwhm, **kw).render(rng)
    sigma = _robust_sigma(base)
    length = _log_uniform(rng, *length_range)
    angle = float(rng.uniform(0, 180))
    cx, cy = rng.uniform(0, size - 1, 2)
    half = 0.5 * length * np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    x1, y1 = cx - half[0], cy - half[1]
    x2, y2 = cx + half[0], cy + half[1]
    flux = _log_uniform(rng, *brightness_range) * sigma * fwhm * length
    streak, truth = render_streak((size, size), x1, y1, x2, y2, flux, fwhm, sigma=sigma, rng=rng)
    lit = streak > 0  # photon noise only where the streak puts light
    image = base.copy()
    image[lit] += rng.poisson(streak[lit]).astype(np.float32)
    return Sample(image, truth.table, truth.mask, {"fwhm": fwhm, "sigma": sigma})


def sample_moving(rng: np.random.Generator, *, mode: str | None = None, **kw: Any) -> Sample:
    """A fast mover in one observing mode (random if ``mode`` is None), with its motion prior."""

    mode = mode or MODES[int(rng.integers(len(MODES)))]
    res = simulate_fast_mover(mode, rng=rng, **kw)
    return Sample(
        res.image.astype(np.float32),
        res.truth.table,
        res.truth.mask,
        {"mode": mode, "prior": res.prior},
    )


def sample_stamps(
    rng: np.random.Generator, *, kind: str | None = None, n_dithers: int = 3, **kw: Any
) -> Sample:
    """A postage stamp (SSO, cosmic ray, galaxy or star), ``n_dithers`` dithers as channels."""

    kind = kind or STAMP_KINDS[int(rng.integers(len(STAMP_KINDS)))]
    stamp, truth = make_stamp(kind, rng, n_dithers=n_dithers, **kw)
    return Sample(np.asarray(stamp, np.float32), truth, None, {"stamp_kind": kind})


@functools.lru_cache(maxsize=1)
def _default_bolide_background() -> Any:

    return _background(str(bundled("magic-allsky").path))


def sample_bolide(
    rng: np.random.Generator,
    *,
    backgrounds: Sequence[Any] = (),
    n_frames: int = 25,
    fps: float = 25.0,
    peak_mag_range: tuple[float, float] = (-6.0, 2.0),
    speed_range: tuple[float, float] = (100.0, 600.0),
    zero_point: float = 15.0,
    **kw: Any,
) -> Sample:
    """A meteor-camera clip: a bolide crossing a real all-sky background (bundled MAGIC frame by default)."""

    bkg = (
        backgrounds[int(rng.integers(len(backgrounds)))]
        if backgrounds
        else _default_bolide_background()
    )
    ys, xs = np.nonzero(bkg.sky)
    i = int(rng.integers(len(xs)))
    start = (float(xs[i]), float(ys[i]))
    speed = float(rng.uniform(*speed_range))
    duration = n_frames / fps * float(rng.uniform(0.4, 0.9))
    angle = rng.uniform(0, 2 * np.pi)
    length = speed * duration
    end = (start[0] + length * np.cos(angle), start[1] + length * np.sin(angle))
    curve = LightCurve.meteor(float(rng.uniform(*peak_mag_range)), duration)
    meteor = Meteor(
        start,
        end,
        speed,
        curve,
        t_start_s=float(rng.uniform(0, n_frames / fps - duration)),
        wake_fraction=0.2,
    )
    video = MeteorVideo(bkg, meteor, n_frames=n_frames, fps=fps, zero_point=zero_point, **kw)
    frames, truth = video.render(rng)
    mask = np.stack(list(truth["mask"])) if len(truth) else np.zeros(frames.shape, bool)
    table = truth.copy()
    table.remove_column("mask")
    return Sample(frames.astype(np.float32), table, mask, {"fps": fps})


KINDS: dict[str, Callable[..., Sample]] = {
    "stars": sample_stars,
    "streaks": sample_streaks,
    "moving": sample_moving,
    "bolide": sample_bolide,
    "stamps": sample_stamps,
}


def _generator(kind: str) -> Callable[..., Sample]:
    try:
        return KINDS[kind]
    except KeyError:
        msg = f"unknown simulation kind {kind!r}; valid: {', '.join(KINDS)}"
        raise InputError(msg) from None


def sample(
    kind: str,
    seed: int,
    index: int = 0,
    *,
    backgrounds: Sequence[str | os.PathLike[str]] | None = None,
    **params: Any,
) -> Sample:
    """Sample ``index`` of a seeded series (reproducible on its own).

    Raises
    ------
    InputError
        For an unknown kind, a missing background file or bad parameters.
    """
    gen = _generator(kind)
    rng = np.random.default_rng([int(seed), int(index)])
    kw = dict(params)
    if kind in ("stars", "streaks", "bolide"):
        kw["backgrounds"] = _backgrounds(backgrounds)
    try:
        s = gen(rng, **kw)
    except TypeError as err:
        msg = f"bad parameter for simulation kind {kind!r}: {err}"
        raise InputError(msg) from err
    s.meta.update({"kind": kind, "seed": int(seed), "index": int(index)})
    return s


def iter_samples(
    kind: str, n: int | None = None, *, seed: int = 0, **params: Any
) -> Iterator[Sample]:
    """Stream samples in memory (endless when ``n`` is None), e.g. for training."""
    i = 0
    while n is None or i < n:
        yield sample(kind, seed, i, **params)
        i += 1


def load_config(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Read simulation parameters from a JSON file (``{"param": value, ...}``)."""
    if path is None:
        return {}
    path = Path(path)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"config file {path} does not exist"
        raise InputError(msg) from None
    except (OSError, json.JSONDecodeError) as err:
        msg = f"config file {path} is not valid JSON: {err}"
        raise InputError(msg) from err
    if not isinstance(cfg, dict):
        msg = f"config file {path} must hold a JSON object of parameters"
        raise InputError(msg)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}


def _preview(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1, 99.8])
    return (np.clip((image - lo) / max(hi - lo, 1e-9), 0, 1) ** 0.5 * 255).astype(np.uint8)


def _write_sample(s: Sample, stem: Path) -> list[Path]:

    paths = []
    hdus = [fits.PrimaryHDU(s.image)]
    hdus[0].header["SIMKIND"] = s.meta["kind"]
    hdus[0].header["SIMSEED"] = s.meta["seed"]
    hdus[0].header["SIMINDEX"] = s.meta["index"]
    if s.mask is not None:
        hdus.append(fits.ImageHDU(s.mask.astype(np.uint8), name="MASK"))
    if "prior" in s.meta:
        hdus.append(fits.ImageHDU(np.asarray(s.meta["prior"], np.float32), name="PRIOR"))
    fits_path = stem.with_suffix(".fits")
    with atomic_path(fits_path) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
    paths.append(fits_path)
    truth = s.truth.copy()
    for k, v in s.meta.items():
        if np.isscalar(v):
            truth.meta[k] = v
    paths.append(write_table(truth, stem.with_suffix(".truth.ecsv")))
    image = s.image
    if image.ndim == 3 and s.meta["kind"] == "bolide":
        image = image.max(axis=0)  # max-reduction of the clip
        paths.append(_write_mp4(s.image, stem.with_suffix(".mp4"), s.meta.get("fps", 25.0)))
    elif image.ndim == 3:
        image = np.concatenate(list(image), axis=1)  # dithers side by side
    png = stem.with_suffix(".png")
    with atomic_path(png) as tmp:
        Image.fromarray(_preview(image)).save(tmp, format="PNG")
    paths.append(png)
    return paths


def _write_mp4(frames: np.ndarray, path: Path, fps: float) -> Path:

    lo, hi = np.percentile(frames, [1, 99.9])
    with atomic_path(path) as tmp:
        h, w = frames.shape[1:]
        writer = cv2.VideoWriter(
            str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h), isColor=False
        )
        if not writer.isOpened():
            msg = f"cannot write video {path} (no mp4v encoder in OpenCV)"
            raise InputError(msg)
        for f in frames:
            writer.write((np.clip((f - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8))
        writer.release()
    return path


def write_samples(
    kind: str,
    n: int,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    backgrounds: Sequence[str | os.PathLike[str]] | None = None,
    progress: bool = True,
    **params: Any,
) -> Table:
    """Write ``n`` samples of ``kind`` into ``out`` and a ``manifest.ecsv``.

    Returns
    -------
    astropy.table.Table
        The manifest: ``index``, ``fits``, ``truth``, ``preview``, ``n_objects``.

    Raises
    ------
    InputError
        If ``n`` < 1, the kind is unknown, or a parameter is invalid.
    """

    if int(n) < 1:
        msg = f"n must be at least 1, got {n}"
        raise InputError(msg)
    _generator(kind)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in tqdm(range(int(n)), desc=f"simulate {kind}", disable=not progress, unit="sample"):
        s = sample(kind, seed, i, backgrounds=backgrounds, **params)
        paths = _write_sample(s, out / f"{kind}_{i:05d}")
        rows.append(
            Table(
                {
                    "index": [i],
                    "fits": [paths[0].name],
                    "truth": [paths[1].name],
                    "preview": [paths[-1].name],
                    "n_objects": [len(s.truth)],
                }
            )
        )
    manifest = vstack(rows)
    manifest.meta.update({"kind": kind, "seed": int(seed), "n": int(n)})
    write_table(manifest, out / "manifest.ecsv")
    return manifest
