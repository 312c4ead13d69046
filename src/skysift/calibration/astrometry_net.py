"""Blind plate solving with astrometry.net's ``solve-field``, when it is installed.

A second backend for :func:`skysift.calibration.platesolve.solve_plate`, for
fields too narrow for the bundled G < 10 catalogue. It runs the local
``solve-field`` program (Debian: ``apt-get install astrometry.net`` plus index
files such as ``astrometry-data-tycho2-07-littleendian``; see
:func:`is_available`) on a list of detected stars, offline, in a temporary
folder, and turns its WCS and correspondence files into a
:class:`~skysift.calibration.platesolve.PlateSolution`.

The Tycho-2 index files shipped by Debian hold stars to V ~ 12 and quads from
22 arcmin (index 4107) up, so they solve fields from about 0.5 deg wide that
contain several Tycho-2 stars; narrower or sparser fields need the 2MASS or
Gaia index files (``index-52xx``) from astrometry.net, installed by hand.

References
----------
.. [1] Lang, D., Hogg, D. W., Mierle, K., Blanton, M. & Roweis, S. 2010,
   AJ 139, 1782, "Astrometry.net: blind astrometric calibration of arbitrary
   astronomical images".
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.units import UnitsWarning
from astropy.wcs import WCS, FITSFixedWarning
from scipy.spatial import cKDTree

from skysift.calibration.plate import PlateSolution, _check_shape, _clean_stars, _empty_matches
from skysift.calibration.wcsfit import _fit_wcs, _fov_of, _project, _rms, auto_sip_degree
from skysift.errors import CalibrationError, InputError, NotEnoughStarsError

__all__ = ["is_available", "solve_field", "find_solve_field"]

_MIN_MATCHES = 4


def find_solve_field(executable: str | os.PathLike[str] | None = None) -> str | None:
    """Return the path of ``solve-field`` (``executable``, else found on ``PATH``) or None."""
    if executable is not None:
        p = Path(executable)
        return str(p) if p.is_file() and os.access(p, os.X_OK) else shutil.which(str(executable))
    return shutil.which("solve-field")


def is_available(executable: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``solve-field`` can be run (index files are not checked)."""
    return find_solve_field(executable) is not None


