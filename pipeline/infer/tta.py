"""Test-time augmentation: the model sees each image in several views; views are averaged later."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

View = Callable[[tf.Tensor], tf.Tensor]


def _zoom(images: tf.Tensor) -> tf.Tensor:
    size = tf.shape(images)[1:3]
    crop = tf.image.central_crop(images, 0.875)
    return tf.image.resize(crop, size)


VIEWS: dict[str, View] = {
    "original": lambda images: images,
    "hflip": lambda images: tf.image.flip_left_right(images),
    "zoom": _zoom,  # the centre 87.5%, enlarged back
    "zoom-hflip": lambda images: tf.image.flip_left_right(_zoom(images)),
}


def parse_views(spec: str) -> list[str]:
    """View names from a comma-separated setting such as 'original,hflip'."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in VIEWS]
    if not names or unknown:
        raise ValueError(f"unknown TTA view(s) {unknown or spec!r}; choose from {', '.join(VIEWS)}")
    return names


def predict_views(model: keras.Model, images: tf.data.Dataset, views: list[str]) -> np.ndarray:
    """P(positive class) of every image under every view, an array (views, images); with more than
    two classes every class's probability, (views, images, classes)."""
    outputs = []
    for name in views:
        view = VIEWS[name]
        viewed = images.map(view, num_parallel_calls=tf.data.AUTOTUNE)
        predicted = np.asarray(model.predict(viewed, verbose=0), dtype=np.float64)
        outputs.append(predicted[:, -1] if predicted.shape[-1] == 1 else predicted)
    return np.stack(outputs)
