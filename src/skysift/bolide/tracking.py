"""Head tracking on real meteor video: overlays, sky glow and slow, saturated heads.

Real meteor-camera clips (8-bit, lossy, low resolution) break three
assumptions of the flow-based motion zone and the difference-image masks
tuned on the simulator:

* a **burned-in timestamp** changes every frame near an edge of the image and
  is the strongest "motion" in the clip: :func:`overlay_mask` finds it (pixels
  in a band along the edges that change by a large step in many frames) so it
  can be cut from the sky;
* a bright fireball **lights the whole sky** (and the clouds): a 2-sigma
  threshold of ``frame - background`` then covers the whole frame.
  :func:`sky_glow` is the large-scale part of a difference image (a block
  median), removed before the head is looked for;
* a fireball coming towards the camera moves **less than a pixel per frame**
  and its head is a saturated blob: the optical flow sees no motion above its
  threshold. :func:`find_head_track` instead finds compact peaks of the
  glow-free difference in every frame and keeps the set that lies on one
  path with a steady motion (a RANSAC fit of a line in (t, x, y), refined by
  a quadratic in t), in the manner of track-before-detect linking of
  meteor detections (e.g. Gural 2008, "Algorithms and software for meteor
  detection", Earth Moon Planets 102, 269). Stationary flickers (lights,
  hot pixels) are not tracks: the motion must exceed ``min_speed``.

:func:`track_masks` turns the track into per-frame bolide masks (the
compact component around the tracked peak) for the photometry of
:mod:`skysift.bolide.measurement`.

Pixel coordinates are 0-based, (0, 0) the centre of the first pixel, x the
column. Data-quality masks: ``True`` = bad; bolide masks: ``True`` = bolide.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from astropy.table import Table
from scipy import ndimage

from skysift.bolide.measurement import fit_trajectory, track_head
from skysift.errors import InputError

__all__ = [
    "HeadTrack",
    "find_head_track",
    "follow_head",
    "head_table",
    "overlay_mask",
    "sky_glow",
    "track_coverage",
    "track_masks",
]


def _check_cube(cube: np.ndarray) -> np.ndarray:
    cube = np.asarray(cube, dtype=np.float32)
    if cube.ndim != 3 or cube.shape[0] < 3:
        msg = f"a (T, H, W) clip with T >= 3 is needed, got shape {cube.shape}"
        raise InputError(msg)
    return cube


def overlay_mask(
    cube: np.ndarray,
    *,
    edge_fraction: float = 0.15,
    min_change_fraction: float = 0.2,
    step_fraction: float = 0.15,
    margin: int = 3,
) -> np.ndarray:
    """Burned-in text that changes from frame to frame (timestamps, frame counters).

    A pixel is "overlay" when it lies in a band of ``edge_fraction`` of the
    image along any edge and its value jumps between consecutive frames by
    more than ``step_fraction`` of the clip's dynamic range (1st to 99.9th
    percentile of the median frame; at least 12 noise sigmas) in at least
    ``min_change_fraction`` of the frame pairs. A meteor, a cloud lit by a
    fireball or a twinkling star changes a pixel in a few frames only; the
    digits of a clock change in most. The changing pixels are closed into
    text lines and each line's bounding box (plus ``margin``) is masked.

    Parameters
    ----------
    cube : ndarray, shape (T, H, W)
        The clip, T >= 3.
    edge_fraction : float, optional
        Width of the edge bands searched, as a fraction of the image's height
        (top and bottom bands) and width (left and right bands). Default 0.15.
    min_change_fraction : float, optional
        Fraction of frame pairs in which an overlay pixel jumps. Default 0.2.
    step_fraction : float, optional
        A jump, as a fraction of the clip's dynamic range. Default 0.15.
    margin : int, optional
        Pixels added around each text box. Default 3.

    Returns
    -------
    ndarray of bool, shape (H, W)
        ``True`` = overlay (not sky).

    Raises
    ------
    InputError
        If ``cube`` is not ``(T, H, W)`` with T >= 3 or ``edge_fraction`` is
        not in (0, 0.5].
    """
    cube = _check_cube(cube)
    if not 0 < edge_fraction <= 0.5:
        msg = f"edge_fraction must be in (0, 0.5], got {edge_fraction!r}"
        raise InputError(msg)
    t, h, w = cube.shape
    ref = np.median(cube[:: max(1, t // 25)], axis=0)
    lo, hi = np.percentile(ref, [1.0, 99.9])
    band = np.zeros((h, w), bool)
    eh, ew = max(1, round(edge_fraction * h)), max(1, round(edge_fraction * w))
    band[:eh], band[-eh:], band[:, :ew], band[:, -ew:] = True, True, True, True
    # frame-to-frame jumps of the band's pixels only (T-1, N)
    jumps = np.abs(np.diff(cube[:, band], axis=0))
    noise = 1.4826 * float(np.median(jumps[:, :: max(1, jumps.shape[1] // 20_000)])) / np.sqrt(2.0)
    step = max(step_fraction * float(hi - lo), 12.0 * noise, 1e-6)
    changing = np.zeros((h, w), bool)
    changing[band] = (jumps > step).mean(axis=0) >= min_change_fraction
    out = np.zeros((h, w), bool)
    if not changing.any():
        return out
    # join the digits of a line of text (gaps of a few pixels) before boxing
    lines = ndimage.binary_closing(changing, structure=np.ones((3, 9)), iterations=2) | changing
    labels, n = ndimage.label(lines)
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        rows, cols = sl
        out[
            max(0, rows.start - margin) : min(h, rows.stop + margin),
            max(0, cols.start - margin) : min(w, cols.stop + margin),
        ] = True
    return out


def sky_glow(diff: np.ndarray, *, box: int = 32, sky: np.ndarray | None = None) -> np.ndarray:
    """Large-scale part of a difference image: sky and clouds lit by the fireball.

    The median of ``box`` x ``box`` blocks (sky pixels only; taken on a
    4 x 4 binned copy when ``box`` is a multiple of 4), median-filtered
    over 3 x 3 blocks and interpolated back (bilinear) to full size. Compact
    sources smaller than about ``box`` (the head, stars) do not reach it.

    Parameters
    ----------
    diff : ndarray, shape (H, W)
        ``frame - background``.
    box : int, optional
        Block size, pixels. Default 32.
    sky : ndarray of bool (H, W), optional
        ``True`` = sky; other pixels are ignored (blocks without sky take 0).

    Returns
    -------
    ndarray, shape (H, W), float32

    Raises
    ------
    InputError
        If ``box`` < 4 or ``diff`` is not 2-D.
    """
    diff = np.asarray(diff, dtype=np.float32)
    if diff.ndim != 2:
        msg = f"diff must be a 2-D image, got shape {diff.shape}"
        raise InputError(msg)
    if box < 4:
        msg = f"box must be >= 4 pixels, got {box!r}"
        raise InputError(msg)
    h, w = diff.shape
    ny, nx = -(-h // box), -(-w // box)
    # the block medians are taken on a 4x4-binned copy (the glow is smooth): 16 times fewer values
    f = 4 if box % 4 == 0 and box >= 16 else 1
    d = np.where(sky, diff, np.nan) if sky is not None else diff
    pad = np.full((ny * box, nx * box), np.nan, np.float32)
    pad[:h, :w] = d
    if f > 1:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pad = np.nanmean(pad.reshape(ny * box // f, f, nx * box // f, f), axis=(1, 3))
    b = box // f
    blocks = pad.reshape(ny, b, nx, b).transpose(0, 2, 1, 3).reshape(ny, nx, -1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        # blocks without sky are all-NaN (expected): they take 0 below
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(blocks, axis=2)
    med = np.nan_to_num(med, nan=0.0).astype(np.float32)
    if min(ny, nx) >= 3:
        med = ndimage.median_filter(med, size=3, mode="nearest")
    # block centres -> pixels: resize of the padded grid, then crop
    full = cv2.resize(med, (nx * box, ny * box), interpolation=cv2.INTER_LINEAR)
    return full[:h, :w]


@dataclass
class HeadTrack:
    """The head of a moving transient, frame by frame (:func:`find_head_track`).

    Attributes
    ----------
    table : astropy.table.Table
        One row per frame from the first to the last detection: ``frame``,
        ``x``, ``y`` (pixels; the detected peak, or the fitted path where the
        frame had no detection), ``snr`` (of the smoothed, glow-free
        difference; NaN where not detected), ``detected``.
    coeffs : ndarray, shape (2, 3)
        Quadratic path ``x(t), y(t)`` (rows; highest power first, t = frame).
    rms_px : float
        RMS distance of the detections from the path, px.
    """

    table: Table
    coeffs: np.ndarray
    rms_px: float

    @property
    def frames(self) -> list[int]:
        """Frame indices from the first to the last detection."""
        return [int(f) for f in self.table["frame"]]

    @property
    def n_detected(self) -> int:
        """Frames with a detection on the track."""
        return int(np.sum(self.table["detected"]))

    @property
    def speed_px(self) -> float:
        """Median speed along the path, pixels per frame."""
        t = np.asarray(self.table["frame"], float)
        vx = np.polyval(np.polyder(self.coeffs[0]), t)
        vy = np.polyval(np.polyder(self.coeffs[1]), t)
        return float(np.median(np.hypot(vx, vy)))

    def position(self, frame) -> tuple[np.ndarray, np.ndarray]:
        """The fitted path's ``(x, y)`` at frame indices."""
        t = np.asarray(frame, float)
        return np.polyval(self.coeffs[0], t), np.polyval(self.coeffs[1], t)


