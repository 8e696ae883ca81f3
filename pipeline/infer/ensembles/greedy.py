"""Greedy forward selection with replacement, scored with the competition's metric on out-of-fold
predictions (Caruana et al., 2004): for metrics of labels (accuracy, F1, QWK) that no optimiser can
differentiate."""

from __future__ import annotations

from pipeline.infer.ensembles.base import SelectedMean

METHOD = SelectedMean(name="greedy")
