"""Measurement: photometry of point sources."""

from skysift.measurement.photometry import (
    aperture_photometry_annulus,
    gaussian_photometry,
    instrumental_magnitude,
)

__all__ = ["aperture_photometry_annulus", "gaussian_photometry", "instrumental_magnitude"]
