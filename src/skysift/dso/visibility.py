"""Is a catalogued deep-sky object visible in *this* image? Star removal and SNR.

Annotation tools name every catalogued object in the field; this module says
which of them the image actually shows:

1. **Stars removed** (:func:`remove_stars`): compact sources are found with
   ``sep`` (SExtractor's algorithm; Bertin & Arnouts 1996) on the image minus
   a 32 px mesh background, masked with ellipses grown with their flux, and
   the masked pixels filled by Telea's fast-marching inpainting (Telea 2004,
   J. Graphics Tools 9, 23; OpenCV). Extended sources (semi-major axis over
   three times the stellar median) and sources at a catalogued object's
   centre (a galaxy core, a cluster core) are kept.
2. **Integrated excess and SNR** (:func:`measure_visibility`): within the
   catalogue ellipse (diameters ``major_px`` x ``minor_px``, at least 3 px
   semi-axes) the excess over the local background is summed. The background
   is the median of an elliptical annulus (1.5 to 2.5 times the ellipse,
   other objects' ellipses excluded); when the object fills the frame, the
   10th percentile of 32 x 32 px block medians of the whole image stands in
   (flag ``global_background``). The noise of the sum is

   ``sigma_sum**2 = c N sigma_pix**2 + N**2 sigma_b**2``

   with ``N`` the aperture pixels, ``sigma_pix`` the robust (MAD) pixel
   scatter of the annulus, ``c`` the correlation area of the image's noise
   (pixels per independent sample, from the variance of 4 x 4 block means;
   processed JPEG stacks are strongly correlated) and ``sigma_b`` the
   scatter of the background level between 8 angular sectors of the annulus
   (gradients, nebulosity). ``SNR = excess / sigma_sum``.
   Open clusters and associations (``OCl``, ``*Ass``, ``Cl+N``) are judged
   by star counts instead (:func:`star_count_snr`): their light is resolved
   stars, which the star removal takes away. Globular clusters are measured
   like galaxies (their unresolved glow; the core is protected). Catalogue
   stars (``*``) are measured with a 5 px aperture on the original image.
   Objects that fill the frame (annulus mostly outside) are measured against
   the darkest 10 % of the frame (``global_background``).
3. **Verdict**: ``visible`` when SNR >= :data:`SNR_VISIBLE` (5),
   ``marginal`` when :data:`SNR_MARGINAL` (3) <= SNR < 5, else ``not visible``.
"""

from __future__ import annotations

import cv2
import numpy as np
import sep
from astropy.table import Table
from scipy.stats import norm, poisson

from skysift.errors import InputError

__all__ = [
    "SNR_VISIBLE",
    "SNR_MARGINAL",
    "CLUSTER_TYPES",
    "remove_stars",
    "noise_correlation_area",
    "measure_visibility",
    "verdict",
    "aperture_noise",
    "quantisation_noise",
    "star_count_snr",
    "STAR_COUNT_FRACTIONS",
]

#: SNR at and above which an object is judged ``visible``.
SNR_VISIBLE = 5.0
#: SNR at and above which (and below :data:`SNR_VISIBLE`) it is ``marginal``.
SNR_MARGINAL = 3.0
#: OpenNGC types measured by star counts (their light is resolved stars).
CLUSTER_TYPES = frozenset({"OCl", "*Ass", "Cl+N"})
_N_SECTORS = 8
_MIN_SEMI_AXIS = 3.0


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2 or min(arr.shape) < 16:
        msg = f"image must be 2-D (H, W) and at least 16 x 16 pixels, got shape {arr.shape}"
        raise InputError(msg)
    return np.ascontiguousarray(arr, dtype=np.float32)


def verdict(snr: float) -> str:
    """``"visible"``, ``"marginal"`` or ``"not visible"`` for an SNR (NaN: not visible)."""
    if not np.isfinite(snr) or snr < SNR_MARGINAL:
        return "not visible"
    return "visible" if snr >= SNR_VISIBLE else "marginal"


