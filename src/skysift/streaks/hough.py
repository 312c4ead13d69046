"""Streak detection without learning, second baseline: probabilistic Hough lines.

The pixels of the matched-filtered significance map above a low threshold
(the same map as :class:`skysift.streaks.detection.ClassicalStreakFinder`),
less the round star cores, are searched for straight line segments with
:func:`skimage.transform.probabilistic_hough_line` (Matas, Galambos &
Kittler 2000, "Robust detection of lines using the progressive probabilistic
Hough transform", CVIU 78, 119). Each segment is kept when its pixels are
significant as a whole (``sum(z) / sqrt(n) >= min_snr``, ``z`` the
unsmoothed noise-normalised pixels); the thresholded pixels within
``half_width`` pixels of a kept segment get the score ``zs / (zs +
threshold)`` (0.5 at the threshold), the others 0. Unlike the classical
finder, the Hough transform joins a streak broken into pieces by noise or
by varying brightness, and is blind to curved shapes.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from skimage.transform import probabilistic_hough_line

from skysift.errors import InputError
from skysift.streaks.detection import ClassicalStreakFinder

__all__ = ["HoughStreakFinder"]


class HoughStreakFinder(ClassicalStreakFinder):
    """Find satellite and debris streaks as straight lines of significant pixels.

    Configure, then call: ``HoughStreakFinder()(image)`` returns a
    :class:`~skysift.streaks.detection.StreakDetection` (score map, streak
    table, image score); :meth:`score_map` gives the per-pixel score alone.

    Parameters
    ----------
    threshold : float, optional
        Threshold of the smoothed significance map, in units of its noise. Default 2.
    line_length : int, optional
        Shortest segment, pixels. Default 30.
    line_gap : int, optional
        Largest gap bridged inside one segment, pixels. Default 6.
    hough_threshold : int, optional
        Accumulator threshold (votes) of the Hough transform. Default 15.
    half_width : int, optional
        Thresholded pixels within this distance of a segment are scored,
        pixels. Default 3.
    min_snr : float, optional
        Smallest summed significance of a segment's pixels. Default 8.
    min_component : int, optional
        Thresholded connected pieces smaller than this are dropped before
        the transform (noise), pixels. Default 6.
    seed : int, optional
        Seed of the transform's random pixel order. Default 0.
    **kwargs
        Other :class:`~skysift.streaks.detection.ClassicalStreakFinder`
        parameters (``smooth_fwhm``, ``star_threshold``, ``box_size`` ...).

    Raises
    ------
    InputError
        For a non-positive ``line_length``, ``hough_threshold`` or ``half_width``.

    References
    ----------
    Matas, Galambos & Kittler 2000, CVIU 78, 119 (progressive probabilistic
    Hough transform); scikit-image ``probabilistic_hough_line``.
    """

    def __init__(
        self,
        *,
        threshold: float = 2.0,
        line_length: int = 30,
        line_gap: int = 6,
        hough_threshold: int = 15,
        half_width: int = 3,
        min_snr: float = 8.0,
        min_component: int = 6,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(threshold=threshold, min_snr=min_snr, **kwargs)
        for name, value in (
            ("line_length", line_length),
            ("hough_threshold", hough_threshold),
            ("half_width", half_width),
        ):
            if not value > 0:
                msg = f"{name} must be > 0, got {value}"
                raise InputError(msg)
        self.line_length = int(line_length)
        self.line_gap = int(line_gap)
        self.hough_threshold = int(hough_threshold)
        self.half_width = int(half_width)
        self.min_component = int(min_component)
        self.seed = int(seed)

    def score_map(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Per-pixel streak score in [0, 1], shape (H, W), float32 (0.5 at the threshold).

        ``mask``: ``True`` = bad pixel, ignored.
        """

        z, zs, _ = self.significance(image, mask)
        binary = zs >= self.threshold
        labels, n = ndimage.label(binary, structure=np.ones((3, 3), bool))
        prob = np.zeros(z.shape, np.float32)
        if n == 0:
            return prob
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        binary &= sizes[labels] >= self.min_component
        binary &= ~self._star_cores(zs, labels)
        lines = probabilistic_hough_line(
            binary,
            threshold=self.hough_threshold,
            line_length=self.line_length,
            line_gap=self.line_gap,
            rng=self.seed,
        )
        band = np.zeros(z.shape, np.uint8)
        for (x0, y0), (x1, y1) in lines:
            band[:] = 0
            cv2.line(band, (int(x0), int(y0)), (int(x1), int(y1)), 1, 2 * self.half_width + 1)
            sel = (band > 0) & binary
            v = z[sel]
            if v.size < self.min_pixels or float(v.sum() / np.sqrt(v.size)) < self.min_snr:
                continue
            s = zs[sel]
            prob[sel] = np.maximum(prob[sel], (s / (s + self.threshold)).astype(np.float32))
        return prob
