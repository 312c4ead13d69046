"""Simulation: synthetic sky images and videos with exact truth, for tests and training.

Parts: :mod:`~skysift.simulation.optics` (bands, telescope),
:mod:`~skysift.simulation.psf`, :mod:`~skysift.simulation.detector` (noise
chain, Bayer), :mod:`~skysift.simulation.render`,
:mod:`~skysift.simulation.streaks`, :mod:`~skysift.simulation.movers`,
:mod:`~skysift.simulation.sources`, :mod:`~skysift.simulation.stamps`,
:mod:`~skysift.simulation.scenes`, :mod:`~skysift.simulation.background`,
:mod:`~skysift.simulation.meteors`, :mod:`~skysift.simulation.truth`, and
:mod:`~skysift.simulation.generate` (sample generators for training and the CLI).
"""

from skysift.simulation.starfield import make_star_field

__all__ = ["make_star_field"]
