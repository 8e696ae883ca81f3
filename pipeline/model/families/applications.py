"""keras.applications backbones (EfficientNetV2, ResNetV2, MobileNet, VGG, Xception): built by
name, ImageNet weights downloaded by Keras or read from a notop .h5 file, blocks found by the
layer names keras.applications gives."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import keras

from pipeline.model.backbones import WeightsError, describe_file, load_checked_weights
from pipeline.model.families.base import widest_late_spatial_layer
from pipeline.model.layers import CaffePreprocessing
from pipeline.registry import Backbone

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
    """The block a keras.applications layer belongs to ('block6h', 'conv4_block3', 'block13',
    'top', 'stem'), or None for a layer whose name says nothing (an auto-named residual convolution)."""
    for pattern, name in _BLOCKS:
        match = pattern.match(layer_name)
        if match:
            return match.expand(name)
    return None


class Applications:
    """The keras.applications family."""

    def build(self, spec: Backbone, image_size: int, weights: str) -> keras.Model:
        constructor: Callable[..., keras.Model] = getattr(keras.applications, spec.constructor)
        kwargs = {
            "include_top": False,
            "input_shape": (image_size, image_size, 3),
            "pooling": "avg",
            **dict(spec.options),
        }
        with warnings.catch_warnings():  # "input_shape is undefined ... not in [128, 160, 192, 224]"
            warnings.simplefilter("ignore", UserWarning)
            return self._build(spec, constructor, kwargs, weights)

    def _build(
        self, spec: Backbone, constructor: Callable[..., keras.Model], kwargs: dict, weights: str
    ) -> keras.Model:
        if weights == "imagenet":
            try:
                return constructor(weights="imagenet", **kwargs)
            except Exception as error:  # keras.utils.get_file raises a bare Exception on network failure
                raise WeightsError(
                    f"could not get the ImageNet weights of {spec.constructor} ({str(error)[:200]}). Without "
                    "internet (a Kaggle notebook with internet off), attach the weights file as a dataset and "
                    "pass --weights /kaggle/input/<dataset>/<file>.h5, or use --weights none."
                ) from error
        model = constructor(weights=None, **kwargs)
        if weights in ("", "none"):
            return model
        expected = (
            f"{spec.weights_file} (the notop file of keras.applications.{spec.constructor}; on Kaggle attach "
            "it as a dataset or model)"
        )
        load_checked_weights(model, weights, spec, expected)
        return model

    def preprocessing(self, spec: Backbone) -> keras.layers.Layer | None:
        if spec.caffe:
            return CaffePreprocessing(name="preprocess")
        if spec.scale != 1.0 or spec.offset != 0.0:
            return keras.layers.Rescaling(spec.scale, spec.offset, name="preprocess")
        return None

    def blocks(self, backbone: keras.Model) -> list[tuple[keras.layers.Layer, str]]:
        assigned, current = [], "stem"
        for layer in backbone.layers:
            current = block_of(layer.name) or current
            if layer.weights:
                assigned.append((layer, current))
        return assigned

    def spatial_layer(self, backbone: keras.Model) -> str | None:
        return widest_late_spatial_layer(backbone)

    def describe_weights(self, spec: Backbone, weights: str) -> str:
        if weights in ("", "none"):
            return f"Weights: none ({spec.name} starts from random weights)"
        if weights == "imagenet":
            return f"Weights: ImageNet, keras.applications' {spec.weights_file}"
        return describe_file(weights)


FAMILY = Applications()
