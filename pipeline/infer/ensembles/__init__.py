"""Ensemble methods of `blend --method`: each is one file here exposing METHOD, and one line in
`pipeline.registry.ENSEMBLES`."""

from __future__ import annotations

import importlib

from pipeline.infer.ensembles.base import EnsembleMethod
from pipeline.registry import ENSEMBLES


def get_method(name: str) -> EnsembleMethod:
    """The ensemble method registered as `name`."""
    if name not in ENSEMBLES:
        raise KeyError(f"unknown ensemble method {name!r}; choose one of {', '.join(ENSEMBLES)}")
    return importlib.import_module(ENSEMBLES[name]).METHOD
