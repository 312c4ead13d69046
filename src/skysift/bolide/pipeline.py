"""The main job: a calibrated bolide light curve from a meteor-camera video (bolide report §6-7).

``run_bolide(video)`` runs, in order:

1. **input**: the video (mp4/avi/mkv/mov, a folder of frames or a FITS cube)
   with its time, site and frame rate (metadata, overridable);
2. **calibration**: the calibration core on a calibration image (default: the
   median stack of the video's frames): camera model (pixel <-> alt/az,
   RA/Dec) and photometric zero point from all identified stars;
3. **motion zone** (§6.2): Farnebäck flow heat map and region of interest
   (:mod:`skysift.bolide.motion`);
4. **segmentation** (§6.3, §7.2): the bolide mask of each frame with motion,
   inside the region of interest only: the learned U-Net
   (:mod:`skysift.bolide.learned`) or the classical
   difference-image baseline (:mod:`skysift.bolide.detection`);
5. **head tracking and photometry** (§7.1-7.2,
   :mod:`skysift.bolide.measurement`);
6. **magnitudes**: ``m = m_inst + ZP - k X + ...`` with the zero-point fit of
   step 2 (extinction at the bolide's altitude), errors including the zero
   point's; saturated frames are flagged and their magnitudes are bright
   limits (the bolide was at least that bright);
7. **outputs** (:mod:`skysift.bolide.report`): ``lightcurve.ecsv``,
   ``lightcurve.png``, ``motion_zone.png``, ``overlays/``, ``calibration.*``
   and ``report.html``.

Each stage is a function that returns its result and writes nothing
(:func:`read_clip`, :func:`calibrate_clip`, :func:`segment_bolide`,
:func:`measure_bolide`); ``run_bolide`` joins them and writes the outputs
only when given ``out_dir``.
"""

from __future__ import annotations

import os
import time as _time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time, TimeDelta

from skysift.bolide.clip import Clip, calibrate_clip, clip_noise, read_clip
from skysift.bolide.detection import (
    BOLIDE_SEGMENTERS,
    classical_bolide_mask,
)
from skysift.bolide.ffphot import ff_clip_photometry
from skysift.bolide.gmn_export import apply_platepar
from skysift.bolide.kinds import classify_lightcurve
from skysift.bolide.learned import BolideSegmenter
from skysift.bolide.measurement import (
    Trajectory,
    clip_saturation,
    empty_photometry,
    fit_great_circle,
    fit_trajectory,
    head_photometry,
    track_head,
)
from skysift.bolide.motion import MotionZone, motion_zone
from skysift.bolide.report import write_bolide
from skysift.bolide.science import (
    add_science_columns,
    sky_positions,
)
from skysift.bolide.tracking import follow_head, head_table, overlay_mask
from skysift.calibration.frame import CalibrationResult
from skysift.calibration.photometric import airmass as airmass_of
from skysift.calibration.platepar import Platepar, read_platepar
from skysift.detection.masks import sky_mask
from skysift.errors import InputError, NoDetectionsWarning, SkysiftError
from skysift.io.frame import Frame, FrameSequence, Site

__all__ = [
    "BolideResult",
    "Clip",
    "LIGHTCURVE_COLUMNS",
    "calibrate_clip",
    "clip_noise",
    "light_curve",
    "measure_bolide",
    "read_clip",
    "run_bolide",
    "segment_bolide",
    "segment_clip",
    "zero_point_terms",
]

#: Columns of ``lightcurve.ecsv`` (the issue's list), then extra ones.
LIGHTCURVE_COLUMNS = [
    "frame", "time", "t", "x", "y", "ra", "dec", "alt", "az",
    "flux", "flux_err", "mag", "mag_err", "saturated",
]  # fmt: skip

Progress = Callable[[str, float], None]