def _candidates(
    cube: np.ndarray,
    background: np.ndarray,
    sky: np.ndarray | None,
    *,
    smooth: float,
    min_snr: float,
    per_frame: int,
    box: int,
) -> np.ndarray:
    """Local maxima of the glow-free smoothed difference: rows (t, x, y, snr)."""
    out = []
    kernel = np.ones((7, 7), np.uint8)
    for i, frame in enumerate(cube):
        diff = np.nan_to_num(frame - background).astype(np.float32)
        s = cv2.GaussianBlur(diff - sky_glow(diff, box=box, sky=sky), (0, 0), smooth)
        vals = s[sky] if sky is not None and sky.any() else s.ravel()
        vals = vals[:: max(1, vals.size // 50_000)]  # a robust sigma needs no more
        sig = 1.4826 * float(np.median(np.abs(vals - np.median(vals))))
        sig = sig if sig > 0 else 1.0
        # local maxima over 7 x 7 px (a grey dilation is the running maximum)
        peak = (s >= cv2.dilate(s, kernel)) & (s > min_snr * sig)
        if sky is not None:
            peak &= sky
        ys, xs = np.nonzero(peak)
        if xs.size == 0:
            continue
        snr = s[ys, xs] / sig
        top = np.argsort(snr)[::-1][:per_frame]
        out.extend((i, xs[k], ys[k], snr[k]) for k in top)
    return np.array(out, float).reshape(-1, 4)


def _inliers(pts: np.ndarray, cx, cy, tol: float) -> np.ndarray:
    """Best candidate per frame within ``tol`` of the path: boolean over ``pts``."""
    px, py = np.polyval(cx, pts[:, 0]), np.polyval(cy, pts[:, 0])
    r = np.hypot(pts[:, 1] - px, pts[:, 2] - py)
    ok = r <= tol
    keep = np.zeros(len(pts), bool)
    if not ok.any():
        return keep
    # one point per frame: the nearest to the path
    idx = np.flatnonzero(ok)
    order = idx[np.lexsort((r[idx], pts[idx, 0]))]
    _, first = np.unique(pts[order, 0], return_index=True)
    keep[order[first]] = True
    return keep


def find_head_track(
    cube: np.ndarray,
    background: np.ndarray,
    *,
    sky: np.ndarray | None = None,
    min_snr: float = 6.0,
    smooth: float = 1.5,
    per_frame: int = 6,
    tol: float = 4.0,
    min_frames: int = 4,
    min_speed: float = 0.2,
    max_speed: float = 80.0,
    max_gap: int = 3,
    glow_box: int = 32,
    n_trials: int = 3000,
    rng: np.random.Generator | int | None = 0,
) -> HeadTrack | None:
    """Find the moving head of a bolide in a clip: compact peaks on one steady path.

    1. Each frame's difference from the background, less its sky glow
       (:func:`sky_glow`), smoothed by a Gaussian of ``smooth`` px, gives
       candidates: local maxima above ``min_snr`` times the frame's robust
       noise (1.4826 MAD over the sky), the ``per_frame`` strongest.
    2. RANSAC: lines ``(x, y) = p + v t`` through two candidates of different
       frames (``min_speed <= |v| <= max_speed`` px/frame) score the SNR
       (capped at 50) of the best candidate per frame within ``tol`` px.
    3. The best line is refined by a quadratic in t (deceleration, fisheye
       curvature) and its inliers retaken twice; the run of frames without
       gaps longer than ``max_gap`` holding the most signal is the track.

    Parameters
    ----------
    cube : ndarray, shape (T, H, W)
    background : ndarray, shape (H, W)
        The clip's background (per-pixel median).
    sky : ndarray of bool (H, W), optional
        ``True`` = sky (cut the overlay and the horizon out of it).
    min_snr, smooth, per_frame, tol, min_frames, min_speed, max_speed, max_gap : optional
        See above; ``min_frames`` detections are needed for a track.
    glow_box : int, optional
        Block size of :func:`sky_glow`, px. Default 32.
    n_trials : int, optional
        RANSAC trials. Default 3000.
    rng : Generator, int or None, optional
        Random state of the RANSAC sampling. Default 0 (reproducible).

    Returns
    -------
    HeadTrack or None
        None when no track of ``min_frames`` detections exists.

    Raises
    ------
    InputError
        For a cube that is not ``(T, H, W)`` with T >= 3, or a background of
        another shape.
    """
    cube = _check_cube(cube)
    background = np.asarray(background, np.float32)
    if background.shape != cube.shape[1:]:
        msg = f"background shape {background.shape} differs from the frames' {cube.shape[1:]}"
        raise InputError(msg)
    gen = np.random.default_rng(rng)
    pts = _candidates(
        cube, background, sky, smooth=smooth, min_snr=min_snr, per_frame=per_frame, box=glow_box
    )
    if len(pts) < min_frames or len(np.unique(pts[:, 0])) < min_frames:
        return None
    w = np.minimum(pts[:, 3], 50.0)
    prob = w / w.sum()
    best, best_score = None, 0.0
    for _ in range(n_trials):
        a, b = gen.choice(len(pts), 2, replace=False, p=prob)
        dt = pts[b, 0] - pts[a, 0]
        if dt == 0 or abs(dt) > 4 * max_gap + 4:
            continue
        v = (pts[b, 1:3] - pts[a, 1:3]) / dt
        speed = float(np.hypot(*v))
        if not min_speed <= speed <= max_speed:
            continue
        cx = np.array([v[0], pts[a, 1] - v[0] * pts[a, 0]])
        cy = np.array([v[1], pts[a, 2] - v[1] * pts[a, 0]])
        keep = _inliers(pts, cx, cy, tol + 0.1 * speed)
        score = float(w[keep].sum())
        if score > best_score:
            best, best_score = (cx, cy), score
    if best is None:
        return None
    cx, cy = best
    speed = float(np.hypot(cx[0], cy[0]))
    for _ in range(3):
        keep = _inliers(pts, cx, cy, tol + 0.1 * speed)
        keep = _longest_run(pts, keep, w, max_gap)
        if keep.sum() < 3:
            return None
        deg = 2 if keep.sum() >= 6 else 1
        cx = np.polyfit(pts[keep, 0], pts[keep, 1], deg, w=np.sqrt(w[keep]))
        cy = np.polyfit(pts[keep, 0], pts[keep, 2], deg, w=np.sqrt(w[keep]))
    keep = _longest_run(pts, _inliers(pts, cx, cy, tol), w, max_gap)
    if keep.sum() < min_frames:
        return None
    sel = pts[keep]
    cx, cy = (np.pad(c, (3 - len(c), 0)) for c in (cx, cy))
    t = sel[:, 0]
    vx, vy = np.polyval(np.polyder(cx), t), np.polyval(np.polyder(cy), t)
    net = float(np.hypot(sel[-1, 1] - sel[0, 1], sel[-1, 2] - sel[0, 2]))
    if np.median(np.hypot(vx, vy)) < min_speed or net < max(3.0, 2 * tol):
        return None  # a stationary flicker (a light, a hot pixel), not a moving head
    frames = np.arange(int(t.min()), int(t.max()) + 1)
    px, py = np.polyval(cx, frames), np.polyval(cy, frames)
    snr = np.full(len(frames), np.nan)
    det = np.zeros(len(frames), bool)
    pos = {int(r[0]): r for r in sel}
    for k, f in enumerate(frames):
        if f in pos:
            px[k], py[k], snr[k], det[k] = pos[f][1], pos[f][2], pos[f][3], True
    rx = sel[:, 1] - np.polyval(cx, t)
    ry = sel[:, 2] - np.polyval(cy, t)
    table = Table(
        {"frame": frames, "x": px, "y": py, "snr": snr, "detected": det},
        meta={"rms_px": float(np.sqrt(np.mean(rx**2 + ry**2)))},
    )
    table["x"].unit = table["y"].unit = "pix"
    return HeadTrack(table, np.vstack([cx, cy]), float(np.sqrt(np.mean(rx**2 + ry**2))))


def _longest_run(pts: np.ndarray, keep: np.ndarray, w: np.ndarray, max_gap: int) -> np.ndarray:
    """The inliers of the run of frames (gaps <= max_gap) holding the most weight."""
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return keep
    idx = idx[np.argsort(pts[idx, 0])]
    t = pts[idx, 0]
    breaks = np.flatnonzero(np.diff(t) > max_gap + 1) + 1
    runs = np.split(np.arange(idx.size), breaks)
    best = max(runs, key=lambda r: float(w[idx[r]].sum()))
    out = np.zeros_like(keep)
    out[idx[best]] = True
    return out


def track_masks(
    cube: np.ndarray,
    background: np.ndarray,
    track: HeadTrack,
    *,
    sky: np.ndarray | None = None,
    smooth: float = 1.0,
    level: float = 3.0,
    peak_fraction: float = 0.1,
    radius: float = 12.0,
    glow_box: int = 32,
) -> dict[int, np.ndarray]:
    """Bolide masks along a head track: the compact component at the head.

    In each frame of the track, the glow-free difference smoothed by
    ``smooth`` px is thresholded at the larger of ``level`` times its robust
    noise and ``peak_fraction`` of its value at the head; the connected
    component nearest the track point, cut to ``radius`` + 2 x the speed
    (px per frame) around it, is the mask.

    Parameters
    ----------
    cube : ndarray, shape (T, H, W)
    background : ndarray, shape (H, W)
    track : HeadTrack
    sky : ndarray of bool (H, W), optional
        ``True`` = sky.
    smooth, level, peak_fraction, radius, glow_box : optional
        See above.

    Returns
    -------
    dict int -> ndarray of bool (H, W)
        Frame index -> mask (``True`` = bolide); frames of the track whose
        head is lost in the noise have an empty mask.
    """
    out: dict[int, np.ndarray] = {}
    h, w = background.shape
    for r in track.table:
        i = int(r["frame"])
        diff = np.nan_to_num(cube[i] - background)
        s = diff - sky_glow(diff, box=glow_box, sky=sky)
        if smooth > 0:
            s = ndimage.gaussian_filter(s, smooth)
        vals = s[sky] if sky is not None and sky.any() else s.ravel()
        sig = 1.4826 * float(np.median(np.abs(vals - np.median(vals)))) or 1.0
        x, y = float(r["x"]), float(r["y"])
        xi, yi = int(np.clip(round(x), 0, w - 1)), int(np.clip(round(y), 0, h - 1))
        y0, y1 = max(0, yi - 3), min(h, yi + 4)
        x0, x1 = max(0, xi - 3), min(w, xi + 4)
        head = float(s[y0:y1, x0:x1].max())
        on = s > max(level * sig, peak_fraction * head)
        if sky is not None:
            on &= sky
        yy, xx = np.ogrid[:h, :w]
        on &= (xx - x) ** 2 + (yy - y) ** 2 <= (radius + 2 * track.speed_px) ** 2
        labels, n = ndimage.label(on, structure=np.ones((3, 3)))
        m = np.zeros((h, w), bool)
        if n:
            ys, xs = np.nonzero(labels)
            k = int(np.argmin((xs - x) ** 2 + (ys - y) ** 2))
            if (xs[k] - x) ** 2 + (ys[k] - y) ** 2 <= 9.0 + 4 * track.speed_px**2:
                m = labels == labels[ys[k], xs[k]]
        out[i] = m
    return out


def track_coverage(masks: dict[int, np.ndarray], track: HeadTrack, *, tol: float = 5.0) -> float:
    """Fraction of the track's detected frames where ``masks`` hold a pixel near the head.

    Used to tell whether the segmenter already follows the head the tracker
    found (then its masks are kept).
    """
    det = track.table[track.table["detected"]]
    if len(det) == 0:
        return 0.0
    hit = 0
    for r in det:
        m = masks.get(int(r["frame"]))
        if m is None or not m.any():
            continue
        ys, xs = np.nonzero(m)
        if np.min((xs - r["x"]) ** 2 + (ys - r["y"]) ** 2) <= tol**2:
            hit += 1
    return hit / len(det)


def follow_head(
    cube: np.ndarray,
    background: np.ndarray,
    masks: dict[int, np.ndarray],
    *,
    sky: np.ndarray | None = None,
    min_coverage: float = 0.8,
    messages: list[str] | None = None,
) -> tuple[dict[int, np.ndarray], list[int] | None]:
    """Check the segmenter's masks against the head track; replace them where they miss it.

    The segmenter (flow-based motion zone, then the U-Net or the classical
    mask) is kept when its masks hold the tracked head in at least
    ``min_coverage`` of the track's detected frames and give (through the
    path fit and :func:`~skysift.bolide.measurement.track_head`) at least
    ``min_coverage`` times as many head frames (or when no track is found);
    otherwise the masks of :func:`track_masks` replace them and the
    track's frames are the head frames.

    Parameters
    ----------
    cube : ndarray, shape (T, H, W)
    background : ndarray, shape (H, W)
    masks : dict int -> ndarray of bool (H, W)
        The segmenter's masks (may be empty).
    sky : ndarray of bool (H, W), optional
        ``True`` = sky.
    min_coverage : float, optional
        Default 0.8.
    messages : list of str, optional
        A note is appended when the track's masks are used.

    Returns
    -------
    masks : dict int -> ndarray of bool (H, W)
    head_frames : list of int or None
        The frames of the track when its masks are used (every one is a head
        frame); None when the segmenter's masks are kept.
    """
    track = find_head_track(cube, background, sky=sky)
    if track is None:
        return masks, None
    cover = track_coverage(masks, track)
    n_heads = _segmenter_heads(masks)
    if cover >= min_coverage and n_heads >= min_coverage * track.n_detected:
        return masks, None
    new = track_masks(cube, background, track, sky=sky)
    if messages is not None:
        messages.append(
            f"head tracked in {track.n_detected} frames ({track.frames[0]}-{track.frames[-1]}) "
            f"by the transient tracker ({track.speed_px:.2f} px/frame; the segmenter's masks held "
            f"it in {cover:.0%} of them and gave {n_heads} head frames)"
        )
    return new, [f for f in track.frames if new[f].any()]


def _segmenter_heads(masks: dict[int, np.ndarray]) -> int:
    """Head frames the segmenter's masks give through the path fit and :func:`track_head`."""
    traj = fit_trajectory(masks)
    if traj is None:
        return 0
    return int(np.sum(track_head(masks, traj)["head"]))


def head_table(masks: dict[int, np.ndarray], trajectory, frames: list[int]) -> Table:
    """A :func:`~skysift.bolide.measurement.track_head` table with every listed frame a head frame.

    ``s_lead`` / ``s_tail`` are the largest / smallest distance along the
    path of the frame's mask pixels (px).
    """
    rows = []
    for i in frames:
        ys, xs = np.nonzero(masks[i])
        s, _ = trajectory.project(xs, ys)
        rows.append((i, float(s.max()), float(s.min()), int(s.size), bool(s.size)))
    names = ["frame", "s_lead", "s_tail", "n_pixels", "head"]
    if not rows:
        return Table(names=names, dtype=[int, float, float, int, bool])
    return Table(rows=rows, names=names)
