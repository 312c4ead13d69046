"""Pipelines: the steps of a job joined together."""

from skysift.pipeline.calibrate import CalibrationResult, calibrate, find_stars

__all__ = ["CalibrationResult", "calibrate", "find_stars"]
