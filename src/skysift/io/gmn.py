"""Global Meteor Network (RMS) FF files: read, write, make from frames, turn back into frames.

An *FF file* ("four-frame temporal pixel" compression, from CAMS and used by
the RMS software of the Global Meteor Network) holds a block of ``nframes``
video frames (256 by default) as four 8-bit images of the same shape:

* ``maxpixel``: the largest value of each pixel over the block;
* ``maxframe``: the frame (0-based, within the block) where that largest value
  occurred;
* ``avepixel``: the mean of each pixel over the block *without* its largest
  value, ``floor((sum - max) / (N - 1))``;
* ``stdpixel``: the standard deviation without the largest value,
  ``floor(sqrt((sumsq - max**2 - acc * mean) / (N - 2)))`` with
  ``acc = sum - max``, integer arithmetic, and 1 where it would be 0.

Two file flavours exist:

* ``FF_<station>_<YYYYMMDD>_<HHMMSS>_<mmm>_<frameno>.fits``: a primary HDU
  with no data and the header cards ``NROWS NCOLS NBITS NFRAMES FIRST CAMNO FPS
  DATE-OBS``, then four image extensions named ``MAXPIXEL``, ``MAXFRAME``,
  ``AVEPIXEL``, ``STDPIXEL`` (uint8);
* ``FF<camno>_<YYYYMMDD>_<HHMMSS>_<mmm>_<frameno>.bin`` (CAMS, little endian):
  version 1 starts with five uint32 ``nrows ncols nbits first camno``
  (``nframes = 2**nbits``, no frame rate); version 2 starts with the int32
  ``-1`` and then eight uint32 ``nrows ncols nframes first camno
  decimation_fact interleave_flag fps*1000``. The four planes follow, each
  ``nrows * ncols`` bytes, in the order maxpixel, maxframe, avepixel,
  stdpixel.

The time in the file name is the UTC start of the block's first frame (the
fraction is milliseconds when it has 3 digits, else microseconds); the FITS
``DATE-OBS`` card, when present, wins over the name.

This module is written from the format description of the RMS software
(github.com/CroatianMeteorNetwork/RMS: ``RMS/Formats/FFfits.py``,
``FFbin.py``, ``FFStruct.py`` and ``RMS/CompressionCy.pyx``); no RMS code
(GPL-3) is copied.

References
----------
.. [1] Vida, D., et al. 2021, "The Global Meteor Network - Methodology and
   first results", MNRAS 506, 5046, section 2.3 (FF compression).
.. [2] Jenniskens, P., et al. 2011, "CAMS: Cameras for Allsky Meteor
   Surveillance", Icarus 216, 40 (the four-frame temporal pixel format).
"""

from __future__ import annotations

import math
import os
import re
import struct
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time, TimeDelta
from astropy.utils.exceptions import AstropyWarning
from scipy import ndimage

from skysift.errors import InputError
from skysift.io.frame import Frame, FrameSequence, Site
from skysift.io.metadata import MetadataWarning

__all__ = [
    "FF_PLANES",
    "FFFile",
    "ff_frame",
    "ff_from_frames",
    "ff_name",
    "ff_sequence",
    "ff_to_frames",
    "is_ff_file",
    "parse_ff_name",
    "read_ff",
    "write_ff",
]

#: The four planes in file order (also the FITS extension names, upper-cased).
FF_PLANES = ("maxpixel", "maxframe", "avepixel", "stdpixel")

_NAME_RE = re.compile(r"^FF_?[^_]*_\d{8}_\d{6}_\d{3,6}", re.IGNORECASE)
_MAX_SIDE = 20000  # a sanity limit on NROWS/NCOLS of a binary header


