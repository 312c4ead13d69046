"""Bolide trajectory, head tracking and per-frame head photometry (bolide report §7.1-7.2).

* :func:`fit_trajectory`: the bolide's straight path in the image, fitted by
  total least squares to the per-frame mask centroids, with the direction of
  motion from the time order; :func:`fit_great_circle`: on a calibrated
  camera, the great circle of the sky the bolide moves on (curved in a
  fisheye image).
* :func:`track_head`: the head is the leading point of the mask along the
  path; tracking stops when the head stops advancing (the wake and the
  persistent train stay behind it, report §7.2).
* :func:`head_photometry`: in each head frame, the sum of the background-
  subtracted light in an aperture that follows the mask along the path, from
  the previous frame's leading point to this one's (the head's smear in this
  exposure) and as wide as the mask; it stays right for elongated and
  saturated heads, where a Gaussian fit does not. The report's 2-D Gaussian
  fit of the head (§7.1) is given beside it.

Pixel coordinates are 0-based, (0, 0) the centre of the first pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import Table

from skysift.errors import InputError
from skysift.measurement.photometry import gaussian_photometry

__all__ = [
    "GreatCircleTrajectory",
    "LOSSY_8BIT_MARGIN",
    "Trajectory",
    "clip_saturation",
    "empty_photometry",
    "fit_great_circle",
    "fit_trajectory",
    "head_photometry",
    "saturation_margin",
    "track_head",
]


@dataclass(frozen=True)
class Trajectory:
    """A straight path in the image: a point and the unit direction of motion.

    Attributes
    ----------
    x0, y0 : float
        A point on the path (pixels).
    ux, uy : float
        Unit vector along the motion.
    rms_px : float
        RMS perpendicular distance of the fitted centroids from the line (px).
    """

    x0: float
    y0: float
    ux: float
    uy: float
    rms_px: float = 0.0

    def project(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """``(s, d)``: distance along the path and signed perpendicular offset (px)."""
        dx = np.asarray(x, float) - self.x0
        dy = np.asarray(y, float) - self.y0
        return dx * self.ux + dy * self.uy, -dx * self.uy + dy * self.ux

    def point(self, s) -> tuple[np.ndarray, np.ndarray]:
        """Pixel ``(x, y)`` at distance ``s`` along the path."""
        s = np.asarray(s, float)
        return self.x0 + s * self.ux, self.y0 + s * self.uy

    @property
    def angle_deg(self) -> float:
        """Direction of motion, degrees counter-clockwise from +x (image y down)."""
        return float(np.degrees(np.arctan2(self.uy, self.ux)) % 360.0)


def _enu(alt, az) -> np.ndarray:
    """Unit vectors (east, north, up) of horizontal coordinates in degrees, shape (..., 3)."""
    alt, az = np.radians(np.asarray(alt, float)), np.radians(np.asarray(az, float))
    return np.stack([np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt)], axis=-1)


@dataclass(frozen=True)
class GreatCircleTrajectory:
    """A bolide's path as a great circle of the sky, seen through a calibrated camera.

    A meteor moves on a straight line in space, which the camera sees on a
    great circle of the sky (a curve in a fisheye image). Distances are
    measured on the sky and expressed in pixels through the camera's local
    scale at the path's reference point, so that :func:`track_head` and
    :func:`head_photometry` use it exactly like a straight
    :class:`Trajectory`.

    Attributes
    ----------
    camera : SkyCamera
        Pixel <-> (alt, az).
    pole : ndarray, shape (3,)
        Unit normal of the great circle's plane (east, north, up), oriented so
        that the motion is counter-clockwise about it.
    ref : ndarray, shape (3,)
        Unit vector of the reference point (``s = 0``) on the circle.
    px_per_deg : float
        Camera scale at the reference point, pixels per degree.
    rms_px : float
        RMS distance of the fitted centroids from the circle, px.
    """

    camera: Any
    pole: np.ndarray
    ref: np.ndarray
    px_per_deg: float
    rms_px: float = 0.0

    def _vectors(self, x, y) -> np.ndarray:
        alt, az = self.camera.pixel_to_altaz(np.asarray(x, float), np.asarray(y, float))
        return _enu(alt, az)

    def project(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """``(s, d)``: distance along the circle and signed offset from it, in pixels."""
        v = self._vectors(x, y)
        dot_pole = v @ self.pole
        d = np.degrees(np.arcsin(np.clip(dot_pole, -1, 1)))
        along = v - dot_pole[..., None] * self.pole
        s = np.degrees(np.arctan2(np.cross(self.ref, along) @ self.pole, along @ self.ref))
        return s * self.px_per_deg, d * self.px_per_deg

    def point(self, s) -> tuple[np.ndarray, np.ndarray]:
        """Pixel ``(x, y)`` at distance ``s`` (px) along the circle."""
        a = np.radians(np.asarray(s, float) / self.px_per_deg)
        b = np.cross(self.pole, self.ref)
        v = np.cos(a)[..., None] * self.ref + np.sin(a)[..., None] * b
        alt = np.degrees(np.arcsin(np.clip(v[..., 2], -1, 1)))
        az = np.degrees(np.arctan2(v[..., 0], v[..., 1])) % 360.0
        x, y = self.camera.altaz_to_pixel(alt, az)
        return np.asarray(x, float), np.asarray(y, float)

    @property
    def angle_deg(self) -> float:
        """Direction of motion in the image at the reference point, degrees from +x."""
        x0, y0 = self.point(0.0)
        x1, y1 = self.point(1.0)
        return float(np.degrees(np.arctan2(float(y1 - y0), float(x1 - x0))) % 360.0)


def fit_great_circle(
    masks: dict[int, np.ndarray],
    camera: Any,
    diffs: dict[int, np.ndarray] | None = None,
    *,
    max_offset: float = 25.0,
) -> GreatCircleTrajectory | Trajectory | None:
    """Fit the bolide's great circle to per-frame masks through a calibrated camera.

    The per-frame weighted mask centroids are mapped to unit vectors on the
    sky; the plane through the observer that best contains them is the one
    whose normal is the eigenvector of the smallest eigenvalue of
    ``sum w v v^T`` (a total-least-squares great circle). Centroids farther
    than ``max_offset`` px from it are dropped and the fit repeated. With
    fewer than three usable centroids, or centroids spread over less than
    2 px, the straight :func:`fit_trajectory` is returned instead.

    Parameters
    ----------
    masks, diffs : dict int -> ndarray (H, W)
        As :func:`fit_trajectory`.
    camera : SkyCamera
        The calibrated camera (:attr:`CalibrationResult.camera`).
    max_offset : float, optional
        Outlier cut, px. Default 25.

    Returns
    -------
    GreatCircleTrajectory, Trajectory or None
    """
    idx = sorted(i for i, m in masks.items() if m is not None and m.any())
    if not idx:
        return None
    cen = np.array([_centroid(masks[i], None if diffs is None else diffs[i]) for i in idx])
    if len(idx) < 3 or np.ptp(cen[:, 0]) + np.ptp(cen[:, 1]) < 2.0:
        return fit_trajectory(masks, diffs, max_offset=max_offset)
    v = _enu(*camera.pixel_to_altaz(cen[:, 0], cen[:, 1]))
    if not np.all(np.isfinite(v)):
        return fit_trajectory(masks, diffs, max_offset=max_offset)
    w = cen[:, 2]
    # local scale: pixels per degree at the weighted centre
    c = np.average(cen[:, :2], axis=0, weights=w)
    a0 = _enu(*camera.pixel_to_altaz(np.array([c[0], c[0] + 1.0]), np.array([c[1], c[1]])))
    px_per_deg = 1.0 / max(np.degrees(np.arccos(np.clip(a0[0] @ a0[1], -1, 1))), 1e-9)
    keep = np.ones(len(idx), bool)
    for _ in range(3):
        m = (v[keep] * w[keep, None]).T @ v[keep]
        evals, evecs = np.linalg.eigh(m)
        pole = evecs[:, 0]
        d = np.degrees(np.arcsin(np.clip(v @ pole, -1, 1))) * px_per_deg
        new = np.abs(d) <= max_offset
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    # reference: the weighted mean direction, projected on the circle
    ref = np.average(v[keep], axis=0, weights=w[keep])
    ref = ref - (ref @ pole) * pole
    ref /= np.linalg.norm(ref)
    traj = GreatCircleTrajectory(camera, pole, ref, float(px_per_deg))
    s, d = traj.project(cen[:, 0], cen[:, 1])
    if np.corrcoef(np.asarray(idx, float)[keep], s[keep])[0, 1] < 0:
        traj = GreatCircleTrajectory(camera, -pole, ref, float(px_per_deg))
    rms = float(np.sqrt(np.mean(d[keep] ** 2)))
    return GreatCircleTrajectory(traj.camera, traj.pole, ref, float(px_per_deg), rms)


def _centroid(mask: np.ndarray, weight: np.ndarray | None) -> tuple[float, float, float]:
    ys, xs = np.nonzero(mask)
    w = np.ones(xs.size) if weight is None else np.clip(weight[ys, xs], 0, None) + 1e-6
    return float(np.average(xs, weights=w)), float(np.average(ys, weights=w)), float(w.sum())


def fit_trajectory(
    masks: dict[int, np.ndarray],
    diffs: dict[int, np.ndarray] | None = None,
    *,
    max_offset: float = 25.0,
) -> Trajectory | None:
    """Fit the bolide's straight path to per-frame masks.

    A total-least-squares line is fitted to the weighted centroids of each
    frame's mask (weights: summed positive difference); frames whose centroid
    lies more than ``max_offset`` px from the line are dropped and the line
    refitted. With one frame only, the mask's principal axis is used. The
    direction is the one in which the centroids advance with the frame index.

    Parameters
    ----------
    masks : dict int -> ndarray of bool (H, W)
        Frame index -> bolide mask (frames with empty masks are ignored).
    diffs : dict int -> ndarray (H, W), optional
        Frame index -> background-subtracted frame, for the weights.
    max_offset : float, optional
        Outlier cut, px. Default 25.

    Returns
    -------
    Trajectory or None
        None when no mask has a pixel.
    """
    idx = sorted(i for i, m in masks.items() if m is not None and m.any())
    if not idx:
        return None
    cen = np.array([_centroid(masks[i], None if diffs is None else diffs[i]) for i in idx])
    single = len(idx) == 1 or np.ptp(cen[:, 0]) + np.ptp(cen[:, 1]) < 1.0
    if single:
        ys, xs = np.nonzero(masks[idx[0]])
        pts, w = np.column_stack([xs, ys]).astype(float), np.ones(xs.size)
    else:
        pts, w = cen[:, :2], cen[:, 2]
    keep = np.ones(len(pts), bool)
    for _ in range(3):
        c, u = _tls_line(pts[keep], w[keep])
        d = -(pts[:, 0] - c[0]) * u[1] + (pts[:, 1] - c[1]) * u[0]
        new = np.abs(d) <= max_offset
        if new.sum() < 2 or np.array_equal(new, keep):
            break
        keep = new
    d = -(pts[keep, 0] - c[0]) * u[1] + (pts[keep, 1] - c[1]) * u[0]
    if not single and keep.sum() > 1:
        s = (cen[keep, 0] - c[0]) * u[0] + (cen[keep, 1] - c[1]) * u[1]
        if np.corrcoef(np.asarray(idx, float)[keep], s)[0, 1] < 0:
            u = -u
    rms = float(np.sqrt(np.mean(d**2))) if d.size else 0.0
    return Trajectory(float(c[0]), float(c[1]), float(u[0]), float(u[1]), rms)


def _tls_line(pts: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted total-least-squares line: centroid and unit direction (principal axis)."""
    c = np.average(pts, axis=0, weights=w)
    if len(pts) < 2:
        return c, np.array([1.0, 0.0])
    cov = np.cov((pts - c).T, aweights=w)
    evals, evecs = np.linalg.eigh(cov)
    return c, evecs[:, int(np.argmax(evals))]


