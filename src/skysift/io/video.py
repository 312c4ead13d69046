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

__all__ = ["VIDEO_SUFFIXES", "iter_video", "read_video", "luminance", "quiet_native_stderr"]

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
