"""A matched-filter star finder that stays complete under glows, gradients and uneven noise.

The frame's background is a local quadratic regression on a fine mesh of
star-masked block values, the noise is measured on the *filtered* image itself
(so photon noise that grows under a glow, and noise correlated by JPEG or Bayer
interpolation, set the local threshold), and stars are the local maxima of the
significance map ``filtered / sigma_filtered`` above a cut.

Registered as ``"matched"`` in :data:`skysift.detection.stars.STAR_FINDERS`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import sep
from astropy.table import Table
from scipy.spatial import cKDTree

from skysift._validation import check_image
from skysift.detection.background import BackgroundMap
from skysift.detection.masks import caption_text_mask
from skysift.detection.matched_background import (
    _FWHM_TO_SIGMA,
    MatchedBackground,
    _disk,
    _kernel_norm,
    matched_background,
)
from skysift.detection.stars import (
    STAR_COLUMNS,
    StarFinder,
    StarFlag,
    empty_star_table,
    estimate_saturation,
)
from skysift.errors import DetectionCapWarning, InputError, NoDetectionsWarning

__all__ = [
    "MATCHED_PER_SIGMA",
    "MatchedBackground",
    "MatchedStarFinder",
    "make_matched_finder",
    "matched_background",
]

#: The registry's ``threshold_sigma`` (the classical finder's per-pixel cut, default 3) is
#: taken as a matched-filter significance cut of ``MATCHED_PER_SIGMA * threshold_sigma``.
#: A star whose peak pixel is at 3 sigma has a matched-filter SNR of about 5-6.
MATCHED_PER_SIGMA = 4.2 / 3.0

#: Peaks below this significance must pass ``faint_size_ratio``.
_FAINT_SIGNIFICANCE = 5.5
#: Peaks above this significance count as neighbours in the PSF fit of a peak.
_NEIGHBOUR_SIGNIFICANCE = 3.0
#: A PSF misfit must be this significant (in sigma of chi^2) to drop a peak.
_PSF_EXCESS_SIGMA = 10.0
#: Within this many FWHM of the mask a milder PSF misfit drops a peak.
_EDGE_FWHM = 3.0


def _parabola(m: np.ndarray, c: np.ndarray, p: np.ndarray) -> np.ndarray:
    d = m - 2 * c + p
    return np.clip(np.where(d < 0, 0.5 * (m - p) / np.where(d == 0, -1, d), 0.0), -0.5, 0.5)


def _asymmetry(resid, bad, xs, ys, fwhm, pixel_rms):
    """Dipole of the residual in an annulus of 1.5-3 FWHM around integer peaks.

    Returns its significance (in units of its noise) and its size per annulus pixel over
    the peak's residual: about 0 for a star on a flat sky, 0.2-0.6 on the bright side of
    a step in the sky (an edge of a tree, a building or a cloud left in the sky).
    """
    r_out = max(3, int(math.ceil(3.0 * fwhm)))
    h, w = resid.shape
    oy, ox = np.mgrid[-r_out : r_out + 1, -r_out : r_out + 1]
    rr = np.hypot(ox, oy)
    ann = (rr >= 1.5 * fwhm) & (rr <= 3.0 * fwhm)
    ux, uy = (ox / np.maximum(rr, 1e-9))[ann], (oy / np.maximum(rr, 1e-9))[ann]
    yy = ys[:, None] + oy[ann][None, :]
    xx = xs[:, None] + ox[ann][None, :]
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    yy, xx = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
    good = inside & ~bad[yy, xx]
    v = np.where(good, resid[yy, xx], 0.0)
    n = np.maximum(good.sum(1), 1)
    dx, dy = (v * ux).sum(1), (v * uy).sum(1)
    sx = np.sqrt((good * ux**2).sum(1))
    sy = np.sqrt((good * uy**2).sum(1))
    rms = pixel_rms[ys, xs]
    dip_sig = np.hypot(dx / np.maximum(sx * rms, 1e-12), dy / np.maximum(sy * rms, 1e-12))
    peak = np.maximum(resid[ys, xs], 1e-12)
    asym = np.hypot(dx, dy) / n / peak
    return dip_sig / math.sqrt(2.0), asym


def _gaussian_at(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, fwhm: float) -> np.ndarray:
    """The unit-sum Gaussian filter of ``fwhm`` px at integer pixels ``(xs, ys)`` only.

    Equal to ``_gaussian(image, fwhm)[ys, xs]`` (same kernel, reflected borders), at the
    cost of one stamp per pixel instead of a filter over the whole frame.
    """
    s = fwhm * _FWHM_TO_SIGMA
    k1 = cv2.getGaussianKernel(2 * int(math.ceil(3.5 * s)) + 1, s).ravel()
    r = k1.size // 2
    h, w = image.shape
    off = np.arange(-r, r + 1)
    out = np.empty(xs.size)
    for lo in range(0, xs.size, 4096):
        yy = ys[lo : lo + 4096, None] + off
        xx = xs[lo : lo + 4096, None] + off
        yy = np.where(yy < 0, -yy - 1, np.where(yy >= h, 2 * h - yy - 1, yy))
        xx = np.where(xx < 0, -xx - 1, np.where(xx >= w, 2 * w - xx - 1, xx))
        stamp = image[yy[:, :, None], xx[:, None, :]].astype(np.float64)
        out[lo : lo + 4096] = np.einsum("nij,i,j->n", stamp, k1, k1)
    return out


def _chi2(m: np.ndarray, wgt: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Weighted least-squares chi^2 of ``v ~ m @ c`` per row; shapes (N, P, K), (N, P), (N, P)."""
    mat = np.einsum("npi,np,npj->nij", m, wgt, m)
    ridge = 1e-9 * (1.0 + np.trace(mat, axis1=1, axis2=2))
    mat += ridge[:, None, None] * np.eye(m.shape[-1])
    rhs = np.einsum("npi,np,np->ni", m, wgt, v)
    coef = np.linalg.solve(mat, rhs[..., None])[..., 0]
    res = v - np.einsum("npi,ni->np", m, coef)
    return (wgt * res**2).sum(1)


