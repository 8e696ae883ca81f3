"""The backbone registry as plain data: names, keras.applications constructors, preprocessing.

No Keras import here, so that the configuration can check a backbone name before any work
starts; `pipeline.model.backbones` builds the networks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backbone:
    """One feature extractor: how to build it and what its inputs must look like."""

    name: str
    default_image_size: int
    constructor: str  # attribute of keras.applications; "" for the from-scratch CNN
    # How [0, 255] pixels become the backbone's inputs: EfficientNetV2 rescales inside itself,
    # ResNetV2 wants [-1, 1] (keras.applications.resnet_v2.preprocess_input).
    scale: float = 1.0
    offset: float = 0.0

    @property
    def pretrained(self) -> bool:
        """True for keras.applications networks (frozen, then fine-tuned)."""
        return bool(self.constructor)


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        Backbone("efficientnetv2-b0", 224, "EfficientNetV2B0"),
        Backbone("efficientnetv2-b1", 240, "EfficientNetV2B1"),
        Backbone("efficientnetv2-b2", 260, "EfficientNetV2B2"),
        Backbone("efficientnetv2-b3", 300, "EfficientNetV2B3"),
        Backbone("efficientnetv2-s", 384, "EfficientNetV2S"),
        Backbone("efficientnetv2-m", 480, "EfficientNetV2M"),
        Backbone("resnet50v2", 224, "ResNet50V2", scale=1 / 127.5, offset=-1.0),
        Backbone("resnet101v2", 224, "ResNet101V2", scale=1 / 127.5, offset=-1.0),
        Backbone("resnet152v2", 224, "ResNet152V2", scale=1 / 127.5, offset=-1.0),
        Backbone("small-cnn", 128, "", scale=1 / 255.0),
    ]
}


BACKBONE_NAMES: tuple[str, ...] = tuple(BACKBONES)


def get_backbone(name: str) -> Backbone:
    """The registry entry for `name`, or a KeyError listing the choices."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]
