"""The in-memory image types: :class:`Site`, :class:`Frame`, :class:`FrameSequence`."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import EarthLocation
from astropy.time import Time

from skysift.errors import InputError

__all__ = ["Site", "Frame", "FrameSequence"]


@dataclass(frozen=True)
class Site:
    """An observing site on the Earth (WGS84).

    Parameters
    ----------
    lat : float
        Geodetic latitude in degrees, north positive, in [-90, 90].
    lon : float
        Longitude in degrees, east positive, in [-180, 360).
    height : float, optional
        Height above the ellipsoid in metres, in [-500, 10000]. Default 0.

    Raises
    ------
    InputError
        If a value is not finite or out of range.
    """

    lat: float
    lon: float
    height: float = 0.0

    def __post_init__(self) -> None:
        for name, value, lo, hi in (
            ("latitude", self.lat, -90.0, 90.0),
            ("longitude", self.lon, -180.0, 360.0),
            ("height", self.height, -500.0, 10000.0),
        ):
            if not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(
                float(value)
            ):
                msg = f"site {name} must be a finite number, got {value!r}"
                raise InputError(msg)
            if not lo <= float(value) <= hi:
                unit = "m" if name == "height" else "deg"
                msg = f"site {name} must be in [{lo:g}, {hi:g}] {unit}, got {float(value):g}"
                raise InputError(msg)

    def to_earth_location(self) -> EarthLocation:
        """Return the site as an :class:`astropy.coordinates.EarthLocation`."""
        return EarthLocation.from_geodetic(
            lon=self.lon * u.deg, lat=self.lat * u.deg, height=self.height * u.m
        )

    def to_dict(self) -> dict[str, float]:
        """Return ``{"lat": ..., "lon": ..., "height": ...}`` (deg, deg, m)."""
        return {"lat": float(self.lat), "lon": float(self.lon), "height": float(self.height)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Site:
        """Build a site from :meth:`to_dict` output."""
        return cls(float(d["lat"]), float(d["lon"]), float(d.get("height", 0.0)))


@dataclass
class Frame:
    """One image of the sky with what is known about it.

    Parameters
    ----------
    data : ndarray, shape (H, W)
        Pixel values as float32 (luminance for colour images, see
        :func:`skysift.io.read`).
    mask : ndarray of bool, shape (H, W), optional
        Data-quality mask, ``True`` = bad pixel (NaN, not sky). Default: the
        non-finite pixels of ``data``.
    time : astropy.time.Time, optional
        Start of the exposure, UTC, as written in the file (FITS ``DATE-OBS``
        is the exposure start) or given by the user; see :attr:`mid_time`.
    exposure : float, optional
        Exposure time in seconds.
    site : Site, optional
        Observing site.
    camera : object, optional
        A camera model (e.g. a fitted fisheye model or a WCS).
    color : ndarray, shape (H, W, 3), optional
        The original RGB data for colour images.
    meta : dict
        Other metadata (FITS header cards, EXIF tags, ...).
    path : Path, optional
        The file the frame was read from.
    """

    data: np.ndarray
    mask: np.ndarray | None = None
    time: Time | None = None
    exposure: float | None = None
    site: Site | None = None
    camera: Any = None
    color: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        where = f" in {self.path}" if self.path else ""
        if data.ndim != 2:
            msg = f"a frame must be a 2-D image, got an array of shape {data.shape}{where}"
            raise InputError(msg)
        if data.shape[0] < 8 or data.shape[1] < 8:
            msg = f"image too small ({data.shape[1]}x{data.shape[0]} px){where}"
            raise InputError(msg)
        if not np.issubdtype(data.dtype, np.number) or np.issubdtype(
            data.dtype, np.complexfloating
        ):
            msg = f"image data must be real numbers, got dtype {data.dtype}{where}"
            raise InputError(msg)
        self.data = data.astype(np.float32, copy=False)
        finite = np.isfinite(self.data)
        if not finite.any():
            msg = f"image has no finite pixel (all NaN or inf){where}"
            raise InputError(msg)
        if self.mask is None:
            self.mask = ~finite
        else:
            mask = np.asarray(self.mask, dtype=bool)
            if mask.shape != self.data.shape:
                msg = f"mask shape {mask.shape} differs from image shape {self.data.shape}{where}"
                raise InputError(msg)
            self.mask = mask | ~finite

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape ``(H, W)`` in pixels."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def mid_time(self) -> Time | None:
        """Mid-exposure time: ``time + exposure / 2`` (``time`` if the exposure is unknown)."""
        if self.time is None or not self.exposure:
            return self.time
        return self.time + self.exposure * u.s / 2

    @property
    def name(self) -> str:
        """A short name: the file stem, or ``"frame"``."""
        if self.path is None:
            return "frame"
        name = Path(self.path).name
        for suffix in (".fits.gz", ".fits.fz", ".fit.gz"):
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return Path(name).stem

    def with_(self, **changes: Any) -> Frame:
        """Return a copy with some fields replaced (e.g. ``frame.with_(site=s)``)."""
        return replace(self, **changes)


@dataclass
class FrameSequence:
    """An ordered sequence of frames (video, FITS cube or folder of images).

    Parameters
    ----------
    frames : sequence of Frame
        The frames, in time order.
    fps : float, optional
        Frame rate in frames per second, when known.
    path : Path, optional
        The file or folder the sequence was read from.
    meta : dict
        Metadata of the whole sequence.
    """

    frames: Sequence[Frame]
    fps: float | None = None
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frames = list(self.frames)
        if not self.frames:
            where = f" in {self.path}" if self.path else ""
            msg = f"sequence has no frames{where}"
            raise InputError(msg)

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)

    def __getitem__(self, i: int) -> Frame:
        return self.frames[i]

    @property
    def times(self) -> Time | None:
        """Per-frame times, or ``None`` if any frame lacks one."""
        if any(f.time is None for f in self.frames):
            return None
        return Time([f.time for f in self.frames])

    def cube(self) -> np.ndarray:
        """Return the frames' data stacked as a ``(T, H, W)`` float32 array."""
        return np.stack([f.data for f in self.frames])

    def median(self) -> Frame:
        """Median stack of the frames, as a :class:`Frame` with the first frame's metadata."""
        first = self.frames[0]
        return first.with_(data=np.nanmedian(self.cube(), axis=0), mask=None, color=None)
