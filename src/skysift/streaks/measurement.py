"""Streak geometry from a per-pixel streak probability (or score) map.

The same measurement serves every streak detector: the classical finder of
:mod:`skysift.streaks.detection` and, later, a learned U-Net segmenter. The map
is thresholded, its connected components are fitted with straight lines
(intensity-weighted principal axes, i.e. total least squares), collinear
pieces of one streak are merged, and each streak is measured: endpoints,
length, angle, width, flux, SNR and mean probability.

Endpoints
---------
Without an image the component is taken as the streak segment widened by a
disk (a "capsule", the ground-truth mask of the Unistellar satellite paper,
§2.2.4): the extremes of the pixel projections on the axis are pulled in by
the half-width ``r = sqrt(3) * sigma_perp`` (a uniform band of full width
``2 r`` has ``sigma_perp = r / sqrt(3)``). With an image each component is
refined by a least-squares fit of a PSF-blurred segment,
``A exp(-p^2 / 2 s^2) [Phi((l - l1) / s) - Phi((l - l2) / s)]`` (``l`` along,
``p`` across the line), to the background-subtracted pixels around it: the
ends of a Gaussian-blurred uniform segment are where the along-track light
falls to half, independent of the detection threshold.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table
from scipy import ndimage
from scipy.optimize import least_squares
from scipy.special import ndtr

from skysift.errors import InputError, NoDetectionsWarning

__all__ = ["STREAK_COLUMNS", "SKY_COLUMNS", "empty_streak_table", "streaks_from_probability"]

STREAK_COLUMNS: dict[str, tuple[type, str | None, str]] = {
    "x1": (float, "pix", "first endpoint, column (0-based)"),
    "y1": (float, "pix", "first endpoint, row (0-based)"),
    "x2": (float, "pix", "second endpoint, column (0-based)"),
    "y2": (float, "pix", "second endpoint, row (0-based)"),
    "length": (float, "pix", "distance between the endpoints"),
    "angle": (float, "deg", "direction, counter-clockwise from +x, in [0, 180)"),
    "width": (float, "pix", "FWHM across the streak"),
    "flux": (float, None, "background-subtracted sum over the streak mask (image units)"),
    "snr": (float, None, "flux / (sigma * sqrt(n_pix))"),
    "score": (float, None, "mean probability over the streak mask"),
    "n_pix": (int, None, "pixels in the streak mask"),
    "n_segments": (int, None, "connected components merged into the streak"),
    "crosses_border": (bool, None, "the streak mask touches the image border"),
}
SKY_COLUMNS: dict[str, tuple[type, str | None, str]] = {
    "ra1": (float, "deg", "RA of (x1, y1), ICRS"),
    "dec1": (float, "deg", "Dec of (x1, y1), ICRS"),
    "ra2": (float, "deg", "RA of (x2, y2), ICRS"),
    "dec2": (float, "deg", "Dec of (x2, y2), ICRS"),
}


def empty_streak_table(sky: bool = False) -> Table:
    """An empty streak table with the full schema (``sky``: with RA/Dec columns)."""
    cols = dict(STREAK_COLUMNS, **(SKY_COLUMNS if sky else {}))
    t = Table()
    for name, (dtype, unit, desc) in cols.items():
        t[name] = np.zeros(0, dtype=dtype)
        t[name].unit = unit
        t[name].description = desc
    return t


@dataclass
class _Segment:
    """One connected component (or a merged set of them)."""

    ys: np.ndarray
    xs: np.ndarray
    w: np.ndarray  # weights for the line fit
    n_segments: int = 1
    centre: np.ndarray = field(default_factory=lambda: np.zeros(2))
    u: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0]))
    l_lo: float = 0.0  # endpoints along u, relative to centre
    l_hi: float = 0.0
    sigma: float = 0.5  # perpendicular sigma, pixels
    fitted: bool = False

    def fit_line(self) -> None:
        w = self.w / self.w.sum()
        c = np.array([np.sum(w * self.xs), np.sum(w * self.ys)])
        dx, dy = self.xs - c[0], self.ys - c[1]
        cov = np.array(
            [[np.sum(w * dx * dx), np.sum(w * dx * dy)], [np.sum(w * dx * dy), np.sum(w * dy * dy)]]
        )
        evals, evecs = np.linalg.eigh(cov)
        u = evecs[:, 1]
        if u[0] < 0 or (u[0] == 0 and u[1] < 0):
            u = -u
        self.centre, self.u = c, u
        along = dx * u[0] + dy * u[1]
        perp = -dx * u[1] + dy * u[0]
        # binary pixels spread uniformly over each pixel: remove the 1/12 px^2 of pixelisation
        var_perp = max(float(np.sum(w * perp**2)) - 1.0 / 12.0, 1.0 / 12.0)
        self.sigma = float(np.sqrt(var_perp))
        r = np.sqrt(3.0) * self.sigma  # capsule half-width
        lo, hi = float(along.min()), float(along.max())
        shrink = min(r, 0.5 * (hi - lo))
        self.l_lo, self.l_hi = lo + shrink, hi - shrink

    def endpoints(self) -> np.ndarray:
        """``[[x1, y1], [x2, y2]]``."""
        return np.array([self.centre + self.l_lo * self.u, self.centre + self.l_hi * self.u])


def _angle_between(u: np.ndarray, v: np.ndarray) -> float:
    """Angle in degrees between two undirected lines, in [0, 90]."""
    return float(np.degrees(np.arccos(min(abs(float(u @ v)), 1.0))))


def _mergeable(a: _Segment, b: _Segment, max_angle: float, max_gap: float) -> bool:
    if _angle_between(a.u, b.u) > max_angle:
        return False
    # perpendicular offsets of the shorter piece's ends from the longer piece's line
    if (a.l_hi - a.l_lo) < (b.l_hi - b.l_lo):
        a, b = b, a
    tol = max(3.0, 2.0 * np.sqrt(3.0) * max(a.sigma, b.sigma))
    d = b.endpoints() - a.centre
    if np.max(np.abs(-d[:, 0] * a.u[1] + d[:, 1] * a.u[0])) > tol:
        return False
    # gap along the longer piece's line
    ea, eb = a.endpoints() @ a.u, b.endpoints() @ a.u
    gap = max(eb.min() - ea.max(), ea.min() - eb.max())
    return gap <= max_gap


def _merge(segs: list[_Segment], max_angle: float, max_gap: float) -> list[_Segment]:
    changed = True
    while changed and len(segs) > 1:
        changed = False
        for i in range(len(segs)):
            for j in range(i + 1, len(segs)):
                a, b = segs[i], segs[j]
                if _mergeable(a, b, max_angle, max_gap):
                    m = _Segment(
                        ys=np.concatenate([a.ys, b.ys]),
                        xs=np.concatenate([a.xs, b.xs]),
                        w=np.concatenate([a.w, b.w]),
                        n_segments=a.n_segments + b.n_segments,
                    )
                    m.fit_line()
                    # the merged ends: the extreme ends of the pieces, on the merged line
                    ends = np.concatenate([a.endpoints(), b.endpoints()]) - m.centre
                    along = ends @ m.u
                    m.l_lo, m.l_hi = float(along.min()), float(along.max())
                    m.sigma = float(np.average([a.sigma, b.sigma], weights=[a.ys.size, b.ys.size]))
                    m.fitted = a.fitted and b.fitted
                    segs = [s for k, s in enumerate(segs) if k not in (i, j)] + [m]
                    changed = True
                    break
            if changed:
                break
    return segs


def _fit_profile(seg: _Segment, resid: np.ndarray, sigma_noise: float) -> None:
    """Refine the ends and width of one component with a blurred-segment model."""
    h, w = resid.shape
    sig0 = max(seg.sigma, 0.6)
    pad = 3.0 * sig0 + 3.0
    ends = seg.endpoints()
    x0, x1 = (
        int(max(np.floor(ends[:, 0].min() - pad), 0)),
        int(min(np.ceil(ends[:, 0].max() + pad), w - 1)),
    )
    y0, y1 = (
        int(max(np.floor(ends[:, 1].min() - pad), 0)),
        int(min(np.ceil(ends[:, 1].max() + pad), h - 1)),
    )
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    dx, dy = xx - seg.centre[0], yy - seg.centre[1]
    along = dx * seg.u[0] + dy * seg.u[1]
    perp = -dx * seg.u[1] + dy * seg.u[0]
    sel = (np.abs(perp) <= pad) & (along >= seg.l_lo - pad) & (along <= seg.l_hi + pad)
    if sel.sum() < 10:
        return
    a, p, v = along[sel], perp[sel], resid[y0 : y1 + 1, x0 : x1 + 1][sel]
    ok = np.isfinite(v)
    a, p, v = a[ok], p[ok], v[ok]
    inside = (a > seg.l_lo) & (a < seg.l_hi) & (np.abs(p) < sig0)
    amp0 = float(np.median(v[inside])) if inside.any() else float(v.max())
    if not amp0 > 0:
        return

    def model(q: np.ndarray) -> np.ndarray:
        amp, p0, s, l1, l2 = q
        s = abs(s) + 1e-3
        return amp * np.exp(-0.5 * ((p - p0) / s) ** 2) * (ndtr((a - l1) / s) - ndtr((a - l2) / s))

    q0 = np.array([amp0, 0.0, sig0, seg.l_lo, seg.l_hi])
    try:
        res = least_squares(
            lambda q: (model(q) - v) / sigma_noise, q0, loss="soft_l1", f_scale=3.0, max_nfev=200
        )
    except (ValueError, np.linalg.LinAlgError):
        return
    amp, p0, s, l1, l2 = res.x
    s = abs(s)
    length0 = seg.l_hi - seg.l_lo
    if (
        not res.success
        or amp <= 0
        or not 0.2 < s < 3 * sig0 + 2
        or abs(p0) > 2 * sig0 + 1
        or abs(l1 - seg.l_lo) > 0.25 * length0 + 3 * sig0
        or abs(l2 - seg.l_hi) > 0.25 * length0 + 3 * sig0
        or l2 <= l1
    ):
        return
    seg.centre = seg.centre + p0 * np.array([-seg.u[1], seg.u[0]])
    seg.l_lo, seg.l_hi, seg.sigma, seg.fitted = float(l1), float(l2), float(s), True


def _clip_to_frame(seg: _Segment, shape: tuple[int, int]) -> None:
    """Keep the ends inside the pixel area ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``."""
    h, w = shape
    lo, hi = seg.l_lo, seg.l_hi
    for c, d, n in ((seg.centre[0], seg.u[0], w), (seg.centre[1], seg.u[1], h)):
        if abs(d) < 1e-12:
            continue
        t_a, t_b = (-0.5 - c) / d, (n - 0.5 - c) / d
        lo, hi = max(lo, min(t_a, t_b)), min(hi, max(t_a, t_b))
    if hi > lo:
        seg.l_lo, seg.l_hi = lo, hi


def _pixel_to_radec(
    wcs_or_camera: Any, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(wcs_or_camera, "pixel_to_radec"):
        ra, dec = wcs_or_camera.pixel_to_radec(x, y)
    elif hasattr(wcs_or_camera, "all_pix2world"):
        ra, dec = wcs_or_camera.all_pix2world(x, y, 0)
    else:
        msg = (
            "wcs_or_camera must be an astropy WCS or an object with pixel_to_radec(x, y), "
            f"got {type(wcs_or_camera).__name__}"
        )
        raise InputError(msg)
    return np.asarray(ra, float), np.asarray(dec, float)


def streaks_from_probability(
    prob: np.ndarray,
    image: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    min_pixels: int = 20,
    merge_angle_deg: float = 3.0,
    merge_gap_px: float = 30.0,
    border_px: int = 2,
    background_sigma: float | np.ndarray | None = None,
    background: float | np.ndarray | None = None,
    wcs_or_camera: Any = None,
) -> Table:
    """Measure the streaks of a per-pixel streak probability map.

    Parameters
    ----------
    prob : ndarray, shape (H, W)
        Streak probability (or score) per pixel, in [0, 1]; NaN counts as 0.
    image : ndarray, shape (H, W), optional
        The image, for ``flux`` and ``snr`` and for refining the ends and width
        with a blurred-segment fit (see the module notes). Without it
        ``flux`` and ``snr`` are NaN.
    threshold : float, optional
        Pixels with ``prob >= threshold`` are streak pixels. Default 0.5.
    min_pixels : int, optional
        Smallest connected component kept, pixels (8-connectivity). Default 20.
    merge_angle_deg : float, optional
        Largest angle between two pieces of one streak, degrees. Default 3.
    merge_gap_px : float, optional
        Largest gap along the line between two pieces of one streak, pixels;
        their perpendicular offset must also stay within the streak width
        (at least 3 pixels). Default 30.
    border_px : int, optional
        A streak whose mask comes within this many pixels of the edge has
        ``crosses_border`` True; its ends are clipped to the frame. Default 2.
    background_sigma : float or ndarray, shape (H, W), optional
        Background noise per pixel, image units. Default: a robust
        (MAD) estimate from the image pixels outside the streak masks.
    background : float or ndarray, shape (H, W), optional
        Background level, image units. Default: the median of the image
        pixels outside the streak masks.
    wcs_or_camera : astropy.wcs.WCS or SkyCamera, optional
        Adds ``ra1, dec1, ra2, dec2`` (degrees, ICRS) of the endpoints.

    Returns
    -------
    astropy.table.Table
        One row per streak, columns ``x1, y1, x2, y2`` (pixels, 0-based;
        ``x1 <= x2``, or ``y1 <= y2`` for a vertical streak), ``length``
        (pixels), ``angle`` (degrees, counter-clockwise from +x in [0, 180)),
        ``width`` (FWHM across the streak, pixels: ``2.355 sigma`` of the
        fitted profile with an image, the mask's full width without),
        ``flux``, ``snr``, ``score`` (mean probability), ``n_pix``,
        ``n_segments``, ``crosses_border`` and, with ``wcs_or_camera``,
        ``ra1, dec1, ra2, dec2``. Sorted by decreasing ``score * n_pix``.
        Empty (full schema) with a :class:`NoDetectionsWarning` when no
        streak is found.

    Raises
    ------
    InputError
        If ``prob`` is not 2-D, ``image`` differs in shape, ``threshold`` is
        not in (0, 1], or ``wcs_or_camera`` has no pixel-to-sky method.

    References
    ----------
    Unistellar satellite-streak paper, §2.2.4 (the capsule ground truth the
    segmenter learns, whose ends this inverts).
    """
    p = np.asarray(prob, dtype=float)
    if p.ndim != 2:
        msg = f"prob must be a 2-D (H, W) array, got shape {p.shape}"
        raise InputError(msg)
    if not 0 < threshold <= 1:
        msg = f"threshold must be in (0, 1], got {threshold}"
        raise InputError(msg)
    img = None
    if image is not None:
        img = np.asarray(image, dtype=float)
        if img.shape != p.shape:
            msg = f"image shape {img.shape} differs from prob shape {p.shape}"
            raise InputError(msg)
    sky = wcs_or_camera is not None
    if sky and not (
        hasattr(wcs_or_camera, "pixel_to_radec") or hasattr(wcs_or_camera, "all_pix2world")
    ):
        _pixel_to_radec(wcs_or_camera, np.zeros(1), np.zeros(1))  # raises
    p = np.nan_to_num(p, nan=0.0)
    binary = p >= threshold
    labels, n = ndimage.label(binary, structure=np.ones((3, 3), bool))
    segs: list[_Segment] = []
    if n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        objs = ndimage.find_objects(labels)
        for k, sl in enumerate(objs, start=1):
            if sizes[k] < max(min_pixels, 2):
                continue
            ys, xs = np.nonzero(labels[sl] == k)
            ys, xs = ys + sl[0].start, xs + sl[1].start
            s = _Segment(ys=ys, xs=xs, w=np.clip(p[ys, xs], 1e-6, None))
            s.fit_line()
            segs.append(s)
    if not segs:
        warnings.warn("no streak found in the probability map", NoDetectionsWarning, stacklevel=2)
        return empty_streak_table(sky)

    resid = sig_map = None
    if img is not None:
        outside = ~binary & np.isfinite(img)
        ref = img[outside] if outside.any() else img[np.isfinite(img)]
        bkg = np.median(ref) if background is None else background
        resid = img - bkg
        if background_sigma is None:
            r = ref - np.median(ref)
            sig = 1.4826 * float(np.median(np.abs(r))) or float(np.std(r)) or 1.0
            sig_map = np.full(p.shape, sig)
        else:
            sig_map = np.broadcast_to(np.asarray(background_sigma, float), p.shape)
        for s in segs:
            _fit_profile(s, resid, float(np.median(sig_map[s.ys, s.xs])))
    segs = _merge(segs, merge_angle_deg, merge_gap_px)

    h, w = p.shape
    rows = []
    for s in segs:
        touches = bool(
            (s.xs.min() < border_px)
            or (s.ys.min() < border_px)
            or (s.xs.max() > w - 1 - border_px)
            or (s.ys.max() > h - 1 - border_px)
        )
        if touches:
            _clip_to_frame(s, (h, w))
        (x1, y1), (x2, y2) = s.endpoints()
        length = float(np.hypot(x2 - x1, y2 - y1))
        angle = float(np.degrees(np.arctan2(y2 - y1, x2 - x1))) % 180.0
        if angle >= 180.0 - 1e-9:
            angle = 0.0
        width = 2.3548 * s.sigma if s.fitted else 2.0 * np.sqrt(3.0) * s.sigma
        npix = int(s.ys.size)
        if resid is not None:
            flux = float(np.nansum(resid[s.ys, s.xs]))
            noise = float(np.sqrt(np.nansum(sig_map[s.ys, s.xs] ** 2)))
            snr = flux / noise if noise > 0 else np.nan
        else:
            flux = snr = np.nan
        rows.append(
            {
                "x1": x1, "y1": y1, "x2": x2, "y2": y2, "length": length, "angle": angle,
                "width": width, "flux": flux, "snr": snr,
                "score": float(np.mean(p[s.ys, s.xs])), "n_pix": npix,
                "n_segments": s.n_segments, "crosses_border": touches,
            }
        )  # fmt: skip
    rows.sort(key=lambda r: -r["score"] * r["n_pix"])
    t = empty_streak_table(sky)
    for r in rows:
        t.add_row([r[c] for c in STREAK_COLUMNS] + ([np.nan] * 4 if sky else []))
    if sky and len(t):
        ra1, dec1 = _pixel_to_radec(wcs_or_camera, np.asarray(t["x1"]), np.asarray(t["y1"]))
        ra2, dec2 = _pixel_to_radec(wcs_or_camera, np.asarray(t["x2"]), np.asarray(t["y2"]))
        t["ra1"], t["dec1"], t["ra2"], t["dec2"] = ra1, dec1, ra2, dec2
    return t
