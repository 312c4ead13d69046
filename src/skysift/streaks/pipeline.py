"""Streak pipeline: find satellite and debris streaks in one frame or a batch of files.

Methods: ``"learned"`` (default; the classifier + segmenter of the Unistellar
satellite-streak paper, :class:`skysift.streaks.learned.LearnedStreakFinder`;
needs the ``learn`` extra), ``"classical"`` (no learning,
:class:`skysift.streaks.detection.ClassicalStreakFinder`) and ``"hough"``
(probabilistic Hough lines, :class:`skysift.streaks.hough.HoughStreakFinder`).
"""

from __future__ import annotations

import logging
import numbers
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from astropy.io import fits
from astropy.table import Table
from tqdm.auto import tqdm

from skysift.detection.masks import scene_mask
from skysift.detection.stars import detect_stars, median_fwhm
from skysift.errors import InputError, NoDetectionsWarning
from skysift.io import read_frame
from skysift.io.frame import Frame
from skysift.outputs.files import (
    atomic_path,
    clean_stale_temps,
    output_stem,
    output_stems,
    sha256_file,
    write_table,
)
from skysift.streaks.detection import ClassicalStreakFinder, StreakDetection
from skysift.streaks.hough import HoughStreakFinder
from skysift.streaks.learned import LearnedStreakFinder, StreakSegmenter
from skysift.streaks.linking import paint_lines
from skysift.streaks.measurement import streaks_from_probability
from skysift.streaks.radon import RadonStreakFinder

__all__ = [
    "RadonPipelineFinder",
    "StreakResult",
    "find_streaks",
    "run_streaks",
    "streaks_to_files",
    "make_streak_finder",
    "output_stem",
    "output_stems",
    "STREAK_METHODS",
]

