"""Meteor, aircraft or satellite: what a tracked object is, from its track and light curve alone.

A meteor camera also records aircraft and satellites: both move slowly and
steadily across the sky, an aircraft blinking with its anti-collision
strobes, a satellite shining steadily until it leaves the field (or the
clip). A meteor appears and disappears inside the field within seconds, its
brightness rising and falling (bolide report §6.2; Ceplecha et al. 1998,
Space Sci. Rev. 84, 327). :func:`track_features` measures, from the per-frame
light curve of :func:`skysift.bolide.pipeline.run_bolide` (``frame``, ``x``,
``y``, ``flux``, ``flux_err`` and, when calibrated, ``ang_speed``):

* ``speed``: angular speed in deg/s when calibrated (the median of
  ``ang_speed``), else the mean apparent speed in px/frame (net path length
  over frame span);
* ``duration_s``, ``n_rows``, ``span`` (frames from first to last row), and
  whether the track touches the first or last frame of the clip
  (``at_clip_edge``: the object was already there, or still there);
* ``straight_rms_px``: RMS distance of the positions from their
  total-least-squares line, and the path length;
* ``blink_period``: the period (frames) of regular brightness flashes, NaN
  without them (see :func:`blink_period`; the frames between flashes must
  hold at most 30 % of a flash's light);
* ``flux_scatter``: robust sigma of the flux over its median ``flux_err``
  (NaN without ``flux_err``);
* ``mag_spread``: robust sigma (1.4826 MAD) of the instrumental magnitudes,
  and ``rise_fall``: how much fainter the track's start or end (its first
  or last fifth, the fainter of the two) is than its peak, in mag (a
  fireball may rise slowly and end in a terminal flash, or flare first and
  fade; saturated frames count with their bright limit), both on the light
  curve smoothed by a running median over a tenth of the track (at least 3
  rows) against photometric noise.

:func:`classify_track` applies :data:`RULES` in this order:

1. fewer than ``min_rows`` (4) rows: **unknown** (RMS's meteor detector
   needs ``line_minimum_frame_range_det = 4`` frames);
2. not straight, ``straight_rms_px > max(2 px, 0.05 x length)``: **unknown**
   (RMS rejects centroids more than ``centroids_max_deviation = 2`` px from
   the fitted line);
3. fast, ``speed >= 2 deg/s`` (RMS ``ang_vel_min``; calibrated) or
   ``>= 3 px/frame`` (uncalibrated: the simulator's aircraft and
   satellites move < 1.5 px/frame): **meteor**; faster than 51 deg/s
   (RMS ``ang_vel_max``): **unknown**;
4. slow and blinking with a period of 2 frames to 3 s (aircraft
   anti-collision lights flash 40-100 times a minute, 14 CFR 25.1401):
   **aircraft**;
5. slow and steady (``mag_spread <= 0.4`` mag and ``rise_fall < 0.75``
   mag, or a flux constant within 2 times its errors) and either at the
   clip's edge in time for >= 1 s or lasting >= 5 s:
   **satellite**;
6. slow, begins and ends inside the clip, with a rise or a fall of at least
   0.75 mag: **meteor** (a slow fireball seen low or near its radiant, as
   FreeTure's ``meteor5.flv``);
7. otherwise **unknown**.

The rules are those of RMS's detector (Vida et al. 2016, "The Global Meteor
Network", IMC proceedings; the ``[MeteorDetection]`` section of RMS's
``.config``: ``ang_vel_min = 2``, ``ang_vel_max = 51`` deg/s,
``centroids_max_deviation = 2`` px, ``line_minimum_frame_range_det = 4``),
with the light-curve shape standing in for the angular speed where the
camera is not calibrated. :func:`classify_lightcurve` adds the ``kind``
column and the verdict line to a run's light curve, and takes aircraft and
satellites out of it (they are not bolides).

Pixel coordinates are 0-based, (0, 0) the centre of the first pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table
from scipy import ndimage

from skysift.errors import InputError

__all__ = [
    "KINDS",
    "RULES",
    "KindRules",
    "KindVerdict",
    "blink_period",
    "classify_lightcurve",
    "classify_track",
    "track_features",
]

#: The kinds a tracked object can be given.
KINDS = ("meteor", "aircraft", "satellite", "unknown")


@dataclass(frozen=True)
class KindRules:
    """Thresholds of :func:`classify_track` (see the module docstring for the sources).

    Attributes
    ----------
    min_rows : int
        Fewest light-curve rows to judge a track.
    max_dev_px, max_dev_fraction : float
        Straightness: RMS distance from the line at most
        ``max(max_dev_px, max_dev_fraction x length)``.
    meteor_deg_s, max_deg_s : float
        Angular speeds (deg/s) of meteors: at least / at most.
    meteor_px_frame : float
        Apparent speed (px/frame) above which an uncalibrated track is fast.
    max_blink_s : float
        Longest strobe period, s.
    steady_mag, rise_fall_mag : float
        Steady: magnitude spread at most ``steady_mag``; a meteor's light
        curve rises and falls by at least ``rise_fall_mag``.
    satellite_s : float
        A steady slow track lasting this long (s) is a satellite even
        inside the clip.
    satellite_edge_s : float
        A steady slow track at the clip's edge in time must last this long
        (s) to be a satellite (a shorter one may be a meteor's piece).
    noise_scatter : float
        Also steady: a flux scatter (1.4826 MAD) at most this many times the
        median ``flux_err`` (a faint object whose light curve is noise).
    """

    min_rows: int = 4
    max_dev_px: float = 2.0
    max_dev_fraction: float = 0.05
    meteor_deg_s: float = 2.0
    max_deg_s: float = 51.0
    meteor_px_frame: float = 3.0
    max_blink_s: float = 3.0
    steady_mag: float = 0.4
    rise_fall_mag: float = 0.75
    satellite_s: float = 5.0
    satellite_edge_s: float = 1.0
    noise_scatter: float = 2.0


#: The default rule set.
RULES = KindRules()


@dataclass
class KindVerdict:
    """What :func:`classify_track` decided.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    reason : str
        The rule that decided, in words.
    features : dict
        :func:`track_features`.
    """

    kind: str
    reason: str
    features: dict[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> str:
        """The verdict line of the report."""
        return f"kind: {self.kind} ({self.reason})"


def blink_period(on: np.ndarray, *, max_period: float) -> float:
    """Period (frames) of regular flashes in an on/off series, NaN without them.

    Flashing needs at least 3 flashes (runs of "on" frames), flashes
    starting at intervals of 2 to ``max_period`` frames whose spread (MAD)
    is at most a quarter of their median (and at most 1 frame), no flash
    longer than the median interval minus one frame (a steady light is no
    flash), and "on" frames making 10-80 % of the series.

    Parameters
    ----------
    on : ndarray of bool, shape (N,)
        Frame by frame, from the track's first frame to its last.
    max_period : float
        Longest period, frames.

    Returns
    -------
    float
        The median interval between flash starts, frames; NaN.
    """
    on = np.asarray(on, bool)
    if on.size < 5 or not 0.1 <= on.mean() <= 0.8:
        return float("nan")
    edges = np.diff(np.concatenate([[0], on.astype(int), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if starts.size < 3:
        return float("nan")
    gaps = np.diff(starts).astype(float)
    period = float(np.median(gaps))
    spread = float(np.median(np.abs(gaps - period)))
    longest = int((stops - starts).max())
    if (
        2 <= period <= max_period
        and spread <= min(1.0, 0.25 * period)
        and longest <= max(1.0, period - 1.0)
    ):
        return period
    return float("nan")


def _column(lc: Table, name: str) -> np.ndarray:
    return np.asarray(lc[name], float) if name in lc.colnames else np.full(len(lc), np.nan)


def track_features(lc: Table, *, fps: float, n_frames: int | None = None) -> dict[str, Any]:
    """Features of one tracked object (see the module docstring).

    Parameters
    ----------
    lc : astropy.table.Table
        One row per frame: ``frame``, ``x``, ``y``, ``flux`` (ADU), and
        optionally ``flux_err`` (ADU) and ``ang_speed`` (deg/s).
    fps : float
        Frames per second.
    n_frames : int, optional
        Frames in the clip, for ``at_clip_edge``.

    Returns
    -------
    dict
        ``n_rows``, ``span``, ``duration_s``, ``length_px``,
        ``straight_rms_px``, ``speed``, ``speed_unit`` ("deg/s" or
        "px/frame"), ``px_per_frame``, ``blink_period`` (frames, NaN),
        ``blink_s``, ``flux_scatter``, ``mag_spread``, ``rise_fall`` (mag),
        ``at_clip_edge``.

    Raises
    ------
    InputError
        If ``fps`` is not positive or a needed column is missing.
    """
    if not fps > 0:
        msg = f"fps must be > 0, got {fps!r}"
        raise InputError(msg)
    missing = [c for c in ("frame", "x", "y", "flux") if c not in lc.colnames]
    if missing:
        msg = f"the light curve lacks the column(s) {missing}"
        raise InputError(msg)
    order = np.argsort(np.asarray(lc["frame"], int))
    frame = np.asarray(lc["frame"], int)[order]
    x, y = _column(lc, "x")[order], _column(lc, "y")[order]
    flux = _column(lc, "flux")[order]
    n = len(frame)
    span = int(frame[-1] - frame[0] + 1) if n else 0
    f: dict[str, Any] = {"n_rows": n, "span": span, "duration_s": span / fps}
    pts = np.column_stack([x, y])
    ok = np.all(np.isfinite(pts), axis=1)
    length = float(np.hypot(*(pts[ok][-1] - pts[ok][0]))) if ok.sum() >= 2 else 0.0
    f["length_px"] = length
    if ok.sum() >= 3:
        c = pts[ok] - pts[ok].mean(axis=0)
        # RMS distance from the total-least-squares line: the smaller singular value
        f["straight_rms_px"] = float(np.linalg.svd(c, compute_uv=False)[-1] / np.sqrt(ok.sum()))
    else:
        f["straight_rms_px"] = 0.0
    px_frame = length / max(span - 1, 1)
    f["px_per_frame"] = px_frame
    ang = _column(lc, "ang_speed")[order]
    if np.isfinite(ang).sum() >= 2:
        f["speed"], f["speed_unit"] = float(np.nanmedian(ang)), "deg/s"
    else:
        f["speed"], f["speed_unit"] = px_frame, "px/frame"
    # flashes: frames whose flux reaches half the track's bright level (missing frames are off)
    on = np.zeros(span, bool)
    level = np.zeros(span)
    if n:
        bright = np.nanpercentile(flux, 90) if np.isfinite(flux).any() else np.nan
        lit = np.nan_to_num(flux, nan=0.0) >= 0.5 * bright if bright > 0 else np.zeros(n, bool)
        on[frame - frame[0]] = lit
        level[frame - frame[0]] = np.nan_to_num(flux, nan=0.0)
    # a strobe is dark (or a dim steady light) between flashes: the frames between them hold
    # at most 30 % of a flash's light (a noisy steady object flickers about half its level)
    contrast = on.any() and (~on).any() and np.median(level[~on]) <= 0.3 * np.median(level[on])
    f["blink_period"] = blink_period(on, max_period=3.0 * fps) if contrast else float("nan")
    f["blink_s"] = f["blink_period"] / fps
    # light-curve shape from magnitudes (saturated frames at their bright limit)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)
    good = np.isfinite(mag)
    if good.sum() >= 3:
        # a running median over ~1/10 of the track (3 rows at least) takes the photometric
        # noise of a faint object out of the shape
        m = ndimage.median_filter(mag[good], size=max(3, good.sum() // 10 | 1), mode="nearest")
        f["mag_spread"] = float(1.4826 * np.median(np.abs(m - np.median(m))))
        k = max(1, len(m) // 5)
        f["rise_fall"] = float(max(np.median(m[:k]), np.median(m[-k:])) - m.min())
    else:
        f["mag_spread"], f["rise_fall"] = float("nan"), float("nan")
    # a faint object's light curve is noise: constant within its errors is steady too
    ferr = _column(lc, "flux_err")[order]
    ok = np.isfinite(flux) & np.isfinite(ferr)
    f["flux_scatter"] = (
        float(1.4826 * np.median(np.abs(flux[ok] - np.median(flux[ok]))) / np.median(ferr[ok]))
        if ok.sum() >= 3 and np.median(ferr[ok]) > 0
        else float("nan")
    )
    f["at_clip_edge"] = bool(
        n and n_frames is not None and (frame[0] <= 0 or frame[-1] >= n_frames - 1)
    )
    return f


def classify_track(
    lc: Table,
    *,
    fps: float,
    n_frames: int | None = None,
    rules: KindRules = RULES,
) -> KindVerdict:
    """Meteor, aircraft, satellite or unknown: :data:`RULES` applied to :func:`track_features`.

    Parameters
    ----------
    lc : astropy.table.Table
        The object's light curve (see :func:`track_features`).
    fps : float
        Frames per second.
    n_frames : int, optional
        Frames in the clip.
    rules : KindRules, optional

    Returns
    -------
    KindVerdict

    Raises
    ------
    InputError
        As :func:`track_features`.
    """
    f = track_features(lc, fps=fps, n_frames=n_frames)
    r = rules
    cal = f["speed_unit"] == "deg/s"
    speed = f"{f['speed']:.2f} {f['speed_unit']}"
    if f["n_rows"] < r.min_rows:
        return KindVerdict("unknown", f"tracked in {f['n_rows']} frames only", f)
    dev = max(r.max_dev_px, r.max_dev_fraction * f["length_px"])
    if f["straight_rms_px"] > dev:
        return KindVerdict(
            "unknown", f"not a straight path ({f['straight_rms_px']:.1f} px RMS off its line)", f
        )
    fast = f["speed"] >= (r.meteor_deg_s if cal else r.meteor_px_frame)
    if cal and f["speed"] > r.max_deg_s:
        return KindVerdict("unknown", f"faster than a meteor ({speed})", f)
    if fast:
        return KindVerdict("meteor", f"fast ({speed}), {f['duration_s']:.2f} s", f)
    if np.isfinite(f["blink_period"]):
        return KindVerdict(
            "aircraft",
            f"slow ({speed}), blinking every {f['blink_period']:.1f} frames ({f['blink_s']:.2f} s)",
            f,
        )
    steady = (f["mag_spread"] <= r.steady_mag and not f["rise_fall"] >= r.rise_fall_mag) or (
        f["flux_scatter"] <= r.noise_scatter
    )
    edge = f["at_clip_edge"] and f["duration_s"] >= r.satellite_edge_s
    if steady and (edge or f["duration_s"] >= r.satellite_s):
        where = "present at the clip's start or end" if f["at_clip_edge"] else "long"
        return KindVerdict(
            "satellite",
            f"slow ({speed}), steady ({f['mag_spread']:.2f} mag spread), {where}, "
            f"{f['duration_s']:.1f} s",
            f,
        )
    if not f["at_clip_edge"] and f["rise_fall"] >= r.rise_fall_mag:
        return KindVerdict(
            "meteor",
            f"slow ({speed}) but appears and ends inside the clip, rising or fading by "
            f"{f['rise_fall']:.1f} mag in {f['duration_s']:.2f} s",
            f,
        )
    return KindVerdict("unknown", f"slow ({speed}), neither blinking nor a meteor's light curve", f)


def classify_lightcurve(
    lc: Table,
    *,
    fps: float,
    n_frames: int | None = None,
    messages: list[str] | None = None,
    rules: KindRules = RULES,
) -> tuple[Table, Table | None, KindVerdict | None]:
    """Give a run's light curve its ``kind``; take an aircraft or satellite out of it.

    Parameters
    ----------
    lc : astropy.table.Table
        The light curve of :func:`skysift.bolide.pipeline.run_bolide` (one object).
    fps : float
    n_frames : int, optional
        Frames in the clip.
    messages : list of str, optional
        The verdict line is appended (and, for a non-meteor, that no bolide
        is reported).
    rules : KindRules, optional

    Returns
    -------
    lightcurve : astropy.table.Table
        With a ``kind`` column (and ``meta["kind"]``, ``meta["kind_reason"]``);
        no rows when the object is an aircraft or a satellite.
    rejected : astropy.table.Table or None
        The aircraft's or satellite's track (with ``kind``), else None.
    verdict : KindVerdict or None
        None for an empty light curve.

    Raises
    ------
    InputError
        As :func:`track_features`.
    """
    lc = lc.copy(copy_data=False)
    if len(lc) == 0:
        lc["kind"] = np.zeros(0, dtype="U9")
        return lc, None, None
    verdict = classify_track(lc, fps=fps, n_frames=n_frames, rules=rules)
    lc["kind"] = np.full(len(lc), verdict.kind, dtype="U9")
    lc["kind"].description = "what the tracked object is: meteor, aircraft, satellite, unknown"
    lc.meta["kind"], lc.meta["kind_reason"] = verdict.kind, verdict.reason
    if messages is not None:
        messages.append(verdict.line)
    if verdict.kind in ("aircraft", "satellite"):
        if messages is not None:
            frames = np.asarray(lc["frame"], int)
            article = "an" if verdict.kind == "aircraft" else "a"
            messages.append(
                f"the object tracked in frames {frames.min()}-{frames.max()} is {article} "
                f"{verdict.kind}: not reported as a bolide"
            )
        return lc[:0], lc, verdict
    return lc, None, verdict
