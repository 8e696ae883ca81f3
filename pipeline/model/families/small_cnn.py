"""The course's from-scratch baseline: Conv-BN-ReLU-MaxPool blocks, then global pooling; no
pretrained weights, trained whole in one phase."""

from __future__ import annotations

import keras

from pipeline.model.families.base import widest_late_spatial_layer
from pipeline.registry import Backbone


def small_cnn(image_size: int) -> keras.Model:
    """Conv-BN-ReLU-MaxPool blocks of 32, 64, 128 and 256 filters, then global average pooling.

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


class SmallCNN:
    """The small-CNN family: one network, trained from scratch."""

    def build(self, spec: Backbone, image_size: int, weights: str) -> keras.Model:
        return small_cnn(image_size)  # no pretrained weights exist: `weights` does not apply

    def preprocessing(self, spec: Backbone) -> keras.layers.Layer | None:
        return keras.layers.Rescaling(spec.scale, spec.offset, name="preprocess")

    def blocks(self, backbone: keras.Model) -> list[tuple[keras.layers.Layer, str]]:
        assigned, block = [], 0
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.Conv2D):
                block += 1
            if layer.weights:
                assigned.append((layer, f"block{block}"))
        return assigned

    def spatial_layer(self, backbone: keras.Model) -> str | None:
        return widest_late_spatial_layer(backbone)

    def describe_weights(self, spec: Backbone, weights: str) -> str:
        return "Weights: none (the small CNN trains from scratch)"


FAMILY = SmallCNN()
