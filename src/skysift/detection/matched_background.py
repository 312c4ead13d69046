"""The background and noise maps of the matched-filter star finder.

The frame's background is a local quadratic regression on a fine mesh of
star-masked block values; the noise is measured on the PSF-filtered image
itself, so photon noise that grows under a glow, and noise correlated by JPEG
or Bayer interpolation, set the local threshold. Used by
:mod:`skysift.detection.matched`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import sep
from scipy.spatial import cKDTree

from skysift._validation import check_image
from skysift.errors import InputError

__all__ = ["MatchedBackground", "matched_background"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: Fraction of the local (3x3-block median) noise variance kept as a floor of the model.
_LOCAL_NOISE_FLOOR = 0.8


@dataclass
class MatchedBackground:
    """The background, the noise of the filtered image and the source mask of a frame.

    Attributes
    ----------
    level : ndarray, shape (H, W), float32
        Background level per pixel, image units.
    filtered : ndarray, shape (H, W), float32
        The background-subtracted image filtered by the unit-sum Gaussian of ``fwhm``
        (masked pixels count as zero), image units.
    filtered_rms : ndarray, shape (H, W), float32
        1-sigma noise of the PSF-filtered background-subtracted image, image units.
    pixel_rms : ndarray, shape (H, W), float32
        White-noise-equivalent 1-sigma noise per pixel (``filtered_rms / ||k||_2``).
    sources : ndarray of bool, shape (H, W)
        Pixels excluded from the background as belonging to a source (``True`` = source).
    fwhm : float
        The Gaussian kernel's FWHM, pixels.
    """

    level: np.ndarray
    filtered: np.ndarray
    filtered_rms: np.ndarray
    pixel_rms: np.ndarray
    sources: np.ndarray
    fwhm: float


def _blocks(a: np.ndarray, size: int) -> np.ndarray:
    """``(ny, nx, size*size)`` view-copy of an image padded to whole blocks."""
    ny, nx = a.shape[0] // size, a.shape[1] // size
    return (
        a[: ny * size, : nx * size]
        .reshape(ny, size, nx, size)
        .transpose(0, 2, 1, 3)
        .reshape(ny, nx, size * size)
    )


def _pad(a: np.ndarray, size: int, value: float) -> np.ndarray:
    h, w = a.shape
    ph, pw = (-h) % size, (-w) % size
    if ph == 0 and pw == 0:
        return a
    return np.pad(a, ((0, ph), (0, pw)), mode="constant", constant_values=value)


def _block_quantiles(
    values: np.ndarray, bad: np.ndarray, size: int, qs: tuple[float, ...]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Quantiles ``qs`` of the good pixels of each block and the fraction of good pixels."""
    v = _blocks(_pad(np.where(bad, np.nan, values).astype(np.float32), size, np.nan), size)
    v = np.sort(v, axis=-1)  # NaNs sort last
    n = np.count_nonzero(np.isfinite(v), axis=-1)
    out = []
    for q in qs:
        pos = np.clip(q * (n - 1), 0, None)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        f = (pos - lo).astype(np.float32)
        a = np.take_along_axis(v, lo[..., None], -1)[..., 0]
        b = np.take_along_axis(v, hi[..., None], -1)[..., 0]
        out.append(np.where(n > 0, (1 - f) * a + f * b, 0.0).astype(np.float32))
    return out, (n / float(size * size)).astype(np.float32)


