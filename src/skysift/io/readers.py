"""One entry point that reads FITS files, images, videos and folders into frames.

:func:`read` returns a :class:`~skysift.io.frame.Frame` for a single 2-D image
and a :class:`~skysift.io.frame.FrameSequence` for a FITS cube, a multi-page
TIFF, a video or a folder of frames; :func:`read_frame` and
:func:`read_sequence` are the typed forms of it.

Every problem with the input is raised as :class:`~skysift.errors.InputError`
with a one-line message ``"<path>: <problem>"``; exceptions of the underlying
libraries are chained (``raise ... from err``), never let through.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import exifread
import numpy as np
import tifffile
from astropy.io import fits
from astropy.time import Time, TimeDelta
from astropy.wcs import WCS
from PIL import Image, UnidentifiedImageError

from skysift.errors import InputError
from skysift.io.frame import Frame, FrameSequence, Site
from skysift.io.gmn import ff_frame, ff_sequence, is_ff_file, read_ff
from skysift.io.metadata import (
    MetadataWarning,
    as_exposure,
    as_site,
    exif_exposure,
    exif_site,
    exif_time,
    fits_exposure,
    fits_site,
    fits_time,
    parse_time,
)
from skysift.io.video import VIDEO_SUFFIXES, luminance, quiet_native_stderr, read_video

__all__ = [
    "FITS_SUFFIXES",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "luminance",
    "read",
    "read_frame",
    "read_sequence",
]

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fz")
_COMPRESSION_SUFFIXES = (".gz", ".bz2")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: Default largest image (pixels per frame x frames) read before decoding: 250 megapixels
#: (a 7380x4928 DSLR frame is 36). ``SKYSIFT_MAX_PIXELS`` overrides it.
DEFAULT_MAX_PIXELS = 250_000_000


def max_pixels() -> int:
    """The largest pixel count (all frames together) a file may declare, checked before decoding.

    ``SKYSIFT_MAX_PIXELS`` (an integer) overrides :data:`DEFAULT_MAX_PIXELS`.

    Raises
    ------
    InputError
        If ``SKYSIFT_MAX_PIXELS`` is not a positive integer.
    """
    raw = os.environ.get("SKYSIFT_MAX_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value <= 0:
        msg = f"SKYSIFT_MAX_PIXELS must be a positive integer, got {raw!r}"
        raise InputError(msg)
    return value


def check_pixel_count(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse a file whose declared ``shape`` holds more pixels than :func:`max_pixels`.

    Raises
    ------
    InputError
        Naming the file, its declared size and the limit (and how to raise it),
        or a non-positive or non-integer axis length (a corrupt header).
    """
    dims_in = list(shape)
    try:
        ok = all(float(v) == int(v) and int(v) > 0 for v in dims_in)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        dims = "x".join(str(v) for v in dims_in)
        msg = f"{path}: declares an image of {dims} pixels; every axis must be a positive integer"
        raise InputError(msg)
    n = int(np.prod([int(v) for v in shape], dtype=np.float64))
    limit = max_pixels()
    if n > limit:
        dims = "x".join(str(int(v)) for v in shape)
        msg = (
            f"{path}: declares {dims} = {n / 1e6:.0f} megapixels, over the limit of "
            f"{limit / 1e6:.0f} (set SKYSIFT_MAX_PIXELS to read larger images)"
        )
        raise InputError(msg)


def _png_shape(path: Path) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR chunk, without decoding (None if not a PNG)."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return height, width


# What the libraries raise on bad files (their own error classes derive from these).
_FITS_ERRORS = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    EOFError,
    MemoryError,
    zlib.error,
    fits.VerifyError,
)
_TIFF_ERRORS = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    EOFError,
    struct.error,
    RuntimeError,
)

PathLike = str | os.PathLike[str]
_SEQUENCE_META_KEYS = ("format", "header", "hdu", "wcs", "dtype", "time_key")
HduKey = int | str | tuple[str, int]


# -- small helpers ---------------------------------------------------------------------------


