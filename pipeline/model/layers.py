"""The project's own Keras layers, registered so that saved `model.keras` files load."""

from __future__ import annotations

import keras
from keras import ops

IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="pipeline")
class CaffePreprocessing(keras.layers.Layer):
    """RGB pixels in [0, 255] -> BGR with the ImageNet mean subtracted: keras.applications'
    "caffe" preprocess_input (VGG16), as a layer that saves with the model."""

    def call(self, images: keras.KerasTensor) -> keras.KerasTensor:
        mean = ops.convert_to_tensor(IMAGENET_MEAN_BGR, dtype=images.dtype)
        return ops.flip(images, axis=-1) - mean


@keras.saving.register_keras_serializable(package="pipeline")
class ClassToken(keras.layers.Layer):
    """The first token of a transformer's (batch, tokens, features) output: its class token."""

    def call(self, tokens: keras.KerasTensor) -> keras.KerasTensor:
        return tokens[:, 0, :]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[2])
