"""Inference: a trained model applied to slices and volumes.

``slices`` (batched slice prediction), ``evaluate`` (a run's test patients), ``predict`` (new
patients, NIfTI in and out) and ``scoring`` (any tool's predictions against reference segs). Nothing
is imported here.
"""
