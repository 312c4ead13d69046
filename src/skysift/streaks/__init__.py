"""Satellite and debris streaks: detection, measurement, pipeline, training and evaluation."""
