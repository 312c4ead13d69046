"""End-to-end fast-mover search: frames in, ``movers.ecsv``, overlays and ADES out.

:func:`run_movers` reads the frames, detects movers in each (the mixture of
experts or the classical shape cut), searches the sequence by shift-and-stack
and by linking difference-image detections when there are enough frames,
measures each detection (position, flux, SNR, magnitude), converts positions
to RA/Dec when a WCS is known (from the FITS header, or from
:func:`skysift.calibrate` when ``calibrate=True``), and writes:

* ``movers.ecsv``: one row per detection (``frame, time, x, y, ra, dec, mag,
  snr, length, angle, score, method, tracklet``) with, per tracklet, its
  ``rate`` (px/s), ``rate_arcsec_h`` and position angle ``pa``;
* ``movers_<frame>.png``: an overlay per frame;
* ``movers.psv``: the calibrated detections in the MPC's ADES PSV format.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sep
from astropy.coordinates import SkyCoord
from astropy.table import Table, vstack
from astropy.time import Time

from skysift.calibration.pipeline import calibrate as calibrate_frame
from skysift.errors import InputError, SkysiftError
from skysift.io.frame import Frame, FrameSequence
from skysift.io.readers import read
from skysift.movers.ades import write_ades_psv
from skysift.movers.baseline import (
    NoMoversWarning,
    _background,
    _check_image,
    _extract,
    _star_trail,
    _trail_vectors,
    detect_difference,
    detect_single,
    empty_detections,
    normalise_mode,
)
from skysift.movers.plots import overlay_png
from skysift.movers.stack import link_tracklets, rates_to_sky, shift_and_stack
from skysift.outputs.files import write_table
from skysift.simulation.movers import motion_prior

__all__ = ["METHODS", "MoversResult", "run_movers"]

#: Detection methods of :func:`run_movers`.
METHODS = ("auto", "moe", "classical", "stack")


@dataclass
class MoversResult:
    """Output of :func:`run_movers`.

    Attributes
    ----------
    detections : astropy.table.Table
        One row per detection (see the module docstring).
    trajectories : astropy.table.Table
        Shift-and-stack trajectories (empty when not run).
    files : dict of str to Path
        Written files (``"ecsv"``, ``"psv"``, ``"overlays"`` list).
    config : dict
        The parameters used (saved in the ECSV metadata).
    """

    detections: Table
    trajectories: Table
    files: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def _frames(inputs: Any) -> list[Any]:

    if isinstance(inputs, np.ndarray):
        arr = np.asarray(inputs, dtype=np.float32)
        if arr.ndim == 2:
            return [Frame(arr)]
        if arr.ndim == 3:
            return [Frame(a) for a in arr]
        msg = f"an array input must be (H, W) or (T, H, W), got shape {arr.shape}"
        raise InputError(msg)
    items = inputs if isinstance(inputs, list | tuple) else [inputs]
    if not items:
        msg = "inputs is empty: give at least one file, frame or image"
        raise InputError(msg)
    out: list[Any] = []
    for it in items:
        if isinstance(it, Frame):
            out.append(it)
        elif isinstance(it, FrameSequence):
            out.extend(it.frames)
        elif isinstance(it, np.ndarray):
            out.extend(_frames(it))
        else:
            got = read(it)
            out.extend(got.frames if isinstance(got, FrameSequence) else [got])
    shapes = {f.data.shape for f in out}
    if len(shapes) > 1:
        msg = f"all frames must have one shape, got {sorted(shapes)}"
        raise InputError(msg)
    return out


def _wcs_of(frame: Any, calibrate: bool, pixel_scale: float | None = None) -> Any:
    """The frame's celestial WCS: from its file, else (``calibrate``) from a plate solve."""
    wcs = frame.meta.get("wcs") if isinstance(frame.meta, dict) else None
    if wcs is not None or not calibrate:
        return wcs
    # the field width from the pixel scale is the plate solver's hint (tetra3rs' FOV range)
    fov = None if pixel_scale is None else float(pixel_scale) * frame.data.shape[1] / 3600.0
    try:
        res = calibrate_frame(frame, mode="narrow", fov_deg=fov)
    except SkysiftError as err:
        warnings.warn(f"plate solve failed for {frame.name}: {err}", UserWarning, stacklevel=3)
        return None
    return getattr(res.solution, "wcs", None)


