"""Inside the CNN: the first convolution's filters, feature maps at a few depths, and Grad-CAM.

Works on the classifier `build_classifier` makes (preprocessing -> nested backbone -> head), for
the small CNN and keras.applications backbones alike.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from pipeline.model.classifier import BACKBONE_LAYER, HEAD_DROPOUT, OUTPUT
from pipeline.model.families.base import spatial_layers, widest_late_spatial_layer
from pipeline.registry import Backbone


def _preprocess(model: keras.Model, x: keras.KerasTensor) -> keras.KerasTensor:
    """The classifier's preprocessing layer applied to `x` (symbolic or not), when it has one."""
    if "preprocess" in [layer.name for layer in model.layers]:
        return model.get_layer("preprocess")(x)
    return x


def first_conv_filters(model: keras.Model) -> np.ndarray | None:
    """The first convolution's learned filters (k, k, 3, count), or None when the backbone has none."""
    for layer in model.get_layer(BACKBONE_LAYER).layers:
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
            return ops.convert_to_numpy(layer.kernel)
    return None


def _blocks_by_layer(backbone: keras.Model, spec: Backbone | None) -> dict[str, str]:
    """Each top-level layer's block as the backbone's family sees them (a layer without weights
    belongs to the block of the layer before it); {} without a registry entry."""
    if spec is None:
        return {}
    from pipeline.model.backbones import layer_blocks

    assigned = {layer.name: block for layer, block in layer_blocks(backbone, spec)}
    found, current = {}, None
    for layer in backbone.layers:
        current = assigned.get(layer.name, current)
        if current is not None:
            found[layer.name] = current
    return found


def readable_name(backbone: keras.Model, name: str, blocks: dict[str, str]) -> str:
    """A layer named for a reader: its block (or its position among the backbone's spatial
    layers) and its type."""
    names = spatial_layers(backbone)
    layer = backbone.get_layer(name)
    where = blocks.get(name) or f"layer {names.index(name) + 1} of {len(names)}"
    return f"{where} ({type(layer).__name__})"


def feature_maps(
    model: keras.Model, image: np.ndarray, depths: int = 4, spec: Backbone | None = None
) -> dict[str, np.ndarray]:
    """One image's activations at `depths` layers spread from the first to the last spatial layer,
    keyed by a readable name (block, as `spec`'s family names them, and layer type)."""
    backbone = model.get_layer(BACKBONE_LAYER)
    names = spatial_layers(backbone)
    if not names:
        return {}
    picked = list(
        dict.fromkeys(names[round(i * (len(names) - 1) / max(depths - 1, 1))] for i in range(depths))
    )
    probe = keras.Model(backbone.input, [backbone.get_layer(n).output for n in picked])
    outputs = probe(_preprocess(model, ops.convert_to_tensor(image[None], dtype="float32")))
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
    blocks = _blocks_by_layer(backbone, spec)
    return {
        readable_name(backbone, name, blocks): ops.convert_to_numpy(o)[0]
        for name, o in zip(picked, outputs, strict=True)
    }


def _gradients_tensorflow(
    grad_model: keras.Model, x: keras.KerasTensor, target: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import tensorflow as tf

    with tf.GradientTape() as tape:
        activations, logits = grad_model(x, training=False)
        if logits.shape[-1] == 1:  # sigmoid: the logit of the positive class; its negative for the other
            logit = logits[:, 0]
            positive = logit > 0 if target is None else tf.fill(tf.shape(logit), target == 1)
            score = tf.where(tf.stop_gradient(positive), logit, -logit)
            chosen = tf.cast(positive, tf.int32)
        else:  # softmax: the chosen class's logit
            chosen = (
                tf.argmax(logits, axis=-1, output_type=tf.int32)
                if target is None
                else tf.fill(tf.shape(logits)[:1], target)
            )
            score = tf.gather(logits, chosen, axis=1, batch_dims=1)
    return activations.numpy(), tape.gradient(score, activations).numpy(), chosen.numpy()


def gradcam(
    model: keras.Model,
    images: np.ndarray,
    layer: str | None = None,
    target: int | None = None,
    spec: Backbone | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM heat maps (n, h, w) in [0, 1] over `layer` (default: the layer `spec`'s family
    names; without one, the backbone's last spatial layer at least 7 pixels across, as 7x7 in
    keras.applications networks at 224 px), and the class
    each map is for: the predicted class (or `target`). The score differentiated is that class's
    logit (for a sigmoid output, the logit for the positive class and its negative for the other),
    not a probability, which saturates: ReLU(sum_c mean_hw(d score / d A_c) * A_c).

    The gradient is the backend's own: tf.GradientTape under TensorFlow. Under JAX it would need
    the activations as the input of a function to differentiate, which the nested keras.applications
    graph (skip connections around the layer) does not expose without rebuilding it; so it is
    refused there rather than approximated.
    """
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(f"Grad-CAM needs the TensorFlow backend, not {keras.backend.backend()}")
    backbone = model.get_layer(BACKBONE_LAYER)
    if layer is None and spec is not None:
        from pipeline.model.families import family_of

        layer = family_of(spec).spatial_layer(backbone)
    name = layer or (widest_late_spatial_layer(backbone) if spec is None else None)
    if name is None:
        raise NotImplementedError(
            "the backbone's features are a sequence of tokens, not a feature map: Grad-CAM has no map to weigh"
        )
    inner = keras.Model(backbone.input, [backbone.get_layer(name).output, backbone.output])
    inputs = keras.Input(images.shape[1:])
    x = _preprocess(model, inputs)
    activations, features = inner(x)
    dense = model.get_layer(OUTPUT)
    logits = ops.matmul(model.get_layer(HEAD_DROPOUT)(features), dense.kernel) + dense.bias
    values, gradients, chosen = _gradients_tensorflow(
        keras.Model(inputs, [activations, logits]), ops.convert_to_tensor(images), target
    )
    weights = gradients.mean(axis=(1, 2), keepdims=True)
    heat = np.maximum((weights * values).sum(axis=-1), 0.0)
    peak = heat.max(axis=(1, 2), keepdims=True)
    return heat / np.where(peak > 0, peak, 1.0), chosen
