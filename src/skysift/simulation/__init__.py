"""Simulation: synthetic sky images with exact truth (grown into the full simulator later)."""

from skysift.simulation.starfield import make_star_field

__all__ = ["make_star_field"]
