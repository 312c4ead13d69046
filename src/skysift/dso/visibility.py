"""Is a catalogued deep-sky object visible in *this* image? Star removal and SNR.

Annotation tools name every catalogued object in the field; this module says
which of them the image actually shows:

1. **Stars removed** (:func:`remove_stars`): compact sources are found with
   ``sep`` (SExtractor's algorithm; Bertin & Arnouts 1996) on the image minus
   a 32 px mesh background, masked with circles grown with their flux, and
   the masked pixels filled by Telea's fast-marching inpainting (Telea 2004,
   J. Graphics Tools 9, 23; OpenCV). Extended sources (semi-major axis over
   three times the stellar median) are kept unless they are among the
   brightest and round (saturated stars, whose halos make them look
   extended); sources at the centre of a catalogued object smaller than
   about the frame (a galaxy core, a cluster core) are kept.
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
   **Objects larger than or comparable to the frame** (the annulus mostly
   outside it) are measured over the frame's sky floor instead
   (:func:`frame_floor`, :func:`floor_excess`, flag ``global_background``):
   a plane fitted to the darkest 20 % of the star-free, object-free 32 px
   blocks, raised to the level of a blank sky with the moments of a
   truncated Gaussian, so that a blank frame has no excess and emission,
   which only adds light, has.
   Open clusters and associations (``OCl``, ``*Ass``, ``Cl+N``) are judged
   by star counts instead (:func:`star_count_snr`): their light is resolved
   stars, which the star removal takes away. A cluster with nebula
   (``Cl+N``) is also measured as a nebula over the sky floor (its nebula
   reaches far past the cluster's catalogue circle); its SNR is the larger
   of the two or their Stouffer combination ``(z1 + z2) / sqrt(2)`` (two
   independent tests; Stouffer et al. 1949, *The American Soldier*, vol. 1;
   Whitlock 2005, J. Evol. Biol. 18, 1368). Globular clusters are measured like galaxies (their
   unresolved glow; the core is protected). Catalogue stars (``*``) are
   measured with a 5 px aperture on the original image.
3. **Verdict**: ``visible`` when SNR >= :data:`SNR_VISIBLE` (5),
   ``marginal`` when :data:`SNR_MARGINAL` (3) <= SNR < 5, else ``not visible``.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "FLOOR_FRACTION",
    "FrameFloor",
    "frame_floor",
    "floor_excess",
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
    peak = np.asarray(objs["peak"], float)
    # compact sources, and the brightest round stars, whose saturated cores and halos make
    # them look extended (sep's ``a`` grows with the flux): the stars that make a cluster
    bright = (peak >= 0.5 * float(peak.max())) & (np.asarray(objs["b"]) >= 0.5 * a)
    star = (a <= 3.0 * med_a + 1.0) | bright
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


#: Fraction of the darkest block residuals that define the sky floor (:func:`frame_floor`).
FLOOR_FRACTION = 0.2
# lower tail of N(0, 1) below its 20 % quantile: mean -phi(z)/0.2 and standard deviation
_Z_FLOOR = float(norm.ppf(FLOOR_FRACTION))
_TAIL_MEAN = float(-norm.pdf(_Z_FLOOR) / FLOOR_FRACTION)
_TAIL_STD = float(np.sqrt(1.0 + _Z_FLOOR * _TAIL_MEAN - _TAIL_MEAN**2))


@dataclass(frozen=True)
class FrameFloor:
    """The sky floor of a frame: what objects larger than the frame are measured against.

    Attributes
    ----------
    coef : tuple of float
        Plane ``a + b x + c y`` (x, y in pixels, 0-based) of the sky floor, image units.
    sigma_block : float
        Scatter of the sky's block medians about the floor (sky structure and
        noise at the block scale), image units.
    c_block : float
        Blocks per independent sample of the block-median residual map (1 to 16).
    n_floor : int
        Number of blocks that set the floor.
    block : int
        Block side, pixels.
    """

    coef: tuple[float, float, float]
    sigma_block: float
    c_block: float
    n_floor: int
    block: int

    def level(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Floor level at pixel positions ``x``, ``y``, image units."""
        return self.coef[0] + self.coef[1] * np.asarray(x) + self.coef[2] * np.asarray(y)


