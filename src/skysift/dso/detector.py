"""Learned DSO detector: a small U-Net trained on simulated DSOs composited on real star fields.

Three output channels (multi-label segmentation): ``galaxy`` (Sérsic
profiles, :func:`skysift.simulation.sources.render_sersic`), ``nebula``
(emission blobs, shells and arcs, dark nebulae) and ``cluster`` (open
clusters of resolved stars, globular clusters: Plummer glow plus stars).

The detector works at a fixed **working scale**: a frame is block-averaged by
the integer factor that brings its long side to at most :data:`WORK_SIDE`
pixels (a 1080 x 1920 Seestar frame by 8, to 135 x 240), so a whole frame
costs one small forward pass. Composites (:func:`make_composite`) are made at
that scale: a square cut of a binned real star field, 0-2 injected objects
at SNR 4-100 (noise of the truth ellipse as in :mod:`skysift.dso.visibility`),
then light-pollution gradients, blotchy colour (chroma) noise, a random
display stretch with 8-bit-like quantisation, or a background clipped to
black as processed JPEG/PNG outputs have. The truth mask is the object's
ellipse. Detections are the connected regions of probability above a
threshold (:func:`detect`); :func:`detect_frame` runs the whole chain on a
full-resolution frame and returns detections in its pixel frame.

Saliency maps are in :mod:`skysift.dso.saliency`; training in
:mod:`skysift.dso.train`; evaluation in :mod:`skysift.dso.evaluate`.

Status: experimental. The shipped weights (33 CPU-minutes of training in
three phases) localise bright compact objects but do not separate the
classes (held-out galaxy F1 0.0, nebula 0.41-0.49, cluster 0.45-0.48, median
over held-out backgrounds; the model card holds the numbers), so
:func:`skysift.dso.run_dso` runs the detector only when asked
(``detector="dso_unet"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from scipy import ndimage

from skysift.errors import InputError
from skysift.simulation.sources import render_sersic

__all__ = [
    "CLASSES",
    "add_detections",
    "DETECTOR_NAME",
    "WEIGHTS_DIR",
    "WORK_SIDE",
    "batch_source",
    "build_detector",
    "detect",
    "detect_frame",
    "downsample",
    "evaluate_dso",
    "load_detector",
    "make_composite",
    "match_detections",
    "random_cut",
    "normalise",
    "occlusion_saliency",
    "probabilities",
    "work_factor",
]

#: Output channels of the detector, in order.
CLASSES = ("galaxy", "nebula", "cluster")
#: Long side of the working-scale image the detector sees, pixels.
WORK_SIDE = 256
#: Folder of the shipped detector weights and their cards.
WEIGHTS_DIR = Path(__file__).parent / "weights"
#: Stem of the shipped weights in :data:`WEIGHTS_DIR`.
DETECTOR_NAME = "dso_unet"


def _rng(rng: Any) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_2d(image: Any, what: str = "image") -> np.ndarray:
    arr = np.asarray(image, np.float32)
    if arr.ndim != 2 or min(arr.shape) < 8:
        msg = f"{what} must be 2-D (H, W) and at least 8 x 8, got shape {np.shape(image)}"
        raise InputError(msg)
    return arr


def normalise(image: np.ndarray) -> np.ndarray:
    """Robust normalisation: ``arcsinh((image - median) / s)``, float32.

    ``s = max(3 MAD, 0.02 (p99.9 - median), 1e-3)``: the second floor keeps
    images whose background was clipped to black (MAD = 0) from saturating.

    Parameters
    ----------
    image : ndarray, shape (H, W)

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    img = np.asarray(image, np.float32)
    med = float(np.median(img))
    mad = 1.4826 * float(np.median(np.abs(img - med)))
    hi = float(np.percentile(img, 99.9))
    s = max(3.0 * mad, 0.02 * (hi - med), 1e-3)
    return np.arcsinh((img - med) / s).astype(np.float32)


