"""The reference the recipe must beat: what a user writes by hand from the keras-io fine-tuning
example, without this project. Kept deliberately plain (no project code): the ladder's ratios are
taken against it.

Every training photo resized to 160 px in memory; RandomFlip("horizontal"); Rescaling to [-1, 1];
the frozen MobileNet (alpha 0.25, ImageNet weights) called with training=False; Dropout(0.2); a
sigmoid Dense(1); Adam 1e-3 for 6 epochs; then the whole backbone unfrozen except
BatchNormalization, Adam 1e-4 for 4 epochs; batch 32; no validation split.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

SIZE = 160


def load_photos(paths: list[str]) -> np.ndarray:
    """Every photo resized (stretched) to SIZE x SIZE, as float32 pixels in [0, 255]."""
    return np.stack(
        [keras.utils.img_to_array(keras.utils.load_img(p, target_size=(SIZE, SIZE))) for p in paths]
    )


def train_and_predict(
    train_paths: list[str], labels: np.ndarray, test_paths: list[str], weights: Path, seed: int = 1
) -> np.ndarray:
    """P(dog) of every test photo after the two-phase recipe above."""
    keras.utils.set_random_seed(seed)
    x_train, x_test = load_photos(train_paths), load_photos(test_paths)
    y_train = np.asarray(labels, dtype="float32")

    base = keras.applications.MobileNet(
        input_shape=(SIZE, SIZE, 3), alpha=0.25, include_top=False, weights=str(weights), pooling="avg"
    )
    base.trainable = False
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = base(x, training=False)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)

    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=6, verbose=2)

    base.trainable = True
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    model.compile(keras.optimizers.Adam(1e-4), "binary_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=4, verbose=2)
    return model.predict(x_test, batch_size=64, verbose=0)[:, 0]