def solve_field(
    stars: Table,
    shape: tuple[int, int],
    *,
    fov_deg: float | None = None,
    fov_range: tuple[float, float] | None = None,
    center: SkyCoord | None = None,
    radius_deg: float | None = None,
    sip_degree: int | None = 2,
    timeout_s: float = 60.0,
    max_stars: int = 300,
    executable: str | os.PathLike[str] | None = None,
) -> PlateSolution:
    """Solve an image from its detected stars with astrometry.net's ``solve-field``.

    Parameters
    ----------
    stars : astropy.table.Table
        Detections with columns ``x``, ``y`` (0-based pixels; written 1-based
        to the xy list) and ``flux`` (brightest are tried first).
    shape : (int, int)
        Image shape ``(height, width)`` in pixels.
    fov_deg : float, optional
        Approximate horizontal field of view (image width), in degrees; the
        scale is searched within a factor 1.25 of it.
    fov_range : (float, float), optional
        Range of the image width, in degrees, when ``fov_deg`` is None.
        Default: no scale hint (slower).
    center : astropy.coordinates.SkyCoord, optional
        Approximate field centre; searched within ``radius_deg``.
    radius_deg : float, optional
        Search radius around ``center`` in degrees. Default 5.
    sip_degree : int or None, optional
        SIP degree of the fit (``--tweak-order``), lowered when few stars
        match; 0 or None: TAN. Default 2.
    timeout_s : float, optional
        CPU time limit given to ``solve-field`` (``--cpulimit``), in seconds;
        solve-field checks it only between batches of stars, so the process
        group is killed when its wall time exceeds 1.5 times that plus 5 s.
        Default 60.
    max_stars : int, optional
        Brightest detections written to the xy list. Default 300.
    executable : path-like, optional
        ``solve-field`` to run; default the one on ``PATH``.

    Returns
    -------
    PlateSolution
        ``backend="astrometry.net"``; ``matches`` are the correspondences
        astrometry.net reports (``catalog_id`` ``"<index> star <n>"``,
        ``catalog_mag`` the index's tag-along magnitude when it has one).

    Raises
    ------
    InputError
        For a bad table or shape, or when ``solve-field`` is not installed.
    NotEnoughStarsError
        With fewer than 4 usable stars.
    CalibrationError
        If ``solve-field`` fails, times out or finds no solution.
    """
    exe = find_solve_field(executable)
    if exe is None:
        msg = (
            "astrometry.net's solve-field is not installed (Debian: apt-get install "
            "astrometry.net astrometry-data-tycho2-07-littleendian)"
        )
        raise InputError(msg)
    h, w = _check_shape(shape)
    xy, flux, index = _clean_stars(stars)
    if len(xy) < 4:
        msg = f"plate solving needs at least 4 stars with finite x, y, flux; got {len(xy)}"
        raise NotEnoughStarsError(msg)
    xy, flux, index = xy[:max_stars], flux[:max_stars], index[:max_stars]
    degree = auto_sip_degree(len(xy), sip_degree)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skysift-anet-") as tmpdir:
        tmp = Path(tmpdir)
        xyls = tmp / "field.xyls"
        Table({"X": xy[:, 0] + 1.0, "Y": xy[:, 1] + 1.0, "FLUX": flux}).write(xyls, format="fits")
        cmd = [
            exe,
            str(xyls),
            "--width",
            str(w),
            "--height",
            str(h),
            "--x-column",
            "X",
            "--y-column",
            "Y",
            "--sort-column",
            "FLUX",
            "--no-plots",
            "--overwrite",
            "--dir",
            str(tmp),
            "--temp-dir",
            str(tmp),
            "--cpulimit",
            str(int(math.ceil(timeout_s))),
            "--new-fits",
            "none",
            "--rdls",
            "none",
            "--match",
            "none",
            "--index-xyls",
            "none",
            "--crpix-center",
        ]
        cmd += ["--tweak-order", str(degree)] if degree else ["--no-tweak"]
        if fov_deg is not None:
            fov_range = (float(fov_deg) / 1.25, float(fov_deg) * 1.25)
        if fov_range is not None:
            lo, hi = (float(v) for v in fov_range)
            if not 0 < lo <= hi:
                msg = f"fov_range must satisfy 0 < lo <= hi degrees, got {fov_range!r}"
                raise InputError(msg)
            cmd += [
                "--scale-units",
                "degwidth",
                "--scale-low",
                f"{lo:.6g}",
                "--scale-high",
                f"{hi:.6g}",
            ]
        if center is not None:
            c = center.icrs
            cmd += [
                "--ra",
                f"{c.ra.deg:.6f}",
                "--dec",
                f"{c.dec.deg:.6f}",
                "--radius",
                f"{float(radius_deg or 5.0):.4g}",
            ]
        wall_s = 1.5 * float(timeout_s) + 5  # solve-field overruns --cpulimit
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=wall_s)
        except subprocess.TimeoutExpired as exc:
            # solve-field runs astrometry-engine as a child: end the whole group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            msg = f"solve-field did not finish within {wall_s:.0f} s (wall time)"
            raise CalibrationError(msg) from exc
        wcs_path, corr_path = tmp / "field.wcs", tmp / "field.corr"
        if proc.returncode != 0 or not wcs_path.exists():
            tail = " | ".join(out.strip().splitlines()[-3:])
            msg = (
                f"astrometry.net found no solution for {len(xy)} stars "
                f"(exit {proc.returncode}): {tail}"
            )
            raise CalibrationError(msg)
        hdr = fits.getheader(wcs_path)
        with warnings.catch_warnings():  # astrometry.net writes non-FITS units ("pixels")
            warnings.simplefilter("ignore", UnitsWarning)
            corr = Table.read(corr_path) if corr_path.exists() else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(hdr, relax=True)
    wcs.pixel_shape = (w, h)
    matches = _corr_to_matches(corr, xy, index, hdr)
    if len(matches) >= _MIN_MATCHES:  # refit with skysift's fitter: same SIP + inverse as tetra3rs
        mxy = np.column_stack([matches["x"], matches["y"]])
        radec = np.column_stack([matches["ra"], matches["dec"]])
        deg = auto_sip_degree(len(matches), sip_degree)
        wcs = _fit_wcs(mxy, radec, (h, w), deg)
        matches.meta["sip_degree"] = deg
    if len(matches):
        res = np.hypot(
            *(
                _project(wcs, matches["ra"], matches["dec"])
                - np.column_stack([matches["x"], matches["y"]])
            ).T
        )
        matches["residual_px"] = res
    return PlateSolution(
        wcs=wcs,
        matches=matches,
        rms_px=_rms(np.asarray(matches["residual_px"])),
        n_matched=len(matches),
        fov_deg=_fov_of(wcs, (h, w)),
        backend="astrometry.net",
        shape=(h, w),
        solve_time_s=time.perf_counter() - t0,
        meta={
            "index": _index_name(hdr),
            "sip_degree": int(matches.meta.get("sip_degree", degree)),
            "command": " ".join(cmd[1:]),
        },
    )


def _index_name(hdr: fits.Header) -> str:
    """``"index-4108"`` from the ``index id:`` comment solve-field writes, when present."""
    for card in hdr.get("COMMENT", []):
        text = str(card).strip()
        if text.lower().startswith("index id:"):
            return "index-" + text.split(":", 1)[1].strip()
    return "astrometry.net index"


def _corr_to_matches(
    corr: Table | None, xy: np.ndarray, index: np.ndarray, hdr: fits.Header
) -> Table:
    out = _empty_matches()
    out.meta["catalog_mag_band"] = (
        "astrometry.net index tag-along magnitude (Tycho-2 VT for Debian's tycho2 indexes)"
    )
    if corr is None or len(corr) == 0:
        return out
    fx = np.asarray(corr["field_x"], float) - 1.0  # 1-based in the xy list
    fy = np.asarray(corr["field_y"], float) - 1.0
    d, k = cKDTree(xy).query(np.column_stack([fx, fy]))
    ok = d < 0.01
    mag_col = next((c for c in corr.colnames if c.upper().startswith("MAG")), None)
    ids = np.asarray(corr["index_id"]) if "index_id" in corr.colnames else np.arange(len(corr))
    t = Table(
        {
            "star_index": index[k[ok]].astype(np.int64),
            "x": xy[k[ok], 0],
            "y": xy[k[ok], 1],
            "catalog_id": [f"{_index_name(hdr)} star {int(i)}" for i in ids[ok]],
            "ra": np.asarray(corr["index_ra"], float)[ok],
            "dec": np.asarray(corr["index_dec"], float)[ok],
            "catalog_mag": (
                np.asarray(corr[mag_col], float)[ok] if mag_col else np.full(int(ok.sum()), np.nan)
            ),
            "residual_px": np.zeros(int(ok.sum())),
        }
    )
    for name in out.colnames:
        t[name].unit = out[name].unit
    t.meta.update(out.meta)
    return t
