"""Video input: decode a video file into :class:`Frame` objects with per-frame timestamps."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from astropy.time import Time, TimeDelta

from skysift.errors import InputError
from skysift.io.frame import Frame, FrameSequence, Site

__all__ = [
    "FIELD_ORDERS",
    "VIDEO_SUFFIXES",
    "field_sequence",
    "iter_video",
    "luminance",
    "quiet_native_stderr",
    "read_video",
    "split_fields",
]

# FFmpeg (inside OpenCV) prints its own complaints ("moov atom not found") on
# stderr before skysift can say what is wrong: keep it to fatal errors. The
# variable is read when OpenCV's FFmpeg backend starts, so it is set before any
# capture is opened (a value the user set is kept).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_SUFFIXES = (
    ".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts",
)  # fmt: skip

#: Rec. 709 luma weights (R, G, B), applied to the stored values as they are.
LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Luminance ``0.2126 R + 0.7152 G + 0.0722 B`` of an ``(H, W, 3)`` RGB array.

    The Rec. 709 (ITU-R BT.709) weights are applied to the stored values as they
    are, without undoing any sRGB/gamma encoding, so the result is in the same
    units as the input (e.g. 0..255 for 8-bit, 0..65535 for 16-bit data).

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    r, g, b = LUMA_WEIGHTS
    rgb = np.asarray(rgb)
    out = r * rgb[..., 0].astype(np.float32)
    out += g * rgb[..., 1].astype(np.float32)
    out += b * rgb[..., 2].astype(np.float32)
    return out


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native libraries (libpng, FFmpeg) write on file descriptor 2.

    Their messages (``libpng error: ...``, ``moov atom not found``) would
    precede skysift's own one-line error; the error itself still comes back as
    a Python exception or a failed read, which the caller reports. Python's
    ``sys.stderr`` is flushed first and restored after; a no-op where the
    descriptor cannot be duplicated.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _open(path: Path) -> cv2.VideoCapture:
    try:
        with quiet_native_stderr():
            cap = cv2.VideoCapture(str(path))
    except cv2.error as err:
        msg = f"{path}: cannot open video ({err})"
        raise InputError(msg) from err
    if not cap.isOpened():
        cap.release()
        msg = f"{path}: cannot open video (unreadable, corrupt or unsupported codec)"
        raise InputError(msg)
    return cap


def iter_video(
    path: str | Path,
    *,
    time: Time | None = None,
    site: Site | None = None,
    exposure: float | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    stride: int = 1,
    keep_color: bool = True,
) -> Iterator[Frame]:
    """Decode a video lazily, one :class:`Frame` at a time (OpenCV/FFmpeg).

    Parameters
    ----------
    path : str or Path
        The video file.
    time : astropy.time.Time, optional
        UTC time of the first frame of the file. When given, frame ``i`` gets
        ``time + pts_i``; otherwise frames have ``time=None`` and only
        ``meta["pts"]``.
    site : Site, optional
        Site attached to every frame.
    exposure : float, optional
        Exposure in seconds attached to every frame.
    fps : float, optional
        Frame rate to use instead of the container's; then ``pts_i = i / fps``.
    max_frames : int, optional
        Stop after this many frames have been returned.
    stride : int
        Return every ``stride``-th frame (the others are skipped without
        colour conversion). Default 1.
    keep_color : bool
        Keep the RGB uint8 pixels in ``Frame.color`` (costs 3 bytes/pixel).

    Yields
    ------
    Frame
        ``data`` is the luminance (see :func:`luminance`), ``meta`` holds
        ``"index"`` (frame number in the file, 0-based) and ``"pts"``
        (presentation time in seconds from the start of the file).

    Raises
    ------
    InputError
        If the file cannot be opened or no frame can be decoded.
    """
    path = Path(path)
    cap = _open(path)
    try:
        container_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        rate = fps if fps else (container_fps if math.isfinite(container_fps) else 0.0)
        index = -1
        n_out = 0
        last_pts = -math.inf
        while max_frames is None or n_out < max_frames:
            index += 1
            if index % stride:
                if not cap.grab():
                    break
                continue
            try:
                ok, bgr = cap.read()
            except cv2.error as err:
                msg = f"{path}: video frame {index} cannot be decoded ({err})"
                raise InputError(msg) from err
            if not ok or bgr is None:
                break
            pts_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
            if fps or not math.isfinite(pts_ms) or pts_ms / 1000.0 <= last_pts:
                # no usable stream timestamps (or a forced rate): use the frame rate
                pts = index / rate if rate > 0 else float("nan")
            else:
                pts = pts_ms / 1000.0
            last_pts = pts if math.isfinite(pts) else last_pts
            if bgr.ndim == 2:
                rgb = None
                data = bgr.astype(np.float32)
            else:
                rgb = np.ascontiguousarray(bgr[..., 2::-1])
                data = luminance(rgb)
            frame_time = None
            if time is not None and math.isfinite(pts):
                frame_time = time + TimeDelta(pts, format="sec")
            meta: dict[str, Any] = {"index": index, "pts": pts, "format": "video"}
            yield Frame(
                data,
                time=frame_time,
                exposure=exposure,
                site=site,
                color=rgb if keep_color else None,
                meta=meta,
                path=path,
            )
            n_out += 1
        if n_out == 0:
            msg = f"{path}: no video frame could be decoded"
            raise InputError(msg)
    finally:
        cap.release()


def read_video(
    path: str | Path,
    *,
    time: Time | None = None,
    site: Site | None = None,
    exposure: float | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    stride: int = 1,
    keep_color: bool = True,
) -> FrameSequence:
    """Decode a video into a :class:`FrameSequence` (see :func:`iter_video` for the options).

    The sequence's ``fps`` is the effective rate of the returned frames
    (container rate, or ``fps``, divided by ``stride``); ``meta`` holds
    ``"pts"`` (seconds, one per returned frame), ``"container_fps"`` and
    ``"n_frames_in_file"`` (the container's own count, which may be an estimate).
    """
    path = Path(path)
    cap = _open(path)
    try:
        container_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n_in_file = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    frames = list(
        iter_video(
            path,
            time=time,
            site=site,
            exposure=exposure,
            fps=fps,
            max_frames=max_frames,
            stride=stride,
            keep_color=keep_color,
        )
    )
    rate = fps or (container_fps if math.isfinite(container_fps) and container_fps > 0 else None)
    meta: dict[str, Any] = {
        "format": "video",
        "pts": np.array([f.meta["pts"] for f in frames]),
        "container_fps": container_fps or None,
        "n_frames_in_file": n_in_file or None,
        "stride": stride,
    }
    if time is not None:
        meta["start_time"] = time
    return FrameSequence(frames, fps=rate / stride if rate else None, path=path, meta=meta)


#: Field orders of interlaced video: ``"no"`` (progressive), top / bottom field first.
FIELD_ORDERS = ("no", "tff", "bff")


def _check_order(order: str) -> str:
    if order not in FIELD_ORDERS:
        msg = f"interlaced must be one of {list(FIELD_ORDERS)}, got {order!r}"
        raise InputError(msg)
    return order


def _field_rows(frame: np.ndarray, parity: int) -> np.ndarray:
    """One field of a frame, its missing rows linearly interpolated ("bob" deinterlacing)."""
    h = frame.shape[0]
    out = np.empty(frame.shape, np.float32)
    own = np.arange(parity, h, 2)
    out[own] = frame[own]
    miss = np.arange(1 - parity, h, 2)
    above, below = miss - 1, miss + 1
    # rows outside the frame take the nearest own row (edge copy)
    above = np.where(above < 0, below, above)
    below = np.where(below >= h, above, below)
    out[miss] = 0.5 * (frame[above].astype(np.float32) + frame[below].astype(np.float32))
    return out


def split_fields(
    frames: np.ndarray,
    times: np.ndarray | Time | None,
    order: str,
    *,
    frame_period: float | None = None,
) -> tuple[np.ndarray, np.ndarray | Time | None]:
    """Split interlaced frames into their two fields, each a time sample of its own.

    An interlaced (analogue, PAL/NTSC) camera exposes the even rows (the top
    field: rows 0, 2, 4, ... 0-based) and the odd rows (the bottom field)
    half a frame period apart and weaves them into one frame, so a moving
    meteor appears combed. Each frame ``i`` becomes two fields, the first in
    time at ``times[i]`` and the second at ``times[i] + period / 2``: with
    ``"tff"`` (top field first) the top field comes first, with ``"bff"``
    the bottom field. Each field is brought back to full height by
    interpolating its missing rows linearly between its own rows above and
    below ("bob" deinterlacing), so a field's pixel ``(x, y)`` is the same
    place in the image as a frame's: positions measured on fields need no
    rescaling (no halved vertical scale), and a field's summed light is
    that of a full frame exposed for the field's time.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W)
        The woven frames.
    times : ndarray (T,) of seconds, astropy.time.Time (T,), or None
        Time of each frame (its first field); None gives field times None.
    order : {"no", "tff", "bff"}
        ``"no"`` returns the frames and times unchanged.
    frame_period : float, optional
        Seconds between frames; default the median step of ``times``
        (needed for one frame, or for ``Time`` times without a step).

    Returns
    -------
    fields : ndarray, shape (2T, H, W), float32
        In time order.
    field_times : ndarray (2T,) of seconds, Time (2T,) or None

    Raises
    ------
    InputError
        For an unknown ``order``, ``frames`` not ``(T, H, W)`` with H >= 2,
        ``times`` of another length than T, or no frame period to be had.
    """
    _check_order(order)
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[1] < 2:
        msg = f"frames must be a (T, H, W) cube with H >= 2 rows, got shape {frames.shape}"
        raise InputError(msg)
    if times is not None and len(times) != len(frames):
        msg = f"times has {len(times)} entries for {len(frames)} frames"
        raise InputError(msg)
    if order == "no":
        return frames, times
    first = 0 if order == "tff" else 1
    t, h, w = frames.shape
    fields = np.empty((2 * t, h, w), np.float32)
    for i, frame in enumerate(frames):
        fields[2 * i] = _field_rows(frame, first)
        fields[2 * i + 1] = _field_rows(frame, 1 - first)
    if times is None:
        return fields, None
    secs = (times - times[0]).to_value("s") if isinstance(times, Time) else np.asarray(times)
    period = frame_period
    if period is None and len(secs) > 1:
        period = float(np.median(np.diff(np.asarray(secs, float))))
    if period is None or not np.isfinite(period) or period <= 0:
        msg = "the frame period is unknown: give frame_period (or the frame rate, --fps)"
        raise InputError(msg)
    offsets = np.tile([0.0, 0.5 * period], t)
    if isinstance(times, Time):
        return fields, times[np.repeat(np.arange(t), 2)] + TimeDelta(offsets, format="sec")
    return fields, np.repeat(np.asarray(secs, float), 2) + offsets


def field_sequence(seq: FrameSequence, order: str, *, fps: float | None = None) -> FrameSequence:
    """A :class:`FrameSequence` of the fields of interlaced frames (see :func:`split_fields`).

    Each field is a :class:`Frame` of the frame's metadata with the field's
    ``data`` (luminance, full height), ``time`` (the frame's + 0 or half a
    period; None where the frame has none), ``exposure`` (at most half the
    frame's) and ``meta`` ``"index"`` (field number), ``"frame_index"``,
    ``"field"`` (``"top"`` / ``"bottom"``) and ``"pts"`` (seconds). The
    sequence's ``fps`` is twice the frame rate; colour is dropped.

    Parameters
    ----------
    seq : FrameSequence
    order : {"no", "tff", "bff"}
        ``"no"`` returns ``seq`` itself.
    fps : float, optional
        Frame rate; default ``seq.fps``, else the step of the frames' ``pts``.

    Returns
    -------
    FrameSequence

    Raises
    ------
    InputError
        As :func:`split_fields`, and when the frame rate is unknown.
    """
    _check_order(order)
    if order == "no":
        return seq
    rate = fps or seq.fps
    pts = np.array([f.meta.get("pts", np.nan) for f in seq], float)
    if not rate and len(pts) > 1 and np.all(np.isfinite(pts)):
        step = float(np.median(np.diff(pts)))
        rate = 1.0 / step if step > 0 else None
    if not rate:
        msg = "the frame rate of the interlaced video is unknown: give fps (--fps)"
        raise InputError(msg)
    period = 1.0 / rate
    if not np.all(np.isfinite(pts)):
        pts = np.arange(len(seq)) * period
    fields, field_pts = split_fields(seq.cube(), pts, order, frame_period=period)
    names = ("top", "bottom") if order == "tff" else ("bottom", "top")
    out = []
    for k in range(len(fields)):
        src = seq[k // 2]
        dt = float(field_pts[k] - pts[k // 2])
        meta = {**src.meta, "index": k, "frame_index": src.meta.get("index", k // 2)}
        meta.update(pts=float(field_pts[k]), field=names[k % 2])
        out.append(
            src.with_(
                data=fields[k],
                color=None,
                mask=None,
                time=None if src.time is None else src.time + TimeDelta(dt, format="sec"),
                exposure=None if src.exposure is None else min(src.exposure, 0.5 * period),
                meta=meta,
            )
        )
    meta = {**seq.meta, "pts": np.asarray(field_pts), "interlaced": order}
    return FrameSequence(out, fps=2.0 * rate, path=seq.path, meta=meta)
