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
profile (:func:`winsorise`, :func:`max_segment`) and the measured noise of line
sums (:func:`line_noise`, :class:`LineNoise`).

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
    "hugs_boundary",
    "ridge_fraction",
    "sample_line",
    "LineNoise",
    "line_noise",
    "local_sigma",
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
    rp = np.empty((nb // 2, n, y + n), dtype=a.dtype)
    rp[:, :, :y] = a[1::2]
    rp[:, :, y:] = 0
    sb, sk, sy = rp.strides
    # skewed view: diag[b, k, j] = rp[b, k, j + k]  (the right block shifted up by k rows)
    diag = as_strided(rp, shape=(nb // 2, n, y + 1), strides=(sb, sk + sy, sy), writeable=False)
    out = np.empty((nb // 2, 2 * n, y), dtype=a.dtype)
    np.add(left, diag[:, :, :y], out=out[:, 0::2, :])  # s = 2k: shift ceil(s/2) = k
    np.add(left, diag[:, :, 1 : y + 1], out=out[:, 1::2, :])  # s = 2k + 1: shift k + 1
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


class LineNoise:
    """Standard deviation of the sum of ``n`` consecutive samples along a line, ``sd(n)``.

    White noise filtered by a PSF has ``sd(n) = sqrt(n c)`` (Nir et al. 2018,
    §4); the sky of a real camera is not white (interpolated, compressed or
    smoothed frames, unresolved stars, residual background), and its line
    sums grow faster with ``n``. :func:`line_noise` measures ``sd(n)`` on
    the image itself at lengths ``4, 8, 16, ...``; between them ``sd`` is
    interpolated in log-log, beyond them extrapolated as ``sqrt(n)``.

    Parameters
    ----------
    lengths : ndarray, shape (K,)
        Line lengths (samples), increasing.
    sd : ndarray, shape (K,)
        Standard deviation of the sum at each length (filtered-image units).
    """

    def __init__(self, lengths: np.ndarray, sd: np.ndarray) -> None:
        self.lengths = np.asarray(lengths, np.float64)
        self.sd = np.asarray(sd, np.float64)
        self._ll = np.log(self.lengths)
        self._ls = np.log(self.sd)

    @classmethod
    def white(cls, c: float) -> LineNoise:
        """Filtered white noise: ``sd(n) = sqrt(n c)``."""
        n = np.array([1.0, 2.0])
        return cls(n, np.sqrt(c * n))

    def __call__(self, n: np.ndarray | float) -> np.ndarray:
        x = np.log(np.maximum(np.asarray(n, np.float64), 1.0))
        y = np.interp(x, self._ll, self._ls)
        y = np.where(x > self._ll[-1], self._ls[-1] + 0.5 * (x - self._ll[-1]), y)
        y = np.where(x < self._ll[0], self._ls[0] + 0.5 * (x - self._ll[0]), y)
        return np.exp(y)

    def ratio(self, n: float) -> float:
        """``sd(n) / sqrt(n)``: the effective ``sqrt(c)`` at length ``n``."""
        return float(self(n)) / math.sqrt(max(float(n), 1.0))


def _robust_sd(x: np.ndarray) -> float:
    if x.size < 16:
        return float("nan")
    med = float(np.median(x))
    return 1.4826 * float(np.median(np.abs(x - med)))


def line_noise(
    g: np.ndarray, valid: np.ndarray, *, clip: float = 2.5, max_samples: int = 20000
) -> LineNoise:
    """Measure :class:`LineNoise` of the filtered image ``g`` along its rows and columns.

    Sums of ``L = 4, 8, ..., 256`` consecutive samples (clipped to
    ``± clip``, as the line statistic clips them) over windows fully inside
    the valid pixels; the robust standard deviation (1.4826 MAD, so that
    stars and a streak in the frame count little) of up to ``max_samples``
    windows per length and direction, the two directions averaged in
    variance.

    Parameters
    ----------
    g : ndarray, shape (H, W)
        Filtered image in units of its pixel noise.
    valid : ndarray of bool, shape (H, W)
        ``True`` = pixel used.
    clip : float, optional
        Clip applied to the samples. Default 2.5 (:data:`KAPPA`).
    max_samples : int, optional
        Windows used per length and direction. Default 20000.

    Returns
    -------
    LineNoise
    """
    x = np.clip(g, -clip, clip).astype(np.float32)
    x[~valid] = 0.0
    v = valid.astype(np.float32)
    h, w = x.shape
    lengths, sds = [], []
    L = 4
    while L <= min(256, max(h, w) // 2):
        var = []
        for img, vv in ((x, v), (x.T, v.T)):
            if img.shape[1] < 2 * L:
                continue
            k = np.ones((1, L), np.float32)
            s = cv2.filter2D(img, -1, k, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
            n = cv2.filter2D(vv, -1, k, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
            s, n = s[:, : img.shape[1] - L + 1], n[:, : img.shape[1] - L + 1]
            good = n > L - 0.5
            vals = s[good]
            if vals.size > max_samples:
                vals = vals[:: vals.size // max_samples]
            sd = _robust_sd(vals)
            if np.isfinite(sd) and sd > 0:
                var.append(sd * sd)
        if var:
            lengths.append(L)
            sds.append(math.sqrt(float(np.mean(var))))
        L *= 2
    if not lengths:
        return LineNoise.white(1.0)
    sd = np.maximum.accumulate(np.asarray(sds))  # a longer sum is never less noisy
    return LineNoise(np.asarray(lengths, float), sd)


def local_sigma(f: np.ndarray, bad: np.ndarray, block: int = 32) -> np.ndarray:
    """Map of the robust pixel noise of ``f`` (1.4826 MAD in ``block`` x ``block`` boxes).

    The boxes' values are median-filtered over 3x3 boxes (a streak or a
    bright star filling one box does not raise its neighbours'), clipped
    below at half their median, and interpolated bilinearly to full
    resolution. Dividing the filtered image by it puts textured regions
    (trees, clouds, nebulosity, dense star fields) on the scale of their
    own fluctuations, as the noise map of Nir et al. (2018, §4) does for
    the variance.

    Parameters
    ----------
    f : ndarray, shape (H, W)
    bad : ndarray of bool, shape (H, W)
        ``True`` = pixel ignored.
    block : int, optional
        Box size in pixels. Default 32.

    Returns
    -------
    ndarray of float32, shape (H, W)
    """
    h, w = f.shape
    nby, nbx = max(1, -(-h // block)), max(1, -(-w // block))
    ph, pw = nby * block - h, nbx * block - w
    if not bad.any() and ph < h and pw < w:  # no NaN: the fast median
        pad = np.pad(f.astype(np.float32, copy=False), ((0, ph), (0, pw)), mode="reflect")
        blocks = pad.reshape(nby, block, nbx, block).transpose(0, 2, 1, 3).reshape(nby, nbx, -1)
        med = np.median(blocks, axis=2, keepdims=True)
        sd = 1.4826 * np.median(np.abs(blocks - med), axis=2)
    else:
        pad = np.full((nby * block, nbx * block), np.nan, np.float32)
        pad[:h, :w] = np.where(bad, np.nan, f)
        blocks = pad.reshape(nby, block, nbx, block).transpose(0, 2, 1, 3).reshape(nby, nbx, -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(blocks, axis=2, keepdims=True)
            sd = 1.4826 * np.nanmedian(np.abs(blocks - med), axis=2)
    ok = np.isfinite(sd) & (sd > 0)
    if not ok.any():
        return np.ones((h, w), np.float32)
    sd = np.where(ok, sd, np.median(sd[ok])).astype(np.float32)
    if min(nby, nbx) >= 3:
        sd = ndimage.median_filter(sd, size=3, mode="nearest")
    sd = np.maximum(sd, 0.5 * float(np.median(sd)))
    # block centres at (k + 0.5) block - 0.5: resize by the block factor, then crop
    full = cv2.resize(sd, (nbx * block, nby * block), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(full[:h, :w])


def max_segment(
    p: np.ndarray, valid: np.ndarray, c: float | LineNoise, min_len: int
) -> tuple[float, int, int]:
    """Contiguous segment ``[i, j)`` maximising ``Σ p / sd(n_valid)``; (score, i, j).

    ``c`` is a :class:`LineNoise` or, for filtered white noise, the scalar
    ``c`` of ``sd(n) = sqrt(c n)``.
    """
    noise = c if isinstance(c, LineNoise) else LineNoise.white(float(c))
    csum = np.concatenate([[0.0], np.cumsum(p, dtype=np.float64)])
    cnt = np.concatenate([[0], np.cumsum(valid, dtype=np.int64)])
    m = p.size
    sdn = noise(np.arange(m + 1))
    min_n = max(min_len, 2)

    def best(ii: np.ndarray, jj: np.ndarray) -> tuple[float, int, int]:
        s = csum[jj][None, :] - csum[ii][:, None]
        n = cnt[jj][None, :] - cnt[ii][:, None]
        ok = (n >= min_n) & (jj[None, :] > ii[:, None])
        score = np.where(ok, s / sdn[np.maximum(n, 0)], -np.inf)
        k = int(np.argmax(score))
        a, b = divmod(k, jj.size)
        return float(score.flat[k]), int(ii[a]), int(jj[b])

    # coarse to fine: every 4th end first, then every end within 4 of the best pair
    step = 1 if m <= 300 else 4
    grid = np.arange(0, m + 1, step)
    sc, i, j = best(grid, grid)
    if step > 1:
        fi = np.arange(max(i - step, 0), min(i + step, m) + 1)
        fj = np.arange(max(j - step, 0), min(j + step, m) + 1)
        sc2, i2, j2 = best(fi, fj)
        if sc2 >= sc:
            sc, i, j = sc2, i2, j2
    return sc, i, j


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
    """Mean of ``b`` x ``b`` blocks of ``data`` (the last partial row/column of blocks dropped)."""
    h, w = data.shape
    hb, wb = h // b, w // b
    crop = data[: hb * b, : wb * b]
    if crop.dtype != np.float32 or crop.strides[1] != 4:
        crop = np.ascontiguousarray(crop, dtype=np.float32)
    return cv2.resize(crop, (wb, hb), interpolation=cv2.INTER_AREA)


def _blobs(f: np.ndarray, lab: np.ndarray, n: int, sigma_psf: float, max_elongation: float):
    """Per component of ``lab``: centroid, peak, area and whether it is compact (round or PSF-sized)."""
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
    pk = np.full(n + 1, -np.inf)
    np.maximum.at(pk, ll, f[yy, xx].astype(np.float64))
    peak = pk[1:]
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


# --------------------------------------------------------------------------- line shape


def sample_line(
    g: np.ndarray, valid: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples of ``g`` at ``(xs, ys)`` (px, any equal shapes) and whether each is valid.

    ``valid`` is a float32 map (1 = usable pixel, sampled nearest); a sample
    outside the frame is 0 and not valid.
    """
    mx, my = xs.astype(np.float32), ys.astype(np.float32)
    vals = cv2.remap(g, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    h, w = g.shape
    inside = (xs >= -0.5) & (xs <= w - 0.5) & (ys >= -0.5) & (ys <= h - 0.5)
    ok = cv2.remap(valid, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return vals, (ok > 0.5) & inside


def ridge_fraction(
    g: np.ndarray,
    valid: np.ndarray,
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    fwhm: float,
) -> tuple[float, float]:
    """How much of a line's filtered light is a ridge as narrow as the PSF.

    The PSF-filtered image ``g`` of a streak of Gaussian PSF (FWHM ``fwhm``
    px) falls across the line as ``exp(-d^2 / (4 s^2))``, ``s = FWHM /
    2.355``: to 0.25 of its peak at ``d = ± FWHM``. The fraction is ``1 -
    S1 / S0`` with ``S0`` the line sum of ``g`` along the segment and ``S1``
    the mean of the sums along the two lines one FWHM to either side (each
    line winsorised like the line statistic): 0.75 for a streak, near 0 for
    a band or a glow wider than a few PSFs (Milky Way lanes, vignetting,
    clouds), below 0.5 for an edge. The noise of ``S0 - S1`` is about that
    of ``S0`` (the filtered noise at ``± FWHM`` is correlated 0.25 with the
    centre), so the fraction scatters by about ``1 / significance``.

    Parameters
    ----------
    g : ndarray, shape (H, W)
        PSF-filtered image in units of its noise, stars blanked.
    valid : ndarray of float32, shape (H, W)
        1 = usable pixel.
    x1, y1, x2, y2 : float
        Segment ends, px (0-based, x = column).
    fwhm : float
        PSF FWHM, px.

    Returns
    -------
    fraction : float
        ``1 - S1 / S0``; 0 when ``S0 <= 0`` or fewer than 4 samples are valid.
    s0 : float
        ``S0`` (filtered-image units).
    """
    length = math.hypot(x2 - x1, y2 - y1)
    if length <= 0:
        return 0.0, 0.0
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    tt = np.arange(0.0, length + 1e-9, 1.0)
    dd = np.array([0.0, -fwhm, fwhm])
    xs = x1 + tt[None, :] * ux - dd[:, None] * uy
    ys = y1 + tt[None, :] * uy + dd[:, None] * ux
    vals, ok = sample_line(g, valid, xs, ys)
    both = ok.all(axis=0)
    if both.sum() < 4:
        return 0.0, 0.0
    v = winsorise(vals[:, both], np.ones((3, int(both.sum())), bool))
    s0 = float(v[0].sum())
    s1 = 0.5 * float(v[1].sum() + v[2].sum())
    if s0 <= 0:
        return 0.0, s0
    return 1.0 - s1 / s0, s0


def hugs_boundary(
    dist: np.ndarray,
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    near: float,
    tangent_range: float,
) -> bool:
    """Whether a segment runs along the edge of the masked area (lens circle, horizon, dome).

    ``dist`` is the distance (px) of each pixel to the nearest masked one.
    True when more than half the segment lies within ``near`` px of the
    mask, or when the segment's median distance is under ``tangent_range``
    px and it runs across the distance gradient (median ``|cos|`` between
    the segment and the gradient under 0.5): the glow, vignetting and
    halos just inside a fisheye circle or a horizon line up along it.

    Parameters
    ----------
    dist : ndarray of float32, shape (H, W)
        Distance to the mask, px.
    x1, y1, x2, y2 : float
        Segment ends, px.
    near, tangent_range : float
        Distances, px.

    Returns
    -------
    bool
    """
    length = math.hypot(x2 - x1, y2 - y1)
    if length <= 0:
        return False
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    tt = np.arange(0.0, length + 1e-9, 2.0)
    xs, ys = x1 + tt * ux, y1 + tt * uy
    ones = np.ones(dist.shape, np.float32)
    d, ok = sample_line(dist, ones, xs[None, :], ys[None, :])
    d = d[0][ok[0]]
    if d.size < 2:
        return False
    if float(np.mean(d < near)) > 0.5:
        return True
    if float(np.median(d)) >= tangent_range:
        return False
    # the distance gradient, by central differences at the samples
    h = 2.0
    gx = sample_line(dist, ones, (xs + h)[None, :], ys[None, :])[0][0]
    gx = gx - sample_line(dist, ones, (xs - h)[None, :], ys[None, :])[0][0]
    gy = sample_line(dist, ones, xs[None, :], (ys + h)[None, :])[0][0]
    gy = gy - sample_line(dist, ones, xs[None, :], (ys - h)[None, :])[0][0]
    norm = np.hypot(gx, gy)
    use = ok[0] & (norm > 1e-3)
    if use.sum() < 2:
        return False
    cosang = np.abs(gx[use] * ux + gy[use] * uy) / norm[use]
    return float(np.median(cosang)) < 0.5