def track_head(
    masks: dict[int, np.ndarray],
    trajectory: Trajectory,
    *,
    max_offset: float = 15.0,
    min_advance: float = 0.5,
    patience: int = 2,
) -> Table:
    """Follow the head: the leading point of each frame's mask along the path.

    Parameters
    ----------
    masks : dict int -> ndarray of bool (H, W)
        Frame index -> bolide mask.
    trajectory : Trajectory
    max_offset : float, optional
        Mask pixels farther than this from the path (px) are not the bolide.
        Default 15.
    min_advance : float, optional
        The head advances when its leading point moves beyond the farthest
        one so far by more than this (px). Default 0.5.
    patience : int, optional
        Tracking stops after this many consecutive frames without advance,
        once the head has been seen (bolide report §7.2). Default 2.

    Returns
    -------
    astropy.table.Table
        One row per frame index in ``masks`` (sorted): ``frame``, ``s_lead``
        and ``s_tail`` (px along the path; NaN without mask pixels near the
        path), ``n_pixels``, ``head`` (True for frames where the head is
        tracked).
    """
    rows = []
    best = -np.inf
    stalled = 0
    started = stopped = False
    for i in sorted(masks):
        m = masks[i]
        ys, xs = np.nonzero(m) if m is not None else (np.zeros(0, int), np.zeros(0, int))
        s, d = trajectory.project(xs, ys)
        near = np.abs(d) <= max_offset
        s = s[near]
        lead = float(s.max()) if s.size else np.nan
        tail = float(s.min()) if s.size else np.nan
        head = False
        if not stopped and s.size:
            if lead > best + min_advance:
                head, best, stalled, started = True, lead, 0, True
            elif started:
                stalled += 1
                stopped = stalled >= patience
        elif started and not stopped and not s.size:
            stalled += 1
            stopped = stalled >= patience
        rows.append(
            {"frame": i, "s_lead": lead, "s_tail": tail, "n_pixels": int(s.size), "head": head}
        )
    return (
        Table(rows=rows, names=["frame", "s_lead", "s_tail", "n_pixels", "head"])
        if rows
        else Table(
            names=["frame", "s_lead", "s_tail", "n_pixels", "head"],
            dtype=[int, float, float, int, bool],
        )
    )


