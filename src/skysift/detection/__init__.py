"""skysift.detection."""
