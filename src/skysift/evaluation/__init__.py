"""Evaluation: the metrics every skysift model is graded with, and their figures.

Pixel-level ROC / precision-recall (exact, streaming over large images),
per-bin tables (e.g. per SNR_avg bin, as in the Unistellar satellite-streak
paper's Table 1) and object matching. Figures live in
:mod:`skysift.evaluation.plots` (imported on demand, it needs matplotlib).
"""

from skysift.evaluation.matching import (
    MatchResult,
    detection_scores_sweep,
    match_objects,
    object_metrics_by_bin,
    recall_at_precision,
)
from skysift.evaluation.metrics import (
    PIXEL_METRICS,
    SmallSampleWarning,
    auc,
    average_precision,
    binned_table,
    precision_at_recall,
    precision_recall_curve,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)

__all__ = [
    "PIXEL_METRICS",
    "MatchResult",
    "SmallSampleWarning",
    "auc",
    "average_precision",
    "binned_table",
    "detection_scores_sweep",
    "match_objects",
    "object_metrics_by_bin",
    "precision_at_recall",
    "precision_recall_curve",
    "recall_at_precision",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
]
