"""Building backbones: keras.applications networks (or the small CNN), weights files, unfreezing."""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import h5py
import keras

from pipeline.config import ConfigError
from pipeline.registry import Backbone


class WeightsError(ConfigError):
    """A pretrained-weights file is missing or does not fit the backbone."""


def build_feature_extractor(backbone: Backbone, image_size: int, weights: str) -> keras.Model:
    """The backbone without its top, global-average pooled, with `weights` imagenet | none | a file."""
    if not backbone.pretrained:
        return small_cnn(image_size)
    constructor: Callable[..., keras.Model] = getattr(keras.applications, backbone.constructor)
    kwargs = {
        "include_top": False,
        "input_shape": (image_size, image_size, 3),
        "pooling": "avg",
        **dict(backbone.options),
    }
    if weights == "imagenet":
        try:
            return constructor(weights="imagenet", **kwargs)
        except Exception as error:  # keras.utils.get_file raises a bare Exception on network failure
            raise WeightsError(
                f"could not get the ImageNet weights of {backbone.constructor} ({str(error)[:200]}). Without "
                "internet (a Kaggle notebook with internet off), attach the weights file as a dataset and pass "
                "--weights /kaggle/input/<dataset>/<file>.h5, or use --weights none."
            ) from error
    model = constructor(weights=None, **kwargs)
    if weights in ("", "none"):
        return model
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} does not exist. Pass {backbone.weights_file} (the notop file of "
            f"keras.applications.{backbone.constructor}; on Kaggle attach it as a dataset or model), "
            "'imagenet' or 'none'."
        )

    def mismatch(detail: str) -> WeightsError:
        return WeightsError(
            f"weights file {path} does not fit {backbone.name} ({backbone.constructor}, include_top=False): "
            f"{detail}. Use the file made for this backbone ({backbone.weights_file}), or 'imagenet'/'none'."
        )

    try:
        stored = _array_shapes(path)
    except OSError as error:
        raise mismatch(f"not a Keras weights file ({error})") from error
    expected = Counter(tuple(weight.shape) for weight in model.weights)
    if stored != expected:  # Keras only warns when layers do not match: check the arrays first
        missing = sorted((expected - stored).elements())[:3]
        raise mismatch(
            f"it holds {stored.total()} arrays where the backbone has {expected.total()}"
            + (f" (no array of shape {', '.join(map(str, missing))})" if missing else "")
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(path)
    except (ValueError, KeyError, OSError, TypeError) as error:
        raise mismatch(str(error).splitlines()[0][:300]) from error
    return model


def _array_shapes(path: Path) -> Counter[tuple[int, ...]]:
    """The shapes of every array in an HDF5 weights file (.weights.h5 or legacy .h5)."""
    shapes: Counter[tuple[int, ...]] = Counter()
    with h5py.File(path, "r") as weights_file:

        def visit(_: str, item: object) -> None:
            if isinstance(item, h5py.Dataset) and item.ndim > 0:
                shapes[tuple(item.shape)] += 1

        weights_file.visititems(visit)
    return shapes


def small_cnn(image_size: int) -> keras.Model:
    """The course's from-scratch baseline: Conv-BN-ReLU-MaxPool blocks, then global pooling.

    The first convolution has stride 2 (as AlexNet's stem strides), which makes the network four
    times cheaper, so that it trains on a laptop CPU.
    """
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for block, filters in enumerate((32, 64, 128, 256)):
        strides = 2 if block == 0 else 1
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)  # settles within a few small epochs
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, outputs, name="small_cnn")


# (pattern, block name): EfficientNetV2 block6h_, VGG/Xception block5_, ResNetV2 conv4_block3_,
# MobileNetV2 block_12_, MobileNetV3 expanded_conv_10_, MobileNet v1 conv_dw_13 / conv_pw_13.
_BLOCKS = [
    (re.compile(r"^(block\d+[a-z]?)_"), r"\1"),
    (re.compile(r"^(conv\d+_block\d+)_"), r"\1"),
    (re.compile(r"^block_(\d+)_"), r"block\1"),
    (re.compile(r"^expanded_conv_(\d+)_"), r"block\1"),
    (re.compile(r"^expanded_conv_"), "block0"),
    (re.compile(r"^conv_(?:dw|pw|pad)_(\d+)(?:_|$)"), r"block\1"),
    (re.compile(r"^(top_|post_|Conv_1$|Conv_1_bn$|conv_1$|conv_1_bn$|out_relu$)"), "top"),
    (re.compile(r"^(stem_|conv1|Conv1|bn_Conv1|conv$|conv_bn$)"), "stem"),
]


def block_of(layer_name: str) -> str | None:
    """The block a backbone layer belongs to ('block6h', 'conv4_block3', 'block13', 'top', 'stem'),
    or None for a layer whose name says nothing (an auto-named residual convolution)."""
    for pattern, name in _BLOCKS:
        match = pattern.match(layer_name)
        if match:
            return match.expand(name)
    return None


def layer_blocks(model: keras.Model) -> list[tuple[keras.layers.Layer, str]]:
    """Every layer with weights and its block; an unnamed layer joins the block of the layer before it."""
    assigned, current = [], "stem"
    for layer in model.layers:
        current = block_of(layer.name) or current
        if layer.weights:
            assigned.append((layer, current))
    return assigned


def unfreeze_top_blocks(model: keras.Model, amount: float) -> list[str]:
    """Make the top blocks trainable (a fraction if <= 1, so 1 is all; else a count); BatchNormalization
    stays frozen.

    Returns the names of the blocks unfrozen, from the top down.
    """
    assigned = layer_blocks(model)
    blocks = list(dict.fromkeys(block for _, block in assigned))
    count = math.ceil(amount * len(blocks)) if amount <= 1 else int(amount)
    chosen = set(blocks[len(blocks) - min(count, len(blocks)) :])
    model.trainable = True
    for layer in model.layers:
        layer.trainable = False
    for layer, block in assigned:
        layer.trainable = block in chosen and not isinstance(layer, keras.layers.BatchNormalization)
    return [b for b in reversed(blocks) if b in chosen]
