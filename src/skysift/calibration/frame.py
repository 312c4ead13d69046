"""The calibrated frame: what a calibration produced, and the one place that turns
pixels and counts into sky positions and magnitudes.

Every system (bolide, streaks, movers, stamps, deep-sky objects) takes a
:class:`CalibratedFrame` (alias :class:`CalibrationResult`) from
:func:`skysift.calibration.pipeline.calibrate` and asks it for sky positions
(:meth:`CalibratedFrame.pixel_to_radec`, via :attr:`CalibratedFrame.camera`)
and magnitudes (:meth:`CalibratedFrame.magnitude`), so that the zero point,
its field terms and the PSF FWHM are applied by one rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time

from skysift._version import __version__
from skysift.calibration.camera import SkyCamera
from skysift.calibration.fisheye import FisheyeSolution
from skysift.calibration.photometric import ZeroPointFit
from skysift.calibration.platesolve import PlateSolution
from skysift.detection.masks import SkyMask
from skysift.detection.stars import median_fwhm
from skysift.errors import CalibrationError
from skysift.io.frame import Frame, Site
from skysift.measurement.photometry import instrumental_magnitude

__all__ = ["CalibratedFrame", "CalibrationResult", "radius_norm"]


def radius_norm(
    x: Any,
    y: Any,
    model_type: str,
    frame: Frame,
    sky: SkyMask | None,
    solution: FisheyeSolution | PlateSolution,
) -> np.ndarray:
    """Distance from the optical centre, as a fraction of the horizon radius or half-diagonal.

    Parameters
    ----------
    x, y : array_like, shape (N,)
        Pixels (0-based).
    model_type : {"fisheye", "tan-sip"}
    frame : Frame
    sky : SkyMask or None
        Its fisheye circle (x, y, radius) sets the scale of a fisheye frame.
    solution : FisheyeSolution or PlateSolution

    Returns
    -------
    ndarray, shape (N,)
        The normalised radius used by the zero point's radial term.
    """
    if model_type == "fisheye":
        x0, y0 = solution.model.x0, solution.model.y0
        scale = (
            sky.circle[2] if sky is not None and sky.circle is not None else 0.5 * min(frame.shape)
        )
    else:
        h, w = frame.shape
        x0, y0 = (w - 1) / 2, (h - 1) / 2
        scale = 0.5 * np.hypot(w, h)
    return np.hypot(np.asarray(x, float) - x0, np.asarray(y, float) - y0) / scale


@dataclass
class CalibrationResult:
    """A calibrated frame: everything a calibration produced.

    Attributes
    ----------
    frame : Frame
        The calibrated frame.
    stars : astropy.table.Table
        All detections.
    matches : astropy.table.Table
        Identified stars: ``x``, ``y``, ``catalog_id``, ``ra``, ``dec``,
        ``alt``, ``az`` (deg), ``catalog_mag``, ``inst_mag``, ``mag``,
        ``residual_px`` and more.
    model_type : str
        ``"fisheye"`` or ``"tan-sip"``.
    solution : FisheyeSolution or PlateSolution
        The astrometric solution.
    zero_point : ZeroPointFit or None
        The photometric fit (None if too few usable stars).
    sky : SkyMask or None
        The sky mask used.
    site : Site or None
    time : astropy.time.Time or None
        Mid-exposure time the sky was computed for.
    photometric_band : str
        Band of the catalogue magnitudes the zero point was fitted to.
    timings : dict
        Seconds spent per stage.
    """

    frame: Frame
    stars: Table
    matches: Table
    model_type: str
    solution: FisheyeSolution | PlateSolution
    zero_point: ZeroPointFit | None
    sky: SkyMask | None
    site: Site | None
    time: Time | None
    photometric_band: str = "V"
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def camera(self) -> SkyCamera:
        """The calibrated camera: pixel <-> (RA, Dec) and <-> (alt, az)."""
        model = self.solution.model if self.model_type == "fisheye" else self.solution.wcs
        return SkyCamera(self.model_type, model, self.site, self.time)

    @property
    def n_matched(self) -> int:
        """Number of identified stars."""
        return len(self.matches)

    @property
    def astrometric_rms_px(self) -> float:
        """RMS of the position residuals of the identified stars, in pixels."""
        return float(self.solution.rms_px)

    @property
    def psf_fwhm(self) -> float:
        """The frame's PSF FWHM in pixels (:func:`skysift.detection.stars.median_fwhm`)."""
        return median_fwhm(self.stars)

    def pixel_to_radec(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """RA and Dec (deg, ICRS) of pixels ``x``, ``y`` (0-based)."""
        return self.camera.pixel_to_radec(x, y)

    def radius_norm(self, x: Any, y: Any) -> np.ndarray:
        """Normalised distance of pixels from the optical centre (see :func:`radius_norm`)."""
        return radius_norm(x, y, self.model_type, self.frame, self.sky, self.solution)

    def zero_point_terms(self, x: Any, y: Any, airmass: Any) -> dict[str, np.ndarray]:
        """Keyword arguments of ``zero_point.predict`` for sources at pixels (x, y).

        Parameters
        ----------
        x, y : array_like, shape (N,)
            Pixels of the sources.
        airmass : array_like, shape (N,)
            Their air masses (used when the fit has an extinction term).

        Returns
        -------
        dict
            ``airmass``, ``radius`` (normalised distance from the optical
            centre, as in the fit) and ``color`` (NaN: the source's colour is
            unknown, so the colour term takes the median colour of the
            calibration stars), for the terms the fit has.

        Raises
        ------
        CalibrationError
            If the frame has no zero point.
        """
        zp = self._zero_point()
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
        kw: dict[str, np.ndarray] = {}
        if "extinction" in zp.terms:
            kw["airmass"] = np.atleast_1d(np.asarray(airmass, float))
        if "radial" in zp.terms:
            kw["radius"] = self.radius_norm(x, y)
        if "color" in zp.terms:
            kw["color"] = np.full(len(x), np.nan)
        return kw

    def magnitude(
        self,
        flux: Any,
        x: Any,
        y: Any,
        *,
        airmass: Any = None,
        flux_err: Any = None,
        exposure: float | None = None,
        color: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated magnitudes of fluxes measured at pixels (x, y).

        Parameters
        ----------
        flux : array_like, shape (N,)
            Background-subtracted fluxes in counts (ADU).
        x, y : array_like, shape (N,)
            Where they were measured (0-based pixels).
        airmass : array_like, shape (N,), optional
            Needed when the zero point has an extinction term.
        flux_err : array_like, shape (N,), optional
            1-sigma flux errors (counts); NaN magnitude errors without.
        exposure : float, optional
            Seconds; defaults to the frame's exposure (counts per second are
            what the zero point was fitted to when the frame had one).
        color : array_like, shape (N,), optional
            Colour index of the sources (the catalogue's, e.g. B - V), for a
            zero point with a colour term; default (or NaN): unknown, the
            median colour of the calibration stars.

        Returns
        -------
        mag, mag_err : ndarray, shape (N,)
            Calibrated magnitude and its error (instrumental error and the
            zero point's error in quadrature); NaN where the flux is not positive.

        Raises
        ------
        CalibrationError
            If the frame has no zero point.
        """
        zp = self._zero_point()
        flux = np.atleast_1d(np.asarray(flux, float))
        err = np.full(flux.shape, np.nan) if flux_err is None else np.asarray(flux_err, float)
        exposure = self.frame.exposure if exposure is None else exposure
        inst, inst_err = instrumental_magnitude(flux, err, exposure=exposure)
        kw = self.zero_point_terms(x, y, airmass)
        if color is not None and "color" in kw:
            kw["color"] = np.broadcast_to(np.asarray(color, float), flux.shape)
        mag = np.asarray(zp.predict(inst, **kw), float)
        slope = 1.0 + (zp.linearity if "linearity" in zp.terms else 0.0)
        return mag, np.hypot(slope * inst_err, zp.zero_point_err)

    def _zero_point(self) -> ZeroPointFit:
        if self.zero_point is None:
            msg = f"{self.frame.name}: the calibration has no zero point (too few usable stars)"
            raise CalibrationError(msg)
        return self.zero_point

    def to_dict(self) -> dict[str, Any]:
        """The content of ``calibration.json`` (see :func:`write_calibration`)."""
        zp = self.zero_point
        d: dict[str, Any] = {
            "skysift_version": __version__,
            "file": str(self.frame.path) if self.frame.path else None,
            "image_shape": list(self.frame.shape),
            "model_type": self.model_type,
            "model": self.solution.to_dict() if hasattr(self.solution, "to_dict") else None,
            "n_detected": len(self.stars),
            "n_matched": self.n_matched,
            "astrometric_rms_px": self.astrometric_rms_px,
            "photometric_band": self.photometric_band,
            "zero_point": float(zp.zero_point) if zp is not None else None,
            "zero_point_err": float(zp.zero_point_err) if zp is not None else None,
            "photometric_rms_mag": float(zp.rms_mag) if zp is not None else None,
            "photometry": zp.to_dict() if zp is not None else None,
            "site": self.site.to_dict() if self.site is not None else None,
            "time": self.frame.time.utc.isot if self.frame.time is not None else None,
            "time_mid_exposure": self.time.utc.isot if self.time is not None else None,
            "exposure_s": self.frame.exposure,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }
        if self.sky is not None and self.sky.circle is not None:
            d["fisheye_circle"] = {
                "x": self.sky.circle[0],
                "y": self.sky.circle[1],
                "radius": self.sky.circle[2],
            }
        return d


#: The calibrated frame every system takes (the same class as :class:`CalibrationResult`).
CalibratedFrame = CalibrationResult
