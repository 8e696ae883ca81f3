"""keras-hub image encoders (DINOv2, ViT, SigLIP, EfficientNet, ResNetV2, MobileNetV3; extra
[hub]): a preset loaded from a local folder (--weights DIR), a Kaggle Model attached to a kernel,
or its Kaggle Models handle through kagglehub; its image converter's rescaling inside the network;
features pooled from the feature map (CNNs) or the class token (transformers)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import keras
import keras_hub  # also registers its classes: saved models that hold them load
import numpy as np

from pipeline.model.backbones import WeightsError
from pipeline.model.layers import ClassToken
from pipeline.registry import Backbone

# A saved classifier calls the nested keras-hub backbone with a tensor where it names its input
# ({"images": ...}): Keras warns on every call, and the call is right.
warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match", category=UserWarning)

HUB = "hub_backbone"  # the keras-hub network inside the feature extractor
FEATURE_MAP = "feature_map"  # a CNN encoder's last feature map, where Grad-CAM looks
_CNN_BLOCK = re.compile(r"^((?:stack|stage|block)\d+_block\d+|block\d+[a-z]?|stack\d+|stage\d+)_")
_TOP = re.compile(r"^(post_|top_|head_|final_|layernorm|norm$)")


def _preset(spec: Backbone, weights: str) -> str:
    """What keras-hub loads: a local preset folder, else the backbone's Kaggle Models handle."""
    return weights if weights not in ("", "none", "imagenet") else spec.handle


def _load(spec: Backbone, image_size: int, weights: str) -> tuple[keras.Model, keras.layers.Layer | None]:
    """The keras-hub backbone at `image_size` (weights loaded unless `weights` is none) and the
    preset's image converter, if it has one."""
    preset = _preset(spec, weights)
    shape = {"image_shape": (image_size, image_size, 3)}
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset, load_weights=weights != "none", **shape)
    except TypeError:  # a backbone that takes any size has no image_shape to set
        backbone = keras_hub.models.Backbone.from_preset(preset, load_weights=weights != "none")
    except Exception as error:  # kagglehub's and keras-hub's errors have no common base
        where = "the folder" if Path(preset).is_dir() else "Kaggle Models (kagglehub; internet needed)"
        raise WeightsError(
            f"could not load the keras-hub preset {preset} from {where} ({str(error).splitlines()[0][:200]}). "
            f"Pass --weights DIR (a folder the preset was saved to), or in a kernel attach the Kaggle Model "
            f"{spec.model_source}."
        ) from error
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except Exception:  # a preset saved without an image converter: pixels rescaled to [0, 1]
        converter = None
    return backbone, converter


def _rescaling(converter: keras.layers.Layer | None) -> keras.layers.Layer:
    """The converter's pixel arithmetic (x * scale + offset, per channel) as a plain Keras layer:
    the saved model needs keras-hub to build it, not to run it."""
    scale = 1 / 255.0 if converter is None or converter.scale is None else converter.scale
    offset = 0.0 if converter is None or converter.offset is None else converter.offset
    scale = float(scale) if np.ndim(scale) == 0 else [float(s) for s in np.ravel(scale)]
    offset = float(offset) if np.ndim(offset) == 0 else [float(o) for o in np.ravel(offset)]
    return keras.layers.Rescaling(scale, offset, name="hub_preprocess")


def _image_encoder(backbone: keras.Model) -> keras.Model:
    """The image side of the backbone (SigLIP holds an image and a text encoder)."""
    return getattr(backbone, "vision_encoder", None) or backbone


def _has_class_token(encoder: keras.Model) -> bool:
    return type(encoder).__name__.startswith("DINOV") or bool(getattr(encoder, "use_class_token", False))


class Hub:
    """The keras-hub family."""

    def build(self, spec: Backbone, image_size: int, weights: str) -> keras.Model:
        backbone, converter = _load(spec, image_size, weights)
        encoder = _image_encoder(backbone)
        encoder.name = HUB
        inputs = keras.Input((image_size, image_size, 3), name="images")
        pixels = _rescaling(converter)(inputs)
        structure = encoder.input  # keras-hub backbones name their input: a dict of one
        outputs = encoder({next(iter(structure)): pixels} if isinstance(structure, dict) else pixels)
        if len(outputs.shape) == 4:  # a feature map: (batch, h, w, channels), named for Grad-CAM
            maps = keras.layers.Identity(name=FEATURE_MAP)(outputs)
            pooled = keras.layers.GlobalAveragePooling2D(name="pool")(maps)
        elif _has_class_token(encoder):  # tokens: the class token summarises the image
            pooled = ClassToken(name="class_token")(outputs)
        else:
            pooled = keras.layers.GlobalAveragePooling1D(name="pool")(outputs)
        return keras.Model(inputs, pooled, name=f"{spec.name.replace('-', '_')}_features")

    def preprocessing(self, spec: Backbone) -> keras.layers.Layer | None:
        return None  # the preset's converter is inside the network (build)

    def blocks(self, backbone: keras.Model) -> list[tuple[keras.layers.Layer, str]]:
        """The encoder's layers in order: a transformer's stacked layers one block each, a CNN's
        by their stack/block names; what comes before them is the stem."""
        encoder = backbone.get_layer(HUB)
        assigned, current = [], "stem"
        for layer in encoder.layers:
            stacked = getattr(layer, "layers", None)  # a transformer encoder's list of layers
            if (
                isinstance(stacked, list)
                and stacked
                and all(isinstance(s, keras.layers.Layer) for s in stacked)
            ):
                for k, sub in enumerate(stacked):
                    assigned.append((sub, f"layer{k}"))
                current = "top"
                continue
            match = _CNN_BLOCK.match(layer.name)
            current = match.group(1) if match else "top" if _TOP.match(layer.name) else current
            if layer.weights:
                assigned.append((layer, current))
        return assigned

    def spatial_layer(self, backbone: keras.Model) -> str | None:
        names = {layer.name for layer in backbone.layers}
        return FEATURE_MAP if FEATURE_MAP in names else None  # a transformer's tokens: no map

    def describe_weights(self, spec: Backbone, weights: str) -> str:
        if weights == "none":
            return f"Weights: none ({spec.name}'s architecture from {spec.handle}, random weights)"
        return f"Weights: keras-hub preset {_preset(spec, weights)}"


FAMILY = Hub()
