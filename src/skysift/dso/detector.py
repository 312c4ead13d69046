"""Experimental learned DSO detector: a small U-Net trained on simulated DSOs on real star fields.

Three output channels (multi-label segmentation): ``galaxy`` (Sérsic
profiles, :func:`skysift.simulation.sources.render_sersic`), ``nebula``
(smooth irregular blobs: sums of elongated Gaussians) and ``cluster`` (15-60
point sources within a radius). Each composite is a square cut of a real
star-field background with 0-2 objects injected at SNR 3-60 (noise of the
truth ellipse as in :mod:`skysift.dso.visibility`); the truth mask is the
object's ellipse. Detections are the connected regions of probability above a
threshold; :func:`occlusion_saliency` gives a model-agnostic saliency map
(Zeiler & Fergus 2014, ECCV, "Visualizing and Understanding Convolutional
Networks", §4.2: the drop of the output when a patch is greyed out).

Status: experimental, trained on this machine for a few minutes; see
``docs/dso.md`` for its measured per-class precision/recall/F1. It is not
wired into :func:`skysift.dso.run_dso` (``detector_score`` stays NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table
from scipy import ndimage

from skysift.errors import InputError
from skysift.simulation.sources import render_sersic

__all__ = [
    "CLASSES",
    "normalise",
    "make_composite",
    "batch_source",
    "build_detector",
    "detect",
    "evaluate_dso",
    "occlusion_saliency",
]

#: Output channels of the detector, in order.
CLASSES = ("galaxy", "nebula", "cluster")


def _rng(rng: Any) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def normalise(image: np.ndarray) -> np.ndarray:
    """Robust normalisation: ``arcsinh((image - median) / (3 MAD))``, float32."""
    img = np.asarray(image, np.float32)
    med = float(np.median(img))
    mad = 1.4826 * float(np.median(np.abs(img - med)))
    return np.arcsinh((img - med) / max(3.0 * mad, 1e-3)).astype(np.float32)


def _ellipse(shape, x, y, a, b, theta):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    t = np.radians(theta)
    u = (xx - x) * np.cos(t) + (yy - y) * np.sin(t)
    v = -(xx - x) * np.sin(t) + (yy - y) * np.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def make_composite(
    background: np.ndarray,
    rng: np.random.Generator | int | None = None,
    *,
    size: int = 64,
    max_objects: int = 2,
) -> tuple[np.ndarray, np.ndarray, Table]:
    """One training or test composite: a real background cut with simulated DSOs.

    Parameters
    ----------
    background : ndarray, shape (H, W)
        Real star field, at least ``size`` square.
    rng : numpy.random.Generator, int or None
    size : int, optional
        Side of the composite, pixels. Default 64.
    max_objects : int, optional
        0 to this many objects are injected. Default 2.

    Returns
    -------
    image : ndarray, shape (size, size), float32
    masks : ndarray of bool, shape (3, size, size)
        Truth ellipse per class (:data:`CLASSES`), ``True`` = object.
    truth : astropy.table.Table
        ``x``, ``y``, ``a``, ``b`` (semi-axes, px), ``theta`` (deg), ``cls``, ``snr``.

    Raises
    ------
    InputError
        If the background is smaller than ``size``.
    """

    gen = _rng(rng)
    bg = np.asarray(background, np.float32)
    if bg.ndim != 2 or min(bg.shape) < size:
        msg = f"background must be 2-D and at least {size} x {size}, got {bg.shape}"
        raise InputError(msg)
    y0 = int(gen.integers(0, bg.shape[0] - size + 1))
    x0 = int(gen.integers(0, bg.shape[1] - size + 1))
    img = bg[y0 : y0 + size, x0 : x0 + size].astype(np.float32).copy()
    med = float(np.median(img))
    sig = max(1.4826 * float(np.median(np.abs(img - med))), 1e-3)
    masks = np.zeros((3, size, size), bool)
    rows = []
    for _ in range(int(gen.integers(0, max_objects + 1))):
        k = int(gen.integers(3))
        x, y = gen.uniform(0.2 * size, 0.8 * size, 2)
        theta = float(gen.uniform(0, 180))
        snr = float(np.exp(gen.uniform(np.log(3.0), np.log(60.0))))
        if k == 0:
            r_e = float(gen.uniform(2.5, 0.12 * size))
            q = float(gen.uniform(0.4, 1.0))
            prof = render_sersic((size, size), x, y, 1.0, float(gen.choice([0.5, 1.0, 2.0])), r_e,
                                 ellipticity=1 - q, pa=theta, oversample=2, backend="numpy",
                                 psf=2.0)  # fmt: skip
            a, b = 2 * r_e, 2 * q * r_e
        elif k == 1:
            a = float(gen.uniform(10, 0.35 * size))
            b = a * float(gen.uniform(0.4, 1.0))
            prof = np.zeros((size, size))
            yy, xx = np.mgrid[0:size, 0:size]
            for _ in range(4):
                cx, cy = x + gen.normal(0, a / 4), y + gen.normal(0, b / 4)
                s1, s2 = a / 2.5 * gen.uniform(0.5, 1), b / 2.5 * gen.uniform(0.5, 1)
                prof += np.exp(-0.5 * (((xx - cx) / s1) ** 2 + ((yy - cy) / s2) ** 2))
            prof /= prof.sum()
        else:
            a = b = float(gen.uniform(6, 0.3 * size))
            n = int(gen.integers(15, 60))
            r = a * np.sqrt(gen.uniform(0, 1, n)) * 0.9
            phi = gen.uniform(0, 2 * np.pi, n)
            sx, sy = x + r * np.cos(phi), y + r * np.sin(phi)
            prof, _, _ = np.histogram2d(sy, sx, bins=size, range=((-0.5, size - 0.5),) * 2,
                                        weights=gen.lognormal(0, 0.8, n))  # fmt: skip
            prof = ndimage.gaussian_filter(prof, 1.2)
            prof /= prof.sum()
        inside = _ellipse((size, size), x, y, max(a, 3), max(b, 3), theta)
        n_pix = int(inside.sum())
        # flux in the ellipse = SNR x (white-noise sum error, a correlation factor of 4)
        amp = snr * sig * np.sqrt(4.0 * n_pix) / max(float(prof[inside].sum()), 1e-9)
        img += (amp * prof).astype(np.float32)
        masks[k] |= inside
        rows.append((x, y, max(a, 3), max(b, 3), theta, CLASSES[k], snr))
    truth = Table(rows=rows, names=("x", "y", "a", "b", "theta", "cls", "snr"),
                  dtype=(float, float, float, float, float, str, float))  # fmt: skip
    return img, masks, truth


def batch_source(backgrounds: list[np.ndarray], *, size: int = 64):
    """A ``source(rng, n) -> (x, y)`` of composites for :class:`skysift.learning.trainer.Trainer`.

    ``x`` is ``(n, 1, size, size)`` normalised images, ``y`` ``(n, 3, size, size)`` masks.
    """
    bgs = [np.asarray(b, np.float32) for b in backgrounds if min(np.shape(b)) >= size]
    if not bgs:
        msg = f"need at least one background of at least {size} x {size} pixels"
        raise InputError(msg)

    def source(rng: np.random.Generator, n: int):
        xs, ys = [], []
        for _ in range(n):
            img, m, _ = make_composite(bgs[int(rng.integers(len(bgs)))], rng, size=size)
            xs.append(normalise(img)[None])
            ys.append(m.astype(np.float32))
        return np.stack(xs), np.stack(ys)

    return source


def build_detector(*, depth: int = 3, width: int = 8) -> Any:
    """The detector network: ``skysift.learning`` U-Net, 1 input channel, 3 outputs."""
    # needs torch (the learn extra): imported on use
    from skysift.learning.models import build_model

    return build_model("unet", in_channels=1, out_channels=3, depth=depth, width=width)


def _probabilities(model: Any, image: np.ndarray) -> np.ndarray:
    x = normalise(image)[None, None]
    return model.predict(x).cpu().numpy()[0]


def detect(model: Any, image: np.ndarray, *, threshold: float = 0.5, min_area: int = 12) -> Table:
    """Detect DSOs: connected regions of class probability above ``threshold``.

    Parameters
    ----------
    model : nn.Module
        From :func:`build_detector` (trained).
    image : ndarray, shape (H, W)
    threshold : float, optional
        Probability threshold. Default 0.5.
    min_area : int, optional
        Smallest region kept, pixels. Default 12.

    Returns
    -------
    astropy.table.Table
        ``x``, ``y`` (centroid, px), ``cls``, ``score`` (peak probability), ``area`` (px).

    Raises
    ------
    InputError
        If the image is not 2-D.
    """

    if np.ndim(image) != 2:
        msg = f"image must be 2-D (H, W), got shape {np.shape(image)}"
        raise InputError(msg)
    prob = _probabilities(model, image)
    rows = []
    for k, name in enumerate(CLASSES):
        lab, n = ndimage.label(prob[k] > threshold)
        for i in range(1, n + 1):
            sel = lab == i
            area = int(sel.sum())
            if area < min_area:
                continue
            yy, xx = np.nonzero(sel)
            rows.append((float(xx.mean()), float(yy.mean()), name, float(prob[k][sel].max()), area))
    return Table(rows=rows, names=("x", "y", "cls", "score", "area"),
                 dtype=(float, float, str, float, int))  # fmt: skip


def evaluate_dso(
    model: Any,
    backgrounds: list[np.ndarray],
    *,
    n_images: int = 100,
    size: int = 64,
    threshold: float = 0.5,
    rng: np.random.Generator | int | None = None,
) -> Table:
    """Per-class precision, recall and F1 on held-out composites.

    A detection matches a truth object of its class when its centroid lies
    inside the truth ellipse (one-to-one, highest score first).

    Returns
    -------
    astropy.table.Table
        ``cls``, ``n_true``, ``n_detected``, ``tp``, ``precision``, ``recall``, ``f1``.
    """
    gen = _rng(rng)
    bgs = [np.asarray(b, np.float32) for b in backgrounds if min(np.shape(b)) >= size]
    if not bgs:
        msg = f"need at least one background of at least {size} x {size} pixels"
        raise InputError(msg)
    counts = {c: [0, 0, 0] for c in CLASSES}  # n_true, n_det, tp
    for _ in range(int(n_images)):
        img, _, truth = make_composite(bgs[int(gen.integers(len(bgs)))], gen, size=size)
        det = detect(model, img, threshold=threshold)
        for c in CLASSES:
            t = truth[truth["cls"] == c] if len(truth) else truth
            d = det[det["cls"] == c] if len(det) else det
            counts[c][0] += len(t)
            counts[c][1] += len(d)
            used = set()
            for j in np.argsort(-np.asarray(d["score"], float)) if len(d) else []:
                for i in range(len(t)):
                    if i in used:
                        continue
                    r = t[i]
                    inside = _ellipse((size, size), r["x"], r["y"], r["a"], r["b"], r["theta"])
                    xi, yi = round(d["x"][j]), round(d["y"][j])
                    if 0 <= xi < size and 0 <= yi < size and inside[yi, xi]:
                        used.add(i)
                        counts[c][2] += 1
                        break
    rows = []
    for c, (nt, nd, tp) in counts.items():
        p = tp / nd if nd else float("nan")
        r = tp / nt if nt else float("nan")
        f1 = 2 * p * r / (p + r) if nd and nt and (p + r) > 0 else float("nan")
        rows.append((c, nt, nd, tp, p, r, f1))
    return Table(rows=rows, names=("cls", "n_true", "n_detected", "tp", "precision", "recall",
                                   "f1"))  # fmt: skip


def occlusion_saliency(
    model: Any, image: np.ndarray, *, patch: int = 16, stride: int = 8
) -> np.ndarray:
    """Occlusion saliency: drop of the summed class probability when a patch is greyed out.

    Parameters
    ----------
    model : nn.Module
    image : ndarray, shape (H, W)
    patch, stride : int, optional
        Occluding square and its step, pixels. Defaults 16 and 8.

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
    img = np.asarray(image, np.float32)
    h, w = img.shape
    fill = float(np.median(img))
    base = float(_probabilities(model, img).sum())
    acc = np.zeros((h, w), np.float32)
    cnt = np.zeros((h, w), np.float32)
    for y0 in range(0, max(h - patch, 0) + 1, stride):
        for x0 in range(0, max(w - patch, 0) + 1, stride):
            occ = img.copy()
            occ[y0 : y0 + patch, x0 : x0 + patch] = fill
            drop = base - float(_probabilities(model, occ).sum())
            acc[y0 : y0 + patch, x0 : x0 + patch] += max(drop, 0.0)
            cnt[y0 : y0 + patch, x0 : x0 + patch] += 1
    return acc / np.maximum(cnt, 1)
