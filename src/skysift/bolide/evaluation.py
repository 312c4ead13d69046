"""Held-out evaluation of the bolide light curve: composite clips on real frames with known truth.

A composite clip is a real all-sky frame, repeated at the video's frame rate
with fresh noise in every frame, into which the simulator
(:class:`skysift.simulation.meteors.MeteorVideo`) injects a bolide along a
great circle of the sky through the frame's own fisheye calibration. The
injected magnitudes are on the frame's photometric scale: the bolide is
rendered with the frame's zero point (at the middle of its path), and the
true magnitude of each frame is the calibration's magnitude of the injected
head flux at the head's true position. The score therefore measures the
segmentation, tracking, photometry and the re-calibration of the clip's
median stack.

Truth masks: noise-free bolide signal >= ``MASK_SIGMA`` times the median
sky noise of the frame, the definition the learned segmenter is trained on.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from skysift.bolide.pipeline import _fwhm, run_bolide, zero_point_terms
from skysift.calibration.photometric import airmass
from skysift.errors import NoDetectionsWarning
from skysift.io.frame import FrameSequence
from skysift.simulation.background import load_background
from skysift.simulation.meteors import Flare, LightCurve, Meteor, MeteorVideo

__all__ = [
    "BolideParams",
    "CompositeClip",
    "MASK_SIGMA",
    "composite_clip",
    "evaluate_bolide_clips",
    "random_params",
    "score_light_curve",
    "score_masks",
]

#: Truth mask level: noise-free bolide signal >= MASK_SIGMA x the median sky noise.
MASK_SIGMA = 2.0


@dataclass(frozen=True)
class BolideParams:
    """A simulated bolide on the sky.

    Attributes
    ----------
    start, end : (float, float)
        ``(alt, az)`` of the path's ends, degrees.
    speed : float
        Angular speed, degrees per second.
    peak_mag : float
        Peak of the smooth light curve (mag, on the frame's scale).
    duration_s : float
        Time from the start to the end of the light curve.
    peak_fraction : float
        Where the peak falls, as a fraction of the duration.
    flares : tuple of (time_s, amplitude_mag, width_s)
    t_start_s : float
        Start in the clip's clock (s).
    wake_fraction, wake_tau_s : float
        Wake (see :class:`skysift.simulation.meteors.Meteor`).
    """

    start: tuple[float, float]
    end: tuple[float, float]
    speed: float
    peak_mag: float
    duration_s: float
    peak_fraction: float = 0.6
    flares: tuple[tuple[float, float, float], ...] = ()
    t_start_s: float = 0.16
    wake_fraction: float = 0.04
    wake_tau_s: float = 0.06


def random_params(
    rng: np.random.Generator, *, n_frames: int = 40, fps: float = 25.0
) -> BolideParams:
    """Draw a bolide: alt 20-75 deg, speed 8-35 deg/s, peak -3 to +3 mag, 0-2 flares.

    The path is shortened to what the bolide crosses in its duration, which
    fits the clip (it starts 0.1-0.3 s in and ends before the last frame).
    """
    t_start = float(rng.uniform(0.1, 0.3))
    duration = float(rng.uniform(0.35, min(1.2, n_frames / fps - t_start - 0.1)))
    speed = float(rng.uniform(8.0, 35.0))
    alt0 = float(rng.uniform(30.0, 75.0))
    az0 = float(rng.uniform(0.0, 360.0))
    # head towards a random direction on the sky; the arc is what is crossed in the duration
    arc = speed * duration
    bearing = float(rng.uniform(0, 2 * np.pi))
    alt1 = float(np.clip(alt0 + arc * np.cos(bearing), 15.0, 85.0))
    az1 = float((az0 + arc * np.sin(bearing) / max(np.cos(np.radians(alt0)), 0.2)) % 360.0)
    n_flares = int(rng.integers(0, 3))
    flares = tuple(
        (float(rng.uniform(0.2, 0.8) * duration), float(rng.uniform(0.5, 2.0)), float(rng.uniform(0.015, 0.05)))
        for _ in range(n_flares)
    )  # fmt: skip
    return BolideParams(
        start=(alt0, az0), end=(alt1, az1), speed=speed, peak_mag=float(rng.uniform(-3.0, 3.0)),
        duration_s=duration, peak_fraction=float(rng.uniform(0.4, 0.8)), flares=flares,
        t_start_s=t_start, wake_fraction=float(rng.uniform(0.0, 0.1)),
        wake_tau_s=float(rng.uniform(0.03, 0.15)),
    )  # fmt: skip


@dataclass
class CompositeClip:
    """A composite clip and its truth.

    Attributes
    ----------
    cube : ndarray, shape (T, H, W), float32
    truth : astropy.table.Table
        Per frame: ``frame``, ``t`` (s, mid-exposure from the clip's start),
        ``x``, ``y``, ``alt``, ``az``, ``flux`` (ADU), ``mag`` (true calibrated
        magnitude; inf where the head is not visible), ``saturated``,
        ``visible``, ``mask`` (H, W bool).
    fps, exposure_s : float
    saturation : float
    frame : skysift.io.Frame
        The real frame used.
    calibration : CalibrationResult
        Its calibration.
    params : BolideParams
    meta : dict
        ``"clip_calibration"``: the frame's calibration as the clip's (frame
        exposure and zero point of a video frame), to pass to
        :func:`~skysift.bolide.pipeline.run_bolide` instead of re-calibrating.
    """

    cube: np.ndarray
    truth: Table
    fps: float
    exposure_s: float
    saturation: float
    frame: Any
    calibration: Any
    params: BolideParams
    meta: dict = field(default_factory=dict)


def _terms(cal: Any, x, y, alt) -> dict:
    """Keyword arguments of the zero point's ``predict`` at pixels (x, y), altitudes ``alt`` (deg)."""

    am = airmass(np.clip(np.atleast_1d(np.asarray(alt, float)), 0.5, 90))
    return zero_point_terms(cal, x, y, am)


def composite_clip(
    frame: Any,
    calibration: Any,
    params: BolideParams,
    *,
    n_frames: int = 40,
    fps: float = 25.0,
    seed: int = 0,
    background: Any = None,
) -> CompositeClip:
    """Inject a bolide into a calibrated real frame, repeated as a video with fresh noise.

    Parameters
    ----------
    frame : skysift.io.Frame
        The real frame (with its site and time).
    calibration : CalibrationResult
        Its calibration (:func:`skysift.calibration.pipeline.calibrate`), with a
        zero point.
    params : BolideParams
    n_frames, fps : optional
        Clip length and rate. Defaults 40 and 25.
    seed : int, optional
        Noise seed.
    background : SkyBackground, optional
        The prepared frame (:func:`skysift.simulation.background.load_background`),
        to save its computation when many clips share a frame.

    Returns
    -------
    CompositeClip
    """

    cal = calibration
    zp = cal.zero_point
    exposure = 1.0 / fps
    # the frame's stars integrate its own exposure; the zero point for flux per second
    # of a video frame of `exposure` s is shifted by 2.5 log10(frame exposure / exposure)
    shift = 2.5 * np.log10((frame.exposure or exposure) / exposure)
    zp_video = dataclasses.replace(zp, zero_point=zp.zero_point + shift)
    sb = background if background is not None else load_background(frame)
    saturation = sb.saturation if sb.saturation is not None else float(np.nanmax(frame.data))
    lc = LightCurve.meteor(
        params.peak_mag, params.duration_s, peak_fraction=params.peak_fraction,
        flares=[Flare(*f) for f in params.flares],
    )  # fmt: skip
    meteor = Meteor(
        params.start, params.end, speed=params.speed, light_curve=lc, t_start_s=params.t_start_s,
        camera=cal.camera, wake_fraction=params.wake_fraction, wake_tau_s=params.wake_tau_s,
        psf=_fwhm(cal),
    )  # fmt: skip
    t_mid = params.t_start_s + params.duration_s / 2
    x_mid, y_mid = meteor.position(t_mid)
    alt_mid, _ = meteor.altaz(t_mid)
    zp_render = float(
        np.ravel(zp_video.predict(np.zeros(1), **_terms(cal, x_mid, y_mid, alt_mid)))[0]
    )
    noise = np.asarray(sb.noise, np.float32)
    sky_noise = float(np.median(noise[sb.sky])) if sb.sky.any() else float(np.median(noise))
    video = MeteorVideo(
        sb, meteor, n_frames=n_frames, fps=fps, exposure_s=exposure, zero_point=zp_render,
        gain=1.0, noise_sigma=noise, saturation=saturation,
        mask_threshold=MASK_SIGMA * max(sky_noise, 1e-3),
    )  # fmt: skip
    cube, rows = video.render(rng=seed)
    x, y = np.asarray(rows["x"], float), np.asarray(rows["y"], float)
    alt = np.asarray(rows["alt"], float)
    flux = np.asarray(rows["flux"], float)
    visible = np.asarray(rows["visible"], bool) & (flux > 0)
    mag = np.full(len(flux), np.inf)
    if visible.any():
        kw = _terms(cal, x[visible], y[visible], alt[visible])
        mag[visible] = zp_video.predict(-2.5 * np.log10(flux[visible] / exposure), **kw)
    truth = Table(
        {
            "frame": np.asarray(rows["frame"], int),
            "t": np.asarray(rows["time_s"], float),
            "x": x,
            "y": y,
            "alt": alt,
            "az": np.asarray(rows["az"], float),
            "flux": flux,
            "mag": mag,
            "saturated": np.asarray(rows["saturated"], bool),
            "visible": visible,
            "mask": np.asarray(rows["mask"], bool),
        }
    )
    clip_cal = dataclasses.replace(
        cal, frame=cal.frame.with_(exposure=exposure), zero_point=zp_video
    )
    return CompositeClip(
        cube, truth, fps, exposure, float(saturation), frame, cal, params,
        meta={"clip_calibration": clip_cal},
    )  # fmt: skip


def score_light_curve(lightcurve: Table, truth: Table) -> dict[str, float]:
    """Recovered-versus-injected magnitudes.

    Parameters
    ----------
    lightcurve : Table
        From :func:`skysift.bolide.pipeline.run_bolide`.
    truth : Table
        ``frame``, ``mag``, ``saturated``, ``visible`` per frame.

    Returns
    -------
    dict
        ``n_truth`` (visible frames), ``n_measured`` (of those, frames in the
        light curve), ``n_unsaturated`` (frames scored), ``rms_mag``,
        ``median_abs_mag``, ``max_abs_mag``, ``bias_mag`` (over unsaturated
        frames), ``n_saturated_truth``, ``n_saturated_flagged`` (true
        saturated frames flagged), ``n_false_saturated``.
    """
    tr = {int(r["frame"]): r for r in truth if r["visible"]}
    errs = []
    sat_truth = {f for f, r in tr.items() if r["saturated"]}
    flagged: set[int] = set()
    false_sat = 0
    n_meas = 0
    for r in lightcurve:
        f = int(r["frame"])
        if f not in tr:
            continue
        n_meas += 1
        if r["saturated"]:
            flagged.add(f)
            false_sat += f not in sat_truth
            continue
        if f in sat_truth or not (np.isfinite(r["mag"]) and np.isfinite(tr[f]["mag"])):
            continue
        errs.append(float(r["mag"]) - float(tr[f]["mag"]))
    e = np.asarray(errs)
    nan = float("nan")
    return {
        "n_truth": len(tr),
        "n_measured": n_meas,
        "n_unsaturated": int(e.size),
        "rms_mag": float(np.sqrt(np.mean(e**2))) if e.size else nan,
        "median_abs_mag": float(np.median(np.abs(e))) if e.size else nan,
        "max_abs_mag": float(np.max(np.abs(e))) if e.size else nan,
        "bias_mag": float(np.mean(e)) if e.size else nan,
        "n_saturated_truth": len(sat_truth),
        "n_saturated_flagged": len(sat_truth & flagged),
        "n_false_saturated": int(false_sat),
    }


def score_masks(masks: dict[int, np.ndarray], truth: Table) -> dict[str, int]:
    """Pixel counts ``tp``, ``fp``, ``fn`` of predicted masks against the truth masks.

    Frames without a predicted mask count as predicted empty.
    """
    tp = fp = fn = 0
    for r in truth:
        t = np.asarray(r["mask"], bool)
        p = masks.get(int(r["frame"]))
        if p is None:
            fn += int(t.sum())
            continue
        tp += int(np.sum(p & t))
        fp += int(np.sum(p & ~t))
        fn += int(np.sum(~p & t))
    return {"tp": tp, "fp": fp, "fn": fn}


def evaluate_bolide_clips(
    backgrounds: Sequence[tuple[Any, Any]],
    *,
    n_clips: int = 12,
    seed: int = 777,
    methods: Sequence[str] = ("classical",),
    out_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Table:
    """Run the bolide pipeline on held-out composite clips and score it.

    Parameters
    ----------
    backgrounds : sequence of (Frame, CalibrationResult)
        Real frames and their calibrations; clip ``i`` uses
        ``backgrounds[i % len(backgrounds)]``.
    n_clips : int, optional
        Default 12.
    seed : int, optional
        Seed of the bolide parameters and noise (use one never used in
        training). Default 777.
    methods : sequence of str, optional
        Segmenters to score on the same clips. Default ("classical",).
    out_dir : path, optional
        Where each run's outputs go (``clip_NN_METHOD/``); None writes nothing.
    progress : callable, optional
        ``progress(done, total)``.

    Returns
    -------
    astropy.table.Table
        One row per clip and method: ``clip``, ``method``, ``background``,
        ``peak_mag``, ``speed``, the :func:`score_light_curve` columns,
        ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``seconds``.
    """

    rng = np.random.default_rng(seed)
    prepared = [(f, c, load_background(f)) for f, c in backgrounds]
    rows = []
    total = n_clips * len(methods)
    done = 0
    for i in range(n_clips):
        frame, cal, sb = prepared[i % len(prepared)]
        params = random_params(rng)
        clip = composite_clip(frame, cal, params, seed=int(rng.integers(2**31)), background=sb)
        seq = FrameSequence(
            [
                frame.with_(data=c, exposure=clip.exposure_s, mask=None, color=None)
                for c in clip.cube
            ],
            fps=clip.fps,
        )
        for method in methods:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoDetectionsWarning)
                res = run_bolide(
                    seq, None if out_dir is None else Path(out_dir) / f"clip_{i:02d}_{method}",
                    calibration=clip.meta["clip_calibration"], method=method,
                    saturation=clip.saturation,
                    overlays=False,
                )  # fmt: skip
            s = score_light_curve(res.lightcurve, clip.truth)
            m = score_masks(res.masks, clip.truth)
            rows.append(
                {
                    "clip": i, "method": method,
                    "background": str(getattr(frame, "path", "") or "")[-40:],
                    "peak_mag": params.peak_mag, "speed": params.speed, **s, **m,
                    "precision": m["tp"] / max(1, m["tp"] + m["fp"]),
                    "recall": m["tp"] / max(1, m["tp"] + m["fn"]),
                    "seconds": time.perf_counter() - t0,
                }
            )  # fmt: skip
            done += 1
            if progress is not None:
                progress(done, total)
    return Table(rows=rows)
