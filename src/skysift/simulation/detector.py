"""The detector of the simulator: photons in, digitised ADU out, with the noise chain.

The chain follows the Unistellar satellite-streak paper, §2.3.2: expected
photons per pixel -> Poisson photon noise -> quantum efficiency (binomial
thinning) -> flat field and vignetting -> dark current (Poisson) -> read noise
(Gaussian) -> gain and offset -> truncation to integers and saturation at the
bit depth.

Images are ``(H, W)`` arrays; colour inputs are ``(H, W, 3)`` RGB photon maps
that a Bayer sensor turns into an ``(H, W)`` mosaic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from skysift.errors import InputError
from skysift.simulation.optics import _check_exposure

__all__ = ["BAYER_PATTERNS", "Detector", "bayer_colors", "bayer_mosaic"]

#: Bayer patterns: the colours of the 2 x 2 cell, row-major (0 = R, 1 = G, 2 = B).
BAYER_PATTERNS: dict[str, tuple[int, int, int, int]] = {
    "RGGB": (0, 1, 1, 2),
    "BGGR": (2, 1, 1, 0),
    "GRBG": (1, 0, 2, 1),
    "GBRG": (1, 2, 0, 1),
}


def _check_pattern(pattern: str) -> str:
    key = pattern.upper() if isinstance(pattern, str) else pattern
    if key not in BAYER_PATTERNS:
        msg = f"bayer pattern must be one of {sorted(BAYER_PATTERNS)}, got {pattern!r}"
        raise InputError(msg)
    return key


def bayer_colors(shape: tuple[int, int], pattern: str) -> np.ndarray:
    """The colour filter of every pixel of a Bayer sensor.

    Parameters
    ----------
    shape : (int, int)
        Sensor shape ``(H, W)``.
    pattern : str
        ``"RGGB"``, ``"BGGR"``, ``"GRBG"`` or ``"GBRG"``: the colours of pixels
        (0, 0), (0, 1), (1, 0), (1, 1) as (row, column).

    Returns
    -------
    ndarray of int8, shape (H, W)
        0 = red, 1 = green, 2 = blue.

    Raises
    ------
    InputError
        If the pattern is unknown (the message lists the valid ones).
    """
    cell = np.array(BAYER_PATTERNS[_check_pattern(pattern)], dtype=np.int8).reshape(2, 2)
    h, w = (int(s) for s in shape)
    return np.tile(cell, ((h + 1) // 2, (w + 1) // 2))[:h, :w]


def bayer_mosaic(
    rgb: np.ndarray, pattern: str, white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """Sample an RGB image through a Bayer colour-filter array.

    Parameters
    ----------
    rgb : ndarray, shape (H, W, 3) or (T, H, W, 3)
        Red, green, blue values per pixel.
    pattern : str
        Bayer pattern (see :func:`bayer_colors`).
    white_balance : (float, float, float), optional
        Multipliers of the R, G, B channels. Default (1, 1, 1).

    Returns
    -------
    ndarray, shape (H, W) or (T, H, W)
        Each pixel keeps only its filter's channel, times its multiplier.

    Raises
    ------
    InputError
        If ``rgb`` does not end in 3 channels or the pattern is unknown.
    """
    rgb = np.asarray(rgb, dtype=float)
    if rgb.ndim not in (3, 4) or rgb.shape[-1] != 3:
        msg = f"rgb must have shape (H, W, 3) or (T, H, W, 3), got {rgb.shape}"
        raise InputError(msg)
    colors = bayer_colors(rgb.shape[-3:-1], pattern)
    wb = np.asarray(white_balance, dtype=float)
    return _pick_channel(rgb, colors) * wb[colors]


def _pick_channel(rgb: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """rgb[..., y, x, colors[y, x]] for rgb of shape (..., H, W, 3)."""
    idx = np.broadcast_to(colors[..., None].astype(np.intp), (*rgb.shape[:-1], 1))
    return np.take_along_axis(rgb, idx, axis=-1)[..., 0]


def _image_or_callable(name: str, value: Any, shape: tuple[int, int]) -> np.ndarray | None:
    if value is None:
        return None
    arr = value(shape) if callable(value) else value
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 0:
        arr = np.full(shape, float(arr))
    if arr.shape != tuple(shape):
        msg = f"{name} must have the image shape {tuple(shape)}, got {arr.shape}"
        raise InputError(msg)
    if not (np.all(np.isfinite(arr)) and np.all(arr >= 0)):
        msg = f"{name} must be finite and >= 0 everywhere"
        raise InputError(msg)
    return arr


class Detector:
    """A CCD/CMOS detector: quantum efficiency, noise, gain and digitisation.

    Parameters
    ----------
    qe : float, optional
        Quantum efficiency in (0, 1]: probability that a photon gives a
        photo-electron. Default 0.8.
    dark_current : float, optional
        Dark current in e-/s/pixel. Default 0.
    read_noise : float, optional
        Read noise in e- rms. Default 5.
    read_noise_var : float, optional
        Read-noise variance in e-^2 (alternative to ``read_noise``; wins when
        given).
    gain : float, optional
        Gain in e-/ADU (> 0). Default 1.
    offset : float, optional
        Bias offset in ADU added before digitisation. Default 0.
    bit_depth : int, optional
        ADC bits, 8 to 32; saturation at 2**bit_depth - 1 ADU. Default 16.
    bayer : str, optional
        Bayer pattern ``"RGGB"``, ``"BGGR"``, ``"GRBG"`` or ``"GBRG"`` for a colour
        sensor; None (default) for a monochrome sensor.
    white_balance : (float, float, float), optional
        Relative throughput of the R, G, B filters (multiplies the expected
        photons of each channel, like a per-colour QE factor). Default (1, 1, 1).
    hot_pixel_fraction : float, optional
        Fraction of pixels, in [0, 1], with extra dark current
        ``hot_pixel_rate``. Default 0.
    hot_pixel_rate : float, optional
        Extra dark current of hot pixels in e-/s. Default 50.
    hot_pixel_seed : int, optional
        Seed of the (fixed) hot-pixel map, which is the same for every
        exposure of this detector. Default 0.
    flat : ndarray (H, W), float or callable, optional
        Relative pixel sensitivity (PRNU), mean ~1; a callable gets the shape
        and returns the array. Default None (uniform).
    vignetting : ndarray (H, W), float or callable, optional
        Optical illumination falloff in [0, 1]; same forms as ``flat``.

    Notes
    -----
    The flat and vignetting multiply the QE, so ``qe * white_balance * flat *
    vignetting`` must not exceed 1 anywhere (it is a probability).

    Raises
    ------
    InputError
        For any invalid value; the message names the parameter.

    References
    ----------
    Unistellar satellite-streak paper, §2.3.2 (noise chain); Janesick, J. R.
    2007, *Photon Transfer*, SPIE (photon transfer, quantisation noise 1/12 ADU^2).
    """

    def __init__(
        self,
        *,
        qe: float = 0.8,
        dark_current: float = 0.0,
        read_noise: float = 5.0,
        read_noise_var: float | None = None,
        gain: float = 1.0,
        offset: float = 0.0,
        bit_depth: int = 16,
        bayer: str | None = None,
        white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0),
        hot_pixel_fraction: float = 0.0,
        hot_pixel_rate: float = 50.0,
        hot_pixel_seed: int = 0,
        flat: np.ndarray | float | Callable[[tuple[int, int]], np.ndarray] | None = None,
        vignetting: np.ndarray | float | Callable[[tuple[int, int]], np.ndarray] | None = None,
    ) -> None:
        if not (0.0 < qe <= 1.0):
            msg = f"qe must be in (0, 1], got {qe!r}"
            raise InputError(msg)
        if not (dark_current >= 0 and math.isfinite(dark_current)):
            msg = f"dark_current must be >= 0 e-/s/pixel, got {dark_current!r}"
            raise InputError(msg)
        if read_noise_var is not None:
            if not (read_noise_var >= 0 and math.isfinite(read_noise_var)):
                msg = f"read_noise_var must be >= 0 e-^2, got {read_noise_var!r}"
                raise InputError(msg)
            read_noise = math.sqrt(read_noise_var)
        if not (read_noise >= 0 and math.isfinite(read_noise)):
            msg = f"read_noise must be >= 0 e- rms, got {read_noise!r}"
            raise InputError(msg)
        if not (gain > 0 and math.isfinite(gain)):
            msg = f"gain must be > 0 e-/ADU, got {gain!r}"
            raise InputError(msg)
        if not math.isfinite(offset):
            msg = f"offset must be a finite number of ADU, got {offset!r}"
            raise InputError(msg)
        if int(bit_depth) != bit_depth or not 8 <= bit_depth <= 32:
            msg = f"bit_depth must be an integer from 8 to 32, got {bit_depth!r}"
            raise InputError(msg)
        if bayer is not None:
            bayer = _check_pattern(bayer)
        wb = np.asarray(white_balance, dtype=float)
        if wb.shape != (3,) or not np.all(wb > 0) or not np.all(np.isfinite(wb)):
            msg = f"white_balance must be three numbers > 0 (R, G, B), got {white_balance!r}"
            raise InputError(msg)
        if not 0.0 <= hot_pixel_fraction <= 1.0:
            msg = f"hot_pixel_fraction must be in [0, 1], got {hot_pixel_fraction!r}"
            raise InputError(msg)
        if not (hot_pixel_rate >= 0 and math.isfinite(hot_pixel_rate)):
            msg = f"hot_pixel_rate must be >= 0 e-/s, got {hot_pixel_rate!r}"
            raise InputError(msg)
        for name, value in (("flat", flat), ("vignetting", vignetting)):
            if value is not None and not callable(value):
                arr = np.asarray(value, dtype=float)
                if arr.ndim not in (0, 2) or not np.all(np.isfinite(arr)) or not np.all(arr >= 0):
                    msg = f"{name} must be a finite, non-negative (H, W) array, scalar or callable"
                    raise InputError(msg)
        self.qe = float(qe)
        self.dark_current = float(dark_current)
        self.read_noise = float(read_noise)
        self.gain = float(gain)
        self.offset = float(offset)
        self.bit_depth = int(bit_depth)
        self.bayer = bayer
        self.white_balance = tuple(float(v) for v in wb)
        self.hot_pixel_fraction = float(hot_pixel_fraction)
        self.hot_pixel_rate = float(hot_pixel_rate)
        self.hot_pixel_seed = hot_pixel_seed
        self.flat = flat
        self.vignetting = vignetting

    # ------------------------------------------------------------------ properties
    @property
    def read_noise_var(self) -> float:
        """Read-noise variance in e-^2."""
        return self.read_noise**2

    @property
    def saturation_adu(self) -> float:
        """Largest ADU value: 2**bit_depth - 1."""
        return float(2**self.bit_depth - 1)

    def electrons_to_adu(self, electrons: float | np.ndarray) -> float | np.ndarray:
        """electrons / gain + offset, in ADU (not digitised)."""
        return (np.asarray(electrons, dtype=float) / self.gain + self.offset)[()]

    def adu_to_electrons(self, adu: float | np.ndarray) -> float | np.ndarray:
        """(adu - offset) * gain, in e-."""
        return ((np.asarray(adu, dtype=float) - self.offset) * self.gain)[()]

    def hot_pixel_map(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean (H, W) map of the hot pixels (True = hot), fixed for this detector.

        Exactly ``round(hot_pixel_fraction * H * W)`` pixels, drawn with
        ``hot_pixel_seed``.
        """
        h, w = (int(s) for s in shape)
        n = round(self.hot_pixel_fraction * h * w)
        hot = np.zeros(h * w, dtype=bool)
        if n:
            rng = np.random.default_rng(self.hot_pixel_seed)
            hot[rng.choice(h * w, size=n, replace=False)] = True
        return hot.reshape(h, w)

    def throughput(self, shape: tuple[int, int]) -> np.ndarray | float:
        """Probability that an incident photon becomes an electron, per pixel.

        qe x flat x vignetting (x the white-balance factor of the pixel's colour
        for a Bayer sensor).

        Raises
        ------
        InputError
            If the flat or vignetting has another shape, or the product exceeds 1.
        """
        t: np.ndarray | float = self.qe
        for name, value in (("flat", self.flat), ("vignetting", self.vignetting)):
            arr = _image_or_callable(name, value, shape)
            if arr is not None:
                t = t * arr
        if self.bayer is not None:
            t = t * np.asarray(self.white_balance)[bayer_colors(shape, self.bayer)]
        if np.max(t) > 1.0 + 1e-12:
            msg = (
                f"qe x white_balance x flat x vignetting must be <= 1 (a probability), "
                f"got a maximum of {float(np.max(t)):.4g}"
            )
            raise InputError(msg)
        return t

    # ------------------------------------------------------------------ helpers
    def _mono_photons(self, photons: np.ndarray, what: str, ndim: int) -> np.ndarray:
        """Check the photon array; for a Bayer sensor pick each pixel's channel."""
        arr = np.asarray(photons, dtype=float)
        if self.bayer is not None:
            if arr.ndim != ndim + 1 or arr.shape[-1] != 3:
                msg = (
                    f"{what} for a Bayer ({self.bayer}) detector must have shape "
                    f"{'(T, H, W, 3)' if ndim == 3 else '(H, W, 3)'} RGB photons, got {arr.shape}"
                )
                raise InputError(msg)
            colors = bayer_colors(arr.shape[-3:-1], self.bayer)
            arr = _pick_channel(arr, colors)
        elif arr.ndim != ndim:
            msg = (
                f"{what} must have shape {'(T, H, W)' if ndim == 3 else '(H, W)'}, got {arr.shape}"
            )
            raise InputError(msg)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            msg = f"{what} must be finite and >= 0 expected photons per pixel"
            raise InputError(msg)
        return arr

    def _electrons(
        self, mean_photons: np.ndarray, exposure_s: float, rng: np.random.Generator
    ) -> np.ndarray:
        """Photo-electrons plus dark electrons, in the order of §2.3.2."""
        shape = mean_photons.shape
        p = self.throughput(shape)
        # Photon (shot) noise, then binomial thinning by QE x white balance x flat x
        # vignetting. Binomial(Poisson(N), p) is exactly Poisson(p N) (thinning of a
        # Poisson process), so one Poisson draw of the thinned mean gives the same
        # distribution at a third of the cost of the two draws.
        electrons = rng.poisson(mean_photons * p).astype(float)
        dark_rate = np.full(shape, self.dark_current)
        if self.hot_pixel_fraction > 0:
            dark_rate = dark_rate + self.hot_pixel_rate * self.hot_pixel_map(shape)
        dark = dark_rate * exposure_s
        if np.any(dark > 0):
            electrons += rng.poisson(dark)
        return electrons

    def _digitise(
        self, electrons: np.ndarray, rng: np.random.Generator, add_read_noise: bool
    ) -> np.ndarray:
        if add_read_noise and self.read_noise > 0:
            electrons = electrons + rng.normal(0.0, self.read_noise, electrons.shape)
        adu = electrons / self.gain
        adu += self.offset
        np.clip(adu, 0.0, self.saturation_adu, out=adu)
        np.floor(adu, out=adu)
        return adu.astype(np.float32)

    # ------------------------------------------------------------------ exposures
    def expose(
        self,
        photons: np.ndarray,
        exposure_s: float,
        rng: np.random.Generator | int | None = None,
        *,
        add_read_noise: bool = True,
    ) -> np.ndarray:
        """Turn expected photons into a digitised frame.

        Parameters
        ----------
        photons : ndarray, shape (H, W), or (H, W, 3) RGB for a Bayer detector
            Expected photons per pixel over the exposure (PSF-distributed, sky
            included), before the quantum efficiency.
        exposure_s : float
            Exposure time in seconds (for the dark current).
        rng : numpy Generator, int or None
            Random state.
        add_read_noise : bool, optional
            Add the Gaussian read noise. Default True.

        Returns
        -------
        ndarray of float32, shape (H, W)
            ADU: integers in [0, 2**bit_depth - 1]. Truncation (floor) biases
            the mean by -0.5 ADU and adds 1/12 ADU^2 of variance.

        Raises
        ------
        InputError
            If the exposure is negative or the photons have the wrong shape or
            negative values.

        Notes
        -----
        Order (Unistellar paper §2.3.2): Poisson(photons) -> binomial(qe x flat
        x vignetting) -> + Poisson(dark x t) -> + N(0, read_noise^2) -> / gain +
        offset -> floor, clip to [0, 2**bits - 1].
        """
        exposure_s = _check_exposure(exposure_s)
        rng = np.random.default_rng(rng)
        mean = self._mono_photons(photons, "photons", 2)
        return self._digitise(self._electrons(mean, exposure_s, rng), rng, add_read_noise)

    def expose_stack(
        self,
        photon_frames: np.ndarray,
        exposure_s_each: float,
        rng: np.random.Generator | int | None = None,
        *,
        add_read_noise: bool = True,
    ) -> np.ndarray:
        """Sum of T sub-exposures read out once (on-sensor/firmware stacking).

        Each sub-exposure gets its own photon, QE and dark noise; the summed
        electrons get the read noise ONCE and are then digitised (gain, offset,
        truncation and saturation at this detector's bit depth) — the stacking
        of the mixture-of-experts fast-mover paper.

        Parameters
        ----------
        photon_frames : ndarray, shape (T, H, W), or (T, H, W, 3) for a Bayer detector
            Expected photons per pixel of each sub-exposure.
        exposure_s_each : float
            Exposure of each sub-exposure in seconds.
        rng : numpy Generator, int or None
            Random state.
        add_read_noise : bool, optional
            Default True.

        Returns
        -------
        ndarray of float32, shape (H, W)
            ADU of the stack.

        Raises
        ------
        InputError
            If the exposure is negative or the frames have the wrong shape.
        """
        exposure_s_each = _check_exposure(exposure_s_each)
        rng = np.random.default_rng(rng)
        frames = self._mono_photons(photon_frames, "photon_frames", 3)
        electrons = np.zeros(frames.shape[1:])
        for frame in frames:
            electrons += self._electrons(frame, exposure_s_each, rng)
        return self._digitise(electrons, rng, add_read_noise)

    def noise_sigma_adu(
        self, mean_photons: float | np.ndarray, exposure_s: float
    ) -> float | np.ndarray:
        """Expected per-pixel noise sigma in ADU of a uniform exposure.

        sigma^2 = (qe N + dark t) / gain^2 + read_noise^2 / gain^2 + 1/12, with
        N the expected photons per pixel (flat field, vignetting, hot pixels and
        saturation not included). The 1/12 ADU^2 is the truncation noise of a
        smooth distribution; it is absent when the read noise is much below
        1 ADU and the gain is 1 (integer electrons digitise exactly).

        Raises
        ------
        InputError
            If the exposure is negative.
        """
        exposure_s = _check_exposure(exposure_s)
        n = np.asarray(mean_photons, dtype=float)
        var_e = self.qe * n + self.dark_current * exposure_s + self.read_noise**2
        return np.sqrt(var_e / self.gain**2 + 1.0 / 12.0)[()]

    def __repr__(self) -> str:
        return (
            f"Detector(qe={self.qe}, dark_current={self.dark_current}, read_noise={self.read_noise}, "
            f"gain={self.gain}, offset={self.offset}, bit_depth={self.bit_depth}, bayer={self.bayer!r})"
        )
