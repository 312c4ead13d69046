"""skysift.calibration."""
