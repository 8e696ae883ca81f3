"""What a backbone family gives the pipeline: the network at an input size with pooled features,
its preprocessing, its blocks in order (for unfreezing), the layer for Grad-CAM, and where its
weights come from."""

from __future__ import annotations

from typing import Protocol

import keras

from pipeline.registry import Backbone


class BackboneFamily(Protocol):
    """One kind of backbone (keras.applications, keras-hub, the small CNN)."""

    def build(self, spec: Backbone, image_size: int, weights: str) -> keras.Model:
        """The network from [0, 255]-preprocessed images (see `preprocessing`) to pooled features,
        with `weights`: imagenet | none | a file or folder of this family's kind."""
        ...

    def preprocessing(self, spec: Backbone) -> keras.layers.Layer | None:
        """The layer turning [0, 255] RGB pixels into the network's inputs (None: inside it)."""
        ...

    def blocks(self, backbone: keras.Model) -> list[tuple[keras.layers.Layer, str]]:
        """Every layer with weights and the block it belongs to, from the input to the output:
        `unfreeze` makes the top blocks trainable."""
        ...

    def spatial_layer(self, backbone: keras.Model) -> str | None:
        """The layer whose (batch, h, w, channels) output Grad-CAM explains; None when the family
        has none (a transformer's token sequence)."""
        ...

    def describe_weights(self, spec: Backbone, weights: str) -> str:
        """One line naming the weights loaded (file and arrays, preset, or none)."""
        ...


def spatial_layers(backbone: keras.Model) -> list[str]:
    """Names of the backbone's layers with an image-shaped (batch, h, w, channels) output, in order:
    what it computes, not the pixels rescaled, nor a nested network (whose `output` is its own)."""
    return [
        layer.name
        for layer in backbone.layers[1:]
        if len(layer.output.shape) == 4 and not isinstance(layer, keras.Model | keras.layers.Rescaling)
    ]


def widest_late_spatial_layer(backbone: keras.Model) -> str | None:
    """The last spatial layer at least 7 pixels across (7x7 in keras.applications networks at 224
    px), where Grad-CAM is sharp enough to read; None without spatial layers."""
    names = spatial_layers(backbone)
    if not names:
        return None
    sides = {n: backbone.get_layer(n).output.shape[1] or 0 for n in names}
    wide = [n for n in names if sides[n] >= min(7, max(sides.values()))]
    return wide[-1]


def layers_with_weights(backbone: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's top-level layers that hold weights, in order."""
    return [layer for layer in backbone.layers if layer.weights]