def work_factor(shape: tuple[int, ...], work_side: int = WORK_SIDE) -> int:
    """Integer block-averaging factor that brings the long side to at most ``work_side``."""
    return max(1, int(np.ceil(max(shape[:2]) / float(work_side))))


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Block mean by an integer ``factor`` (edge rows/columns that do not fill a block are dropped).

    Parameters
    ----------
    image : ndarray, shape (H, W)
    factor : int
        >= 1.

    Returns
    -------
    ndarray, shape (H // factor, W // factor), float32

    Raises
    ------
    InputError
        If ``factor`` < 1 or the image is smaller than one block.
    """
    img = np.asarray(image, np.float32)
    f = int(factor)
    if f < 1 or img.ndim != 2 or img.shape[0] < f or img.shape[1] < f:
        msg = f"cannot bin an image of shape {img.shape} by {factor}"
        raise InputError(msg)
    if f == 1:
        return img
    h, w = img.shape[0] // f, img.shape[1] // f
    return img[: h * f, : w * f].reshape(h, f, w, f).mean(axis=(1, 3), dtype=np.float32)


def _ellipse(shape, x, y, a, b, theta):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    t = np.radians(theta)
    u = (xx - x) * np.cos(t) + (yy - y) * np.sin(t)
    v = -(xx - x) * np.sin(t) + (yy - y) * np.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _elliptical_radius(shape, x, y, a, b, theta):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    t = np.radians(theta)
    u = (xx - x) * np.cos(t) + (yy - y) * np.sin(t)
    v = -(xx - x) * np.sin(t) + (yy - y) * np.cos(t)
    return np.sqrt((u / a) ** 2 + (v / b) ** 2), np.arctan2(v / b, u / a)


def _stars(shape, sx, sy, flux, sigma=0.8):
    h, w = shape
    prof, _, _ = np.histogram2d(sy, sx, bins=(h, w), range=((-0.5, h - 0.5), (-0.5, w - 0.5)),
                                weights=flux)  # fmt: skip
    return ndimage.gaussian_filter(prof, sigma)


def _galaxy(gen, size):
    r_e = float(np.exp(gen.uniform(np.log(1.2), np.log(0.1 * size))))
    q = float(gen.uniform(0.3, 1.0))
    theta = float(gen.uniform(0, 180))
    n = float(gen.choice([0.5, 1.0, 2.0, 4.0]))
    return r_e, q, theta, n


def _render(k, gen, size, x, y):
    """Profile (unit-free, >= 0) and truth ellipse (a, b, theta) of one object of class k."""
    shape = (size, size)
    if k == 0:
        r_e, q, theta, n = _galaxy(gen, size)
        prof = render_sersic(shape, x, y, 1.0, n, r_e, ellipticity=1 - q, pa=theta,
                             oversample=2, backend="numpy", psf=1.0)  # fmt: skip
        a = max(2.0 * r_e, 3.0)
        return prof, a, max(a * q, 3.0), theta, False
    if k == 1:
        a = float(np.exp(gen.uniform(np.log(5.0), np.log(0.4 * size))))
        b = a * float(gen.uniform(0.4, 1.0))
        theta = float(gen.uniform(0, 180))
        r, phi = _elliptical_radius(shape, x, y, a, b, theta)
        kind = gen.uniform()
        if kind < 0.3:  # shell or arc (Crescent-like): ring, partly open
            width = float(gen.uniform(0.12, 0.3))
            prof = np.exp(-0.5 * ((r - 0.8) / width) ** 2)
            open_frac = float(gen.uniform(0.0, 0.5))
            phi0 = gen.uniform(-np.pi, np.pi)
            d = np.angle(np.exp(1j * (phi - phi0)))
            prof *= 1.0 / (1.0 + np.exp((np.abs(d) - np.pi * (1 - open_frac)) / 0.2))
        else:  # irregular blob: sum of elongated Gaussians
            prof = np.zeros(shape)
            yy, xx = np.mgrid[0:size, 0:size]
            for _ in range(int(gen.integers(3, 7))):
                cx, cy = x + gen.normal(0, a / 4), y + gen.normal(0, b / 4)
                s1, s2 = a / 2.5 * gen.uniform(0.4, 1), b / 2.5 * gen.uniform(0.4, 1)
                prof += gen.uniform(0.3, 1) * np.exp(-0.5 * (((xx - cx) / s1) ** 2
                                                            + ((yy - cy) / s2) ** 2))  # fmt: skip
        # filamentary texture
        tex = ndimage.gaussian_filter(gen.normal(size=shape), float(gen.uniform(1.0, 3.0)))
        tex /= max(float(tex.std()), 1e-9)
        prof = prof * np.clip(1 + float(gen.uniform(0, 0.5)) * tex, 0, None)
        dark = bool(gen.uniform() < 0.2)
        return prof, max(a, 3.0), max(b, 3.0), theta, dark
    a = float(np.exp(gen.uniform(np.log(4.0), np.log(0.3 * size))))
    theta = 0.0
    if gen.uniform() < 0.4:  # globular: Plummer glow + concentrated stars
        rc = a / float(gen.uniform(2.5, 5.0))
        yy, xx = np.mgrid[0:size, 0:size]
        r2 = ((xx - x) ** 2 + (yy - y) ** 2) / rc**2
        glow = (1 + r2) ** -2.0
        glow /= glow.sum()
        n = int(gen.integers(30, 150))
        rr = rc * np.sqrt(1.0 / np.clip(gen.uniform(0, 1, n), 1e-3, None) ** (2 / 3) - 1)
        rr = np.minimum(rr, a)
        phi = gen.uniform(0, 2 * np.pi, n)
        st = _stars(shape, x + rr * np.cos(phi), y + rr * np.sin(phi), gen.lognormal(0, 0.6, n))
        st /= max(st.sum(), 1e-9)
        f = float(gen.uniform(0.3, 0.8))
        return f * glow + (1 - f) * st, a, a, theta, False
    n = int(gen.integers(12, 80))
    rr = a * np.sqrt(gen.uniform(0, 1, n)) ** float(gen.uniform(1.0, 1.6))
    phi = gen.uniform(0, 2 * np.pi, n)
    prof = _stars(shape, x + rr * np.cos(phi), y + rr * np.sin(phi), gen.lognormal(0, 0.9, n))
    return prof, a, a, theta, False


def _augment(img, gen, med, sig):
    size = img.shape[0]
    yy, xx = (np.mgrid[0:size, 0:size] / size - 0.5).astype(np.float32)
    if gen.uniform() < 0.7:  # light-pollution gradient: plane + curvature
        gx, gy, c = gen.normal(0, 1, 3)
        amp = sig * float(np.exp(gen.uniform(np.log(0.5), np.log(15.0))))
        img = img + amp * (gx * xx + gy * yy + c * (xx**2 + yy**2))
    if gen.uniform() < 0.5:  # blotchy colour/chroma noise on the luminance
        blot = ndimage.gaussian_filter(gen.normal(size=img.shape), float(gen.uniform(0.8, 3.0)))
        blot /= max(float(blot.std()), 1e-9)
        img = img + float(gen.uniform(0.2, 0.8)) * sig * blot.astype(np.float32)
    u = gen.uniform()
    if u < 0.15:  # processed output: background clipped to black
        img = np.clip(img - med - float(gen.uniform(0, 3)) * sig, 0, None)
    elif u < 0.6:  # display stretch and 8-bit-like quantisation
        lo = float(np.percentile(img, 1))
        s = sig * float(np.exp(gen.uniform(np.log(0.5), np.log(20))))
        y = np.arcsinh(np.clip(img - lo, 0, None) / s)
        levels = float(gen.uniform(40, 255))
        top = max(float(np.percentile(y, 99.9)), 1e-6)
        img = np.round(np.clip(y / top, 0, 1) * levels)
    return np.asarray(img, np.float32)


def random_cut(background: np.ndarray, size: int, gen: np.random.Generator) -> np.ndarray:
    """A random ``size`` x ``size`` cut of a background image, float32 (a copy).

    Raises
    ------
    InputError
        If the background is not 2-D or smaller than ``size``.
    """
    bg = np.asarray(background, np.float32)
    if bg.ndim != 2 or min(bg.shape) < size:
        msg = f"background must be 2-D and at least {size} x {size}, got {bg.shape}"
        raise InputError(msg)
    y0 = int(gen.integers(0, bg.shape[0] - size + 1))
    x0 = int(gen.integers(0, bg.shape[1] - size + 1))
    return bg[y0 : y0 + size, x0 : x0 + size].copy()


def make_composite(
    background: np.ndarray,
    rng: np.random.Generator | int | None = None,
    *,
    size: int = 96,
    max_objects: int = 2,
    snr_range: tuple[float, float] = (4.0, 100.0),
    augment: bool = True,
    classes: tuple[int, ...] = (0, 1, 2),
) -> tuple[np.ndarray, np.ndarray, Table]:
    """One training or test composite at working scale: a real background cut with simulated DSOs.

    Parameters
    ----------
    background : ndarray, shape (H, W)
        Real star field (already binned to working scale), at least ``size`` square.
    rng : numpy.random.Generator, int or None
    size : int, optional
        Side of the composite, pixels. Default 96.
    max_objects : int, optional
        0 to this many objects are injected. Default 2.
    snr_range : (float, float), optional
        Injected SNR, log-uniform: flux in the truth ellipse over the
        white-noise sum error with a correlation factor of 4. Default (4, 100).
    augment : bool, optional
        Random flips, gradients, chroma noise, stretch/quantisation or
        clipping (module docstring). Default True.
    classes : tuple of int, optional
        Indices into :data:`CLASSES` drawn from. Default all three.

    Returns
    -------
    image : ndarray, shape (size, size), float32
    masks : ndarray of bool, shape (3, size, size)
        Truth ellipse per class (:data:`CLASSES`), ``True`` = object.
    truth : astropy.table.Table
        ``x``, ``y`` (px), ``a``, ``b`` (semi-axes, px), ``theta`` (deg from +x), ``cls``, ``snr``.

    Raises
    ------
    InputError
        If the background is not 2-D or smaller than ``size``.
    """
    gen = _rng(rng)
    img = random_cut(background, size, gen)
    if augment:
        img = np.rot90(img, int(gen.integers(4)))
        if gen.uniform() < 0.5:
            img = img[:, ::-1]
        img = np.ascontiguousarray(img)
    med = float(np.median(img))
    sig = max(1.4826 * float(np.median(np.abs(img - med))), 1e-3)
    masks = np.zeros((3, size, size), bool)
    rows: list[tuple] = []
    for _ in range(int(gen.integers(0, max_objects + 1))):
        k = int(gen.choice(classes))
        for _try in range(10):
            x, y = (float(v) for v in gen.uniform(0.15 * size, 0.85 * size, 2))
            if all(np.hypot(x - r[0], y - r[1]) > r[2] + 6 for r in rows):
                break
        prof, a, b, theta, dark = _render(k, gen, size, x, y)
        inside = _ellipse((size, size), x, y, a, b, theta)
        if any(np.hypot(x - r[0], y - r[1]) < r[2] + a for r in rows):
            continue  # overlapping truth ellipses: skip (one object per place)
        snr = float(np.exp(gen.uniform(*np.log(snr_range))))
        n_pix = int(inside.sum())
        amp = snr * sig * np.sqrt(4.0 * n_pix) / max(float(prof[inside].sum()), 1e-9)
        if dark:  # a glow over the area, darkened by the cloud
            glow = ndimage.gaussian_filter(np.ones((size, size)), 1) * float(prof[inside].mean())
            img += (amp * glow).astype(np.float32)
            bgcut = img - med
            opacity = np.clip(prof / max(float(prof.max()), 1e-9) * 1.5, 0, 0.95)
            img = (med + bgcut * (1 - opacity)).astype(np.float32)
        else:
            img += (amp * prof).astype(np.float32)
        masks[k] |= inside
        rows.append((x, y, a, b, theta, CLASSES[k], snr))
    if augment:
        img = _augment(img, gen, med, sig)
    truth = Table(rows=[r for r in rows], names=("x", "y", "a", "b", "theta", "cls", "snr"),
                  dtype=(float, float, float, float, float, str, float))  # fmt: skip
    return img, masks, truth


def batch_source(backgrounds: list[np.ndarray], *, size: int = 96, **kwargs: Any):
    """A ``source(rng, n) -> (x, y)`` of composites.

    ``x`` is ``(n, 1, size, size)`` normalised images, ``y`` ``(n, 3, size,
    size)`` float masks; ``kwargs`` go to :func:`make_composite`.

    Raises
    ------
    InputError
        If no background is at least ``size`` square.
    """
    bgs = [np.asarray(b, np.float32) for b in backgrounds if min(np.shape(b)) >= size]
    if not bgs:
        msg = f"need at least one background of at least {size} x {size} pixels"
        raise InputError(msg)

    def source(rng: np.random.Generator, n: int):
        xs, ys = [], []
        for _ in range(n):
            img, m, _ = make_composite(bgs[int(rng.integers(len(bgs)))], rng, size=size, **kwargs)
            xs.append(normalise(img)[None])
            ys.append(m.astype(np.float32))
        return np.stack(xs), np.stack(ys)

    return source


def build_detector(
    *, depth: int = 4, width: int = 8, max_width: int = 48, act: str = "leaky_relu"
) -> Any:
    """The detector network: ``skysift.learning`` U-Net, 1 input channel, 3 outputs.

    Leaky ReLU: with plain ReLU a short run can end with every output unit
    dead, its logit capped at the head's bias (seen here: probabilities
    never above 0.46).
    """
    # needs torch (the learn extra): imported on use
    from skysift.learning.models import build_model

    return build_model("unet", in_channels=1, out_channels=3, depth=depth, width=width,
                       max_width=max_width, act=act)  # fmt: skip


def load_detector(name_or_path: str | Path = DETECTOR_NAME, *, verify: bool = True) -> Any:
    """Load the shipped (by name) or a saved (by ``.safetensors`` path) detector, in eval mode.

    Raises
    ------
    InputError
        If the weights or their card are missing, or the checksum differs.
    """
    # needs torch (the learn extra): imported on use
    from skysift.learning.weights import load_weights

    p = Path(name_or_path)
    if p.suffix != ".safetensors":
        p = WEIGHTS_DIR / f"{name_or_path}.safetensors"
    if not p.is_file() or not p.with_suffix(".json").is_file():
        have = sorted(q.stem for q in WEIGHTS_DIR.glob("*.safetensors"))
        msg = f"DSO detector weights {str(name_or_path)!r} not found (need {p.name} and its .json); shipped: {have}"
        raise InputError(msg)
    return load_weights(p, verify=verify)


def probabilities(model: Any, image: np.ndarray) -> np.ndarray:
    """Class probabilities ``(3, H, W)`` of a working-scale image (normalised here)."""
    x = normalise(_check_2d(image))[None, None]
    return model.predict(x).cpu().numpy()[0]


def detect(
    model: Any,
    image: np.ndarray,
    *,
    threshold: float = 0.5,
    min_area: int = 8,
    prob: np.ndarray | None = None,
) -> Table:
    """Detect DSOs in a working-scale image: connected regions of probability above ``threshold``.

    Parameters
    ----------
    model : nn.Module
        From :func:`build_detector` (trained) or :func:`load_detector`.
    image : ndarray, shape (H, W)
    threshold : float, optional
        Probability threshold. Default 0.5.
    min_area : int, optional
        Smallest region kept, pixels. Default 8.
    prob : ndarray, shape (3, H, W), optional
        Probabilities already computed (no forward pass).

    Returns
    -------
    astropy.table.Table
        ``x``, ``y`` (probability-weighted centroid, px), ``cls``, ``score``
        (peak probability), ``area`` (px), ``a``, ``b`` (semi-axes of the
        region's second moments, 2 sigma, px), ``theta`` (deg from +x).
        Regions are found on the objectness map (the largest class
        probability per pixel); a region's class is the one with the largest
        summed probability over it.

    Raises
    ------
    InputError
        If the image is not 2-D or ``threshold`` is not in (0, 1).
    """
    img = _check_2d(image)
    if not 0.0 < threshold < 1.0:
        msg = f"threshold must be in (0, 1), got {threshold}"
        raise InputError(msg)
    p = probabilities(model, img) if prob is None else np.asarray(prob)
    obj = p.max(axis=0)  # objectness: any class
    lab, n = ndimage.label(obj > threshold)
    rows = []
    for i in range(1, n + 1):
        sel = lab == i
        area = int(sel.sum())
        if area < min_area:
            continue
        k = int(np.argmax(p[:, sel].sum(axis=1)))  # class of the largest summed probability
        yy, xx = np.nonzero(sel)
        w = obj[sel]
        xc, yc = float((w * xx).sum() / w.sum()), float((w * yy).sum() / w.sum())
        cxx = float(((xx - xc) ** 2).mean()) + 1 / 12
        cyy = float(((yy - yc) ** 2).mean()) + 1 / 12
        cxy = float(((xx - xc) * (yy - yc)).mean())
        ev, evec = np.linalg.eigh([[cxx, cxy], [cxy, cyy]])
        a, b = 2 * np.sqrt(max(ev[1], 0)), 2 * np.sqrt(max(ev[0], 0))
        theta = float(np.degrees(np.arctan2(evec[1, 1], evec[0, 1]))) % 180
        rows.append((xc, yc, CLASSES[k], float(w.max()), area, a, b, theta))
    return Table(rows=rows, names=("x", "y", "cls", "score", "area", "a", "b", "theta"),
                 dtype=(float, float, str, float, int, float, float, float))  # fmt: skip


def detect_frame(
    model: Any,
    image: np.ndarray,
    *,
    threshold: float = 0.5,
    min_area: int = 8,
    work_side: int = WORK_SIDE,
) -> tuple[Table, np.ndarray, int]:
    """Detect DSOs in a full-resolution frame (binned to working scale first).

    Parameters
    ----------
    model : nn.Module
    image : ndarray, shape (H, W)
        Luminance, any size of at least 8 x 8.
    threshold, min_area
        As :func:`detect` (``min_area`` in working-scale pixels).
    work_side : int, optional
        Long side of the working-scale image. Default :data:`WORK_SIDE`.

    Returns
    -------
    detections : astropy.table.Table
        As :func:`detect` with ``x``, ``y``, ``a``, ``b`` in full-resolution
        pixels (block centre convention: working pixel ``i`` covers full
        pixels ``f i .. f i + f - 1``, centre ``f i + (f - 1) / 2``) and
        ``area`` in full-resolution pixels.
    prob : ndarray, shape (3, h, w)
        Working-scale probabilities.
    factor : int
        The binning factor.

    Raises
    ------
    InputError
        If the image is not 2-D or smaller than 8 x 8.
    """
    img = _check_2d(image)
    f = work_factor(img.shape, work_side)
    small = downsample(img, f)
    prob = probabilities(model, small)
    det = detect(model, small, threshold=threshold, min_area=min_area, prob=prob)
    if len(det):
        det["x"] = det["x"] * f + (f - 1) / 2
        det["y"] = det["y"] * f + (f - 1) / 2
        det["a"] *= f
        det["b"] *= f
        det["area"] *= f * f
    return det, prob, f


def match_detections(
    detections: Table, objects: Table, *, margin: float = 1.2, min_radius_px: float = 8.0
) -> tuple[np.ndarray, np.ndarray]:
    """Match detections to catalogued objects (detection centre inside the grown catalogue ellipse).

    Parameters
    ----------
    detections : astropy.table.Table
        ``x``, ``y``, ``score`` (full-resolution pixels, from :func:`detect_frame`).
    objects : astropy.table.Table
        Catalogue objects with ``x``, ``y``, ``major_px``, ``minor_px`` (full
        axes, px) and ``theta_deg`` (deg from +x), as
        :func:`skysift.dso.catalog.objects_in_field` gives.
    margin : float, optional
        Catalogue semi-axes are multiplied by this. Default 1.2.
    min_radius_px : float, optional
        Semi-axes are at least this many pixels. Default 8.

    Returns
    -------
    score : ndarray, shape (len(objects),)
        Highest score of the detections matched to each object (NaN: none).
    matched : ndarray of bool, shape (len(detections),)
        Whether each detection matched some object.
    """
    score = np.full(len(objects), np.nan)
    matched = np.zeros(len(detections), bool)
    if not len(detections) or not len(objects):
        return score, matched
    dx = np.asarray(detections["x"], float)[:, None] - np.asarray(objects["x"], float)[None]
    dy = np.asarray(detections["y"], float)[:, None] - np.asarray(objects["y"], float)[None]
    t = np.radians(np.nan_to_num(np.asarray(objects["theta_deg"], float)))[None]
    a = np.maximum(
        np.nan_to_num(np.asarray(objects["major_px"], float)) / 2 * margin, min_radius_px
    )
    b = np.maximum(
        np.nan_to_num(np.asarray(objects["minor_px"], float)) / 2 * margin, min_radius_px
    )
    u = dx * np.cos(t) + dy * np.sin(t)
    v = -dx * np.sin(t) + dy * np.cos(t)
    inside = (u / a[None]) ** 2 + (v / b[None]) ** 2 <= 1.0
    s = np.asarray(detections["score"], float)[:, None]
    sc = np.where(inside, s, -np.inf).max(axis=0)
    score = np.where(np.isfinite(sc), sc, np.nan)
    matched = inside.any(axis=1)
    return score, matched


def _match_counts(det: Table, truth: Table, size: int, counts: dict) -> None:
    for c in CLASSES:
        t = truth[truth["cls"] == c] if len(truth) else truth
        d = det[det["cls"] == c] if len(det) else det
        counts[c][0] += len(t)
        counts[c][1] += len(d)
        used: set[int] = set()
        for j in np.argsort(-np.asarray(d["score"], float)) if len(d) else []:
            xi, yi = round(float(d["x"][j])), round(float(d["y"][j]))
            for i in range(len(t)):
                r = t[i]
                if i in used or not (0 <= xi < size and 0 <= yi < size):
                    continue
                if _ellipse((size, size), r["x"], r["y"], r["a"], r["b"], r["theta"])[yi, xi]:
                    used.add(i)
                    counts[c][2] += 1
                    break


def _prf_table(counts: dict) -> Table:
    rows = []
    for c, (nt, nd, tp) in counts.items():
        p = tp / nd if nd else float("nan")
        r = tp / nt if nt else float("nan")
        f1 = 2 * p * r / (p + r) if nd and nt and (p + r) > 0 else (0.0 if nt else float("nan"))
        rows.append((c, nt, nd, tp, p, r, f1))
    return Table(rows=rows, names=("cls", "n_true", "n_detected", "tp", "precision", "recall",
                                   "f1"))  # fmt: skip


def evaluate_dso(
    model: Any,
    backgrounds: list[np.ndarray],
    *,
    n_images: int = 100,
    size: int = 64,
    threshold: float = 0.5,
    rng: np.random.Generator | int | None = None,
    composite: Any = None,
    **composite_kwargs: Any,
) -> Table:
    """Per-class precision, recall and F1 on composites.

    A detection matches a truth object of its class when its centroid lies
    inside the truth ellipse (one-to-one, highest score first).

    Parameters
    ----------
    model : nn.Module
    backgrounds : list of ndarray
        Working-scale backgrounds (at least ``size`` square).
    n_images : int, optional
        Composites drawn. Default 100.
    size : int, optional
        Composite side, pixels. Default 64.
    threshold : float, optional
        As :func:`detect`. Default 0.5.
    rng : numpy.random.Generator, int or None
    composite : callable, optional
        ``composite(background, rng, size=size, **composite_kwargs) -> (image,
        masks, truth)``; default :func:`make_composite`.

    Returns
    -------
    astropy.table.Table
        ``cls``, ``n_true``, ``n_detected``, ``tp``, ``precision``, ``recall``, ``f1``.

    Raises
    ------
    InputError
        If no background is at least ``size`` square.
    """
    gen = _rng(rng)
    make = composite or make_composite
    bgs = [np.asarray(b, np.float32) for b in backgrounds if min(np.shape(b)) >= size]
    if not bgs:
        msg = f"need at least one background of at least {size} x {size} pixels"
        raise InputError(msg)
    counts = {c: [0, 0, 0] for c in CLASSES}  # n_true, n_det, tp
    for _ in range(int(n_images)):
        img, _, truth = make(bgs[int(gen.integers(len(bgs)))], gen, size=size, **composite_kwargs)
        _match_counts(detect(model, img, threshold=threshold), truth, size, counts)
    return _prf_table(counts)


def occlusion_saliency(
    model: Any, image: np.ndarray, *, patch: int = 16, stride: int = 8, batch: int = 32
) -> np.ndarray:
    """Occlusion saliency: drop of the summed class probability when a patch is greyed out.

    Zeiler & Fergus (2014), ECCV, "Visualizing and Understanding
    Convolutional Networks", §4.2. The occluded copies are run in batches.

    Parameters
    ----------
    model : nn.Module
    image : ndarray, shape (H, W)
        Working-scale image.
    patch, stride : int, optional
        Occluding square and its step, pixels. Defaults 16 and 8.
    batch : int, optional
        Occluded copies per forward pass. Default 32.

    Returns
    -------
    ndarray, shape (H, W), float32
        Mean drop of ``sum(prob)`` over the patches covering each pixel (>= 0).

    Raises
    ------
    InputError
        If the image is not 2-D or ``patch``/``stride`` < 1.
    """
    if np.ndim(image) != 2 or patch < 1 or stride < 1:
        msg = f"need a 2-D image and patch, stride >= 1; got {np.shape(image)}, {patch}, {stride}"
        raise InputError(msg)
    img = normalise(np.asarray(image, np.float32))
    h, w = img.shape
    base = float(np.asarray(model.predict(img[None, None])).sum())
    boxes = [(y0, x0) for y0 in range(0, max(h - patch, 0) + 1, stride)
             for x0 in range(0, max(w - patch, 0) + 1, stride)]  # fmt: skip
    acc = np.zeros((h, w), np.float32)
    cnt = np.zeros((h, w), np.float32)
    for i in range(0, len(boxes), batch):
        chunk = boxes[i : i + batch]
        occ = np.repeat(img[None, None], len(chunk), axis=0)
        for j, (y0, x0) in enumerate(chunk):
            occ[j, 0, y0 : y0 + patch, x0 : x0 + patch] = 0.0  # the median after normalise
        sums = np.asarray(model.predict(occ)).reshape(len(chunk), -1).sum(axis=1)
        for (y0, x0), s in zip(chunk, sums, strict=True):
            acc[y0 : y0 + patch, x0 : x0 + patch] += max(base - float(s), 0.0)
            cnt[y0 : y0 + patch, x0 : x0 + patch] += 1
    return acc / np.maximum(cnt, 1)


def add_detections(objects: Table, detections: Table, wcs: Any, pixel_scale_arcsec: float,
                   *, min_unidentified_score: float = 0.5) -> Table:  # fmt: skip
    """Fill ``detector_score`` of catalogued objects and append ``unidentified`` rows.

    Parameters
    ----------
    objects : astropy.table.Table
        Catalogue objects (``x``, ``y``, ``major_px``, ``minor_px``,
        ``theta_deg``; more columns are kept).
    detections : astropy.table.Table
        Full-resolution detections (:func:`detect_frame`).
    wcs : astropy.wcs.WCS
        The image's plate solution (pixel -> RA, Dec of the new rows).
    pixel_scale_arcsec : float
        Pixel scale, arcsec/px (sizes of the new rows in arcmin).
    min_unidentified_score : float, optional
        Detections matching no catalogued object are added when their score
        reaches this. Default 0.5.

    Returns
    -------
    astropy.table.Table
        A copy: ``detector_score`` = highest matched score (NaN: none); one
        row per unmatched detection with ``label`` ``U<n>``, ``type``
        ``unidentified``, ``type_desc`` naming the detector class,
        ``verdict`` ``unidentified``, ``ra``/``dec`` (deg), ``x``/``y``,
        ``major_px``/``minor_px`` (2 sigma of the detected region, full
        axes), ``theta_deg``; other columns NaN / empty.
    """
    out = objects.copy()
    score, matched = match_detections(detections, out)
    out["detector_score"] = score
    new = detections[~matched] if len(detections) else detections
    new = new[np.asarray(new["score"], float) >= min_unidentified_score] if len(new) else new
    if not len(new):
        return out
    ra, dec = wcs.pixel_to_world_values(np.asarray(new["x"], float), np.asarray(new["y"], float))
    values = {
        "label": [f"U{i + 1}" for i in range(len(new))],
        "name": [f"unidentified {c}" for c in new["cls"]],
        "type": ["unidentified"] * len(new),
        "type_desc": [f"unidentified {c} (learned detector)" for c in new["cls"]],
        "verdict": ["unidentified"] * len(new),
        "ra": np.atleast_1d(ra) % 360.0,
        "dec": np.atleast_1d(dec),
        "x": np.asarray(new["x"], float),
        "y": np.asarray(new["y"], float),
        "major_px": 2 * np.asarray(new["a"], float),
        "minor_px": 2 * np.asarray(new["b"], float),
        "theta_deg": np.asarray(new["theta"], float),
        "major_arcmin": 2 * np.asarray(new["a"], float) * pixel_scale_arcsec / 60.0,
        "minor_arcmin": 2 * np.asarray(new["b"], float) * pixel_scale_arcsec / 60.0,
        "detector_score": np.asarray(new["score"], float),
        "in_frame": [True] * len(new),
    }
    cols = []
    for name in out.colnames:
        col = out[name]
        if name in values:
            v = np.asarray(values[name])
        elif col.dtype.kind in "US":
            v = np.array([""] * len(new))
        elif col.dtype.kind == "b":
            v = np.zeros(len(new), bool)
        elif col.dtype.kind in "iu":
            v = np.full(len(new), -1, col.dtype)
        elif col.dtype.kind == "f":
            v = np.full(len(new), np.nan)
        else:
            v = np.array([None] * len(new), dtype=object)
        if col.dtype.kind in "US":
            width = max(col.dtype.itemsize // (4 if col.dtype.kind == "U" else 1),
                        max((len(str(s)) for s in v), default=1))  # fmt: skip
            out.replace_column(name, col.astype(f"U{width}"))
            out[name].unit = col.unit
            v = v.astype(f"U{width}")
        cols.append(v)
    for row in zip(*cols, strict=True):
        out.add_row(row)
    return out
