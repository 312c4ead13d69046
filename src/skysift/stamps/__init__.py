"""Solar-system objects in survey stamps: SSO / cosmic-ray / galaxy / star classifier.

A small CNN (:class:`StampClassifier`) trained on simulated Euclid-VIS-like
stamps (:mod:`skysift.stamps.data`) with 1–4 dithers as channels, a classical
baseline (:class:`BaselineClassifier`), evaluation against the Euclid SSO
paper's figures (:func:`evaluate_stamps`) and the ``skysift stamps`` pipeline
(:func:`classify_stamps`, :func:`run_stamps`).

References
----------
.. [1] Euclid SSO paper (Euclid Collaboration: Pöntinen et al. 2023,
   "Euclid: Identification of asteroid streaks in simulated images using
   deep learning"), §2–4.
"""

from skysift.stamps.baseline import BaselineClassifier, baseline_features
from skysift.stamps.data import (
    CLASSES,
    HELDOUT,
    STAMP_SIZE,
    TRAINING,
    StampSettings,
    iter_stamp_batches,
    paper_stamps,
    simulate_stamps,
)
from skysift.stamps.evaluate import evaluate_stamps, purity_at_abundance, roc_curve
from skysift.stamps.model import StampClassifier, fit_temperature, prepare_stamps
from skysift.stamps.pipeline import classify_stamps, cut_stamps, run_stamps
from skysift.stamps.train import DEFAULT_WEIGHTS, load_stamp_classifier, train_stamps

__all__ = [
    "CLASSES",
    "DEFAULT_WEIGHTS",
    "HELDOUT",
    "STAMP_SIZE",
    "TRAINING",
    "BaselineClassifier",
    "StampClassifier",
    "StampSettings",
    "baseline_features",
    "classify_stamps",
    "cut_stamps",
    "evaluate_stamps",
    "fit_temperature",
    "iter_stamp_batches",
    "load_stamp_classifier",
    "paper_stamps",
    "prepare_stamps",
    "purity_at_abundance",
    "roc_curve",
    "run_stamps",
    "simulate_stamps",
    "train_stamps",
]