def _psf_excess(resid, bad, pixel_rms, x, y, fwhm, nbx, nby, n_neighbours=4, chunk=4096):
    """Excess chi^2 of a PSF fit on a plane, in units of its noise and of the PSF's gain.

    In a box of +-2 FWHM around each peak, the residual is fitted by weighted least squares
    (weights ``1 / pixel_rms^2``) with a plane, a Gaussian PSF of the frame's FWHM at the
    peak and the same PSF at up to ``n_neighbours`` neighbouring peaks ``(nbx, nby)`` (so
    that a blend is not taken as a misfit); the same fit without the peak's PSF gives the
    PSF's gain in chi^2. Returns ``z = (chi2 - dof) / sqrt(2 dof)`` and
    ``r = (chi2 - dof) / gain``: about 0 for a star, large where the light is a step, an
    edge or a blob that the PSF does not describe. A chi^2 test of a PSF fit as in
    DAOPHOT (Stetson 1987, PASP 99, 191, §IV).
    """
    h, w = resid.shape
    r = max(2, int(math.ceil(2.0 * fwhm)))
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    ox, oy = ox.ravel().astype(np.float32), oy.ravel().astype(np.float32)
    s2 = 2.0 * (fwhm * _FWHM_TO_SIGMA) ** 2
    tree = cKDTree(np.c_[nbx, nby])
    k = min(n_neighbours + 1, len(nbx))
    z = np.zeros(x.size)
    ratio = np.zeros(x.size)
    for lo in range(0, x.size, chunk):
        cx, cy = x[lo : lo + chunk], y[lo : lo + chunk]
        xi, yi = np.round(cx).astype(int), np.round(cy).astype(int)
        yy, xx = yi[:, None] + oy.astype(int), xi[:, None] + ox.astype(int)
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        yy, xx = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
        good = inside & ~bad[yy, xx]
        wgt = np.where(good, 1.0 / np.maximum(pixel_rms[yy, xx], 1e-12) ** 2, 0.0)
        v = resid[yy, xx].astype(np.float64)
        px, py = xx.astype(np.float64), yy.astype(np.float64)
        cols = [np.ones_like(px), px - xi[:, None], py - yi[:, None]]
        cols.append(np.exp(-((px - cx[:, None]) ** 2 + (py - cy[:, None]) ** 2) / s2))
        if k > 1:
            dd, jj = tree.query(np.c_[cx, cy], k=k)
            for j in range(1, k):
                near = (dd[:, j] > 1.0) & (dd[:, j] <= 1.42 * r + 1.5 * fwhm)
                nx, ny = nbx[jj[:, j]][:, None], nby[jj[:, j]][:, None]
                g = np.exp(-((px - nx) ** 2 + (py - ny) ** 2) / s2)
                cols.append(np.where(near[:, None], g, 0.0))
        a = np.stack(cols, -1)
        c_psf = _chi2(a, wgt, v)
        c_none = _chi2(np.delete(a, 3, axis=-1), wgt, v)
        dof = np.maximum(good.sum(1) - a.shape[-1], 1)
        excess = c_psf - dof
        z[lo : lo + chunk] = excess / np.sqrt(2.0 * dof)
        ratio[lo : lo + chunk] = excess / np.maximum(c_none - c_psf, 1e-9)
    return z, ratio


