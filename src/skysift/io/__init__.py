"""Input: read FITS, images, videos and folders of frames into :class:`Frame` objects."""

from __future__ import annotations

import importlib
from typing import Any

from skysift.io.frame import Frame, FrameSequence, Site

# The readers pull in OpenCV, astropy.io.fits and astropy.wcs: load them on first use
# so that ``import skysift`` (which needs Frame/Site) stays light.
_LAZY = {
    "as_frame": "skysift.io.readers",
    "read": "skysift.io.readers",
    "read_frame": "skysift.io.readers",
    "read_sequence": "skysift.io.readers",
    "luminance": "skysift.io.video",
    "iter_video": "skysift.io.video",
    "MetadataWarning": "skysift.io.metadata",
}

__all__ = ["Frame", "FrameSequence", "Site", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module 'skysift.io' has no attribute {name!r}"
    raise AttributeError(msg)