STREAK_METHODS = ("learned", "classical", "hough", "radon")
DEFAULT_METHOD = "learned"
_TABLE_COLUMNS = ["x1", "y1", "x2", "y2", "length", "angle", "width", "flux", "snr", "score"]
_SKY = ["ra1", "dec1", "ra2", "dec2"]
_IMAGE_SUFFIXES = {".fits", ".fit", ".fts", ".fz", ".gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}


@dataclass
class StreakResult:
    """Streaks of one frame.

    Attributes
    ----------
    prob : ndarray, shape (H, W), float32
        Streak score (probability) per pixel in [0, 1].
    table : astropy.table.Table
        One row per streak (see
        :func:`skysift.streaks.measurement.streaks_from_probability`).
    p_streak : float
        Image-level streak score in [0, 1] (learned: the classifier's image
        score; classical and hough: the largest pixel score).
    """

    prob: np.ndarray
    table: Table
    p_streak: float


def _check_method(method: str) -> None:
    if method not in STREAK_METHODS:
        msg = f"method must be one of {list(STREAK_METHODS)}, got {method!r}"
        raise InputError(msg)


def make_streak_finder(
    method: str = DEFAULT_METHOD,
    *,
    segment_all: bool = False,
    step: int | None = None,
) -> Callable[..., StreakDetection]:
    """The streak finder of ``method``, configured (weights load at the first call).

    Parameters
    ----------
    method : {"learned", "classical", "hough", "radon"}, optional
        Default "learned". ``"radon"`` is the matched-filter line detector
        (:class:`skysift.streaks.radon.RadonStreakFinder`).
    segment_all : bool, optional
        Learned method: segment every image, not only those the classifier
        flags. Default False.
    step : int, optional
        Learned method: step of the segmenter's windows, pixels (default
        :data:`skysift.streaks.learned.DEFAULT_STEP`).

    Returns
    -------
    callable
        ``finder(image, mask, threshold=..., wcs_or_camera=...) -> StreakDetection``.

    Raises
    ------
    InputError
        For an unknown ``method``, or ``"learned"`` without torch installed.
    """
    _check_method(method)
    if method == "radon":
        return RadonPipelineFinder()
    if method == "classical":
        return ClassicalStreakFinder()
    if method == "hough":
        return HoughStreakFinder()
    try:
        import torch  # noqa: F401  (the optional learn extra: checked on use)
    except ImportError as exc:  # torch missing
        msg = f"method 'learned' needs the learn extra (pip install 'skysift[learn]'): {exc}"
        raise InputError(msg) from exc
    seg = StreakSegmenter() if step is None else StreakSegmenter(step=int(step))
    return LearnedStreakFinder(segmenter=seg, segment_all=segment_all)


class RadonPipelineFinder:
    """The Radon matched-filter detector behind the pipeline's finder interface.

    Each line the detector finds is painted as a capsule whose pixel score is
    ``significance / (significance + threshold)`` (0.5 at the detection
    threshold, like the classical finder's score), then measured by
    :func:`~skysift.streaks.measurement.streaks_from_probability` so that every
    method writes the same columns.

    Parameters
    ----------
    psf_fwhm : float, optional
        PSF FWHM in pixels; default: measured on each image's stars
        (:func:`skysift.detection.stars.median_fwhm` of the classical finder's
        detections above 5 sigma; 2.5 px with fewer than 5 stars).
    mask_sky : bool, optional
        Add :func:`skysift.detection.masks.scene_mask` (the dark surround of a
        fisheye's lens circle, the horizon, glare, captions; elongated
        saturated features such as a bright streak are kept) to each frame's
        own mask: the glow and vignetting along a lens circle or a horizon
        otherwise line up into 6-8 sigma lines (MAGIC all-sky frames). Default
        True; about 0.3-1.2 s per megapixel frame.
    **kwargs
        Passed to :class:`~skysift.streaks.radon.RadonStreakFinder`
        (``false_alarm_rate``, ...).
    """

    def __init__(
        self, psf_fwhm: float | None = None, *, mask_sky: bool = True, **kwargs: Any
    ) -> None:
        self.psf_fwhm = psf_fwhm
        self.mask_sky = bool(mask_sky)
        self.kwargs = kwargs

    def _psf_fwhm(self, image: np.ndarray, mask: np.ndarray | None) -> float:
        if self.psf_fwhm is not None:
            return float(self.psf_fwhm)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            try:
                stars = detect_stars(image, mask, threshold_sigma=5.0)
            except InputError:
                return 2.5
        return median_fwhm(stars, default=2.5) if len(stars) >= 5 else 2.5

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        *,
        threshold: float = 0.5,
        wcs_or_camera: Any = None,
    ) -> StreakDetection:
        """Find the streaks of ``image`` (shape (H, W)); ``mask`` True = bad pixel."""
        if self.mask_sky and np.ndim(image) == 2:
            sky = scene_mask(np.asarray(image, np.float32)).mask
            if not sky.all():
                mask = sky if mask is None else (np.asarray(mask, bool) | sky)
        finder = RadonStreakFinder(psf_fwhm=self._psf_fwhm(image, mask), **self.kwargs)
        res = finder(image, mask)
        lines = res.lines
        sig = paint_lines(image.shape, lines, scores=True) if len(lines) else None
        if sig is None:
            prob = np.zeros(image.shape, np.float32)
        else:
            inside = paint_lines(image.shape, lines)
            thr = float(res.threshold)
            prob = np.where(inside, sig / (sig + thr), 0.0).astype(np.float32)
        table = streaks_from_probability(
            prob, image, threshold=threshold, wcs_or_camera=wcs_or_camera
        )
        p = float(res.statistic / (res.statistic + float(res.threshold)))
        return StreakDetection(prob=prob, table=table, p_streak=p)