def remove_stars(
    image: np.ndarray,
    *,
    threshold: float = 3.0,
    protect: np.ndarray | None = None,
    inpaint_radius: int = 3,
    return_sources: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask the stars of an image and inpaint them.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Luminance image.
    threshold : float, optional
        Detection threshold, sigma of the background. Default 3.
    protect : ndarray, shape (M, 3), optional
        ``(x, y, r)`` circles (pixels) around catalogued objects: sources
        within ``0.3 r`` of a centre (the object's core) are kept; within
        ``r`` only sharp sources (semi-major axis at most 1.5 times the
        stellar median + 0.5 px) are removed, with a mask not grown with
        their flux (which includes the object's light).
    inpaint_radius : int, optional
        Neighbourhood of the Telea inpainting, pixels. Default 3.
    return_sources : bool, optional
        Also return the ``(K, 3)`` positions and fluxes (x, y, flux) of every
        compact source detected (protected ones included), for star counts.
        Default False.

    Returns
    -------
    starless : ndarray, shape (H, W), float32
        The image with the stars filled in.
    star_mask : ndarray of bool, shape (H, W)
        ``True`` = pixel of a removed star.

    Raises
    ------
    InputError
        If the image is not 2-D or smaller than 16 x 16, or ``protect`` is
        not (M, 3).
    """

    data = _check_image(image)
    bkg = sep.Background(data, bw=32, bh=32)
    sub = data - bkg.back()
    sep.set_extract_pixstack(max(300000, data.size // 4))
    objs = sep.extract(sub, threshold, err=max(float(bkg.globalrms), 1e-6), minarea=3)
    mask = np.zeros(data.shape, np.uint8)
    if len(objs) == 0:
        empty = (data.copy(), mask.astype(bool))
        return (*empty, np.zeros((0, 3))) if return_sources else empty
    a = np.asarray(objs["a"], float)
    med_a = float(np.median(a))
    star = a <= 3.0 * med_a + 1.0
    sources = np.column_stack([objs["x"][star], objs["y"][star], objs["flux"][star]]).astype(float)
    inside = np.zeros(len(objs), bool)
    if protect is not None:
        p = np.asarray(protect, float)
        if p.size == 0:
            p = np.zeros((0, 3))
        if p.ndim != 2 or p.shape[1] != 3:
            msg = f"protect must have shape (M, 3), got {np.shape(protect)}"
            raise InputError(msg)
        sharp = a <= 1.5 * med_a + 0.5
        for px, py, pr in p:
            d = np.hypot(objs["x"] - px, objs["y"] - py)
            star &= d > 0.3 * pr
            star &= (d > pr) | sharp
            inside |= d <= pr
    objs, inside = objs[star], inside[star]
    flux = np.maximum(np.asarray(objs["flux"], float), 1e-9)
    med_f = float(np.median(flux))
    grow = np.where(inside, 1.0, 1.0 + 0.6 * np.log10(np.maximum(flux / med_f, 1.0)))
    r = np.clip(3.0 * np.asarray(objs["a"]) * grow, 2.5, 60.0)
    for x, y, rr in zip(objs["x"], objs["y"], r, strict=True):
        cv2.circle(mask, (round(float(x)), round(float(y))), round(float(rr)), 1, -1)
    starless = cv2.inpaint(data, mask, int(inpaint_radius), cv2.INPAINT_TELEA)
    if return_sources:
        return starless, mask.astype(bool), sources
    return starless, mask.astype(bool)


def noise_correlation_area(image: np.ndarray, *, block: int = 4) -> tuple[float, float]:
    """Robust pixel noise and correlation area of an image's background.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Preferably star-removed.
    block : int, optional
        Block size, pixels. Default 4.

    Returns
    -------
    sigma_pix : float
        Robust (1.4826 MAD) scatter of the pixels about a 32 px mesh
        background, image units.
    c : float
        Pixels per independent noise sample: ``block**2 var(block means) /
        sigma_pix**2``, clipped to ``[1, block**2]`` (1 for white noise).
    """

    data = _check_image(image)
    sub = data - sep.Background(data, bw=32, bh=32).back()
    sigma = 1.4826 * float(np.median(np.abs(sub - np.median(sub))))
    if sigma <= 0:
        return max(sigma, 1e-6), 1.0
    h, w = (s // block * block for s in sub.shape)
    means = sub[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))
    sb = 1.4826 * float(np.median(np.abs(means - np.median(means))))
    c = float(np.clip(block * block * sb**2 / sigma**2, 1.0, block * block))
    return sigma, c


def quantisation_noise(image: np.ndarray) -> float:
    """RMS quantisation noise ``q / sqrt(12)`` of an image's smallest value step ``q``.

    A floor for the pixel noise of 8-bit images whose background was clipped
    to a constant (processed smart-telescope outputs).
    """
    vals = np.unique(np.asarray(image, np.float32).ravel()[::7])
    if len(vals) < 2:
        return 1.0 / np.sqrt(12.0)
    step = float(np.min(np.diff(vals)))
    return step / np.sqrt(12.0)


def _ellipse_r2(xx, yy, x0, y0, a, b, theta_deg):
    t = np.radians(theta_deg)
    c, s = np.cos(t), np.sin(t)
    dx, dy = xx - x0, yy - y0
    u = dx * c + dy * s
    v = -dx * s + dy * c
    return (u / a) ** 2 + (v / b) ** 2


def _global_background(img: np.ndarray) -> tuple[float, float, float]:
    """(level, sigma_pix, sigma_level) from the darkest 32 px blocks."""
    h, w = (s // 32 * 32 for s in img.shape)
    if h == 0 or w == 0:
        v = img.ravel()
        return float(np.median(v)), float(np.std(v)), 0.0
    blocks = img[:h, :w].reshape(h // 32, 32, w // 32, 32).swapaxes(1, 2).reshape(-1, 1024)
    med = np.median(blocks, axis=1)
    lvl = float(np.percentile(med, 10))
    dark = blocks[med <= np.percentile(med, 20)]
    sig = 1.4826 * float(np.median(np.abs(dark - np.median(dark))))
    return lvl, sig, float(np.std(med[med <= np.percentile(med, 20)]))


def aperture_noise(
    img: np.ndarray,
    x: float,
    y: float,
    a: float,
    b: float,
    theta_deg: float,
    *,
    c: float,
    exclude: np.ndarray | None = None,
    sigma_floor: float = 0.0,
) -> dict[str, float]:
    """Excess, background and noise of one elliptical aperture (see the module docstring).

    Parameters
    ----------
    img : ndarray, shape (H, W)
    x, y : float
        Centre, pixels (0-based).
    a, b : float
        Semi-axes, pixels (raised to at least 3).
    theta_deg : float
        Major axis, degrees counter-clockwise from +x.
    c : float
        Noise correlation area (:func:`noise_correlation_area`).
    exclude : ndarray of bool, shape (H, W), optional
        Pixels not used in the annulus (other objects).
    sigma_floor : float, optional
        Lowest pixel noise used, image units (the quantisation noise of an
        image whose background was clipped to a constant). Default 0.

    Returns
    -------
    dict
        ``excess``, ``excess_err``, ``snr``, ``background``, ``sigma_pix``,
        ``n_pix``, ``n_annulus``, ``global_background`` (0/1: fewer annulus
        pixels in the frame than 50 or half the aperture's).
    """
    h, w = img.shape
    a, b = max(a, _MIN_SEMI_AXIS), max(b, _MIN_SEMI_AXIS)
    ro = 2.5 * a
    x0, x1 = int(max(0, np.floor(x - ro))), int(min(w, np.ceil(x + ro) + 1))
    y0, y1 = int(max(0, np.floor(y - ro))), int(min(h, np.ceil(y + ro) + 1))
    nan = float("nan")
    out = dict(excess=nan, excess_err=nan, snr=nan, background=nan, sigma_pix=nan,
               n_pix=0.0, n_annulus=0.0, global_background=0.0)  # fmt: skip
    if x0 >= x1 or y0 >= y1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1]
    cut = img[y0:y1, x0:x1]
    r2 = _ellipse_r2(xx, yy, x, y, a, b, theta_deg)
    ap = r2 <= 1.0
    ann = (r2 >= 1.5**2) & (r2 <= 2.5**2)
    if exclude is not None:
        ann &= ~exclude[y0:y1, x0:x1]
    n = int(ap.sum())
    if n == 0:
        return out
    vals = cut[ann]
    if len(vals) >= max(50, 0.5 * n):
        ang = np.arctan2(yy[ann] - y, xx[ann] - x)
        sector = ((ang + np.pi) / (2 * np.pi) * _N_SECTORS).astype(int) % _N_SECTORS
        levels = [
            np.median(vals[sector == k]) for k in range(_N_SECTORS) if (sector == k).sum() >= 5
        ]
        bg = float(np.median(vals))
        sig = 1.4826 * float(np.median(np.abs(vals - bg)))
        sig_b = float(np.std(levels)) if len(levels) >= 3 else sig * np.sqrt(c / len(vals))
        glob = 0.0
    else:
        bg, sig, sig_b = _global_background(img)
        glob = 1.0
    sig = max(sig, sigma_floor)
    sig_b = max(sig_b, sig * np.sqrt(c / max(len(vals), 1)))
    excess = float(np.sum(cut[ap] - bg))
    err = max(float(np.sqrt(c * n * sig**2 + (n * sig_b) ** 2)), 1e-12)
    out.update(excess=excess, excess_err=err, snr=excess / err, background=bg, sigma_pix=sig,
               n_pix=float(n), n_annulus=float(len(vals)), global_background=glob)  # fmt: skip
    return out


#: Brightness cuts of the star counts: the brightest fraction of sources counted.
STAR_COUNT_FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)


def star_count_snr(
    sources: np.ndarray,
    shape: tuple[int, int],
    x: float,
    y: float,
    a: float,
    b: float,
    theta_deg: float,
) -> dict[str, float]:
    """Star-count overdensity of an ellipse against the rest of the frame (open clusters).

    For each cut of :data:`STAR_COUNT_FRACTIONS` (the brightest 1 %, 5 %,
    ... of the sources) the count in the ellipse is compared with the count
    expected from the density in the rest of the frame; the Poisson tail
    probability ``P(N >= n_in | expected)`` of the most significant cut,
    multiplied by the number of cuts (Bonferroni), is turned into a
    one-sided Gaussian SNR. A cluster stands out in its bright stars; the
    rest of the frame, not an annulus, is the reference because clusters
    extend past their catalogue diameter.

    Parameters
    ----------
    sources : ndarray, shape (K, 3)
        Detected sources (x, y, flux), pixels and image units.
    shape : (int, int)
        Image shape ``(height, width)``.
    x, y, a, b, theta_deg : float
        Ellipse centre, semi-axes (pixels) and angle (deg from +x).

    Returns
    -------
    dict
        ``excess`` (extra stars at the best cut), ``excess_err`` (sqrt of
        the expected count), ``snr``, ``background`` (expected count),
        ``n_pix`` (ellipse area in the frame), ``global_background`` (1).
    """

    h, w = shape
    a, b = max(a, _MIN_SEMI_AXIS), max(b, _MIN_SEMI_AXIS)
    yy, xx = np.mgrid[0:h:4, 0:w:4]  # areas on a 4 px grid
    area_in = 16.0 * float((_ellipse_r2(xx, yy, x, y, a, b, theta_deg) <= 1).sum())
    area_out = float(h * w) - area_in
    s = np.asarray(sources, float).reshape(-1, 3)
    nan = float("nan")
    best = dict(excess=nan, excess_err=nan, snr=nan, background=nan, n_pix=area_in,
                global_background=1.0)  # fmt: skip
    if len(s) < 5 or area_in <= 0 or area_out <= 0.05 * h * w:
        return best
    inside = _ellipse_r2(s[:, 0], s[:, 1], x, y, a, b, theta_deg) <= 1
    p_best = 1.0
    for frac in STAR_COUNT_FRACTIONS:
        cut = s[:, 2] >= np.quantile(s[:, 2], 1.0 - frac)
        n_in = int((cut & inside).sum())
        expected = max(float((cut & ~inside).sum()) / area_out * area_in, 1e-3)
        p = float(poisson.sf(n_in - 1, expected))
        if p < p_best or not np.isfinite(best["excess"]):
            p_best = min(p, p_best)
            best.update(excess=n_in - expected, excess_err=float(np.sqrt(expected)),
                        background=expected)  # fmt: skip
    p_corr = min(0.5, p_best * len(STAR_COUNT_FRACTIONS))
    best["snr"] = float(norm.isf(p_corr)) if p_corr > 0 else 40.0
    return best


def measure_visibility(
    image: np.ndarray,
    objects: Table,
    *,
    starless: np.ndarray | None = None,
    sources: np.ndarray | None = None,
) -> Table:
    """Measure each catalogued object's excess and SNR and give a verdict.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Luminance image (stars included).
    objects : astropy.table.Table
        From :func:`skysift.dso.catalog.objects_in_field`: at least ``x``,
        ``y``, ``major_px``, ``minor_px``, ``theta_deg``, ``type``.
    starless : ndarray, shape (H, W), optional
        A star-removed image; computed with :func:`remove_stars` (cores of the
        catalogued objects protected) when None.
    sources : ndarray, shape (K, 3), optional
        Compact sources (x, y, flux) for the star counts of open clusters; from
        :func:`remove_stars` when ``starless`` is None.

    Returns
    -------
    astropy.table.Table
        A copy of ``objects`` with ``excess`` (sum over the ellipse, image
        units; extra stars for open clusters), ``excess_err``, ``snr``,
        ``background`` (per pixel; star density for open clusters),
        ``n_pix``, ``method`` (``"surface"``, ``"star counts"`` or
        ``"star aperture"``), ``global_background`` (bool) and ``verdict``.

    Raises
    ------
    InputError
        If the image is not 2-D, the table lacks a column, or ``starless``
        differs in shape.
    """
    img = _check_image(image)
    need = ("x", "y", "major_px", "minor_px", "theta_deg", "type")
    missing = [c for c in need if c not in objects.colnames]
    if missing:
        msg = f"objects table lacks column(s) {missing}; it has {objects.colnames}"
        raise InputError(msg)
    out = objects.copy()
    x = np.asarray(out["x"], float)
    y = np.asarray(out["y"], float)
    typ = np.asarray(out["type"]).astype(str)
    semi_a = 0.5 * np.asarray(out["major_px"], float)
    semi_b = 0.5 * np.asarray(out["minor_px"], float)
    theta = np.asarray(out["theta_deg"], float)
    is_star = typ == "*"
    if starless is None:
        dso = ~is_star
        protect = np.column_stack([x[dso], y[dso], np.maximum(3.0, semi_a[dso])])
        starless, _, sources = remove_stars(img, protect=protect, return_sources=True)
    starless = _check_image(starless)
    if starless.shape != img.shape:
        msg = f"starless image shape {starless.shape} differs from the image's {img.shape}"
        raise InputError(msg)
    if sources is None:
        sources = np.zeros((0, 3))
    _, c_sl = noise_correlation_area(starless)
    _, c_im = noise_correlation_area(img)
    floor = quantisation_noise(img)
    h, w = img.shape
    label = np.zeros((h, w), np.int32)  # other extended objects are kept out of each annulus
    for i in np.flatnonzero(~is_star):
        ax = max(semi_a[i], _MIN_SEMI_AXIS)
        bx = max(semi_b[i], _MIN_SEMI_AXIS)
        if ax * bx > 0.25 * h * w:  # frame-filling objects would exclude everything
            continue
        cv2.ellipse(label, (round(x[i]), round(y[i])), (round(ax), round(bx)), float(theta[i]),
                    0, 360, int(i + 1), -1)  # fmt: skip
    cols = {k: np.full(len(out), np.nan) for k in ("excess", "excess_err", "snr", "background")}
    n_pix = np.zeros(len(out), int)
    glob = np.zeros(len(out), bool)
    method = []
    for i in range(len(out)):
        if is_star[i]:
            m = aperture_noise(img, x[i], y[i], 5.0, 5.0, 0.0, c=c_im, sigma_floor=floor)
            method.append("star aperture")
        elif typ[i] in CLUSTER_TYPES:
            m = star_count_snr(sources, (h, w), x[i], y[i], semi_a[i], semi_b[i], theta[i])
            method.append("star counts")
        else:
            excl = (label > 0) & (label != i + 1)
            m = aperture_noise(starless, x[i], y[i], semi_a[i], semi_b[i], theta[i], c=c_sl,
                               exclude=excl, sigma_floor=floor)  # fmt: skip
            method.append("surface")
        for k in cols:
            cols[k][i] = m[k]
        n_pix[i] = int(m["n_pix"])
        glob[i] = bool(m["global_background"])
    for k, v in cols.items():
        out[k] = v
    out["n_pix"] = n_pix
    out["method"] = method
    out["global_background"] = glob
    out["verdict"] = [verdict(s) for s in cols["snr"]]
    out.meta["snr_visible"] = SNR_VISIBLE
    out.meta["snr_marginal"] = SNR_MARGINAL
    return out
