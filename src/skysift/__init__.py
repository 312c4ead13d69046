"""skysift: find, measure and explain what moves and shines in night-sky images and videos."""

from skysift.errors import CalibrationError, InputError, NotEnoughStarsError, SkysiftError
from skysift.io.frame import Frame, FrameSequence, Site

__version__ = "0.1.0"

__all__ = [
    "CalibrationError",
    "Frame",
    "FrameSequence",
    "InputError",
    "NotEnoughStarsError",
    "Site",
    "SkysiftError",
    "__version__",
]