def frame_floor(
    starless: np.ndarray,
    *,
    exclude: np.ndarray | None = None,
    block: int | None = None,
) -> FrameFloor:
    """The dark-sky floor of a star-removed frame, from its darkest star-free, object-free parts.

    Objects larger than the frame leave no local annulus: the frame itself
    must say where the sky is. Light from a nebula or galaxy only *adds*
    to the sky, so the sky is the lower part of the distribution of the
    frame's block medians. The frame is cut into ``block`` px squares; those
    more than half covered by ``exclude`` (stars removed, smaller catalogued
    objects) are dropped; a plane (light-pollution gradient) is fitted to
    the darkest :data:`FLOOR_FRACTION` (20 %) of the residuals, iterated
    eight times; the level and scatter of a blank, noise-only sky are then
    estimated from that lower tail with the moments of a truncated Gaussian
    (scatter = tail standard deviation / 0.467, level = tail mean + 1.40
    scatter), so that a blank frame has zero mean excess over the floor.
    A frame with emission is positively skewed: its mean lies above the floor.

    Parameters
    ----------
    starless : ndarray, shape (H, W)
        Star-removed luminance image.
    exclude : ndarray of bool, shape (H, W), optional
        ``True`` = pixel not to use (stars, smaller catalogued objects).
    block : int, optional
        Block side, pixels. Default ``min(32, min(H, W) // 12)``, at least 8.

    Returns
    -------
    FrameFloor

    Raises
    ------
    InputError
        If the image is not 2-D or smaller than 16 x 16, or ``exclude``
        differs in shape.

    References
    ----------
    Moments of the truncated normal distribution: Johnson, Kotz &
    Balakrishnan (1994), *Continuous Univariate Distributions*, vol. 1,
    section 10.1.
    """

    img = _check_image(starless)
    h, w = img.shape
    if exclude is not None and np.shape(exclude) != img.shape:
        msg = f"exclude must have the image's shape {img.shape}, got {np.shape(exclude)}"
        raise InputError(msg)
    bs = int(block) if block else int(np.clip(min(h, w) // 12, 8, 32))
    hb, wb = h // bs, w // bs
    cut = img[: hb * bs, : wb * bs].reshape(hb, bs, wb, bs).swapaxes(1, 2).reshape(hb, wb, -1)
    med = np.median(cut, axis=2)
    ok = np.ones((hb, wb), bool)
    if exclude is not None:
        ex = np.asarray(exclude, bool)[: hb * bs, : wb * bs]
        ok = ex.reshape(hb, bs, wb, bs).mean(axis=(1, 3)) <= 0.5
        if ok.sum() < 12:
            ok = np.ones((hb, wb), bool)
    yy, xx = (np.mgrid[0:hb, 0:wb] + 0.5) * bs - 0.5  # block centres, pixels
    design = np.column_stack([np.ones(ok.sum()), xx[ok], yy[ok]])
    v = med[ok].astype(float)
    low = np.ones(len(v), bool)
    coef = np.array([float(np.median(v)), 0.0, 0.0])
    for _ in range(8):
        coef, *_ = np.linalg.lstsq(design[low], v[low], rcond=None)
        r = v - design @ coef
        low = r <= np.quantile(r, FLOOR_FRACTION)
    tail = r[low]
    sig = float(np.std(tail)) / _TAIL_STD if len(tail) >= 3 else float(np.std(r))
    coef = coef.copy()
    coef[0] += float(np.mean(tail)) - _TAIL_MEAN * sig
    res = np.zeros((hb, wb))
    res[ok] = v - design @ coef
    h4, w4 = hb // 4 * 4, wb // 4 * 4
    c_blk = 1.0
    if h4 and w4 and np.var(res[ok]) > 0:
        m4 = res[:h4, :w4].reshape(h4 // 4, 4, w4 // 4, 4).mean(axis=(1, 3))
        c_blk = float(np.clip(16.0 * np.var(m4) / np.var(res[ok]), 1.0, 16.0))
    return FrameFloor(coef=(float(coef[0]), float(coef[1]), float(coef[2])),
                      sigma_block=max(sig, 1e-9), c_block=c_blk, n_floor=int(low.sum()),
                      block=bs)  # fmt: skip


def floor_excess(
    starless: np.ndarray,
    floor: FrameFloor,
    x: float,
    y: float,
    a: float,
    b: float,
    theta_deg: float,
    *,
    c: float,
    sigma_pix: float,
) -> dict[str, float]:
    """Excess of an ellipse (the part inside the frame) over the frame's sky floor.

    ``excess = sum(starless - floor)`` over the ellipse's pixels in the
    frame; ``sigma_sum**2 = c N sigma_pix**2 + (N sigma_level)**2`` with
    ``sigma_level = sigma_block sqrt(c_block (1 / n_floor + B**2 / N))``:
    the uncertainty of the floor and of the sky's own block-scale structure
    averaged over the ellipse (see :func:`frame_floor`).

    Parameters
    ----------
    starless : ndarray, shape (H, W)
        Star-removed luminance image.
    floor : FrameFloor
        From :func:`frame_floor` on the same image.
    x, y : float
        Ellipse centre, pixels (0-based; may lie outside the frame).
    a, b : float
        Semi-axes, pixels (raised to at least 3).
    theta_deg : float
        Major axis, degrees counter-clockwise from +x.
    c : float
        Noise correlation area (:func:`noise_correlation_area`).
    sigma_pix : float
        Pixel noise, image units.

    Returns
    -------
    dict
        As :func:`aperture_noise`, ``global_background`` = 1.
    """

    h, w = starless.shape
    a, b = max(a, _MIN_SEMI_AXIS), max(b, _MIN_SEMI_AXIS)
    ext = max(a, b)
    x0, x1 = int(max(0, np.floor(x - ext))), int(min(w, np.ceil(x + ext) + 1))
    y0, y1 = int(max(0, np.floor(y - ext))), int(min(h, np.ceil(y + ext) + 1))
    nan = float("nan")
    out = dict(excess=nan, excess_err=nan, snr=nan, background=nan, sigma_pix=sigma_pix,
               n_pix=0.0, n_annulus=0.0, global_background=1.0)  # fmt: skip
    if x0 >= x1 or y0 >= y1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1]
    ap = _ellipse_r2(xx, yy, x, y, a, b, theta_deg) <= 1.0
    n = int(ap.sum())
    if n == 0:
        return out
    lvl = floor.level(xx[ap], yy[ap])
    excess = float(np.sum(starless[y0:y1, x0:x1][ap] - lvl))
    n_blk = max(n / floor.block**2, 1.0)
    sig_lvl = floor.sigma_block * np.sqrt(
        floor.c_block * (1.0 / max(floor.n_floor, 1) + 1.0 / n_blk)
    )
    err = max(float(np.sqrt(c * n * sigma_pix**2 + (n * sig_lvl) ** 2)), 1e-12)
    out.update(excess=excess, excess_err=err, snr=excess / err, background=float(np.mean(lvl)),
               n_pix=float(n))  # fmt: skip
    return out


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
    floor: FrameFloor | None = None,
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
    floor : FrameFloor, optional
        The frame's sky floor, used when the annulus is mostly outside the
        frame (:func:`floor_excess`); computed from ``img`` when needed and None.

    Returns
    -------
    dict
        ``excess``, ``excess_err``, ``snr``, ``background``, ``sigma_pix``,
        ``n_pix``, ``n_annulus``, ``global_background`` (0/1: fewer annulus
        pixels in the frame than 50 or half the aperture's: measured over
        the frame's sky floor instead).
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
    else:
        if floor is None:
            floor = frame_floor(img)
        sig = max(noise_correlation_area(img)[0], sigma_floor)
        return floor_excess(img, floor, x, y, a, b, theta_deg, c=c, sigma_pix=sig)
    sig = max(sig, sigma_floor)
    sig_b = max(sig_b, sig * np.sqrt(c / max(len(vals), 1)))
    excess = float(np.sum(cut[ap] - bg))
    err = max(float(np.sqrt(c * n * sig**2 + (n * sig_b) ** 2)), 1e-12)
    out.update(excess=excess, excess_err=err, snr=excess / err, background=bg, sigma_pix=sig,
               n_pix=float(n), n_annulus=float(len(vals)), global_background=0.0)  # fmt: skip
    return out


def _sky_floor(starless, star_mask, label) -> FrameFloor:
    """The frame's sky floor without the removed stars and the smaller catalogued objects."""
    excl = label > 0
    if star_mask is not None:
        excl = excl | star_mask
    return frame_floor(starless, exclude=excl)


def _annulus_outside(h, w, x, y, a, b, theta_deg, exclude) -> bool:
    """True when the 1.5-2.5x annulus has fewer usable pixels than aperture_noise needs."""
    a, b = max(a, _MIN_SEMI_AXIS), max(b, _MIN_SEMI_AXIS)
    step = max(1, int(max(a, b) // 100))  # a coarse grid is enough for a yes/no
    ro = 2.5 * max(a, b)
    x0, x1 = int(max(0, np.floor(x - ro))), int(min(w, np.ceil(x + ro) + 1))
    y0, y1 = int(max(0, np.floor(y - ro))), int(min(h, np.ceil(y + ro) + 1))
    if x0 >= x1 or y0 >= y1:
        return False
    yy, xx = np.mgrid[y0:y1:step, x0:x1:step]
    r2 = _ellipse_r2(xx, yy, x, y, a, b, theta_deg)
    ann = (r2 >= 1.5**2) & (r2 <= 2.5**2) & ~exclude[y0:y1:step, x0:x1:step]
    return bool(ann.sum() < max(50 / step**2, 0.5 * (r2 <= 1).sum()))


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
        ``n_pix``, ``method`` (``"surface"``, ``"sky floor"``, ``"star
        counts"``, ``"nebula over sky floor"``, ``"star counts + nebula"``
        (then ``snr`` is the combination and ``excess``/``excess_err`` the
        nebula's) or ``"star aperture"``), ``global_background`` (bool:
        measured over the sky floor) and ``verdict``.

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
    star_mask = None
    if starless is None:
        # objects larger than about the frame have no core to protect: all their stars go
        h, w = img.shape
        dso = ~is_star & (np.maximum(semi_a, 3.0) * np.maximum(semi_b, 3.0) <= 0.25 * h * w)
        protect = np.column_stack([x[dso], y[dso], np.maximum(3.0, semi_a[dso])])
        starless, star_mask, sources = remove_stars(img, protect=protect, return_sources=True)
    starless = _check_image(starless)
    if starless.shape != img.shape:
        msg = f"starless image shape {starless.shape} differs from the image's {img.shape}"
        raise InputError(msg)
    if sources is None:
        sources = np.zeros((0, 3))
    sig_sl, c_sl = noise_correlation_area(starless)
    _, c_im = noise_correlation_area(img)
    q_floor = quantisation_noise(img)
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
    sky: FrameFloor | None = None  # the frame's sky floor, computed when first needed
    for i in range(len(out)):
        if is_star[i]:
            m = aperture_noise(img, x[i], y[i], 5.0, 5.0, 0.0, c=c_im, sigma_floor=q_floor)
            method.append("star aperture")
        elif typ[i] in CLUSTER_TYPES:
            m = star_count_snr(sources, (h, w), x[i], y[i], semi_a[i], semi_b[i], theta[i])
            method.append("star counts")
            if typ[i] == "Cl+N":  # its nebula reaches far past the cluster: vs the sky floor
                sky = sky if sky is not None else _sky_floor(starless, star_mask, label)
                neb = floor_excess(starless, sky, x[i], y[i], semi_a[i], semi_b[i], theta[i],
                                   c=c_sl, sigma_pix=max(sig_sl, q_floor))  # fmt: skip
                z_st, z_neb = float(np.nan_to_num(m["snr"])), float(np.nan_to_num(neb["snr"]))
                z_both = (z_st + z_neb) / np.sqrt(2.0)  # Stouffer: two independent tests
                if z_neb > z_st:
                    m, method[-1] = neb, "nebula over sky floor"
                if z_both > max(z_st, z_neb):
                    m = {**m, "snr": z_both}
                    method[-1] = "star counts + nebula"
        else:
            excl = (label > 0) & (label != i + 1)
            big = _annulus_outside(h, w, x[i], y[i], semi_a[i], semi_b[i], theta[i], excl)
            if big:  # larger than about the frame: over the sky floor
                sky = sky if sky is not None else _sky_floor(starless, star_mask, label)
                m = floor_excess(starless, sky, x[i], y[i], semi_a[i], semi_b[i], theta[i],
                                 c=c_sl, sigma_pix=max(sig_sl, q_floor))  # fmt: skip
            else:
                m = aperture_noise(starless, x[i], y[i], semi_a[i], semi_b[i], theta[i], c=c_sl,
                                   exclude=excl, sigma_floor=q_floor, floor=sky)  # fmt: skip
            method.append("sky floor" if m["global_background"] else "surface")
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
