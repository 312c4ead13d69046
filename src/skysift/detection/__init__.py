"""Detection: background, sky masks and star finding."""

from skysift.detection.background import BackgroundMap, estimate_background
from skysift.detection.masks import SkyMask, caption_text_mask, fisheye_circle, sky_mask
from skysift.detection.stars import (
    STAR_FINDERS,
    ClassicalStarFinder,
    StarFinder,
    StarFlag,
    detect_stars,
    star_finder,
)

__all__ = [
    "STAR_FINDERS",
    "BackgroundMap",
    "ClassicalStarFinder",
    "SkyMask",
    "StarFinder",
    "StarFlag",
    "caption_text_mask",
    "detect_stars",
    "estimate_background",
    "fisheye_circle",
    "sky_mask",
    "star_finder",
]
