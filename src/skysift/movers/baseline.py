"""Classical fast-mover detectors: a single-image shape cut and difference imaging.

Two baselines that need no training:

* :func:`detect_single` extracts sources with ``sep`` on the
  background-subtracted image and keeps those whose trail does not look like
  the star trails of the observing mode. Each source's second moments give a
  trail vector (length ``L = sqrt(12 (a² - b²))`` along the major axis,
  since a segment of length ``L`` convolved with a Gaussian of width σ has
  variance ``L²/12 + σ²`` along it and ``σ²`` across). The star trail vector
  is known from the mode (points when sidereal) or measured as the median of
  the bright-source population; a mover is a source whose trail vector
  differs from the star trail vector by more than ``max(min_sep, frac × L_star)``
  pixels (both vectors compared modulo 180°).
* :func:`detect_difference` subtracts the per-pixel median of a sequence
  (the static sky: stars, hot pixels, galaxies) from every frame and extracts
  the positive residuals of each frame.

Both return one astropy Table with the schema of :data:`DETECTION_COLUMNS`
(pixels 0-based, x = column; ``angle`` in degrees counter-clockwise from +x,
in [0, 180)).
"""

from __future__ import annotations

import warnings

import numpy as np
import sep
from astropy.table import Table, vstack
from scipy import ndimage

from skysift.errors import InputError

__all__ = [
    "DETECTION_COLUMNS",
    "NoMoversWarning",
    "detect_difference",
    "detect_single",
    "empty_detections",
    "normalise_mode",
]

#: Columns of every detection table: (name, dtype, unit or None, description).
DETECTION_COLUMNS = (
    ("frame", "i4", None, "frame index in the sequence"),
    ("x", "f8", "pix", "centroid column (0-based)"),
    ("y", "f8", "pix", "centroid row (0-based)"),
    ("x1", "f8", "pix", "trail start column"),
    ("y1", "f8", "pix", "trail start row"),
    ("x2", "f8", "pix", "trail end column"),
    ("y2", "f8", "pix", "trail end row"),
    ("flux", "f8", None, "background-subtracted flux, image units"),
    ("snr", "f8", None, "signal-to-noise ratio (background limited)"),
    ("length", "f8", "pix", "trail length"),
    ("angle", "f8", "deg", "trail angle, counter-clockwise from +x, [0, 180)"),
    ("score", "f8", None, "detection score in [0, 1] (monotone in confidence)"),
)

#: Observing modes and their accepted aliases (the issue's names on the left).
_MODE_ALIASES = {
    "sidereal": "sidereal",
    "target": "tracking",
    "tracking": "tracking",
    "staring": "intersection",
    "intersection": "intersection",
}


class NoMoversWarning(UserWarning):
    """No mover was found (the table returned is empty but has the full schema)."""


def normalise_mode(mode: str) -> str:
    """Map an observing mode name or alias to the simulator's name.

    ``"sidereal"`` → ``"sidereal"``; ``"target"``/``"tracking"`` → ``"tracking"``;
    ``"staring"``/``"intersection"`` → ``"intersection"``.

    Raises
    ------
    InputError
        For an unknown mode; the message lists the valid names.
    """
    try:
        return _MODE_ALIASES[str(mode).lower()]
    except KeyError:
        msg = f"mode must be one of {sorted(_MODE_ALIASES)}, got {mode!r}"
        raise InputError(msg) from None


def empty_detections() -> Table:
    """An empty detection table with the full schema (:data:`DETECTION_COLUMNS`)."""
    t = Table()
    for name, dtype, unit, desc in DETECTION_COLUMNS:
        t[name] = np.zeros(0, dtype=dtype)
        t[name].unit = unit
        t[name].description = desc
    return t


