"""Fast-moving objects: classical detectors, shift-and-stack, the mixture of experts, ADES output.

Public API::

    from skysift.movers import run_movers, detect_single, shift_and_stack
    result = run_movers(["f1.fits", "f2.fits", ...], "out/", mode="sidereal")

Submodules: :mod:`~skysift.movers.baseline` (single-image shape cut and
difference imaging), :mod:`~skysift.movers.stack` (KBMOD shift-and-stack,
tracklet linking), :mod:`~skysift.movers.model` (the physics-informed mixture
of experts), :mod:`~skysift.movers.train`, :mod:`~skysift.movers.evaluate`,
:mod:`~skysift.movers.ades` (MPC ADES PSV), :mod:`~skysift.movers.pipeline`
and :mod:`~skysift.movers.plots`. Heavy modules (torch) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "detect_single": "skysift.movers.baseline",
    "detect_difference": "skysift.movers.baseline",
    "NoMoversWarning": "skysift.movers.baseline",
    "shift_and_stack": "skysift.movers.stack",
    "link_tracklets": "skysift.movers.stack",
    "velocity_grid": "skysift.movers.stack",
    "write_ades_psv": "skysift.movers.ades",
    "read_ades_psv": "skysift.movers.ades",
    "run_movers": "skysift.movers.pipeline",
    "MoversResult": "skysift.movers.pipeline",
    "MoverMoE": "skysift.movers.model",
    "load_moe": "skysift.movers.weights_io",
    "train_movers": "skysift.movers.train",
    "evaluate_movers": "skysift.movers.evaluate",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module 'skysift.movers' has no attribute {name!r}"
    raise AttributeError(msg)
