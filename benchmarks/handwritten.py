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


def load_photos(paths: list[str], size: int = SIZE) -> np.ndarray:
    """Every photo resized (stretched) to size x size, as float32 pixels in [0, 255]."""
    return np.stack(
        [keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size))) for p in paths]
    )


def train_and_predict(
    train_paths: list[str],
    labels: np.ndarray,
    test_paths: list[str],
    weights: Path,
    seed: int = 1,
    size: int = SIZE,
    classes: int = 2,
) -> np.ndarray:
    """P(dog) of every test photo after the two-phase recipe above; with more than two classes,
    every class's probability, as a user adapts it: softmax, 8 + 8 epochs, small rotations (no
    flips: they would change what a digit is)."""
    keras.utils.set_random_seed(seed)
    x_train, x_test = load_photos(train_paths, size), load_photos(test_paths, size)
    many = classes > 2
    y_train = keras.utils.to_categorical(labels, classes) if many else np.asarray(labels, dtype="float32")

    base = keras.applications.MobileNet(
        input_shape=(size, size, 3), alpha=0.25, include_top=False, weights=str(weights), pooling="avg"
    )
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.layers.RandomRotation(0.03)(inputs) if many else keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = base(x, training=False)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(classes if many else 1, activation="softmax" if many else "sigmoid")(x)
    model = keras.Model(inputs, outputs)
    loss = "categorical_crossentropy" if many else "binary_crossentropy"
    epochs = (8, 8) if many else (6, 4)

    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=epochs[0], verbose=2)

    base.trainable = True
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    model.compile(keras.optimizers.Adam(1e-4), loss, metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=epochs[1], verbose=2)
    predicted = model.predict(x_test, batch_size=64, verbose=0)
    return predicted if many else predicted[:, 0]
