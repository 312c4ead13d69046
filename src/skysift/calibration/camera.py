"""A calibrated camera: pixel <-> (RA, Dec) and pixel <-> (alt, az), saved and loaded.

:class:`SkyCamera` wraps either astrometric model skysift fits:

* ``"fisheye"``: a :class:`~skysift.calibration.fisheye.FisheyeModel` (pixel
  <-> alt/az) plus the site and time that tie the horizon to the sky;
* ``"tan-sip"``: an :class:`astropy.wcs.WCS` (pixel <-> RA/Dec), plus
  optionally the site and time for alt/az.

Horizontal coordinates include atmospheric refraction for the mean pressure
at the site's height, as in :func:`skysift.calibration.catalog.star_altaz`,
so that alt/az computed here agree with the catalogue positions the models
were fitted to. Angles are in degrees, azimuth from north through east;
pixels are 0-based with (0, 0) the centre of the first pixel.

Files: :meth:`SkyCamera.load` reads the ``calibration.json`` written by
:func:`skysift.calibration.report.write_calibration` (for TAN-SIP it reads
the ``calibration.wcs.fits`` named there).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import astropy.units as u
import numpy as np
from astropy.coordinates import ICRS, SkyCoord
from astropy.time import Time

from skysift.calibration.catalog import _altaz_frame, offline_iers
from skysift.calibration.fisheye import FisheyeModel
from skysift.calibration.platesolve import PlateSolution
from skysift.errors import InputError
from skysift.io.frame import Site

__all__ = ["CameraModel", "FisheyeCamera", "SkyCamera", "WCSCamera"]


@runtime_checkable
class CameraModel(Protocol):
    """What every calibrated camera model does: pixels <-> sky.

    Angles in degrees (RA/Dec ICRS; azimuth from north through east), pixels
    0-based; inputs are arrays of one shape, outputs arrays of that shape.
    Implemented by :class:`FisheyeCamera` and :class:`WCSCamera`.
    """

    model_type: str

    def pixel_to_radec(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]: ...

    def radec_to_pixel(self, ra: Any, dec: Any) -> tuple[np.ndarray, np.ndarray]: ...

    def pixel_to_altaz(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]: ...

    def altaz_to_pixel(self, alt: Any, az: Any) -> tuple[np.ndarray, np.ndarray]: ...


def _finite_only(f, a, b) -> tuple[np.ndarray, np.ndarray]:
    """``f(a, b)`` on the finite pairs only (astropy/ERFA warn on NaN); NaN elsewhere.

    Scalars in, scalars out (as floats); arrays keep their broadcast shape.
    """
    a, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.all():
        return f(a, b)
    p = np.full(a.shape, np.nan)
    q = np.full(a.shape, np.nan)
    if ok.any():
        p[ok], q[ok] = f(a[ok], b[ok])
    if a.ndim == 0:
        return float(p), float(q)
    return p, q


@dataclass
class SkyCamera:
    """A calibrated camera model (a :class:`CameraModel`).

    ``SkyCamera("fisheye", model, site, time)`` builds a :class:`FisheyeCamera`,
    ``SkyCamera("tan-sip", wcs, site, time)`` a :class:`WCSCamera`.

    Parameters
    ----------
    model_type : {"fisheye", "tan-sip"}
    model : FisheyeModel or astropy.wcs.WCS
    site : Site, optional
        Needed for fisheye models, and for alt/az with a WCS.
    time : astropy.time.Time, optional
        Time the model holds for (mid-exposure); same needs as ``site``.

    Raises
    ------
    InputError
        If a fisheye model lacks its site or time, or the type is unknown.
    """

    model_type: str
    model: Any
    site: Site | None = None
    time: Time | None = None

    def __new__(cls, model_type: str = "", *args: Any, **kwargs: Any) -> SkyCamera:  # noqa: D102
        if cls is SkyCamera:
            kinds = {"fisheye": FisheyeCamera, "tan-sip": WCSCamera}
            if model_type not in kinds:
                msg = f"model_type must be 'fisheye' or 'tan-sip', got {model_type!r}"
                raise InputError(msg)
            cls = kinds[model_type]
        return super().__new__(cls)

    def __post_init__(self) -> None:
        if self.model_type not in ("fisheye", "tan-sip"):
            msg = f"model_type must be 'fisheye' or 'tan-sip', got {self.model_type!r}"
            raise InputError(msg)

    def _frame(self):
        if self.site is None or self.time is None:
            msg = "alt/az needs the camera's site and time"
            raise InputError(msg)
        return _altaz_frame(self.site, self.time, True)

    def radec_to_altaz(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        """Altitude and azimuth (deg) of sky positions at the camera's site and time (NaN in, NaN out)."""

        def f(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with offline_iers():
                aa = SkyCoord(ra=a * u.deg, dec=b * u.deg).transform_to(self._frame())
            return aa.alt.deg, aa.az.deg % 360.0

        return _finite_only(f, ra, dec)

    def altaz_to_radec(self, alt, az) -> tuple[np.ndarray, np.ndarray]:
        """RA and Dec (deg, ICRS) of horizontal positions at the camera's site and time (NaN in, NaN out)."""

        def f(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with offline_iers():
                c = SkyCoord(alt=a * u.deg, az=b * u.deg, frame=self._frame())
                icrs = c.transform_to(ICRS())
            return icrs.ra.deg, icrs.dec.deg

        return _finite_only(f, alt, az)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SkyCamera:
        """Load the camera of a ``calibration.json`` written by skysift.

        Raises
        ------
        InputError
            If the file is missing, not JSON, or holds no camera model.
        """
        path = Path(path)
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            msg = f"{path}: no such calibration file"
            raise InputError(msg) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            msg = f"{path}: not a readable calibration JSON ({err})"
            raise InputError(msg) from err
        site = Site.from_dict(info["site"]) if info.get("site") else None
        t = info.get("time_mid_exposure") or info.get("time")
        time = Time(t, scale="utc") if t else None
        kind = info.get("model_type")
        if kind == "fisheye":
            model = FisheyeModel.from_dict((info.get("model") or {}).get("camera"))
            return cls("fisheye", model, site, time)
        if kind == "tan-sip":
            wcs_file = info.get("wcs_file")
            if not wcs_file:
                msg = f"{path}: a tan-sip calibration without its wcs_file"
                raise InputError(msg)

            return cls("tan-sip", PlateSolution.load(path.parent / wcs_file).wcs, site, time)
        msg = f"{path}: unknown model_type {kind!r} (expected 'fisheye' or 'tan-sip')"
        raise InputError(msg)


@dataclass
class FisheyeCamera(SkyCamera):
    """An all-sky camera: a :class:`FisheyeModel` (pixel <-> alt/az) tied to the sky by its
    site and time."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.site is None or self.time is None:
            msg = "a fisheye camera model needs its site and time to map pixels to RA/Dec"
            raise InputError(msg)

    def pixel_to_radec(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """RA and Dec (deg, ICRS) of pixels ``x``, ``y`` (arrays of the same shape)."""
        return self.altaz_to_radec(*self.pixel_to_altaz(x, y))

    def radec_to_pixel(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        """Pixels ``x``, ``y`` of sky positions (deg, ICRS); NaN below the horizon."""
        alt, az = self.radec_to_altaz(ra, dec)
        x, y = self.model.altaz_to_pixel(alt, az)
        below = np.asarray(alt) < 0
        return np.where(below, np.nan, x), np.where(below, np.nan, y)

    def pixel_to_altaz(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Altitude and azimuth (deg) of pixels."""
        alt, az = self.model.pixel_to_altaz(np.asarray(x, float), np.asarray(y, float))
        return np.asarray(alt), np.asarray(az)

    def altaz_to_pixel(self, alt, az) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of horizontal positions (deg)."""
        x, y = self.model.altaz_to_pixel(np.asarray(alt, float), np.asarray(az, float))
        return np.asarray(x), np.asarray(y)


@dataclass
class WCSCamera(SkyCamera):
    """A narrow-field camera: an :class:`astropy.wcs.WCS` (TAN-SIP) from a plate solve;
    alt/az when the site and time are known."""

    def pixel_to_radec(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """RA and Dec (deg, ICRS) of pixels ``x``, ``y`` (arrays of the same shape)."""
        ra, dec = self.model.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
        return np.asarray(ra), np.asarray(dec)

    def radec_to_pixel(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        """Pixels ``x``, ``y`` of sky positions (deg, ICRS)."""
        x, y = self.model.all_world2pix(np.asarray(ra, float), np.asarray(dec, float), 0)
        return np.asarray(x), np.asarray(y)

    def pixel_to_altaz(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Altitude and azimuth (deg) of pixels (needs the site and time)."""
        return self.radec_to_altaz(*self.pixel_to_radec(x, y))

    def altaz_to_pixel(self, alt, az) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of horizontal positions (deg; needs the site and time)."""
        return self.radec_to_pixel(*self.altaz_to_radec(alt, az))
