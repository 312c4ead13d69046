"""A grid of synthetic all-sky cameras with exact pixel <-> (alt, az) truth.

Each camera is one of four standard fisheye projections with an odd radial
polynomial term, ``r = f (g(theta) + k theta**3)`` (theta: angle from the
optical axis, rad) where ``g`` is

* equidistant ``theta``, equisolid-angle ``2 sin(theta / 2)``,
* stereographic ``2 tan(theta / 2)``, orthographic ``sin(theta)``

(the FRIPON/RMS style of radial polynomial: Jeanne et al. 2019, A&A 627,
A78, §3; Vida et al. 2021, MNRAS 506, 5046), either handedness, any rotation,
a centre offset from the image centre and an optical axis tilted from the
zenith. Stars are the Hipparcos stars shipped with skysift to V ~ 7, placed
with astropy (``AltAz`` with refraction, via
:func:`skysift.calibration.catalog.star_altaz`), extincted by 0.2 mag per
airmass and rendered with a ``photutils`` Gaussian PRF (FWHM 2.2 px) plus
Poisson and read noise on a 1392x1040 frame, either with a dark surround
outside the horizon circle ("ring") or with the circle cut by the frame and
a lit ground outside it ("no ring").

This module shares no code with :mod:`skysift.calibration.fisheye`: the
projection, the tilt and the inversion are written here from the formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time
from photutils.datasets import make_model_image, make_noise_image
from photutils.psf import CircularGaussianPRF

__all__ = [
    "PROJECTIONS",
    "DISTORTIONS",
    "AllSkyCamera",
    "AllSkyFrame",
    "camera_grid",
    "render_allsky",
]

PROJECTIONS = ("equidistant", "equisolid", "stereographic", "orthographic")
#: The cubic radial terms k of the grid (r = f (g + k theta**3)).
DISTORTIONS = (0.0, -0.03, 0.05)

#: Sites and UTC times (Sun well below the horizon) the grid cycles through.
SITES = (
    ((28.7619, -17.8908, 2200.0), "2024-01-15T01:00:00"),
    ((39.0021, -76.9560, 50.0), "2024-02-10T05:00:00"),
    ((-30.2407, -70.7366, 2200.0), "2024-06-20T04:00:00"),
    ((48.0, 2.0, 150.0), "2024-11-30T23:30:00"),
)


def _g(projection: str, t):
    if projection == "equidistant":
        return t
    if projection == "equisolid":
        return 2 * np.sin(t / 2)
    if projection == "stereographic":
        return 2 * np.tan(t / 2)
    if projection == "orthographic":
        return np.sin(t)
    msg = f"projection must be one of {', '.join(PROJECTIONS)}, got {projection!r}"
    raise ValueError(msg)


def _dg(projection: str, t):
    return {
        "equidistant": lambda: np.ones_like(t),
        "equisolid": lambda: np.cos(t / 2),
        "stereographic": lambda: 1 / np.cos(t / 2) ** 2,
        "orthographic": lambda: np.cos(t),
    }[projection]()


def _enu(alt, az) -> np.ndarray:
    a, z = np.radians(alt), np.radians(az)
    return np.stack([np.cos(a) * np.sin(z), np.cos(a) * np.cos(z), np.sin(a)], axis=-1)


@dataclass
class AllSkyCamera:
    """A synthetic all-sky camera.

    Parameters
    ----------
    projection : str
        One of :data:`PROJECTIONS`.
    parity : {+1, -1}
        +1: east follows north from +x towards +y; -1: mirrored.
    k3 : float
        Cubic radial term, ``r = f (g(theta) + k3 theta**3)``.
    f : float
        Scale, pixels per radian (of ``g``).
    x0, y0 : float
        Pixel of the optical axis, 0-based.
    rotation_deg : float
        Position angle of north around the axis, deg, from +x towards +y.
    tilt_deg, tilt_az_deg : float
        Angle of the optical axis from the zenith and its azimuth (deg, N through E).
    theta_max_deg : float
        Largest angle from the axis imaged (the lens circle), deg.
    shape : (int, int)
        Image ``(H, W)``.
    ring : bool
        Dark surround outside the lens circle (True) or lit ground (False).
    """

    projection: str
    parity: int
    k3: float
    f: float
    x0: float
    y0: float
    rotation_deg: float
    tilt_deg: float
    tilt_az_deg: float
    theta_max_deg: float
    shape: tuple[int, int] = (1040, 1392)
    ring: bool = True
    site: tuple[float, float, float] = SITES[0][0]
    time: str = SITES[0][1]
    name: str = ""

    def _axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = _enu(90.0 - self.tilt_deg, self.tilt_az_deg)
        n = np.array([0.0, 1.0, 0.0]) - a[1] * a
        n /= np.linalg.norm(n)
        e = np.cross(n, a)
        return a, n, e

    def radius(self, theta):
        """Radius in px of an angle from the axis (rad)."""
        return self.f * (_g(self.projection, theta) + self.k3 * theta**3)

    def theta(self, r):
        """Angle from the axis (rad) of a radius (px), to 1e-13 rad.

        Inside the lens circle (where ``r(theta)`` is monotone): a table
        look-up, then Newton steps; beyond it, bisection on
        ``[0, theta_max + 0.2]``.
        """
        r = np.asarray(r, float)
        tmax = math.radians(self.theta_max_deg)
        grid = np.linspace(0.0, tmax, 4097)
        inside = r <= self.radius(tmax)
        t = np.interp(r, self.radius(grid), grid)
        for _ in range(4):
            d = self.f * (_dg(self.projection, t) + 3 * self.k3 * t**2)
            t = np.where(inside, t - (self.radius(t) - r) / d, t)
        if not inside.all():
            ro = r[~inside]
            lo, hi = np.zeros_like(ro), np.full_like(ro, tmax + 0.2)
            for _ in range(50):
                mid = 0.5 * (lo + hi)
                big = self.radius(mid) > ro
                hi = np.where(big, mid, hi)
                lo = np.where(big, lo, mid)
            t[~inside] = 0.5 * (lo + hi)
        return t

    def altaz_to_pixel(self, alt, az) -> tuple[np.ndarray, np.ndarray]:
        """Pixel ``(x, y)`` of horizontal coordinates (deg)."""
        v = _enu(np.asarray(alt, float), np.asarray(az, float))
        a, n, e = self._axes()
        theta = np.arccos(np.clip(v @ a, -1, 1))
        psi = np.arctan2(v @ e, v @ n)
        phi = math.radians(self.rotation_deg) + self.parity * psi
        r = self.radius(theta)
        return self.x0 + r * np.cos(phi), self.y0 + r * np.sin(phi)

    def pixel_to_altaz(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Horizontal coordinates (deg) of pixels."""
        dx, dy = np.asarray(x, float) - self.x0, np.asarray(y, float) - self.y0
        theta = self.theta(np.hypot(dx, dy))
        psi = self.parity * (np.arctan2(dy, dx) - math.radians(self.rotation_deg))
        a, n, e = self._axes()
        v = (
            np.sin(theta)[..., None] * (np.cos(psi)[..., None] * n + np.sin(psi)[..., None] * e)
            + np.cos(theta)[..., None] * a
        )
        alt = np.degrees(np.arcsin(np.clip(v[..., 2], -1, 1)))
        az = np.degrees(np.arctan2(v[..., 0], v[..., 1])) % 360.0
        return alt, az

    def to_dict(self) -> dict[str, Any]:
        """The truth parameters, JSON-ready."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class AllSkyFrame:
    """A rendered all-sky frame: ``data`` (H, W) float32, ``truth`` (one row per star) and more.

    ``truth`` columns: ``hip``, ``catalog_id``, ``v_mag``, ``alt``, ``az``
    (deg), ``x``, ``y`` (px), ``flux`` (ADU, after extinction and vignetting),
    ``inside`` (in the frame and the lens circle, above 3 deg altitude).
    """

    data: np.ndarray
    truth: Table
    camera: AllSkyCamera
    sky_mask: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def _theta_max(projection: str, k3: float) -> float:
    """Largest angle (deg, <= 90) where dr/dtheta stays above 0.05 f (monotone lens)."""
    t = np.radians(np.linspace(0, 90, 901))
    d = _dg(projection, t) + 3 * k3 * t**2
    bad = np.flatnonzero(d < 0.05)
    return 90.0 if bad.size == 0 else float(np.degrees(t[bad[0] - 1]))


def camera_grid(
    n_repeat: int = 1,
    *,
    shape: tuple[int, int] = (1040, 1392),
    rng: np.random.Generator | int | None = 0,
) -> list[AllSkyCamera]:
    """The grid: projections x handedness x distortion (x ``n_repeat``), random pose.

    Rotation is uniform in [0, 360) deg, the centre offset up to 5 % of the
    frame in x and y, the tilt up to 5 deg towards a random azimuth; cameras
    alternate between a dark surround (horizon circle of radius 0.46 H) and
    no ring (circle of radius 0.62 H, cut by the frame, ground lit outside).

    Returns
    -------
    list of AllSkyCamera
        ``4 * 2 * 3 * n_repeat`` cameras (24 by default).
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    h, w = shape
    out = []
    i = 0
    for _ in range(n_repeat):
        for proj in PROJECTIONS:
            for parity in (1, -1):
                for k3 in DISTORTIONS:
                    ring = i % 2 == 0
                    tmax = _theta_max(proj, k3)
                    r_h = (0.46 if ring else 0.62) * h
                    f = r_h / (_g(proj, math.radians(tmax)) + k3 * math.radians(tmax) ** 3)
                    site, time = SITES[i % len(SITES)]
                    cam = AllSkyCamera(
                        projection=proj,
                        parity=parity,
                        k3=k3,
                        f=float(f),
                        x0=float((w - 1) / 2 + rng.uniform(-0.05, 0.05) * w),
                        y0=float((h - 1) / 2 + rng.uniform(-0.05, 0.05) * h),
                        rotation_deg=float(rng.uniform(0, 360)),
                        tilt_deg=float(rng.uniform(0, 5)),
                        tilt_az_deg=float(rng.uniform(0, 360)),
                        theta_max_deg=tmax,
                        shape=(h, w),
                        ring=ring,
                        site=site,
                        time=time,
                        name=f"{proj[:5]}_{'mir' if parity < 0 else 'dir'}_k{k3:+.2f}_{i:02d}",
                    )
                    out.append(cam)
                    i += 1
    return out