def _table(rows: dict[str, np.ndarray]) -> Table:
    t = empty_detections()
    n = len(rows["x"])
    out = Table()
    for name, dtype, unit, desc in DETECTION_COLUMNS:
        col = rows.get(name, np.zeros(n))
        out[name] = np.asarray(col, dtype=dtype)
        out[name].unit = unit
        out[name].description = desc
    return out if n else t


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 2:
        msg = f"{name} must be a 2-D (H, W) array, got shape {a.shape}"
        raise InputError(msg)
    if a.shape[0] < 16 or a.shape[1] < 16:
        msg = f"{name} must be at least 16x16 pixels, got {a.shape}"
        raise InputError(msg)
    return np.ascontiguousarray(a, dtype=np.float32)


def _background(image: np.ndarray, mask: np.ndarray | None, box: int):

    b = sep.Background(image, mask=mask, bw=box, bh=box, fw=3, fh=3)
    return image - b.back(), b.rms(), b.globalrms


def _extract(data: np.ndarray, rms: np.ndarray, threshold: float, mask, minarea: int):

    sep.set_extract_pixstack(max(300000, data.size))
    sep.set_sub_object_limit(4096)
    try:
        objs = sep.extract(
            data, threshold, err=rms, mask=mask, minarea=minarea, deblend_cont=0.005,
            clean=True,
        )  # fmt: skip
    except Exception as err:  # sep raises bare Exception on buffer overflows
        msg = f"source extraction failed ({err}); raise the threshold"
        raise InputError(msg) from err
    return objs


def _trail_vectors(a: np.ndarray, b: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, ...]:
    """Trail length (px), angle (deg, [0, 180)) and doubled-angle vector of sep moments."""
    length = np.sqrt(12.0 * np.clip(a**2 - b**2, 0.0, None))
    angle = np.degrees(theta) % 180.0
    return length, angle


def _vec(length: np.ndarray, angle_deg: np.ndarray) -> np.ndarray:
    t = np.radians(angle_deg)
    return np.stack([length * np.cos(t), length * np.sin(t)], axis=-1)