def head_photometry(
    frames: dict[int, np.ndarray],
    background: np.ndarray,
    masks: dict[int, np.ndarray],
    track: Table,
    trajectory: Trajectory,
    *,
    noise: float,
    fwhm: float = 3.0,
    saturation: float | None = None,
    gain: float | None = None,
) -> Table:
    """Photometry of the head in each tracked frame.

    The mask's half-width ``hw`` at the head (99th percentile of the
    distance of its pixels from the path) is where the head's light sinks
    into the noise, so the previous frame's leading point lies about ``hw``
    beyond the start of this frame's smear. The aperture of frame ``i``
    holds the pixels whose distance along the path lies between the previous
    head frame's leading point minus ``2 hw + fwhm / 2`` (the first frame:
    its mask's tail minus ``fwhm``) and this frame's leading point plus
    ``fwhm``, and whose distance from the path is at most ``hw + fwhm``
    (at least ``1.5 fwhm``).

    Parameters
    ----------
    frames : dict int -> ndarray (H, W)
        Frame index -> frame (ADU), for the head frames at least.
    background : ndarray (H, W)
        Background (the clip's median), ADU.
    masks : dict int -> ndarray of bool (H, W)
    track : Table
        From :func:`track_head`.
    trajectory : Trajectory
    noise : float
        Noise sigma of ``frame - background`` per pixel (ADU).
    fwhm : float, optional
        PSF FWHM, px. Default 3.
    saturation : float, optional
        Saturation level (ADU); frames with an aperture pixel at or above
        ``saturation -`` :func:`saturation_margin` are flagged.
    gain : float, optional
        e-/ADU for the head's shot noise; without it ``flux_err`` holds the
        background noise only.

    Returns
    -------
    astropy.table.Table
        One row per head frame: ``frame``, ``x``, ``y`` (flux-weighted centroid
        of the aperture, px), ``s_lead``, ``flux``, ``flux_err`` (ADU),
        ``n_aperture`` (pixels), ``flux_gauss``, ``flux_gauss_err`` (2-D
        Gaussian fit of the head, ADU; NaN where it fails), ``peak`` (largest
        frame value in the aperture, ADU), ``saturated``.

    Raises
    ------
    InputError
        If ``noise`` is not positive.
    """
    if not noise > 0:
        msg = f"noise must be > 0 ADU, got {noise!r}"
        raise InputError(msg)
    rows = []
    prev_lead = None
    h, w = background.shape
    for r in track:
        if not r["head"]:
            continue
        i = int(r["frame"])
        lead = float(r["s_lead"])
        ys, xs = np.nonzero(masks[i])
        s, d = trajectory.project(xs, ys)
        near = np.abs(d) <= max(3.0 * fwhm, 10.0)
        near_head = near & (s >= lead - 3.0 * fwhm)
        # half-width of the mask at the head: where the head's light sinks into the noise
        hw = float(np.percentile(np.abs(d[near_head]), 99)) if near_head.any() else fwhm
        # the previous leading point lies ``hw`` beyond the end of the previous smear (this
        # smear's start), and this smear's light reaches ``hw`` behind its start
        if prev_lead is None:
            # the first frame: its mask's tail (reaching further back, towards a start
            # that a rising light curve leaves faint, adds noise and no light)
            back = float(r["s_tail"]) - fwhm
        else:
            back = prev_lead - 2.0 * hw - 0.5 * fwhm
        half = max(hw + fwhm, 1.5 * fwhm)
        # pixels of the capsule's bounding box
        ax, ay = trajectory.point(np.array([back - half, lead + fwhm + half]))
        x0 = int(max(0, np.floor(min(ax) - half)))
        x1 = int(min(w, np.ceil(max(ax) + half) + 1))
        y0 = int(max(0, np.floor(min(ay) - half)))
        y1 = int(min(h, np.ceil(max(ay) + half) + 1))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        ss, dd = trajectory.project(xx, yy)
        ap = (ss >= back) & (ss <= lead + fwhm) & (np.abs(dd) <= half)
        frame = np.asarray(frames[i], np.float32)
        diff = np.nan_to_num(frame[y0:y1, x0:x1] - background[y0:y1, x0:x1])
        vals = diff[ap]
        flux = float(vals.sum())
        var = ap.sum() * noise**2 + (max(flux, 0.0) / gain if gain else 0.0)
        pos = np.clip(vals, 0, None)
        if pos.sum() > 0:
            cx = float(np.average(xx[ap], weights=pos))
            cy = float(np.average(yy[ap], weights=pos))
        else:
            cx, cy = trajectory.point(lead)
            cx, cy = float(cx), float(cy)
        peak = float(np.nanmax(frame[y0:y1, x0:x1][ap])) if ap.any() else np.nan
        # a peak near the ceiling is a clipped pixel (lossy 8-bit video blurs a clipped head
        # to a few ADU below it): see saturation_margin
        sat = bool(
            saturation is not None and peak >= saturation - saturation_margin(saturation, noise)
        )
        g = _gauss(diff, cx - x0, cy - y0, fwhm, noise)
        rows.append(
            {
                "frame": i,
                "x": cx,
                "y": cy,
                "s_lead": lead,
                "flux": flux,
                "flux_err": float(np.sqrt(var)),
                "n_aperture": int(ap.sum()),
                "flux_gauss": g[0],
                "flux_gauss_err": g[1],
                "peak": peak,
                "saturated": sat,
            }
        )
        prev_lead = lead
    if not rows:
        return empty_photometry()
    return Table(rows=rows, names=[n for n, _ in _PHOT_COLUMNS])


