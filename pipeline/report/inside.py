"""Inside the CNN: the first convolution's filters, feature maps at a few depths, and Grad-CAM.

Works on the classifier `build_classifier` makes (preprocessing -> nested backbone -> head), for
the small CNN and keras.applications backbones alike.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from pipeline.model.classifier import BACKBONE_LAYER, HEAD_DROPOUT, OUTPUT


def _preprocess(model: keras.Model, x: keras.KerasTensor) -> keras.KerasTensor:
    """The classifier's preprocessing layer applied to `x` (symbolic or not), when it has one."""
    if "preprocess" in [layer.name for layer in model.layers]:
        return model.get_layer("preprocess")(x)
    return x


def spatial_layers(backbone: keras.Model) -> list[str]:
    """Names of the backbone's layers with an image-shaped (batch, h, w, channels) output, in order."""
    return [layer.name for layer in backbone.layers[1:] if len(layer.output.shape) == 4]


def first_conv_filters(model: keras.Model) -> np.ndarray | None:
    """The first convolution's learned filters (k, k, 3, count), or None when the backbone has none."""
    for layer in model.get_layer(BACKBONE_LAYER).layers:
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
            return ops.convert_to_numpy(layer.kernel)
    return None


def readable_name(backbone: keras.Model, name: str) -> str:
    """A layer named for a reader: its block (from the backbone's naming, or its position among the
    backbone's spatial layers when Keras generated the name) and its type."""
    from pipeline.model.backbones import block_of

    names = spatial_layers(backbone)
    layer = backbone.get_layer(name)
    where = block_of(name) or f"layer {names.index(name) + 1} of {len(names)}"
    return f"{where} ({type(layer).__name__})"


def feature_maps(model: keras.Model, image: np.ndarray, depths: int = 4) -> dict[str, np.ndarray]:
    """One image's activations at `depths` layers spread from the first to the last spatial layer,
    keyed by a readable name (block and layer type)."""
    backbone = model.get_layer(BACKBONE_LAYER)
    names = spatial_layers(backbone)
    picked = list(
        dict.fromkeys(names[round(i * (len(names) - 1) / max(depths - 1, 1))] for i in range(depths))
    )
    probe = keras.Model(backbone.input, [backbone.get_layer(n).output for n in picked])
    outputs = probe(_preprocess(model, ops.convert_to_tensor(image[None], dtype="float32")))
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
    return {
        readable_name(backbone, name): ops.convert_to_numpy(o)[0]
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
    model: keras.Model, images: np.ndarray, layer: str | None = None, target: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM heat maps (n, h, w) in [0, 1] over `layer` (default: the backbone's last spatial
    layer at least 7 pixels across, as 7x7 in keras.applications networks at 224 px), and the class
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
    names = spatial_layers(backbone)
    sides = {n: backbone.get_layer(n).output.shape[1] or 0 for n in names}
    wide = [n for n in names if sides[n] >= min(7, max(sides.values()))]
    name = layer or wide[-1]
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
