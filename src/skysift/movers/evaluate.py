"""Held-out evaluation of the mover detectors: mAP@0.5, precision and recall.

The held-out simulations use settings never used in training (another
telescope, detector and image size, a wider PSF range and other seeds, see
:data:`HELD_OUT`). Each detector returns boxes ``[x1, y1, x2, y2, score]``;
a detection is a true positive when its IoU with a not-yet-matched truth box
(:func:`~skysift.movers.train.mover_boxes`) is ≥ 0.5 (greedy by score, per
image), as in PASCAL VOC; AP is the all-point interpolated area under the
precision-recall curve (Everingham et al. 2010, IJCV 88, 303, §4.2).
Precision and recall are quoted at the detector's operating threshold.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from skysift.errors import InputError
from skysift.movers.baseline import detect_single
from skysift.movers.model import predict_batch
from skysift.movers.train import MoverSample, load_backgrounds, simulate_set
from skysift.movers.weights_io import load_moe

__all__ = [
    "DETECTORS",
    "HELD_OUT",
    "average_precision_boxes",
    "evaluate_movers",
    "evaluation_summary",
    "group_rows",
    "run_detector",
]

#: Held-out simulation settings (training: TRAIN_SETTINGS in train.py).
HELD_OUT: dict[str, Any] = {
    "shape": (96, 96),
    "fwhm_range": (1.1, 3.8),
    "sky_range": (13.5, 19.5),
    "target_mag_range": (9.5, 12.5),
    "trail_range": (4.0, 20.0),
    "n_stars_range": (4, 45),
    "aperture_m": 0.3,
    "pixel_scale": 1.8,
    "read_noise": 7.0,
    "qe": 0.7,
    # the held-out trail lengths are uniform in trail_range (no extra short trails)
    "short_trail_fraction": 0.0,
}

#: Detectors compared: the mixture (also with 8-fold test-time augmentation), each
#: expert alone and the classical baseline.
DETECTORS = ("moe", "moe_tta", "yolox", "centernet", "classical")


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(ua, 1e-9)


def average_precision_boxes(
    preds: list[np.ndarray], truths: list[np.ndarray], *, iou: float = 0.5, threshold: float = 0.5
) -> dict[str, float]:
    """mAP (one class), precision and recall of box detections over images.

    Parameters
    ----------
    preds : list of ndarray, shape (N_i, 5)
        Per image ``[x1, y1, x2, y2, score]``.
    truths : list of ndarray, shape (M_i, 4)
    iou : float, optional
        Match threshold. Default 0.5.
    threshold : float, optional
        Score threshold for the quoted precision and recall. Default 0.5.

    Returns
    -------
    dict
        ``map50``, ``precision``, ``recall``, ``n_images``, ``n_truth``.

    Raises
    ------
    InputError
        For lists of different lengths.
    """
    if len(preds) != len(truths):
        msg = f"preds and truths must have one entry per image, got {len(preds)} and {len(truths)}"
        raise InputError(msg)
    scores, tps = [], []
    n_truth = 0
    for p, t in zip(preds, truths, strict=True):
        p = np.asarray(p, float).reshape(-1, 5)
        t = np.asarray(t, float).reshape(-1, 4)
        n_truth += len(t)
        used = np.zeros(len(t), bool)
        for r in p[np.argsort(-p[:, 4])]:
            ok = False
            if len(t):
                ious = _iou(r, t)
                ious[used] = -1
                j = int(np.argmax(ious))
                if ious[j] >= iou:
                    used[j] = ok = True
            scores.append(r[4])
            tps.append(ok)
    s, tp = np.asarray(scores), np.asarray(tps, bool)
    order = np.argsort(-s, kind="stable")
    tp_c = np.cumsum(tp[order])
    fp_c = np.cumsum(~tp[order])
    rec = tp_c / max(n_truth, 1)
    prec = tp_c / np.maximum(tp_c + fp_c, 1)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[1.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    ap = float(np.sum((mrec[1:] - mrec[:-1]) * mpre[1:]))
    sel = s >= threshold
    n_tp = int(tp[sel].sum())
    return {
        "map50": ap,
        "precision": n_tp / max(int(sel.sum()), 1),
        "recall": n_tp / max(n_truth, 1),
        "n_images": len(truths),
        "n_truth": n_truth,
    }


def run_detector(name: str, samples: list[MoverSample], model: Any = None) -> list[np.ndarray]:
    """Boxes ``[x1, y1, x2, y2, score]`` of one detector on each sample.

    Raises
    ------
    InputError
        For an unknown detector (the message lists them) or a learned detector without a model.
    """
    if name not in DETECTORS:
        msg = f"detector must be one of {list(DETECTORS)}, got {name!r}"
        raise InputError(msg)
    if name == "classical":
        out = []
        for s in samples:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = detect_single(s.image, mode=s.meta["mode"], psf_fwhm=s.meta["fwhm"], warn=False)
            r = max(s.meta["fwhm"], 2.0)
            b = np.column_stack([
                np.minimum(t["x1"], t["x2"]) - r, np.minimum(t["y1"], t["y2"]) - r,
                np.maximum(t["x1"], t["x2"]) + r, np.maximum(t["y1"], t["y2"]) + r, t["score"],
            ]) if len(t) else np.zeros((0, 5))  # fmt: skip
            out.append(b)
        return out
    if model is None:
        msg = f"detector {name!r} needs a model (MoverMoE)"
        raise InputError(msg)

    expert, tta = ("moe", True) if name == "moe_tta" else (name, False)
    out = []
    for i in range(0, len(samples), 32):
        chunk = samples[i : i + 32]
        x = np.stack([s.x for s in chunk])
        pv = np.stack([s.prior_vec for s in chunk])
        out.extend(predict_batch(model, x, pv, expert=expert, threshold=0.05, tta=tta))
    return out


def _bin_edges(values: np.ndarray, edges: list[float]) -> list[tuple[str, np.ndarray]]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        out.append((f"{lo:g}-{hi:g}", (values >= lo) & (values < hi)))
    return out


_MODES = ("sidereal", "tracking", "intersection")
_BINS = {
    "sky": ("sky", [13.5, 15.0, 17.0, 19.5]),
    "rate": ("rate", [4.0, 8.0, 14.0, 20.01]),
    "length": ("length", [0.0, 4.0, 8.0, 14.0, 40.0]),
    "snr": ("snr", [0.0, 30.0, 100.0, 300.0, 1e9]),
}


def group_rows(
    samples: list[MoverSample], preds: list[np.ndarray], name: str = "", *, detail: bool = True
) -> list[tuple[str, str, list[int], list[np.ndarray], list[np.ndarray]]]:
    """The evaluation groups of a set: all, per mode and (with ``detail``) per bin.

    Parameters
    ----------
    samples : list of MoverSample
        With ``meta`` keys ``mode``, ``sky``, ``rate``, ``length``, ``snr``.
    preds : list of ndarray, shape (N_i, 5)
    name : str, optional
        Group name of the set (``all``/``mode`` when empty).
    detail : bool, optional
        Add the sky, rate, length and SNR bins, overall and per mode.

    Returns
    -------
    list of (group, bin, indices, preds, truths)
    """
    truths = [x.boxes for x in samples]
    out = [(name or "all", "all", list(range(len(samples))), preds, truths)]
    modes = np.array([x.meta["mode"] for x in samples])
    for m in _MODES:
        out.append((name or "mode", m, list(np.nonzero(modes == m)[0]), preds, truths))
    if not detail:
        return out
    for g, (key, edges) in _BINS.items():
        vals = np.array([x.meta[key] for x in samples], dtype=float)
        for b, sel in _bin_edges(vals, edges):
            out.append((g, b, list(np.nonzero(sel)[0]), preds, truths))
        if g == "snr":
            continue
        for m in _MODES:
            for b, sel in _bin_edges(vals, edges):
                idx = list(np.nonzero(sel & (modes == m))[0])
                out.append((f"mode/{g}", f"{m} {b}", idx, preds, truths))
    return out


def evaluation_summary(table: Table, value: str = "map50") -> Table:
    """One row per (group, bin), one column per detector: the paper's tables side by side.

    Parameters
    ----------
    table : astropy.table.Table
        :func:`evaluate_movers` output.
    value : {"map50", "precision", "recall"}, optional
        The quantity tabulated. Default ``"map50"``.

    Returns
    -------
    astropy.table.Table
        Columns ``group``, ``bin``, ``n_images`` and one per detector.

    Raises
    ------
    InputError
        For an unknown ``value`` or a table without the evaluation columns.
    """
    need = {"group", "bin", "detector", "n_images", value}
    if value not in ("map50", "precision", "recall") or not need <= set(table.colnames):
        msg = (
            f"value must be one of ['map50', 'precision', 'recall'] and the table an "
            f"evaluate_movers table; got {value!r} and columns {table.colnames}"
        )
        raise InputError(msg)
    dets = list(dict.fromkeys(table["detector"]))
    keys = list(dict.fromkeys(zip(table["group"], table["bin"], strict=True)))
    lookup = {(r["group"], r["bin"], r["detector"]): r for r in table}
    rows = []
    for g, b in keys:
        first = next(lookup[(g, b, d)] for d in dets if (g, b, d) in lookup)
        row = {"group": g, "bin": b, "n_images": int(first["n_images"])}
        for d in dets:
            r = lookup.get((g, b, d))
            row[d] = float(r[value]) if r is not None else np.nan
        rows.append(row)
    out = Table(rows=rows, names=["group", "bin", "n_images", *dets])
    for d in dets:
        out[d].format = ".3f"
    out.meta = dict(table.meta)
    out.meta["value"] = value
    return out


def evaluate_movers(
    model: Any = "mover_moe",
    *,
    n_per_mode: int = 150,
    n_sky14: int = 100,
    seed: int = 20260,
    detectors: tuple[str, ...] = DETECTORS,
    settings: dict[str, Any] | None = None,
    threshold: float = 0.5,
    backgrounds: list[Any] | None = None,
    n_real_bg: int = 100,
) -> Table:
    """The paper's tables on held-out simulations: per mode, per sky level, per rate.

    Parameters
    ----------
    model : MoverMoE, str or Path, optional
        The mixture (or weights name/path). Default the shipped ``"mover_moe"``.
    n_per_mode : int, optional
        Held-out images per mode (random sky). Default 150.
    n_sky14 : int, optional
        Extra images per mode at 14 mag/arcsec² sky. Default 100.
    seed : int, optional
        Seed of the held-out series (training uses 0). Default 20260.
    detectors : tuple of str, optional
        Subset of :data:`DETECTORS`.
    settings : dict, optional
        Overrides of :data:`HELD_OUT`.
    threshold : float, optional
        Score threshold of the quoted precision/recall for the learned detectors.
    backgrounds : list of str or Path, optional
        Real frames held out from training: ``n_real_bg`` more images per mode
        are composited on crops of them (group ``real_bg``). Default none.
    n_real_bg : int, optional
        Images per mode on the real backgrounds. Default 100.

    Returns
    -------
    astropy.table.Table
        Columns ``group``, ``bin``, ``detector``, ``map50``, ``precision``,
        ``recall``, ``n_images``, ``n_truth``. Groups: ``all``; ``mode``;
        ``sky`` (mag/arcsec² bins), ``rate`` (mover's sky motion over the
        exposure, px), ``length`` (its trail on the detector, px), ``snr``
        (its integrated SNR) over all modes; ``mode/sky``, ``mode/rate``,
        ``mode/length`` with bins named ``"<mode> <bin>"``; ``sky14`` (and per
        mode) at 14 mag/arcsec²; ``real_bg`` (and per mode) on the real frames.

    Raises
    ------
    InputError
        For non-positive counts or unknown detectors.
    """
    if n_per_mode < 1 or n_sky14 < 0 or n_real_bg < 0:
        msg = (
            f"n_per_mode must be >= 1 and n_sky14, n_real_bg >= 0, got {n_per_mode}, "
            f"{n_sky14}, {n_real_bg}"
        )
        raise InputError(msg)
    bad = [d for d in detectors if d not in DETECTORS]
    if bad:
        msg = f"unknown detectors {bad}; valid: {list(DETECTORS)}"
        raise InputError(msg)
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        model = load_moe(model)
    s = dict(HELD_OUT) | dict(settings or {})
    main = simulate_set(3 * n_per_mode, seed=seed, settings=s, keep_image=True)
    sky14 = (
        simulate_set(
            3 * n_sky14, seed=seed + 1, settings=s | {"sky_range": (14.0, 14.0)}, keep_image=True
        )  # fmt: skip
        if n_sky14
        else []
    )
    real: list[MoverSample] = []
    if backgrounds and n_real_bg:
        bgs = load_backgrounds(list(backgrounds))
        real = simulate_set(
            3 * n_real_bg, seed=seed + 2, settings=s | {"background_fraction": 1.0},
            keep_image=True, backgrounds=bgs,
        )  # fmt: skip
    rows = []
    for det in detectors:
        thr = 0.3 if det == "classical" else threshold
        groups = group_rows(main, run_detector(det, main, model))
        if sky14:
            groups += group_rows(sky14, run_detector(det, sky14, model), "sky14", detail=False)
        if real:
            groups += group_rows(real, run_detector(det, real, model), "real_bg", detail=False)
        for g, b, idx, p, t in groups:
            if not idx:
                continue
            r = average_precision_boxes([p[i] for i in idx], [t[i] for i in idx], threshold=thr)
            rows.append({"group": g, "bin": b, "detector": det, **r})
    tab = Table(rows=rows)
    tab.meta["held_out"] = {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()}
    tab.meta["seed"] = seed
    tab.meta["backgrounds"] = [Path(b).name for b in backgrounds or []]
    return tab
