"""Fast-moving objects in the three observing modes, time series and dithers.

The mixture-of-experts fast-moving-object paper distinguishes three modes by
what the telescope tracks during the exposure:

* ``"sidereal"``: the telescope follows the stars; stars are points, the
  mover is a streak.
* ``"tracking"``: the telescope follows the mover; the mover is a point, the
  stars are streaks of length ``|rate| × exposure``.
* ``"intersection"``: the telescope tracks neither; stars and mover are both
  streaks, of different lengths and angles.

An exposure is simulated as ``n_sub`` sub-exposure "pre-images" (each object
moves by ``v × exposure / n_sub`` in each) stacked on the detector with the
read noise added once (:meth:`Detector.expose_stack`). The sky is given in
mag/arcsec² (the paper samples 14 to 19). Every image comes with its
*encoded prior*: the PSF convolved with the star motion vector over the
exposure, a small normalised kernel image.

Rates are in pixels per second on the detector; positions are 0-based pixels
(x = column, y = row); images are ADU (float32); truth fluxes are expected
photo-electrons (photons × QE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from skysift.errors import InputError
from skysift.simulation.detector import Detector
from skysift.simulation.optics import Telescope
from skysift.simulation.streaks import (
    _paste,
    as_psf,
    convolve_kernel,
    psf_kernel,
    rasterize_polygons,
    render_streak,
    streak_polygons,
)
from skysift.simulation.truth import (
    SimTruth,
    object_row,
    segment_geometry,
    stack_records,
    streak_mask,
    truth_records,
)

__all__ = ["MODES", "MoverImage", "simulate_fast_mover", "simulate_sequence", "motion_prior"]

#: The observing modes of the fast-moving-object paper.
MODES = ("sidereal", "tracking", "intersection")


@dataclass
class MoverImage:
    """One simulated exposure.

    Attributes
    ----------
    image : ndarray of float32, shape (H, W)
        ADU.
    truth : SimTruth
        Stars (``type`` "star") and the mover (``type`` "mover"); fluxes in
        expected electrons, ``vx, vy`` the detector-frame rates (pixel/s).
    prior : ndarray, shape (K, K)
        The PSF convolved with the star motion over the exposure (sum 1, odd, centred).
    sigma_e : float
        Expected background noise per pixel of the stack, electrons (the
        ``sigma`` of the truth SNRs).
    mode : str
    """

    image: np.ndarray
    truth: SimTruth
    prior: np.ndarray
    sigma_e: float
    mode: str


def motion_prior(psf: Any, star_rate: tuple[float, float], exposure_s: float) -> np.ndarray:
    """The encoded prior: the PSF convolved with the star motion vector over the exposure.

    Parameters
    ----------
    psf : PSF or float
        PSF (a float is a Gaussian FWHM in pixels).
    star_rate : (float, float)
        Star motion ``(vx, vy)`` on the detector, pixels per second.
    exposure_s : float
        Exposure, seconds.

    Returns
    -------
    ndarray, shape (K, K)
        Normalised (sum 1), odd-sized kernel centred on the middle of the
        star trail; the PSF kernel itself for a static star.

    References
    ----------
    Mixture-of-experts fast-moving-object paper (the motion prior fed to the experts).
    """
    k = psf_kernel(psf)
    half = 0 if k is None else k.shape[0] // 2
    dx, dy = star_rate[0] * exposure_s, star_rate[1] * exposure_s
    hs = int(np.ceil(max(abs(dx), abs(dy)) / 2.0)) + half + 1
    size = 2 * hs + 1
    img, _ = render_streak(
        (size, size), hs - dx / 2, hs - dy / 2, hs + dx / 2, hs + dy / 2, 1.0, psf
    )
    return img / img.sum()


def _paint(
    image: np.ndarray,
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    flux: float,
    kernel: np.ndarray | None,
) -> None:
    """Add a pixel-perfect streak (a point if x1 == x2 and y1 == y2) convolved with ``kernel``."""
    h, w = image.shape
    half = 0 if kernel is None else kernel.shape[0] // 2
    m = half + 2.0
    polys, wts = streak_polygons(
        x1, y1, x2, y2, clip_box=(-0.5 - m, w - 0.5 + m, -0.5 - m, h - 0.5 + m)
    )
    if not len(polys) or flux == 0:
        return
    cov, (r0, c0) = rasterize_polygons(polys, wts * flux)
    if kernel is not None:
        cov = convolve_kernel(np.pad(cov, half), kernel)
        r0, c0 = r0 - half, c0 - half
    _paste(image, cov, r0, c0)


def _expose(
    shape: tuple[int, int],
    objects: dict[str, np.ndarray],
    *,
    t0: float,
    exposure_s: float,
    n_sub: int,
    drift: tuple[float, float],
    offset: tuple[float, float],
    psf: Any,
    telescope: Telescope,
    detector: Detector,
    sky_mag: float,
    rng: np.random.Generator,
    frame: int = 0,
) -> tuple[np.ndarray, SimTruth, float]:
    """Render one exposure of a scene of objects moving linearly on the sky.

    ``objects``: arrays ``x0, y0`` (pixels at t = 0 on the sky grid), ``vx, vy``
    (sky rates, px/s), ``mag``, ``kind`` (str), ``id``. The detector moves by
    ``drift`` (px/s, the tracking rate) and is offset by ``offset`` (dither).
    """
    h, w = shape
    kernel = psf_kernel(psf)
    fwhm = float(as_psf(psf).fwhm)
    dt = exposure_s / n_sub
    photons = telescope.star_photons(objects["mag"], dt)
    n_obj = objects["x0"].size
    # detector-frame velocity and position at time t
    vdx = objects["vx"] - drift[0]
    vdy = objects["vy"] - drift[1]

    def pos(t: float) -> tuple[np.ndarray, np.ndarray]:
        return (
            objects["x0"] + objects["vx"] * t - drift[0] * t + offset[0],
            objects["y0"] + objects["vy"] * t - drift[1] * t + offset[1],
        )

    sky = telescope.sky_photons_per_pixel(sky_mag, dt)
    frames = np.full((n_sub, h, w), float(sky))
    per_obj = np.zeros((n_obj, h, w))
    piece = np.empty((h, w))
    for k in range(n_sub):
        xa, ya = pos(t0 + k * dt)
        xb, yb = pos(t0 + (k + 1) * dt)
        for i in range(n_obj):
            piece.fill(0.0)
            _paint(piece, xa[i], ya[i], xb[i], yb[i], photons[i], kernel)
            frames[k] += piece
            per_obj[i] += piece
    image = detector.expose_stack(frames, dt, rng)
    total_sky = sky * n_sub
    sigma_e = float(detector.noise_sigma_adu(total_sky, exposure_s)) * detector.gain
    qe = detector.qe
    xs, ys = pos(t0)
    xe, ye = pos(t0 + exposure_s)
    labels = np.zeros((h, w), dtype=np.int32)
    recs = []
    for i in range(n_obj):
        signal = per_obj[i] * qe
        m = streak_mask((h, w), xs[i], ys[i], xe[i], ye[i], fwhm)
        labels[m] = objects["id"][i]
        length, angle = segment_geometry(xs[i], ys[i], xe[i], ye[i])
        row = object_row(
            kind=str(objects["kind"][i]), signal=signal, mask=m, sigma=sigma_e,
            id=int(objects["id"][i]), frame=frame,
            x=0.5 * (xs[i] + xe[i]), y=0.5 * (ys[i] + ye[i]), x1=xs[i], y1=ys[i], x2=xe[i], y2=ye[i],
            mag=float(objects["mag"][i]), flux=float(photons[i] * n_sub * qe),
            vx=float(vdx[i]), vy=float(vdy[i]), length=length, angle=angle,
        )  # fmt: skip
        recs.append(truth_records([row]))
    truth = SimTruth(mask=labels > 0, labels=labels, records=stack_records(recs))
    return image, truth, sigma_e


def _default_instruments(
    telescope: Telescope | None, detector: Detector | None
) -> tuple[Telescope, Detector]:
    if telescope is None:
        telescope = Telescope(0.25, pixel_scale_arcsec=2.0, band="V")
    if detector is None:
        detector = Detector(qe=0.8, read_noise=5.0, gain=1.0, bit_depth=16)
    return telescope, detector


def _random_scene(
    shape: tuple[int, int],
    n_stars: int,
    star_mag_range: tuple[float, float],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    h, w = shape
    lo, hi = star_mag_range
    # star counts rise ~ 10^(0.3 m): draw magnitudes from that law
    u = rng.uniform(0, 1, n_stars)
    a = 0.3 * np.log(10)
    mags = np.log(np.exp(a * lo) + u * (np.exp(a * hi) - np.exp(a * lo))) / a
    return {
        "x0": rng.uniform(-0.5, w - 0.5, n_stars),
        "y0": rng.uniform(-0.5, h - 0.5, n_stars),
        "vx": np.zeros(n_stars),
        "vy": np.zeros(n_stars),
        "mag": mags,
        "kind": np.array(["star"] * n_stars, dtype="U16"),
        "id": np.arange(2, n_stars + 2),
    }


def _append(scene: dict[str, np.ndarray], **one: Any) -> dict[str, np.ndarray]:
    return {
        k: np.concatenate([np.atleast_1d(np.asarray(one[k], dtype=v.dtype)), v])
        for k, v in scene.items()
    }


def simulate_fast_mover(
    mode: str,
    *,
    shape: tuple[int, int] = (128, 128),
    psf: Any = 2.5,
    telescope: Telescope | None = None,
    detector: Detector | None = None,
    exposure_s: float = 1.0,
    n_sub: int = 8,
    target_mag: float = 11.0,
    target_rate: tuple[float, float] | None = None,
    track_rate: tuple[float, float] | None = None,
    n_stars: int = 15,
    star_mag_range: tuple[float, float] = (8.0, 14.0),
    sky_mag: float = 17.0,
    rng: np.random.Generator | int | None = None,
) -> MoverImage:
    """Simulate one exposure of a fast mover in one of the three observing modes.

    Parameters
    ----------
    mode : {"sidereal", "tracking", "intersection"}
        What the telescope tracks (module docstring).
    shape : (int, int), optional
        Image shape (H, W). Default (128, 128).
    psf : PSF or float, optional
        PSF (a float is a Gaussian FWHM in pixels). Default 2.5.
    telescope, detector : optional
        Default a 25 cm telescope at 2"/px in V and a 16-bit detector (QE 0.8,
        5 e- read noise, gain 1).
    exposure_s : float, optional
        Total exposure, seconds. Default 1.
    n_sub : int, optional
        Sub-exposure pre-images stacked with one read. Default 8.
    target_mag : float, optional
        Mover magnitude. Default 11.
    target_rate : (float, float), optional
        Mover rate relative to the stars, pixels/s. Default: random direction,
        speed giving a 15-50 pixel trail in sidereal mode.
    track_rate : (float, float), optional
        Telescope rate relative to the stars (``"intersection"`` only): default
        the target rate scaled by 0.3-0.7 and rotated by 30-70 degrees.
    n_stars : int, optional
        Field stars. Default 15.
    star_mag_range : (float, float), optional
        Default (8, 14).
    sky_mag : float, optional
        Sky brightness, mag/arcsec². Default 17 (the paper uses 14-19).
    rng : Generator, int or None
        Random state.

    Returns
    -------
    MoverImage
        Image (ADU), truth, motion prior and background sigma.

    Raises
    ------
    InputError
        For an unknown mode (the message lists them), ``n_sub`` < 1 or a
        non-positive exposure.

    References
    ----------
    Mixture-of-experts fast-moving-object paper: observing modes, sub-exposure
    stacking and motion prior.
    """
    if mode not in MODES:
        msg = f"mode must be one of {list(MODES)}, got {mode!r}"
        raise InputError(msg)
    if int(n_sub) < 1:
        msg = f"n_sub must be >= 1 sub-exposures, got {n_sub}"
        raise InputError(msg)
    if not exposure_s > 0:
        msg = f"exposure_s must be > 0 seconds, got {exposure_s}"
        raise InputError(msg)
    gen = np.random.default_rng(rng)
    telescope, detector = _default_instruments(telescope, detector)
    h, w = shape
    if target_rate is None:
        speed = gen.uniform(15, 50) / exposure_s
        ang = gen.uniform(0, 2 * np.pi)
        target_rate = (speed * np.cos(ang), speed * np.sin(ang))
    tvx, tvy = map(float, target_rate)
    if mode == "sidereal":
        drift = (0.0, 0.0)
    elif mode == "tracking":
        drift = (tvx, tvy)
    else:
        if track_rate is None:
            f = gen.uniform(0.3, 0.7)
            rot = np.radians(gen.uniform(30, 70)) * gen.choice([-1, 1])
            c, s = np.cos(rot), np.sin(rot)
            track_rate = (f * (c * tvx - s * tvy), f * (s * tvx + c * tvy))
        drift = (float(track_rate[0]), float(track_rate[1]))
    # mover: mid-exposure detector position uniform, keeping its trail inside
    dvx, dvy = tvx - drift[0], tvy - drift[1]
    hx, hy = abs(dvx) * exposure_s / 2 + 3, abs(dvy) * exposure_s / 2 + 3
    if 2 * hx >= w or 2 * hy >= h:
        msg = (
            f"target_rate {target_rate} px/s gives a {2 * hx:.0f}x{2 * hy:.0f} px trail in mode "
            f"{mode!r}, larger than the {w}x{h} frame"
        )
        raise InputError(msg)
    xm, ym = gen.uniform(hx - 0.5, w - 0.5 - hx), gen.uniform(hy - 0.5, h - 0.5 - hy)
    # on the sky grid at t = 0: detector position + drift * t (t = T / 2 at mid-exposure)
    x0 = xm - dvx * exposure_s / 2
    y0 = ym - dvy * exposure_s / 2
    scene = _random_scene(shape, n_stars, star_mag_range, gen)
    # stars drift across the frame: spread them over the area they cross
    scene["x0"] = scene["x0"] + drift[0] * exposure_s * gen.uniform(-0.5, 0.5, n_stars)
    scene["y0"] = scene["y0"] + drift[1] * exposure_s * gen.uniform(-0.5, 0.5, n_stars)
    scene = _append(scene, x0=x0, y0=y0, vx=tvx, vy=tvy, mag=target_mag, kind="mover", id=1)
    image, truth, sigma_e = _expose(
        shape, scene, t0=0.0, exposure_s=exposure_s, n_sub=int(n_sub), drift=drift,
        offset=(0.0, 0.0), psf=psf, telescope=telescope, detector=detector, sky_mag=sky_mag,
        rng=gen,
    )  # fmt: skip
    prior = motion_prior(psf, (-drift[0], -drift[1]), exposure_s)
    return MoverImage(image=image, truth=truth, prior=prior, sigma_e=sigma_e, mode=mode)


def simulate_sequence(
    n_frames: int,
    *,
    shape: tuple[int, int] = (128, 128),
    cadence_s: float = 2.0,
    exposure_s: float = 1.0,
    dither_offsets: np.ndarray | None = None,
    target_rate: tuple[float, float] = (8.0, 3.0),
    target_start: tuple[float, float] | None = None,
    target_mag: float = 11.0,
    psf: Any = 2.5,
    telescope: Telescope | None = None,
    detector: Detector | None = None,
    n_sub: int = 4,
    n_stars: int = 15,
    star_mag_range: tuple[float, float] = (8.0, 14.0),
    sky_mag: float = 17.0,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, list[SimTruth]]:
    """Consecutive sidereal-tracked frames of one scene with a moving object, optionally dithered.

    Frame ``k`` starts at ``k × cadence_s``; the stars stay fixed on the sky,
    the mover moves at ``target_rate`` (trailing during each exposure), and
    the whole frame is shifted by ``dither_offsets[k]`` (a pointing offset:
    every object moves by ``+offset`` in the image).

    Parameters
    ----------
    n_frames : int
        Number of frames, ≥ 1.
    shape : (int, int), optional
        Frame shape (H, W).
    cadence_s : float, optional
        Start-to-start interval, seconds, ≥ ``exposure_s``. Default 2.
    exposure_s : float, optional
        Exposure of each frame, seconds. Default 1.
    dither_offsets : array_like, shape (n_frames, 2), optional
        ``(dx, dy)`` pixel offsets of each frame. Default none.
    target_rate : (float, float), optional
        Mover rate on the sky, pixels/s. Default (8, 3).
    target_start : (float, float), optional
        Mover position at t = 0 (before dithers). Default: chosen so that it
        stays in the frame over the sequence, if possible, else the frame centre.
    target_mag, psf, telescope, detector, n_sub, n_stars, star_mag_range, sky_mag, rng
        As :func:`simulate_fast_mover`.

    Returns
    -------
    frames : ndarray of float32, shape (T, H, W)
        ADU.
    truths : list of SimTruth
        One per frame (``frame`` column = the frame index; the same ``id``
        for the same object in every frame).

    Raises
    ------
    InputError
        For ``n_frames`` < 1, ``cadence_s`` < ``exposure_s`` or a wrong
        ``dither_offsets`` shape.
    """
    if int(n_frames) < 1:
        msg = f"n_frames must be >= 1, got {n_frames}"
        raise InputError(msg)
    if not exposure_s > 0 or cadence_s < exposure_s:
        msg = f"need exposure_s > 0 and cadence_s >= exposure_s, got {exposure_s}, {cadence_s}"
        raise InputError(msg)
    offs = np.zeros((n_frames, 2)) if dither_offsets is None else np.asarray(dither_offsets, float)
    if offs.shape != (n_frames, 2):
        msg = f"dither_offsets must have shape ({n_frames}, 2), got {offs.shape}"
        raise InputError(msg)
    gen = np.random.default_rng(rng)
    telescope, detector = _default_instruments(telescope, detector)
    h, w = shape
    span = (n_frames - 1) * cadence_s + exposure_s
    if target_start is None:
        dx, dy = target_rate[0] * span, target_rate[1] * span
        cx = (w - 1) / 2 - dx / 2
        cy = (h - 1) / 2 - dy / 2
        target_start = (cx, cy)
    scene = _random_scene(shape, n_stars, star_mag_range, gen)
    scene = _append(
        scene, x0=target_start[0], y0=target_start[1], vx=target_rate[0], vy=target_rate[1],
        mag=target_mag, kind="mover", id=1,
    )  # fmt: skip
    frames = np.empty((n_frames, h, w), dtype=np.float32)
    truths = []
    for k in range(n_frames):
        img, tr, _ = _expose(
            shape, scene, t0=k * cadence_s, exposure_s=exposure_s, n_sub=int(n_sub),
            drift=(0.0, 0.0), offset=(float(offs[k, 0]), float(offs[k, 1])), psf=psf,
            telescope=telescope, detector=detector, sky_mag=sky_mag, rng=gen, frame=k,
        )  # fmt: skip
        frames[k] = img
        truths.append(tr)
    return frames, truths
