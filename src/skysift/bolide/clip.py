"""A meteor-camera clip, read and calibrated (stages 1 and 2 of the bolide pipeline).

:func:`read_clip` reads a video, FITS cube, folder of frames or GMN FF file
(fields for interlaced video) and settles its frame rate, site and start
time; :func:`calibrate_clip` calibrates the camera from a calibration image,
a kept calibration or the clip's median stack.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.time import Time

from skysift.bolide.detection import clip_background, difference_noise
from skysift.bolide.science import calibration_strength, few_star_note
from skysift.calibration.fewstar import stack_frames
from skysift.calibration.frame import CalibrationResult
from skysift.calibration.pipeline import calibrate
from skysift.errors import InputError, NoDetectionsWarning, SkysiftError
from skysift.io import read_frame, read_sequence
from skysift.io.frame import Frame, FrameSequence, Site
from skysift.io.video import FIELD_ORDERS, field_sequence

__all__ = ["Clip", "calibrate_clip", "clip_noise", "read_clip"]


def _as_time(time: Time | str | None) -> Time | None:
    if time is None or isinstance(time, Time):
        return time
    try:
        return Time(time, scale="utc")
    except ValueError as exc:
        msg = f"time must be ISO 8601 UTC (e.g. 2018-08-17T03:38:28), got {time!r}"
        raise InputError(msg) from exc


@dataclass
class Clip:
    """A meteor-camera clip ready for the bolide stages (:func:`read_clip`).

    Attributes
    ----------
    sequence : FrameSequence
        The frames as read.
    cube : ndarray, shape (T, H, W), float32
        The frames' luminance.
    background : ndarray, shape (H, W), float32
        The clip's per-pixel median: the segmentation background and the
        default calibration image.
    fps : float
        Frames per second.
    site : Site or None
    start_time : astropy.time.Time or None
        Start of the first frame (UTC).
    """

    sequence: FrameSequence
    cube: np.ndarray
    background: np.ndarray
    fps: float
    site: Site | None
    start_time: Time | None

    @property
    def median_frame(self) -> Frame:
        """The background as a :class:`Frame` with the clip's site and time."""
        return self.sequence[0].with_(
            data=self.background, mask=None, color=None, site=self.site, time=self.start_time
        )


def read_clip(
    video: str | os.PathLike[str] | FrameSequence,
    *,
    site: Site | tuple[float, float, float] | None = None,
    time: Time | str | None = None,
    fps: float | None = None,
    interlaced: str = "no",
) -> Clip:
    """Read a clip and settle its frame rate, site and start time (stage 1 of :func:`run_bolide`).

    ``interlaced`` ("tff" / "bff") splits each frame into its two fields
    (:func:`skysift.io.video.field_sequence`): the clip's frames are then
    the fields, at twice the frame rate.

    Raises
    ------
    InputError
        For an unreadable video, fewer than 3 frames, an unknown frame rate
        or an unknown ``interlaced`` value.
    """
    if interlaced not in FIELD_ORDERS:
        msg = f"interlaced must be one of {list(FIELD_ORDERS)}, got {interlaced!r}"
        raise InputError(msg)
    start_time = _as_time(time)
    seq = (
        video
        if isinstance(video, FrameSequence)
        else read_sequence(video, site=site, time=start_time, fps=fps)
    )
    if len(seq) < 3:
        where = f" in {seq.path}" if seq.path else ""
        msg = f"a bolide light curve needs a video of at least 3 frames, got {len(seq)}{where}"
        raise InputError(msg)
    fps = float(fps or seq.fps or _header_fps(seq) or 0)
    if fps <= 0:
        times = seq.times
        if times is not None and np.ptp(times.jd) > 0:
            fps = float(1.0 / np.median(np.diff(times.unix)))
        else:
            where = f" of {seq.path}" if seq.path else ""
            msg = f"the frame rate{where} is unknown: give fps (--fps)"
            raise InputError(msg)
    if interlaced != "no":  # each field a time sample of its own
        seq = field_sequence(seq, interlaced, fps=fps)
        fps = float(seq.fps)
    if site is not None and not isinstance(site, Site):
        site = Site(*site)
    site = site or seq[0].site
    start_time = start_time or seq[0].time or seq.meta.get("start_time")
    cube = seq.cube().astype(np.float32, copy=False)
    # the clip's median is both the default calibration image and the segmentation background
    return Clip(seq, cube, clip_background(cube), fps, site, start_time)


