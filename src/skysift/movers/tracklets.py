"""Tracklets: single-frame detections of a mover linked across frames.

Re-exported by :mod:`skysift.movers.stack` (``stack.link_tracklets``,
``stack.rates_to_sky``), with the conversion of pixel rates to ″/h and PA.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table

from skysift.errors import InputError

__all__ = ["link_tracklets", "rates_to_sky"]


def rates_to_sky(
    vx: np.ndarray,
    vy: np.ndarray,
    *,
    pixel_scale: float | None = None,
    seconds_per_unit: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Rate in ″/h and position angle (degrees east of north) of pixel velocities.

    Assumes north = +y and east = −x (the usual display of a north-up FITS image).

    Parameters
    ----------
    vx, vy : ndarray
        Pixel velocities per time unit.
    pixel_scale : float, optional
        Arcseconds per pixel; without it the rate is NaN.
    seconds_per_unit : float, optional
        Seconds per time unit of the velocities. Default 1.

    Returns
    -------
    rate_arcsec_h, pa_deg : ndarray
    """
    vx, vy = np.asarray(vx, float), np.asarray(vy, float)
    pa = np.degrees(np.arctan2(-vx, vy)) % 360.0
    if pixel_scale is None:
        return np.full(vx.shape, np.nan), pa
    rate = np.hypot(vx, vy) * float(pixel_scale) / float(seconds_per_unit) * 3600.0
    return rate, pa


def link_tracklets(
    detections: Table,
    *,
    times: Any = None,
    max_rate: float = 20.0,
    radius: float = 2.0,
    min_points: int = 3,
) -> Table:
    """Link single-frame detections into linear tracklets.

    Every pair of detections in different frames within ``max_rate`` seeds a
    line; detections of other frames within ``radius`` pixels of the
    predicted position join it; tracklets are taken greedily (most points,
    then smallest residual) without sharing detections.

    Parameters
    ----------
    detections : astropy.table.Table
        Columns ``frame``, ``x``, ``y`` (e.g. from :func:`~skysift.movers.baseline.detect_difference`).
    times : array_like, optional
        Time of each frame index (default the frame index).
    max_rate : float, optional
        Fastest motion, pixels per time unit. Default 20.
    radius : float, optional
        Association radius, pixels. Default 2.
    min_points : int, optional
        Fewest detections per tracklet (≥ 2). Default 3.

    Returns
    -------
    astropy.table.Table
        ``detections`` with an added ``tracklet`` column (−1 = unlinked) and,
        per linked row, the tracklet's ``vx``, ``vy`` (pixels per time unit) and ``pa``.

    Raises
    ------
    InputError
        For missing columns or ``min_points`` < 2.
    """
    for c in ("frame", "x", "y"):
        if c not in detections.colnames:
            msg = f"detections need columns frame, x, y; missing {c!r}"
            raise InputError(msg)
    if min_points < 2:
        msg = f"min_points must be >= 2, got {min_points}"
        raise InputError(msg)
    det = detections.copy()
    fr = np.asarray(det["frame"], int)
    tt = fr.astype(float) if times is None else np.asarray(times, float)[fr]
    x, y = np.asarray(det["x"], float), np.asarray(det["y"], float)
    n = len(det)
    cands = []
    for i in range(n):
        for j in range(n):
            if tt[j] <= tt[i]:
                continue
            dt = tt[j] - tt[i]
            vx, vy = (x[j] - x[i]) / dt, (y[j] - y[i]) / dt
            if np.hypot(vx, vy) > max_rate:
                continue
            px, py = x[i] + vx * (tt - tt[i]), y[i] + vy * (tt - tt[i])
            d = np.hypot(x - px, y - py)
            members = []
            for f in np.unique(fr):
                sel = np.nonzero((fr == f) & (d <= radius))[0]
                if sel.size:
                    members.append(int(sel[np.argmin(d[sel])]))
            if len(members) >= min_points:
                m = np.array(members)
                cands.append((-len(m), float(d[m].mean()), tuple(sorted(m))))
    cands.sort()
    label = np.full(n, -1)
    vxs, vys = np.full(n, np.nan), np.full(n, np.nan)
    k = 0
    for _, _, m in cands:
        m = np.array(m)
        if (label[m] >= 0).any():
            continue
        label[m] = k
        ax = np.polyfit(tt[m], x[m], 1)[0]
        ay = np.polyfit(tt[m], y[m], 1)[0]
        vxs[m], vys[m] = ax, ay
        k += 1
    det["tracklet"] = label
    det["vx"] = vxs
    det["vy"] = vys
    det["pa"] = rates_to_sky(vxs, vys)[1]
    det["pa"].unit = "deg"
    return det