#: Largest drop, as a fraction of the 8-bit range, of a clipped head's peak in lossy video.
LOSSY_8BIT_MARGIN = 0.025


def saturation_margin(saturation: float, noise: float) -> float:
    """How far below the saturation level a head's peak still counts as clipped (ADU).

    ``max(0.001 saturation, 3 noise)``, and for 8-bit data (``saturation <=
    255``) at least ``LOSSY_8BIT_MARGIN x saturation`` (6.4 ADU): H.264 /
    XviD / JPEG compression of a clipped head of a few pixels lowers its
    decoded peak by up to about 6 ADU at the bit rates of meteor cameras
    (measured on ``benchmarks/bolide_real_like.py``, 300 kbit/s - 2 Mbit/s:
    the truth-clipped heads decoded to 249-255, but for one whose only
    clipped pixel was a shot-noise spike, 0.1 % of its light, at 235), so a
    3-sigma margin alone misses them.

    Parameters
    ----------
    saturation : float
        The clip level, ADU.
    noise : float
        Noise sigma of ``frame - background`` per pixel, ADU.

    Returns
    -------
    float
        The margin, ADU (>= 0).
    """
    margin = max(0.001 * saturation, 3.0 * noise)
    if saturation <= 255.0:
        margin = max(margin, LOSSY_8BIT_MARGIN * saturation)
    return float(margin)