def _kind(path: Path) -> str | None:
    """``"fits"``, ``"image"``, ``"video"`` from the file name, or ``None``."""
    suffixes = [s.lower() for s in path.suffixes]
    if not suffixes:
        return None
    last = suffixes[-1]
    if last in _COMPRESSION_SUFFIXES and len(suffixes) > 1:
        return "fits" if suffixes[-2] in FITS_SUFFIXES else None
    if last in FITS_SUFFIXES:
        return "fits"
    if last in IMAGE_SUFFIXES:
        return "image"
    if last in VIDEO_SUFFIXES:
        return "video"
    return None


def _natural_key(name: str) -> list[Any]:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


@contextlib.contextmanager
def _quiet_exifread() -> Iterator[None]:
    """Silence exifread's log messages ("PNG file does not have exif data") during a call."""
    logger = logging.getLogger("exifread")
    previous = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = previous


def _read_exif(path: Path) -> dict[str, Any]:
    """EXIF tags of an image (exifread, no maker notes), ``{}`` when there are none."""

    try:
        with _quiet_exifread(), open(path, "rb") as fh:
            return dict(exifread.process_file(fh, details=False, extract_thumbnail=False))
    except Exception:  # exifread raises many types; broken EXIF must not lose the image
        return {}


def _check_file(path: Path) -> None:
    if not path.exists():
        msg = f"{path}: no such file or folder"
        raise InputError(msg)
    if path.is_file() and path.stat().st_size == 0:
        msg = f"{path}: file is empty (0 bytes)"
        raise InputError(msg)


def _frame(data: np.ndarray, path: Path, **fields: Any) -> Frame:
    """Build a Frame, turning a shape/dtype/NaN complaint into a message naming the file."""
    try:
        return Frame(data, path=path, **fields)
    except InputError as err:
        text = str(err).removesuffix(f" in {path}")  # Frame's own wording ends "... in <path>"
        msg = f"{path}: {text}"
        raise InputError(msg) from err


# -- FITS ------------------------------------------------------------------------------------


def _celestial_wcs(header: fits.Header) -> WCS | None:
    """The celestial part of a header WCS, or ``None`` when there is none or it is broken."""
    if not any(str(header.get(f"CTYPE{i}", "")).strip() for i in (1, 2, 3)):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FITSFixedWarning about old date or CROTA cards
            wcs = WCS(header)
            if not wcs.has_celestial:
                return None
            return wcs.celestial
    except Exception:  # astropy.wcs raises many types; a broken WCS is just left out
        return None


def _pick_hdu(hdul: fits.HDUList, hdu: HduKey | None, path: Path) -> int:
    """Index of the image HDU to read."""
    if hdu is not None:
        names = ", ".join(f"{i}:{h.name}" for i, h in enumerate(hdul))
        try:
            index = hdul.index_of(hdu)
            hdul[index]  # noqa: B018 - an index out of range raises here
        except (KeyError, IndexError, ValueError) as err:
            msg = f"{path}: no HDU {hdu!r} (the file has {names})"
            raise InputError(msg) from err
        if not hdul[index].is_image or hdul[index].header.get("NAXIS", 0) == 0:
            msg = f"{path}: HDU {hdu!r} holds no image data"
            raise InputError(msg)
        return index
    one_d = None
    for i, h in enumerate(hdul):
        if not h.is_image:
            continue
        naxis = int(h.header.get("ZNAXIS", h.header.get("NAXIS", 0)) or 0)
        if naxis >= 2:
            return i
        if naxis == 1 and one_d is None:
            one_d = i
    if one_d is not None:
        msg = f"{path}: HDU {one_d} holds a 1-D array, not an image"
        raise InputError(msg)
    msg = f"{path}: no image HDU (no HDU holds 2-D or 3-D image data)"
    raise InputError(msg)


