"""Meteors and bolides in video: a moving head with a light curve, its smear and its wake.

A :class:`Meteor` is a head that moves at constant speed along a straight line
in the image or, through an all-sky camera model, along a great circle of the
sky between two (altitude, azimuth) points, with a :class:`LightCurve`
(magnitude against time, with fragmentation flares). :class:`MeteorVideo`
renders it on a real background at a frame rate and exposure:

* **smear**: each frame integrates the head over its exposure, so the head is
  a short streak whose length is the distance travelled in the exposure;
* **wake**: every point the head passed keeps glowing with
  ``wake_fraction L(t_p) exp(-(t - t_p) / wake_tau_s) / wake_tau_s`` ADU/s
  (``L`` the head's brightness when it passed, at ``t_p``), so the wake
  carries ``wake_fraction`` of the head's light in all and decays
  exponentially in time behind the head (Ceplecha et al. 1998, Space Sci.
  Rev. 84, 327, §6.2);
* **saturation**: pixels are clipped at the detector's saturation level and
  the truth says which frames reach it.

The light is laid down exactly: the path is sampled every 0.1 pixel or
finer, each sample is shared bilinearly among its four nearest pixels (which
keeps the flux and the centroid exactly), and the result is convolved with the
PSF kernel, only inside the meteor's bounding box, which is what makes a
1392x1040 frame take a few tens of milliseconds.

Brightness follows the calibration core: ``L = 10**(-0.4 (m - zero_point))``
ADU per second. Pixel coordinates are 0-based, (0, 0) the centre of the first
pixel; frames are ``(T, H, W)`` float32; meteor masks are segmentation masks,
``True`` = meteor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from astropy.table import Table, vstack

from skysift.errors import InputError
from skysift.simulation.background import SkyBackground, load_background
from skysift.simulation.scenes import _positive, _rng, as_psf

__all__ = ["Flare", "LightCurve", "Meteor", "MeteorVideo"]

#: Largest path-sample spacing in pixels.
_STEP_PX = 0.1


@dataclass(frozen=True)
class Flare:
    """A brightening of the head from a fragmentation: a Gaussian in time.

    Parameters
    ----------
    time_s : float
        Time of the flare's peak, seconds from the meteor's start.
    amplitude_mag : float
        Brightening at the peak, in magnitudes (> 0).
    width_s : float
        Gaussian sigma of the flare, seconds (> 0).
    """

    time_s: float
    amplitude_mag: float
    width_s: float

    def __post_init__(self) -> None:
        _positive(self.amplitude_mag, "flare amplitude_mag")
        _positive(self.width_s, "flare width_s")


@dataclass
class LightCurve:
    """Magnitude of a meteor head against time, with flares.

    Between the tabulated points the magnitude is interpolated linearly;
    outside them the head is dark. Each flare multiplies the flux by
    ``1 + (10**(0.4 amplitude_mag) - 1) exp(-(t - time_s)**2 / (2 width_s**2))``.

    Parameters
    ----------
    times_s : array_like, shape (N,)
        Increasing times in seconds from the meteor's start, ``N >= 2``.
    mags : array_like, shape (N,)
        Magnitudes at those times (finite).
    flares : sequence of Flare, optional

    Raises
    ------
    InputError
        If the arrays differ in length, have fewer than two points, times do
        not increase, or magnitudes are not finite.
    """

    times_s: np.ndarray
    mags: np.ndarray
    flares: tuple[Flare, ...] = ()

    def __post_init__(self) -> None:
        self.times_s = np.asarray(self.times_s, float).ravel()
        self.mags = np.asarray(self.mags, float).ravel()
        self.flares = tuple(self.flares)
        if len(self.times_s) != len(self.mags) or len(self.times_s) < 2:
            msg = (
                "light curve times_s and mags must have the same length >= 2, "
                f"got {len(self.times_s)} and {len(self.mags)}"
            )
            raise InputError(msg)
        if not np.all(np.diff(self.times_s) > 0):
            msg = "light curve times_s must increase strictly"
            raise InputError(msg)
        if not (np.all(np.isfinite(self.mags)) and np.all(np.isfinite(self.times_s))):
            msg = "light curve times_s and mags must be finite"
            raise InputError(msg)

    @property
    def duration_s(self) -> float:
        """Time of the last tabulated point, seconds."""
        return float(self.times_s[-1])

    @classmethod
    def constant(cls, mag: float, duration_s: float, flares: Sequence[Flare] = ()) -> LightCurve:
        """A constant magnitude from 0 to ``duration_s`` seconds."""
        _positive(duration_s, "duration_s")
        return cls(np.array([0.0, duration_s]), np.array([mag, mag]), tuple(flares))

    @classmethod
    def meteor(
        cls,
        peak_mag: float,
        duration_s: float,
        *,
        peak_fraction: float = 0.6,
        flares: Sequence[Flare] = (),
        n_samples: int = 200,
    ) -> LightCurve:
        """A single-body meteor light curve, rising to ``peak_mag`` and fading.

        The flux is ``tau**p (1 - tau)**2`` normalised at its peak, with
        ``tau = t / duration_s`` and ``p = 2 peak_fraction / (1 - peak_fraction)``
        so that the peak falls at ``peak_fraction`` of the duration (late peaks,
        0.6-0.8, are typical of single-body ablation; Ceplecha et al. 1998,
        §6.1). Magnitudes are floored at 10 below the peak.
        """
        _positive(duration_s, "duration_s")
        if not 0 < peak_fraction < 1:
            msg = f"peak_fraction must be in (0, 1), got {peak_fraction!r}"
            raise InputError(msg)
        tau = np.linspace(0.0, 1.0, int(n_samples))
        p = 2 * peak_fraction / (1 - peak_fraction)
        f = tau**p * (1 - tau) ** 2 / (peak_fraction**p * (1 - peak_fraction) ** 2)
        mag = peak_mag - 2.5 * np.log10(np.maximum(f, 1e-4))
        return cls(tau * duration_s, mag, tuple(flares))

    def flux_factor(self, t) -> np.ndarray:
        """Multiplicative brightening by the flares at times ``t`` (s from start)."""
        t = np.asarray(t, float)
        out = np.ones_like(t)
        for fl in self.flares:
            a = 10 ** (0.4 * fl.amplitude_mag) - 1
            out = out + a * np.exp(-0.5 * ((t - fl.time_s) / fl.width_s) ** 2)
        return out

    def rate(self, t, zero_point: float) -> np.ndarray:
        """Head brightness in ADU/s at times ``t`` (s from start): ``10**(-0.4 (m - zp))``."""
        t = np.asarray(t, float)
        m = np.interp(t, self.times_s, self.mags)
        inside = (t >= self.times_s[0]) & (t <= self.times_s[-1])
        return np.where(inside, 10 ** (-0.4 * (m - zero_point)) * self.flux_factor(t), 0.0)

    def mag(self, t) -> np.ndarray:
        """Magnitude at times ``t`` including flares (inf where dark)."""
        r = self.rate(t, 0.0)
        with np.errstate(divide="ignore"):
            return np.where(r > 0, -2.5 * np.log10(np.where(r > 0, r, 1.0)), np.inf)


def _enu(alt, az) -> np.ndarray:
    alt, az = np.radians(alt), np.radians(az)
    return np.stack(
        [np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt)], axis=-1
    ).astype(float)


@dataclass
class Meteor:
    """A meteor: its path, speed, light curve and wake.

    Parameters
    ----------
    start, end : (float, float)
        Ends of the path: ``(x, y)`` pixels, or ``(alt, az)`` in degrees when
        ``camera`` is given (then the path is the great circle between them).
    speed : float
        Pixels per second, or degrees per second (angular) with a camera.
    light_curve : LightCurve or float
        Light curve (time from the meteor's start), or a constant magnitude
        over the whole path.
    t_start_s : float, optional
        Time of the start in the video's clock, seconds. Default 0.
    camera : SkyCamera or FisheyeModel, optional
        Camera model mapping (alt, az) to pixels.
    wake_fraction : float, optional
        Light of the wake as a fraction of the head's. Default 0.
    wake_tau_s : float, optional
        Decay time of the wake, seconds. Default 0.1.
    psf : float or PSF, optional
        PSF or its FWHM in pixels. Default 2.5.

    Raises
    ------
    InputError
        If speed, wake parameters or the path are not usable.
    """

    start: tuple[float, float]
    end: tuple[float, float]
    speed: float
    light_curve: LightCurve | float
    t_start_s: float = 0.0
    camera: Any = None
    wake_fraction: float = 0.0
    wake_tau_s: float = 0.1
    psf: Any = 2.5
    _grid: tuple[np.ndarray, np.ndarray, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.speed = _positive(self.speed, "speed")
        self.wake_fraction = _positive(self.wake_fraction, "wake_fraction", allow_zero=True)
        self.wake_tau_s = _positive(self.wake_tau_s, "wake_tau_s")
        self.psf = as_psf(self.psf)
        self.start = (float(self.start[0]), float(self.start[1]))
        self.end = (float(self.end[0]), float(self.end[1]))
        if self.camera is not None:
            for name, (alt, _) in (("start", self.start), ("end", self.end)):
                if not -90 <= alt <= 90:
                    msg = f"{name} altitude must be within [-90, 90] deg, got {alt!r}"
                    raise InputError(msg)
            u0, u1 = _enu(*self.start), _enu(*self.end)
            self._arc = float(np.arccos(np.clip(u0 @ u1, -1, 1)))
            length = np.degrees(self._arc)
        else:
            length = float(np.hypot(self.end[0] - self.start[0], self.end[1] - self.start[1]))
        if not length > 0:
            msg = f"start and end must differ, got {self.start} and {self.end}"
            raise InputError(msg)
        self.length = length
        if not isinstance(self.light_curve, LightCurve):
            self.light_curve = LightCurve.constant(float(self.light_curve), self.duration_s)
        self._grid = self._make_grid()
        g, gx, gy = self._grid
        self.length_px = float(np.sum(np.hypot(np.diff(gx), np.diff(gy))))

    @property
    def duration_s(self) -> float:
        """Time to travel the whole path, seconds."""
        return self.length / self.speed

    def _altaz_at(self, tau) -> tuple[np.ndarray, np.ndarray]:
        theta = np.clip(np.asarray(tau, float) * np.radians(self.speed), 0, self._arc)
        u0, u1 = _enu(*self.start), _enu(*self.end)
        s = np.sin(self._arc)
        v = (np.sin(self._arc - theta)[..., None] * u0 + np.sin(theta)[..., None] * u1) / s
        alt = np.degrees(np.arcsin(np.clip(v[..., 2], -1, 1)))
        az = np.degrees(np.arctan2(v[..., 0], v[..., 1])) % 360.0
        return alt, az

    def _pixels_of_altaz(self, alt, az) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.camera.altaz_to_pixel(alt, az)
        return np.asarray(x, float), np.asarray(y, float)

    def _make_grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dur = self.duration_s
        if self.camera is None:
            tau = np.array([0.0, dur])
            return (
                tau,
                np.array([self.start[0], self.end[0]]),
                np.array([self.start[1], self.end[1]]),
            )
        coarse = np.linspace(0, dur, 65)
        x, y = self._pixels_of_altaz(*self._altaz_at(coarse))
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            msg = "the meteor's path leaves the camera model (below the horizon?)"
            raise InputError(msg)
        n = int(np.ceil(np.sum(np.hypot(np.diff(x), np.diff(y))) / 0.05)) + 2
        tau = np.linspace(0, dur, max(n, 65))
        x, y = self._pixels_of_altaz(*self._altaz_at(tau))
        return tau, x, y

    def position(self, t) -> tuple[np.ndarray, np.ndarray]:
        """Head pixel ``(x, y)`` at video times ``t`` (s); NaN outside the path's times."""
        tau = np.asarray(t, float) - self.t_start_s
        g, gx, gy = self._grid
        on = (tau >= 0) & (tau <= g[-1])
        return np.where(on, np.interp(tau, g, gx), np.nan), np.where(
            on, np.interp(tau, g, gy), np.nan
        )

    def altaz(self, t) -> tuple[np.ndarray, np.ndarray]:
        """Head (alt, az) in degrees at video times ``t`` (NaN without a camera or off the path)."""
        tau = np.asarray(t, float) - self.t_start_s
        on = (tau >= 0) & (tau <= self.duration_s)
        if self.camera is None:
            nan = np.full(np.shape(tau), np.nan)
            return nan, nan
        alt, az = self._altaz_at(tau)
        return np.where(on, alt, np.nan), np.where(on, az, np.nan)

    def rate(self, t, zero_point: float) -> np.ndarray:
        """Head brightness in ADU/s at video times ``t`` (0 off the path)."""
        tau = np.asarray(t, float) - self.t_start_s
        on = (tau >= 0) & (tau <= self.duration_s)
        return np.where(on, self.light_curve.rate(tau, zero_point), 0.0)


def _splat(stamp_shape, x, y, w) -> np.ndarray:
    """Bilinear deposit of weights ``w`` at stamp coordinates; keeps flux and centroid."""
    h, wd = stamp_shape
    ix, iy = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - ix, y - iy
    idx, wts = [], []
    for dx, dy, ww in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        jx, jy = ix + dx, iy + dy
        ok = (jx >= 0) & (jx < wd) & (jy >= 0) & (jy < h)
        idx.append(jy[ok] * wd + jx[ok])
        wts.append((w * ww)[ok])
    flat = np.bincount(np.concatenate(idx), np.concatenate(wts), minlength=h * wd)
    return flat.reshape(h, wd)


def _rows_to_table(rows: list[dict[str, Any]]) -> Table:
    # column-wise: astropy's row-wise path scans every mask pixel for masked values
    t = Table()
    if not rows:
        return t
    for key in rows[0]:
        t[key] = np.stack([np.asarray(r[key]) for r in rows])
    return t


@dataclass
class MeteorVideo:
    """A video of meteors on a real background, with per-frame truth.

    Parameters
    ----------
    background : ndarray (H, W) or (T, H, W), SkyBackground, Frame or path
        The background, ADU. An array is used as it is (a single frame is
        repeated); a :class:`SkyBackground` (or a frame or file, loaded with
        :func:`load_background`) gives the real frame (``mode="frame"``) or
        its star-free background with fresh noise (``mode="star-free"``).
        To re-star a star-free background, pass ``sb.star_free + stars`` as
        an array with ``noise_sigma=sb.noise``.
    meteors : Meteor or sequence of Meteor
    n_frames : int, optional
        Number of frames (must equal T for a (T, H, W) background). Default 25.
    fps : float, optional
        Frame rate, frames per second. Default 25.
    exposure_s : float, optional
        Exposure of each frame, at most ``1 / fps``. Default ``1 / fps``.
    zero_point : float, optional
        Magnitude giving 1 ADU per second. Default 15.
    gain : float or None, optional
        e-/ADU for the meteor's own shot noise; None = noise-free meteor.
        Default 1.
    noise_sigma : float, ndarray (H, W) or None, optional
        Fresh Gaussian noise (ADU) added to every frame, on sky pixels only;
        default None (or the frame's measured noise in ``"star-free"`` mode).
    mode : {"frame", "star-free"}, optional
        For a SkyBackground. Default "frame".
    saturation : float, optional
        Clip level, ADU. Default the SkyBackground's, else none.
    sky : ndarray of bool (H, W), optional
        ``True`` = sky; meteor light is cut elsewhere. Default the
        SkyBackground's, else everywhere.
    mask_threshold : float, optional
        Meteor mask: noise-free meteor signal at or above this (ADU).
        Default the median noise sigma when known, else 1 ADU.

    Raises
    ------
    InputError
        On negative/zero fps or exposure, an exposure longer than the frame
        interval, a background of the wrong shape or an unreadable background
        file (named), or an unknown mode.
    """

    background: Any
    meteors: Meteor | Sequence[Meteor]
    n_frames: int = 25
    fps: float = 25.0
    exposure_s: float | None = None
    zero_point: float = 15.0
    gain: float | None = 1.0
    noise_sigma: Any = None
    mode: str = "frame"
    saturation: float | None = None
    sky: np.ndarray | None = None
    mask_threshold: float | None = None

    def __post_init__(self) -> None:
        self.fps = _positive(self.fps, "fps")
        if self.exposure_s is None:
            self.exposure_s = 1.0 / self.fps
        self.exposure_s = _positive(self.exposure_s, "exposure_s")
        if self.exposure_s > 1.0 / self.fps * (1 + 1e-9):
            msg = f"exposure_s ({self.exposure_s} s) exceeds the frame interval 1/fps ({1 / self.fps} s)"
            raise InputError(msg)
        if int(self.n_frames) < 1:
            msg = f"n_frames must be >= 1, got {self.n_frames!r}"
            raise InputError(msg)
        self.n_frames = int(self.n_frames)
        if self.gain is not None:
            self.gain = _positive(self.gain, "gain")
        if self.mode not in ("frame", "star-free"):
            msg = f"mode must be 'frame' or 'star-free', got {self.mode!r}"
            raise InputError(msg)
        self.meteors = [self.meteors] if isinstance(self.meteors, Meteor) else list(self.meteors)
        for m in self.meteors:
            if not isinstance(m, Meteor):
                msg = f"meteors must be Meteor objects, got {type(m).__name__}"
                raise InputError(msg)
        bg = self.background
        if isinstance(bg, (str, os.PathLike)) or type(bg).__name__ == "Frame":
            bg = load_background(bg)
        if isinstance(bg, SkyBackground):
            if self.sky is None:
                self.sky = bg.sky
            if self.saturation is None:
                self.saturation = bg.saturation
            if self.mode == "star-free":
                if self.noise_sigma is None:
                    self.noise_sigma = bg.noise
                bg = np.where(bg.sky, bg.star_free, bg.image)
            else:
                bg = bg.image
        bg = np.asarray(bg, dtype=np.float32)
        if bg.ndim == 3:
            if bg.shape[0] != self.n_frames:
                msg = f"background has {bg.shape[0]} frames but n_frames is {self.n_frames}"
                raise InputError(msg)
        elif bg.ndim != 2:
            msg = f"background must be (H, W) or (T, H, W), got shape {bg.shape}"
            raise InputError(msg)
        self.background = bg
        shape = self.shape
        if self.sky is not None:
            self.sky = np.asarray(self.sky, bool)
            if self.sky.shape != shape:
                msg = f"sky mask shape {self.sky.shape} differs from the frame shape {shape}"
                raise InputError(msg)
        if self.noise_sigma is not None:
            ns = np.asarray(self.noise_sigma, np.float32)
            if ns.ndim not in (0, 2) or (ns.ndim == 2 and ns.shape != shape):
                msg = f"noise_sigma must be a number or an array of shape {shape}, got {ns.shape}"
                raise InputError(msg)
            if np.any(ns < 0):
                msg = "noise_sigma must be >= 0"
                raise InputError(msg)
            self.noise_sigma = ns
        if self.mask_threshold is None:
            ns = self.noise_sigma
            if ns is not None and ns.ndim == 2 and self.sky is not None:
                ns = ns[self.sky] if self.sky.any() else ns
            self.mask_threshold = float(np.median(ns)) if ns is not None else 1.0
            self.mask_threshold = self.mask_threshold if self.mask_threshold > 0 else 1.0
        if self.noise_sigma is not None and self.sky is not None:
            # fresh noise on the sky only: non-sky pixels keep the real frame
            self.noise_sigma = (self.noise_sigma * self.sky).astype(np.float32)
        self.mask_threshold = _positive(self.mask_threshold, "mask_threshold")

    @property
    def shape(self) -> tuple[int, int]:
        """Frame shape ``(H, W)``."""
        return (int(self.background.shape[-2]), int(self.background.shape[-1]))

    def frame_times(self) -> np.ndarray:
        """Start of each frame's exposure, seconds."""
        return np.arange(self.n_frames) / self.fps

    # -- rendering one meteor in one frame ----------------------------------------
    def _samples(self, m: Meteor, a: float, b: float):
        """Path samples (x, y, ADU) of the head and the wake in exposure [a, b]."""
        zp = self.zero_point
        t0, t1 = m.t_start_s, m.t_start_s + m.duration_s
        px_per_s = m.length_px / m.duration_s
        # head: midpoint rule on [a, b] cut to the path
        ha, hb = max(a, t0), min(b, t1)
        head = None
        if hb > ha:
            n = max(16, int(np.ceil((hb - ha) * px_per_s / _STEP_PX)))
            dt = (hb - ha) / n
            t = ha + (np.arange(n) + 0.5) * dt
            x, y = m.position(t)
            head = (x, y, m.rate(t, zp) * dt, t)
        wake = None
        if m.wake_fraction > 0:
            wa, wb = max(t0, a - 15 * m.wake_tau_s), min(b, t1)
            if wb > wa:
                step = min(_STEP_PX / max(px_per_s, 1e-12), m.wake_tau_s / 20)
                n = max(16, int(np.ceil((wb - wa) / step)))
                dt = (wb - wa) / n
                tp = wa + (np.arange(n) + 0.5) * dt
                tau = m.wake_tau_s
                decay = np.exp(-(np.maximum(a, tp) - tp) / tau) - np.exp(-(b - tp) / tau)
                x, y = m.position(tp)
                wake = (x, y, m.wake_fraction * m.rate(tp, zp) * dt * decay)
        return head, wake

    def _render_meteor(self, m: Meteor, a: float, b: float):
        head, wake = self._samples(m, a, b)
        parts = [p for p in (head, wake) if p is not None]
        if not parts:
            return None
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        w = np.concatenate([p[2] for p in parts])
        keep = w > 0
        if not np.any(keep):
            return None
        kernel = np.asarray(m.psf.kernel(), dtype=np.float64)
        kernel = kernel / kernel.sum()
        kh, kw = kernel.shape[0] // 2 + 1, kernel.shape[1] // 2 + 1
        h, wd = self.shape
        x0 = max(int(np.floor(x[keep].min())) - kw, 0)
        x1 = min(int(np.ceil(x[keep].max())) + kw + 1, wd)
        y0 = max(int(np.floor(y[keep].min())) - kh, 0)
        y1 = min(int(np.ceil(y[keep].max())) + kh + 1, h)
        if x1 <= x0 or y1 <= y0:
            return None
        stamp = _splat((y1 - y0, x1 - x0), x[keep] - x0, y[keep] - y0, w[keep])
        stamp = cv2.filter2D(
            stamp.astype(np.float32),
            -1,
            kernel[::-1, ::-1].astype(np.float32),
            borderType=cv2.BORDER_CONSTANT,
        )
        if self.sky is not None:
            stamp = stamp * self.sky[y0:y1, x0:x1]
        head_flux = float(np.sum(head[2])) if head is not None else 0.0
        wake_flux = float(np.sum(wake[2])) if wake is not None else 0.0
        return stamp, (y0, y1, x0, x1), head, head_flux, wake_flux

    def render_frame(
        self, index: int, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, Table]:
        """Render frame ``index``: ``(H, W)`` float32 image and its truth rows (see :meth:`render`)."""
        rng = _rng(rng)
        if not 0 <= index < self.n_frames:
            msg = f"index must be in [0, {self.n_frames}), got {index!r}"
            raise InputError(msg)
        bg = self.background[index] if self.background.ndim == 3 else self.background
        frame = bg.copy()
        if self.noise_sigma is not None:
            frame += rng.standard_normal(self.shape, dtype=np.float32) * self.noise_sigma
        a = index / self.fps
        b = a + self.exposure_s
        rows = []
        rendered = []
        for m in self.meteors:
            r = self._render_meteor(m, a, b)
            rendered.append(r)
            if r is None:
                continue
            stamp, (y0, y1, x0, x1), *_ = r
            sig = stamp
            if self.gain is not None:
                sig = (rng.poisson(np.clip(stamp, 0, None) * self.gain) / self.gain).astype(
                    np.float32
                )
            frame[y0:y1, x0:x1] += sig
        sat = self.saturation
        pre_clip = frame
        if sat is not None:
            frame = np.minimum(frame, np.float32(sat))
        for k, (m, r) in enumerate(zip(self.meteors, rendered, strict=True)):
            rows.append(self._truth_row(index, k, m, r, a, b, bg, pre_clip))
        return frame, _rows_to_table(rows)

    def _truth_row(self, index, k, m, r, a, b, bg, pre_clip) -> dict[str, Any]:
        h, w = self.shape
        tmid = 0.5 * (a + b)
        x, y = m.position(tmid)
        alt, az = m.altaz(tmid)
        ha, hb = max(a, m.t_start_s), min(b, m.t_start_s + m.duration_s)
        xs, ys = m.position(ha) if hb > ha else (np.nan, np.nan)
        xe, ye = m.position(hb) if hb > ha else (np.nan, np.nan)
        mask = np.zeros((h, w), dtype=bool)
        row: dict[str, Any] = {
            "frame": index,
            "time_s": tmid,
            "meteor": k,
            "x": float(x),
            "y": float(y),
            "x_start": float(xs),
            "y_start": float(ys),
            "x_end": float(xe),
            "y_end": float(ye),
            "alt": float(alt),
            "az": float(az),
            "flux": 0.0,
            "wake_flux": 0.0,
            "mag": np.inf,
            "peak": np.nan,
            "saturated": False,
            "bbox": np.array([-1, -1, -1, -1]),
        }
        if r is not None:
            stamp, (y0, y1, x0, x1), _, head_flux, wake_flux = r
            local = stamp >= self.mask_threshold
            mask[y0:y1, x0:x1] = local
            row["flux"], row["wake_flux"] = head_flux, wake_flux
            if head_flux > 0:
                row["mag"] = self.zero_point - 2.5 * np.log10(head_flux / self.exposure_s)
            if np.any(local):
                model = bg[y0:y1, x0:x1] + stamp
                row["peak"] = float(model[local].max())
                if self.saturation is not None:
                    row["saturated"] = bool(
                        np.any(pre_clip[y0:y1, x0:x1][local] >= self.saturation)
                    )
                jy, jx = np.nonzero(local)
                row["bbox"] = np.array([x0 + jx.min(), y0 + jy.min(), x0 + jx.max(), y0 + jy.max()])
        row["visible"] = bool(mask.any())
        row["mask"] = mask
        return row

    def render(self, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, Table]:
        """Render the whole video.

        Returns
        -------
        frames : ndarray, shape (T, H, W), float32
            ADU.
        truth : astropy.table.Table
            One row per frame and meteor: ``frame``, ``time_s`` (mid-exposure,
            s), ``meteor`` (index), ``x``, ``y`` (head at mid-exposure, px;
            NaN when off the path), ``x_start``, ``y_start``, ``x_end``,
            ``y_end`` (head at the start and end of its smear in the
            exposure), ``alt``, ``az`` (deg, NaN without a camera), ``flux``
            (head light in the frame, ADU, before clipping and shot noise),
            ``wake_flux`` (ADU), ``mag`` (exposure-mean head magnitude,
            ``zero_point - 2.5 log10(flux / exposure_s)``), ``peak`` (largest
            noise-free background + meteor value on the mask, ADU),
            ``saturated`` (a pixel of the mask reached ``saturation``),
            ``bbox`` (``[x_min, y_min, x_max, y_max]`` of the mask, inclusive
            pixel indices; -1 when empty), ``visible`` and ``mask`` (H, W)
            bool, ``True`` = meteor (signal >= ``mask_threshold``).
        """
        rng = _rng(rng)
        frames = np.empty((self.n_frames, *self.shape), dtype=np.float32)
        tables = []
        for i in range(self.n_frames):
            frames[i], t = self.render_frame(i, rng)
            tables.append(t)

        truth = vstack(tables)
        truth.meta.update(
            {
                "fps": self.fps,
                "exposure_s": self.exposure_s,
                "zero_point": self.zero_point,
                "saturation": self.saturation,
                "mask_threshold": self.mask_threshold,
            }
        )
        return frames, truth
