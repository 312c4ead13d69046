"""Streak detection without learning: low-threshold segmentation of elongated sources.

The baseline of the Unistellar satellite-streak paper: a SExtractor-style
background subtraction (``sep`` mesh background, Bertin & Arnouts 1996), a
segmentation of the matched-filtered image at a low threshold, and a cut on
elongation: a source is a streak piece when its second-moment axis ratio is
``a / b >= min_elongation`` (4) and it is at least ``min_length`` pixels long
(10). Stars, being round, never pass the elongation cut; stars touching a
streak are cut out of its mask (compact bright cores). The finder returns a
per-pixel score map in [0, 1], scored exactly like the probability map of a
learned segmenter, and the streak table measured from it by
:func:`skysift.streaks.measurement.streaks_from_probability`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import Table
from scipy import ndimage

from skysift._validation import check_image
from skysift.detection.background import estimate_background
from skysift.errors import InputError, NoDetectionsWarning
from skysift.streaks.measurement import streaks_from_probability

__all__ = ["ClassicalStreakFinder", "StreakDetection"]


@dataclass
class StreakDetection:
    """Output of a streak finder.

    Attributes
    ----------
    prob : ndarray, shape (H, W), float32
        Streak score per pixel in [0, 1] (0.5 at the detection threshold).
    table : astropy.table.Table
        Streaks measured from ``prob`` (see
        :func:`~skysift.streaks.measurement.streaks_from_probability`).
    p_streak : float
        Image-level streak score in [0, 1]: the largest pixel score.
    """

    prob: np.ndarray
    table: Table
    p_streak: float


class ClassicalStreakFinder:
    """Find satellite and debris streaks by segmentation and an elongation cut.

    Configure, then call: ``ClassicalStreakFinder()(image)``.

    Parameters
    ----------
    threshold : float, optional
        Detection threshold in units of the noise of the smoothed image. Default 2.
    smooth_fwhm : float, optional
        FWHM in pixels of the Gaussian matched filter applied before
        thresholding (about the PSF FWHM). Default 2.5.
    min_elongation : float, optional
        Smallest second-moment axis ratio ``a / b`` of a streak piece. Default 4.
    min_length : float, optional
        Smallest extent of a streak piece along its axis, pixels. Default 10.
    min_pixels : int, optional
        Smallest streak piece, pixels. Default 20.
    min_snr : float, optional
        Smallest summed significance of a piece, ``sum(z) / sqrt(n)`` of the
        unsmoothed noise-normalised pixels, against chains of noise. Default 8.
    star_threshold : float, optional
        Compact cores brighter than this (noise units of the smoothed image)
        that are not elongated are masked (dilated by ``star_grow`` pixels)
        out of streak masks. Default 10.
    star_grow : int, optional
        Dilation of the star cores, pixels. Default 2.
    box_size : int, optional
        Background mesh size, pixels. Default 64.
    merge_angle_deg, merge_gap_px : float, optional
        Passed to ``streaks_from_probability``. Defaults 3 and 30.

    References
    ----------
    Unistellar satellite-streak paper (SExtractor baseline: segmentation and
    elongated-source selection); Bertin & Arnouts 1996, A&AS 117, 393.
    """

    def __init__(
        self,
        *,
        threshold: float = 2.0,
        smooth_fwhm: float = 2.5,
        min_elongation: float = 4.0,
        min_length: float = 10.0,
        min_pixels: int = 20,
        min_snr: float = 8.0,
        star_threshold: float = 10.0,
        star_grow: int = 2,
        box_size: int = 64,
        merge_angle_deg: float = 3.0,
        merge_gap_px: float = 30.0,
    ) -> None:
        for name, value in (
            ("threshold", threshold),
            ("smooth_fwhm", smooth_fwhm),
            ("min_elongation", min_elongation),
            ("star_threshold", star_threshold),
        ):
            if not value > 0:
                msg = f"{name} must be > 0, got {value}"
                raise InputError(msg)
        self.threshold = float(threshold)
        self.smooth_fwhm = float(smooth_fwhm)
        self.min_elongation = float(min_elongation)
        self.min_length = float(min_length)
        self.min_pixels = int(min_pixels)
        self.min_snr = float(min_snr)
        self.star_threshold = float(star_threshold)
        self.star_grow = int(star_grow)
        self.box_size = int(box_size)
        self.merge_angle_deg = float(merge_angle_deg)
        self.merge_gap_px = float(merge_gap_px)

    def score_map(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Per-pixel streak score in [0, 1], shape (H, W), float32.

        ``z / (z + threshold)`` on the pixels of the elongated pieces (``z``
        the smoothed significance), 0 elsewhere: 0.5 at the threshold.
        ``mask``: ``True`` = bad pixel, ignored.
        """
        z, zs, _ = self.significance(image, mask)
        labels, n = ndimage.label(zs >= self.threshold, structure=np.ones((3, 3), bool))
        prob = np.zeros(z.shape, np.float32)
        if n == 0:
            return prob
        cores = self._star_cores(zs, labels)
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            sub = labels[sl] == k
            npix = int(sub.sum())
            if npix < self.min_pixels:
                continue
            ys, xs = np.nonzero(sub)
            if not self._is_streak(xs, ys, z[sl][sub]):
                continue
            keep = sub & ~cores[sl]
            v = zs[sl][keep]
            prob[sl][keep] = (v / (v + self.threshold)).astype(np.float32)
        return prob

    def significance(
        self, image: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Noise-normalised image and its matched-filtered significance.

        Returns
        -------
        z : ndarray, shape (H, W), float64
            ``(image - background) / rms`` (sep-style mesh background), 0 at bad pixels.
        zs : ndarray, shape (H, W), float64
            ``z`` smoothed with a Gaussian of FWHM ``smooth_fwhm``, rescaled to
            unit robust noise (0 at bad pixels).
        bad : ndarray of bool, shape (H, W)
            Masked or non-finite pixels.

        Raises
        ------
        InputError
            For an image that is not 2-D or a mask of another shape.
        """
        img, bad = check_image(image, mask, what="streak detection", dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            bkg = estimate_background(
                np.where(bad, np.nanmedian(img), img), mask=bad, box_size=self.box_size
            )
        rms = np.where(bkg.rms > 0, bkg.rms, max(bkg.global_rms, 1e-12))
        z = np.where(bad, 0.0, (img - bkg.level) / rms)
        zs = ndimage.gaussian_filter(z, self.smooth_fwhm / 2.3548, mode="nearest")
        good = ~bad
        med = np.median(zs[good])
        noise = 1.4826 * np.median(np.abs(zs[good] - med)) or 1.0
        zs = (zs - med) / noise
        zs[bad] = 0.0
        return z, zs, bad

    def _star_cores(self, zs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Compact bright sources (stars), to keep out of streak masks.

        The pixels above ``star_threshold`` are opened with a disk of radius
        ``star_grow + 1``: a thin streak vanishes, a star's bright disk stays;
        the round survivors (axis ratio < 2.5) are the star cores, dilated by
        ``star_grow`` pixels, unless their bright isophote is elongated (a
        bright streak, or a star it crosses).
        """
        bright = zs >= self.star_threshold
        r = self.star_grow + 1
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        opened = ndimage.binary_opening(bright, structure=(xx**2 + yy**2) <= r * r)
        blab, _ = ndimage.label(bright, structure=np.ones((3, 3), bool))
        elongated = np.zeros(blab.max() + 1, bool)
        for k, sl in enumerate(ndimage.find_objects(blab), start=1):
            ys, xs = np.nonzero(blab[sl] == k)
            a, b, _ = _moments(xs, ys, np.ones(xs.size))
            elongated[k] = a / max(b, 1e-6) >= self.min_elongation
        lab, n = ndimage.label(opened)
        cores = np.zeros(zs.shape, bool)
        for k, sl in enumerate(ndimage.find_objects(lab), start=1):
            sub = lab[sl] == k
            ys, xs = np.nonzero(sub)
            a, b, _ = _moments(xs, ys, np.ones(xs.size))
            # a bright streak (or a star on it): its bright isophote is elongated
            on_streak = elongated[blab[sl][sub]].any()
            if a / max(b, 1e-6) < 2.5 and not on_streak:
                cores[sl] |= sub
        if self.star_grow > 0 and cores.any():
            cores = ndimage.binary_dilation(cores, iterations=self.star_grow)
        return cores

    def _is_streak(self, xs: np.ndarray, ys: np.ndarray, z: np.ndarray) -> bool:
        """Elongation (isophotal, unweighted moments), length and significance cuts."""
        a, b, u = _moments(xs, ys, np.ones(xs.size))
        if a / max(b, 0.3) < self.min_elongation:
            return False
        along = xs * u[0] + ys * u[1]
        if along.max() - along.min() + 1 < self.min_length:
            return False
        return float(np.sum(z) / np.sqrt(z.size)) >= self.min_snr

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        *,
        threshold: float = 0.5,
        wcs_or_camera: Any = None,
    ) -> StreakDetection:
        """Find the streaks of ``image``.

        Parameters
        ----------
        image : ndarray, shape (H, W)
            The image (background included).
        mask : ndarray of bool, shape (H, W), optional
            ``True`` = bad pixel.
        threshold : float, optional
            Score threshold of the streak masks, in [0, 1]. Default 0.5 (the
            detection threshold).
        wcs_or_camera : astropy.wcs.WCS or SkyCamera, optional
            Adds the endpoints' RA and Dec.

        Returns
        -------
        StreakDetection
            Score map, streak table (empty with a :class:`NoDetectionsWarning`
            when nothing is found) and ``p_streak``.

        Raises
        ------
        InputError
            For an image that is not 2-D or a bad ``threshold``.
        """
        prob = self.score_map(image, mask)
        img = np.asarray(image, float)
        if mask is not None:
            img = np.where(np.asarray(mask, bool), np.nan, img)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            table = streaks_from_probability(
                prob,
                img,
                threshold=threshold,
                min_pixels=self.min_pixels,
                merge_angle_deg=self.merge_angle_deg,
                merge_gap_px=self.merge_gap_px,
                wcs_or_camera=wcs_or_camera,
            )
        if len(table) == 0:
            warnings.warn("no streak found", NoDetectionsWarning, stacklevel=2)
        return StreakDetection(prob=prob, table=table, p_streak=float(prob.max(initial=0.0)))


def _moments(xs: np.ndarray, ys: np.ndarray, w: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Second-moment semi-axes ``a >= b`` (pixels, pixelisation included) and major axis."""
    w = w / w.sum()
    cx, cy = np.sum(w * xs), np.sum(w * ys)
    dx, dy = xs - cx, ys - cy
    cov = (
        np.array(
            [[np.sum(w * dx * dx), np.sum(w * dx * dy)], [np.sum(w * dx * dy), np.sum(w * dy * dy)]]
        )
        + np.eye(2) / 12.0
    )
    evals, evecs = np.linalg.eigh(cov)
    return float(np.sqrt(evals[1])), float(np.sqrt(max(evals[0], 0.0))), evecs[:, 1]
