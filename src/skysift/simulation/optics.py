"""Photometric bands and the telescope of the simulator (PSFs: :mod:`skysift.simulation.psf`).

Units: fluxes in photons, angles in arcseconds, lengths in metres. The PSF
classes are re-exported here from :mod:`skysift.simulation.psf`.

References
----------
.. [B98] Bessell, M. S., Castelli, F. & Plez, B. 1998, A&A 333, 231,
   "Model atmospheres broad-band colors, bolometric corrections and
   temperature calibrations for O-M stars", Table A2 (Vega zero points).
.. [B79] Bessell, M. S. 1979, PASP 91, 589 (UBVRI passbands, widths).
.. [R21] Riello, M. et al. 2021, A&A 649, A3, "Gaia Early Data Release 3:
   Photometric content and validation", §5.4 (G zero point 25.6874 mag, Vega).
.. [G16] Gaia Collaboration, Prusti, T. et al. 2016, A&A 595, A1 (telescope
   aperture 1.45 m x 0.50 m per telescope, 0.7278 m^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from skysift.errors import InputError
from skysift.simulation.psf import (  # re-exported: the optics of the simulator in one place
    ARCSEC_PER_RAD,
    PSF,
    PSFS,
    AiryPSF,
    GaussianPSF,
    JitteredPSF,
    MoffatPSF,
    SeeingPSF,
    _check_positive,
    make_psf,
)

__all__ = [
    "ARCSEC_PER_RAD",
    "Band",
    "BANDS",
    "get_band",
    "PSF",
    "GaussianPSF",
    "MoffatPSF",
    "AiryPSF",
    "SeeingPSF",
    "JitteredPSF",
    "PSFS",
    "make_psf",
    "Telescope",
]

_H = 6.62607015e-34  # Planck constant, J s (exact, SI 2019)
_C = 299792458.0  # speed of light, m/s (exact)
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


# --------------------------------------------------------------------------- bands
@dataclass(frozen=True)
class Band:
    """A photometric band: the photon rate of a magnitude-0 source.

    Parameters
    ----------
    name : str
        Band name (a key of :data:`BANDS`).
    wavelength_m : float
        Effective wavelength in metres (used for diffraction and seeing).
    zero_point_flux : float
        Photon flux of a magnitude-0 source integrated over the band, in
        photons per m^2 per s, above the atmosphere and before any telescope
        or detector losses (the detector's quantum efficiency is applied by
        :class:`~skysift.simulation.detector.Detector`).
    description : str
        Where the zero point comes from.
    """

    name: str
    wavelength_m: float
    zero_point_flux: float
    description: str = ""

    def mag_to_photon_flux(self, mag: float | np.ndarray) -> float | np.ndarray:
        """Photon flux in photons/m^2/s of a source of magnitude ``mag``.

        ``zero_point_flux * 10**(-0.4 * mag)``; accepts scalars or arrays.
        """
        return self.zero_point_flux * np.power(10.0, -0.4 * np.asarray(mag, dtype=float))[()]

    def photon_flux_to_mag(self, flux: float | np.ndarray) -> float | np.ndarray:
        """Magnitude of a source with photon flux ``flux`` in photons/m^2/s.

        Raises
        ------
        InputError
            If any flux is not positive (its magnitude is undefined).
        """
        f = np.asarray(flux, dtype=float)
        if not np.all(f > 0):
            msg = f"flux must be > 0 photons/m^2/s to have a magnitude, got min {np.min(f)}"
            raise InputError(msg)
        return (-2.5 * np.log10(f / self.zero_point_flux))[()]


def _photons_from_flambda(f_lambda_cgs: float, wavelength_m: float, width_m: float) -> float:
    """Photons/m^2/s of a flat f_lambda (erg/s/cm^2/Angstrom) over a band of given width."""
    f_si = f_lambda_cgs * 1e-7 * 1e4 * 1e10  # -> W / m^2 / m
    return f_si * width_m / (_H * _C / wavelength_m)


def _vega_photons_400_700() -> tuple[float, float]:
    """Vega photon flux over 400-700 nm (unit response) and its mean wavelength.

    f_lambda(Vega) is interpolated (quadratic in log f_lambda) through the B, V
    and R zero points of [B98] Table A2 (438, 545, 641 nm).
    """
    lam = np.array([438e-9, 545e-9, 641e-9])
    f_si = np.array([632.0e-11, 363.1e-11, 217.7e-11]) * 1e-7 * 1e4 * 1e10
    coef = np.polyfit(lam, np.log(f_si), 2)
    grid = np.linspace(400e-9, 700e-9, 3001)
    n_lambda = np.exp(np.polyval(coef, grid)) * grid / (_H * _C)
    total = float(np.trapezoid(n_lambda, grid))
    mean = float(np.trapezoid(n_lambda * grid, grid) / total)
    return total, mean


_CLEAR_FLUX, _CLEAR_WAVELENGTH = _vega_photons_400_700()

#: Registry of bands by name. Zero points in photons/m^2/s for magnitude 0.
BANDS: dict[str, Band] = {
    "V": Band(
        "V",
        545e-9,
        # f_lambda = 363.1e-11 erg/s/cm^2/A at 545 nm [B98, Table A2], width
        # 88 nm [B79]: 8.77e9 photons/m^2/s.
        _photons_from_flambda(363.1e-11, 545e-9, 88e-9),
        "Johnson-Cousins V, Vega system: f_lambda = 3.631e-9 erg/s/cm^2/A at 545 nm "
        "(Bessell, Castelli & Plez 1998, Table A2) times an 88 nm width (Bessell 1979).",
    ),
    "G": Band(
        "G",
        640e-9,
        # 10**(0.4 * 25.6874) e-/s over Gaia's 0.7278 m^2 aperture = 2.59e10 /m^2/s.
        10.0 ** (0.4 * 25.6874) / 0.7278,
        "Gaia G, Vega system: ZP_G = 25.6874 mag for fluxes in detected e-/s (Riello et "
        "al. 2021, §5.4) over the 0.7278 m^2 Gaia aperture (Gaia Collaboration 2016). "
        "The G passband is a total-system response (optics and CCD QE included), so "
        "this is a detected-photon rate: simulate Gaia-like counts with qe=1.",
    ),
    "clear": Band(
        "clear",
        _CLEAR_WAVELENGTH,
        _CLEAR_FLUX,
        "Unfiltered CMOS, approximated as a unit response from 400 to 700 nm on "
        "Vega's spectrum (interpolated through the B, V, R zero points of Bessell et "
        "al. 1998): 3.0e10 photons/m^2/s. The sensor QE curve is applied by the "
        "Detector; colour terms between V (catalogue) and clear are ignored, an "
        "approximation good to ~0.2-0.5 mag depending on the star's colour.",
    ),
}


def get_band(name: str | Band) -> Band:
    """Return the :class:`Band` called ``name`` (a :class:`Band` passes through).

    Raises
    ------
    InputError
        If the name is not in :data:`BANDS`; the message lists the valid names.
    """
    if isinstance(name, Band):
        return name
    try:
        return BANDS[name]
    except (KeyError, TypeError):
        msg = f"band must be one of {sorted(BANDS)}, got {name!r}"
        raise InputError(msg) from None


# --------------------------------------------------------------------------- telescope
class Telescope:
    """A telescope: collecting area, pixel scale and photometric band.

    Parameters
    ----------
    diameter_m : float
        Aperture diameter in metres.
    focal_length_m : float, optional
        Focal length in metres (with ``pixel_size_m`` gives the pixel scale).
    pixel_size_m : float, optional
        Pixel pitch in metres.
    pixel_scale_arcsec : float, optional
        Pixel scale in arcseconds per pixel (instead of focal length and pixel size).
    obscuration : float, optional
        Linear central obscuration ratio in [0, 1). Default 0.
    band : str or Band, optional
        Photometric band of the magnitudes. Default ``"V"``.
    pointing : optional
        Pointing centre (e.g. an astropy ``SkyCoord``); stored, not used here.

    Attributes
    ----------
    collecting_area_m2 : float
        pi/4 D^2 (1 - obscuration^2), in m^2.
    pixel_scale_arcsec : float
        206264.8 * pixel_size / focal_length, or as given, in arcsec/pixel
        (None if neither is given).

    Raises
    ------
    InputError
        If a length is not positive, the obscuration is outside [0, 1), the
        pixel scale is given twice inconsistently, or the band is unknown.
    """

    def __init__(
        self,
        diameter_m: float,
        *,
        focal_length_m: float | None = None,
        pixel_size_m: float | None = None,
        pixel_scale_arcsec: float | None = None,
        obscuration: float = 0.0,
        band: str | Band = "V",
        pointing: Any = None,
    ) -> None:
        self.diameter_m = _check_positive("diameter_m", diameter_m)
        if not 0.0 <= obscuration < 1.0:
            msg = f"obscuration must be in [0, 1), got {obscuration!r}"
            raise InputError(msg)
        self.obscuration = float(obscuration)
        self.focal_length_m = (
            None if focal_length_m is None else _check_positive("focal_length_m", focal_length_m)
        )
        self.pixel_size_m = (
            None if pixel_size_m is None else _check_positive("pixel_size_m", pixel_size_m)
        )
        derived = None
        if self.focal_length_m is not None and self.pixel_size_m is not None:
            derived = ARCSEC_PER_RAD * self.pixel_size_m / self.focal_length_m
        if pixel_scale_arcsec is not None:
            given = _check_positive("pixel_scale_arcsec", pixel_scale_arcsec)
            if derived is not None and abs(given - derived) > 1e-3 * derived:
                msg = (
                    f"pixel_scale_arcsec={given} disagrees with 206265 * pixel_size_m / "
                    f"focal_length_m = {derived:.6g}; give one or the other"
                )
                raise InputError(msg)
            derived = given
        self.pixel_scale_arcsec = derived
        self.band = get_band(band)
        self.pointing = pointing

    @property
    def collecting_area_m2(self) -> float:
        """Collecting area in m^2: pi/4 D^2 (1 - obscuration^2)."""
        return math.pi / 4.0 * self.diameter_m**2 * (1.0 - self.obscuration**2)

    def star_photons(self, mag: float | np.ndarray, exposure_s: float) -> float | np.ndarray:
        """Photons collected from a star of magnitude ``mag`` in ``exposure_s`` seconds.

        band zero point x 10^(-0.4 mag) x collecting area x exposure (before
        detector QE; atmospheric extinction is not included).

        Raises
        ------
        InputError
            If ``exposure_s`` is negative.
        """
        _check_exposure(exposure_s)
        return self.band.mag_to_photon_flux(mag) * self.collecting_area_m2 * exposure_s

    def sky_photons_per_pixel(
        self, sky_mag_per_arcsec2: float | np.ndarray, exposure_s: float
    ) -> float | np.ndarray:
        """Sky photons per pixel for a sky brightness in mag/arcsec^2.

        Raises
        ------
        InputError
            If ``exposure_s`` is negative or the pixel scale is unknown.
        """
        _check_exposure(exposure_s)
        if self.pixel_scale_arcsec is None:
            msg = "sky_photons_per_pixel needs pixel_scale_arcsec (or focal_length_m and pixel_size_m)"
            raise InputError(msg)
        per_arcsec2 = self.band.mag_to_photon_flux(sky_mag_per_arcsec2)
        return per_arcsec2 * self.pixel_scale_arcsec**2 * self.collecting_area_m2 * exposure_s

    def airy_psf(self, wavelength_m: float | None = None) -> AiryPSF:
        """The diffraction-limited PSF of this aperture (band wavelength by default)."""
        if self.pixel_scale_arcsec is None:
            msg = "airy_psf needs pixel_scale_arcsec (or focal_length_m and pixel_size_m)"
            raise InputError(msg)
        lam = self.band.wavelength_m if wavelength_m is None else wavelength_m
        return AiryPSF(self.diameter_m, lam, self.pixel_scale_arcsec, self.obscuration)

    def seeing_psf(self, r0_m: float, wavelength_m: float | None = None) -> SeeingPSF:
        """The seeing-limited PSF for Fried parameter ``r0_m`` (band wavelength by default)."""
        if self.pixel_scale_arcsec is None:
            msg = "seeing_psf needs pixel_scale_arcsec (or focal_length_m and pixel_size_m)"
            raise InputError(msg)
        lam = self.band.wavelength_m if wavelength_m is None else wavelength_m
        return SeeingPSF(r0_m, lam, self.pixel_scale_arcsec)

    def __repr__(self) -> str:
        return (
            f"Telescope(diameter_m={self.diameter_m}, pixel_scale_arcsec={self.pixel_scale_arcsec}, "
            f"obscuration={self.obscuration}, band={self.band.name!r})"
        )


def _check_exposure(exposure_s: float) -> float:
    try:
        t = float(exposure_s)
    except (TypeError, ValueError):
        msg = f"exposure_s must be a number of seconds >= 0, got {exposure_s!r}"
        raise InputError(msg) from None
    if not (t >= 0 and math.isfinite(t)):
        msg = f"exposure_s must be >= 0 seconds, got {exposure_s!r}"
        raise InputError(msg)
    return t
