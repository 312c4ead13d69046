"""Fast Radon Transform (FRT) of Nir, Ofek & Gal-Yam (2018), vectorised with numpy.

The FRT sums an image along every *digital line* that crosses it from the
first to the last column with a rise of ``s = 0 .. Nx - 1`` rows (slopes in
[0, 1]), in ``O(Nx Ny log Nx)`` operations: a block of ``2n`` columns is the
left and right blocks of ``n`` columns joined (Götz & Druckmüller 1995;
Brady 1998; Nir et al. 2018, §3.2 and their eq. 8),

``R_2n(s, y) = R_n^left(floor(s / 2), y) + R_n^right(floor(s / 2), y + ceil(s / 2))``.

Every level of the recursion is kept on request: level ``k`` holds the sums
along all digital lines inside blocks of ``2**k`` columns, the *partial*
transform that Nir et al. (§3.3) use for short streaks. Slopes in [-1, 0]
are the transform of the up-down flipped image, steeper lines that of the
transposed image (:func:`frt_quadrants`).

Coordinates: the image is ``(Ny, Nx)`` (row ``y``, column ``x``); it is
padded with zero columns on the right to a power of two and with ``Nx`` zero
rows below row 0, so lines that enter through the top or bottom edge are
included. ``R[s, j]`` is the line from ``(x=0, y=j - Nx)`` to
``(x=Nx - 1, y=j - Nx + s)``.

The module also holds what the transform needs around it: the image
preparation (:func:`matched_filter`, :func:`bin_image`,
:func:`compact_sources`, :func:`clean_image`) and the statistics of a line
profile (:func:`winsorise`, :func:`max_segment`).

References
----------
Nir, G., Ofek, E. O. & Gal-Yam, A. 2018, AJ 156, 229, "Optimal and
efficient streak detection in astronomical images", §3 (FRT, partial
transforms) and §4 (normalisation by the noise along each line).
Götz, W. A. & Druckmüller, H. J. 1995, Pattern Recognit. 29, 711.
Brady, M. L. 1998, SIAM J. Comput. 27, 107.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy import ndimage

from skysift.errors import InputError

__all__ = [
    "FRTLevel",
    "KAPPA",
    "QUADRANTS",
    "frt",
    "frt_levels",
    "frt_quadrants",
    "line_pixels",
    "max_segment",
    "winsorise",
    "matched_filter",
    "bin_image",
    "clean_image",
    "compact_sources",
]

#: The four orientations scanned by :func:`frt_quadrants`: (transposed, flipped).
QUADRANTS: tuple[tuple[bool, bool], ...] = (
    (False, False),
    (False, True),
    (True, False),
    (True, True),
)


@dataclass
class FRTLevel:
    """One level of the FRT recursion.

    Attributes
    ----------
    level : int
        ``k``; blocks are ``n = 2**k`` columns wide.
    sums : ndarray, shape (n_blocks, n, Y)
        ``sums[b, s, j]``: sum along the digital line from column ``b * n``
        (row ``j - pad``) to column ``b * n + n - 1`` (row ``j - pad + s``).
    pad : int
        Zero rows added below row 0 (the row index offset).
    """

    level: int
    sums: np.ndarray
    pad: int

    @property
    def width(self) -> int:
        """Block width ``n`` in columns."""
        return 1 << self.level


def _pow2(n: int) -> int:
    return 1 << max(0, int(np.ceil(np.log2(max(n, 1)))))


def _prepare(image: np.ndarray) -> tuple[np.ndarray, int]:
    data = np.asarray(image)
    if data.ndim != 2:
        msg = f"the FRT needs a 2-D image, got shape {data.shape}"
        raise InputError(msg)
    if data.size == 0:
        msg = f"the FRT needs a non-empty image, got shape {data.shape}"
        raise InputError(msg)
    dtype = np.float64 if data.dtype == np.float64 else np.float32
    ny, nx = data.shape
    nxp = _pow2(nx)
    pad = nxp
    a = np.zeros((nxp, 1, ny + pad), dtype=dtype)  # (blocks, s, Y)
    a[:nx, 0, pad:] = np.nan_to_num(data.T.astype(dtype, copy=False))
    return a, pad


def _join(a: np.ndarray) -> np.ndarray:
    """One recursion step: blocks of ``n`` columns -> blocks of ``2n`` columns."""
    nb, n, y = a.shape
    left = a[0::2]
    rp = np.zeros((nb // 2, n, y + n), dtype=a.dtype)
    rp[:, :, :y] = a[1::2]
    sb, sk, sy = rp.strides
    # skewed view: diag[b, k, j] = rp[b, k, j + k]  (the right block shifted up by k rows)
    diag = as_strided(rp, shape=(nb // 2, n, y + 1), strides=(sb, sk + sy, sy), writeable=False)
    out = np.empty((nb // 2, 2 * n, y), dtype=a.dtype)
    out[:, 0::2, :] = left + diag[:, :, :y]  # s = 2k: shift ceil(s/2) = k
    out[:, 1::2, :] = left + diag[:, :, 1 : y + 1]  # s = 2k + 1: shift k + 1
    return out


def frt_levels(image: np.ndarray, *, min_level: int = 0) -> Iterator[FRTLevel]:
    """Every level of the FRT of ``image`` (slopes in [0, 1]), from ``min_level`` up.

    Parameters
    ----------
    image : ndarray, shape (Ny, Nx)
        The image (NaN counts as 0). float64 input is summed in float64,
        anything else in float32.
    min_level : int, optional
        First level yielded (blocks of ``2**min_level`` columns). Default 0.

    Yields
    ------
    FRTLevel
        Level ``k`` for ``k = min_level .. log2(Nx padded)``; the last is
        the full transform (one block).

    Raises
    ------
    InputError
        If ``image`` is not a non-empty 2-D array.

    References
    ----------
    Nir, Ofek & Gal-Yam 2018, AJ 156, 229, §3.2-3.3.
    """
    a, pad = _prepare(image)
    level = 0
    while True:
        if level >= min_level:
            yield FRTLevel(level, a, pad)
        if a.shape[0] == 1:
            return
        a = _join(a)
        level += 1


def _top_level(image: np.ndarray) -> int:
    nx = np.shape(image)[-1] if np.ndim(image) == 2 else 1
    return int(np.log2(_pow2(nx)))


def frt(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Full Fast Radon Transform of ``image`` for slopes in [0, 1].

    Parameters
    ----------
    image : ndarray, shape (Ny, Nx)

    Returns
    -------
    sums : ndarray, shape (Nxp, Ny + Nxp)
        ``sums[s, j]``: sum along the digital line from ``(0, j - pad)`` to
        ``(Nxp - 1, j - pad + s)``, ``Nxp`` = Nx rounded up to a power of two.
    pad : int
        Row offset (``Nxp``).

    Raises
    ------
    InputError
        If ``image`` is not a non-empty 2-D array.
    """
    levels = list(frt_levels(image, min_level=_top_level(image)))
    return levels[-1].sums[0], levels[-1].pad


