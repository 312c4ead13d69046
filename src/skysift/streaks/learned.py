"""Learned streak detection: an image classifier, then a segmenter on the flagged images.

The two-stage method of the Unistellar satellite-streak paper:

1. :class:`StreakImageClassifier` (§3.1, §4.1.1) scores 128x128 windows that
   overlap by 20 pixels, each normalised with eq. 1, ``arcsinh((D - mu) /
   sigma)`` over the window; the image score is the highest window score.
2. :class:`StreakSegmenter` (§3.2, §4.1.2) runs a Cosmic-CoNN-style U-Net on
   overlapping 256x256 windows placed every ``step`` pixels, averages the
   per-pixel probabilities of all windows covering a pixel after discarding
   a ``border``-pixel band at each window edge (kept where the window edge is
   the image edge); ``mode="whole"`` runs the net once on the whole
   (normalised) image instead.
3. :class:`LearnedStreakFinder` joins them: only images the classifier flags
   are segmented (unless ``segment_all``), and the probability map is
   measured by :func:`skysift.streaks.measurement.streaks_from_probability`.

The shipped weights (``streak_classifier``, ``streak_segmenter`` in
:mod:`skysift.learning.weights`) are loaded lazily, at the first call.
Inference uses ONNX Runtime when installed, torch otherwise.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from skysift._validation import check_image
from skysift.errors import InputError, NoDetectionsWarning
from skysift.streaks.detection import StreakDetection
from skysift.streaks.measurement import streaks_from_probability
from skysift.streaks.training_data import normalise_windows

__all__ = [
    "DEFAULT_STEP",
    "StreakImageClassifier",
    "StreakSegmenter",
    "LearnedStreakFinder",
    "window_starts",
]

#: Default step of the segmenter's sliding windows, pixels (chosen from the
#: speed/accuracy trade-off measured by ``skysift evaluate streaks``; see docs/streaks.md).
DEFAULT_STEP = 128


def window_starts(size: int, window: int, step: int) -> list[int]:
    """Start offsets of windows of ``window`` pixels every ``step`` pixels covering ``size``.

    The last window is aligned on the far edge; an axis shorter than the
    window has one start, 0 (the image is padded).

    Raises
    ------
    InputError
        If ``step`` or ``window`` is < 1.
    """
    if step < 1 or window < 1:
        msg = f"window and step must be >= 1 pixel, got window={window}, step={step}"
        raise InputError(msg)
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, step))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


class _Runner:
    """A net behind ONNX Runtime (when installed and ``backend`` allows) or torch."""

    def __init__(self, model: Any, backend: str, num_threads: int | None) -> None:
        # needs torch (the learn extra): imported on use
        from skysift.learning.inference import make_runner

        self.run = make_runner(model, backend, num_threads)
        self.size_multiple = int(getattr(self.run, "size_multiple", 1))

    def logits(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        outs = [
            np.asarray(self.run(np.ascontiguousarray(x[i : i + batch_size], np.float32)))
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def _load(weights: Any) -> Any:
    # torch is the optional learn extra: imported on use
    import torch

    if isinstance(weights, torch.nn.Module):
        return weights.eval()
    # needs torch (the learn extra): imported on use
    from skysift.learning.weights import load_weights

    return load_weights(weights)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


def _pad_min(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
    return img


def _prepare(image: np.ndarray, mask: np.ndarray | None, what: str) -> tuple[np.ndarray, Any]:
    img, bad = check_image(image, mask, what=what, dtype=np.float32)
    bad = bad | ~np.isfinite(img)
    if bad.any():
        img = img.copy()
        img[bad] = np.median(img[~bad]) if (~bad).any() else 0.0
    return img, bad


class StreakImageClassifier:
    """Streak / no-streak score of an image from 128x128 windows (paper §3.1, §4.1.1).

    Configure, then call: ``StreakImageClassifier()(image)`` returns the image
    score in [0, 1] (the highest window score).

    Parameters
    ----------
    weights : str, path or torch.nn.Module, optional
        Registered weights name, a ``.safetensors`` file or a model.
        Default ``"streak_classifier"`` (loaded at the first call).
    overlap : int, optional
        Overlap of neighbouring windows, pixels. Default 20 (§4.1.1).
    threshold : float, optional
        Images scoring at least this are flagged (:meth:`flags`). Default 0.5.
    batch_size : int, optional
        Windows per forward pass. Default 64.
    backend : {"auto", "torch", "onnxruntime"}, optional
        Default "auto" (ONNX Runtime when installed).
    num_threads : int, optional
        CPU threads (default: the backend's default).

    References
    ----------
    Unistellar satellite-streak paper, §3.1 (architecture, eq. 1 normalisation)
    and §4.1.1 (sliding windows, image score).
    """

    def __init__(
        self,
        weights: Any = "streak_classifier",
        *,
        overlap: int = 20,
        threshold: float = 0.5,
        batch_size: int = 64,
        backend: str = "auto",
        num_threads: int | None = None,
    ) -> None:
        if not 0 <= threshold <= 1:
            msg = f"threshold must be in [0, 1], got {threshold}"
            raise InputError(msg)
        self.weights = weights
        self.overlap = int(overlap)
        self.threshold = float(threshold)
        self.batch_size = int(batch_size)
        self.backend = backend
        self.num_threads = num_threads
        self._runner: _Runner | None = None
        self._window = 128

    def _run(self) -> _Runner:
        if self._runner is None:
            model = _load(self.weights)
            self._window = int(getattr(model, "input_size", 128))
            if self.overlap >= self._window:
                msg = f"overlap ({self.overlap}) must be smaller than the window ({self._window})"
                raise InputError(msg)
            self._runner = _Runner(model, self.backend, self.num_threads)
        return self._runner

    @property
    def window(self) -> int:
        """Window side in pixels (the net's input size, 128 for the shipped weights)."""
        self._run()
        return self._window

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """Streak probability of raw ``(N, S, S)`` windows (normalised here), shape (N,)."""
        run = self._run()
        w = np.asarray(windows, np.float32)
        if w.ndim != 3 or w.shape[1:] != (self._window, self._window):
            msg = f"windows must be (N, {self._window}, {self._window}), got shape {w.shape}"
            raise InputError(msg)
        x = normalise_windows(w)[:, None]
        return _sigmoid(run.logits(x, self.batch_size).reshape(-1))

    def window_scores(
        self, image: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores of the sliding windows of an image.

        Parameters
        ----------
        image : ndarray, shape (H, W)
        mask : ndarray of bool, shape (H, W), optional
            ``True`` = bad pixel (replaced by the image median).

        Returns
        -------
        scores : ndarray, shape (N,)
            Streak probability of each window.
        corners : ndarray of int, shape (N, 2)
            ``(y0, x0)`` of each window's first pixel.
        """
        self._run()
        img, _ = _prepare(image, mask, "streak classification")
        s = self._window
        img = _pad_min(img, s)
        step = s - self.overlap
        ys = window_starts(img.shape[0], s, step)
        xs = window_starts(img.shape[1], s, step)
        corners = np.array([(y, x) for y in ys for x in xs], int)
        view = np.lib.stride_tricks.sliding_window_view(img, (s, s))
        windows = view[corners[:, 0], corners[:, 1]]
        return self.score_windows(windows), corners

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> float:
        """Image score in [0, 1]: the highest window score (§4.1.1).

        Raises
        ------
        InputError
            For an image that is not 2-D or weights that cannot be loaded.
        """
        scores, _ = self.window_scores(image, mask)
        return float(scores.max())

    def flags(self, image: np.ndarray, mask: np.ndarray | None = None) -> bool:
        """Whether the image scores at least ``threshold``."""
        return self(image, mask) >= self.threshold


class StreakSegmenter:
    """Per-pixel streak probability from overlapping 256x256 windows (paper §3.2, §4.1.2).

    Input: an ``(H, W)`` image of any size (bad pixels allowed via ``mask``).
    Output of :meth:`__call__`: float32 ``(H, W)`` probability (``1`` =
    streak), 0 at bad pixels.

    Parameters
    ----------
    weights : str, path or torch.nn.Module, optional
        Default ``"streak_segmenter"`` (loaded at the first call).
    window : int, optional
        Window side in pixels, a multiple of the net's ``size_multiple``. Default 256.
    step : int, optional
        Distance between window starts, pixels; capped at ``window - 2 *
        border`` so that every pixel is seen. Default :data:`DEFAULT_STEP`
        (the paper uses 10; see docs/streaks.md for the trade-off).
    border : int, optional
        Band at each window edge whose pixels are discarded, pixels (kept
        where the window edge is the image edge). Default 10 (§4.1.2).
    mode : {"sliding", "whole"}, optional
        ``"whole"``: one pass over the whole image normalised as one window.
        Default "sliding".
    batch_size : int, optional
        Windows per forward pass. Default 4.
    backend : {"auto", "torch", "onnxruntime"}, optional
    num_threads : int, optional

    Raises
    ------
    InputError
        For a bad ``mode``, ``step``, ``window`` or ``border``.

    References
    ----------
    Unistellar satellite-streak paper, §3.2 (Cosmic-CoNN-style U-Net) and
    §4.1.2 (overlapping windows, averaging, border band).
    """

    def __init__(
        self,
        weights: Any = "streak_segmenter",
        *,
        window: int = 256,
        step: int = DEFAULT_STEP,
        border: int = 10,
        mode: str = "sliding",
        batch_size: int = 4,
        backend: str = "auto",
        num_threads: int | None = None,
    ) -> None:
        if mode not in ("sliding", "whole"):
            msg = f"mode must be 'sliding' or 'whole', got {mode!r}"
            raise InputError(msg)
        if step < 1 or window < 8 or not 0 <= 2 * border < window:
            msg = (
                f"need step >= 1, window >= 8 and 0 <= 2 * border < window; got step={step}, "
                f"window={window}, border={border}"
            )
            raise InputError(msg)
        self.weights = weights
        self.window, self.step, self.border = int(window), int(step), int(border)
        self.mode = mode
        self.batch_size = int(batch_size)
        self.backend = backend
        self.num_threads = num_threads
        self._runner: _Runner | None = None

    def _run(self) -> _Runner:
        if self._runner is None:
            self._runner = _Runner(_load(self.weights), self.backend, self.num_threads)
            if self.window % self._runner.size_multiple:
                msg = (
                    f"window ({self.window}) must be a multiple of the net's size_multiple "
                    f"({self._runner.size_multiple})"
                )
                raise InputError(msg)
        return self._runner

    def replace(self, **changes: Any) -> StreakSegmenter:
        """A copy with other settings (``step``, ``mode``, ...) sharing the loaded net."""
        params = {
            "weights": self.weights, "window": self.window, "step": self.step,
            "border": self.border, "mode": self.mode, "batch_size": self.batch_size,
            "backend": self.backend, "num_threads": self.num_threads,
        }  # fmt: skip
        unknown = set(changes) - set(params)
        if unknown:
            msg = f"unknown StreakSegmenter setting(s) {sorted(unknown)}; valid: {sorted(params)}"
            raise InputError(msg)
        new = StreakSegmenter(**{**params, **changes})
        if "weights" not in changes and "backend" not in changes and "num_threads" not in changes:
            new._runner = self._runner
        return new

    def n_windows(self, shape: tuple[int, int]) -> int:
        """Windows run on an image of ``shape`` (1 in ``"whole"`` mode)."""
        if self.mode == "whole":
            return 1
        step = self.effective_step
        return len(window_starts(shape[0], self.window, step)) * len(
            window_starts(shape[1], self.window, step)
        )

    @property
    def effective_step(self) -> int:
        """``min(step, window - 2 * border)``: a larger step would leave pixels unseen."""
        return min(self.step, self.window - 2 * self.border)

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Probability map, float32 ``(H, W)``.

        Raises
        ------
        InputError
            For an image that is not 2-D or weights that cannot be loaded.
        """
        run = self._run()
        img, bad = _prepare(image, mask, "streak segmentation")
        h, w = img.shape
        if self.mode == "whole":
            m = run.size_multiple
            hp, wp = -(-h // m) * m, -(-w // m) * m
            mode = "reflect" if min(h, w) > 1 else "edge"
            pad = np.pad(img, ((0, hp - h), (0, wp - w)), mode=mode)
            x = normalise_windows(pad)[None, None]
            prob = _sigmoid(run.logits(x, 1)[0, 0, :h, :w])
        else:
            prob = self._sliding(run, img)
        prob[bad] = 0.0
        return prob

    def _sliding(self, run: _Runner, img: np.ndarray) -> np.ndarray:
        s, b = self.window, self.border
        h0, w0 = img.shape
        img = _pad_min(img, s)
        h, w = img.shape
        step = self.effective_step
        ys, xs = window_starts(h, s, step), window_starts(w, s, step)
        corners = [(y, x) for y in ys for x in xs]
        acc = np.zeros((h, w), np.float64)
        cnt = np.zeros((h, w), np.float64)
        view = np.lib.stride_tricks.sliding_window_view(img, (s, s))
        for k in range(0, len(corners), self.batch_size):
            chunk = corners[k : k + self.batch_size]
            x = normalise_windows(np.stack([view[y, xx] for y, xx in chunk]))[:, None]
            p = _sigmoid(run.logits(x, len(chunk))[:, 0])
            for (y, xx), pk in zip(chunk, p, strict=True):
                t = b if y > 0 else 0
                bo = b if y + s < h else 0
                le = b if xx > 0 else 0
                r = b if xx + s < w else 0
                acc[y + t : y + s - bo, xx + le : xx + s - r] += pk[t : s - bo, le : s - r]
                cnt[y + t : y + s - bo, xx + le : xx + s - r] += 1.0
        return (acc / np.maximum(cnt, 1.0))[:h0, :w0].astype(np.float32)


class LearnedStreakFinder:
    """Classify, then segment the flagged images and measure their streaks (paper §4.1).

    Configure, then call: ``LearnedStreakFinder()(image)`` returns a
    :class:`~skysift.streaks.detection.StreakDetection` (probability map,
    streak table, image score).

    Parameters
    ----------
    classifier : StreakImageClassifier, optional
        Default: the shipped weights.
    segmenter : StreakSegmenter, optional
        Default: the shipped weights at :data:`DEFAULT_STEP`.
    classify_threshold : float, optional
        Images scoring below this are not segmented (all-zero map, empty
        table). Default 0.5.
    segment_all : bool, optional
        Segment every image, whatever its score. Default False.
    min_pixels, merge_angle_deg, merge_gap_px : optional
        Passed to :func:`~skysift.streaks.measurement.streaks_from_probability`.
        Defaults 20, 3 and 30.
    min_length : float, optional
        Streaks shorter than this are dropped, pixels (star residuals;
        the nets were trained on streaks of >= 100 mask pixels). Default 15.
    min_snr : float, optional
        Streaks with a lower ``snr`` (summed background-subtracted signal over
        its noise) are dropped (dark edges of structures). Default 5.
    """

    def __init__(
        self,
        classifier: StreakImageClassifier | None = None,
        segmenter: StreakSegmenter | None = None,
        *,
        classify_threshold: float = 0.5,
        segment_all: bool = False,
        min_pixels: int = 20,
        merge_angle_deg: float = 3.0,
        merge_gap_px: float = 30.0,
        min_length: float = 15.0,
        min_snr: float = 5.0,
    ) -> None:
        self.classifier = classifier or StreakImageClassifier()
        self.segmenter = segmenter or StreakSegmenter()
        self.classify_threshold = float(classify_threshold)
        self.segment_all = bool(segment_all)
        self.min_pixels = int(min_pixels)
        self.merge_angle_deg = float(merge_angle_deg)
        self.merge_gap_px = float(merge_gap_px)
        self.min_length = float(min_length)
        self.min_snr = float(min_snr)

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
        mask : ndarray of bool, shape (H, W), optional
            ``True`` = bad pixel.
        threshold : float, optional
            Probability threshold of streak pixels, in (0, 1]. Default 0.5.
        wcs_or_camera : astropy.wcs.WCS or SkyCamera, optional
            Adds the endpoints' RA and Dec.

        Returns
        -------
        StreakDetection
            ``p_streak`` is the classifier's image score. Empty table with a
            :class:`NoDetectionsWarning` when nothing is found.

        Raises
        ------
        InputError
            For an image that is not 2-D, a bad threshold or unloadable weights.
        """
        img = np.asarray(image, float)
        p_img = self.classifier(img, mask)
        if self.segment_all or p_img >= self.classify_threshold:
            prob = self.segmenter(img, mask)
        else:
            prob = np.zeros(img.shape, np.float32)
        data = img if mask is None else np.where(np.asarray(mask, bool), np.nan, img)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            table = streaks_from_probability(
                prob,
                data,
                threshold=threshold,
                min_pixels=self.min_pixels,
                merge_angle_deg=self.merge_angle_deg,
                merge_gap_px=self.merge_gap_px,
                wcs_or_camera=wcs_or_camera,
            )
        if len(table):
            snr = np.nan_to_num(np.asarray(table["snr"], float), nan=np.inf)
            table = table[(np.asarray(table["length"]) >= self.min_length) & (snr >= self.min_snr)]
        if len(table) == 0:
            warnings.warn("no streak found", NoDetectionsWarning, stacklevel=2)
        return StreakDetection(prob=prob, table=table, p_streak=float(p_img))
