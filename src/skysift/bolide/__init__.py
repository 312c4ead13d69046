"""Bolides and meteors: motion zone, head detection and segmentation, light-curve
measurement, the calibrated light-curve pipeline, its report, training and
evaluation; meteor trails in single long exposures; and the demo.
"""
