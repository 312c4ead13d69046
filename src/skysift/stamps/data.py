"""Simulated stamp sets for the SSO / cosmic-ray / galaxy / star classifier.

Stamps follow the Euclid SSO paper's VIS set-up (0.1″/px, 565 s exposures,
Euclid SSO paper §2.2) with wider ranges: SSO rates 1–100″/h, magnitudes to
the survey limit, PSF and sky variation, crowded stamps and SSOs beside
stars. Every stamp has a common side :data:`STAMP_SIZE` and 1–4 dithers as
channels; the reference dither is channel 0 and the stamp is centred (±1 px)
on the object's position in it, as a detection on the reference frame would
be. Between dithers (``dither_interval`` exposures apart, start to start) a
solar-system object moves on; a cosmic ray hits one exposure only (with a
probability ``cr_repeat_prob`` it repeats, as in
:func:`skysift.simulation.stamps.make_stamp`, which renders the same ray in
every dither); stars and galaxies stay (the dithers are registered).

Objects are drawn by the renderers of :mod:`skysift.simulation` (Gaussian
PSF trails :func:`~skysift.simulation.streaks.render_sso_trail`, Sérsic
galaxies, point sources, cosmic-ray worms), then sky, Poisson and read noise
are added. :func:`paper_stamps` instead draws stamps with
:func:`skysift.simulation.stamps.make_stamp` and its paper defaults,
cropped to the common size: a second held-out set.

Magnitudes are AB with the VIS zero point :data:`ZERO_POINT` (electrons in
one exposure): ``flux = 10 ** (-0.4 * (mag - ZERO_POINT))``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from astropy.table import Table

from skysift.errors import InputError
from skysift.simulation.sources import render_cosmic_rays, render_galaxy, render_stars
from skysift.simulation.stamps import STAMP_KINDS, make_stamp
from skysift.simulation.streaks import render_sso_trail

__all__ = [
    "CLASSES",
    "EXPOSURE_S",
    "HELDOUT",
    "MAX_DITHERS",
    "PIXEL_SCALE",
    "STAMP_SIZE",
    "TRAINING",
    "ZERO_POINT",
    "StampSettings",
    "iter_stamp_batches",
    "paper_stamps",
    "simulate_stamps",
]

#: Class names, in the order of the classifier's outputs.
CLASSES: tuple[str, ...] = tuple(STAMP_KINDS)
#: Side of every stamp in pixels.
STAMP_SIZE = 32
#: Most dithers (channels) a stamp may have.
MAX_DITHERS = 4
#: Euclid VIS pixel scale, arcsec per pixel.
PIXEL_SCALE = 0.1
#: Euclid VIS exposure, seconds.
EXPOSURE_S = 565.0
#: AB magnitude of one electron in one VIS exposure (25.58 for 1 e-/s + 2.5 log10 565 s).
ZERO_POINT = 32.46


@dataclass(frozen=True)
class StampSettings:
    """Parameter ranges of a simulated stamp set (configuration as data).

    Attributes
    ----------
    rate_range : (float, float)
        SSO apparent rate, arcsec per hour, drawn log-uniformly. Default (1, 100).
    mag_range : (float, float)
        AB magnitude of every object (SSO per exposure), uniform. Default
        (19, 25.5) (VIS survey limit about 24.5 at 10σ for extended sources).
    psf_fwhm_range : (float, float)
        Gaussian PSF FWHM in pixels, uniform. Default (1.4, 3.0) (VIS 1.7).
    background_range : (float, float)
        Sky, electrons per pixel per exposure, log-uniform. Default (50, 250).
    read_noise : float
        Electrons rms. Default 4.5.
    dither_interval_range : (float, float)
        Start-to-start time between dithers in exposures, uniform. Default (1.0, 1.5).
    n_dithers_probs : tuple of float
        Probabilities of 1, 2, 3, 4 dithers. Default (0.15, 0.15, 0.5, 0.2).
    crowd_prob : float
        Probability of 1–3 field stars elsewhere in the stamp. Default 0.3.
    near_star_prob : float
        Probability of a star 3–8 px from the object (SSOs near stars). Default 0.15.
    stray_cr_prob : float
        Probability of an unrelated cosmic ray in one dither. Default 0.15.
    cr_repeat_prob : float
        Probability that a cosmic-ray stamp shows the same ray in every
        dither (the simulator's :func:`make_stamp` convention). Default 0.2.
    galaxy_re_range : (float, float)
        Sérsic effective radius, pixels. Default (0.6, 6).
    cr_length_range : (float, float)
        Cosmic-ray track length, pixels. Default (0, 25).
    centre_jitter : float
        Object offset from the stamp centre in channel 0, pixels. Default 1.
    min_snr : float
        Only detectable objects make stamps: the matched-filter SNR of the
        object in dither 0, ``sqrt(sum(model**2) / (sky + read_noise**2))``,
        must reach this, else the object is drawn again. Default 7.
    """

    rate_range: tuple[float, float] = (1.0, 100.0)
    mag_range: tuple[float, float] = (19.0, 25.5)
    psf_fwhm_range: tuple[float, float] = (1.4, 3.0)
    background_range: tuple[float, float] = (50.0, 250.0)
    read_noise: float = 4.5
    dither_interval_range: tuple[float, float] = (1.0, 1.5)
    n_dithers_probs: tuple[float, ...] = (0.15, 0.15, 0.5, 0.2)
    crowd_prob: float = 0.3
    near_star_prob: float = 0.15
    stray_cr_prob: float = 0.15
    cr_repeat_prob: float = 0.2
    galaxy_re_range: tuple[float, float] = (0.6, 6.0)
    cr_length_range: tuple[float, float] = (0.0, 25.0)
    centre_jitter: float = 1.0
    min_snr: float = 7.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


#: Training settings.
TRAINING = StampSettings()
#: Held-out settings: other ranges (sharper/broader PSF, darker/brighter sky, more crowding).
HELDOUT = StampSettings(
    psf_fwhm_range=(1.3, 3.2),
    background_range=(40.0, 300.0),
    dither_interval_range=(0.9, 1.6),
    crowd_prob=0.4,
    near_star_prob=0.2,
)


def _clip_segment(
    x1: float, y1: float, x2: float, y2: float, lo: float, hi: float
) -> tuple[float, float] | None:
    """Liang–Barsky: parameter interval [t0, t1] of the segment inside the box [lo, hi]²."""
    t0, t1 = 0.0, 1.0
    dx, dy = x2 - x1, y2 - y1
    for p, q in ((-dx, x1 - lo), (dx, hi - x1), (-dy, y1 - lo), (dy, hi - y1)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return t0, t1


def _sso_channel(
    shape: tuple[int, int],
    start: tuple[float, float],
    vel: tuple[float, float],
    flux: float,
    fwhm: float,
) -> np.ndarray:
    """Noise-free trail from ``start`` to ``start + vel``, clipped to the stamp (+3 FWHM margin)."""
    x1, y1 = start
    x2, y2 = x1 + vel[0], y1 + vel[1]
    margin = 3 * fwhm
    seg = _clip_segment(x1, y1, x2, y2, -margin, shape[0] - 1 + margin)
    if seg is None:
        return np.zeros(shape)
    t0, t1 = seg
    frac = t1 - t0
    if frac <= 0:
        return np.zeros(shape)
    a = (x1 + t0 * vel[0], y1 + t0 * vel[1])
    b = (x1 + t1 * vel[0], y1 + t1 * vel[1])
    img, _ = render_sso_trail(shape, a[0], a[1], b[0], b[1], flux * frac, fwhm, oversample=5)
    return img


def _one_stamp(
    kind: str, n_ch: int, s: StampSettings, gen: np.random.Generator, size: int
) -> tuple[np.ndarray, dict[str, Any]]:
    shape = (size, size)
    fwhm = float(gen.uniform(*s.psf_fwhm_range))
    bkg = float(np.exp(gen.uniform(*np.log(s.background_range))))
    interval = float(gen.uniform(*s.dither_interval_range))
    mag = float(gen.uniform(*s.mag_range))
    flux = 10 ** (-0.4 * (mag - ZERO_POINT))
    c0 = (size - 1) / 2
    cx = c0 + gen.uniform(-s.centre_jitter, s.centre_jitter)
    cy = c0 + gen.uniform(-s.centre_jitter, s.centre_jitter)
    model = np.zeros((n_ch, size, size))
    info: dict[str, Any] = {
        "kind": kind, "label": CLASSES.index(kind), "n_dithers": n_ch, "mag": mag,
        "flux": flux, "psf_fwhm": fwhm, "background": bkg, "dither_interval": interval,
        "rate": np.nan, "pa": np.nan, "length": np.nan, "x": cx, "y": cy,
    }  # fmt: skip
    if kind == "sso":
        rate = float(np.exp(gen.uniform(*np.log(s.rate_range))))
        length = rate * EXPOSURE_S / 3600.0 / PIXEL_SCALE
        ang = gen.uniform(0, 2 * np.pi)
        vx, vy = length * np.cos(ang), length * np.sin(ang)
        info.update(rate=rate, pa=float(np.degrees(ang) % 360.0), length=length)
        sx, sy = cx - vx / 2, cy - vy / 2  # channel 0: trail centred on (cx, cy)
        for c in range(n_ch):
            t = interval * c
            model[c] = _sso_channel(shape, (sx + t * vx, sy + t * vy), (vx, vy), flux, fwhm)
    elif kind == "galaxy":
        r_e = float(gen.uniform(*s.galaxy_re_range))
        img, _ = render_galaxy(
            shape, cx, cy, flux, gen.uniform(0.5, 4.0), r_e, ellipticity=gen.uniform(0.0, 0.7),
            pa=gen.uniform(0.0, 180.0), psf=fwhm, oversample=3, backend="numpy",
        )  # fmt: skip
        model[:] = img
        info["length"] = 2 * r_e
    elif kind == "star":
        img, _ = render_stars(shape, [cx], [cy], [flux], fwhm)
        model[:] = img
    else:
        length = float(gen.uniform(*s.cr_length_range))
        img = _cosmic_ray(shape, cx, cy, length, gen)
        info["length"] = length
        if gen.random() < s.cr_repeat_prob:
            model[:] = img
        else:
            model[0] = img
    extra = np.zeros_like(model)
    n_field = int(gen.integers(1, 4)) if gen.random() < s.crowd_prob else 0
    xs = list(gen.uniform(0, size - 1, n_field))
    ys = list(gen.uniform(0, size - 1, n_field))
    if gen.random() < s.near_star_prob:
        r, a = gen.uniform(3.0, 8.0), gen.uniform(0, 2 * np.pi)
        xs.append(cx + r * np.cos(a))
        ys.append(cy + r * np.sin(a))
    if xs:
        fl = 10 ** (-0.4 * (gen.uniform(18.5, 25.5, len(xs)) - ZERO_POINT))
        img, _ = render_stars(shape, xs, ys, fl, fwhm)
        extra[:] = img
    if gen.random() < s.stray_cr_prob:
        c = int(gen.integers(n_ch))
        ray, _ = render_cosmic_rays(shape, 1, gen, length_range=(0.0, 15.0))
        extra[c] += ray
    info["n_field_stars"] = len(xs)
    info["snr"] = float(np.sqrt(np.sum(model[0] ** 2) / (bkg + s.read_noise**2)))
    expected = model + extra + bkg
    noisy = gen.poisson(expected) + gen.normal(0.0, s.read_noise, expected.shape)
    return noisy.astype(np.float32), info


def _cosmic_ray(
    shape: tuple[int, int], x: float, y: float, length: float, gen: np.random.Generator
) -> np.ndarray:
    """One cosmic-ray worm whose charge centroid is moved to (x, y) (whole pixels)."""
    big = (shape[0] * 2, shape[1] * 2)
    for _ in range(10):  # a ray may leave the canvas entirely: draw again
        img, _ = render_cosmic_rays(big, 1, gen, length_range=(length, length))
        ys, xs = np.nonzero(img)
        if len(xs):
            break
    else:  # pragma: no cover - practically unreachable
        img = np.zeros(big)
        img[0, 0] = 1000.0
        ys, xs = np.nonzero(img)
    w = img[ys, xs]
    dx = int(round(x - np.sum(xs * w) / w.sum()))
    dy = int(round(y - np.sum(ys * w) / w.sum()))
    out = np.zeros(shape)
    ys2, xs2 = ys + dy, xs + dx
    ok = (xs2 >= 0) & (xs2 < shape[1]) & (ys2 >= 0) & (ys2 < shape[0])
    out[ys2[ok], xs2[ok]] = img[ys[ok], xs[ok]]
    return out


def _check_n(n: int, name: str = "n") -> int:
    if int(n) < 1:
        msg = f"{name} must be >= 1, got {n}"
        raise InputError(msg)
    return int(n)


def simulate_stamps(
    n: int,
    rng: np.random.Generator | int | None = None,
    *,
    settings: StampSettings = TRAINING,
    n_dithers: int | None = None,
    kinds: tuple[str, ...] | None = None,
    size: int = STAMP_SIZE,
) -> tuple[np.ndarray, np.ndarray, Table]:
    """Simulate ``n`` labelled stamps, classes in equal turns.

    Parameters
    ----------
    n : int
        Number of stamps, ≥ 1.
    rng : Generator, int or None
        Random state.
    settings : StampSettings, optional
        Parameter ranges (:data:`TRAINING` by default, :data:`HELDOUT` for evaluation).
    n_dithers : int, optional
        Fixed number of dithers 1–4; None (default) draws it from
        ``settings.n_dithers_probs``.
    kinds : tuple of str, optional
        Classes to draw, in turn (default all of :data:`CLASSES`).
    size : int, optional
        Stamp side in pixels. Default :data:`STAMP_SIZE`.

    Returns
    -------
    stamps : ndarray of float32, shape (n, 4, size, size)
        Electrons; channels beyond a stamp's dither count are zero.
    n_channels : ndarray of int, shape (n,)
        Dithers of each stamp (1–4).
    truth : astropy.table.Table
        One row per stamp: ``kind``, ``label`` (index in :data:`CLASSES`),
        ``n_dithers``, ``mag``, ``flux`` (electrons), ``psf_fwhm`` (pixels),
        ``background`` (electrons), ``dither_interval`` (exposures), ``rate``
        (arcsec/h, SSOs), ``pa`` (degrees counter-clockwise from +x, SSOs),
        ``length`` (pixels), ``x``, ``y`` (object in channel 0),
        ``n_field_stars``, ``snr`` (matched-filter SNR in dither 0).

    Raises
    ------
    InputError
        If ``n`` < 1, ``n_dithers`` is not in 1–4 or a kind is unknown.
    """
    n = _check_n(n)
    kinds = tuple(kinds or CLASSES)
    bad = [k for k in kinds if k not in CLASSES]
    if bad:
        msg = f"kinds must be among {list(CLASSES)}, got {bad}"
        raise InputError(msg)
    if n_dithers is not None and not 1 <= int(n_dithers) <= MAX_DITHERS:
        msg = f"n_dithers must be 1 to {MAX_DITHERS} or None, got {n_dithers}"
        raise InputError(msg)
    gen = np.random.default_rng(rng)
    probs = np.asarray(settings.n_dithers_probs, float)
    probs = probs / probs.sum()
    out = np.zeros((n, MAX_DITHERS, size, size), np.float32)
    n_ch = np.empty(n, int)
    rows = []
    for i in range(n):
        c = int(n_dithers) if n_dithers is not None else int(gen.choice(len(probs), p=probs)) + 1
        for _ in range(50):  # redraw undetectable objects (no detection, no stamp)
            stamp, info = _one_stamp(kinds[i % len(kinds)], c, settings, gen, size)
            if info["snr"] >= settings.min_snr:
                break
        out[i, :c] = stamp
        n_ch[i] = c
        rows.append(info)
    truth = Table(rows=rows, names=list(rows[0]))
    truth.meta["settings"] = settings.to_dict()
    return out, n_ch, truth


def iter_stamp_batches(
    batch_size: int,
    rng: np.random.Generator | int | None = None,
    *,
    settings: StampSettings = TRAINING,
    n_batches: int | None = None,
    **kw: Any,
) -> Iterator[tuple[np.ndarray, np.ndarray, Table]]:
    """Stream batches of :func:`simulate_stamps` (endless when ``n_batches`` is None)."""
    _check_n(batch_size, "batch_size")
    gen = np.random.default_rng(rng)
    i = 0
    while n_batches is None or i < n_batches:
        yield simulate_stamps(batch_size, gen, settings=settings, **kw)
        i += 1


def paper_stamps(
    n: int,
    rng: np.random.Generator | int | None = None,
    *,
    n_dithers: int = 3,
    size: int = STAMP_SIZE,
    **make_stamp_kw: Any,
) -> tuple[np.ndarray, np.ndarray, Table]:
    """Stamps drawn by :func:`skysift.simulation.stamps.make_stamp` (paper defaults), cropped.

    Each stamp is cropped to ``size`` around the object's position in
    dither 0 (for an SSO, its trail midpoint), the convention of
    :func:`simulate_stamps`. Note that the simulator renders a cosmic ray
    in every dither. Galaxies are drawn with ``make_stamp``'s parameter
    distributions but by the NumPy Sérsic renderer (``make_stamp`` would use
    GalSim when installed, whose FFTs can need gigabytes).

    Returns
    -------
    stamps, n_channels, truth
        As :func:`simulate_stamps` (``truth`` has ``kind``, ``label``,
        ``n_dithers``, ``flux``, ``x``, ``y``, ``length``).

    Raises
    ------
    InputError
        If ``n`` < 1 or ``n_dithers`` is not in 1–4.

    References
    ----------
    Euclid SSO paper, §2.2 (stamp classes, sizes and dithers).
    """
    n = _check_n(n)
    if not 1 <= int(n_dithers) <= MAX_DITHERS:
        msg = f"n_dithers must be 1 to {MAX_DITHERS}, got {n_dithers}"
        raise InputError(msg)
    gen = np.random.default_rng(rng)
    out = np.zeros((n, MAX_DITHERS, size, size), np.float32)
    rows = []
    for i in range(n):
        kind = CLASSES[i % len(CLASSES)]
        if kind == "galaxy":
            stamp, truth = _paper_galaxy(gen, n_dithers, size, **make_stamp_kw)
        else:
            stamp, truth = make_stamp(kind, gen, n_dithers=n_dithers, **make_stamp_kw)
        r0 = truth[truth["frame"] == 0][0] if "frame" in truth.colnames else truth[0]
        x0, y0 = float(r0["x"]), float(r0["y"])
        side = stamp.shape[-1]
        big = np.pad(stamp, ((0, 0), (size, size), (size, size)), mode="reflect")
        ix = int(round(x0)) - size // 2 + size
        iy = int(round(y0)) - size // 2 + size
        out[i, :n_dithers] = big[:, iy : iy + size, ix : ix + size]
        flux = float(r0["flux"]) if "flux" in truth.colnames else np.nan
        length = float(r0["length"]) if "length" in truth.colnames else np.nan
        rows.append(
            {"kind": kind, "label": i % len(CLASSES), "n_dithers": n_dithers, "flux": flux,
             "length": length, "x": x0 - (ix - size), "y": y0 - (iy - size), "side": side}
        )  # fmt: skip
    t = Table(rows=rows, names=list(rows[0]))
    return out, np.full(n, n_dithers), t


def _paper_galaxy(
    gen: np.random.Generator,
    n_dithers: int,
    size: int,
    *,
    psf: float = 2.5,
    flux_range: tuple[float, float] = (2e3, 5e4),
    background: float = 100.0,
    read_noise: float = 5.0,
    **_: Any,
) -> tuple[np.ndarray, Table]:
    """A galaxy stamp with :func:`make_stamp`'s parameter draws, rendered by the NumPy backend.

    (``make_stamp`` draws galaxies through GalSim when it is installed, whose
    FFTs for compact Sérsic profiles can need gigabytes.)
    """
    flux = float(np.exp(gen.uniform(np.log(flux_range[0]), np.log(flux_range[1]))))
    n_s, r_e = gen.uniform(0.5, 4.0), gen.uniform(1.0, 6.0)
    ell, pa = gen.uniform(0.0, 0.7), gen.uniform(0.0, 180.0)
    x = y = (size - 1) / 2 + gen.uniform(-0.5, 0.5)
    img, _ = render_galaxy(
        (size, size), x, y, flux, n_s, r_e, ellipticity=ell, pa=pa, psf=psf, backend="numpy"
    )
    exp = img + background
    st = np.stack(
        [gen.poisson(exp) + gen.normal(0, read_noise, exp.shape) for _ in range(n_dithers)]
    )
    t = Table({"frame": np.arange(n_dithers), "x": np.full(n_dithers, x), "y": np.full(n_dithers, y),
               "flux": np.full(n_dithers, flux), "length": np.full(n_dithers, 2 * r_e)})  # fmt: skip
    return st.astype(np.float32), t


def with_settings(settings: StampSettings, **changes: Any) -> StampSettings:
    """A copy of ``settings`` with some fields changed (e.g. a rate bin for completeness)."""
    return replace(settings, **changes)
