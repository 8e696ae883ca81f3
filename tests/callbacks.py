"""Keras callbacks the training tests use to look inside a run and to kill it at a chosen epoch."""

from __future__ import annotations

import keras
import numpy as np


class Snapshots(keras.callbacks.Callback):
    """Backbone weights (BatchNormalization statistics included) at the start and end of each fit."""

    def __init__(self) -> None:
        super().__init__()
        self.begin: list[dict] = []
        self.end: list[dict] = []
        self.epochs: list[int] = []

    def _take(self) -> dict[tuple[str, int], np.ndarray]:
        backbone = self.model.get_layer("backbone")
        return {
            (layer.name, i): w.numpy().copy()
            for layer in backbone.layers
            for i, w in enumerate(layer.weights)
        }

    def on_train_begin(self, logs=None) -> None:
        self.begin.append(self._take())

    def on_train_end(self, logs=None) -> None:
        self.end.append(self._take())

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.epochs.append(epoch)


class KillAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt("killed")
