"""Scoring for the stress suite: star finders per region, all-sky calibrations against truth."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from skysift.evaluation.matching import match_objects

__all__ = ["MATCH_RADIUS", "MIN_SNR", "score_finder", "score_calibration", "summarise"]

#: Match radius (px) between a detection and a true star (as in docs/star_detector.md).
MATCH_RADIUS = 2.0
#: Stars at or above this matched-filter SNR count for recall.
MIN_SNR = 5.0
#: Regions a finder is scored in (caption and outside are counted, not scored).
SCORED = ("dark", "gradient", "glow", "edge")


#: SNR bins of the per-bin recall rows (``"snr 5-7"`` ...), over every scored region.
SNR_BINS = ((5.0, 7.0), (7.0, 10.0), (10.0, 20.0), (20.0, np.inf))


def score_finder(
    det_xy: np.ndarray,
    truth: Table,
    regions: np.ndarray,
    names: dict,
    mask: np.ndarray | None = None,
) -> list[dict]:
    """Precision and recall per region class for one frame and one finder.

    A detection is true when it is matched one-to-one (within
    :data:`MATCH_RADIUS`) to any rendered star, whatever its SNR; recall
    counts the unsaturated stars of SNR >= :data:`MIN_SNR`. A detection
    belongs to the region of the pixel under it, a star to the region of its
    true position.

    Parameters
    ----------
    det_xy : ndarray, shape (N, 2)
        Detections (x, y), px.
    truth : astropy.table.Table
        ``x``, ``y``, ``snr``, ``saturated``, ``region`` per star.
    regions : ndarray of uint8, shape (H, W)
        Region class per pixel; ``names`` maps its values to names.
    names : dict
        Region value -> name.
    mask : ndarray of bool, shape (H, W), optional
        The finder's sky mask (True = not sky): ``n_true_masked`` counts the
        recall stars under it.

    Returns
    -------
    list of dict
        One row per region (and ``"all"``: every scored region together):
        ``region``, ``n_true``, ``n_found``, ``recall``, ``n_det``, ``n_fp``,
        ``precision``, ``n_true_masked``; rows ``snr 5-7`` ... (every scored
        region, per SNR bin); and rows ``caption`` and ``outside`` with the
        number of detections there.
    """
    det_xy = np.asarray(det_xy, float).reshape(-1, 2)
    txy = np.c_[np.asarray(truth["x"]), np.asarray(truth["y"])]
    m = match_objects(det_xy, txy, MATCH_RADIUS)
    matched_true = np.zeros(len(truth), bool)
    matched_true[m.true_index] = True
    det_true = np.zeros(len(det_xy), bool)
    det_true[m.pred_index] = True
    h, w = regions.shape
    xi = np.clip(np.round(det_xy[:, 0]).astype(int), 0, w - 1)
    yi = np.clip(np.round(det_xy[:, 1]).astype(int), 0, h - 1)
    det_region = np.array([names[int(c)] for c in regions[yi, xi]], dtype="U8")
    good = (np.asarray(truth["snr"]) >= MIN_SNR) & ~np.asarray(truth["saturated"])
    star_region = np.asarray(truth["region"])
    tx = np.clip(np.round(txy[:, 0]).astype(int), 0, w - 1)
    ty = np.clip(np.round(txy[:, 1]).astype(int), 0, h - 1)
    masked = mask[ty, tx] if mask is not None else np.zeros(len(truth), bool)
    rows = []
    for reg in (*SCORED, "all"):
        s = good & (np.isin(star_region, SCORED) if reg == "all" else star_region == reg)
        d = np.isin(det_region, SCORED) if reg == "all" else det_region == reg
        n_true, n_found = int(s.sum()), int((s & matched_true).sum())
        n_det, n_fp = int(d.sum()), int((d & ~det_true).sum())
        rows.append(
            {
                "region": reg,
                "n_true": n_true,
                "n_found": n_found,
                "recall": n_found / n_true if n_true else np.nan,
                "n_det": n_det,
                "n_fp": n_fp,
                "precision": (n_det - n_fp) / n_det if n_det else np.nan,
                "n_true_masked": int((s & masked).sum()),
            }
        )
    snr = np.asarray(truth["snr"])
    for lo, hi in SNR_BINS:
        s = good & np.isin(star_region, SCORED) & (snr >= lo) & (snr < hi)
        n_true, n_found = int(s.sum()), int((s & matched_true).sum())
        label = f"snr {lo:g}-{hi:g}" if np.isfinite(hi) else f"snr >={lo:g}"
        rows.append(
            {
                "region": label,
                "n_true": n_true,
                "n_found": n_found,
                "recall": n_found / n_true if n_true else np.nan,
                "n_det": 0,
                "n_fp": 0,
                "precision": np.nan,
                "n_true_masked": int((s & masked).sum()),
            }
        )
    for reg in ("caption", "outside"):
        d = det_region == reg
        rows.append(
            {
                "region": reg,
                "n_true": 0,
                "n_found": 0,
                "recall": np.nan,
                "n_det": int(d.sum()),
                "n_fp": int((d & ~det_true).sum()),
                "precision": np.nan,
                "n_true_masked": 0,
            }
        )
    return rows


def score_calibration(result, frame, tol_px: float = 2.0) -> dict:
    """Identification correctness, RMS against the truth and photometric scatter.

    Parameters
    ----------
    result : skysift CalibrationResult
    frame : AllSkyFrame
        The rendered frame with its camera and truth.
    tol_px : float, optional
        An identification is correct when the catalogue star's *true* pixel
        is within this distance of the matched detection. Default 2.

    Returns
    -------
    dict
        ``n_matched``, ``frac_correct``, ``rms_truth_px`` (model vs true
        pixel of every rendered star inside the sky; ``median_truth_px``,
        ``p95_truth_px`` and ``max_truth_px`` of the same errors;
        ``rms_truth_alt20_px`` for the stars 20 deg or more above the horizon),
        ``phot_scatter_mag`` (1.4826 MAD of calibrated - catalogue V of the
        stars used in the zero point), ``zp_rms_mag`` and ``pipeline_rms_px``
        (the pipeline's own figures).
    """
    from skysift.calibration.catalog import star_altaz

    cam = frame.camera
    mt = result.matches
    out: dict = {
        "model_type": result.model_type,
        "n_matched": len(mt),
        "pipeline_rms_px": float(result.astrometric_rms_px),
    }
    if len(mt):
        t = Table({"ra": np.asarray(mt["ra"], float), "dec": np.asarray(mt["dec"], float)})
        aa = star_altaz(t, result.site, result.time)
        tx, ty = cam.altaz_to_pixel(np.asarray(aa["alt"]), np.asarray(aa["az"]))
        d = np.hypot(tx - np.asarray(mt["x"]), ty - np.asarray(mt["y"]))
        out["frac_correct"] = float(np.mean(d <= tol_px))
    else:
        out["frac_correct"] = np.nan
    tr = frame.truth[frame.truth["inside"]]
    mx, my = result.camera.altaz_to_pixel(np.asarray(tr["alt"]), np.asarray(tr["az"]))
    err = np.hypot(np.asarray(mx) - np.asarray(tr["x"]), np.asarray(my) - np.asarray(tr["y"]))
    err = np.where(np.isfinite(err), err, 1e4)
    out["rms_truth_px"] = float(np.sqrt(np.mean(err**2)))
    out["median_truth_px"] = float(np.median(err))
    high = np.asarray(tr["alt"]) >= 20.0
    out["rms_truth_alt20_px"] = float(np.sqrt(np.mean(err[high] ** 2))) if high.any() else np.nan
    out["p95_truth_px"] = float(np.percentile(err, 95))
    out["max_truth_px"] = float(err.max())
    if "used_in_zp" in mt.colnames and np.asarray(mt["used_in_zp"]).sum() >= 5:
        used = np.asarray(mt["used_in_zp"], bool)
        r = np.asarray(mt["mag"], float)[used] - np.asarray(mt["catalog_mag"], float)[used]
        r = r[np.isfinite(r)]
        out["phot_scatter_mag"] = float(1.4826 * np.median(np.abs(r - np.median(r))))
        out["phot_std_mag"] = float(np.std(r))
    else:
        out["phot_scatter_mag"] = np.nan
        out["phot_std_mag"] = np.nan
    zp = result.zero_point
    out["zp_rms_mag"] = float(zp.rms_mag) if zp is not None else np.nan
    return out


def summarise(table: Table, by: list[str], cols: list[str], worst: dict[str, str]) -> Table:
    """Median and worst value of ``cols`` over the rows of each group ``by``.

    ``worst[col]`` is ``"min"`` or ``"max"`` (which end is worse); NaNs are skipped.
    """
    keys = sorted({tuple(str(r[b]) for b in by) for r in table}, key=lambda k: k)
    rows = []
    for k in keys:
        sel = np.ones(len(table), bool)
        for b, v in zip(by, k, strict=True):
            sel &= np.asarray(table[b]).astype(str) == v
        row = dict(zip(by, k, strict=True))
        row["n_cases"] = int(sel.sum())
        for c in cols:
            v = np.asarray(table[c][sel], float)
            v = v[np.isfinite(v)]
            row[f"{c}_median"] = float(np.median(v)) if v.size else np.nan
            fn = np.min if worst.get(c, "min") == "min" else np.max
            row[f"{c}_worst"] = float(fn(v)) if v.size else np.nan
        if "n_found" in table.colnames and "n_true" in table.colnames:
            nt = int(np.sum(table["n_true"][sel]))
            row["recall_pooled"] = float(np.sum(table["n_found"][sel]) / nt) if nt else np.nan
        if "n_det" in table.colnames and "n_fp" in table.colnames:
            nd = int(np.sum(table["n_det"][sel]))
            fp = int(np.sum(table["n_fp"][sel]))
            row["precision_pooled"] = (nd - fp) / nd if nd else np.nan
        rows.append(row)
    return Table(rows=rows) if rows else Table()