def _read_fits(
    path: Path, hdu: HduKey | None
) -> tuple[np.ndarray, fits.Header, int, np.ndarray | None]:
    """(data, header, hdu index, BLANK mask or None) with BZERO/BSCALE applied."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                index = _pick_hdu(hdul, hdu, path)
                h = hdul[index]
                naxis = int(h.header.get("NAXIS", 0))
                check_pixel_count(path, [h.header.get(f"NAXIS{k}", 1) for k in range(1, naxis + 1)])
                data = np.asarray(h.data)  # BZERO/BSCALE applied (uint16 stays uint16)
                header = h.header.copy()
    except InputError:
        raise
    except _FITS_ERRORS as err:
        truncated = [w for w in caught if "truncated" in str(w.message).lower()]
        if truncated or "buffer is too small" in str(err):
            msg = f"{path}: truncated FITS file (data shorter than the header says)"
        else:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            msg = f"{path}: not a readable FITS file ({first})"
        raise InputError(msg) from err
    if any("truncated" in str(w.message).lower() for w in caught):
        msg = f"{path}: truncated FITS file (data shorter than the header says)"
        raise InputError(msg)
    while data.ndim > 2 and data.shape[0] == 1:  # (1, H, W) or (1, 1, H, W) -> (H, W)
        data = data[0]
    if data.ndim < 2:
        msg = f"{path}: HDU {index} holds a {data.ndim}-D array, not an image"
        raise InputError(msg)
    if data.ndim > 3:
        msg = f"{path}: HDU {index} holds a {data.ndim}-D array {data.shape}; expected 2-D or 3-D"
        raise InputError(msg)
    blank = None
    if np.issubdtype(data.dtype, np.integer) and "BLANK" in header:
        with contextlib.suppress(TypeError, ValueError):
            blank = data == int(header["BLANK"])
            if not blank.any():
                blank = None
    if data.dtype.byteorder not in ("=", "|"):
        data = data.astype(data.dtype.newbyteorder("="))
    return data, header, index, blank


def _fits_frames(
    path: Path, hdu: HduKey | None
) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], dict[str, Any], Time | None]:
    """Planes, shared frame fields and the header time of a FITS file."""
    data, header, index, blank = _read_fits(path, hdu)
    source = str(path)
    time, time_key = fits_time(header, source=source)
    exposure, exp_key = fits_exposure(header)
    site, site_keys = fits_site(header, source=source)
    meta: dict[str, Any] = {
        "format": "fits",
        "header": header,
        "hdu": index,
        "dtype": str(data.dtype),
        "time_key": time_key,
        "exposure_key": exp_key,
        "site_keys": site_keys,
    }
    wcs = _celestial_wcs(header)
    if wcs is not None:
        meta["wcs"] = wcs
    fields = {"exposure": exposure, "site": site, "meta": meta}
    if data.ndim == 2:
        planes = [(data, blank)]
    else:
        planes = [(data[i], None if blank is None else blank[i]) for i in range(data.shape[0])]
    return planes, fields, time


# -- images ----------------------------------------------------------------------------------


def _split_color(pixels: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(luminance or grey data, RGB or None) from an (H, W), (H, W, 1..4) array in RGB order."""
    if pixels.ndim == 2:
        return pixels, None
    if pixels.ndim == 3:
        channels = pixels.shape[2]
        if channels == 1:
            return pixels[..., 0], None
        if channels == 2:  # grey + alpha
            return pixels[..., 0], None
        if channels in (3, 4):
            rgb = np.ascontiguousarray(pixels[..., :3])  # alpha dropped
            return luminance(rgb), rgb
    msg = f"{path}: unsupported pixel layout {pixels.shape}"
    raise InputError(msg)