def _measure(image: np.ndarray, det: Table, fwhm: float) -> Table:
    """Aperture flux and SNR of each detection along its trail (background from sep)."""

    data = np.ascontiguousarray(image, dtype=np.float32)
    bkg = sep.Background(data, bw=64, bh=64)
    sub = data - bkg.back()
    rms = bkg.globalrms
    h, w = data.shape
    yy, xx = np.mgrid[:h, :w]
    r = 1.5 * fwhm
    for row in det:
        x1, y1, x2, y2 = row["x1"], row["y1"], row["x2"], row["y2"]
        lo_x, hi_x = int(max(0, min(x1, x2) - r - 1)), int(min(w, max(x1, x2) + r + 2))
        lo_y, hi_y = int(max(0, min(y1, y2) - r - 1)), int(min(h, max(y1, y2) + r + 2))
        px, py = xx[lo_y:hi_y, lo_x:hi_x], yy[lo_y:hi_y, lo_x:hi_x]
        dx, dy = x2 - x1, y2 - y1
        ll = dx * dx + dy * dy
        t = np.clip(((px - x1) * dx + (py - y1) * dy) / ll, 0, 1) if ll > 0 else 0.0
        d = np.hypot(px - (x1 + t * dx), py - (y1 + t * dy))
        m = d <= r
        flux = float(sub[lo_y:hi_y, lo_x:hi_x][m].sum())
        row["flux"] = flux
        row["snr"] = flux / (rms * np.sqrt(max(int(m.sum()), 1)))
    return det


def _saturation(data: np.ndarray) -> float | None:
    """The frame's maximum if it is an ADC ceiling (2**n - 1), else None."""
    top = float(np.nanmax(data))
    return top if any(abs(top - (2**n - 1)) < 0.5 for n in (8, 10, 12, 14, 16)) else None


def _touches(data: np.ndarray, det: Table, sat: float, fwhm: float) -> np.ndarray:
    """Whether any pixel within 1.5 FWHM of each detection's trail reaches ``sat``."""
    h, w = data.shape
    r = int(np.ceil(1.5 * fwhm)) + 1
    out = np.zeros(len(det), bool)
    for i, row in enumerate(det):
        x0 = int(max(0, min(row["x1"], row["x2"]) - r))
        x1 = int(min(w, max(row["x1"], row["x2"]) + r + 1))
        y0 = int(max(0, min(row["y1"], row["y2"]) - r))
        y1 = int(min(h, max(row["y1"], row["y2"]) + r + 1))
        out[i] = bool((data[y0:y1, x0:x1] >= sat).any())
    return out


def _moe_detect(model: Any, image: np.ndarray, mode: str, fwhm: float, star_trail, frame: int,
                threshold: float) -> Table:  # fmt: skip
    """Run the mixture of experts on one frame with a prior from the given or measured star trail."""

    if star_trail is None:
        # measured in every mode: sidereal frames with imperfect tracking have short star trails
        st = _measured_star_trail(image)
    else:
        st = star_trail
    prior = motion_prior(float(fwhm), (float(st[0]), float(st[1])), 1.0)
    boxes = model.predict(image, prior, threshold=threshold)
    t = empty_detections()
    r = max(float(fwhm), 2.0)
    for x1, y1, x2, y2, s in boxes:
        # the trail runs along the box diagonal of the larger extent, inside the FWHM margin
        bx1, by1, bx2, by2 = x1 + r, y1 + r, x2 - r, y2 - r
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        length, angle = _diag(image, bx1, by1, bx2, by2)
        tt = np.radians(angle)
        hx, hy = 0.5 * length * np.cos(tt), 0.5 * length * np.sin(tt)
        t.add_row({
            "frame": frame, "x": cx, "y": cy, "x1": cx - hx, "y1": cy - hy, "x2": cx + hx,
            "y2": cy + hy, "flux": 0.0, "snr": 0.0, "length": length, "angle": angle, "score": s,
        })  # fmt: skip
    return t