def render_allsky(
    camera: AllSkyCamera,
    *,
    max_mag: float = 7.0,
    fwhm: float = 2.2,
    sky: float = 150.0,
    read_noise: float = 5.0,
    snr_v7: float = 7.0,
    extinction: float = 0.2,
    saturation: float = 65535.0,
    rng: np.random.Generator | int | None = None,
) -> AllSkyFrame:
    """Render the sky seen by a camera at its site and time.

    Parameters
    ----------
    camera : AllSkyCamera
    max_mag : float, optional
        Faintest V magnitude rendered (Hipparcos). Default 7.
    fwhm : float, optional
        Gaussian PSF FWHM, px. Default 2.2.
    sky : float, optional
        Zenith sky level, ADU (brightening towards the horizon as van Rhijn's law). Default 150.
    read_noise : float, optional
        ADU. Default 5.
    snr_v7 : float, optional
        Matched-filter SNR of a V = 7 star at the zenith. Default 7.
    extinction : float, optional
        Mag per airmass. Default 0.2.
    saturation : float, optional
        Clip level, ADU. Default 65535.
    rng : numpy.random.Generator, int or None, optional

    Returns
    -------
    AllSkyFrame
    """
    from skysift.calibration.catalog import load_hipparcos, star_altaz
    from skysift.io.frame import Site

    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    h, w = camera.shape
    time = Time(camera.time, scale="utc")
    cat = load_hipparcos(max_mag, epoch=time)
    cat = star_altaz(cat, Site(*camera.site), time)
    cat = cat[np.asarray(cat["alt"]) > -1.0]
    x, y = camera.altaz_to_pixel(np.asarray(cat["alt"]), np.asarray(cat["az"]))
    alt = np.asarray(cat["alt"], float)
    theta = np.degrees(
        np.arccos(np.clip(_enu(alt, np.asarray(cat["az"])) @ camera._axes()[0], -1, 1))
    )
    inside = (
        (alt > 3.0)
        & (theta < camera.theta_max_deg)
        & (x > -0.5)
        & (y > -0.5)
        & (x < w - 0.5)
        & (y < h - 0.5)
    )
    yy, xx = np.mgrid[0:h, 0:w]
    r_pix = np.hypot(xx - camera.x0, yy - camera.y0)
    r_h = camera.radius(math.radians(camera.theta_max_deg))
    sky_alt = np.full((h, w), -90.0)
    lens = r_pix < r_h
    sky_alt[lens] = camera.pixel_to_altaz(xx[lens], yy[lens])[0]
    in_circle = (r_pix < r_h) & (sky_alt > 0)
    z = np.radians(90 - np.clip(sky_alt, 0, 90))
    vig = 1 - 0.25 * np.clip(r_pix / r_h, 0, 1) ** 2
    sky_img = sky * vig / np.sqrt(1 - 0.96 * np.sin(z) ** 2)
    ground = 0.0 if camera.ring else 0.7 * sky
    bg = np.where(in_circle, sky_img, ground).astype(np.float32)
    sigma = np.sqrt(read_noise**2 + sky)
    norm = 1.0 / (np.sqrt(4 * np.pi) * fwhm / 2.3548)
    f7 = snr_v7 * sigma / norm
    airm = 1.0 / (
        np.sin(np.radians(np.clip(alt, 1, 90)))
        + 0.50572 * (np.clip(alt, 1, 90) + 6.07995) ** -1.6364
    )
    flux = f7 * 10 ** (-0.4 * (np.asarray(cat["v_mag"], float) - 7 + extinction * (airm - 1)))
    flux *= 1 - 0.25 * np.clip(np.hypot(x - camera.x0, y - camera.y0) / r_h, 0, 1) ** 2
    tab = Table({"x_0": x[inside], "y_0": y[inside], "flux": flux[inside]})
    stars = make_model_image((h, w), CircularGaussianPRF(fwhm=fwhm), tab, model_shape=(13, 13))
    data = rng.poisson(np.maximum(bg + stars, 0)).astype(np.float32) + 100.0
    data += make_noise_image((h, w), mean=0.0, stddev=read_noise, seed=int(rng.integers(2**31)))
    data = np.minimum(data, saturation).astype(np.float32)
    truth = Table()
    truth["hip"] = np.asarray(cat["hip"])
    truth["catalog_id"] = np.asarray(cat["catalog_id"])
    truth["v_mag"] = np.asarray(cat["v_mag"], float)
    truth["alt"] = alt
    truth["az"] = np.asarray(cat["az"], float)
    truth["x"] = x
    truth["y"] = y
    truth["flux"] = flux
    truth["inside"] = inside
    return AllSkyFrame(
        data=data,
        truth=truth,
        camera=camera,
        sky_mask=in_circle,
        meta={"fwhm": fwhm, "sky": sky, "read_noise": read_noise, "extinction": extinction},
    )