def clip_saturation(cube: np.ndarray) -> float | None:
    """Saturation level of a clip: the clipped value shared by >= 3 pixels, else 255 for 8-bit.

    :func:`skysift.detection.stars.estimate_saturation` of the clip's
    per-pixel maximum finds a level shared by at least 3 pixels. Lossy 8-bit
    video whose brightest head was blurred below 255 shows no such level:
    integer data within 0..255 then takes 255 (the format's ceiling).

    Parameters
    ----------
    cube : ndarray, shape (T, H, W) or (H, W)

    Returns
    -------
    float or None
        None for non-8-bit data without a clipped level.
    """
    top = np.asarray(cube, np.float32)
    top = top.max(axis=0) if top.ndim == 3 else top
    finite = top[np.isfinite(top)]
    if finite.size == 0:
        return None
    vmax = float(finite.max())
    if np.count_nonzero(finite >= vmax) >= 3:
        return vmax
    sample = finite[:: max(1, finite.size // 50_000)]
    if vmax <= 255.0 and finite.min() >= 0 and np.all(sample == np.round(sample)):
        return 255.0
    return None


#: Columns of :func:`head_photometry` and their types.
_PHOT_COLUMNS = [
    ("frame", int), ("x", float), ("y", float), ("s_lead", float), ("flux", float),
    ("flux_err", float), ("n_aperture", int), ("flux_gauss", float),
    ("flux_gauss_err", float), ("peak", float), ("saturated", bool),
]  # fmt: skip


def empty_photometry() -> Table:
    """The table :func:`head_photometry` returns when no head was tracked."""
    return Table(names=[n for n, _ in _PHOT_COLUMNS], dtype=[t for _, t in _PHOT_COLUMNS])


def _gauss(diff: np.ndarray, x: float, y: float, fwhm: float, noise: float) -> tuple[float, float]:
    """The report's 2-D Gaussian fit of the head on the difference stamp (NaN on failure)."""
    box = int(np.clip(2 * round(2 * fwhm) + 1, 7, 31))
    if diff.shape[0] < box or diff.shape[1] < box:
        return np.nan, np.nan
    try:
        t = gaussian_photometry(diff, [x], [y], box=box, sigma_guess=fwhm / 2.3548, noise=noise)
    except Exception:  # noqa: BLE001 - a failed fit is a missing value, not an error
        return np.nan, np.nan
    return float(t["flux"][0]), float(t["flux_err"][0]) if "flux_err" in t.colnames else np.nan
