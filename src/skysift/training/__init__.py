"""Training recipes of skysift's shipped models (the learning core is :mod:`skysift.learning`).

Importing this package does not import torch; :mod:`skysift.training.stars`
(the star detector's recipe) does.
"""

from skysift.training.stars_data import (
    HELD_OUT_BACKGROUNDS,
    TRAIN_BACKGROUNDS,
    StarDataConfig,
    iter_star_batches,
)

__all__ = ["HELD_OUT_BACKGROUNDS", "TRAIN_BACKGROUNDS", "StarDataConfig", "iter_star_batches"]