def _diag(image: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> tuple[float, float]:
    """Trail length and angle inside a box: which diagonal holds more flux."""
    w, h = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
    length = float(np.hypot(w, h))
    if length < 1:
        return 0.0, 0.0
    img = np.asarray(image, dtype=float)
    n = max(int(length), 2)
    s = np.linspace(0, 1, n)

    def line_sum(xa, ya, xb, yb):
        xs = np.clip(np.rint(xa + s * (xb - xa)).astype(int), 0, img.shape[1] - 1)
        ys = np.clip(np.rint(ya + s * (yb - ya)).astype(int), 0, img.shape[0] - 1)
        return img[ys, xs].sum()

    main = line_sum(x1, y1, x2, y2)
    anti = line_sum(x1, y2, x2, y1)
    ang = np.degrees(np.arctan2(h, w)) if main >= anti else np.degrees(np.arctan2(-h, w))
    return length, float(ang % 180.0)


def _measured_star_trail(image: np.ndarray) -> tuple[float, float]:
    """Median trail vector of the bright sources (points give ~0), pixels."""

    data = _check_image(image)
    sub, rms, grms = _background(data, None, 64)
    objs = _extract(sub, rms, 10.0, None, 5)
    if len(objs) < 5:
        return (0.0, 0.0)
    length, angle = _trail_vectors(objs["a"], objs["b"], objs["theta"])
    snr = objs["flux"] / (grms * np.sqrt(np.maximum(objs["npix"], 1)))
    v = _star_trail(None, "intersection", length, angle, snr)
    return float(v[0]), float(v[1])


def run_movers(
    inputs: Any,
    out_dir: str | Path | None = None,
    *,
    mode: str = "sidereal",
    pixel_scale: float | None = None,
    psf_fwhm: float | None = None,
    rate_range: tuple[float, float] | None = None,
    n_rates: int = 26,
    n_angles: int = 72,
    method: str = "auto",
    star_trail: tuple[float, float] | None = None,
    threshold: float = 5.0,
    moe_threshold: float = 0.5,
    calibrate: bool = False,
    cadence_s: float | None = None,
    stn: str = "500",
    ast_cat: str | None = None,
    saturation: float | None = None,
    overlays: bool = True,
    weights: str | Path = "mover_moe",
) -> MoversResult:
    """Find fast movers in one or more frames and write the standard outputs.

    Parameters
    ----------
    inputs : path, Frame, ndarray or list of them
        Files (read with :func:`skysift.read`), frames, an image (H, W) or a
        sequence (T, H, W). All frames must share one shape; sequences are
        assumed registered (same sky at the same pixels).
    out_dir : str or Path, optional
        Output folder; nothing is written when None.
    mode : {"sidereal", "target", "staring"}, optional
        Observing mode (also "tracking", "intersection"). Default "sidereal".
    pixel_scale : float, optional
        Arcseconds per pixel (for rates in ″/h without a WCS).
    psf_fwhm : float, optional
        PSF FWHM in pixels. Default 2.5.
    rate_range : (float, float), optional
        Shift-and-stack rates, pixels per frame (per ``cadence_s``). Default (0, 5).
    n_rates, n_angles : int, optional
        Shift-and-stack velocity grid. Defaults 26 × 72.
    method : {"auto", "moe", "classical", "stack"}, optional
        Per-frame detector and sequence search. ``"auto"``: the mixture of
        experts per frame (classical when no weights are installed), plus
        shift-and-stack and difference-image tracklets with ≥ 5 frames;
        ``"classical"``: the same with the classical per-frame detector;
        ``"moe"``: the mixture per frame only (unregistered frames);
        ``"stack"``: shift-and-stack only (≥ 3 registered frames). With ≥ 3
        frames, per-frame detections found at one place in half the frames
        are dropped as static (not in target-tracking mode).
    star_trail : (float, float), optional
        Star trail vector over one exposure, pixels, for the MoE prior
        (default: measured from the frame's bright sources in every mode;
        the classical detector assumes points in sidereal mode).
    threshold : float, optional
        Classical and stacking SNR threshold. Default 5 (stack: max(threshold, 7)).
    moe_threshold : float, optional
        Score threshold of the mixture of experts. Default 0.5.
    calibrate : bool, optional
        Plate-solve frames without a WCS with :func:`skysift.calibrate`. Default False.
    cadence_s : float, optional
        Seconds per frame, the unit of ``rate_range``: default the median
        interval of the frames' times, or 1 s when they carry none. Detections
        keep their frames' own times.
    stn : str, optional
        MPC observatory code for the ADES file. Default "500" (geocentre: replace it).
    ast_cat : str, optional
        ADES ``astCat`` of the astrometry: default "Gaia3" with
        ``calibrate=True`` (skysift's solver uses Gaia), else "UNK" (a WCS
        read from the file, reference catalogue unknown).
    saturation : float, optional
        Pixel value at which the detector saturates; per-frame detections
        touching it are dropped. Default: the frame's maximum when it is an
        ADC ceiling (2ⁿ − 1 for n = 8, 10, 12, 14, 16), else none.
    overlays : bool, optional
        Write one overlay PNG per frame. Default True.
    weights : str or Path, optional
        Mixture-of-experts weights (name or path). Default "mover_moe".

    Returns
    -------
    MoversResult

    Raises
    ------
    InputError
        For an unknown mode or method, no input, frames of different shapes,
        or ``method="stack"`` with fewer than 3 frames.
    """
    mode = normalise_mode(mode)
    if method not in METHODS:
        msg = f"method must be one of {list(METHODS)}, got {method!r}"
        raise InputError(msg)
    frames = _frames(inputs)
    n = len(frames)
    if method == "stack" and n < 3:
        msg = f"method 'stack' needs at least 3 frames, got {n}"
        raise InputError(msg)
    fwhm = 2.5 if psf_fwhm is None else float(psf_fwhm)
    cadence = 1.0 if cadence_s is None else float(cadence_s)
    times = [f.mid_time for f in frames]
    have_times = all(t is not None for t in times)
    tsec = np.array([(t - times[0]).sec for t in times]) if have_times else np.arange(n) * cadence
    if have_times and cadence_s is None and n > 1:
        # rates are per frame: the frame unit is the median interval of the frames' own times
        step = float(np.median(np.diff(tsec)))
        cadence = step if step > 0 else 1.0
    wcs = [_wcs_of(f, calibrate, pixel_scale) for f in frames]
    per_frame = method in ("moe", "classical") or (method == "auto")
    model = None
    used = method
    if method in ("auto", "moe"):
        try:
            # the mixture of experts needs torch (the learn extra): imported on use
            from skysift.movers.weights_io import load_moe

            model = load_moe(weights)
            used = "moe"
        except (InputError, ImportError) as err:
            if method == "moe":
                if isinstance(err, ImportError):
                    msg = (
                        f"method 'moe' needs the learn extra (pip install 'skysift[learn]'): {err}"
                    )
                    raise InputError(msg) from err
                raise
            used = "classical"
    tables = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoMoversWarning)
        if per_frame:
            for k, f in enumerate(frames):
                if model is not None:
                    t = _moe_detect(model, f.data, mode, fwhm, star_trail, k, moe_threshold)
                else:
                    t = detect_single(f.data, mode=mode, psf_fwhm=fwhm, star_trail=star_trail,
                                      threshold=threshold, mask=f.mask, frame=k, warn=False)  # fmt: skip
                t = _measure(f.data, t, fwhm)
                sat = _saturation(f.data) if saturation is None else float(saturation)
                if sat is not None and len(t):
                    # a saturated star is flat-topped and unlike any PSF: not a mover
                    t = t[~_touches(f.data, t, sat, fwhm)]
                t["method"] = np.array([used] * len(t), dtype="U12")
                t["tracklet"] = np.full(len(t), -1)
                tables.append(t)
            if n >= 3 and mode != "tracking" and tables:
                # in a registered sequence a mover is not at one pixel in most frames (except
                # in target-tracking mode, where the target is the static point)
                tables = _drop_static(tables, n, fwhm)
        traj = Table()
        if (n >= 5 and method in ("auto", "classical")) or method == "stack":
            cube = np.stack([f.data for f in frames])
            traj = shift_and_stack(
                cube, times=tsec / cadence, rate_range=rate_range or (0.0, 5.0),
                n_rates=n_rates, n_angles=n_angles,
                psf_fwhm=fwhm, threshold=max(threshold, 7.0), pixel_scale=pixel_scale,
                wcs=wcs[0], time_unit_s=cadence, warn=False,
            )  # fmt: skip
            tables.append(_trajectory_rows(traj, tsec / cadence, fwhm, frames))
            if method != "stack":
                diff = detect_difference(cube, threshold=threshold, warn=False)
                linked = link_tracklets(diff, times=tsec / cadence, max_rate=20.0)
                linked = linked[linked["tracklet"] >= 0]
                linked["tracklet"] = linked["tracklet"] + 1000  # keep apart from stack ids
                linked["method"] = np.array(["difference"] * len(linked), dtype="U12")
                tables.append(linked)
    det = _assemble(tables, frames, times, wcs, tsec, pixel_scale)
    config = {
        "mode": mode, "method": method, "method_used": used, "pixel_scale": pixel_scale,
        "psf_fwhm": fwhm, "rate_range": list(rate_range) if rate_range else None,
        "n_rates": n_rates, "n_angles": n_angles,
        "ast_cat": ast_cat or ("Gaia3" if calibrate else "UNK"), "saturation": saturation,
        "threshold": threshold, "moe_threshold": moe_threshold, "n_frames": n, "stn": stn,
    }  # fmt: skip
    det.meta["skysift_movers"] = config
    result = MoversResult(det, traj, {}, config)
    if out_dir is not None:
        _write(result, frames, Path(out_dir), overlays, stn, config["ast_cat"])
    return result