def _decode_png(path: Path) -> np.ndarray:
    """PNG pixels in RGB(A) order, 8 or 16 bit (OpenCV keeps 16-bit colour, Pillow does not)."""
    shape = _png_shape(path)
    if shape is not None:
        check_pixel_count(path, shape)
    try:
        buf = np.fromfile(path, dtype=np.uint8)
        # OpenCV decodes a truncated PNG into a partly blank image without an
        # error: a complete file ends with its IEND chunk.
        if buf.size < 12 or bytes(buf[-8:-4]) != b"IEND":
            msg = f"{path}: corrupt or truncated PNG (no IEND chunk at the end of the file)"
            raise InputError(msg)
        with quiet_native_stderr():  # libpng/libjpeg complain on fd 2 about broken files
            pixels = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except (cv2.error, OSError, ValueError) as err:
        msg = f"{path}: corrupt or unreadable image ({err})"
        raise InputError(msg) from err
    if pixels is None:
        msg = f"{path}: corrupt or unreadable image (cannot decode PNG data)"
        raise InputError(msg)
    if pixels.ndim == 3 and pixels.shape[2] >= 3:
        order = [2, 1, 0, 3][: pixels.shape[2]]  # BGR(A) -> RGB(A)
        pixels = pixels[..., order]
    return pixels


def _decode_pillow(path: Path) -> np.ndarray:
    """JPEG/BMP pixels with Pillow (strict about truncated files)."""

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                check_pixel_count(path, (im.height, im.width))
                im.load()
                if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                return np.asarray(im)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        msg = f"{path}: corrupt or unreadable image ({err})"
        raise InputError(msg) from err
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        msg = f"{path}: image too large to decode safely ({err})"
        raise InputError(msg) from err


def _decode_tiff(path: Path) -> tuple[list[np.ndarray], dict[str, Any]]:
    """TIFF pages as (H, W[, S]) arrays in RGB order, and a little TIFF metadata."""

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            check_pixel_count(
                path, [s for s, a in zip(series.shape, series.axes, strict=True) if a != "S"]
            )
            pixels = series.asarray()
            axes = series.axes
            info = {"tiff_axes": axes}
    except InputError:
        raise
    except _TIFF_ERRORS as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        msg = f"{path}: corrupt or unreadable TIFF ({first})"
        raise InputError(msg) from err
    if "S" in axes:  # samples (colour) last
        pixels = np.moveaxis(pixels, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    n_lead = pixels.ndim - (3 if axes.endswith("S") else 2)
    if n_lead < 0:
        msg = f"{path}: TIFF holds a {pixels.ndim}-D array, not an image"
        raise InputError(msg)
    pages = pixels.reshape((-1, *pixels.shape[n_lead:])) if n_lead else pixels[None]
    return list(pages), info


def _image_frames(
    path: Path,
) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], dict[str, Any], Time | None]:
    """(luminance, colour) per page, shared frame fields and the EXIF time of an image file."""
    suffix = path.suffix.lower()
    meta: dict[str, Any] = {
        "format": suffix.lstrip(".").replace("jpeg", "jpg").replace("tiff", "tif")
    }
    if suffix in (".tif", ".tiff"):
        pages, info = _decode_tiff(path)
        meta.update(info)
    elif suffix == ".png":
        pages = [_decode_png(path)]
    else:
        pages = [_decode_pillow(path)]
    meta["dtype"] = str(pages[0].dtype)
    planes = []
    for page in pages:
        data, rgb = _split_color(page, path)
        planes.append((data, rgb))
    tags = _read_exif(path)
    time, time_key = exif_time(tags)
    site = exif_site(tags, source=str(path))
    meta["time_key"] = time_key
    if tags:
        meta["exif"] = {k: str(v) for k, v in tags.items() if not isinstance(v, bytes)}
    fields = {"exposure": exif_exposure(tags), "site": site, "meta": meta}
    return planes, fields, time


# -- assembling frames -----------------------------------------------------------------------


def _validate_options(
    path: Path,
    time: Any,
    site: Any,
    exposure: Any,
    fps: Any,
    max_frames: Any,
    stride: Any,
) -> tuple[Time | None, Site | None, float | None, float | None]:
    try:
        t = None if time is None else parse_time(time, what="time=")
        s = None if site is None else as_site(site)
        e = None if exposure is None else as_exposure(exposure, what="exposure=")
        f = None if fps is None else as_exposure(fps, what="fps=")
    except InputError as err:
        msg = f"{path}: {err}"
        raise InputError(msg) from err
    if max_frames is not None and (
        isinstance(max_frames, bool)
        or not isinstance(max_frames, (int, np.integer))
        or max_frames < 1
    ):
        msg = f"{path}: max_frames= must be a positive integer, got {max_frames!r}"
        raise InputError(msg)
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        msg = f"{path}: stride= must be a positive integer, got {stride!r}"
        raise InputError(msg)
    return t, s, e, f


