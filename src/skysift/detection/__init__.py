"""Detection: background, sky masks and star finding."""

from skysift.detection.background import BackgroundMap, estimate_background
from skysift.detection.masks import SkyMask, caption_text_mask, fisheye_circle, sky_mask
from skysift.detection.stars import STAR_FINDERS, ClassicalStarFinder, StarFlag, detect_stars

# Registers STAR_FINDERS["unet"] and ["hybrid"]; torch is imported only when one is built.
import skysift.detection.learned  # noqa: E402, F401  isort: skip
import skysift.detection.hybrid  # noqa: E402, F401  isort: skip

__all__ = [
    "STAR_FINDERS",
    "BackgroundMap",
    "ClassicalStarFinder",
    "SkyMask",
    "StarFlag",
    "caption_text_mask",
    "detect_stars",
    "estimate_background",
    "fisheye_circle",
    "sky_mask",
]