def _drop_static(tables: list[Table], n: int, fwhm: float) -> list[Table]:
    """Per-frame detections minus the static ones of a registered sequence.

    Static: a nearest detection within ``r = max(2 FWHM, 3)`` px in at least
    ``max(2, (n - 1) / 2)`` other frames, all within ``max(FWHM / 2, 1)`` px of
    their median position (a star or defect; a mover's matches drift along its
    track: movers slower than ~FWHM / (n / 2) px per frame look static).
    """
    xy = [np.column_stack([np.asarray(t["x"], float), np.asarray(t["y"], float)]) for t in tables]
    r, tol = max(2.0 * fwhm, 3.0), max(0.5 * fwhm, 1.0)
    need = max(2, int(np.ceil((n - 1) / 2)))
    out = []
    for i, t in enumerate(tables):
        static = np.zeros(len(t), bool)
        for a in range(len(t)):
            pts = [xy[i][a]]
            for j, other in enumerate(xy):
                if j != i and len(other):
                    d = np.hypot(other[:, 0] - xy[i][a, 0], other[:, 1] - xy[i][a, 1])
                    if d.min() <= r:
                        pts.append(other[np.argmin(d)])
            if len(pts) - 1 >= need:
                p = np.array(pts)
                static[a] = np.hypot(*(p - np.median(p, axis=0)).T).max() <= tol
        out.append(t[~static])
    return out


