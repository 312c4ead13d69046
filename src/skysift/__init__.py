"""skysift: find, measure and explain what moves and shines in night-sky images and videos.

The top-level API mirrors the command line::

    import skysift
    frame = skysift.read_frame("allsky.fits", site=(28.76, -17.89, 2200))
    stars, sky = skysift.find_stars(frame)
    result = skysift.calibrate(frame)
"""

from __future__ import annotations

import importlib
from typing import Any

from skysift._version import __version__
from skysift.errors import CalibrationError, InputError, NotEnoughStarsError, SkysiftError
from skysift.io.frame import Frame, FrameSequence, Site

_LAZY = {
    "read": "skysift.io",
    "read_frame": "skysift.io",
    "read_sequence": "skysift.io",
    "calibrate": "skysift.calibration.pipeline",
    "find_stars": "skysift.calibration.pipeline",
    "CalibrationResult": "skysift.calibration.frame",
    "CalibratedFrame": "skysift.calibration.frame",
    "detect_stars": "skysift.detection",
    "sky_mask": "skysift.detection",
    "write_calibration": "skysift.calibration.report",
}

__all__ = [
    "CalibrationError",
    "Frame",
    "FrameSequence",
    "InputError",
    "NotEnoughStarsError",
    "Site",
    "SkysiftError",
    "__version__",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    # Heavy modules (OpenCV, sep, photutils) load on first use, not at import.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module 'skysift' has no attribute {name!r}"
    raise AttributeError(msg)