def _file_frames(
    path: Path,
    kind: str,
    *,
    hdu: HduKey | None,
    time: Time | None,
    site: Site | None,
    exposure: float | None,
    fps: float | None,
    max_frames: int | None,
    stride: int,
) -> Frame | FrameSequence:
    """Frames of one FITS or image file (a Frame for one plane, else a FrameSequence)."""
    if kind == "fits":
        planes, fields, file_time = _fits_frames(path, hdu)
    else:
        planes, fields, file_time = _image_frames(path)
    meta = fields["meta"]
    if time is not None:
        meta["time_key"] = "time="
    start = time if time is not None else file_time
    common = {
        "site": site if site is not None else fields["site"],
        "exposure": exposure if exposure is not None else fields["exposure"],
    }
    second_name = "mask" if kind == "fits" else "color"  # FITS: BLANK mask; images: RGB
    if len(planes) == 1:
        data, second = planes[0]
        return _frame(data, path, time=start, meta=meta, **{second_name: second}, **common)
    frames = []
    for i in list(range(0, len(planes), stride))[:max_frames]:
        data, second = planes[i]
        # per-plane times are known only with a frame rate
        t = start + TimeDelta(i / fps, format="sec") if (start is not None and fps) else None
        frame_meta = {**meta, "index": i}
        frames.append(
            _frame(data, path, time=t, meta=frame_meta, **{second_name: second}, **common)
        )
    seq_meta = {k: v for k, v in meta.items() if k in _SEQUENCE_META_KEYS}
    seq_meta["start_time"] = start
    return FrameSequence(frames, fps=fps / stride if fps else None, path=path, meta=seq_meta)


