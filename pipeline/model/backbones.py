"""Backbones, whatever their family: building one (pipeline.model.families), checking a weights
file against it before loading, and unfreezing its top blocks."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from pathlib import Path

import h5py
import keras

from pipeline.config import ConfigError
from pipeline.registry import Backbone


class WeightsError(ConfigError):
    """A pretrained-weights file is missing or does not fit the backbone."""


def build_feature_extractor(backbone: Backbone, image_size: int, weights: str) -> keras.Model:
    """The backbone without its top, pooled, with `weights` imagenet | none | a file or preset folder."""
    from pipeline.model.families import family_of

    return family_of(backbone).build(backbone, image_size, weights)


def load_checked_weights(model: keras.Model, weights: str, spec: Backbone, expected: str) -> None:
    """Load the weights file `weights` into `model` once its arrays are checked against the
    network's (Keras only warns when layers do not match); WeightsError naming `expected` else."""
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist. Pass {expected}, 'imagenet' or 'none'.")

    def mismatch(detail: str) -> WeightsError:
        return WeightsError(
            f"weights file {path} does not fit {spec.name} ({spec.constructor}, include_top=False): "
            f"{detail}. Use the file made for this backbone ({spec.weights_file or expected}), or "
            "'imagenet'/'none'."
        )

    try:
        stored = _array_shapes(path)
    except OSError as error:
        raise mismatch(f"not a Keras weights file ({error})") from error
    wanted = Counter(tuple(weight.shape) for weight in model.weights)
    if stored != wanted:
        missing = sorted((wanted - stored).elements())[:3]
        raise mismatch(
            f"it holds {stored.total()} arrays where the backbone has {wanted.total()}"
            + (f" (no array of shape {', '.join(map(str, missing))})" if missing else "")
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(path)
    except (ValueError, KeyError, OSError, TypeError) as error:
        raise mismatch(str(error).splitlines()[0][:300]) from error


def describe_file(weights: str) -> str:
    """One line naming a weights file and how many arrays it holds."""
    try:
        arrays = _array_shapes(Path(weights)).total()
    except OSError:
        return f"Weights: {weights}"
    return f"Weights: {weights} ({arrays} arrays)"


def _array_shapes(path: Path) -> Counter[tuple[int, ...]]:
    """The shapes of every array in an HDF5 weights file (.weights.h5 or legacy .h5)."""
    shapes: Counter[tuple[int, ...]] = Counter()
    with h5py.File(path, "r") as weights_file:

        def visit(_: str, item: object) -> None:
            if isinstance(item, h5py.Dataset) and item.ndim > 0:
                shapes[tuple(item.shape)] += 1

        weights_file.visititems(visit)
    return shapes


def layer_blocks(backbone: keras.Model, spec: Backbone) -> list[tuple[keras.layers.Layer, str]]:
    """Every layer with weights and its block, from the input up, as `spec`'s family sees them."""
    from pipeline.model.families import family_of

    return family_of(spec).blocks(backbone)


def unfreeze_top_blocks(backbone: keras.Model, amount: float, spec: Backbone) -> list[str]:
    """Make the top blocks trainable (a fraction if <= 1, so 1 is all; else a count); normalisation
    layers (BatchNormalization, LayerNormalization) stay frozen.

    Returns the names of the blocks unfrozen, from the top down.
    """
    assigned = layer_blocks(backbone, spec)
    blocks = list(dict.fromkeys(block for _, block in assigned))
    count = math.ceil(amount * len(blocks)) if amount <= 1 else int(amount)
    chosen = set(blocks[len(blocks) - min(count, len(blocks)) :])
    backbone.trainable = True  # then every layer outside the chosen blocks frozen again
    for layer, block in assigned:
        if block not in chosen or isinstance(layer, NORMALISATION):
            layer.trainable = False
    return [b for b in reversed(blocks) if b in chosen]


NORMALISATION = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)
