"""Classical star detection: background, thresholding with deblending, centroids, FWHM, flags.

The learned detector (a later issue) plugs into the same interface: a callable
``finder(image, mask=None) -> Table`` registered in :data:`STAR_FINDERS`.
"""

from __future__ import annotations

import abc
import enum
import importlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sep
from astropy.table import Table, vstack

from skysift._validation import check_image
from skysift.detection.background import BackgroundMap, estimate_background
from skysift.errors import DetectionCapWarning, InputError, NoDetectionsWarning

__all__ = [
    "StarFlag",
    "StarFinder",
    "ClassicalStarFinder",
    "STAR_FINDERS",
    "star_finder",
    "detect_stars",
    "median_fwhm",
    "empty_star_table",
    "estimate_saturation",
]

STAR_COLUMNS = (
    ("x", float, "pix"),
    ("y", float, "pix"),
    ("flux", float, ""),
    ("flux_err", float, ""),
    ("fwhm", float, "pix"),
    ("peak", float, ""),
    ("snr", float, ""),
    ("a", float, "pix"),
    ("b", float, "pix"),
    ("theta", float, "rad"),
    ("npix", int, ""),
    ("flags", int, ""),
)


class StarFlag(enum.IntFlag):
    """Bit flags of a detection (column ``flags`` of a star table)."""

    #: A pixel of the source reaches the saturation level.
    SATURATED = 1
    #: The source is within its aperture radius of the border or of masked pixels.
    EDGE = 2
    #: The source was deblended from a larger group (``sep`` OBJ_MERGED).
    BLENDED = 4
    #: The source is elongated (a/b above the finder's ``max_elongation``): a trail, not a star.
    ELONGATED = 8
    #: The source's pixel list was truncated at the image border (``sep`` OBJ_TRUNC).
    TRUNCATED = 16


def empty_star_table() -> Table:
    """Return an empty star table with the full schema (columns and units)."""
    t = Table()
    for name, dtype, unit in STAR_COLUMNS:
        t[name] = np.zeros(0, dtype=dtype)
        if unit:
            t[name].unit = unit
    return t


def estimate_saturation(image: np.ndarray) -> float | None:
    """Guess the saturation level of an image from clipped pixels.

    If at least 3 pixels share the image's maximum value, that value is
    taken as the saturation level (a clipped detector or 8/16-bit file).

    Parameters
    ----------
    image : ndarray, shape (H, W)

    Returns
    -------
    float or None
        The level, or ``None`` if the image shows no clipping.
    """
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return None
    vmax = float(finite.max())
    if np.count_nonzero(finite >= vmax) >= 3:
        return vmax
    return None


class StarFinder(abc.ABC):
    """Base class of every star finder: configure, then call.

    ``finder.find_stars(image, mask=None, background=None)`` (also ``finder(image, mask)``)
    returns the star table of :data:`STAR_COLUMNS`: ``x``, ``y`` (0-based
    pixels), ``flux``, ``flux_err`` (counts), ``snr``, ``fwhm`` (pixels),
    ``peak`` and ``flags`` (:class:`StarFlag`). Subclasses: the classical finder
    here, the U-Net and hybrid finders in :mod:`skysift.stars`.
    """

    @abc.abstractmethod
    def find_stars(
        self,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        background: BackgroundMap | None = None,
    ) -> Table:
        """Detect stars in ``image`` (shape (H, W)); ``mask`` True = not sky."""

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        background: BackgroundMap | None = None,
    ) -> Table:
        """The same as :meth:`find_stars`."""
        return self.find_stars(image, mask, background)


