"""Link streaks of consecutive frames into tracks (one object crossing several exposures).

A satellite seen in consecutive exposures leaves streaks on (nearly) one
great circle, i.e. one straight line in a small field: same angle, same
perpendicular offset, with the endpoints moving along the line from frame to
frame. :func:`link_streaks` joins the streaks of frame ``k`` to those of
frame ``k + 1`` (and, across a gap, up to ``max_gap`` frames later) when

* their angles differ by at most ``angle_tol`` degrees,
* each one's midpoint lies within ``offset_tol`` pixels of the other's line,
* and they move consistently: the later streak's midpoint lies ahead of the
  earlier one's along the line by at least ``min_advance`` of its length
  (or, once a track has two members, within ``speed_tol`` of the
  predicted position).

Assignment is greedy by cost (angle + offset distances) and one-to-one per
frame pair.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from astropy.table import Table, vstack

from skysift.errors import InputError
from skysift.streaks.frt import LineNoise, sample_line, winsorise

__all__ = [
    "cross_width",
    "edge_or_band",
    "fit_line_offsets",
    "link_streaks",
    "local_significance",
    "paint_lines",
    "same_line",
    "segment_overlap",
]

_NEEDED = ("x1", "y1", "x2", "y2")


def _geom(row: dict[str, float]) -> tuple[float, float, float, float, float]:
    x1, y1, x2, y2 = (float(row[c]) for c in _NEEDED)
    mx, my = 0.5 * (x1 + x2), 0.5 * (y1 + y2)
    theta = math.atan2(y2 - y1, x2 - x1) % math.pi
    return mx, my, theta, math.hypot(x2 - x1, y2 - y1), 0.0


def _line_dist(px: float, py: float, mx: float, my: float, theta: float) -> float:
    return abs(-(px - mx) * math.sin(theta) + (py - my) * math.cos(theta))


def link_streaks(
    tables: Sequence[Table],
    *,
    angle_tol: float = 3.0,
    offset_tol: float = 5.0,
    min_advance: float = 0.2,
    speed_tol: float = 0.5,
    max_gap: int = 1,
) -> Table:
    """Link per-frame streak tables into tracks.

    Parameters
    ----------
    tables : sequence of Table
        One table per frame, in time order, each with columns ``x1, y1, x2,
        y2`` (0-based pixels); other columns are kept. Empty tables are
        allowed (a frame without streaks).
    angle_tol : float, optional
        Largest angle difference between two linked streaks, degrees. Default 3.
    offset_tol : float, optional
        Largest distance of a streak's midpoint from the other's line, pixels.
        Default 5.
    min_advance : float, optional
        Smallest shift of the midpoint along the line between two linked
        streaks, as a fraction of the earlier streak's length (an object
        moves between exposures; a fixed artefact does not). Default 0.2.
    speed_tol : float, optional
        For a track with two or more members, largest difference between the
        observed and the predicted (constant-velocity) midpoint, as a fraction
        of the predicted shift. Default 0.5.
    max_gap : int, optional
        Frames that may be skipped (a missed detection) inside a track:
        1 links only consecutive frames. Default 1.

    Returns
    -------
    Table
        All input rows stacked, with ``frame`` (index in ``tables``) and
        ``track_id`` (1, 2, ... in order of first appearance; each streak
        linked to no other gets its own id).

    Raises
    ------
    InputError
        If a table lacks ``x1, y1, x2, y2`` or a tolerance is not positive.
    """
    if angle_tol <= 0 or offset_tol <= 0 or min_advance < 0 or speed_tol <= 0 or max_gap < 1:
        msg = (
            "angle_tol, offset_tol and speed_tol must be > 0, min_advance >= 0 and max_gap >= 1; "
            f"got {angle_tol}, {offset_tol}, {speed_tol}, {min_advance}, {max_gap}"
        )
        raise InputError(msg)
    parts = []
    for k, t in enumerate(tables):
        missing = [c for c in _NEEDED if c not in t.colnames]
        if missing:
            msg = f"table {k} lacks the columns {missing} (needs x1, y1, x2, y2 in pixels)"
            raise InputError(msg)
        t = Table(t, copy=True)
        t.meta = {}
        t["frame"] = np.full(len(t), k, dtype=int)
        parts.append(t)
    if not parts:
        out = Table(
            names=(*_NEEDED, "frame", "track_id"), dtype=(float, float, float, float, int, int)
        )
        return out
    out = vstack(parts, metadata_conflicts="silent") if len(parts) > 1 else parts[0]
    n = len(out)
    geo = [_geom(out[i]) for i in range(n)]
    frames = np.asarray(out["frame"], dtype=int)
    track = -np.ones(n, dtype=int)
    prev: dict[int, int] = {}  # row -> linked predecessor row
    atol = math.radians(angle_tol)
    for k in range(len(tables)):
        cur = np.flatnonzero(frames == k)
        pairs = []
        for i in cur:
            mx, my, th, ln, _ = geo[i]
            for gap in range(1, max_gap + 1):
                for j in np.flatnonzero(frames == k + gap):
                    nx, ny, th2, _, _ = geo[j]
                    d = abs(th - th2)
                    d = min(d, math.pi - d)
                    if d > atol:
                        continue
                    off = max(_line_dist(nx, ny, mx, my, th), _line_dist(mx, my, nx, ny, th2))
                    if off > offset_tol:
                        continue
                    adv = (nx - mx) * math.cos(th) + (ny - my) * math.sin(th)
                    if abs(adv) < min_advance * max(ln, 1.0) * gap:
                        continue
                    p = prev.get(int(i))
                    if p is not None:  # constant velocity: predicted shift per frame
                        px, py, _, _, _ = geo[p]
                        step = ((mx - px) * math.cos(th) + (my - py) * math.sin(th)) / max(
                            frames[i] - frames[p], 1
                        )
                        if np.sign(step) != np.sign(adv) or abs(adv - step * gap) > speed_tol * abs(
                            step * gap
                        ):
                            continue
                    pairs.append(
                        (math.degrees(d) / angle_tol + off / offset_tol + (gap - 1), int(i), int(j))
                    )
        used_i: set[int] = set()
        used_j: set[int] = set()
        for _, i, j in sorted(pairs):
            if i in used_i or j in used_j or j in prev:
                continue
            used_i.add(i)
            used_j.add(j)
            prev[j] = i
    next_id = 1
    for i in range(n):  # rows are in frame order: a predecessor always comes first
        p = prev.get(i)
        if p is not None:
            track[i] = track[p]
        else:
            track[i] = next_id
            next_id += 1
    out["track_id"] = track
    return out


# --------------------------------------------------------------------------- line geometry


def paint_lines(
    shape: tuple[int, int],
    lines: Table,
    *,
    diameter: float | None = None,
    scores: bool = False,
) -> np.ndarray:
    """Paint capsules along lines: a boolean mask, or a per-pixel score map.

    Parameters
    ----------
    shape : (int, int)
        Image shape (H, W).
    lines : Table
        With ``x1, y1, x2, y2, width, significance`` (see :class:`RadonResult`).
    diameter : float, optional
        Capsule diameter in pixels. Default: each line's ``width``.
    scores : bool, optional
        False (default): boolean mask, ``True`` inside a capsule. True: float32
        map of each line's ``significance`` over the same capsule (the score
        of a pixel is the significance of the most significant line covering
        it; 0 elsewhere), so that thresholding the map at ``t`` gives the
        mask of the lines above ``t``.

    Returns
    -------
    ndarray of bool or float32, shape (H, W)
    """
    h, w = shape
    out = np.zeros((h, w), dtype=np.float32 if scores else bool)
    for r in lines:
        x1, y1, x2, y2 = float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"])
        dia = float(r["width"]) if diameter is None else float(diameter)
        rad = max(dia, 1.0) / 2.0
        c0 = max(int(math.floor(min(x1, x2) - rad)), 0)
        c1 = min(int(math.ceil(max(x1, x2) + rad)) + 1, w)
        r0 = max(int(math.floor(min(y1, y2) - rad)), 0)
        r1 = min(int(math.ceil(max(y1, y2) + rad)) + 1, h)
        if c0 >= c1 or r0 >= r1:
            continue
        gy, gx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
        dx, dy = x2 - x1, y2 - y1
        l2 = dx * dx + dy * dy
        t = np.clip(((gx - x1) * dx + (gy - y1) * dy) / l2, 0, 1) if l2 > 0 else 0.0
        d2 = (gx - x1 - t * dx) ** 2 + (gy - y1 - t * dy) ** 2
        inside = d2 <= rad * rad
        if scores:
            val = np.where(inside, float(r["significance"]), 0.0)
            sub = out[r0:r1, c0:c1]
            np.maximum(sub, val.astype(np.float32), out=sub)
        else:
            out[r0:r1, c0:c1] |= inside
    return out


# --------------------------------------------------------------------------- the finder


def fit_line_offsets(
    z: np.ndarray, x1: float, y1: float, x2: float, y2: float, psf_fwhm: float
) -> tuple[float, float]:
    """Offsets (px, across the line, +90 degrees from its direction) that recentre its two ends.

    The segment is cut into chunks of about ``4 psf_fwhm`` px (2 to 16); in
    each, the mean cross profile of ``z`` (steps of 0.25 px over
    ``± 2.5 psf_fwhm``, its median beyond ``1.5 psf_fwhm`` subtracted) gives
    a centroid; a straight line through the centroids, weighted by their
    flux, gives each end's offset, clipped to ``± 1.5`` px.

    Parameters
    ----------
    z : ndarray, shape (H, W)
        Background-subtracted image (any units).
    x1, y1, x2, y2 : float
        The segment's ends, 0-based pixels.
    psf_fwhm : float
        PSF FWHM, pixels.

    Returns
    -------
    (float, float)
        Offsets of the first and the second end, pixels.
    """
    theta = math.atan2(y2 - y1, x2 - x1)
    length = math.hypot(x2 - x1, y2 - y1)
    ux, uy = math.cos(theta), math.sin(theta)
    tt = np.arange(0.0, length + 1e-9, 1.0)
    dd = np.arange(-2.5 * psf_fwhm, 2.5 * psf_fwhm + 1e-9, 0.25)
    xs = x1 + tt[None, :] * ux - dd[:, None] * uy
    ys = y1 + tt[None, :] * uy + dd[:, None] * ux
    vals = cv2.remap(np.asarray(z, np.float32), xs.astype(np.float32), ys.astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)  # fmt: skip
    n_chunks = int(np.clip(length / (4.0 * psf_fwhm), 2, 16))
    core = np.abs(dd) <= 1.5 * psf_fwhm
    tc, mu, wt = [], [], []
    for idx in np.array_split(np.arange(tt.size), n_chunks):
        block = vals[:, idx]
        if idx.size == 0 or np.isnan(block).mean() > 0.3:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            prof = np.nanmean(block, axis=1)
        if not np.isfinite(prof).all():
            continue
        q = np.clip(prof - np.median(prof[~core]), 0.0, None) * core
        if q.sum() <= 0:
            continue
        tc.append(float(tt[idx].mean()))
        mu.append(float((q * dd).sum() / q.sum()))
        wt.append(float(q.sum()))
    if len(tc) < 2:
        return (float(np.clip(mu[0], -1.5, 1.5)),) * 2 if tc else (0.0, 0.0)
    a, b = np.polyfit(np.asarray(tc), np.asarray(mu), 1, w=np.sqrt(np.asarray(wt)))
    return float(np.clip(b, -1.5, 1.5)), float(np.clip(b + a * length, -1.5, 1.5))


def segment_overlap(a: Any, b: Any, tol: float) -> float:
    """Fraction of segment ``a`` lying within ``tol`` pixels of segment ``b``."""
    n = max(int(math.hypot(a.x2 - a.x1, a.y2 - a.y1)), 2)
    t = np.linspace(0.0, 1.0, n)
    px, py = a.x1 + t * (a.x2 - a.x1), a.y1 + t * (a.y2 - a.y1)
    dx, dy = b.x2 - b.x1, b.y2 - b.y1
    l2 = dx * dx + dy * dy
    u = np.clip(((px - b.x1) * dx + (py - b.y1) * dy) / l2, 0, 1) if l2 > 0 else 0.0
    d2 = (px - b.x1 - u * dx) ** 2 + (py - b.y1 - u * dy) ** 2
    return float(np.mean(d2 <= tol * tol))


def same_line(a: Any, b: Any, tol: float) -> bool:
    """Two segments lie on one line: angles within ~2 deg*, and a's midpoint within ``tol`` of b's line."""
    ta = math.atan2(a.y2 - a.y1, a.x2 - a.x1) % math.pi
    tb = math.atan2(b.y2 - b.y1, b.x2 - b.x1) % math.pi
    d = abs(ta - tb)
    d = min(d, math.pi - d)
    lb = math.hypot(b.x2 - b.x1, b.y2 - b.y1)
    if lb == 0:
        return False
    atol = max(math.radians(3.0), 2.0 * tol / max(lb, 1.0))
    if d > atol:
        return False
    mx, my = 0.5 * (a.x1 + a.x2), 0.5 * (a.y1 + a.y2)
    dist = abs((mx - b.x1) * (b.y2 - b.y1) - (my - b.y1) * (b.x2 - b.x1)) / lb
    return dist <= tol


# --------------------------------------------------------------------------- line shape

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def edge_or_band(
    g: np.ndarray,
    valid: np.ndarray,
    noise: LineNoise,
    cx: float,
    cy: float,
    ux: float,
    uy: float,
    lo: float,
    hi: float,
    fwhm: float,
) -> bool:
    """Whether the segment ``(cx, cy) + t (ux, uy)``, ``t`` in [lo, hi], is an edge or a band.

    An edge (tree, dome, cloud border) is bright on one side and dark on the
    other, a band (sky between branches or clouds, the glow inside a fisheye
    edge) as bright beside the line as on it; a streak has background on both
    sides: its filtered profile is down to 5 % at 1.5 FWHM from its axis.
    Medians of ``g`` (the PSF-filtered image in noise units) along the line
    and along the lines at ``± 2`` and ``± 1.5`` FWHM are compared, with the
    noise of a median of ``n`` line samples (``1.25 noise(n) / n``).

    Parameters
    ----------
    g, valid : ndarray, shape (H, W)
        Filtered image and float32 map of usable pixels (1).
    noise : LineNoise
        Noise of line sums of ``g``.
    cx, cy, ux, uy, lo, hi : float
        Segment centre (px), unit direction, and extent along it (px).
    fwhm : float
        PSF FWHM, px.

    Returns
    -------
    bool
    """
    tt = np.arange(lo, hi + 1e-9, 1.0)
    side = np.array([-2.0, 2.0]) * fwhm
    xs = cx + tt[None, :] * ux - side[:, None] * uy
    ys = cy + tt[None, :] * uy + side[:, None] * ux
    vs, oks = sample_line(g, valid, xs, ys)
    if oks.sum(axis=1).min() < 4:
        return False
    ms = [float(np.median(vs[k][oks[k]])) for k in range(2)]
    v0, ok0 = sample_line(g, valid, (cx + tt * ux)[None, :], (cy + tt * uy)[None, :])
    m0 = max(float(np.median(v0[0][ok0[0]])) if ok0.any() else 0.0, 0.0)
    sd_med = 1.25 * float(noise(tt.size)) / tt.size  # of a median of n line samples
    if abs(ms[0] - ms[1]) > 0.5 * m0 + 3.0 * math.sqrt(2.0) * sd_med:
        return True  # an edge
    if max(ms) > 0.5 * m0 + 3.0 * sd_med:
        return True  # a band
    side = np.array([-1.5, 1.5]) * fwhm
    xs = cx + tt[None, :] * ux - side[:, None] * uy
    ys = cy + tt[None, :] * uy + side[:, None] * ux
    vs, oks = sample_line(g, valid, xs, ys)
    if oks.sum(axis=1).min() >= 4:
        mb = 0.5 * sum(float(np.median(vs[k][oks[k]])) for k in range(2))
        if mb > 0.5 * m0 + sd_med:
            return True
    return False


def cross_width(z: np.ndarray, line: Any, fwhm: float) -> tuple[float, float]:
    """FWHM across a line (px) and the offset of its cross-profile centroid (px).

    The median profile across the segment ``line`` (attributes ``x1, y1, x2,
    y2, sig``) in the background-subtracted image ``z``, from ``-2 FWHM - 2``
    to ``2 FWHM + 2`` px in steps of 0.5 px, less its wings; its second moment
    within ``1.5 FWHM + 1`` px of the axis gives the width. Lines under 15
    sigma get ``(fwhm, 0)``: their profile is too noisy.
    """
    theta = math.atan2(line.y2 - line.y1, line.x2 - line.x1)
    length = math.hypot(line.x2 - line.x1, line.y2 - line.y1)
    ux, uy = math.cos(theta), math.sin(theta)
    tt = np.arange(0.0, length + 1e-9, 1.0)
    dd = np.arange(-2.0 * fwhm - 2, 2.0 * fwhm + 2 + 1e-9, 0.5)
    xs = line.x1 + tt[None, :] * ux - dd[:, None] * uy
    ys = line.y1 + tt[None, :] * uy + dd[:, None] * ux
    vals = cv2.remap(z, xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
    prof = np.median(vals, axis=1) if vals.shape[1] >= 5 else vals.mean(axis=1)
    q = np.clip(prof - np.median(prof[[0, 1, -2, -1]]), 0, None)
    q[np.abs(dd) > 1.5 * fwhm + 1] = 0.0
    if line.sig < 15 or q.sum() <= 0:
        return fwhm, 0.0
    mu = float((q * dd).sum() / q.sum())
    var = float((q * (dd - mu) ** 2).sum() / q.sum())
    width = float(np.clip(math.sqrt(max(var, 0.0)) / _FWHM_TO_SIGMA, 1.0, 4 * fwhm + 4))
    return width, float(np.clip(mu, -1.0, 1.0))


def local_significance(
    g: np.ndarray,
    valid: np.ndarray,
    noise: LineNoise,
    segment: tuple[float, float, float, float, float, float],
    sig: float,
    d0: float,
    fwhm: float,
) -> float:
    """A line's significance calibrated on the same segment shifted sideways.

    The segment ``(cx, cy, ux, uy, lo, hi)`` (centre, unit direction, extent
    along it, px) is moved across by ``± (d0 + 1.5 fwhm k)``, ``k = 0 .. 11``;
    the significances of these 24 parallel segments of the filtered image
    ``g`` (winsorised like the line statistic) sample the local noise of the
    statistic (crowded fields, nebulosity, texture). Returns ``(sig -
    max(median, 0)) / max(1, spread / 1.2)`` (1.4826 MAD spread): it only ever
    lowers ``sig``; unchanged when fewer than 8 shifted segments are half inside
    the valid pixels.
    """
    cx, cy, ux, uy, lo, hi = segment
    d = d0 + 1.5 * fwhm * np.arange(12)
    offs = np.concatenate([d, -d])
    tt = np.arange(lo, hi + 1e-9, 1.0)
    xs = cx + tt[None, :] * ux - offs[:, None] * uy
    ys = cy + tt[None, :] * uy + offs[:, None] * ux
    v2, ok2 = sample_line(g, valid, xs, ys)
    n2 = ok2.sum(axis=1)
    good = n2 >= max(0.5 * tt.size, 4)
    if good.sum() < 8:
        return sig
    w2 = winsorise(v2[good], ok2[good])
    loc = (w2 * ok2[good]).sum(axis=1) / noise(n2[good])
    med_l = float(np.median(loc))
    spread_l = 1.4826 * float(np.median(np.abs(loc - med_l)))
    return (sig - max(med_l, 0.0)) / max(1.0, spread_l / 1.2)
