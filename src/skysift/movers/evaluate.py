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
from typing import Any

import numpy as np
from astropy.table import Table

from skysift.errors import InputError
from skysift.movers.baseline import detect_single
from skysift.movers.model import predict_batch
from skysift.movers.train import MoverSample, simulate_set
from skysift.movers.weights_io import load_moe

__all__ = ["DETECTORS", "HELD_OUT", "average_precision_boxes", "evaluate_movers", "run_detector"]

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


def evaluate_movers(
    model: Any = "mover_moe",
    *,
    n_per_mode: int = 150,
    n_sky14: int = 100,
    seed: int = 20260,
    detectors: tuple[str, ...] = DETECTORS,
    settings: dict[str, Any] | None = None,
    threshold: float = 0.5,
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

    Returns
    -------
    astropy.table.Table
        Columns ``group`` (``mode``, ``sky``, ``rate``, ``all``), ``bin``,
        ``detector``, ``map50``, ``precision``, ``recall``, ``n_images``.

    Raises
    ------
    InputError
        For non-positive counts or unknown detectors.
    """
    if n_per_mode < 1 or n_sky14 < 0:
        msg = f"n_per_mode must be >= 1 and n_sky14 >= 0, got {n_per_mode}, {n_sky14}"
        raise InputError(msg)
    bad = [d for d in detectors if d not in DETECTORS]
    if bad:
        msg = f"unknown detectors {bad}; valid: {list(DETECTORS)}"
        raise InputError(msg)
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        model = load_moe(model)
    s = dict(HELD_OUT) | dict(settings or {})
    modes = ("sidereal", "tracking", "intersection")
    main = simulate_set(3 * n_per_mode, seed=seed, settings=s, keep_image=True)
    sky14 = (
        simulate_set(
            3 * n_sky14, seed=seed + 1, settings=s | {"sky_range": (14.0, 14.0)}, keep_image=True
        )  # fmt: skip
        if n_sky14
        else []
    )
    rows = []
    for det in detectors:
        thr = 0.3 if det == "classical" else threshold
        pm = run_detector(det, main, model)
        p14 = run_detector(det, sky14, model) if sky14 else []
        tm = [x.boxes for x in main]
        groups: list[tuple[str, str, list[int], list[np.ndarray], list[np.ndarray]]] = []
        groups.append(("all", "all", list(range(len(main))), pm, tm))
        for m in modes:
            idx = [i for i, x in enumerate(main) if x.meta["mode"] == m]
            groups.append(("mode", m, idx, pm, tm))
        sky = np.array([x.meta["sky"] for x in main])
        for name, sel in _bin_edges(sky, [13.5, 15.0, 17.0, 19.5]):
            groups.append(("sky", name, list(np.nonzero(sel)[0]), pm, tm))
        rate = np.array([x.meta["rate"] for x in main])
        for name, sel in _bin_edges(rate, [4.0, 8.0, 14.0, 20.01]):
            groups.append(("rate", name, list(np.nonzero(sel)[0]), pm, tm))
        if sky14:
            t14 = [x.boxes for x in sky14]
            groups.append(("sky14", "all", list(range(len(sky14))), p14, t14))
            for m in modes:
                idx = [i for i, x in enumerate(sky14) if x.meta["mode"] == m]
                groups.append(("sky14", m, idx, p14, t14))
        for g, b, idx, p, t in groups:
            if not idx:
                continue
            r = average_precision_boxes([p[i] for i in idx], [t[i] for i in idx], threshold=thr)
            rows.append({"group": g, "bin": b, "detector": det, **r})
    tab = Table(rows=rows)
    tab.meta["held_out"] = {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()}
    tab.meta["seed"] = seed
    return tab
