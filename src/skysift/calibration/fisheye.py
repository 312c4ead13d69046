"""All-sky (fisheye) camera model: pixel <-> (altitude, azimuth), and its JSON form.

The model
---------
:class:`FisheyeModel` maps horizontal coordinates (altitude, azimuth) to pixel
coordinates (0-based, (0, 0) the centre of the first pixel, x = column,
y = row) in four steps:

1. *Tilt.* The optical axis points at a small angle from the zenith: its
   direction in the local east-north-up frame is proportional to
   ``(tan(tilt_east), tan(tilt_north), 1)``. A sky direction gets a zenith
   angle ``z`` from the optical axis and an azimuth ``psi`` around it, measured
   from the projection of north through east (``psi`` = azimuth when the
   tilt is zero).
2. *Radial mapping.* ``r = k1 g(z) + k3 z**3 + k5 z**5 + ...`` pixels, ``z``
   in radians, where ``g`` is the lens's standard projection (Bettonvil
   2005; Jeanne et al. 2019, A&A 627, A78, Sect. 3.2 for the odd radial
   polynomial): equidistant ``g(z) = z`` (the default; then the model is the
   odd polynomial ``r = k1 z + k3 z**3 + ...``), equisolid-angle
   ``2 sin(z/2)``, stereographic ``2 tan(z/2)`` or orthographic ``sin z``.
3. *Rotation and parity.* The position angle in the image, counted from the
   +x axis towards the +y axis, is ``phi = rotation + parity * psi``:
   ``rotation`` is where north lies and ``parity`` (+1 or -1) whether east
   follows north in the +x -> +y sense (+1) or the other way (-1, a mirror
   image, e.g. a camera looking at the sky through a mirror or an image
   read bottom-up).
4. ``x = x0 + r cos(phi)``, ``y = y0 + r sin(phi)``: ``(x0, y0)`` is the pixel
   of the optical axis (the zenith when the tilt is zero).

The inverse, :meth:`FisheyeModel.pixel_to_altaz`, is exact up to a Newton
inversion of the radial polynomial (to 1e-12 rad).

JSON format
-----------
:meth:`FisheyeModel.to_dict` / :meth:`FisheyeModel.save` write::

    {
      "model": "fisheye",          # always "fisheye"
      "version": 1,                # format version
      "x0": 695.3,                 # optical-axis pixel, x (column), 0-based
      "y0": 520.1,                 # optical-axis pixel, y (row), 0-based
      "rotation_deg": 87.2,        # position angle of north, deg, +x towards +y
      "parity": -1,                # +1: east follows north from +x to +y; -1 mirrored
      "radial_px": [318.0, -4.1],  # k1, k3, k5, ...: r = k1 g(z) + k3 z^3 + ...,
                                   #   r in px, z in rad
      "projection": "equidistant", # g: equidistant, equisolid, stereographic,
                                   #   orthographic (absent: equidistant)
      "tilt_deg": [0.3, -0.1],     # optical axis tilt towards east and north, deg
      "shape": [1040, 1392]        # image (height, width) in px, or null
    }

:class:`FisheyeSolution` (from :func:`skysift.calibration.allsky.solve_fisheye`) adds the star matches
and the fit quality; :meth:`FisheyeSolution.to_dict` nests the model dict
under ``"camera"`` with ``n_matched``, ``rms_px``, ``site`` and ``time``.

The automatic calibration lives in :mod:`skysift.calibration.allsky`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time

from skysift.errors import InputError, NotEnoughStarsError
from skysift.io.frame import Site
from skysift.outputs.files import write_json

__all__ = ["PROJECTIONS", "FisheyeModel", "FisheyeSolution", "fisheye_from_similarity"]

_FORMAT_VERSION = 1

#: The standard fisheye projections ``g(z)`` of the radial mapping (z in rad).
PROJECTIONS = ("equidistant", "equisolid", "stereographic", "orthographic")


def projection_g(projection: str, z):
    """The projection function ``g(z)`` (z in radians; see the module docstring)."""
    z = np.asarray(z, dtype=float)
    if projection == "equidistant":
        return z
    if projection == "equisolid":
        return 2.0 * np.sin(z / 2.0)
    if projection == "stereographic":
        return 2.0 * np.tan(z / 2.0)
    return np.sin(z)  # orthographic (validated by FisheyeModel)


def projection_dg(projection: str, z):
    """Derivative ``dg/dz`` of :func:`projection_g`."""
    z = np.asarray(z, dtype=float)
    if projection == "equidistant":
        return np.ones_like(z)
    if projection == "equisolid":
        return np.cos(z / 2.0)
    if projection == "stereographic":
        return 1.0 / np.cos(z / 2.0) ** 2
    return np.cos(z)


def _enu(alt_deg, az_deg) -> np.ndarray:
    alt = np.radians(np.asarray(alt_deg, dtype=float))
    az = np.radians(np.asarray(az_deg, dtype=float))
    ca = np.cos(alt)
    return np.stack([ca * np.sin(az), ca * np.cos(az), np.sin(alt)], axis=-1)


@dataclass
class FisheyeModel:
    """Geometric model of an all-sky (fisheye) camera.

    See the module docstring for the equations.

    Parameters
    ----------
    x0, y0 : float
        Pixel of the optical axis, 0-based (x = column, y = row).
    rotation : float
        Position angle of north in the image, degrees from +x towards +y.
    radial : tuple of float
        ``(k1, k3, k5, ...)`` of ``r = k1 g(z) + k3 z**3 + ...``, r in pixels
        and z (zenith angle from the optical axis) in radians; ``k1 > 0``.
    parity : int, optional
        +1 (east follows north from +x towards +y) or -1 (mirrored). Default +1.
    tilt : tuple of float, optional
        ``(tilt_east, tilt_north)``: angles in degrees by which the optical
        axis leans towards east and north. Default ``(0, 0)``.
    shape : tuple of int, optional
        Image shape ``(H, W)`` in pixels, for reference.
    projection : str, optional
        ``g`` of the radial mapping, one of :data:`PROJECTIONS`. Default
        ``"equidistant"``.

    Raises
    ------
    InputError
        If ``parity`` is not +-1, ``radial`` is empty or ``k1 <= 0``, a value
        is not finite or the projection is unknown.
    """

    x0: float
    y0: float
    rotation: float
    radial: tuple[float, ...]
    parity: int = 1
    tilt: tuple[float, float] = (0.0, 0.0)
    shape: tuple[int, int] | None = None
    projection: str = "equidistant"

    def __post_init__(self) -> None:
        if self.projection not in PROJECTIONS:
            msg = f"projection must be one of {', '.join(PROJECTIONS)}, got {self.projection!r}"
            raise InputError(msg)
        self.radial = tuple(float(k) for k in np.atleast_1d(self.radial))
        self.tilt = (float(self.tilt[0]), float(self.tilt[1]))
        if self.parity not in (1, -1):
            msg = f"parity must be +1 or -1, got {self.parity!r}"
            raise InputError(msg)
        self.parity = int(self.parity)
        if len(self.radial) == 0 or not self.radial[0] > 0:
            msg = f"radial must start with a positive k1 (px/rad), got {self.radial!r}"
            raise InputError(msg)
        values = (self.x0, self.y0, self.rotation, *self.radial, *self.tilt)
        if not all(math.isfinite(float(v)) for v in values):
            msg = f"fisheye parameters must be finite, got {values!r}"
            raise InputError(msg)
        self.x0, self.y0, self.rotation = float(self.x0), float(self.y0), float(self.rotation)
        if self.shape is not None:
            self.shape = (int(self.shape[0]), int(self.shape[1]))

    # -- geometry ---------------------------------------------------------
    def _axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit vectors (east', north', axis) of the camera frame in ENU."""
        a = np.array(
            [math.tan(math.radians(self.tilt[0])), math.tan(math.radians(self.tilt[1])), 1.0]
        )
        a /= np.linalg.norm(a)
        north = np.array([0.0, 1.0, 0.0])
        n = north - a * (north @ a)
        n /= np.linalg.norm(n)
        e = np.cross(n, a)
        return e, n, a

    def radius(self, z_rad):
        """Radial distance in pixels of a zenith angle ``z_rad`` (radians)."""
        z = np.asarray(z_rad, dtype=float)
        r = self.radial[0] * projection_g(self.projection, z)
        for j, k in enumerate(self.radial[1:], start=1):
            r = r + k * z ** (2 * j + 1)
        return r

    def _dradius(self, z: np.ndarray) -> np.ndarray:
        d = self.radial[0] * projection_dg(self.projection, z)
        for j, k in enumerate(self.radial[1:], start=1):
            d = d + (2 * j + 1) * k * z ** (2 * j)
        return d

    @property
    def max_zenith_angle(self) -> float:
        """Largest zenith angle (rad, <= pi) up to which the radius grows.

        Past it the radial polynomial turns over (``dr/dz <= 0``) and a
        radius no longer names one direction: :meth:`zenith_angle` returns
        NaN beyond ``radius(max_zenith_angle)``.
        """
        z = np.linspace(0.0, np.pi, 1801)
        bad = np.flatnonzero(self._dradius(z) <= 0.0)
        return float(z[bad[0] - 1]) if bad.size and bad[0] > 0 else float(np.pi)

    def zenith_angle(self, r_px):
        """Inverse of :meth:`radius`: zenith angle (radians) of a radius (px).

        NaN for radii beyond the turnover of the radial mapping
        (:attr:`max_zenith_angle`), which no direction reaches.
        """
        r = np.asarray(r_px, dtype=float)
        z_turn = self.max_zenith_angle
        r = np.where(r <= self.radius(z_turn) + 1e-9, r, np.nan)
        z = r / self.radial[0]
        if len(self.radial) > 1 or self.projection != "equidistant":
            if self.projection == "orthographic":
                z = np.arcsin(np.clip(z, 0.0, 1.0))
            elif self.projection == "equisolid":
                z = 2.0 * np.arcsin(np.clip(z / 2.0, 0.0, 1.0))
            elif self.projection == "stereographic":
                z = 2.0 * np.arctan(z / 2.0)
            for _ in range(50):
                d = self._dradius(z)
                step = (self.radius(z) - r) / np.where(np.abs(d) > 1e-9, d, 1e-9)
                z = np.clip(z - step, 0.0, z_turn)
                if np.nanmax(np.abs(step), initial=0.0) < 1e-13:
                    break
        return z

    @property
    def horizon_radius(self) -> float:
        """Radius in pixels of zenith angle 90 deg from the optical axis."""
        return float(self.radius(np.pi / 2))

    def altaz_to_pixel(self, alt_deg, az_deg):
        """Pixel position of horizontal coordinates.

        Parameters
        ----------
        alt_deg, az_deg : float or array_like
            Altitude and azimuth (from north through east) in degrees.

        Returns
        -------
        x, y : float or ndarray
            0-based pixel coordinates (x = column, y = row). Directions more
            than 90 deg from the optical axis are extrapolated.
        """
        v = _enu(alt_deg, az_deg)
        e, n, a = self._axes()
        ce, cn, ca = v @ e, v @ n, v @ a
        z = np.arccos(np.clip(ca, -1.0, 1.0))
        psi = np.arctan2(ce, cn)
        r = self.radius(z)
        phi = np.radians(self.rotation) + self.parity * psi
        x = self.x0 + r * np.cos(phi)
        y = self.y0 + r * np.sin(phi)
        if np.ndim(x) == 0:
            return float(x), float(y)
        return x, y

    def pixel_to_altaz(self, x, y):
        """Horizontal coordinates of pixel positions (inverse of :meth:`altaz_to_pixel`).

        Parameters
        ----------
        x, y : float or array_like
            0-based pixel coordinates.

        Returns
        -------
        alt, az : float or ndarray
            Altitude and azimuth in degrees (azimuth in [0, 360)).
        """
        dx = np.asarray(x, dtype=float) - self.x0
        dy = np.asarray(y, dtype=float) - self.y0
        r = np.hypot(dx, dy)
        phi = np.arctan2(dy, dx)
        psi = self.parity * (phi - np.radians(self.rotation))
        z = self.zenith_angle(r)
        sz = np.sin(z)
        ce, cn, ca = sz * np.sin(psi), sz * np.cos(psi), np.cos(z)
        e, n, a = self._axes()
        v = ce[..., None] * e + cn[..., None] * n + ca[..., None] * a
        alt = np.degrees(np.arcsin(np.clip(v[..., 2], -1.0, 1.0)))
        az = np.degrees(np.arctan2(v[..., 0], v[..., 1])) % 360.0
        if np.ndim(alt) == 0:
            return float(alt), float(az)
        return alt, az

    @property
    def zenith_pixel(self) -> tuple[float, float]:
        """Pixel ``(x, y)`` of the zenith (differs from ``(x0, y0)`` by the tilt)."""
        return self.altaz_to_pixel(90.0, 0.0)

    # -- (de)serialisation --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The model as a JSON-ready dict (format in the module docstring)."""
        return {
            "model": "fisheye",
            "version": _FORMAT_VERSION,
            "x0": self.x0,
            "y0": self.y0,
            "rotation_deg": self.rotation,
            "parity": self.parity,
            "radial_px": list(self.radial),
            "tilt_deg": list(self.tilt),
            "shape": list(self.shape) if self.shape is not None else None,
            "projection": self.projection,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FisheyeModel:
        """Build a model from :meth:`to_dict` output.

        Raises
        ------
        InputError
            If the dict is not a fisheye model of a known version or lacks a key.
        """
        if not isinstance(d, dict) or d.get("model") != "fisheye":
            msg = f"not a fisheye model (expected 'model': 'fisheye'), got {d!r:.80}"
            raise InputError(msg)
        if d.get("version") != _FORMAT_VERSION:
            msg = f"unsupported fisheye model version {d.get('version')!r} (known: 1)"
            raise InputError(msg)
        try:
            return cls(
                x0=float(d["x0"]),
                y0=float(d["y0"]),
                rotation=float(d["rotation_deg"]),
                radial=tuple(d["radial_px"]),
                parity=int(d["parity"]),
                tilt=tuple(d.get("tilt_deg", (0.0, 0.0))),
                shape=tuple(d["shape"]) if d.get("shape") is not None else None,
                projection=str(d.get("projection", "equidistant")),
            )
        except (KeyError, TypeError, ValueError) as err:
            msg = f"fisheye model dict is missing or has a bad value: {err}"
            raise InputError(msg) from err

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as JSON (atomically); returns the path."""

        return write_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FisheyeModel:
        """Read a model written by :meth:`save`.

        Raises
        ------
        InputError
            If the file cannot be read or is not a fisheye model (the
            message names the file).
        """
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            msg = f"cannot read fisheye model {path}: {err}"
            raise InputError(msg) from err
        if isinstance(d, dict) and "camera" in d and "model" not in d:
            d = d["camera"]
        try:
            return cls.from_dict(d)
        except InputError as err:
            msg = f"{path}: {err}"
            raise InputError(msg) from err


def fisheye_from_similarity(
    x, y, alt_deg, az_deg, *, shape=None, projection: str = "equidistant"
) -> tuple[FisheyeModel, float]:
    """Closed-form one-term model from matched positions (both parities tried).

    For ``r = k1 g(z)`` and no tilt the model is linear in ``(x0, y0, k1 cos
    rotation, k1 sin rotation)`` given the parity; both parities are solved
    by linear least squares and the better one is returned.

    Parameters
    ----------
    x, y : array_like, shape (N,)
        Pixel positions, N >= 3.
    alt_deg, az_deg : array_like, shape (N,)
        Horizontal coordinates of the same stars, in degrees.
    shape : tuple of int, optional
        Image shape stored in the model.
    projection : str, optional
        The projection ``g`` (one of :data:`PROJECTIONS`). Default equidistant.

    Returns
    -------
    model : FisheyeModel
    rms : float
        Root-mean-square residual in pixels.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if projection not in PROJECTIONS:
        msg = f"projection must be one of {', '.join(PROJECTIONS)}, got {projection!r}"
        raise InputError(msg)
    z = projection_g(projection, np.radians(90.0 - np.asarray(alt_deg, float)))
    az = np.radians(np.asarray(az_deg, float))
    u, v = z * np.cos(az), z * np.sin(az)
    best: tuple[FisheyeModel, float] | None = None
    one, zero = np.ones_like(u), np.zeros_like(u)
    for p in (1, -1):
        # x = x0 + al*u - p*be*v ; y = y0 + be*u + p*al*v
        a = np.vstack(
            [
                np.column_stack([one, zero, u, -p * v]),
                np.column_stack([zero, one, p * v, u]),
            ]
        )
        b = np.concatenate([x, y])
        sol, *_ = np.linalg.lstsq(a, b, rcond=None)
        res = a @ sol - b
        rms = float(np.sqrt(np.mean(res[: x.size] ** 2 + res[x.size :] ** 2)))
        k1 = float(np.hypot(sol[2], sol[3]))
        if k1 <= 0:
            continue
        model = FisheyeModel(
            x0=sol[0],
            y0=sol[1],
            rotation=math.degrees(math.atan2(sol[3], sol[2])) % 360.0,
            radial=(k1,),
            parity=p,
            shape=shape,
            projection=projection,
        )
        if best is None or rms < best[1]:
            best = (model, rms)
    if best is None:
        msg = "cannot fit a fisheye model to these positions"
        raise NotEnoughStarsError(msg)
    return best


@dataclass
class FisheyeSolution:
    """Result of :func:`solve_fisheye` or :func:`~skysift.calibration.pairs.fit_fisheye_pairs`.

    Attributes
    ----------
    model : FisheyeModel
        The fitted camera model.
    matches : astropy.table.Table
        One row per identified star: ``star_index`` (row in the input
        detections, -1 for manual pairs without a detection table), ``x``,
        ``y`` (px), ``catalog_id`` (``"HIP 91262"``), ``hip``, ``ra``, ``dec``,
        ``alt``, ``az`` (deg), ``catalog_mag`` (Johnson V), ``b_v`` (mag),
        ``airmass``, ``residual_px`` (distance between the detection and the
        model position of the catalogue star), and ``flux`` when the
        detections had it.
    rms_px : float
        Root-mean-square of ``residual_px``.
    n_matched : int
        Number of rows of ``matches``.
    n_chance : float
        Matches expected by chance (null test), for the record.
    site : Site or None
    time : astropy.time.Time or None
    """

    model: FisheyeModel
    matches: Table
    rms_px: float
    n_matched: int
    n_chance: float = 0.0
    site: Site | None = None
    time: Time | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: ``{"camera": model dict, "n_matched", "rms_px", ...}``."""
        return {
            "camera": self.model.to_dict(),
            "n_matched": int(self.n_matched),
            "rms_px": float(self.rms_px),
            "n_chance": float(self.n_chance),
            "site": self.site.to_dict() if self.site is not None else None,
            "time": self.time.isot if self.time is not None else None,
        }


# ---------------------------------------------------------------------------
# matching and fitting
# ---------------------------------------------------------------------------