def _trajectory_rows(traj: Table, t: np.ndarray, fwhm: float, frames: list[Any]) -> Table:
    """Per-frame detections along each shift-and-stack trajectory."""
    out = empty_detections()
    ids = []
    for i, r in enumerate(traj):
        for k in range(len(frames)):
            x, y = r["x0"] + r["vx"] * t[k], r["y0"] + r["vy"] * t[k]
            out.add_row({
                "frame": k, "x": x, "y": y, "x1": x, "y1": y, "x2": x, "y2": y,
                "flux": r["flux"], "snr": r["snr"], "length": 0.0, "angle": 0.0,
                "score": r["snr"] / (r["snr"] + 7.0),
            })  # fmt: skip
            ids.append(i)
    out["method"] = np.array(["stack"] * len(out), dtype="U12")
    out["tracklet"] = np.array(ids, dtype=int)
    return out


def _assemble(tables, frames, times, wcs, tsec, pixel_scale) -> Table:
    tables = [t for t in tables if len(t)]
    if not tables:
        det = empty_detections()
        det["method"] = np.zeros(0, dtype="U12")
        det["tracklet"] = np.zeros(0, dtype=int)
    else:
        keep = [c for c in tables[0].colnames if all(c in t.colnames for t in tables)]
        det = vstack([t[keep] for t in tables], metadata_conflicts="silent")
    n = len(det)
    det["time"] = [
        times[int(k)].utc.isot if times[int(k)] is not None else "" for k in det["frame"]
    ] if n else np.zeros(0, dtype="U23")  # fmt: skip
    ra, dec = np.full(n, np.nan), np.full(n, np.nan)
    for i, r in enumerate(det):
        w = wcs[int(r["frame"])]
        if w is not None:
            s = w.pixel_to_world(r["x"], r["y"])
            ra[i], dec[i] = s.ra.deg, s.dec.deg
    det["ra"], det["dec"] = ra, dec
    det["ra"].unit = det["dec"].unit = "deg"
    flux = np.asarray(det["flux"], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        det["mag"] = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)
    det["mag"].description = "instrumental magnitude -2.5 log10(flux)"
    # per tracklet: rate (px/s), rate in arcsec/h and position angle from a line fit
    rate = np.full(n, np.nan)
    rate_as = np.full(n, np.nan)
    pa = np.full(n, np.nan)

    tr = np.asarray(det["tracklet"], int)
    for k in np.unique(tr[tr >= 0]):
        m = tr == k
        fr = np.asarray(det["frame"][m], int)
        if len(np.unique(fr)) < 2:
            continue
        tt = tsec[fr]
        vx = np.polyfit(tt, det["x"][m], 1)[0]
        vy = np.polyfit(tt, det["y"][m], 1)[0]
        r_as, p = rates_to_sky(np.array([vx]), np.array([vy]), pixel_scale=pixel_scale)
        rate[m], rate_as[m], pa[m] = np.hypot(vx, vy), r_as[0], p[0]
        if np.isfinite(ra[m]).sum() >= 2:
            i0, i1 = np.argmin(tt), np.argmax(tt)
            s = SkyCoord(ra[m], dec[m], unit="deg")
            dt_h = (tt[i1] - tt[i0]) / 3600.0
            if dt_h > 0:
                rate_as[m] = s[i0].separation(s[i1]).arcsec / dt_h
                pa[m] = s[i0].position_angle(s[i1]).deg
    det["rate"], det["rate_arcsec_h"], det["pa"] = rate, rate_as, pa
    det["rate"].unit = "pix / s"
    det["rate_arcsec_h"].unit = "arcsec / h"
    det["pa"].unit = "deg"
    order = ["frame", "time", "x", "y", "ra", "dec", "mag", "snr", "length", "angle", "score",
             "method", "tracklet", "rate", "rate_arcsec_h", "pa"]  # fmt: skip
    return det[order + [c for c in det.colnames if c not in order]]


