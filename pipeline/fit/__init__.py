"""Fit: splits, two-phase training, cross-validation, tuning, metrics."""