def frt_quadrants(image: np.ndarray) -> Iterator[tuple[bool, bool, np.ndarray]]:
    """The image seen in each of the four FRT orientations.

    Yields
    ------
    transposed, flipped : bool
        Whether the view is ``image.T`` and/or flipped up-down (after the
        transpose), so that lines of slope in [0, 1] in the view cover, in
        turn, slopes [0, 1], [-1, 0] (flipped), steep positive and steep
        negative lines of ``image``.
    view : ndarray
    """
    for transposed, flipped in QUADRANTS:
        v = image.T if transposed else image
        yield transposed, flipped, (v[::-1] if flipped else v)


def line_pixels(n: int, s: int) -> np.ndarray:
    """Row offsets of the FRT's digital line of rise ``s`` over ``n`` columns (``n`` a power of two).

    The FRT's lines are defined by its recursion, not by rounding: this
    follows the recursion, so ``sum(image[y0 + line_pixels(n, s)[x], x0 + x])``
    equals the transform's entry exactly (used to paint and to test).

    Parameters
    ----------
    n : int
        Block width, a power of two.
    s : int
        Rise in rows, ``0 <= s < n``.

    Returns
    -------
    ndarray of int, shape (n,)

    Raises
    ------
    InputError
        If ``n`` is not a power of two or ``s`` is out of range.
    """
    if n < 1 or n & (n - 1) or not 0 <= s < n:
        msg = f"line_pixels needs n a power of two and 0 <= s < n, got n={n}, s={s}"
        raise InputError(msg)
    if n == 1:
        return np.zeros(1, dtype=int)
    half = line_pixels(n // 2, s // 2)
    return np.concatenate([half, half + (s + 1) // 2])


#: Half-width (sigma of the filtered image) of the clip about each line's median.
KAPPA = 2.5


def max_segment(p: np.ndarray, valid: np.ndarray, c: float, min_len: int) -> tuple[float, int, int]:
    """Contiguous segment ``[i, j)`` maximising ``Σ p / sqrt(c n_valid)``; (score, i, j)."""
    csum = np.concatenate([[0.0], np.cumsum(p, dtype=np.float64)])
    cnt = np.concatenate([[0], np.cumsum(valid, dtype=np.int64)])
    m = p.size
    step = 1 if m <= 1500 else 2
    ii = np.arange(0, m + 1, step)
    s = csum[ii][None, :] - csum[ii][:, None]
    n = cnt[ii][None, :] - cnt[ii][:, None]
    span = ii[None, :] - ii[:, None]
    score = np.where(
        (n >= max(min_len, 2)) & (span > 0), s / np.sqrt(c * np.maximum(n, 1)), -np.inf
    )
    k = int(np.argmax(score))
    a, b = divmod(k, ii.size)
    return float(score.flat[k]), int(ii[a]), int(ii[b])


def winsorise(vals: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Clip each row to ``[-KAPPA, max(median, 0) + KAPPA]`` (median over the valid samples).

    A streak is uniform along its length, a chain of stars or a single
    bright source is not: winsorising about the line's own median keeps the
    first and caps the second, like the median Radon transform of findsat_mrt
    (Stark et al. 2022) but with nearly the efficiency of the mean.
    """
    x = np.where(ok, vals, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(x, axis=1, keepdims=True) if x.shape[1] else np.zeros((x.shape[0], 1))
    med = np.maximum(np.nan_to_num(med), 0.0)
    return np.clip(vals, -KAPPA, med + KAPPA)


# --------------------------------------------------------------------------- image preparation

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connected components


def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def matched_filter(z: np.ndarray, sigma: float) -> tuple[np.ndarray, float]:
    """``z`` filtered with a Gaussian PSF of ``sigma`` px, scaled to unit noise; and ``c``.

    ``c`` is the sum along a row of the filtered white noise's autocorrelation:
    the variance of a sum of ``n`` samples one pixel apart along a line is
    ``n c`` (Nir et al. 2018, §4).
    """
    if sigma < 0.3:
        return z.astype(np.float32, copy=False), 1.0
    k1 = _gauss_kernel(sigma)
    k2 = np.outer(k1, k1)
    norm = math.sqrt(float((k2**2).sum()))
    f = cv2.sepFilter2D(z.astype(np.float32, copy=False), cv2.CV_32F, k1, k1 / norm,
                        borderType=cv2.BORDER_CONSTANT)  # fmt: skip
    # autocorrelation of the normalised kernel at horizontal lags
    ac = np.correlate(k1, k1, mode="full")
    c = float((ac / ac.max()).sum() * 1.0)
    # 2-D: the autocorrelation along a row is ac(dx) * ac(0) / ac(0) -> the sum of ac / ac(0)
    return f, c


def bin_image(data: np.ndarray, b: int) -> np.ndarray:
    h, w = data.shape
    hb, wb = h // b, w // b
    crop = np.ascontiguousarray(data[: hb * b, : wb * b], dtype=np.float32)
    return cv2.resize(crop, (wb, hb), interpolation=cv2.INTER_AREA)


def _blobs(f: np.ndarray, lab: np.ndarray, n: int, sigma_psf: float, max_elongation: float):
    """Per component of ``lab``: centroid, peak, area and whether it is compact (round or PSF-sized)."""
    idx = np.arange(1, n + 1)
    yy, xx = np.nonzero(lab)
    ll = lab[yy, xx]
    w = np.maximum(f[yy, xx], 1e-3).astype(np.float64)
    sw = np.maximum(np.bincount(ll, w, n + 1)[1:], 1e-12)
    mx = np.bincount(ll, w * xx, n + 1)[1:] / sw
    my = np.bincount(ll, w * yy, n + 1)[1:] / sw
    dx, dy = xx - mx[ll - 1], yy - my[ll - 1]
    sxx = np.bincount(ll, w * dx * dx, n + 1)[1:] / sw
    syy = np.bincount(ll, w * dy * dy, n + 1)[1:] / sw
    sxy = np.bincount(ll, w * dx * dy, n + 1)[1:] / sw
    tr, det = sxx + syy, sxx * syy - sxy * sxy
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0))
    l1, l2 = tr / 2 + disc, np.maximum(tr / 2 - disc, 1e-6)
    peak = ndimage.maximum(f, lab, idx) if n else np.zeros(0)
    area = np.bincount(ll, None, n + 1)[1:]
    major = np.sqrt(l1)
    compact = (np.sqrt(l1 / l2) < max_elongation) | (major < 1.5 * max(sigma_psf, 0.5) + 0.5)
    return mx, my, np.asarray(peak, float), area, compact


def compact_sources(
    f: np.ndarray, star_sigma: float, sigma_psf: float, max_elongation: float = 3.5
) -> np.ndarray:
    """Footprints (bool) of compact sources whose filtered peak exceeds ``star_sigma``.

    Two labellings: components of ``f > star_sigma / 2`` that hold a pixel
    above ``star_sigma`` and are round (elongation, the ratio of the
    second-moment axes, below ``max_elongation``, or PSF-sized), and
    components of ``f > star_sigma`` that are round and peak above
    ``3 star_sigma`` (bright stars blended with a neighbour at the low level),
    elongated ones of these being split at a fifth of their peak first.
    Each is blanked over a disk that reaches the 1-sigma level of a PSF-shaped
    source of its peak. A streak brighter than ``star_sigma`` is one long
    component at the low level and its pieces above ``star_sigma`` peak below
    ``3 star_sigma`` unless it is bright enough to stay one long piece: it is
    kept (Nir et al. 2018, §5).
    """
    out = np.zeros(f.shape, dtype=bool)
    hot = f > star_sigma
    if not hot.any():
        return out
    s_img = max(sigma_psf, 0.5) * math.sqrt(2.0)  # a source's size in the filtered image
    xs, ys, rs = [], [], []
    lab_hi, n_hi = ndimage.label(hot, _EIGHT)
    mx, my, peak, area, compact = _blobs(f, lab_hi, n_hi, sigma_psf, max_elongation)
    sel = compact & (peak > 3.0 * star_sigma)
    xs.append(mx[sel])
    ys.append(my[sel])
    rs.append(peak[sel])
    rs_area = [area[sel]]
    # elongated bright components: split blends at a fifth of their peak
    split = np.flatnonzero(~compact & (peak > 3.0 * star_sigma))
    if split.size:
        slices = ndimage.find_objects(lab_hi)
        for i in split:
            sl = slices[i]
            sub = np.where(lab_hi[sl] == i + 1, f[sl], 0.0)
            lab2, n2 = ndimage.label(sub > 0.2 * peak[i], _EIGHT)
            if n2 < 2:
                continue
            bx, by, bp, ba, bc = _blobs(sub, lab2, n2, sigma_psf, max_elongation)
            keep = bc & (bp > 3.0 * star_sigma)
            xs.append(bx[keep] + sl[1].start)
            ys.append(by[keep] + sl[0].start)
            rs.append(bp[keep])
            rs_area.append(ba[keep])
    lab_lo, n_lo = ndimage.label(f > 0.5 * star_sigma, _EIGHT)
    has_hot = np.zeros(n_lo + 1, dtype=bool)
    has_hot[np.unique(lab_lo[hot])] = True
    lab_lo = np.where(has_hot[lab_lo], lab_lo, 0)
    mx, my, peak, area, compact = _blobs(f, lab_lo, n_lo, sigma_psf, max_elongation)
    sel = compact & has_hot[1:]
    xs.append(mx[sel])
    ys.append(my[sel])
    rs.append(peak[sel])
    rs_area.append(area[sel])
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    pk, ar = np.concatenate(rs), np.concatenate(rs_area)
    radius = (
        np.maximum(np.sqrt(ar / np.pi), s_img * np.sqrt(2.0 * np.log(np.maximum(pk, 1.0)))) + 1.0
    )
    disks = np.zeros(f.shape, dtype=np.uint8)
    for x, y, r in zip(x_all, y_all, radius, strict=True):  # 4 bits of sub-pixel precision
        cv2.circle(
            disks,
            (int(round(x * 16)), int(round(y * 16))),
            int(round(r * 16)),
            1,
            -1,
            cv2.LINE_8,
            4,
        )
    return disks.astype(bool)


def clean_image(
    f: np.ndarray, bad: np.ndarray, star_sigma: float, clip_sigma: float | None, sigma_psf: float
) -> np.ndarray:
    stars = compact_sources(f, star_sigma, sigma_psf)
    g = f.copy() if clip_sigma is None else np.clip(f, -clip_sigma, clip_sigma)
    g[stars | bad] = 0.0
    return g