def _star_trail(
    star_trail: tuple[float, float] | None,
    mode: str,
    length: np.ndarray,
    angle: np.ndarray,
    snr: np.ndarray,
) -> np.ndarray:
    """Star trail vector ``(dx, dy)`` in pixels: given, 0 (sidereal) or the population median."""
    if star_trail is not None:
        return np.asarray(star_trail, dtype=float)
    if mode == "sidereal" or length.size < 5:
        return np.zeros(2)
    # doubled-angle averaging of the brightest half of the sources (orientation is mod 180)
    order = np.argsort(snr)[::-1][: max(5, length.size // 2)]
    t2 = np.radians(2 * angle[order])
    mean_ang = 0.5 * np.degrees(np.arctan2(np.median(np.sin(t2)), np.median(np.cos(t2))))
    return _vec(np.atleast_1d(np.median(length[order])), np.atleast_1d(mean_ang))[0]


def detect_single(
    image: np.ndarray,
    *,
    mode: str = "sidereal",
    psf_fwhm: float | None = None,
    star_trail: tuple[float, float] | None = None,
    threshold: float = 5.0,
    min_sep: float | None = None,
    frac: float = 0.35,
    flatness: float = 0.4,
    mask: np.ndarray | None = None,
    box_size: int = 64,
    minarea: int = 5,
    frame: int = 0,
    warn: bool = True,
) -> Table:
    """Find fast movers in one image by their trail shape (classical baseline).

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The image (any units; background is subtracted here).
    mode : {"sidereal", "target", "staring"} or simulator names, optional
        Observing mode (aliases "tracking", "intersection"). Sets the star
        trail when ``star_trail`` is not given: points (sidereal), or the
        median trail of the detected population (target/staring).
    psf_fwhm : float, optional
        PSF FWHM in pixels; sets the default ``min_sep = 3 × FWHM``
        (default FWHM 2.5 px).
    star_trail : (float, float), optional
        Known star trail vector ``(dx, dy)`` over the exposure, pixels.
    threshold : float, optional
        Extraction threshold in units of the background RMS per pixel. Default 5.
    min_sep : float, optional
        Smallest trail-vector difference from the stars that makes a mover, px.
    frac : float, optional
        Extra tolerance as a fraction of the star trail length. Default 0.35.
    flatness : float, optional
        Minimum ratio of the lowest to the highest point of the lightly smoothed
        profile along the inner 70 % of a trail longer than 2 FWHM: a
        uniform trail is flat, two blended stars dip between them. Default 0.4.
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = bad pixel, ignored.
    box_size : int, optional
        Background mesh size, pixels. Default 64.
    minarea : int, optional
        Minimum pixels above threshold. Default 5.
    frame : int, optional
        Value of the ``frame`` column. Default 0.
    warn : bool, optional
        Emit :class:`NoMoversWarning` when nothing is found. Default True.

    Returns
    -------
    astropy.table.Table
        One row per mover candidate, columns :data:`DETECTION_COLUMNS`;
        ``score = 1 - exp(-d / tol)`` times the SNR weight ``snr / (snr + threshold)``,
        where ``d`` is the trail-vector distance from the stars and ``tol`` the cut.

    Raises
    ------
    InputError
        For a non-2-D or tiny image, a mask of another shape, a non-positive
        threshold or FWHM, or an unknown mode.

    References
    ----------
    Bertin & Arnouts 1996, A&AS 117, 393 (source extraction, as implemented by
    ``sep``: Barbary 2016, JOSS 1, 58).
    """
    mode = normalise_mode(mode)
    data = _check_image(image)
    if not threshold > 0:
        msg = f"threshold must be > 0 (sigma), got {threshold}"
        raise InputError(msg)
    fwhm = 2.5 if psf_fwhm is None else float(psf_fwhm)
    if not fwhm > 0:
        msg = f"psf_fwhm must be > 0 pixels, got {psf_fwhm}"
        raise InputError(msg)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape:
            msg = f"mask shape {mask.shape} differs from image shape {data.shape}"
            raise InputError(msg)
    min_sep = 3.0 * fwhm if min_sep is None else float(min_sep)
    sub, rms, grms = _background(data, mask, box_size)
    objs = _extract(sub, rms, threshold, mask, minarea)
    if len(objs) == 0:
        return _none(warn)
    npix = np.maximum(objs["npix"], 1)
    snr = objs["flux"] / (max(grms, 1e-12) * np.sqrt(npix))
    length, angle = _trail_vectors(objs["a"], objs["b"], objs["theta"])
    stars = _star_trail(star_trail, mode, length, angle, snr)
    lstar = float(np.hypot(*stars))
    v = _vec(length, angle)
    d = np.minimum(np.linalg.norm(v - stars, axis=1), np.linalg.norm(v + stars, axis=1))
    tol = max(min_sep, frac * lstar)
    keep = (d > tol) & ((objs["flag"] & 2) == 0)  # 2: sep OBJ_TRUNC, cut by the border
    # a trail has a flat profile along its length; two blended stars have a dip between them
    hx_all = 0.5 * length * np.cos(np.radians(angle))
    hy_all = 0.5 * length * np.sin(np.radians(angle))
    for i in np.nonzero(keep)[0]:
        if length[i] >= 2 * fwhm:
            keep[i] = _flat(sub, objs["x"][i], objs["y"][i], hx_all[i], hy_all[i], fwhm) >= flatness
    if not keep.any():
        return _none(warn)
    o = objs[keep]
    ln, an = length[keep], angle[keep]
    t = np.radians(an)
    hx, hy = 0.5 * ln * np.cos(t), 0.5 * ln * np.sin(t)
    s = snr[keep]
    score = (1 - np.exp(-d[keep] / tol)) * s / (s + threshold)
    return _table(
        {
            "frame": np.full(len(o), frame), "x": o["x"], "y": o["y"],
            "x1": o["x"] - hx, "y1": o["y"] - hy, "x2": o["x"] + hx, "y2": o["y"] + hy,
            "flux": o["flux"], "snr": s, "length": ln, "angle": an, "score": score,
        }
    )  # fmt: skip


def _flat(sub: np.ndarray, x: float, y: float, hx: float, hy: float, fwhm: float) -> float:
    """Min/max of the (lightly smoothed) profile along the inner 70 % of a trail."""

    h, w = sub.shape
    r = int(np.ceil(max(abs(hx), abs(hy)) + 3 * fwhm))
    x0, x1 = max(int(x) - r, 0), min(int(x) + r + 1, w)
    y0, y1 = max(int(y) - r, 0), min(int(y) + r + 1, h)
    cut = ndimage.gaussian_filter(sub[y0:y1, x0:x1].astype(float), 0.5)
    s = np.linspace(-0.7, 0.7, 15)
    prof = ndimage.map_coordinates(cut, [y - y0 + s * hy, x - x0 + s * hx], order=1)
    top = prof.max()
    return float(prof.min() / top) if top > 0 else 0.0


def _none(warn: bool) -> Table:
    if warn:
        warnings.warn("no mover found", NoMoversWarning, stacklevel=3)
    return empty_detections()


def detect_difference(
    frames: np.ndarray,
    *,
    threshold: float = 5.0,
    mask: np.ndarray | None = None,
    box_size: int = 64,
    minarea: int = 4,
    reference: np.ndarray | None = None,
    warn: bool = True,
) -> Table:
    """Find movers in each frame of a sequence by difference imaging against its median.

    Parameters
    ----------
    frames : ndarray, shape (T, H, W)
        Registered frames (the static sky at the same pixels), T ≥ 3.
    threshold : float, optional
        Extraction threshold on each difference image, in units of its RMS. Default 5.
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = bad pixel.
    box_size : int, optional
        Background mesh of the difference images, pixels. Default 64.
    minarea : int, optional
        Minimum pixels above threshold. Default 4.
    reference : ndarray, shape (H, W), optional
        Template to subtract instead of the median of ``frames``.
    warn : bool, optional
        Emit :class:`NoMoversWarning` when nothing is found. Default True.

    Returns
    -------
    astropy.table.Table
        Detections of all frames (column ``frame``), schema :data:`DETECTION_COLUMNS`;
        ``score = snr / (snr + threshold)``.

    Raises
    ------
    InputError
        For a sequence that is not (T, H, W) with T ≥ 3 (without ``reference``),
        or a reference or mask of another shape.
    """
    cube = np.asarray(frames, dtype=np.float32)
    if cube.ndim != 3 or (cube.shape[0] < 3 and reference is None):
        msg = f"frames must be a (T, H, W) sequence with T >= 3, got shape {cube.shape}"
        raise InputError(msg)
    ref = np.median(cube, axis=0) if reference is None else np.asarray(reference, np.float32)
    if ref.shape != cube.shape[1:]:
        msg = f"reference shape {ref.shape} differs from frame shape {cube.shape[1:]}"
        raise InputError(msg)
    if mask is not None and np.shape(mask) != cube.shape[1:]:
        msg = f"mask shape {np.shape(mask)} differs from frame shape {cube.shape[1:]}"
        raise InputError(msg)
    tables = []
    for k in range(cube.shape[0]):
        diff = _check_image(cube[k] - ref, "difference image")
        sub, rms, grms = _background(diff, mask, box_size)
        objs = _extract(sub, rms, threshold, mask, minarea)
        if len(objs) == 0:
            continue
        snr = objs["flux"] / (max(grms, 1e-12) * np.sqrt(np.maximum(objs["npix"], 1)))
        good = snr > threshold
        o = objs[good]
        ln, an = _trail_vectors(o["a"], o["b"], o["theta"])
        t = np.radians(an)
        hx, hy = 0.5 * ln * np.cos(t), 0.5 * ln * np.sin(t)
        s = snr[good]
        tables.append(
            _table(
                {
                    "frame": np.full(len(o), k),
                    "x": o["x"],
                    "y": o["y"],
                    "x1": o["x"] - hx,
                    "y1": o["y"] - hy,
                    "x2": o["x"] + hx,
                    "y2": o["y"] + hy,
                    "flux": o["flux"],
                    "snr": s,
                    "length": ln,
                    "angle": an,
                    "score": s / (s + threshold),
                }
            )  # fmt: skip
        )
    tables = [t for t in tables if len(t)]
    if not tables:
        return _none(warn)

    return vstack(tables)
