"""Calibration: catalogues, astrometric camera models (fisheye, TAN-SIP) and the photometric zero point."""