@dataclass
class FFFile:
    """One RMS/CAMS FF file: the four planes and the header values.

    Parameters
    ----------
    maxpixel, maxframe, avepixel, stdpixel : ndarray of uint8, shape (H, W)
        The planes (see the module docstring); pixel ``[y, x]``, x = column.
    nframes : int
        Number of video frames compressed into the file. Default 256.
    fps : float or None
        Frame rate in frames per second (unknown in version-1 ``.bin`` files).
    camno : int or str
        Camera number (``.bin``) or station/camera code (FITS ``CAMNO``).
    starttime : astropy.time.Time or None
        UTC start of the first frame of the block.
    station : str or None
        Station code from the file name (``FF_<station>_...``).
    first : int
        Frame number of the first frame of the block in the capture.
    nbits : int
        Bits per pixel of the source video (8).
    decimation_fact, interleave_flag : int
        ``.bin`` version 2 fields (interleave 0 = progressive, 1 = even/odd,
        2 = odd/even).
    header : dict
        All header values as read (FITS cards or binary fields).
    flavour : {"fits", "bin-v1", "bin-v2", "memory"}
        Where the planes came from.
    path : Path or None
        The file read.

    Raises
    ------
    InputError
        If the planes differ in shape or are not 2-D, or ``nframes`` is not in
        [3, 256] (``maxframe`` is 8 bit).
    """

    maxpixel: np.ndarray
    maxframe: np.ndarray
    avepixel: np.ndarray
    stdpixel: np.ndarray
    nframes: int = 256
    fps: float | None = None
    camno: int | str = 0
    starttime: Time | None = None
    station: str | None = None
    first: int = 0
    nbits: int = 8
    decimation_fact: int = 1
    interleave_flag: int = 0
    header: dict[str, Any] = field(default_factory=dict)
    flavour: str = "memory"
    path: Path | None = None

    def __post_init__(self) -> None:
        planes = [np.asarray(getattr(self, p)) for p in FF_PLANES]
        shape = planes[0].shape
        for name, arr in zip(FF_PLANES, planes, strict=True):
            if arr.ndim != 2 or arr.shape != shape:
                msg = (
                    f"FF planes must be 2-D arrays of one shape, got {name} of shape "
                    f"{arr.shape} (maxpixel {shape})"
                )
                raise InputError(msg)
            setattr(self, name, np.clip(arr, 0, 255).astype(np.uint8, copy=False))
        if not 3 <= int(self.nframes) <= 256:
            msg = f"nframes must be in [3, 256] (maxframe is 8 bit), got {self.nframes!r}"
            raise InputError(msg)
        self.nframes = int(self.nframes)
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            self.fps = None

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape ``(H, W)`` in pixels."""
        return self.maxpixel.shape  # type: ignore[return-value]

    @property
    def time(self) -> Time | None:
        """Alias of :attr:`starttime` (UTC start of the first frame)."""
        return self.starttime


# -- file names ------------------------------------------------------------------------------


def parse_ff_name(name: str | os.PathLike[str]) -> dict[str, Any]:
    """Station, start time and frame number from an FF file name.

    ``FF_CA0001_20170626_020520_353_0005120.fits`` (RMS) and
    ``FF499_20170626_020520_353_0005120.bin`` (CAMS) are both understood.

    Parameters
    ----------
    name : str or path
        The file name (a folder part is ignored).

    Returns
    -------
    dict
        ``station`` (str, the camera number for CAMS names), ``time``
        (:class:`~astropy.time.Time`, UTC start of the block), ``frame``
        (int or None, the number of the first frame).

    Raises
    ------
    InputError
        If the name does not follow either pattern.
    """
    base = Path(name).name
    stem = base.split(".")[0]
    parts = stem.split("_")
    i = 1 if len(parts[0]) == 2 else 0
    try:
        station = parts[1] if i == 1 else parts[0][2:]
        date, hms, frac = parts[i + 1], parts[i + 2], parts[i + 3]
        if not (parts[0][:2].upper() == "FF" and len(date) == 8 and len(hms) == 6):
            raise ValueError(base)
        micro = int(frac) * 1000 if len(frac) == 3 else int(frac)
        iso = f"{date[:4]}-{date[4:6]}-{date[6:8]}T{hms[:2]}:{hms[2:4]}:{hms[4:6]}.{micro:06d}"
        time = Time(iso, format="isot", scale="utc")
        frame = int(parts[i + 4]) if len(parts) > i + 4 and parts[i + 4].isdigit() else None
    except (IndexError, ValueError) as err:
        msg = (
            f"{base}: not an FF file name (expected FF_<station>_YYYYMMDD_HHMMSS_mmm_<frame>"
            ".fits or FF<cam>_YYYYMMDD_HHMMSS_mmm_<frame>.bin)"
        )
        raise InputError(msg) from err
    return {"station": station, "time": time, "frame": frame}


def ff_name(station: str, time: Time, frame: int = 0, *, flavour: str = "fits") -> str:
    """The RMS file name of an FF file: ``FF_<station>_YYYYMMDD_HHMMSS_mmm_<frame:07d>.fits``.

    ``flavour="bin"`` gives the CAMS form ``FF<station>_..._<frame>.bin``.
    """
    t = Time(time).utc.datetime
    stamp = f"{t:%Y%m%d_%H%M%S}_{t.microsecond // 1000:03d}_{int(frame):07d}"
    if flavour == "bin":
        return f"FF{station}_{stamp}.bin"
    return f"FF_{station}_{stamp}.fits"


def is_ff_file(path: str | os.PathLike[str]) -> bool:
    """True for a file named like an FF file (``FF*.fits`` / ``FF*.bin`` with a date and time)."""
    p = Path(path)
    suffix = p.suffix.lower()
    return suffix in (".fits", ".bin") and bool(_NAME_RE.match(p.name))


# -- reading ---------------------------------------------------------------------------------


def _header_time(value: Any, path: Path) -> Time | None:
    try:
        return Time(str(value).strip().replace(" ", "T"), format="isot", scale="utc")
    except ValueError:
        msg = f"{path}: DATE-OBS {value!r} is not ISO 8601; using the file name"
        warnings.warn(msg, MetadataWarning, stacklevel=3)
        return None


def _read_fits(path: Path) -> FFFile:
    try:
        with warnings.catch_warnings(), fits.open(path, memmap=False) as hdul:
            # astropy's own notes on a damaged file: the checks below name the problem
            warnings.simplefilter("ignore", AstropyWarning)
            hdul.verify("silentfix")
            head = hdul[0].header
            names = [h.name.upper() for h in hdul]
            planes = {}
            for i, plane in enumerate(FF_PLANES):
                key = plane.upper()
                hdu = hdul[key] if key in names else (hdul[i + 1] if len(hdul) > i + 1 else None)
                if hdu is None or hdu.data is None:
                    msg = f"{path}: FF file lacks the {key} image (truncated or not an FF file)"
                    raise InputError(msg)
                planes[plane] = np.array(hdu.data)
            header = {k: head[k] for k in head if k not in ("COMMENT", "HISTORY", "")}
    except InputError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError) as err:
        msg = f"{path}: cannot read FF FITS file, truncated or corrupt ({err})"
        raise InputError(msg) from err
    start = _header_time(header["DATE-OBS"], path) if "DATE-OBS" in header else None
    station = None
    try:
        info = parse_ff_name(path)
        station = info["station"]
        start = start or info["time"]
    except InputError:
        pass
    fps = header.get("FPS")
    nframes = int(header.get("NFRAMES", 256) or 256)
    return FFFile(
        **planes,
        nframes=nframes if nframes > 0 else 256,
        fps=float(fps) if fps is not None else None,
        camno=header.get("CAMNO", 0),
        starttime=start,
        station=station,
        first=int(header.get("FIRST", 0) or 0),
        nbits=int(header.get("NBITS", 8) or 8),
        header=header,
        flavour="fits",
        path=path,
    )


def _read_bin(path: Path) -> FFFile:
    try:
        raw = path.read_bytes()
    except OSError as err:
        msg = f"{path}: cannot read ({err.strerror or err})"
        raise InputError(msg) from err
    if len(raw) < 20:
        msg = f"{path}: FF .bin file truncated: {len(raw)} bytes, shorter than its header"
        raise InputError(msg)
    (flag,) = struct.unpack_from("<i", raw, 0)
    if flag > 0:
        nrows, ncols, nbits, first, camno = struct.unpack_from("<5I", raw, 0)
        offset = 20
        header = {"nrows": nrows, "ncols": ncols, "nbits": nbits, "first": first, "camno": camno}
        if not 1 <= nbits <= 8:
            msg = f"{path}: not an FF .bin file (version 1 with nbits={nbits}, expected 1..8)"
            raise InputError(msg)
        nframes, fps, deci, inter, flavour = 2**nbits, None, 1, 0, "bin-v1"
    elif flag == -1:
        if len(raw) < 36:
            msg = f"{path}: FF .bin file truncated: {len(raw)} bytes, shorter than its header"
            raise InputError(msg)
        nrows, ncols, nframes, first, camno, deci, inter, fps_milli = struct.unpack_from(
            "<8I", raw, 4
        )
        offset = 36
        header = {
            "nrows": nrows, "ncols": ncols, "nframes": nframes, "first": first, "camno": camno,
            "decimation_fact": deci, "interleave_flag": inter, "fps_milli": fps_milli,
        }  # fmt: skip
        fps = fps_milli / 1000.0 if fps_milli else None
        nbits, flavour = 8, "bin-v2"
    else:
        msg = f"{path}: not an FF .bin file (first int32 is {flag}; expected rows > 0 or -1)"
        raise InputError(msg)
    if not (0 < nrows <= _MAX_SIDE and 0 < ncols <= _MAX_SIDE):
        msg = f"{path}: not an FF .bin file (header gives {ncols}x{nrows} px)"
        raise InputError(msg)
    n = nrows * ncols
    need = offset + 4 * n
    if len(raw) < need:
        msg = (
            f"{path}: FF .bin file truncated: {len(raw)} bytes, the header ({ncols}x{nrows} px) "
            f"needs {need}"
        )
        raise InputError(msg)
    arr = np.frombuffer(raw, np.uint8, count=4 * n, offset=offset).reshape(4, nrows, ncols)
    station = str(camno)
    start = None
    try:
        info = parse_ff_name(path)
        station, start = info["station"] or station, info["time"]
    except InputError:
        pass
    return FFFile(
        *[a.copy() for a in arr],
        nframes=min(int(nframes), 256) if nframes else 256,
        fps=fps,
        camno=camno,
        starttime=start,
        station=station,
        first=first,
        nbits=nbits,
        decimation_fact=deci,
        interleave_flag=inter,
        header=header,
        flavour=flavour,
        path=path,
    )


def read_ff(path: str | os.PathLike[str]) -> FFFile:
    """Read an RMS ``FF_*.fits`` or a CAMS/RMS ``FF*.bin`` file.

    The flavour is told by content: a file starting with the FITS card
    ``SIMPLE`` is read as FITS, anything else as ``.bin``.

    Parameters
    ----------
    path : str or path
        The FF file.

    Returns
    -------
    FFFile
        ``starttime`` from ``DATE-OBS`` or else the file name (UTC); ``fps``
        from the header (None for version-1 ``.bin`` files).

    Raises
    ------
    InputError
        For a missing, empty, truncated or corrupt file, or one that is not
        an FF file.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(80)
    except FileNotFoundError:
        msg = f"{path}: no such file"
        raise InputError(msg) from None
    except OSError as err:
        msg = f"{path}: cannot read ({err.strerror or err})"
        raise InputError(msg) from err
    if not head:
        msg = f"{path}: file is empty"
        raise InputError(msg)
    if head.startswith(b"SIMPLE"):
        return _read_fits(path)
    return _read_bin(path)