def _local_quadratic(z: np.ndarray, w: np.ndarray, half: int) -> np.ndarray:
    """Weighted local quadratic regression of a grid (a 2-D Savitzky-Golay smoother with gaps).

    At each node the quadratic ``c0 + c1 u + c2 v + c3 u^2 + c4 uv + c5 v^2`` is fitted by
    weighted least squares over the ``(2 half + 1)^2`` nodes around it (weights ``w`` times a
    Gaussian taper); ``c0`` is returned. A quadratic follows the curvature of a glow's core
    exactly, where a mesh median filter cuts the peak.
    """
    u = np.arange(-half, half + 1, dtype=np.float64)
    taper = np.exp(-0.5 * (u / (0.45 * (half + 1))) ** 2)  # separable Gaussian taper
    powers = [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]

    def corr(img: np.ndarray, a: int, b: int) -> np.ndarray:
        kx = (taper * u**a).reshape(1, -1)
        ky = (taper * u**b).reshape(-1, 1)
        return cv2.sepFilter2D(img, cv2.CV_64F, kx, ky, borderType=cv2.BORDER_CONSTANT)

    w64 = w.astype(np.float64)
    wz = w64 * z.astype(np.float64)
    keys = [(a, b) for a in range(5) for b in range(5 - a)]
    mom = np.stack([corr(w64, a, b) for a, b in keys], axis=-1).reshape(-1, len(keys))
    rhs = np.stack([corr(wz, a, b) for a, b in powers], axis=-1).reshape(-1, 6)
    pos = {k: i for i, k in enumerate(keys)}
    idx = np.array([[pos[(a1 + a2, b1 + b2)] for a2, b2 in powers] for a1, b1 in powers])
    m0 = mom[:, 0]
    mean = m0 > 1e-9
    out = np.where(mean, rhs[:, 0] / np.maximum(m0, 1e-12), 0.0)
    mat = mom[mean][:, idx]
    # A small ridge on the slope and curvature terms keeps sparse corners solvable.
    mat[:, range(1, 6), range(1, 6)] += 1e-3 * m0[mean, None]
    try:
        out[mean] = np.linalg.solve(mat, rhs[mean][..., None])[:, 0, 0]
    except np.linalg.LinAlgError:
        pass  # singular somewhere: keep the weighted mean everywhere
    out = out.reshape(z.shape)
    return out.astype(np.float32)


