"""Backbone families: one file each, exposing FAMILY (see `base.BackboneFamily`), registered by
one line in `pipeline.registry.FAMILIES`. No stage names a family: they ask the backbone's."""

from __future__ import annotations

import importlib

from pipeline.model.families.base import BackboneFamily
from pipeline.registry import Backbone


def family_of(spec: Backbone) -> BackboneFamily:
    """The family that builds `spec`."""
    return importlib.import_module(spec.family_entry.module).FAMILY
