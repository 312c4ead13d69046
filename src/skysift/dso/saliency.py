"""Saliency maps of the DSO detector and the ``saliency.png`` figure.

Two maps, both at working scale (a 1080 x 1920 frame binned by 8), shown over
the full image with a colour bar:

* ``"gradient"`` (default, one forward and one backward pass): the gradient
  of the summed class probabilities with respect to the input pixels times
  the input, absolute value, smoothed by a 1.5 px Gaussian (Simonyan,
  Vedaldi & Zisserman 2014, ICLR workshop, "Deep Inside Convolutional
  Networks", §3; gradient x input: Shrikumar et al. 2017, ICML, "DeepLIFT",
  §2.1);
* ``"occlusion"`` (model-agnostic check, one forward pass per patch: about
  10 CPU-s for a Seestar frame with the default patches): the drop of the
  summed probabilities when a patch is greyed out (Zeiler & Fergus 2014,
  ECCV, §4.2; :func:`skysift.dso.detector.occlusion_saliency`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from astropy.table import Table
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from scipy import ndimage

from skysift.dso.detector import (
    WORK_SIDE,
    _check_2d,
    downsample,
    normalise,
    occlusion_saliency,
    work_factor,
)
from skysift.errors import InputError
from skysift.outputs.files import write_with
from skysift.outputs.plots import display_stretch

__all__ = ["CLASS_COLORS", "frame_saliency", "gradient_saliency", "render_saliency"]

#: Outline colour of each detector class in the figure.
CLASS_COLORS = {"galaxy": "#66ccff", "nebula": "#66ff66", "cluster": "#ffcc33"}


def gradient_saliency(model: Any, image: np.ndarray, *, smooth_px: float = 1.5) -> np.ndarray:
    """Gradient x input saliency of a working-scale image (module docstring).

    Parameters
    ----------
    model : nn.Module
        The DSO detector.
    image : ndarray, shape (H, W)
        Working-scale image (normalised here as for detection).
    smooth_px : float, optional
        Gaussian sigma of the smoothing, pixels. Default 1.5.

    Returns
    -------
    ndarray, shape (H, W), float32
        ``|d sum(prob) / d x * x|`` of the normalised input, smoothed (>= 0).

    Raises
    ------
    InputError
        If the image is not 2-D or smaller than 8 x 8.
    """
    # needs torch (the learn extra): imported on use
    import torch

    x = torch.from_numpy(normalise(_check_2d(image))[None, None].copy()).requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        torch.sigmoid(model(x)).sum().backward()
    finally:
        model.train(was_training)
    g = (x.grad * x).detach().abs().numpy()[0, 0]
    return ndimage.gaussian_filter(g, smooth_px).astype(np.float32)


def frame_saliency(
    model: Any,
    image: np.ndarray,
    *,
    method: str = "gradient",
    work_side: int = WORK_SIDE,
    patch: int | None = None,
    stride: int | None = None,
) -> tuple[np.ndarray, int]:
    """Saliency of a full-resolution frame, computed at working scale.

    Parameters
    ----------
    model : nn.Module
        The DSO detector.
    image : ndarray, shape (H, W)
        Luminance.
    method : {"gradient", "occlusion"}, optional
        Default "gradient" (module docstring).
    work_side : int, optional
        Long side of the working-scale image. Default :data:`~skysift.dso.detector.WORK_SIDE`.
    patch, stride : int, optional
        Occlusion only: occluding square and step at working scale, pixels.
        Defaults: about 1/12 of the working long side (at least 8) and half of it.

    Returns
    -------
    saliency : ndarray, shape (h, w), float32
        At working scale (>= 0).
    factor : int
        Binning factor from full resolution.

    Raises
    ------
    InputError
        If the image is not 2-D or smaller than 8 x 8, or for an unknown method.
    """
    if method not in ("gradient", "occlusion"):
        msg = f"method must be 'gradient' or 'occlusion', got {method!r}"
        raise InputError(msg)
    img = _check_2d(image)
    f = work_factor(img.shape, work_side)
    small = downsample(img, f)
    if method == "gradient":
        return gradient_saliency(model, small), f
    p = int(patch or max(8, round(max(small.shape) / 12)))
    s = int(stride or max(1, p // 2))
    return occlusion_saliency(model, small, patch=p, stride=s), f


def render_saliency(
    image: np.ndarray,
    saliency: np.ndarray,
    path: str | os.PathLike[str],
    *,
    detections: Table | None = None,
    title: str | None = None,
    max_side: int = 1200,
    label: str = "saliency: |gradient x input| of summed class probability",
) -> Path:
    """Write ``saliency.png``: the image in grey, the saliency heatmap over it, a colour bar.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        Full-resolution image (colour is shown as its mean).
    saliency : ndarray, shape (h, w)
        Saliency at any scale (resized to the image).
    path : path-like
        Output PNG (written atomically).
    detections : astropy.table.Table, optional
        Full-resolution detections (``x``, ``y``, ``a``, ``b``, ``theta``,
        ``cls``, ``score``), outlined by class colour.
    title : str, optional
    max_side : int, optional
        Longest side of the image panel, pixels. Default 1200.
    label : str, optional
        Colour-bar label.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InputError
        If the image is not (H, W) or (H, W, 3) or the saliency is not 2-D.
    """
    arr = np.asarray(image, np.float32)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr.mean(axis=2)
    sal = np.asarray(saliency, np.float32)
    if arr.ndim != 2 or sal.ndim != 2:
        msg = f"need an (H, W) or (H, W, 3) image and a 2-D saliency, got {np.shape(image)}, {sal.shape}"
        raise InputError(msg)
    h, w = arr.shape
    zoom = min(1.0, max_side / max(h, w))
    sw, sh = max(1, round(w * zoom)), max(1, round(h * zoom))
    shown = cv2.resize(
        display_stretch(arr).astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA
    )
    heat = cv2.resize(sal, (sw, sh), interpolation=cv2.INTER_LINEAR)
    vmax = max(float(np.nanmax(heat)), 1e-6)
    dpi = 100.0
    bar_in = 1.1
    fig = Figure(figsize=(sw / dpi + bar_in, sh / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    frac = (sw / dpi) / (sw / dpi + bar_in)
    ax = fig.add_axes((0, 0, frac, 1))
    ext = (-0.5, w - 0.5, h - 0.5, -0.5)
    ax.imshow(
        np.clip(shown, 0, 1), cmap="gray", origin="upper", extent=ext, interpolation="nearest"
    )
    alpha = np.clip(heat / vmax, 0, 1) * 0.75
    im = ax.imshow(heat, cmap="inferno", vmin=0, vmax=vmax, alpha=alpha, origin="upper",
                   extent=ext, interpolation="bilinear")  # fmt: skip
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    fontsize = max(8.0, 10.0 * max(sw, sh) / 1000)
    if detections is not None:
        for r in detections:
            color = CLASS_COLORS.get(str(r["cls"]), "white")
            ax.add_patch(Ellipse((float(r["x"]), float(r["y"])), 2 * max(float(r["a"]), 4.0),
                                 2 * max(float(r["b"]), 4.0), angle=float(r["theta"]),
                                 fill=False, ec=color, lw=1.2))  # fmt: skip
            ax.text(float(r["x"]) + float(r["a"]) * 0.8, float(r["y"]) - float(r["a"]) * 0.8,
                    f"{r['cls']} {float(r['score']):.2f}", color=color, fontsize=0.85 * fontsize,
                    bbox={"facecolor": "black", "alpha": 0.45, "pad": 1.0, "lw": 0})  # fmt: skip
    if title:
        ax.text(0.01, 0.995, title, transform=ax.transAxes, color="white", fontsize=fontsize,
                va="top", ha="left", bbox={"facecolor": "black", "alpha": 0.6, "lw": 0})  # fmt: skip
    cax = fig.add_axes((frac + 0.15 * (1 - frac), 0.08, 0.2 * (1 - frac), 0.84))
    cb = fig.colorbar(im, cax=cax)
    cb.solids.set_alpha(1)
    cb.set_label(label, fontsize=0.9 * fontsize)
    cb.ax.tick_params(labelsize=0.8 * fontsize)
    fig.patch.set_facecolor("white")
    return write_with(
        path, lambda t: fig.savefig(t, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    )