@dataclass
class BolideResult:
    """What :func:`run_bolide` found and measured.

    Attributes
    ----------
    lightcurve : astropy.table.Table
        One row per frame where the head was tracked: :data:`LIGHTCURVE_COLUMNS`
        then ``inst_mag``, ``flux_gauss``, ``flux_gauss_err``, ``peak``,
        ``n_aperture``, ``airmass``, ``ang_speed`` and ``kind`` (meteor or
        unknown). Empty when no bolide was found.
    motion : MotionZone
    trajectory : Trajectory or None
    calibration : CalibrationResult or None
        None when the calibration failed (magnitudes are then NaN and only
        ``inst_mag`` is given).
    masks : dict int -> ndarray of bool (H, W)
        Bolide mask of every segmented frame.
    method : str
        The segmenter used.
    fps : float
    n_frames : int
    files : dict str -> Path
        Written files by role.
    messages : list of str
        Warnings worth showing in the report.
    timings : dict str -> float
        Seconds per stage.
    rejected : astropy.table.Table or None
        The track of an aircraft or a satellite (:mod:`skysift.bolide.kinds`),
        taken out of ``lightcurve``: it is not a bolide.
    """

    lightcurve: Table
    motion: MotionZone
    trajectory: Trajectory | None
    calibration: Any
    masks: dict[int, np.ndarray]
    method: str
    fps: float
    n_frames: int
    files: dict[str, Path] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    background: np.ndarray | None = None
    noise: float = float("nan")
    saturation: float | None = None
    site: Site | None = None
    height_km: float | None = None
    rejected: Table | None = None

    @property
    def found(self) -> bool:
        """True when a bolide head was tracked in at least one frame."""
        return len(self.lightcurve) > 0


def _resolve_method(method: str) -> str:
    if method not in (*BOLIDE_SEGMENTERS, "auto"):
        msg = f"method must be one of {['auto', *BOLIDE_SEGMENTERS]}, got {method!r}"
        raise InputError(msg)
    if method != "auto":
        return method
    try:
        import torch  # noqa: F401

        # needs torch (the learn extra): imported on use
        from skysift.learning.weights import weights_info

        weights_info("bolide_unet")
    except Exception:  # noqa: BLE001 - no weights or no torch: the classical baseline
        return "classical"
    return "unet"