@dataclass
class ClassicalStarFinder(StarFinder):
    """Find stars with a mesh background, a matched filter and multi-threshold deblending.

    The method is SExtractor's (Bertin & Arnouts 1996, A&AS 117, 393,
    §3–§6) as implemented by ``sep`` (Barbary 2016, JOSS 1, 58); centroids
    are refined with the windowed (Gaussian-weighted) centroid of
    SExtractor's ``XWIN_IMAGE``.

    Parameters
    ----------
    threshold_sigma : float, optional
        Detection threshold in units of the local background noise. Default 3.
    min_area : int, optional
        Minimum number of connected pixels above threshold. Default 5.
    deblend_nthresh : int, optional
        Number of deblending sub-thresholds. Default 32.
    deblend_cont : float, optional
        Minimum contrast for deblending. Default 0.005.
    box_size : int, optional
        Background mesh size in pixels. Default 64.
    saturation : float, optional
        Saturation level in image units; ``None`` estimates it with
        :func:`estimate_saturation`.
    max_elongation : float, optional
        a/b above which a source is flagged ELONGATED. Default 3.
    max_objects : int, optional
        Keep at most this many sources (brightest first). Default 20000.

    Examples
    --------
    >>> finder = ClassicalStarFinder(threshold_sigma=5)
    >>> stars = finder(image, mask=mask)  # doctest: +SKIP
    """

    threshold_sigma: float = 3.0
    min_area: int = 5
    deblend_nthresh: int = 32
    deblend_cont: float = 0.005
    box_size: int = 64
    saturation: float | None = None
    max_elongation: float = 3.0
    max_objects: int = 20000

    def __post_init__(self) -> None:
        if not self.threshold_sigma > 0:
            msg = f"threshold_sigma must be > 0, got {self.threshold_sigma}"
            raise InputError(msg)
        if self.min_area < 1:
            msg = f"min_area must be >= 1 pixel, got {self.min_area}"
            raise InputError(msg)

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
            The image (any real dtype; it is converted to float32).
        mask : ndarray of bool, shape (H, W), optional
            ``True`` = not sky / bad pixel; no source is detected there.
        background : BackgroundMap, optional
            A precomputed background; estimated if not given.

        Returns
        -------
        astropy.table.Table
            One row per source, brightest first: ``x``, ``y`` (0-based
            pixels), ``flux`` (background-subtracted sum in a circular
            aperture of radius 1.5 FWHM, image units), ``flux_err``,
            ``fwhm`` (pixels), ``peak`` (above background), ``snr``,
            ``a``, ``b`` (pixels), ``theta`` (radians, counter-clockwise
            from +x), ``npix``, ``flags`` (:class:`StarFlag`). Empty (full
            schema) with a :class:`NoDetectionsWarning` if nothing is found.

        Raises
        ------
        InputError
            If the image is not 2-D or the mask has another shape.
        """
        data, bad = check_image(image, mask, what="star detection")
        if bad.all():
            warnings.warn(
                "every pixel is masked: no star detected", NoDetectionsWarning, stacklevel=2
            )
            return empty_star_table()
        bkg = background or estimate_background(data, bad, box_size=self.box_size)
        sub = data - bkg.level
        sub[bad] = 0.0
        sub = np.ascontiguousarray(sub, dtype=np.float32)
        saturation = self.saturation if self.saturation is not None else estimate_saturation(data)

        sep.set_extract_pixstack(max(300_000, data.size // 4))
        sep.set_sub_object_limit(4096)
        try:
            objs, segmap = sep.extract(
                sub,
                self.threshold_sigma,
                err=bkg.rms,
                mask=bad,
                minarea=self.min_area,
                deblend_nthresh=self.deblend_nthresh,
                deblend_cont=self.deblend_cont,
                segmentation_map=True,
            )
        except Exception as err:  # sep raises plain Exception on buffer overflow
            msg = f"star detection failed: {err} (too many sources; raise threshold_sigma)"
            raise InputError(msg) from err
        if len(objs) == 0:
            warnings.warn("no star detected above threshold", NoDetectionsWarning, stacklevel=2)
            return empty_star_table()

        # Segment ids of the segmentation map are 1 + the object's original index.
        seg_max = np.zeros(len(objs) + 1)
        valid = segmap.ravel() > 0
        np.maximum.at(seg_max, segmap.ravel()[valid], data.ravel()[valid])
        n_found = len(objs)
        keep = np.argsort(-objs["flux"])[: self.max_objects]
        if n_found > self.max_objects:
            warnings.warn(
                f"{n_found} sources above {self.threshold_sigma:g} sigma: kept the "
                f"{self.max_objects} brightest (max_objects; raise threshold_sigma or max_objects)",
                DetectionCapWarning,
                stacklevel=2,
            )
        objs = objs[keep]
        obj_max = seg_max[keep + 1]
        a = np.maximum(objs["a"], 1e-3)
        b = np.maximum(objs["b"], 1e-3)
        x, y = objs["x"].astype(float), objs["y"].astype(float)

        # Half-light radius -> FWHM (exact for a Gaussian: r50 = FWHM / 2).
        rmax = np.clip(6.0 * a, 3.0, 50.0)
        r50, _ = sep.flux_radius(sub, x, y, rmax, 0.5, subpix=5, mask=bad)
        fwhm = np.clip(2.0 * r50, 0.5, None)
        sig = np.clip(fwhm / 2.3548, 0.5, None)
        xw, yw, wflag = sep.winpos(sub, x, y, sig, mask=bad)
        # Windowed centroids are pulled by close neighbours: deblended sources keep
        # sep's barycentre of their own deblended pixels.
        merged = (objs["flag"] & sep.OBJ_MERGED) != 0
        good = (
            (wflag == 0)
            & ~merged
            & np.isfinite(xw)
            & np.isfinite(yw)
            & (np.hypot(xw - x, yw - y) < 2 * fwhm + 1)
        )
        x = np.where(good, xw, x)
        y = np.where(good, yw, y)

        radius = np.clip(1.5 * fwhm, 2.0, 30.0)
        flux, flux_err, aflag = sep.sum_circle(sub, x, y, radius, err=bkg.rms, mask=bad, subpix=5)

        flags = np.zeros(len(objs), dtype=np.int64)
        if saturation is not None:
            flags[obj_max >= 0.97 * saturation] |= StarFlag.SATURATED
        h, w = data.shape
        near_border = (x < radius) | (y < radius) | (x > w - 1 - radius) | (y > h - 1 - radius)
        flags[near_border | ((aflag & sep.APER_HASMASKED) != 0)] |= StarFlag.EDGE
        flags[(objs["flag"] & sep.OBJ_MERGED) != 0] |= StarFlag.BLENDED
        flags[(objs["flag"] & sep.OBJ_TRUNC) != 0] |= StarFlag.TRUNCATED
        flags[(a / b) > self.max_elongation] |= StarFlag.ELONGATED

        columns = {
            "x": x,
            "y": y,
            "flux": flux,
            "flux_err": flux_err,
            "fwhm": fwhm,
            "peak": objs["peak"],
            "snr": np.where(flux_err > 0, flux / np.maximum(flux_err, 1e-12), 0.0),
            "a": a,
            "b": b,
            "theta": objs["theta"],
            "npix": objs["npix"],
            "flags": flags,
        }
        t = Table()
        for name, dtype, unit in STAR_COLUMNS:
            t[name] = np.asarray(columns[name], dtype=dtype)
            if unit:
                t[name].unit = unit
        t = t[np.argsort(-t["flux"])]
        t.meta["background_level"] = bkg.global_level
        t.meta["background_rms"] = bkg.global_rms
        t.meta["saturation"] = saturation
        t.meta["threshold_sigma"] = self.threshold_sigma
        t.meta["n_found"] = int(n_found)
        t.meta["capped"] = bool(n_found > self.max_objects)
        return t


def median_fwhm(stars: Table, *, default: float = 3.0) -> float:
    """The PSF FWHM of a frame from its star table: the median ``fwhm`` of unflagged stars.

    The one rule skysift uses for a frame's PSF FWHM where no Gaussian fit is made
    (aperture radii, the bolide's PSF, evaluation).

    Parameters
    ----------
    stars : astropy.table.Table
        A star finder's table (``fwhm`` in pixels, ``flags``).
    default : float, optional
        Returned when no star qualifies. Default 3 px.

    Returns
    -------
    float
        FWHM in pixels, clipped to [1.5, 10].
    """
    if stars is None or len(stars) == 0 or "fwhm" not in stars.colnames:
        return float(default)
    f = np.asarray(stars["fwhm"], float)
    if "flags" in stars.colnames:
        f = f[np.asarray(stars["flags"]) == 0]
    f = f[np.isfinite(f)]
    return float(np.clip(np.median(f), 1.5, 10.0)) if f.size else float(default)


#: Registry of star finders by name: a factory, or ``"module:attribute"`` naming one in a
#: package above :mod:`skysift.detection` (the learned finders of :mod:`skysift.stars`, which
#: need torch), imported when the finder is first built (like an entry point).
STAR_FINDERS: dict[str, Callable[..., Callable[..., Table]] | str] = {
    "classical": ClassicalStarFinder,
    "unet": "skysift.stars.learned:make_unet_finder",
    "hybrid": "skysift.stars.hybrid:make_hybrid_finder",
    "matched": "skysift.detection.matched:make_matched_finder",
}


def star_finder(method: str = "classical", **kwargs: object) -> Callable[..., Table]:
    """Build the star finder registered under ``method``.

    Parameters
    ----------
    method : str, optional
        A key of :data:`STAR_FINDERS`. Default ``"classical"``.
    **kwargs
        Passed to the finder's factory (``threshold_sigma`` is in background sigma for
        every finder).

    Returns
    -------
    callable
        ``finder(image, mask=None) -> Table``.

    Raises
    ------
    InputError
        If ``method`` is unknown (the message lists the valid names).
    """
    try:
        factory = STAR_FINDERS[method]
    except KeyError:
        msg = f"unknown star detection method {method!r}; valid: {', '.join(sorted(STAR_FINDERS))}"
        raise InputError(msg) from None
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**kwargs)


#: Frames with more pixels than this are searched in tiles (bounded memory);
#: ``SKYSIFT_TILE_PIXELS`` overrides it.
TILE_PIXELS = 16_000_000

#: Overlap of neighbouring tiles, pixels (each detection is kept by the one
#: tile whose core holds it, at least half of this from the tile's inner edges).
TILE_OVERLAP = 128


def tile_pixels() -> int:
    """The pixel count above which :func:`detect_stars` works in tiles.

    Raises
    ------
    InputError
        If ``SKYSIFT_TILE_PIXELS`` is set to something other than a positive integer.
    """
    raw = os.environ.get("SKYSIFT_TILE_PIXELS")
    if raw is None or not raw.strip():
        return TILE_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value <= 0:
        msg = f"SKYSIFT_TILE_PIXELS must be a positive integer, got {raw!r}"
        raise InputError(msg)
    return value


def _tile_edges(n: int, size: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(start, stop, core_start, core_stop)`` of tiles of ``size`` along an axis of ``n``."""
    if n <= size:
        return [(0, n, 0, n)]
    k = int(np.ceil((n - overlap) / (size - overlap)))
    starts = np.linspace(0, n - size, k).round().astype(int)
    out = []
    for i, a in enumerate(starts):
        b = a + size
        lo = 0 if i == 0 else (a + starts[i - 1] + size) // 2
        hi = n if i == k - 1 else (b + starts[i + 1]) // 2
        out.append((int(a), int(b), int(lo), int(hi)))
    return out