def _upsample(grid: np.ndarray, shape: tuple[int, int], size: int) -> np.ndarray:
    """Bicubic interpolation of block values (at block centres) to the full image."""
    ny, nx = grid.shape
    big = cv2.resize(grid.astype(np.float32), (nx * size, ny * size), interpolation=cv2.INTER_CUBIC)
    h, w = shape
    if big.shape[0] < h or big.shape[1] < w:  # an odd last row or column of the 2x2 bins
        dh, dw = max(h - big.shape[0], 0), max(w - big.shape[1], 0)
        big = cv2.copyMakeBorder(big, 0, dh, 0, dw, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(big[:h, :w])


def _gaussian(image: np.ndarray, fwhm: float) -> np.ndarray:
    s = fwhm * _FWHM_TO_SIGMA
    k = 2 * int(math.ceil(3.5 * s)) + 1
    return cv2.GaussianBlur(image, (k, k), s, borderType=cv2.BORDER_REFLECT)


def _kernel_norm(fwhm: float) -> float:
    """``||k||_2`` of the discrete unit-sum Gaussian kernel used by :func:`_gaussian`."""
    s = fwhm * _FWHM_TO_SIGMA
    k1 = cv2.getGaussianKernel(2 * int(math.ceil(3.5 * s)) + 1, s).ravel()
    return float(np.sqrt((k1**2).sum()) ** 2)


def _block_mean_fraction(fwhm: float, mesh: int) -> float:
    """Fraction of the filtered white noise's variance in the mean of a ``mesh`` block.

    ``Var(block mean of F) / Var(F)`` for ``F`` = white noise filtered by the Gaussian kernel.
    """
    s = fwhm * _FWHM_TO_SIGMA
    k1 = cv2.getGaussianKernel(2 * int(math.ceil(3.5 * s)) + 1, s).ravel()
    u1 = np.convolve(np.ones(mesh) / mesh, k1)
    rho = float((u1**2).sum() / (k1**2).sum()) ** 2
    return min(rho, 0.9)


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(math.ceil(radius)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy <= radius * radius + 1e-9).astype(np.uint8)


def _refine_step(mesh: int, refine: float) -> int:
    """The largest divisor of ``mesh`` at most ``refine / 2`` (1 without a refinement)."""
    if refine <= 0:
        return 1
    return max(d for d in range(1, mesh + 1) if mesh % d == 0 and d <= max(1.0, refine / 2))


def _pass(
    data: np.ndarray,
    bad: np.ndarray,
    exclude: np.ndarray,
    fwhm: float,
    mesh: int,
    half: int,
    robust: bool,
    refine: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One background/noise pass: (level, filtered, filtered_rms)."""
    shape = data.shape
    skip = bad | exclude
    if robust:
        # 2x2 means (a quarter of the values to sort) in blocks of ``mesh`` px
        sub = max(1, mesh // 2)
        h2, w2 = shape[0] // 2, shape[1] // 2
        d2 = cv2.resize(data[: 2 * h2, : 2 * w2], (w2, h2), interpolation=cv2.INTER_AREA)
        s2 = skip[0 : 2 * h2 : 2, 0 : 2 * w2 : 2] | skip[1 : 2 * h2 : 2, 0 : 2 * w2 : 2]
        s2 |= skip[0 : 2 * h2 : 2, 1 : 2 * w2 : 2] | skip[1 : 2 * h2 : 2, 1 : 2 * w2 : 2]
        (q16, z), frac = _block_quantiles(d2, s2, sub, (0.1587, 0.5))
        ny, nx = z.shape
        # error of a median: 1.25 sigma / sqrt(n)
        err_b = 1.25 * (z - q16) / np.sqrt(np.maximum(frac * sub * sub, 1.0))
    else:
        # Block means off the skipped pixels, through an intermediate grid of ``step`` px on
        # which the refinement below works (cv2's area resize is an exact block mean).
        step = _refine_step(mesh, refine)
        ph, pw = (-shape[0]) % mesh, (-shape[1]) % mesh
        keep = cv2.copyMakeBorder((~skip).view(np.uint8), 0, ph, 0, pw, cv2.BORDER_CONSTANT, 0)
        v = cv2.copyMakeBorder(data, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0.0)
        v[keep == 0] = 0.0
        hq, wq = v.shape[0] // step, v.shape[1] // step
        v_q = cv2.resize(v, (wq, hq), interpolation=cv2.INTER_AREA)
        keep_q = cv2.resize(keep.astype(np.float32), (wq, hq), interpolation=cv2.INTER_AREA)
        del v, keep
        ny, nx = hq * step // mesh, wq * step // mesh
        frac = cv2.resize(keep_q, (nx, ny), interpolation=cv2.INTER_AREA)
        vsum = cv2.resize(v_q, (nx, ny), interpolation=cv2.INTER_AREA)
        z = np.where(frac > 0, vsum / np.maximum(frac, 1e-12), 0.0).astype(np.float32)
        err_b = np.ones_like(z)  # used by the first (robust) pass only
    w = np.where(frac >= 0.2, frac, 0.0)
    grid = _local_quadratic(z, w, half)
    # Where the sky bends faster than the quadratic follows (a glow's core), the blocks'
    # residual from the fit, smoothed on a window of two blocks, stands out of its noise:
    # there (and only there, so that the finer, noisier fit does not add noise elsewhere)
    # it corrects the fit.
    use = w > 0
    if np.count_nonzero(use) > 25 and refine <= 0:  # the second pass refines below
        fine = _local_quadratic(z - grid, w, 2)
        err_b = np.maximum(err_b, 1e-12)
        t = np.where(use, fine / err_b, 0.0).astype(np.float32)
        tu = t[use]
        scale = 1.4826 * float(np.median(np.abs(tu - np.median(tu)))) + 1e-12
        # Sky structure spans several blocks, a star's light one or two: the weakest
        # significance over 3x3 blocks decides.
        box = np.ones((3, 3), np.uint8)
        t_ext = np.where(t > 0, cv2.erode(t, box), -cv2.erode(-t, box))
        t_ext = np.where(np.sign(t_ext) == np.sign(t), t_ext, 0.0)
        apply = np.clip((np.abs(t_ext) / scale - 3.0) / 2.0, 0.0, 1.0)
        grid = grid + (apply * fine).astype(np.float32)
    if refine > 0 and not robust:
        # What the mesh fit leaves (a glow's core bends faster than any smooth fit) is
        # taken out by a Gaussian-weighted mean of the residual off the sources
        # (normalised convolution, Knutsson & Westin 1993, CVPR, 515) on ``refine`` px,
        # computed on the grid of ``step`` px (the weighted mean is smooth on that scale)
        # and interpolated bilinearly to the pixels.
        level_q = cv2.resize(grid, (wq, hq), interpolation=cv2.INTER_CUBIC)
        r = np.where(keep_q > 0, v_q / np.maximum(keep_q, 1e-12) - level_q, 0.0)
        sq = refine / step
        k = 2 * int(math.ceil(3.0 * sq)) + 1
        num = cv2.GaussianBlur(
            (r * keep_q).astype(np.float32), (k, k), sq, borderType=cv2.BORDER_REFLECT
        )
        den = cv2.GaussianBlur(keep_q, (k, k), sq, borderType=cv2.BORDER_REFLECT)
        level_q = level_q + np.where(den > 0.05, num / np.maximum(den, 0.05), 0.0)
        level = cv2.resize(
            level_q.astype(np.float32), (wq * step, hq * step), interpolation=cv2.INTER_LINEAR
        )
        level = np.ascontiguousarray(level[: shape[0], : shape[1]])
    else:
        level = _upsample(grid, shape, mesh)
    resid = data - level
    resid[bad] = 0.0
    filt = _gaussian(resid, fwhm)
    # Noise of the filtered image: robust block rms of the filtered residual off the sources,
    # from the lower half of each block's distribution (median - 15.87th percentile), which
    # faint stars and the wings of bright ones (they only add light) barely reach. The
    # filtered noise is correlated over the kernel: a block's spread about its own median
    # misses the variance of the block mean, a known fraction rho restored here.
    # Blocks of twice the mesh, every other pixel (the filtered image is smooth on that
    # scale): a quarter of the values to sort.
    nmesh = 2 * mesh
    (q16, q50), frac = _block_quantiles(filt[::2, ::2], skip[::2, ::2], mesh, (0.1587, 0.5))
    sig = np.maximum(q50 - q16, 0.0) / math.sqrt(1.0 - _block_mean_fraction(fwhm, nmesh))
    wsig = np.where(frac >= 0.2, frac, 0.0)
    if not (wsig > 0).any():
        rms = np.full(shape, max(float(np.std(filt[~skip])) if (~skip).any() else 1.0, 1e-6))
        return level, filt, rms.astype(np.float32)
    ny, nx = sig.shape
    grid = cv2.resize(grid, (nx, ny), interpolation=cv2.INTER_AREA)[:ny, :nx]
    # Photon noise follows the level (a glow's core is noisier than its wings): the variance
    # is a function of the level, g (binned medians over the frame), times a factor that
    # changes slowly over the frame (flat field, gain, cloud), smoothed on a wide window.
    var_b = sig.astype(np.float64) ** 2
    use = wsig > 0
    lev, vb = grid[use], var_b[use]
    edges = np.unique(np.quantile(lev, np.linspace(0, 1, 25)))
    idx = np.clip(np.searchsorted(edges, lev, side="right") - 1, 0, max(edges.size - 2, 0))
    bins = [idx == k for k in range(edges.size - 1) if np.count_nonzero(idx == k) >= 5]
    cent = np.array([np.median(lev[b]) for b in bins] or [0.0])
    med = np.array([np.median(vb[b]) for b in bins] or [np.median(vb)])
    if cent.size >= 2:  # beyond the outer bins, continue linearly (variance ~ level)
        span = 1e6 * (abs(cent[-1] - cent[0]) + 1.0)
        slope = [
            max((med[i] - med[j]) / max(cent[i] - cent[j], 1e-12), 0.0)
            for i, j in ((1, 0), (-1, -2))
        ]
        cent = np.r_[cent[0] - span, cent, cent[-1] + span]
        med = np.r_[med[0] - slope[0] * span, med, med[-1] + slope[1] * span]

    def g(x: np.ndarray) -> np.ndarray:
        return (
            np.interp(np.asarray(x, np.float64), cent, med)
            if cent.size >= 2
            else np.full(np.shape(x), med[0])
        )

    model_b = np.maximum(g(grid), 1e-12)
    # a median over 3x3 blocks first: one block lit by a star's wing must not swing the fit
    ratio = np.clip(var_b / model_b, 0.2, 5.0).astype(np.float32)
    ratio = np.where(use, ratio, np.float32(np.median(ratio[use])))
    factor = _local_quadratic(cv2.medianBlur(ratio, 3), wsig, half)
    factor = np.clip(factor, 0.1, 10.0)
    floor = max(float(np.median(var_b[use])) * 1e-2, 1e-12)
    var = np.maximum(model_b * factor, floor)
    # Where the noise changes faster than the smooth factor follows (a sharp edge of a
    # light dome, a patch of another exposure), the local block variance (median of 3x3
    # blocks, which a single block lit by a star's wing does not move) sets a floor.
    local = cv2.medianBlur(np.where(use, var_b, var).astype(np.float32), 3)
    var = np.maximum(var, _LOCAL_NOISE_FLOOR * local).astype(np.float32)
    rms = np.maximum(_upsample(np.sqrt(var), shape, nmesh), np.float32(math.sqrt(floor)))
    return level, filt, rms


def matched_background(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    fwhm: float | None = 3.0,
    initial_fwhm: float = 2.5,
    saturation: float | None = None,
    mesh_size: int = 8,
    smooth_meshes: int = 4,
    source_sigma: float = 2.5,
    max_patch_ratio: float = 5.0,
    refine_fwhm: float = 3.0,
) -> MatchedBackground:
    """Background, filtered-image noise and source mask for matched filtering.

    Two passes: block medians of the image (``mesh_size`` px) smoothed by a weighted local
    quadratic regression over ``2 smooth_meshes + 1`` meshes give a first background; the
    Gaussian-filtered residual is divided by its robust local rms and the patches above
    ``source_sigma`` that peak above 4 sigma and are compact (dilated by one FWHM) are
    masked as sources; the second pass takes the mean of the unmasked pixels of each
    block, smooths it the same way, refines it with a Gaussian-weighted mean of the
    residual on ``refine_fwhm`` FWHM, and measures the rms of the filtered residual off
    the sources, as a function of the level (photon noise) times a slowly varying factor,
    never below 0.8 of the local noise (the median of 3x3 noise blocks, where the noise
    changes faster than the factor follows).
    The mesh and clipping follow SExtractor's background (Bertin & Arnouts 1996, A&AS 117,
    393, §3.1) with the mesh median filter replaced by a local quadratic (Savitzky & Golay
    1964, Anal. Chem. 36, 1627), which follows the curvature of a glow's core; measuring
    the noise after the filter gives the detection threshold in units of the filtered
    noise (Bertin & Arnouts 1996, §4.1).

    Parameters
    ----------
    image : ndarray, shape (H, W)
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = not sky / bad pixel.
    fwhm : float or None, optional
        FWHM of the Gaussian matched filter, pixels; ``None`` measures it after the first
        pass (the median half-light diameter of bright, isolated, unsaturated peaks).
        Default 3.
    initial_fwhm : float, optional
        Filter FWHM of the first pass when ``fwhm`` is None, pixels. Default 2.5.
    saturation : float, optional
        Saturation level (stars near it are not used to measure the FWHM).
    mesh_size : int, optional
        Block size, pixels. Default 8.
    smooth_meshes : int, optional
        Half-width of the regression window, in blocks. Default 4.
    source_sigma : float, optional
        Filtered significance above which pixels may be masked as sources. Default 2.5.
    max_patch_ratio : float, optional
        A connected patch above ``source_sigma`` larger than this many times the area a
        star of its peak significance covers (plus 4 FWHM^2) is taken as sky structure, not
        a source, and is not masked. Default 5.
    refine_fwhm : float, optional
        Sigma, in FWHM, of the Gaussian-weighted mean of the residual that refines the mesh
        fit in the second pass; 0 = none. Default 3.

    Returns
    -------
    MatchedBackground

    Raises
    ------
    InputError
        If the image is not 2-D, the mask has another shape, every pixel is masked, or a
        parameter is out of range.
    """
    data, bad = check_image(image, mask, what="matched background")
    for name, value in (("fwhm", fwhm), ("initial_fwhm", initial_fwhm)):
        if value is not None and not (np.isfinite(value) and 0.5 <= value <= 30):
            msg = f"{name} must be a number of pixels in [0.5, 30], got {value!r}"
            raise InputError(msg)
    if not 2 <= int(mesh_size) <= 256:
        msg = f"mesh_size must be in [2, 256] pixels, got {mesh_size!r}"
        raise InputError(msg)
    if not 1 <= int(smooth_meshes) <= 20:
        msg = f"smooth_meshes must be in [1, 20] meshes, got {smooth_meshes!r}"
        raise InputError(msg)
    if bad.all():
        msg = "matched background: every pixel is masked or not finite"
        raise InputError(msg)
    data = np.where(bad, 0.0, data).astype(np.float32)
    mesh, half = int(mesh_size), int(smooth_meshes)
    none = np.zeros(data.shape, bool)
    f0 = float(initial_fwhm if fwhm is None else fwhm)
    level, filt, rms = _pass(data, bad, none, f0, mesh, half, robust=True)
    snr = filt / rms
    if fwhm is None:
        fwhm = _measure_fwhm(data, bad, level, snr, f0, saturation)
    above = ((snr > source_sigma) & ~bad).view(np.uint8)
    # Stars are compact: a star of peak significance S covers about
    # 4 pi sigma_psf^2 ln(S / source_sigma) pixels above the cut (a Gaussian filtered by
    # itself). A patch far larger than that for its peak is sky the first pass missed (a
    # glow's core, a cloud's edge), and is given back to the background; patches that
    # never reach 4 sigma are noise (a few per thousand pixels, which the dilation below
    # would grow over much of the sky).
    n, lab, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    if n > 1:
        seeds = (snr > 4.0) & (above > 0)
        peak = np.zeros(n)
        np.maximum.at(peak, lab[seeds], snr[seeds])
        s2 = (f0 * _FWHM_TO_SIGMA) ** 2
        expect = 4 * np.pi * s2 * np.log(np.maximum(peak, source_sigma) / source_sigma)
        area = stats[:, cv2.CC_STAT_AREA]
        drop = (area > max_patch_ratio * expect + (2.0 * f0) ** 2) | (peak <= 4.0)
        drop[0] = True
        above = (~drop[lab]).view(np.uint8) & above
    sources = cv2.dilate(above, _disk(max(1.0, fwhm))).astype(bool)
    refine = refine_fwhm * fwhm if refine_fwhm > 0 else 0.0
    level, filt, rms = _pass(data, bad, sources, fwhm, mesh, half, robust=False, refine=refine)
    norm = _kernel_norm(fwhm)
    pixel_rms = (rms / norm).astype(np.float32)
    return MatchedBackground(level, filt, rms, pixel_rms, sources, float(fwhm))


def _peaks(sig: np.ndarray, bad: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    local = cv2.dilate(sig, np.ones((3, 3), np.uint8))
    pk = (sig >= local) & (sig >= threshold) & ~bad
    pk[0, :] = pk[-1, :] = pk[:, 0] = pk[:, -1] = False
    ys, xs = np.nonzero(pk)
    return xs, ys


def _measure_fwhm(
    data: np.ndarray,
    bad: np.ndarray,
    level: np.ndarray,
    snr: np.ndarray,
    fwhm0: float,
    sat: float | None,
) -> float:
    """Median half-light diameter (px) of up to 200 bright, isolated, unsaturated peaks."""
    xa, ya = _peaks(snr, bad, 5.0)  # every peak above 5 sigma; the bright ones first
    bright = snr[ya, xa] >= 20.0
    xs, ys = xa[bright], ya[bright]
    if xs.size < 5:
        return float(fwhm0)
    order = np.argsort(-snr[ys, xs])
    xs, ys = xs[order], ys[order]
    if sat is not None:
        ok = data[ys, xs] < 0.5 * sat
        xs, ys = xs[ok], ys[ok]
    # isolated: no other peak above 5 sigma within 10 px
    tree = cKDTree(np.c_[xa, ya])
    cnt = np.array([len(n) for n in tree.query_ball_point(np.c_[xs, ys], 10.0)], dtype=int)
    xs, ys = xs[cnt <= 1][:200], ys[cnt <= 1][:200]
    if xs.size < 5:
        return float(fwhm0)
    sub = np.ascontiguousarray(np.where(bad, 0, data - level), dtype=np.float32)
    rmax = np.full(xs.size, 4.0 * fwhm0)
    r50, fl = sep.flux_radius(sub, xs.astype(float), ys.astype(float), rmax, 0.5, subpix=5)
    f = 2.0 * r50[(fl == 0) & np.isfinite(r50)]
    return float(np.clip(np.median(f), 1.0, 20.0)) if f.size >= 5 else float(fwhm0)
