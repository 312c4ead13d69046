"""Ground truth of simulated images: segmentation masks, boxes, SNR and the truth table.

Every simulator in :mod:`skysift.simulation` returns its image together with a
:class:`SimTruth`: a segmentation mask (``True`` = object), an instance label
map and one astropy :class:`~astropy.table.Table` row per object with the
schema of :data:`TRUTH_COLUMNS`.

Conventions: 0-based pixel coordinates, the centre of the first pixel is
(0, 0), x = column, y = row. Bounding boxes are ``[x1, y1, x2, y2]`` in the
same continuous coordinates, on pixel *edges*: a box around the single pixel
(col, row) is ``[col - 0.5, row - 0.5, col + 0.5, row + 0.5]``.

References
----------
.. [1] Unistellar satellite-streak paper, §2.2.4: "pixel perfect" streaks and
   their ground truth (the line convolved with a disk of diameter the PSF
   FWHM) and the signal-to-noise ratios SNR_avg and SNR_tot used to grade the
   simulated streaks.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import astropy.units as u
import numpy as np
from astropy.table import Table

from skysift.errors import InputError

__all__ = [
    "TRUTH_COLUMNS",
    "SimTruth",
    "empty_truth_table",
    "make_truth_table",
    "truth_records",
    "stack_records",
    "snr_avg",
    "snr_tot",
    "streak_mask",
    "mask_bbox",
    "segment_geometry",
]

#: Column name -> (dtype, unit, description) of every truth table.
TRUTH_COLUMNS: dict[str, tuple[str, u.UnitBase | None, str]] = {
    "id": ("i8", None, "object id, unique within one simulation"),
    "frame": ("i8", None, "frame index in a sequence (0 for single images)"),
    "type": ("U16", None, "object class: star, streak, sso, mover, galaxy, cosmic_ray"),
    "x": ("f8", u.pix, "centre column (0-based; mid-exposure for movers)"),
    "y": ("f8", u.pix, "centre row (0-based; mid-exposure for movers)"),
    "x1": ("f8", u.pix, "start column of a streak/trail (NaN if not a segment)"),
    "y1": ("f8", u.pix, "start row of a streak/trail"),
    "x2": ("f8", u.pix, "end column of a streak/trail"),
    "y2": ("f8", u.pix, "end row of a streak/trail"),
    "mag": ("f8", u.mag, "apparent magnitude in the simulated band (NaN if unknown)"),
    "flux": ("f8", u.electron, "total noise-free signal of the object, electrons"),
    "vx": ("f8", u.pix / u.s, "apparent motion along x on the detector, pixel/s"),
    "vy": ("f8", u.pix / u.s, "apparent motion along y on the detector, pixel/s"),
    "length": ("f8", u.pix, "segment length (0 for points), pixels"),
    "angle": ("f8", u.deg, "segment angle, degrees counter-clockwise from +x, in [0, 180)"),
    "snr_avg": ("f8", None, "mean signal per mask pixel / background sigma"),
    "snr_tot": ("f8", None, "summed signal in the mask / background sigma"),
    "bbox_x1": ("f8", u.pix, "bounding box left edge (pixel edges)"),
    "bbox_y1": ("f8", u.pix, "bounding box bottom (lower row) edge"),
    "bbox_x2": ("f8", u.pix, "bounding box right edge"),
    "bbox_y2": ("f8", u.pix, "bounding box top (upper row) edge"),
}

_DEFAULTS = {"id": 0, "frame": 0, "type": ""}


_DTYPE = np.dtype([(name, spec[0]) for name, spec in TRUTH_COLUMNS.items()])
_UNITS = {name: spec[1] for name, spec in TRUTH_COLUMNS.items() if spec[1] is not None}
_DESCRIPTIONS = {name: spec[2] for name, spec in TRUTH_COLUMNS.items()}


@dataclass
class SimTruth:
    """Truth of one simulated image.

    Attributes
    ----------
    mask : ndarray of bool, shape (H, W)
        Segmentation mask, ``True`` = object (union of all objects' masks).
    labels : ndarray of int32, shape (H, W)
        Instance map: 0 = background, ``k`` = the object with ``table["id"] == k``
        (a later object overwrites an earlier one where they overlap).
    records : ndarray, structured, shape (N,)
        One record per object with the fields of :data:`TRUTH_COLUMNS`; the
        :attr:`table` view is built from it on first access (building an
        astropy Table costs ~1 ms, more than rendering a small cutout).
    """

    mask: np.ndarray
    labels: np.ndarray
    records: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=_DTYPE))

    @cached_property
    def table(self) -> Table:
        """One row per object, columns :data:`TRUTH_COLUMNS` (``flux`` in electrons)."""
        return _table_from_records(self.records)

    @property
    def boxes(self) -> np.ndarray:
        """Bounding boxes ``[x1, y1, x2, y2]``, shape (N, 4), pixels (pixel edges)."""
        r = self.records
        return np.column_stack(
            [r[c].astype(float) for c in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")]
        ).reshape(-1, 4)


def _table_from_records(records: np.ndarray) -> Table:
    return Table(np.asarray(records, dtype=_DTYPE), units=_UNITS, descriptions=_DESCRIPTIONS)


def empty_truth_table(*, warn: bool = False) -> Table:
    """Return a truth table with no rows and the full :data:`TRUTH_COLUMNS` schema.

    Parameters
    ----------
    warn : bool, optional
        Emit a ``UserWarning`` saying the table is empty. Default False.

    Returns
    -------
    astropy.table.Table
    """
    if warn:
        warnings.warn(
            "no object in the simulated image; empty truth table", UserWarning, stacklevel=2
        )
    return _table_from_records(np.zeros(0, dtype=_DTYPE))


def truth_records(rows: Iterable[Mapping[str, object]]) -> np.ndarray:
    """Structured array of truth records from dictionaries (missing: NaN, 0 or "").

    Raises
    ------
    InputError
        If a row has a key that is not a truth column.
    """
    out = []
    for r in rows:
        extra = set(r) - set(TRUTH_COLUMNS)
        if extra:
            msg = f"truth rows accept only {list(TRUTH_COLUMNS)}; got unknown keys {sorted(extra)}"
            raise InputError(msg)
        out.append(tuple(r.get(name, _DEFAULTS.get(name, np.nan)) for name in TRUTH_COLUMNS))
    return np.array(out, dtype=_DTYPE) if out else np.zeros(0, dtype=_DTYPE)


def make_truth_table(rows: Iterable[Mapping[str, object]]) -> Table:
    """Build a truth table from dictionaries; missing columns are NaN (0 / "" for id, frame, type).

    Parameters
    ----------
    rows : iterable of mapping
        One mapping per object with keys among :data:`TRUTH_COLUMNS`.

    Returns
    -------
    astropy.table.Table
        The full schema, even with no rows.

    Raises
    ------
    InputError
        If a row has a key that is not a truth column.
    """
    return _table_from_records(truth_records(rows))


def stack_records(records: Iterable[np.ndarray]) -> np.ndarray:
    """Concatenate truth record arrays."""
    records = list(records)
    return np.concatenate(records) if records else np.zeros(0, dtype=_DTYPE)


# --------------------------------------------------------------------------- SNR


def _signal_in_mask(signal_image: np.ndarray, mask: np.ndarray, sigma: float) -> tuple[float, int]:
    signal_image = np.asarray(signal_image, dtype=float)
    mask = np.asarray(mask, dtype=bool)
    if signal_image.shape != mask.shape:
        msg = f"mask shape {mask.shape} differs from signal_image shape {signal_image.shape}"
        raise InputError(msg)
    if not np.isfinite(sigma) or sigma <= 0:
        msg = f"sigma (background noise) must be finite and > 0, got {sigma}"
        raise InputError(msg)
    return float(signal_image[mask].sum()), int(mask.sum())


def snr_avg(signal_image: np.ndarray, mask: np.ndarray, sigma: float) -> float:
    """Average signal-to-noise ratio of an object: mean signal per mask pixel / background sigma.

    ``SNR_avg = (1 / N_mask) * sum_{mask} S_i / sigma``, with ``S`` the noise-free
    signal of the object alone (background subtracted) and ``sigma`` the
    per-pixel standard deviation of the background, both in the same units.

    Parameters
    ----------
    signal_image : ndarray, shape (H, W)
        Noise-free image of the object alone (electrons or ADU).
    mask : ndarray of bool, shape (H, W)
        Object mask, ``True`` = object (e.g. :func:`streak_mask`).
    sigma : float
        Background noise per pixel, same units as ``signal_image``; > 0.

    Returns
    -------
    float
        SNR_avg; NaN for an empty mask.

    Raises
    ------
    InputError
        If the shapes differ or ``sigma`` is not > 0.

    References
    ----------
    Unistellar satellite-streak paper, §2.2.4 (definition of SNR_avg of a simulated streak).
    """
    s, n = _signal_in_mask(signal_image, mask, sigma)
    return s / n / sigma if n else float("nan")


def snr_tot(signal_image: np.ndarray, mask: np.ndarray, sigma: float) -> float:
    """Total signal-to-noise ratio of an object: summed signal in the mask / background sigma.

    ``SNR_tot = sum_{mask} S_i / sigma`` (as the paper defines it: the sum is
    *not* divided by ``sqrt(N_mask)``, so ``SNR_tot = N_mask * SNR_avg``).

    Parameters
    ----------
    signal_image : ndarray, shape (H, W)
        Noise-free image of the object alone (electrons or ADU).
    mask : ndarray of bool, shape (H, W)
        Object mask, ``True`` = object.
    sigma : float
        Background noise per pixel, same units as ``signal_image``; > 0.

    Returns
    -------
    float
        SNR_tot (0 for an empty mask).

    Raises
    ------
    InputError
        If the shapes differ or ``sigma`` is not > 0.

    References
    ----------
    Unistellar satellite-streak paper, §2.2.4 (definition of SNR_tot of a simulated streak).
    """
    s, _ = _signal_in_mask(signal_image, mask, sigma)
    return s / sigma


# --------------------------------------------------------------------------- masks and boxes


def segment_geometry(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float]:
    """Length (pixels) and angle (degrees ccw from +x, folded into [0, 180)) of a segment."""
    dx, dy = x2 - x1, y2 - y1
    length = float(np.hypot(dx, dy))
    angle = float(np.degrees(np.arctan2(dy, dx)) % 180.0) if length > 0 else 0.0
    return length, angle


def streak_mask(
    shape: tuple[int, int],
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    fwhm: float,
    *,
    diameter: float | None = None,
) -> np.ndarray:
    """Segmentation mask of a streak: the segment convolved with a disk.

    A pixel belongs to the mask when its centre lies within ``diameter / 2``
    of the segment from (x1, y1) to (x2, y2): the Minkowski sum of the segment
    and a disk (a "capsule"). With the default ``diameter = fwhm`` this is the
    satellite paper's ground truth; it holds ~76% of the light of a Gaussian
    PSF streak (``erf(sqrt(ln 2))`` across the trail, a few % less after
    pixelisation). ``diameter = 3 * fwhm`` holds ≥ 99% of the light of a
    Gaussian-PSF streak with FWHM ≥ 2 px (not of a Moffat: ~95% for beta = 3).

    Parameters
    ----------
    shape : (int, int)
        Image shape (H, W).
    x1, y1, x2, y2 : float
        Segment endpoints, pixels (0-based, x = column).
    fwhm : float
        PSF FWHM in pixels, > 0.
    diameter : float, optional
        Disk diameter in pixels. Default ``fwhm``. At least 1 pixel wide masks
        are guaranteed by clamping the diameter to >= 1.

    Returns
    -------
    ndarray of bool, shape (H, W)
        ``True`` = streak.

    Raises
    ------
    InputError
        If ``fwhm`` or ``diameter`` is not > 0.

    References
    ----------
    Unistellar satellite-streak paper, §2.2.4 (ground truth of the simulated streaks).
    """
    if not fwhm > 0:
        msg = f"fwhm must be > 0 pixels, got {fwhm}"
        raise InputError(msg)
    d = fwhm if diameter is None else diameter
    if not d > 0:
        msg = f"diameter must be > 0 pixels, got {diameter}"
        raise InputError(msg)
    r = max(float(d), 1.0) / 2.0
    h, w = shape
    mask = np.zeros((h, w), dtype=bool)
    c0 = max(int(np.floor(min(x1, x2) - r)), 0)
    c1 = min(int(np.ceil(max(x1, x2) + r)) + 1, w)
    r0 = max(int(np.floor(min(y1, y2) - r)), 0)
    r1 = min(int(np.ceil(max(y1, y2) + r)) + 1, h)
    if c0 >= c1 or r0 >= r1:
        return mask
    # the capsule is convex: each row meets it in one interval, the union of the
    # intervals cut by the two end disks and by the central rectangle
    yc = np.arange(r0, r1, dtype=float)
    lo = np.full(yc.size, np.inf)
    hi = np.full(yc.size, -np.inf)
    for px, py in ((x1, y1), (x2, y2)):
        q = r * r - (yc - py) ** 2
        ok = q >= 0
        sq = np.sqrt(np.where(ok, q, 0.0))
        lo = np.where(ok, np.minimum(lo, px - sq), lo)
        hi = np.where(ok, np.maximum(hi, px + sq), hi)
    dx, dy = x2 - x1, y2 - y1
    length = float(np.hypot(dx, dy))
    if length > 0:
        ux, uy = dx / length, dy / length
        rlo = np.full(yc.size, -np.inf)
        rhi = np.full(yc.size, np.inf)
        # slabs: 0 <= (x - x1) ux + (y - y1) uy <= L and -r <= -(x - x1) uy + (y - y1) ux <= r
        for a, b0, bmin, bmax in ((ux, (yc - y1) * uy, 0.0, length), (-uy, (yc - y1) * ux, -r, r)):
            if abs(a) < 1e-12:
                bad = (b0 < bmin) | (b0 > bmax)
                rlo = np.where(bad, np.inf, rlo)
                rhi = np.where(bad, -np.inf, rhi)
            else:
                e1, e2 = x1 + (bmin - b0) / a, x1 + (bmax - b0) / a
                rlo = np.maximum(rlo, np.minimum(e1, e2))
                rhi = np.minimum(rhi, np.maximum(e1, e2))
        ok = rlo <= rhi
        lo = np.where(ok, np.minimum(lo, rlo), lo)
        hi = np.where(ok, np.maximum(hi, rhi), hi)
    cols = np.arange(c0, c1, dtype=float)
    mask[r0:r1, c0:c1] = (cols[None, :] >= lo[:, None] - 1e-12) & (
        cols[None, :] <= hi[:, None] + 1e-12
    )
    return mask


def mask_bbox(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding box ``(x1, y1, x2, y2)`` of a mask on pixel edges; NaNs for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return (np.nan, np.nan, np.nan, np.nan)
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return (cols[0] - 0.5, rows[0] - 0.5, cols[-1] + 0.5, rows[-1] + 0.5)


def object_row(
    *,
    kind: str,
    signal: np.ndarray,
    mask: np.ndarray,
    sigma: float | None,
    **values: object,
) -> dict[str, object]:
    """Assemble a truth row: bbox from ``mask``, SNRs from ``signal`` and ``sigma`` (NaN if None)."""
    bx1, by1, bx2, by2 = mask_bbox(mask)
    row: dict[str, object] = {
        "type": kind,
        "bbox_x1": bx1,
        "bbox_y1": by1,
        "bbox_x2": bx2,
        "bbox_y2": by2,
    }
    if sigma is not None and mask.any():
        s = float(signal[mask].sum())
        row["snr_avg"] = s / int(mask.sum()) / sigma
        row["snr_tot"] = s / sigma
    row.update(values)
    return row