# -- writing ---------------------------------------------------------------------------------


def write_ff(path: str | os.PathLike[str], ff: FFFile) -> Path:
    """Write an FF file in the FITS flavour RMS reads (atomically).

    A primary HDU with ``NROWS NCOLS NBITS NFRAMES FIRST CAMNO FPS DATE-OBS``
    and the image extensions ``MAXPIXEL MAXFRAME AVEPIXEL STDPIXEL`` (uint8).
    Use :func:`ff_name` for the name RMS expects.

    Parameters
    ----------
    path : str or path
        Output file (``.fits``).
    ff : FFFile

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        If ``ff`` is not an :class:`FFFile`.
    """
    if not isinstance(ff, FFFile):
        msg = f"ff must be an FFFile, got {type(ff).__name__}"
        raise InputError(msg)
    path = Path(path)
    head = fits.Header()
    h, w = ff.shape
    head["NROWS"] = h
    head["NCOLS"] = w
    head["NBITS"] = int(ff.nbits)
    head["NFRAMES"] = int(ff.nframes)
    head["FIRST"] = int(ff.first)
    head["CAMNO"] = ff.camno if isinstance(ff.camno, (int, np.integer)) else str(ff.camno)
    head["FPS"] = float(ff.fps) if ff.fps else -1.0
    if ff.starttime is not None:
        head["DATE-OBS"] = Time(ff.starttime).utc.datetime.strftime("%Y-%m-%dT%H:%M:%S.%f")
    hdus = [fits.PrimaryHDU(header=head)]
    hdus += [fits.ImageHDU(getattr(ff, p), name=p.upper()) for p in FF_PLANES]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# -- compression and reconstruction ------------------------------------------------------------


