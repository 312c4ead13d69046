"""Input: read FITS, images, videos and folders of frames into :class:`Frame` objects."""

from skysift.io.frame import Frame, FrameSequence, Site

__all__ = ["Frame", "FrameSequence", "Site"]