def segment_clip(
    cube: np.ndarray,
    background: np.ndarray,
    noise: float,
    frames: list[int],
    *,
    roi: tuple[int, int, int, int] | None,
    method: str = "classical",
    threshold: float | None = None,
    sky: np.ndarray | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[int, np.ndarray]:
    """Bolide masks of the listed frames inside the region of interest.

    Parameters
    ----------
    cube : ndarray, shape (T, H, W)
    background : ndarray, shape (H, W)
    noise : float
        Noise sigma of ``frame - background`` (ADU).
    frames : list of int
        Frame indices to segment.
    roi : (x0, y0, x1, y1) or None
    method : {"unet", "classical"}, optional
    threshold : float, optional
        Probability threshold of the U-Net's mask. Default: the operating
        threshold of the weights' model card.
    sky : ndarray of bool (H, W), optional
        ``True`` = sky; the masks are cut to it.
    progress : callable, optional
        Called with the fraction done.

    Returns
    -------
    dict int -> ndarray of bool (H, W)
    """
    out: dict[int, np.ndarray] = {}
    segmenter = None
    if method == "unet":
        segmenter = BolideSegmenter()
        if threshold is None:
            threshold = segmenter.threshold
    for k, i in enumerate(frames):
        if segmenter is not None:
            prob = segmenter.predict(cube[i], background, noise, roi=roi)
            m = prob >= threshold
            if sky is not None:
                m &= sky
        else:
            m = classical_bolide_mask(cube[i], background, noise, roi=roi, sky=sky)
        out[i] = m
        if progress is not None:
            progress((k + 1) / max(1, len(frames)))
    return out


def _frame_times(seq: FrameSequence, fps: float, start: Time | None) -> Time | None:
    """Mid-exposure UTC time of each frame (None when the start time is unknown)."""
    n = len(seq)
    times = seq.times
    if times is not None and len(times) == n and n > 1 and np.ptp(times.jd) > 0:
        t = times
    elif start is not None:
        t = start + TimeDelta(np.arange(n) / fps, format="sec")
    else:
        return None
    exp = seq[0].exposure if seq[0].exposure is not None else 1.0 / fps
    return t + TimeDelta(0.5 * min(exp, 1.0 / fps), format="sec")


def light_curve(
    phot: Table,
    *,
    calibration: Any = None,
    times: Time | None,
    fps: float,
    exposure: float | None,
) -> Table:
    """Calibrated light curve from the head photometry.

    Parameters
    ----------
    phot : Table
        From :func:`skysift.bolide.measurement.head_photometry`.
    calibration : CalibrationResult, optional
        Camera and zero point; without it only instrumental magnitudes.
    times : astropy.time.Time or None
        Mid-exposure time of every frame of the video (indexed by ``frame``).
    fps : float
        Frame rate, for ``t``.
    exposure : float or None
        Exposure of one video frame (s) for instrumental magnitudes per
        second; None gives magnitudes per frame (the calibration image then
        must have no exposure either, as a median stack of the video has
        not).

    Returns
    -------
    astropy.table.Table
        :data:`LIGHTCURVE_COLUMNS` plus ``inst_mag``, ``airmass`` and the
        photometry's extra columns. ``mag`` of a saturated frame is a bright
        limit (``mag_err`` NaN).
    """

    n = len(phot)
    frames = np.asarray(phot["frame"], int)
    x = np.asarray(phot["x"], float)
    y = np.asarray(phot["y"], float)
    t_frames = times[frames] if times is not None and n else None
    camera = calibration.camera if calibration is not None else None
    ra, dec, alt, az = sky_positions(camera, x, y, t_frames)
    flux = np.asarray(phot["flux"], float)
    flux_err = np.asarray(phot["flux_err"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = flux / exposure if exposure else flux
        inst = np.where(rate > 0, -2.5 * np.log10(np.where(rate > 0, rate, 1.0)), np.nan)
        inst_err = 1.0857 * flux_err / flux
    am = np.where(
        np.isfinite(alt) & (alt > 0), airmass_of(np.clip(np.nan_to_num(alt), 0.5, 90)), np.nan
    )
    mag = np.full(n, np.nan)
    mag_err = np.full(n, np.nan)
    zp = calibration.zero_point if calibration is not None else None
    if zp is not None and n:
        kw = zero_point_terms(calibration, x, y, am)
        mag = np.asarray(zp.predict(inst, **kw), float)
        zp_var = zp.zero_point_err**2 + (zp.extinction_k_err * np.nan_to_num(am)) ** 2
        slope = 1.0 + (zp.linearity if "linearity" in zp.terms else 0.0)
        mag_err = np.sqrt((slope * inst_err) ** 2 + zp_var)
    sat = np.asarray(phot["saturated"], bool)
    mag_err[sat] = np.nan
    first = frames.min() if n else 0
    t_rel = (frames - first) / fps
    if t_frames is not None:
        t_rel = (t_frames - t_frames[0]).to_value("s") if n else t_rel
        time_col = t_frames.utc.isot
    else:
        time_col = np.array([""] * n, dtype="U23")
    lc = Table()
    lc["frame"] = frames
    lc["time"] = time_col
    lc["t"] = np.asarray(t_rel, float)
    lc["x"], lc["y"] = x, y
    lc["ra"], lc["dec"], lc["alt"], lc["az"] = ra, dec, alt, az
    lc["flux"], lc["flux_err"] = flux, flux_err
    lc["mag"], lc["mag_err"] = mag, mag_err
    lc["saturated"] = sat
    lc["inst_mag"] = inst
    lc["airmass"] = am
    for c in ("flux_gauss", "flux_gauss_err", "peak", "n_aperture"):
        lc[c] = phot[c]
    units = {"t": "s", "x": "pix", "y": "pix", "ra": "deg", "dec": "deg", "alt": "deg",
             "az": "deg", "flux": "adu", "flux_err": "adu", "mag": "mag", "mag_err": "mag",
             "inst_mag": "mag", "flux_gauss": "adu", "flux_gauss_err": "adu", "peak": "adu"}  # fmt: skip
    for c, unit in units.items():
        lc[c].unit = unit
    lc["time"].description = "mid-exposure time, UTC (ISO 8601)"
    lc["t"].description = "seconds from the first frame of the light curve"
    lc["mag"].description = "calibrated magnitude; a bright limit where saturated"
    return lc


def zero_point_terms(calibration: CalibrationResult, x, y, airmass) -> dict[str, np.ndarray]:
    """Keyword arguments of ``calibration.zero_point.predict`` at pixels (x, y).

    Kept for callers of the bolide pipeline; the rule is
    :meth:`skysift.calibration.frame.CalibratedFrame.zero_point_terms`.
    """
    return calibration.zero_point_terms(x, y, airmass)


def run_bolide(
    video: str | os.PathLike[str] | FrameSequence,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    calibration: str | os.PathLike[str] | Frame | Any = None,
    site: Site | tuple[float, float, float] | None = None,
    time: Time | str | None = None,
    fps: float | None = None,
    pairs: str | os.PathLike[str] | Table | None = None,
    method: str = "auto",
    threshold: float | None = None,
    motion_threshold: float = 1.0,
    motion_scale: float = 0.5,
    saturation: float | None = None,
    gain: float | None = None,
    overlays: bool = True,
    max_wake_frames: int = 10,
    height_km: float | None = None,
    platepar: str | os.PathLike[str] | Platepar | None = None,
    interlaced: str = "no",
    progress: Progress | None = None,
) -> BolideResult:
    """Calibrated light curve of the bolide in a video.

    Parameters
    ----------
    video : path or FrameSequence
        mp4/avi/mkv/mov, a folder of frames or a FITS cube (read with
        :func:`skysift.io.read_sequence`).
    out_dir : path, optional
        Where the outputs go (created); None writes nothing.
    calibration : path, Frame or CalibrationResult, optional
        Calibration image; default the median stack of the video's frames.
        A :class:`~skysift.calibration.pipeline.CalibrationResult` (a fixed
        camera calibrated once) is used as it is.
    site : Site or (lat, lon, height_m), optional
        Overrides the metadata.
    time : astropy.time.Time or str, optional
        Start of the first frame (UTC), overrides the metadata.
    fps : float, optional
        Frame rate, overrides the metadata.
    pairs : path or Table, optional
        Manual star identifications on the calibration image (columns ``x``,
        ``y``, ``star``; at least four), the fallback when the automatic
        calibration fails (bolide report §5.3; the web app's manual
        calibration saves them as ``pairs.csv``).
    method : {"auto", "unet", "classical"}, optional
        Segmenter; "auto" (default) uses the shipped U-Net when torch and its
        weights are installed, else the classical baseline.
    threshold : float, optional
        U-Net probability threshold. Default: the model card's operating
        threshold.
    motion_threshold : float, optional
        θ of the motion heat map, pixels per frame. Default 1.
    motion_scale : float, optional
        Resolution factor of the optical flow. Default 0.5.
    saturation : float, optional
        Saturation level (ADU); default estimated from clipped pixels.
    gain : float, optional
        e-/ADU for the head's shot noise in ``flux_err``.
    overlays : bool, optional
        Write the per-frame overlay PNGs (and MP4). Default True.
    max_wake_frames : int, optional
        Beyond the frames with motion, segmentation follows a non-empty mask
        (the wake, a faint start) for at most this many frames each way.
        Default 10.
    height_km : float, optional
        Height of the meteor above sea level (km): adds ``range_km`` and
        ``abs_mag`` (magnitude at 100 km) to the light curve.
    platepar : path or Platepar, optional
        A GMN/RMS station's calibration (``platepar_cmn2010.cal``, read with
        :func:`skysift.calibration.platepar.read_platepar`): the head's
        ``ra``, ``dec``, ``alt``, ``az`` come from it, row by row at each
        frame's UTC time (needs ``time``); its site stands in for ``site``.
    interlaced : {"no", "tff", "bff"}, optional
        Interlaced analogue video: each frame is split into its two fields
        (top field first or bottom field first), each a time sample half a
        frame period after the other, rows interpolated back to full height
        (:func:`skysift.io.video.field_sequence`); the light curve's
        ``frame`` then counts fields. Default "no" (progressive).
    progress : callable, optional
        ``progress(stage, fraction)`` with stage one of "read", "calibrate",
        "motion", "segment", "measure", "write".

    Returns
    -------
    BolideResult

    Raises
    ------
    InputError
        For an unreadable video or calibration image (named), fewer than 3
        frames, an unknown frame rate, or bad options.

    Warns
    -----
    NoDetectionsWarning
        When nothing moves or no bolide head is found.
    """
    report = progress or (lambda stage, fraction: None)
    timings: dict[str, float] = {}
    messages: list[str] = []
    t0 = _time.perf_counter()
    method = _resolve_method(method)
    if height_km is not None and not height_km > 0:
        msg = f"height_km must be > 0 (km above sea level), got {height_km!r}"
        raise InputError(msg)
    if platepar is not None and not isinstance(platepar, Platepar):
        platepar = read_platepar(platepar)
    if platepar is not None and site is None:
        site = platepar.site
    report("read", 0.0)
    clip = read_clip(video, site=site, time=time, fps=fps, interlaced=interlaced)
    timings["read"] = _time.perf_counter() - t0
    report("read", 1.0)

    t1 = _time.perf_counter()
    report("calibrate", 0.0)
    cal = calibrate_clip(clip, calibration, pairs=pairs, messages=messages)
    timings["calibrate"] = _time.perf_counter() - t1
    report("calibrate", 1.0)

    t1 = _time.perf_counter()
    sky = ~(
        cal.sky.mask if cal is not None and cal.sky is not None else sky_mask(clip.background).mask
    ) & ~overlay_mask(clip.cube)  # burned-in timestamps are not sky
    motion = motion_zone(
        clip.cube,
        threshold=motion_threshold,
        scale=motion_scale,
        sky=sky,
        progress=lambda f: report("motion", f),
    )
    timings["motion"] = _time.perf_counter() - t1

    t1 = _time.perf_counter()
    noise = clip_noise(clip, sky)
    if saturation is None:
        saturation = clip_saturation(clip.cube)  # 255 for 8-bit video without a clipped level
    masks: dict[int, np.ndarray] = {}
    if motion.found:
        masks = segment_bolide(
            clip, motion, noise, sky=sky, method=method, threshold=threshold,
            max_wake_frames=max_wake_frames, progress=lambda f: report("segment", f),
        )  # fmt: skip
    # a slow, saturated or glowing head the flow and the segmenter miss: the transient tracker
    masks, head_frames = follow_head(clip.cube, clip.background, masks, sky=sky, messages=messages)
    if not masks:
        messages.append("nothing moves in the video: no bolide")
    timings["segment"] = _time.perf_counter() - t1

    t1 = _time.perf_counter()
    report("measure", 0.0)
    traj, lc = measure_bolide(
        clip, masks, cal, noise=noise, saturation=saturation, gain=gain,
        motion_found=motion.found, messages=messages, head_frames=head_frames,
    )  # fmt: skip
    if platepar is not None and len(lc):
        lc = apply_platepar(lc, platepar)
        messages.append("sky positions from the GMN platepar")
    lc = add_science_columns(lc, site=clip.site, height_km=height_km)
    # meteor, aircraft or satellite (skysift.bolide.kinds): non-meteors are no bolides
    lc, rejected, _ = classify_lightcurve(
        lc, fps=clip.fps, n_frames=len(clip.cube), messages=messages
    )
    timings["measure"] = _time.perf_counter() - t1
    report("measure", 1.0)

    result = BolideResult(
        lightcurve=lc, motion=motion, trajectory=traj, calibration=cal, masks=masks,
        method=method, fps=clip.fps, n_frames=len(clip.cube), messages=messages,
        timings=timings, background=clip.background, noise=noise, saturation=saturation,
        site=clip.site, height_km=height_km, rejected=rejected,
    )  # fmt: skip
    if out_dir is not None:
        t1 = _time.perf_counter()
        result.files = write_bolide(
            result, clip.cube, out_dir, overlays=overlays, progress=lambda f: report("write", f)
        )
        timings["write"] = _time.perf_counter() - t1
    timings["total"] = _time.perf_counter() - t0
    return result


def segment_bolide(
    clip: Clip,
    motion: MotionZone,
    noise: float,
    *,
    sky: np.ndarray | None,
    method: str,
    threshold: float | None = None,
    max_wake_frames: int = 10,
    progress: Callable[[float], None] | None = None,
) -> dict[int, np.ndarray]:
    """Segment the bolide in the frames with motion and their neighbours (stage 3).

    The wake glows on after the motion stops (and a faint start may precede
    it): the mask is followed outwards while it is not empty, up to
    ``max_wake_frames`` frames.

    Returns
    -------
    dict
        Frame index -> boolean mask (True = bolide), shape (H, W).
    """
    cube, background = clip.cube, clip.background
    act = np.flatnonzero(motion.active)
    todo = sorted({j for i in act for j in (i - 1, i, i + 1) if 0 <= j < len(cube)})
    masks = segment_clip(
        cube, background, noise, todo, roi=motion.roi, method=method, threshold=threshold,
        sky=sky, progress=progress,
    )  # fmt: skip
    for step, edge in ((1, max(todo)), (-1, min(todo))):
        j = edge + step
        while 0 <= j < len(cube) and abs(j - edge) <= max_wake_frames and masks[j - step].any():
            masks.update(
                segment_clip(cube, background, noise, [j], roi=motion.roi, method=method,
                             threshold=threshold, sky=sky)
            )  # fmt: skip
            j += step
    return masks


def measure_bolide(
    clip: Clip,
    masks: dict[int, np.ndarray],
    cal: CalibrationResult | None,
    *,
    noise: float,
    saturation: float | None,
    gain: float | None = None,
    motion_found: bool = True,
    messages: list[str] | None = None,
    head_frames: list[int] | None = None,
) -> tuple[Any, Table]:
    """Track the head and measure the light curve (stage 4 of :func:`run_bolide`).

    ``head_frames`` (from :func:`skysift.bolide.tracking.follow_head`) makes
    every listed frame a head frame instead of :func:`track_head`'s rule.

    Returns
    -------
    trajectory : object or None
        The fitted path of the head.
    lightcurve : astropy.table.Table
        See :func:`light_curve` (empty, full schema, when no head was tracked).
    """
    cube, background = clip.cube, clip.background
    diffs = {i: cube[i] - background for i in masks}
    traj = _fit_path(masks, diffs, cal)
    phot = None
    if traj is not None:
        track = (
            track_head(masks, traj) if head_frames is None else head_table(masks, traj, head_frames)
        )
        phot = head_photometry(
            {i: cube[i] for i in masks}, background, masks, track, traj,
            noise=noise, fwhm=_fwhm(cal), saturation=saturation, gain=gain,
        )  # fmt: skip
        # an FF file's frames lost their PSF wings to their neighbours (skysift.bolide.ffphot)
        phot = ff_clip_photometry(clip.sequence, phot, traj, fwhm=_fwhm(cal), messages=messages)
    if phot is None or len(phot) == 0:
        if motion_found and messages is not None:
            messages.append("motion found, but no bolide head was tracked")
        warnings.warn("no bolide found in the video", NoDetectionsWarning, stacklevel=3)
        phot = empty_photometry()
    # instrumental magnitudes per second when the calibration's are (or without one, when
    # the video's exposure is known); per frame when the calibration image has no exposure
    exposure = clip.sequence[0].exposure
    if cal is not None:
        exposure = None if cal.frame.exposure is None else (exposure or 1.0 / clip.fps)
    times = _frame_times(clip.sequence, clip.fps, clip.start_time)
    lc = light_curve(phot, calibration=cal, times=times, fps=clip.fps, exposure=exposure)
    return traj, lc


def _fit_path(masks: dict[int, np.ndarray], diffs: dict[int, np.ndarray], cal: Any) -> Any:
    """The great circle through the calibrated camera, else a straight line in the image."""
    if cal is not None:
        try:
            return fit_great_circle(masks, cal.camera, diffs)
        except SkysiftError:  # e.g. a WCS without site or time: no alt/az
            pass
    return fit_trajectory(masks, diffs)


def _fwhm(cal: CalibrationResult | None) -> float:
    """The calibration's PSF FWHM (:attr:`CalibratedFrame.psf_fwhm`; 3 px without one)."""
    return 3.0 if cal is None else cal.psf_fwhm
