"""A plain matched-filter Radon streak detector: the reference of issue 16 (benchmark only).

Background subtraction, PSF smoothing, ``skimage.transform.radon`` of the
filtered image normalised per line to significance, the best lines kept, the
endpoints as the most significant segment of each line's profile, and the
line's pixels painted with the peak significance. No star suppression, no
calibration beyond the white-noise normalisation: what any careful reader of
Nir, Ofek & Gal-Yam (2018, AJ 156, 229, §2) would write in an afternoon.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage
from skimage.transform import radon

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@functools.lru_cache(maxsize=4)
def _lengths(shape: tuple[int, int], n_theta: int) -> np.ndarray:
    theta = np.arange(n_theta) * 180.0 / n_theta
    return radon(np.ones(shape), theta=theta, circle=False)


def _line_xy(shape, i, theta_deg, t):
    """Image (x, y) of the points ``t`` along skimage's projection line ``i`` at ``theta``."""
    h, w = shape
    diag = math.sqrt(2) * max(shape)
    pad = [int(math.ceil(diag - s)) for s in shape]
    pb = [(s + p) // 2 - s // 2 for s, p in zip(shape, pad, strict=True)]
    c = (h + pad[0]) // 2
    a = math.radians(theta_deg)
    x = c + (i - c) * math.cos(a) + t * math.sin(a) - pb[1]
    y = c - (i - c) * math.sin(a) + t * math.cos(a) - pb[0]
    return x, y


def naive_radon(
    image: np.ndarray, fwhm: float, *, n_theta: int = 180, n_lines: int = 3, min_length: int = 20
) -> tuple[np.ndarray, float, list[tuple]]:
    """Score map (painted significance), image statistic (max significance) and the lines."""
    img = np.asarray(image, np.float64)
    bkg = ndimage.median_filter(img[::4, ::4], size=16)
    bkg = ndimage.zoom(bkg, (img.shape[0] / bkg.shape[0], img.shape[1] / bkg.shape[1]), order=1)
    z = img - bkg
    sig = 1.4826 * np.median(np.abs(z - np.median(z)))
    s = fwhm * FWHM_TO_SIGMA
    f = ndimage.gaussian_filter(z / sig, s)
    sf = 1.4826 * np.median(np.abs(f - np.median(f)))
    c = 2.0 * s * math.sqrt(math.pi)  # sum of the filtered noise's autocorrelation along a line
    theta = np.arange(n_theta) * 180.0 / n_theta
    r = radon(f, theta=theta, circle=False)
    n = _lengths(img.shape, n_theta)
    snr = np.where(n >= min_length, r / (sf * np.sqrt(c * np.maximum(n, 1))), -np.inf)
    h, w = img.shape
    out = np.zeros((h, w), np.float32)
    lines = []
    work = snr.copy()
    stat = float(snr.max())
    for _ in range(n_lines):
        k = int(np.argmax(work))
        i, j = divmod(k, work.shape[1])
        val = float(work[i, j])
        if not np.isfinite(val):
            break
        work[max(0, i - 6) : i + 7, max(0, j - 3) : j + 4] = -np.inf
        if j < 3:
            work[max(0, i - 6) : i + 7, -3:] = -np.inf
        # endpoints: the most significant contiguous segment of the line's profile
        t = np.arange(-2 * max(h, w), 2 * max(h, w), 1.0)
        x, y = _line_xy((h, w), i, theta[j], t)
        ok = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        if ok.sum() < min_length:
            continue
        x, y = x[ok], y[ok]
        p = ndimage.map_coordinates(f, [y, x], order=1) / sf
        cs = np.concatenate([[0.0], np.cumsum(p)])
        head = cs[: len(p) - min_length + 1]
        run = np.minimum.accumulate(head)
        idx = np.arange(head.size)
        arg = np.maximum.accumulate(np.where(head <= run, idx, 0))
        gain = cs[min_length:] - run
        b0 = int(np.argmax(gain)) + min_length
        a0 = int(arg[b0 - min_length])
        x1, y1, x2, y2 = x[a0], y[a0], x[b0 - 1], y[b0 - 1]
        lines.append((val, x1, y1, x2, y2))
        # paint the capsule of diameter FWHM (+1 px) with the line's significance
        gy, gx = np.mgrid[0:h, 0:w]
        dx, dy = x2 - x1, y2 - y1
        l2 = max(dx * dx + dy * dy, 1e-9)
        tt = np.clip(((gx - x1) * dx + (gy - y1) * dy) / l2, 0, 1)
        d2 = (gx - x1 - tt * dx) ** 2 + (gy - y1 - tt * dy) ** 2
        inside = d2 <= (0.5 * fwhm + 1.0) ** 2
        out[inside] = np.maximum(out[inside], val)
    return out, stat, lines