def _folder_frames(
    folder: Path,
    *,
    hdu: HduKey | None,
    time: Time | None,
    site: Site | None,
    exposure: float | None,
    fps: float | None,
    max_frames: int | None,
    stride: int,
) -> FrameSequence:
    """Frames of every FITS/image file in a folder, in natural name order."""
    try:
        entries = sorted(
            (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
            key=lambda p: _natural_key(p.name),
        )
    except OSError as err:
        msg = f"{folder}: cannot list folder ({err.strerror or err})"
        raise InputError(msg) from err
    files = [p for p in entries if _kind(p) in ("fits", "image")]
    skipped = [p.name for p in entries if _kind(p) not in ("fits", "image")]
    if not files:
        msg = f"{folder}: folder holds no FITS or image files ({len(entries)} other files)"
        raise InputError(msg)
    files = files[::stride][:max_frames]
    frames: list[Frame] = []
    for p in files:
        _check_file(p)
        got = _file_frames(
            p,
            _kind(p) or "",
            hdu=hdu,
            time=None,
            site=site,
            exposure=exposure,
            fps=None,
            max_frames=None,
            stride=1,
        )
        if isinstance(got, FrameSequence):
            msg = f"{p}: holds {len(got)} frames; a folder must hold single images"
            raise InputError(msg)
        if frames and got.shape != frames[0].shape:
            msg = (
                f"{folder}: frames differ in shape: {frames[0].path.name} is "  # type: ignore[union-attr]
                f"{frames[0].shape}, {p.name} is {got.shape}"
            )
            raise InputError(msg)
        frames.append(got)
    file_times = [f.time for f in frames]
    if time is not None:
        if all(t is not None for t in file_times):
            shift = time - file_times[0]  # keep the files' spacing, move the start
            for f, t in zip(frames, file_times, strict=True):
                f.time = t + shift
        elif fps:
            for i, f in enumerate(frames):
                f.time = time + TimeDelta(i * stride / fps, format="sec")
        else:
            for f in frames:
                f.time = None
        for f in frames:
            f.meta["time_key"] = "time="
    meta: dict[str, Any] = {"format": "folder", "files": [p.name for p in files]}
    meta["start_time"] = time if time is not None else file_times[0]
    if skipped:
        meta["skipped"] = skipped
    return FrameSequence(frames, fps=fps / stride if fps else None, path=folder, meta=meta)


def _read(
    path: PathLike,
    *,
    hdu: HduKey | None,
    time: Any,
    site: Any,
    exposure: Any,
    fps: Any,
    max_frames: int | None,
    stride: int,
    keep_color: bool,
) -> Frame | FrameSequence:
    if not isinstance(path, (str, os.PathLike)):
        msg = f"path must be a file or folder name (str or Path), got {type(path).__name__}"
        raise InputError(msg)
    if not str(path).strip():
        msg = "path is empty: give a file or folder name"
        raise InputError(msg)
    path = Path(path).expanduser()
    _check_file(path)
    t, s, e, f = _validate_options(path, time, site, exposure, fps, max_frames, stride)
    opts = {
        "time": t,
        "site": s,
        "exposure": e,
        "fps": f,
        "max_frames": max_frames,
        "stride": stride,
    }
    with warnings.catch_warnings(record=True) as caught:
        # Library chatter (astropy card fixes, Pillow, FFmpeg) is not the user's business
        # and would break callers that turn warnings into errors; only our own
        # MetadataWarnings are re-issued below.
        warnings.simplefilter("always")
        if path.is_dir():
            result: Frame | FrameSequence = _folder_frames(path, hdu=hdu, **opts)
        elif is_ff_file(path):  # GMN/RMS FF_*.fits, FF*.bin: frames rebuilt from max/maxframe
            result = ff_sequence(read_ff(path), **opts)
        else:
            kind = _kind(path)
            if kind is None:
                supported = " ".join(FITS_SUFFIXES + IMAGE_SUFFIXES + VIDEO_SUFFIXES)
                found = "".join(path.suffixes) or "(no extension)"
                msg = (
                    f"{path}: unknown file type {found!r}; supported: {supported} "
                    "(FITS also .gz/.bz2 compressed)"
                )
                raise InputError(msg)
            if kind == "video":
                result = read_video(path, keep_color=keep_color, **opts)
            else:
                result = _file_frames(path, kind, hdu=hdu, **opts)
    for w in caught:  # re-issue our own warnings through the caller's filters
        if issubclass(w.category, MetadataWarning):
            warnings.warn(w.message, stacklevel=3)
    if not keep_color:
        for frame in result if isinstance(result, FrameSequence) else [result]:
            frame.color = None
    return result


# -- public API ------------------------------------------------------------------------------


def read(
    path: PathLike,
    *,
    hdu: HduKey | None = None,
    time: str | Time | None = None,
    site: Site | tuple[float, ...] | dict[str, float] | None = None,
    exposure: float | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    stride: int = 1,
    keep_color: bool = True,
) -> Frame | FrameSequence:
    """Read a FITS file, an image, a video or a folder of frames.

    Formats, chosen by file extension (case-insensitive):

    - **FITS** (``.fits .fit .fts .fz``, also ``.gz``/``.bz2`` compressed): the
      first HDU with 2-D or 3-D image data, or the one named by ``hdu``.
      BZERO/BSCALE are applied (unsigned 16-bit data come back exact) and
      integer pixels equal to BLANK are masked. The array is not flipped:
      ``data[0, 0]`` is FITS pixel (1, 1). A 3-D cube gives a sequence.
      ``meta["header"]`` holds the header, ``meta["wcs"]`` its celestial
      :class:`~astropy.wcs.WCS` when it has one. Time, exposure and site come
      from the header (see :func:`skysift.io.metadata.fits_time`,
      :func:`~skysift.io.metadata.fits_exposure`, :func:`~skysift.io.metadata.fits_site`).
    - **Images** (``.png .jpg .jpeg .tif .tiff .bmp``), 8 or 16 bit: ``Frame.color``
      keeps the RGB pixels ``(H, W, 3)`` in their original dtype and
      ``Frame.data`` is the luminance ``0.2126 R + 0.7152 G + 0.0722 B``
      (Rec. 709 weights applied to the stored, gamma-encoded values; no
      linearisation), in the same units as the file. Alpha is dropped, EXIF
      orientation is *not* applied (raw sensor geometry). A multi-page TIFF
      gives a sequence. Time (naive EXIF times are taken as UTC), exposure
      and GPS site come from EXIF (see :func:`skysift.io.metadata.exif_time`).
    - **Video** (``.mp4 .avi .mkv .mov`` and others FFmpeg reads): luminance
      frames with ``meta["pts"]`` (seconds from the start); see
      :func:`skysift.io.video.iter_video`.
    - **GMN/RMS FF files** (``FF_<station>_<date>_<time>_<ms>_<frame>.fits`` and
      ``FF<cam>_....bin``, told by name): a sequence rebuilt from the max-pixel and
      max-frame planes (see :mod:`skysift.io.gmn`), with the block's start time and
      frame rate; :func:`read_frame` gives the ``avepixel`` plane.
    - **Folder**: every FITS/image file in it (other files are skipped and
      listed in ``meta["skipped"]``), in natural name order (``f2`` before
      ``f10``), each with the time in its own metadata. All must be single
      images of one shape.

    Parameters
    ----------
    path : str or path-like
        File or folder.
    hdu : int, str or (str, int), optional
        FITS only: the HDU index, EXTNAME or (EXTNAME, EXTVER) to read.
    time : str or astropy.time.Time, optional
        Overrides the file's time: an ISO 8601 string (naive = UTC, a ``Z``
        or ``+hh:mm`` suffix is honoured) or a ``Time``. For a sequence it is
        the time of the first frame; later frames get ``time + pts`` (video),
        the files' own spacing (folder, when every file has a time) or
        ``time + i / fps`` (when ``fps`` is given); otherwise they get
        ``None`` and the start is kept in ``meta["start_time"]``.
    site : Site, tuple or dict, optional
        Overrides the file's site: a :class:`Site`, ``(lat, lon)`` or
        ``(lat, lon, height)`` in degrees, degrees, metres.
    exposure : float, optional
        Overrides the file's exposure time, in seconds.
    fps : float, optional
        Frame rate in frames per second: replaces a video's container rate
        (frame times become ``i / fps``) and gives cubes and folders a rate.
    max_frames : int, optional
        Sequences only: return at most this many frames (after ``stride``).
    stride : int
        Sequences only: return every ``stride``-th frame. Default 1.
    keep_color : bool
        Keep ``Frame.color`` for colour inputs. Default ``True``; set ``False``
        to save memory on long colour videos.

    Returns
    -------
    Frame or FrameSequence
        A :class:`Frame` for one 2-D image, a :class:`FrameSequence` for a
        cube, multi-page TIFF, video or folder. Frame times are UTC as written
        in the file (FITS ``DATE-OBS`` is the exposure start); the keyword they
        came from is in ``meta["time_key"]``.

    Raises
    ------
    InputError
        For a missing or empty file, an unknown extension, a corrupt or
        truncated file, a FITS file without image data, a 1-D array, an image
        without one finite pixel, an unreadable video, or a bad option
        (time string, site out of range, non-positive exposure/fps). The
        message is one line: ``"<path>: <problem>"``.

    Warns
    -----
    MetadataWarning
        When a time, site or exposure in the file cannot be understood and is
        ignored.

    Examples
    --------
    >>> frame = read("tests/data/magic_allsky/20180817_0055.fits")  # doctest: +SKIP
    >>> frame.time.isot, frame.exposure  # doctest: +SKIP
    ('2018-08-17T00:52:21.000', 60.0)
    """
    return _read(
        path,
        hdu=hdu,
        time=time,
        site=site,
        exposure=exposure,
        fps=fps,
        max_frames=max_frames,
        stride=stride,
        keep_color=keep_color,
    )


def as_frame(image: Any, *, site: Any = None, time: Any = None) -> Frame:
    """A :class:`Frame` from what a user passes as an image: a Frame, a path or a 2-D array.

    Parameters
    ----------
    image : Frame, str, os.PathLike or ndarray of shape (H, W)
        A frame is returned as it is; a path is read with :func:`read_frame`;
        an array becomes a frame without metadata.
    site, time : optional
        Passed to :func:`read_frame` for a path, or set on an array's frame.

    Returns
    -------
    Frame

    Raises
    ------
    InputError
        If ``image`` is none of these, or an array is not 2-D and numeric.
    """
    if isinstance(image, Frame):
        return image
    if isinstance(image, (str, os.PathLike)):
        return read_frame(image, site=site, time=time)
    if isinstance(image, np.ndarray):
        if image.ndim != 2 or not np.issubdtype(image.dtype, np.number):
            msg = (
                f"an image array must be 2-D and numeric, got shape {image.shape} of {image.dtype}"
            )
            raise InputError(msg)
        t, s = _validate_options(Path("array"), time, site, None, None, None, 1)[:2]
        return Frame(data=np.asarray(image, dtype=np.float64), site=s, time=t)
    msg = f"image must be a Frame, a file name or a 2-D array, got {type(image).__name__}"
    raise InputError(msg)


def read_frame(
    path: PathLike,
    *,
    hdu: HduKey | None = None,
    time: str | Time | None = None,
    site: Site | tuple[float, ...] | dict[str, float] | None = None,
    exposure: float | None = None,
    keep_color: bool = True,
) -> Frame:
    """Read a single image as a :class:`Frame` (see :func:`read` for formats and options).

    A sequence of exactly one frame (e.g. a ``(1, H, W)`` cube) gives that frame.

    Raises
    ------
    InputError
        As :func:`read`, and when the input holds several frames (a cube, a
        video, a folder): use :func:`read_sequence` for those.
    """
    result = _read(
        path,
        hdu=hdu,
        time=time,
        site=site,
        exposure=exposure,
        fps=None,
        max_frames=2,
        stride=1,
        keep_color=keep_color,
    )
    if isinstance(result, Frame):
        return result
    if result.meta.get("format") == "rms-ff":  # an FF file as one image: its avepixel plane
        return ff_frame(result.meta["ff"], time=result.meta.get("start_time"), site=result[0].site)
    if len(result) == 1:
        return result[0]
    what = "a folder" if Path(path).is_dir() else "a sequence"
    msg = (
        f"{path}: {what} of several frames, not one image: give a single image file "
        "(`skysift bolide` reads videos, cubes and folders of frames; "
        "in Python: skysift.io.read_sequence())"
    )
    raise InputError(msg)


def read_sequence(
    path: PathLike,
    *,
    hdu: HduKey | None = None,
    time: str | Time | None = None,
    site: Site | tuple[float, ...] | dict[str, float] | None = None,
    exposure: float | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    stride: int = 1,
    keep_color: bool = True,
) -> FrameSequence:
    """Read a video, cube, multi-page TIFF or folder as a :class:`FrameSequence`.

    A single image gives a sequence of one frame (with ``fps`` as given).
    See :func:`read` for formats and options.

    Raises
    ------
    InputError
        As :func:`read`.
    """
    result = _read(
        path,
        hdu=hdu,
        time=time,
        site=site,
        exposure=exposure,
        fps=fps,
        max_frames=max_frames,
        stride=stride,
        keep_color=keep_color,
    )
    if isinstance(result, FrameSequence):
        return result
    meta = {k: v for k, v in result.meta.items() if k in _SEQUENCE_META_KEYS}
    meta["start_time"] = result.time
    return FrameSequence([result], fps=float(fps) if fps else None, path=result.path, meta=meta)
