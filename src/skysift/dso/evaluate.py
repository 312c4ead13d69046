"""Evaluation of the learned DSO detector (``skysift evaluate dso``).

Two kinds of held-out composites on held-out real backgrounds, both at
settings never used in training (other binning factors, composite side 88,
another display stretch):

* **simulator**: :func:`skysift.dso.detector.make_composite` (the training
  generator) on backgrounds the detector never saw;
* **astropy**: objects rendered *without* skysift's simulator
  (:func:`make_astropy_composite`): galaxies with
  :class:`astropy.modeling.models.Sersic2D` convolved with a Gaussian PSF,
  nebulae as sums of :class:`~astropy.modeling.models.Gaussian2D` or a
  partial :class:`~astropy.modeling.models.Ring2D` shell, open clusters as
  Gaussian stars, globular clusters as a projected King (1962) profile
  (:class:`~astropy.modeling.models.KingProjectedAnalytic1D`) plus stars.

Per class: precision, recall and F1 for each background file and kind, with
the median and the worst over the background files (:func:`run_evaluation`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from astropy.convolution import Gaussian2DKernel, convolve_fft
from astropy.modeling import models
from astropy.table import Table

from skysift.dso.detector import (
    CLASSES,
    _ellipse,
    _match_counts,
    _prf_table,
    detect,
    load_detector,
    make_composite,
    random_cut,
)
from skysift.dso.train import backgrounds_from_files
from skysift.errors import InputError
from skysift.outputs.files import write_json, write_table, write_with

__all__ = [
    "EVAL_SIZE",
    "evaluate_backgrounds",
    "make_astropy_composite",
    "print_report",
    "record_metrics",
    "run_evaluation",
    "write_evaluation",
]

#: Side of the evaluation composites (training uses 96).
EVAL_SIZE = 88


def _rng(rng: Any) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _astropy_object(k: int, gen: np.random.Generator, size: int, x: float, y: float):
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    if k == 0:
        r_e = float(np.exp(gen.uniform(np.log(1.5), np.log(0.09 * size))))
        q = float(gen.uniform(0.35, 1.0))
        theta = float(gen.uniform(0, 180))
        n = float(gen.uniform(0.6, 4.0))
        prof = models.Sersic2D(1.0, r_e, n, x, y, 1 - q, np.radians(theta))(xx, yy)
        prof = convolve_fft(prof, Gaussian2DKernel(0.6), boundary="fill")
        a = max(2.0 * r_e, 3.0)
        return prof, a, max(a * q, 3.0), theta
    if k == 1:
        a = float(np.exp(gen.uniform(np.log(6.0), np.log(0.38 * size))))
        b = a * float(gen.uniform(0.45, 1.0))
        theta = float(gen.uniform(0, 180))
        if gen.uniform() < 0.3:
            width = a * float(gen.uniform(0.15, 0.3))
            ring = models.Ring2D(1.0, x, y, r_in=a - width, width=width)(xx, yy)
            cut = np.cos(np.arctan2(yy - y, xx - x) - gen.uniform(0, 2 * np.pi)) > -0.3
            prof = convolve_fft(ring * cut, Gaussian2DKernel(1.5), boundary="fill")
            return prof, a, a, 0.0
        prof = np.zeros((size, size))
        for _ in range(int(gen.integers(2, 6))):
            prof += models.Gaussian2D(gen.uniform(0.3, 1), x + gen.normal(0, a / 5),
                                      y + gen.normal(0, b / 5), a / 2.2 * gen.uniform(0.5, 1),
                                      b / 2.2 * gen.uniform(0.5, 1), np.radians(theta))(xx, yy)  # fmt: skip
        return prof, a, b, theta
    a = float(np.exp(gen.uniform(np.log(4.5), np.log(0.28 * size))))
    r = np.hypot(xx - x, yy - y)
    stars = np.zeros((size, size))
    if gen.uniform() < 0.4:
        rc = a / float(gen.uniform(3, 6))
        glow = models.KingProjectedAnalytic1D(1.0, r_core=rc, r_tide=a * 1.2)(
            np.minimum(r, a * 1.19)
        )
        n = int(gen.integers(30, 120))
        rr = np.abs(gen.normal(0, a / 2.5, n))
    else:
        glow = np.zeros((size, size))
        n = int(gen.integers(15, 70))
        rr = a * np.sqrt(gen.uniform(0, 1, n))
    phi = gen.uniform(0, 2 * np.pi, n)
    for rr_i, ph, f in zip(rr, phi, gen.lognormal(0, 0.9, n), strict=True):
        stars += models.Gaussian2D(f, x + rr_i * np.cos(ph), y + rr_i * np.sin(ph), 0.8, 0.8)(
            xx, yy
        )
    prof = stars / max(stars.sum(), 1e-9)
    if glow.any():
        prof = 0.5 * prof + 0.5 * glow / glow.sum()
    return prof, a, a, 0.0


def make_astropy_composite(
    background: np.ndarray,
    rng: np.random.Generator | int | None = None,
    *,
    size: int = EVAL_SIZE,
    max_objects: int = 2,
    snr_range: tuple[float, float] = (5.0, 80.0),
) -> tuple[np.ndarray, np.ndarray, Table]:
    """A composite with objects rendered by astropy models (not skysift's simulator).

    Same conventions and SNR definition as
    :func:`skysift.dso.detector.make_composite`; post-processing: a linear
    gradient and, for half the composites, a gamma display stretch with
    256-level quantisation (training uses an asinh stretch).

    Parameters
    ----------
    background : ndarray, shape (H, W)
        Working-scale real star field, at least ``size`` square.
    rng : numpy.random.Generator, int or None
    size : int, optional
        Default :data:`EVAL_SIZE`.
    max_objects : int, optional
        Default 2.
    snr_range : (float, float), optional
        Log-uniform injected SNR. Default (5, 80).

    Returns
    -------
    image, masks, truth
        As :func:`skysift.dso.detector.make_composite`.

    Raises
    ------
    InputError
        If the background is not 2-D or smaller than ``size``.
    """
    gen = _rng(rng)
    img = random_cut(background, size, gen).astype(np.float64)
    med = float(np.median(img))
    sig = max(1.4826 * float(np.median(np.abs(img - med))), 1e-3)
    masks = np.zeros((3, size, size), bool)
    rows: list[tuple] = []
    for _ in range(int(gen.integers(0, max_objects + 1))):
        k = int(gen.integers(3))
        x, y = (float(v) for v in gen.uniform(0.15 * size, 0.85 * size, 2))
        prof, a, b, theta = _astropy_object(k, gen, size, x, y)
        if any(np.hypot(x - r[0], y - r[1]) < r[2] + a for r in rows):
            continue
        inside = _ellipse((size, size), x, y, a, b, theta)
        snr = float(np.exp(gen.uniform(*np.log(snr_range))))
        amp = snr * sig * np.sqrt(4.0 * inside.sum()) / max(float(prof[inside].sum()), 1e-12)
        img += amp * prof
        masks[k] |= inside
        rows.append((x, y, a, b, theta, CLASSES[k], snr))
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    img += sig * float(gen.uniform(0, 8)) * (gen.normal() * xx + gen.normal() * yy)
    if gen.uniform() < 0.5:
        lo, hi = np.percentile(img, [0.5, 99.95])
        img = np.round(np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1) ** 0.45 * 255)
    truth = Table(rows=rows, names=("x", "y", "a", "b", "theta", "cls", "snr"),
                  dtype=(float, float, float, float, float, str, float))  # fmt: skip
    return img.astype(np.float32), masks, truth


def evaluate_backgrounds(
    model: Any,
    backgrounds: list[np.ndarray],
    *,
    kind: str = "simulator",
    n_images: int = 100,
    size: int = EVAL_SIZE,
    threshold: float = 0.5,
    rng: np.random.Generator | int | None = None,
) -> Table:
    """Per-class precision, recall and F1 of ``model`` on composites of one kind.

    Parameters
    ----------
    model : nn.Module
    backgrounds : list of ndarray
        Working-scale backgrounds at least ``size`` square.
    kind : {"simulator", "astropy"}, optional
        Composite generator. Default "simulator" (SNR 5-80, no flips).
    n_images : int, optional
        Default 100.
    size : int, optional
        Default :data:`EVAL_SIZE`.
    threshold : float, optional
        Detection threshold. Default 0.5.
    rng : numpy.random.Generator, int or None

    Returns
    -------
    astropy.table.Table
        ``cls``, ``n_true``, ``n_detected``, ``tp``, ``precision``, ``recall``, ``f1``.

    Raises
    ------
    InputError
        For an unknown ``kind`` or no background of at least ``size`` square.
    """
    if kind not in ("simulator", "astropy"):
        msg = f"kind must be 'simulator' or 'astropy', got {kind!r}"
        raise InputError(msg)
    gen = _rng(rng)
    bgs = [np.asarray(b, np.float32) for b in backgrounds if min(np.shape(b)) >= size]
    if not bgs:
        msg = f"need at least one background of at least {size} x {size} pixels"
        raise InputError(msg)
    counts = {c: [0, 0, 0] for c in CLASSES}
    for _ in range(int(n_images)):
        bg = bgs[int(gen.integers(len(bgs)))]
        if kind == "simulator":
            img, _, truth = make_composite(bg, gen, size=size, snr_range=(5.0, 80.0))
        else:
            img, _, truth = make_astropy_composite(bg, gen, size=size)
        _match_counts(detect(model, img, threshold=threshold), truth, size, counts)
    return _prf_table(counts)


def _nan_stat(func: Any, values: np.ndarray) -> float:
    """``func`` over the finite values (NaN when there are none: a class absent from every file)."""
    ok = values[np.isfinite(values)]
    return float(func(ok)) if ok.size else float("nan")


def run_evaluation(
    files: list[str | os.PathLike[str]],
    *,
    n_images: int = 300,
    weights: str | os.PathLike[str] | None = None,
    model: Any = None,
    threshold: float = 0.5,
    rng: np.random.Generator | int | None = 1000,
) -> dict[str, Any]:
    """Evaluate the detector on held-out background files, both composite kinds.

    Each file gives its own backgrounds (:func:`skysift.dso.train.backgrounds_from_files`
    with factors never used in training: 5 and 8 for large frames, 4 for
    small ones) and ``n_images`` composites of each kind.

    Parameters
    ----------
    files : list of path-like
        Held-out background images.
    n_images : int, optional
        Composites per file and kind. Default 300.
    weights : path-like, optional
        A ``.safetensors`` file; default the shipped weights.
    model : nn.Module, optional
        Use this model instead of loading weights.
    threshold : float, optional
        Default 0.5.
    rng : numpy.random.Generator, int or None

    Returns
    -------
    dict
        ``per_file``: {kind: {file: Table}}; ``summary``: Table with ``kind``,
        ``cls``, ``f1_median``, ``f1_worst``, ``precision_median``,
        ``recall_median``, and the pooled ``precision``, ``recall``, ``f1``.

    Raises
    ------
    InputError
        If ``files`` is empty or a file is missing.
    """
    if not files:
        msg = "run_evaluation needs at least one background file"
        raise InputError(msg)
    gen = _rng(rng)
    net = model if model is not None else load_detector(weights or "dso_unet")
    per_file: dict[str, dict[str, Table]] = {"simulator": {}, "astropy": {}}
    for f in files:
        bgs = backgrounds_from_files([f], size=EVAL_SIZE, strip_fraction=0.38,
                                     large_factors=(5, 8), small_factors=(4,))  # fmt: skip
        for kind in per_file:
            per_file[kind][os.path.basename(str(f))] = evaluate_backgrounds(
                net, bgs, kind=kind, n_images=n_images, threshold=threshold, rng=gen
            )
    rows = []
    for kind, tabs in per_file.items():
        for i, c in enumerate(CLASSES):
            f1 = np.array([float(t["f1"][i]) for t in tabs.values()])
            pr = np.array([float(t["precision"][i]) for t in tabs.values()])
            rc = np.array([float(t["recall"][i]) for t in tabs.values()])
            nt = sum(int(t["n_true"][i]) for t in tabs.values())
            nd = sum(int(t["n_detected"][i]) for t in tabs.values())
            tp = sum(int(t["tp"][i]) for t in tabs.values())
            p = tp / nd if nd else float("nan")
            r = tp / nt if nt else float("nan")
            pooled = 2 * p * r / (p + r) if nd and nt and p + r > 0 else 0.0
            rows.append((kind, c, nt, _nan_stat(np.median, f1), _nan_stat(np.min, f1),
                         _nan_stat(np.median, pr), _nan_stat(np.median, rc), p, r, pooled))  # fmt: skip
    summary = Table(rows=rows, names=("kind", "cls", "n_true", "f1_median", "f1_worst",
                                      "precision_median", "recall_median", "precision",
                                      "recall", "f1"))  # fmt: skip
    return {"per_file": per_file, "summary": summary}


def print_report(result: dict[str, Any]) -> None:
    """Print the per-file tables and the summary of :func:`run_evaluation` (Markdown)."""
    for kind, tabs in result["per_file"].items():
        for name, t in tabs.items():
            print(f"\n### {kind} composites on {name}\n")
            print("| class | n_true | n_det | tp | precision | recall | F1 |")
            print("|---|---|---|---|---|---|---|")
            for r in t:
                print(f"| {r['cls']} | {r['n_true']} | {r['n_detected']} | {r['tp']} | "
                      f"{r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |")  # fmt: skip
    print("\n### Summary (median / worst over background files; pooled P, R, F1)\n")
    print("| kind | class | n_true | F1 median | F1 worst | P | R | F1 pooled |")
    print("|---|---|---|---|---|---|---|---|")
    for r in result["summary"]:
        print(f"| {r['kind']} | {r['cls']} | {r['n_true']} | {r['f1_median']:.3f} | "
              f"{r['f1_worst']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |")  # fmt: skip


def write_evaluation(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write :func:`run_evaluation` tables as ECSV: ``dso_eval_summary.ecsv`` and one per kind.

    Returns
    -------
    list of pathlib.Path
        The files written (atomically).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [write_table(result["summary"], out / "dso_eval_summary.ecsv")]
    for kind, tabs in result["per_file"].items():
        if not tabs:
            continue
        rows = []
        for name, t in tabs.items():
            for r in t:
                rows.append((name, *(r[c] for c in t.colnames)))
        tab = Table(rows=rows, names=("background", *next(iter(tabs.values())).colnames))
        files.append(write_table(tab, out / f"dso_eval_{kind}.ecsv"))
    return files


def record_metrics(
    result: dict[str, Any], weights: str | os.PathLike[str], *, note: str = ""
) -> Path:
    """Write the summary of :func:`run_evaluation` into the model card (``.json`` and ``.md``).

    Parameters
    ----------
    result : dict
        From :func:`run_evaluation`.
    weights : path-like
        The ``.safetensors`` file whose card is updated (the file itself is unchanged).
    note : str, optional
        Text stored as ``metrics["evaluation"]`` (how the numbers were made).

    Returns
    -------
    pathlib.Path
        The JSON card.

    Raises
    ------
    InputError
        If the card is missing or invalid.
    """
    # imports torch (the learn extra): imported on use
    from skysift.learning.weights import Weights

    card_path = Path(weights).with_suffix(".json")
    card = Weights.from_json(card_path)
    metrics: dict[str, Any] = {"evaluation": note} if note else {}
    for r in result["summary"]:
        key = f"{r['kind']}_{r['cls']}"
        metrics[key] = {c: round(float(r[c]), 3) for c in ("f1_median", "f1_worst", "precision",
                                                            "recall", "f1")}  # fmt: skip
        metrics[key]["n_true"] = int(r["n_true"])
    card.metrics = metrics
    write_json(card.to_dict(), card_path)
    write_with(
        card_path.with_suffix(".md"), lambda t: t.write_text(card.markdown(), encoding="utf-8")
    )
    return card_path