def ff_from_frames(
    frames: np.ndarray,
    *,
    fps: float | None = 25.0,
    starttime: Time | str | None = None,
    station: str | None = None,
    camno: int | str = 0,
    first: int = 0,
) -> FFFile:
    """Compress a block of 8-bit frames into an FF file, as RMS does.

    Per pixel: ``maxpixel`` the largest value, ``maxframe`` its frame (the
    first one when several frames share the largest value; RMS draws one of
    them at random), ``avepixel = floor((sum - max) / (N - 1))`` and
    ``stdpixel = floor(sqrt((sumsq - max**2 - acc * ave) / (N - 2)))`` with
    ``acc = sum - max`` (the variance without the largest value), set to 1
    where it is 0 (RMS ``CompressionCy.compressFrames``).

    Parameters
    ----------
    frames : ndarray of uint8, shape (N, H, W)
        The block, ``3 <= N <= 256``. Other integer dtypes with values in
        0..255 are accepted.
    fps : float, optional
        Frame rate in frames per second. Default 25.
    starttime : astropy.time.Time or str, optional
        UTC start of the first frame.
    station : str, optional
        Station code.
    camno : int or str, optional
        Camera number/code for the header.
    first : int, optional
        Frame number of the block's first frame.

    Returns
    -------
    FFFile

    Raises
    ------
    InputError
        If ``frames`` is not ``(N, H, W)`` with ``3 <= N <= 256``, or holds
        values outside 0..255 or non-integers.
    """
    arr = np.asarray(frames)
    if arr.ndim != 3 or not 3 <= arr.shape[0] <= 256:
        msg = f"frames must be (N, H, W) with 3 <= N <= 256, got shape {arr.shape}"
        raise InputError(msg)
    if not np.issubdtype(arr.dtype, np.integer):
        msg = f"frames must be 8-bit integers (uint8), got dtype {arr.dtype}"
        raise InputError(msg)
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        msg = f"frames must hold values in 0..255, got {arr.min()}..{arr.max()}"
        raise InputError(msg)
    n = arr.shape[0]
    a = arr.astype(np.int64)
    mx = a.max(axis=0)
    arg = a.argmax(axis=0)
    acc = a.sum(axis=0) - mx
    ave = acc // (n - 1)
    var = (a * a).sum(axis=0) - mx * mx - acc * ave
    std = np.floor(np.sqrt(np.maximum(var, 0) // (n - 2))).astype(np.int64)
    std[std == 0] = 1
    start = Time(starttime, scale="utc") if isinstance(starttime, str) else starttime
    return FFFile(
        maxpixel=mx.astype(np.uint8),
        maxframe=arg.astype(np.uint8),
        avepixel=ave.astype(np.uint8),
        stdpixel=np.minimum(std, 255).astype(np.uint8),
        nframes=n,
        fps=fps,
        camno=camno,
        starttime=start,
        station=station,
        first=first,
    )


def ff_to_frames(
    ff: FFFile, *, n_frames: int | None = None, k_sigma: float | None = None, grow: int = 0
) -> np.ndarray:
    """Rebuild a frame sequence from the max-pixel and max-frame planes.

    Frame ``t`` is ``avepixel`` except at the pixels whose ``maxframe`` is
    ``t``, which get ``maxpixel``: a moving meteor appears in each frame at
    the pixels where it was brightest then, on the block's mean background.

    Parameters
    ----------
    ff : FFFile
    n_frames : int, optional
        Number of frames to rebuild. Default ``ff.nframes`` (at least
        ``maxframe.max() + 1``).
    k_sigma : float, optional
        Put ``maxpixel`` back only where ``maxpixel - avepixel > k_sigma *
        stdpixel`` (the RMS detection rule's form); elsewhere every frame
        keeps ``avepixel``. This removes the scattered noise maxima that
        otherwise appear in every rebuilt frame. Default None: all pixels.
    grow : int, optional
        With ``k_sigma``: also put back the maxima of frame ``t`` within
        ``grow`` pixels of that frame's significant ones (the faint wings of
        the meteor's image). Default 0.

    Returns
    -------
    ndarray of uint8, shape (N, H, W)

    Raises
    ------
    InputError
        If ``n_frames`` is not a positive integer.
    """
    if n_frames is None:
        n_frames = max(int(ff.nframes), int(ff.maxframe.max()) + 1)
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        msg = f"n_frames must be a positive integer, got {n_frames!r}"
        raise InputError(msg)
    out = np.broadcast_to(ff.avepixel, (int(n_frames), *ff.shape)).copy()
    if k_sigma is None:
        yy, xx = np.nonzero(ff.maxframe < n_frames)
        out[ff.maxframe[yy, xx], yy, xx] = ff.maxpixel[yy, xx]
        return out
    hits = _frame_hits(ff, k_sigma, grow)
    for i in range(int(n_frames)):
        hit = hits(i)
        out[i][hit] = ff.maxpixel[hit]
    return out


def _frame_hits(ff: FFFile, k_sigma: float | None, grow: int):
    """``hits(i)``: the pixels of frame ``i`` that get ``maxpixel`` back."""
    if isinstance(grow, bool) or not isinstance(grow, (int, np.integer)) or grow < 0:
        msg = f"grow must be an integer >= 0, got {grow!r}"
        raise InputError(msg)
    sig = _significant(ff, k_sigma)
    disk = None
    if grow and k_sigma is not None:
        r = np.arange(-grow, grow + 1)
        disk = (r[:, None] ** 2 + r[None, :] ** 2) <= grow**2

    def hits(i: int) -> np.ndarray:
        mine = ff.maxframe == i
        core = sig & mine
        if disk is None or not core.any():
            return core
        return ndimage.binary_dilation(core, structure=disk) & mine

    return hits


def _significant(ff: FFFile, k_sigma: float | None) -> np.ndarray:
    if k_sigma is None:
        return np.ones(ff.shape, bool)
    if not (isinstance(k_sigma, (int, float, np.number)) and k_sigma >= 0):
        msg = f"k_sigma must be a number >= 0 or None, got {k_sigma!r}"
        raise InputError(msg)
    excess = ff.maxpixel.astype(np.int16) - ff.avepixel.astype(np.int16)
    return excess > float(k_sigma) * ff.stdpixel


def _frame_meta(ff: FFFile) -> dict[str, Any]:
    return {
        "format": "rms-ff",
        "ff_flavour": ff.flavour,
        "header": dict(ff.header),
        "station": ff.station,
        "camno": ff.camno,
        "nframes": ff.nframes,
    }


def ff_sequence(
    ff: FFFile,
    *,
    time: Time | None = None,
    site: Site | None = None,
    exposure: float | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    stride: int = 1,
    k_sigma: float | None = 3.0,
    grow: int = 3,
) -> FrameSequence:
    """The frame sequence rebuilt from an FF file (see :func:`ff_to_frames`), with times.

    Frame ``i`` starts at ``start + i / fps``, ``start`` being ``time`` or the
    file's start time; ``meta["ff"]`` holds the :class:`FFFile`.

    Parameters
    ----------
    ff : FFFile
    time : astropy.time.Time, optional
        Overrides the file's start time (UTC, first frame).
    site : Site, optional
        Attached to every frame.
    exposure : float, optional
        Exposure of one frame in seconds. Default ``1 / fps``.
    fps : float, optional
        Overrides the file's frame rate.
    max_frames, stride : int, optional
        Keep every ``stride``-th frame, at most ``max_frames`` of them.
    k_sigma : float or None, optional
        See :func:`ff_to_frames`. Default 3: only pixels whose maximum stands
        out of their noise are put back, so the frames hold the meteor on a
        clean mean background (the scattered noise maxima of a pure
        rebuild break head tracking).
    grow : int, optional
        See :func:`ff_to_frames`. Default 3 px, which keeps the meteor's wings.

    Returns
    -------
    FrameSequence
        Float32 frames; ``fps`` None when neither the file nor ``fps`` gives one.
    """
    rate = fps or ff.fps
    start = time if time is not None else ff.starttime
    n = max(int(ff.nframes), int(ff.maxframe.max()) + 1)
    keep = list(range(0, n, stride))[:max_frames]
    hits = _frame_hits(ff, k_sigma, grow)
    meta = _frame_meta(ff)
    frames = []
    for i in keep:
        t = start + TimeDelta(i / rate, format="sec") if (start is not None and rate) else None
        data = ff.avepixel.astype(np.float32)
        hit = hits(i)
        data[hit] = ff.maxpixel[hit]
        frames.append(
            Frame(
                data,
                time=t,
                exposure=exposure if exposure else (1.0 / rate if rate else None),
                site=site,
                meta={**meta, "index": i, "time_key": "time=" if time is not None else "DATE-OBS"},
                path=ff.path,
            )
        )
    seq_meta = {**meta, "ff": ff, "start_time": start}
    return FrameSequence(frames, fps=rate / stride if rate else None, path=ff.path, meta=seq_meta)


def ff_frame(
    ff: FFFile, *, plane: str = "avepixel", time: Time | None = None, site: Site | None = None
) -> Frame:
    """One plane of an FF file as a :class:`Frame` (default the mean, ``avepixel``).

    The frame's time is the block's start (or ``time``) and its exposure the
    whole block, ``nframes / fps``, when the rate is known.

    Raises
    ------
    InputError
        If ``plane`` is not one of :data:`FF_PLANES`.
    """
    if plane not in FF_PLANES:
        msg = f"plane must be one of {', '.join(FF_PLANES)}, got {plane!r}"
        raise InputError(msg)
    meta = {**_frame_meta(ff), "plane": plane, "fps": ff.fps}
    return Frame(
        getattr(ff, plane).astype(np.float32),
        time=time if time is not None else ff.starttime,
        exposure=ff.nframes / ff.fps if ff.fps else None,
        site=site,
        meta=meta,
        path=ff.path,
    )