def _moments(resid: np.ndarray, xs: np.ndarray, ys: np.ndarray, fwhm: float):
    """Gaussian-windowed second moments around integer peaks: a, b (px), theta (rad)."""
    r = max(2, int(math.ceil(1.5 * fwhm)))
    h, w = resid.shape
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    yy = np.clip(ys[:, None, None] + oy, 0, h - 1)
    xx = np.clip(xs[:, None, None] + ox, 0, w - 1)
    s = fwhm * _FWHM_TO_SIGMA
    win = np.exp(-(ox**2 + oy**2) / (2 * s * s))
    st = np.clip(resid[yy, xx], 0, None) * win
    tot = np.maximum(st.sum((1, 2)), 1e-12)
    mx = (st * ox).sum((1, 2)) / tot
    my = (st * oy).sum((1, 2)) / tot
    x2 = (st * ox**2).sum((1, 2)) / tot - mx**2
    y2 = (st * oy**2).sum((1, 2)) / tot - my**2
    xy = (st * ox * oy).sum((1, 2)) / tot - mx * my
    t1 = 0.5 * (x2 + y2)
    t2 = np.sqrt(np.maximum(0.25 * (x2 - y2) ** 2 + xy**2, 0))
    a = np.sqrt(np.maximum(t1 + t2, 1e-6))
    b = np.sqrt(np.maximum(t1 - t2, 1e-6))
    theta = 0.5 * np.arctan2(2 * xy, x2 - y2)
    return a, b, theta