def _write(
    result: MoversResult, frames: list[Any], out: Path, overlays: bool, stn: str, ast_cat: str
) -> None:

    out.mkdir(parents=True, exist_ok=True)
    det = result.detections
    result.files["ecsv"] = write_table(det, out / "movers.ecsv")
    if overlays:
        pngs = []
        for k, f in enumerate(frames):
            rows = det[det["frame"] == k]
            pngs.append(overlay_png(f.data, rows, out / f"movers_{k:04d}.png",
                                    title=f"{f.name}: {len(rows)} mover detection(s)"))  # fmt: skip
        result.files["overlays"] = pngs
    ok = np.isfinite(np.asarray(det["ra"], float)) & (np.asarray(det["time"]) != "")
    obs = det[ok]
    if len(obs):
        tab = Table()
        tab["trkSub"] = [
            f"sk{int(t):06d}" if t >= 0 else f"skf{i:05d}" for i, t in enumerate(obs["tracklet"])
        ]
        tab["time"] = Time(list(obs["time"]), scale="utc")
        tab["ra"], tab["dec"] = obs["ra"], obs["dec"]
        result.files["psv"] = write_ades_psv(tab, out / "movers.psv", stn=stn, ast_cat=ast_cat)
    else:
        warnings.warn(
            "no calibrated, timed detection: movers.psv (ADES) not written; give frames with a "
            "WCS and time, or calibrate=True",
            UserWarning,
            stacklevel=3,
        )