def find_streaks(
    frame_or_path: Frame | str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    threshold: float = 0.5,
    segment_all: bool = False,
    finder: Callable[..., StreakDetection] | None = None,
) -> StreakResult:
    """Find the streaks of one frame.

    Parameters
    ----------
    frame_or_path : Frame or path
        A frame, or an image file read with :func:`skysift.io.read_frame`.
    method : {"learned", "classical", "hough", "radon"}, optional
        The streak finder (see :func:`make_streak_finder`). Default "learned".
    threshold : float, optional
        Probability threshold of the streak masks, in (0, 1]. Default 0.5.
    segment_all : bool, optional
        Learned method: segment the frame even when the classifier does not
        flag it. Default False.
    finder : callable, optional
        A finder made by :func:`make_streak_finder` (reused across frames);
        overrides ``method`` and ``segment_all``.

    Returns
    -------
    StreakResult
        With RA/Dec columns when the frame has a WCS in ``frame.meta["wcs"]``;
        an empty table comes with a :class:`NoDetectionsWarning`.

    Raises
    ------
    InputError
        For an unreadable file (one line naming it) or an unknown ``method``.
    """
    if finder is None:
        finder = make_streak_finder(method, segment_all=segment_all)
    frame = frame_or_path if isinstance(frame_or_path, Frame) else read_frame(frame_or_path)
    wcs = frame.meta.get("wcs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        d = finder(frame.data, frame.mask, threshold=threshold, wcs_or_camera=wcs)
    if len(d.table) == 0:
        warnings.warn(f"{frame.name}: no streak found", NoDetectionsWarning, stacklevel=2)
    return StreakResult(prob=d.prob, table=d.table, p_streak=d.p_streak)


def _params(method: str, threshold: float, segment_all: bool) -> dict[str, Any]:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        msg = f"threshold must be a number in (0, 1], got {threshold!r}"
        raise InputError(msg)
    if not 0.0 < float(threshold) <= 1.0:
        msg = f"threshold must be in (0, 1], got {threshold!r}"
        raise InputError(msg)
    return {"method": method, "threshold": float(threshold), "segment_all": bool(segment_all)}


def streaks_to_files(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    threshold: float = 0.5,
    segment_all: bool = False,
    finder: Callable[..., StreakDetection] | None = None,
    stem: str | None = None,
    wcs_or_camera: Any = None,
) -> dict[str, Path]:
    """Find the streaks of one image file and write its three files, as :func:`run_streaks` does.

    The batch layer's unit of work: ``STEM.streaks.ecsv`` (with ``p_streak``,
    ``input``, ``input_sha256`` and ``params`` in its meta), ``STEM.prob.fits``
    and ``STEM.mask.png`` in ``out_dir``, byte for byte what :func:`run_streaks`
    writes for the same input, stem and parameters.

    Parameters
    ----------
    path : path
        An image file (read with :func:`skysift.io.read_frame`).
    out_dir : path
        Output folder (created).
    method, threshold, segment_all
        See :func:`find_streaks`.
    finder : callable, optional
        A finder made by :func:`make_streak_finder` for ``method`` and
        ``segment_all`` (reused across images: its weights load once).
    stem : str, optional
        Stem of the files; default :func:`output_stem` of ``path``.
    wcs_or_camera : WCS or camera model, optional
        Sky positions of the streak ends (``ra1, dec1, ra2, dec2``) from this
        calibration instead of the file's own WCS (a camera calibrated once
        for a night).

    Returns
    -------
    dict of str to Path
        ``{"streaks": ..., "prob": ..., "mask": ...}``.

    Raises
    ------
    InputError
        For an unreadable file (one line naming it), an unknown ``method`` or
        ``threshold`` not in (0, 1].
    """
    params = _params(method, threshold, segment_all)
    if finder is None:
        finder = make_streak_finder(method, segment_all=segment_all)
    try:
        digest = sha256_file(path)
    except OSError:
        digest = ""  # unreadable: read_frame says why in one line
    frame = read_frame(path)
    if wcs_or_camera is not None:
        frame.meta["wcs"] = wcs_or_camera
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        res = find_streaks(frame, threshold=threshold, finder=finder)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = _outputs(out, output_stem(path) if stem is None else stem)
    provenance = {"input": str(path), "input_sha256": digest, "params": params}
    _write_outputs(res, paths, threshold, provenance)
    return dict(zip(("streaks", "prob", "mask"), paths, strict=True))


def _outputs(out_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    return (
        out_dir / f"{stem}.streaks.ecsv",
        out_dir / f"{stem}.prob.fits",
        out_dir / f"{stem}.mask.png",
    )


def _reusable(paths: tuple[Path, Path, Path], digest: str, params: dict[str, Any]) -> Table | None:
    """The stored table of an earlier result of the same input and parameters, else None."""
    if not all(q.is_file() for q in paths):
        return None
    try:
        t = Table.read(paths[0], format="ascii.ecsv")
    except Exception:  # noqa: BLE001 - a damaged result is recomputed, whatever the parser says
        return None
    if t.meta.get("input_sha256") != digest or t.meta.get("params") != params:
        return None
    return t


def _write_outputs(
    res: StreakResult,
    paths: tuple[Path, Path, Path],
    threshold: float,
    provenance: dict[str, Any] | None = None,
) -> None:

    ecsv, prob_path, mask_path = paths
    cols = _TABLE_COLUMNS + [c for c in _SKY if c in res.table.colnames]
    table = res.table[cols]
    table.meta["p_streak"] = res.p_streak
    table.meta.update(provenance or {})
    with atomic_path(prob_path) as tmp:
        fits.PrimaryHDU(res.prob.astype(np.float32)).writeto(tmp, overwrite=True)
    mask = np.where(res.prob >= threshold, 255, 0).astype(np.uint8)
    with atomic_path(mask_path) as tmp:
        if not cv2.imwrite(str(tmp.with_suffix(".png")), mask):
            msg = f"{mask_path}: cannot write the PNG mask"
            raise InputError(msg)
        os.replace(tmp.with_suffix(".png"), tmp)
    write_table(table, ecsv)  # last: its presence marks a complete result


def run_streaks(
    inputs: str | os.PathLike[str] | list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    threshold: float = 0.5,
    segment_all: bool = False,
    resume: bool = True,
    progress: bool | None = None,
    on_image: Callable[[int, int, Path], None] | None = None,
) -> Table:
    """Find streaks in many images and write the results.

    For each image ``STEM``: ``STEM.streaks.ecsv`` (``x1, y1, x2, y2, length,
    angle, width, flux, snr, score`` and ``ra1, dec1, ra2, dec2`` when the
    frame has a WCS; in its meta ``p_streak``, the input's path and SHA-256
    ``input_sha256`` and the ``params`` it was found with), ``STEM.prob.fits``
    (float32, the image shape) and ``STEM.mask.png`` (uint8, 255 = streak);
    then ``summary.ecsv`` (``file, p_streak, n_streaks, error, stem``).
    ``STEM`` is the input's stem, made unique among the run's inputs by
    :func:`output_stems` (``x.fits`` and ``x.png`` -> ``x.fits``, ``x.png``).

    Parameters
    ----------
    inputs : path or list of paths
        Image files, or a folder (its image files, sorted).
    out_dir : path
        Output folder (created).
    method, threshold, segment_all
        See :func:`find_streaks`.
    resume : bool, optional
        Reuse an image's earlier result when its three outputs exist and were
        made from the same input content (SHA-256) with the same ``method``,
        ``threshold`` and ``segment_all``; any other image is searched again
        and its outputs replaced. Default True.
    progress : bool, optional
        Show a tqdm progress bar. Default: shown unless the ``skysift`` logger
        is set above INFO (as ``skysift --quiet`` does).
    on_image : callable, optional
        ``on_image(i, n, path)``, called before image ``i`` (0-based) of ``n``.

    Returns
    -------
    astropy.table.Table
        The summary; an unreadable image has ``p_streak`` NaN,
        ``n_streaks`` -1 and its one-line error in ``error``.

    Raises
    ------
    InputError
        If ``inputs`` names no image or an unknown ``method``, or ``threshold``
        is not in (0, 1].
    """

    finder = make_streak_finder(method, segment_all=segment_all)
    params = _params(method, threshold, segment_all)
    if isinstance(inputs, str | os.PathLike):
        p = Path(inputs)
        if p.is_dir():
            files = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES
            )
        else:
            files = [p]
    else:
        files = [Path(f) for f in inputs]
    if not files:
        msg = f"{inputs}: no image files to search for streaks"
        raise InputError(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out)  # left by a killed run
    stems = output_stems(files)
    rows = []
    if progress is None:
        progress = logging.getLogger("skysift").level <= logging.INFO
    bar = tqdm(files, desc="streaks", unit="image", disable=not progress)
    for i, (path, stem) in enumerate(zip(bar, stems, strict=True)):
        if on_image is not None:
            on_image(i, len(files), path)
        paths = _outputs(out, stem)
        try:
            digest = sha256_file(path)
        except OSError:
            digest = ""  # unreadable: find_streaks says why in one line
        t = _reusable(paths, digest, params) if resume and digest else None
        if t is not None:
            rows.append((str(path), float(t.meta.get("p_streak", np.nan)), len(t), "", stem))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoDetectionsWarning)
                res = find_streaks(path, threshold=threshold, finder=finder)
        except InputError as err:
            rows.append((str(path), np.nan, -1, str(err).splitlines()[0], stem))
            continue
        provenance = {"input": str(path), "input_sha256": digest, "params": params}
        _write_outputs(res, paths, threshold, provenance)
        rows.append((str(path), res.p_streak, len(res.table), "", stem))
    summary = Table(
        rows=rows or None,
        names=["file", "p_streak", "n_streaks", "error", "stem"],
        dtype=[str, float, int, str, str],
    )
    write_table(summary, out / "summary.ecsv")
    return summary
