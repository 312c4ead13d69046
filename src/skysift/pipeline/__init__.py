"""skysift.pipeline."""