def detect_stars(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    method: str = "classical",
    **kwargs: object,
) -> Table:
    """Detect stars with the finder registered under ``method``.

    A frame with more pixels than :func:`tile_pixels` (default 16 million)
    is searched in overlapping square tiles of about that size, one at a
    time, so that memory stays bounded on large DSLR frames: the saturation
    level is estimated once on the whole frame, each detection is kept by
    the tile whose core (the tile less half the 128 px overlap on its inner
    sides) holds it, and the tables are merged brightest first.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    mask : ndarray of bool, shape (H, W), optional
        ``True`` = not sky / bad pixel.
    method : str, optional
        A key of :data:`STAR_FINDERS`. Default ``"classical"``.
    **kwargs
        Passed to the finder's constructor.

    Returns
    -------
    astropy.table.Table
        See :meth:`ClassicalStarFinder.find_stars`; a tiled search adds
        ``meta["tiles"]`` (the number of tiles).

    Raises
    ------
    InputError
        If ``method`` is unknown (the message lists the valid names), or
        ``SKYSIFT_TILE_PIXELS`` is not a positive integer.
    """
    limit = tile_pixels()
    data = np.asarray(image)
    if data.ndim != 2 or data.size <= limit:
        return star_finder(method, **kwargs)(image, mask)
    if kwargs.get("saturation") is None:
        kwargs["saturation"] = estimate_saturation(data)
    finder = star_finder(method, **kwargs)
    side = max(2 * TILE_OVERLAP + 64, int(np.sqrt(limit)))
    h, w = data.shape
    parts = []
    n_tiles = n_found = 0
    capped = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        for y0, y1, cy0, cy1 in _tile_edges(h, side, TILE_OVERLAP):
            for x0, x1, cx0, cx1 in _tile_edges(w, side, TILE_OVERLAP):
                n_tiles += 1
                sub_mask = None if mask is None else mask[y0:y1, x0:x1]
                t = finder(data[y0:y1, x0:x1], sub_mask)
                n_found += int(t.meta.get("n_found", len(t)))
                capped |= bool(t.meta.get("capped", False))
                if not len(t):
                    continue
                t["x"] += x0
                t["y"] += y0
                xr = np.floor(np.asarray(t["x"]) + 0.5)
                yr = np.floor(np.asarray(t["y"]) + 0.5)
                parts.append(t[(xr >= cx0) & (xr < cx1) & (yr >= cy0) & (yr < cy1)])
    if not parts or not sum(len(p) for p in parts):
        warnings.warn("no star detected above threshold", NoDetectionsWarning, stacklevel=2)
        out = empty_star_table()
    else:
        out = vstack(parts, metadata_conflicts="silent")
        out = out[np.argsort(-np.asarray(out["flux"]))]
    out.meta["n_found"] = n_found
    out.meta["capped"] = capped
    out.meta["tiles"] = n_tiles
    out.meta["saturation"] = kwargs["saturation"]
    return out