def calibrate_clip(
    clip: Clip,
    calibration: str | os.PathLike[str] | Frame | CalibrationResult | None = None,
    *,
    pairs: str | os.PathLike[str] | Table | None = None,
    messages: list[str] | None = None,
) -> CalibrationResult | None:
    """Calibrate the clip's camera (stage 2 of :func:`run_bolide`).

    Parameters
    ----------
    clip : Clip
    calibration : path, Frame or CalibrationResult, optional
        A calibration image (default the clip's median frame), or a
        calibration made once for a fixed camera, used as it is.
    pairs : path or Table, optional
        Manual identifications, the fallback of the automatic calibration.
    messages : list of str, optional
        Why the calibration failed is appended here.

    Returns
    -------
    CalibrationResult or None
        None when the calibration failed (then magnitudes are instrumental;
        a :class:`NoDetectionsWarning` says why).

    Raises
    ------
    InputError
        If the calibration image is unreadable or of another shape than the video.
    """
    if isinstance(calibration, CalibrationResult):
        # a fixed camera calibrated once for many videos
        cal_frame, cal = calibration.frame, calibration
    elif calibration is not None:
        cal_frame, cal = (
            (
                calibration
                if isinstance(calibration, Frame)
                else read_frame(calibration, site=clip.site, time=clip.start_time)
            ),
            None,
        )
    else:
        cal_frame, cal = clip.median_frame, None
    if cal_frame.shape != clip.cube.shape[1:]:
        name = f" {cal_frame.path}" if cal_frame.path else ""
        msg = (
            f"calibration image{name}: shape {cal_frame.shape} differs from the video's "
            f"{clip.cube.shape[1:]}"
        )
        raise InputError(msg)
    if cal is not None:
        return cal
    site, start = cal_frame.site or clip.site, cal_frame.time or clip.start_time
    best, error = None, None
    # the default image (the clip's median) first; when it fails or gives only the few-star
    # model, a sigma-clipped mean stack too (it reaches fainter stars on 8-bit video)
    for k in range(2 if calibration is None and site is not None and start is not None else 1):
        image = cal_frame if k == 0 else cal_frame.with_(data=stack_frames(clip.cube))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoDetectionsWarning)
                # a meteor camera is all-sky by nature: the few-star model may stand in
                cal = calibrate(image, site=site, time=start, pairs=pairs, fewstar=True)
        except SkysiftError as exc:
            error = error or exc
            continue
        if best is None or calibration_strength(cal) > calibration_strength(best):
            best = cal
        if calibration_strength(cal)[0]:
            break  # the full model
    if best is not None:
        return few_star_note(best, messages)
    msg = f"calibration failed ({error}); magnitudes are instrumental only"
    if site is None and start is None:
        msg += " (neither the site nor the time is known: give --site and --time)"
    if messages is not None:
        messages.append(msg)
    warnings.warn(msg, NoDetectionsWarning, stacklevel=2)
    return None


def clip_noise(clip: Clip, sky: np.ndarray) -> float:
    """The noise (1-sigma, counts) of background-subtracted frames: the median over 5 frames."""
    cube = clip.cube
    picks = np.linspace(0, len(cube) - 1, min(5, len(cube))).astype(int)
    return float(np.median([difference_noise(cube[i] - clip.background, sky) for i in picks]))


def _header_fps(seq: FrameSequence) -> float | None:
    """Frame rate from a FITS cube's FPS or FRAMERATE keyword."""
    header = seq[0].meta.get("header")
    for key in ("FPS", "FRAMERATE"):
        try:
            value = float(header[key]) if header is not None and key in header else None
        except (TypeError, ValueError):
            value = None
        if value and value > 0:
            return value
    return None
