"""skysift.measurement."""
