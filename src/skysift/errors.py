"""Domain exceptions and warnings of skysift.

Every error a user can cause (a bad file, a bad option, a frame that cannot be
calibrated) is raised as a subclass of :class:`SkysiftError`; the CLI turns
them into one-line messages and a non-zero exit code.
"""

from __future__ import annotations

__all__ = [
    "SkysiftError",
    "InputError",
    "CalibrationError",
    "NotEnoughStarsError",
    "NoDetectionsWarning",
    "DetectionCapWarning",
]


class SkysiftError(Exception):
    """Base class of every error skysift raises on purpose."""

    exit_code = 1


class InputError(SkysiftError, ValueError):
    """The input (a file, an array or an option) cannot be used.

    The message names the file (when there is one) and the problem.
    """

    exit_code = 2


class CalibrationError(SkysiftError):
    """A calibration could not be computed."""

    exit_code = 3


class NotEnoughStarsError(CalibrationError):
    """Too few stars were detected or identified to calibrate the frame."""

    exit_code = 4


class DetectionCapWarning(UserWarning):
    """A detector found more sources than its cap and kept the brightest (named in the message)."""


class NoDetectionsWarning(UserWarning):
    """A detection step found nothing; an empty table is returned."""