@dataclass
class MatchedStarFinder(StarFinder):
    """Find stars as peaks of a PSF-matched significance map over a local background and noise.

    The steps, on the box that holds the unmasked pixels: (1) a provisional background and noise with a Gaussian filter of
    ``initial_fwhm``; the frame's FWHM from the half-light radii of the brightest
    unsaturated isolated peaks; (2) the background, source mask and the noise of the
    filtered image again with that FWHM (:func:`matched_background`); (3) significance =
    filtered / filtered noise, local maxima (3x3) above ``threshold``; peaks that are not
    point-like dropped (``max_size_ratio``, ``max_asymmetry``, ``max_psf_excess``,
    ``faint_size_ratio``); peaks on one saturated blob merged into one; (4) centroids by the Gaussian-windowed centroid
    (SExtractor's ``XWIN_IMAGE``), fluxes in a circular aperture of radius 1.5 FWHM, as
    :class:`~skysift.detection.stars.ClassicalStarFinder` reports them.

    The threshold follows from a false-alarm rate: for the filtered image (a smooth
    Gaussian random field) the expected number of noise maxima above ``t`` per pixel is
    ``t exp(-t^2/2) / ((2 pi)^1.5 * 2 s^2)`` with ``s`` the kernel's sigma (the Euler
    characteristic density of Adler 1981, *The Geometry of Random Fields*, §6; Worsley
    et al. 1996, Hum. Brain Mapp. 4, 58, eq. 2). Peak finding on a matched-filtered
    image is DAOFIND's (Stetson 1987, PASP 99, 191, §III); the matched filter is optimal
    for a known PSF in white noise (North 1943; Turin 1960).

    Parameters
    ----------
    threshold : float, optional
        Significance cut in units of the filtered noise. ``None`` (default) sets it from
        ``false_alarms``.
    false_alarms : float, optional
        Expected noise peaks per million pixels when ``threshold`` is None. Default 10
        (a cut of about 4.2 sigma for a 2.5 px FWHM).
    fwhm : float, optional
        PSF FWHM in pixels; ``None`` (default) measures it from the frame's bright stars.
    initial_fwhm : float, optional
        Filter FWHM of the first pass, pixels. Default 2.5.
    mesh_size : int, optional
        Background block size, pixels. Default 8.
    smooth_meshes : int, optional
        Half-width of the background regression window, in blocks. Default 4.
    saturation : float, optional
        Saturation level in image units; ``None`` estimates it with
        :func:`~skysift.detection.stars.estimate_saturation`.
    max_elongation : float, optional
        a/b above which a source is flagged ELONGATED. Default 3.
    reject_captions : bool or None, optional
        Mask burned-in caption text (:func:`~skysift.detection.masks.caption_text_mask`)
        before detection. ``None`` (default): only when no ``mask`` is given (a caller's
        mask, such as :func:`~skysift.detection.masks.sky_mask` in
        :func:`skysift.find_stars`, already holds the captions).
    max_size_ratio : float or None, optional
        Compactness cut: a peak is kept when its significance through a Gaussian filter of
        twice the FWHM, over its significance through the PSF's filter, is at most this
        (0.8 for a point source, 1.25 for a source twice the PSF's FWHM); saturated peaks
        are always kept; ``None`` = no cut. A two-scale form of DAOFIND's sharpness
        (Stetson 1987, §III.D). Default 1.2.
    max_asymmetry : float or None, optional
        Symmetry cut: a peak is dropped when the dipole of the residual in the annulus of
        1.5-3 FWHM around it is significant (above 5 sigma) and larger, per pixel, than this
        fraction of the peak's residual: the bright side of a step in the sky (a tree's
        or a building's edge left in the sky mask) is not a star. Saturated peaks are kept;
        ``None`` = no cut. Default 0.3.
    max_psf_excess : float or None, optional
        PSF-fit cut: in a box of +-2 FWHM, a plane plus a Gaussian PSF of the frame's FWHM
        (plus the PSFs of neighbouring peaks) is fitted to the residual; a peak is dropped
        when the fit's excess chi^2 is significant (above 10 sigma) and larger than this
        many times the chi^2 the PSF itself explains: a step, an edge or a blob of the sky
        is not a star. Within 3 FWHM of the mask a misfit above 3 sigma and 1x the PSF's
        gain is enough. Saturated peaks are kept; ``None`` = no cut. Default 3.
    faint_size_ratio : float or None, optional
        The compactness ratio of ``max_size_ratio`` required of the faint peaks (below
        5.5 sigma): near the threshold a peak wider than the PSF is mostly a bump of the
        sky. ``None`` = no cut. Default 1.05.
    max_objects : int, optional
        Keep at most this many sources (brightest first). Default 20000.

    Examples
    --------
    >>> finder = MatchedStarFinder()
    >>> stars = finder(image, mask=mask)  # doctest: +SKIP
    """

    threshold: float | None = None
    false_alarms: float = 10.0
    fwhm: float | None = None
    initial_fwhm: float = 2.5
    mesh_size: int = 8
    smooth_meshes: int = 4
    saturation: float | None = None
    max_elongation: float = 3.0
    reject_captions: bool | None = None
    max_size_ratio: float | None = 1.2
    max_asymmetry: float | None = 0.3
    max_psf_excess: float | None = 3.0
    faint_size_ratio: float | None = 1.05
    max_objects: int = 20000

    def __post_init__(self) -> None:
        if self.threshold is not None and not (np.isfinite(self.threshold) and self.threshold > 0):
            msg = f"threshold must be > 0 (filtered sigma), got {self.threshold!r}"
            raise InputError(msg)
        if not (np.isfinite(self.false_alarms) and self.false_alarms > 0):
            msg = f"false_alarms must be > 0 per million pixels, got {self.false_alarms!r}"
            raise InputError(msg)
        if self.fwhm is not None and not (np.isfinite(self.fwhm) and 0.8 <= self.fwhm <= 30):
            msg = f"fwhm must be in [0.8, 30] pixels, got {self.fwhm!r}"
            raise InputError(msg)
        if not (np.isfinite(self.initial_fwhm) and 0.8 <= self.initial_fwhm <= 30):
            msg = f"initial_fwhm must be in [0.8, 30] pixels, got {self.initial_fwhm!r}"
            raise InputError(msg)
        if self.max_size_ratio is not None and not (
            np.isfinite(self.max_size_ratio) and self.max_size_ratio > 0
        ):
            msg = f"max_size_ratio must be > 0 or None, got {self.max_size_ratio!r}"
            raise InputError(msg)
        if self.max_asymmetry is not None and not (
            np.isfinite(self.max_asymmetry) and self.max_asymmetry > 0
        ):
            msg = f"max_asymmetry must be > 0 or None, got {self.max_asymmetry!r}"
            raise InputError(msg)
        for name in ("max_psf_excess", "faint_size_ratio"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                msg = f"{name} must be > 0 or None, got {value!r}"
                raise InputError(msg)
        if self.max_objects < 1:
            msg = f"max_objects must be >= 1, got {self.max_objects!r}"
            raise InputError(msg)

    def significance_threshold(self, fwhm: float) -> float:
        """The significance cut for a kernel of ``fwhm`` pixels (see the class docstring)."""
        if self.threshold is not None:
            return float(self.threshold)
        s2 = (fwhm * _FWHM_TO_SIGMA) ** 2
        target = self.false_alarms * 1e-6
        lo, hi = 2.0, 12.0
        for _ in range(60):  # bisection: the density falls monotonically above t = 1
            t = 0.5 * (lo + hi)
            dens = t * math.exp(-0.5 * t * t) / ((2 * math.pi) ** 1.5 * 2 * s2)
            lo, hi = (t, hi) if dens > target else (lo, t)
        return 0.5 * (lo + hi)

    def find_stars(
        self,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        background: BackgroundMap | None = None,
    ) -> Table:
        """Detect stars.

        Parameters
        ----------
        image : ndarray, shape (H, W)
            The image (any real dtype; converted to float32).
        mask : ndarray of bool, shape (H, W), optional
            ``True`` = not sky / bad pixel; no source is detected there.
        background : BackgroundMap, optional
            Ignored (the finder measures its own background and filtered noise); accepted
            for the common interface.

        Returns
        -------
        astropy.table.Table
            The columns of :data:`~skysift.detection.stars.STAR_COLUMNS` (as
            :meth:`ClassicalStarFinder.find_stars`) plus ``significance`` (the peak of the
            matched-filter significance map), brightest first. Empty (full schema) with a
            :class:`NoDetectionsWarning` if nothing is found.

        Raises
        ------
        InputError
            If the image is not 2-D or the mask has another shape.
        """
        del background
        data, bad = check_image(image, mask, what="star detection")
        if min(data.shape) < 16:
            msg = f"star detection needs an image of at least 16x16 pixels, got {data.shape}"
            raise InputError(msg)
        captions = mask is None if self.reject_captions is None else self.reject_captions
        if captions and not bad.all():
            bad = bad | caption_text_mask(np.where(bad, np.nan, data))
        if bad.all():
            warnings.warn(
                "every pixel is masked: no star detected", NoDetectionsWarning, stacklevel=2
            )
            return self._empty()
        sat = self.saturation if self.saturation is not None else estimate_saturation(data)
        # Work on the box that holds the unmasked pixels (a fisheye's lens circle leaves a
        # third of a DSLR frame masked): the same stars at a fraction of the cost.
        rows = np.flatnonzero(~bad.all(axis=1))
        cols = np.flatnonzero(~bad.all(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        if (y1 - y0) * (x1 - x0) < 0.8 * data.size and min(y1 - y0, x1 - x0) >= 16:
            data = np.ascontiguousarray(data[y0:y1, x0:x1])
            bad = np.ascontiguousarray(bad[y0:y1, x0:x1])
        else:
            y0 = x0 = 0
        bkg = matched_background(
            data,
            bad,
            fwhm=self.fwhm,
            initial_fwhm=self.initial_fwhm,
            saturation=sat,
            mesh_size=self.mesh_size,
            smooth_meshes=self.smooth_meshes,
        )
        fwhm = bkg.fwhm
        resid = (data - bkg.level).astype(np.float32, copy=False)
        resid[bad] = 0.0
        sig = bkg.filtered / bkg.filtered_rms
        threshold = self.significance_threshold(fwhm)
        local_max = (sig >= cv2.dilate(sig, np.ones((3, 3), np.uint8))) & ~bad
        local_max[0, :] = local_max[-1, :] = local_max[:, 0] = local_max[:, -1] = False
        ys, xs = np.nonzero(local_max & (sig >= threshold))
        if self.max_size_ratio is not None and xs.size:
            # Compactness: the significance with a filter twice as wide, over that with the
            # PSF's, is 0.8 for a point source (Gaussian PSF) and grows with the source's
            # size (1.25 at twice the FWHM): extended sky structure (the Milky Way's knots,
            # the edges of clouds and trees) is not a star. Saturated stars are kept.
            wide = _gaussian_at(resid, xs, ys, 2.0 * fwhm)
            scale = _kernel_norm(2.0 * fwhm) / _kernel_norm(fwhm)
            ratio = wide / (bkg.filtered_rms[ys, xs] * scale) / sig[ys, xs]
            keep = ratio <= self.max_size_ratio
            if sat is not None:
                keep |= data[ys, xs] >= 0.97 * sat
            xs, ys = xs[keep], ys[keep]
        if self.max_asymmetry is not None and xs.size:
            dip_sig, asym = _asymmetry(resid, bad, xs, ys, fwhm, bkg.pixel_rms)
            keep = (dip_sig <= 5.0) | (asym <= self.max_asymmetry)
            if sat is not None:
                keep |= data[ys, xs] >= 0.97 * sat
            xs, ys = xs[keep], ys[keep]
        if xs.size:
            xs, ys = self._shape_cuts(data, bad, resid, sig, bkg, xs, ys, fwhm, sat, local_max)
        xs, ys = self._merge_saturated(data, bad, sig, xs, ys, sat, fwhm)
        if xs.size == 0:
            warnings.warn("no star detected above threshold", NoDetectionsWarning, stacklevel=2)
            return self._empty(threshold, fwhm, bkg, sat)
        table = self._table(data, bad, resid, sig, bkg, xs, ys, fwhm, sat, threshold)
        table["x"] += x0
        table["y"] += y0
        return table

    def _shape_cuts(self, data, bad, resid, sig, bkg, xs, ys, fwhm, sat, local_max):
        """Drop peaks that a PSF does not describe (steps, edges, blobs) and faint wide ones."""
        keep = np.ones(xs.size, bool)
        s = sig[ys, xs]
        if self.faint_size_ratio is not None:
            # Near the threshold, a peak wider than the PSF is mostly a bump of the sky
            # (a point source's ratio is 0.8 +- 0.6 / significance): the same compactness
            # test as ``max_size_ratio``, stricter for the faint peaks only.
            faint = s < _FAINT_SIGNIFICANCE
            if faint.any():
                wide = _gaussian_at(resid, xs, ys, 2.0 * fwhm)
                scale = _kernel_norm(2.0 * fwhm) / _kernel_norm(fwhm)
                ratio = wide / (bkg.filtered_rms[ys, xs] * scale) / s
                keep &= ~(faint & (ratio > self.faint_size_ratio))
        if self.max_psf_excess is not None:
            ny, nx = np.nonzero(local_max & (sig >= _NEIGHBOUR_SIGNIFICANCE))
            z, r = _psf_excess(
                resid, bad, bkg.pixel_rms, xs.astype(float), ys.astype(float), fwhm,
                nx.astype(float), ny.astype(float),
            )  # fmt: skip
            drop = (z > _PSF_EXCESS_SIGMA) & (r > self.max_psf_excess)
            if bad.any():
                # Within 3 FWHM of the mask (a horizon, a roof, a tree line) a step of the
                # sky is the usual impostor: a milder misfit is enough to drop the peak.
                dist = cv2.distanceTransform((~bad).view(np.uint8), cv2.DIST_L2, 3)
                near = dist[ys, xs] < _EDGE_FWHM * fwhm
                drop |= near & (z > 3.0) & (r > 1.0)
            keep &= ~drop
        if sat is not None:
            keep |= data[ys, xs] >= 0.97 * sat
        return xs[keep], ys[keep]

    def _merge_saturated(self, data, bad, sig, xs, ys, sat, fwhm):
        """Keep one peak (the most significant) per saturated blob, at the blob's centre."""
        if sat is None or xs.size == 0:
            return xs.astype(float), ys.astype(float)
        blob = (data >= 0.97 * sat) & ~bad
        if not blob.any():
            return xs.astype(float), ys.astype(float)
        grown = cv2.dilate(blob.view(np.uint8), _disk(max(1.5, 1.5 * fwhm)))
        n, lab = cv2.connectedComponents(grown, connectivity=8)
        lp = lab[ys, xs]
        keep = lp == 0
        x = xs.astype(float)
        y = ys.astype(float)
        s = sig[ys, xs]
        by, bx = np.nonzero(blob)
        bl = lab[by, bx]
        cnt = np.bincount(bl, minlength=n)
        cx = np.bincount(bl, weights=bx, minlength=n) / np.maximum(cnt, 1)
        cy = np.bincount(bl, weights=by, minlength=n) / np.maximum(cnt, 1)
        # the most significant peak of each blob: sort by (label, -significance)
        idx = np.flatnonzero(lp > 0)
        idx = idx[np.lexsort((-s[idx], lp[idx]))]
        first = idx[np.r_[True, lp[idx][1:] != lp[idx][:-1]]] if idx.size else idx
        keep[first] = True
        k = lp[first]
        x[first], y[first] = cx[k], cy[k]
        return x[keep], y[keep]

    def _empty(self, threshold=None, fwhm=None, bkg=None, sat=None) -> Table:
        t = empty_star_table()
        t["significance"] = np.zeros(0)
        t.meta.update(
            n_found=0,
            capped=False,
            saturation=sat,
            threshold_sigma=threshold,
            fwhm=fwhm,
            background_level=float(np.median(bkg.level)) if bkg is not None else None,
            background_rms=float(np.median(bkg.pixel_rms)) if bkg is not None else None,
        )
        return t

    def _table(self, data, bad, resid, sig, bkg, x, y, fwhm, sat, threshold) -> Table:
        h, w = data.shape
        xi = np.clip(np.round(x).astype(int), 1, w - 2)
        yi = np.clip(np.round(y).astype(int), 1, h - 2)
        c = sig[yi, xi]
        on_peak = (x == xi) & (y == yi)
        dx = _parabola(sig[yi, xi - 1], c, sig[yi, xi + 1])
        dy = _parabola(sig[yi - 1, xi], c, sig[yi + 1, xi])
        x = np.where(on_peak, xi + dx, x)
        y = np.where(on_peak, yi + dy, y)
        n_found = x.size
        order = np.argsort(-c)[: self.max_objects]
        if n_found > self.max_objects:
            warnings.warn(
                f"{n_found} sources above {threshold:.2f} sigma: kept the {self.max_objects} "
                "most significant (max_objects; raise threshold or max_objects)",
                DetectionCapWarning,
                stacklevel=3,
            )
        x, y, xi, yi, c = x[order], y[order], xi[order], yi[order], c[order]
        sub = np.ascontiguousarray(resid, dtype=np.float32)
        rms = np.ascontiguousarray(bkg.pixel_rms, dtype=np.float32)
        # Neighbours closer than 2 FWHM: blended; keep the parabola centroid there.
        tree = cKDTree(np.c_[x, y])
        nn = tree.query(np.c_[x, y], k=2)[0][:, 1] if x.size > 1 else np.full(x.size, np.inf)
        blended = nn < 2.0 * fwhm
        s = fwhm * _FWHM_TO_SIGMA
        xw, yw, wflag = sep.winpos(sub, x, y, np.full(x.size, s), mask=bad)
        good = (
            (wflag == 0)
            & ~blended
            & np.isfinite(xw)
            & np.isfinite(yw)
            & (np.hypot(xw - x, yw - y) < 1.0)
        )
        x = np.where(good, xw, x)
        y = np.where(good, yw, y)
        radius = np.full(x.size, float(np.clip(1.5 * fwhm, 2.0, 30.0)))
        flux, flux_err, aflag = sep.sum_circle(sub, x, y, radius, err=rms, mask=bad, subpix=5)
        rmax = np.clip(np.full(x.size, 3.0 * fwhm), 3.0, 50.0)
        r50, _ = sep.flux_radius(sub, x, y, rmax, 0.5, subpix=5, mask=bad)
        star_fwhm = np.where(np.isfinite(r50) & (r50 > 0), np.clip(2.0 * r50, 0.5, None), fwhm)
        a, b, theta = _moments(sub, xi, yi, fwhm)
        # peak above background and the pixels of the source above 2 sigma, in a 2 FWHM box
        r = max(1, int(math.ceil(fwhm)))
        oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
        yy = np.clip(yi[:, None, None] + oy, 0, h - 1)
        xx = np.clip(xi[:, None, None] + ox, 0, w - 1)
        stamp = sub[yy, xx]
        peak = stamp.max((1, 2))
        npix = (stamp > 2.0 * rms[yy, xx]).sum((1, 2))
        flags = np.zeros(x.size, dtype=np.int64)
        if sat is not None:
            flags[data[yy, xx].max((1, 2)) >= 0.97 * sat] |= StarFlag.SATURATED
        near = (x < radius) | (y < radius) | (x > w - 1 - radius) | (y > h - 1 - radius)
        flags[near | ((aflag & sep.APER_HASMASKED) != 0)] |= StarFlag.EDGE
        flags[blended] |= StarFlag.BLENDED
        flags[(a / b) > self.max_elongation] |= StarFlag.ELONGATED
        columns = {
            "x": x,
            "y": y,
            "flux": flux,
            "flux_err": flux_err,
            "fwhm": star_fwhm,
            "peak": peak,
            "snr": np.where(flux_err > 0, flux / np.maximum(flux_err, 1e-12), 0.0),
            "a": a,
            "b": b,
            "theta": theta,
            "npix": npix,
            "flags": flags,
        }
        t = Table()
        for name, dtype, unit in STAR_COLUMNS:
            t[name] = np.asarray(columns[name], dtype=dtype)
            if unit:
                t[name].unit = unit
        t["significance"] = np.asarray(c, float)
        t = t[np.argsort(-np.asarray(t["flux"]))]
        t.meta.update(
            background_level=float(np.median(bkg.level[~bad])),
            background_rms=float(np.median(bkg.pixel_rms[~bad])),
            saturation=sat,
            threshold_sigma=float(threshold),
            fwhm=float(fwhm),
            n_found=int(n_found),
            capped=bool(n_found > self.max_objects),
        )
        return t


def make_matched_finder(
    threshold_sigma: float | None = None, **kwargs: object
) -> MatchedStarFinder:
    """Build a :class:`MatchedStarFinder` from the registry's keywords.

    Parameters
    ----------
    threshold_sigma : float, optional
        As for every registered finder, a cut in background sigma (the classical finder's
        per-pixel cut): taken as the significance cut ``MATCHED_PER_SIGMA * threshold_sigma``
        in filtered sigma (3 -> 4.2) unless ``threshold`` is given. Default none (the cut
        then follows ``false_alarms``).
    **kwargs
        Other :class:`MatchedStarFinder` parameters.

    Returns
    -------
    MatchedStarFinder

    Raises
    ------
    InputError
        If ``threshold_sigma`` is not a positive number, or a parameter is out of range.
    """
    if threshold_sigma is not None:
        if not (np.isfinite(threshold_sigma) and threshold_sigma > 0):
            msg = f"threshold_sigma must be > 0, got {threshold_sigma!r}"
            raise InputError(msg)
        kwargs.setdefault("threshold", MATCHED_PER_SIGMA * float(threshold_sigma))
    return MatchedStarFinder(**kwargs)
