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
    constructor: str  # attribute of keras.applications; "" for the from-scratch CNN
    # How [0, 255] RGB pixels become the backbone's inputs (keras.applications' preprocess_input):
    # x * scale + offset ("tf" mode: [-1, 1] is 1/127.5 and -1), or "caffe" (BGR, ImageNet mean
    # subtracted). EfficientNetV2 and MobileNetV3 rescale inside themselves: scale 1, offset 0.
    scale: float = 1.0
    offset: float = 0.0
    caffe: bool = False
    options: tuple[tuple[str, float], ...] = ()  # constructor keywords, e.g. (("alpha", 0.25),)
    weights_file: str = ""  # the notop file keras.applications downloads for these weights
    # The family's recipe defaults, measured (README "Quality ladder"): dotted settings that replace
    # the code defaults for this backbone, under any file or flag.
    recipe: tuple[tuple[str, object], ...] = ()
    min_image_size: int = 32  # the smallest input keras.applications builds without its top

    @property
    def pretrained(self) -> bool:
        """True for keras.applications networks (frozen, then fine-tuned)."""
        return bool(self.constructor)


TF_MODE = {"scale": 1 / 127.5, "offset": -1.0}  # [-1, 1]
_KERAS = "_weights_tf_dim_ordering_tf_kernels"


# Measured on dogs-vs-cats-mini with the real alpha=0.25 weights (README "Quality ladder"):
# against 3 head + 5 fine epochs and the top 30% unfrozen, 6 head epochs took test log loss from
# 0.185 to 0.168, 8 fine epochs to 0.172, the top 60% to 0.179 (means of 2 seeds). Then `train` +
# `predict` (each with 1 refit model), beside the hand-written reference in one run: 5 folds with
# the backbone in every head epoch 0.143-0.146 in 5.8x the reference's time; 3 folds with the head
# on features computed once 0.144-0.150 in 2.6-3.1x; the same with 6 fine epochs 0.151 in 2.4x.
MOBILENET_RECIPE = (
    ("train.head_epochs", 6),
    ("train.fine_epochs", 6),
    ("train.unfreeze", 0.6),
    ("train.folds", 3),
    ("train.head_cache_features", True),
)


def _mobilenet(alpha: float) -> Backbone:
    code = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}[alpha]
    return Backbone(
        f"mobilenet-{alpha}",
        "MobileNet",
        **TF_MODE,
        options=(("alpha", alpha),),
        weights_file=f"mobilenet_{code}_224_tf_no_top.h5",
        recipe=MOBILENET_RECIPE,
    )


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        *(
            Backbone(
                f"efficientnetv2-{v}",
                f"EfficientNetV2{v.upper()}",
                weights_file=f"efficientnetv2-{v}_notop.h5",
            )
            for v in ("b0", "b1", "b2", "b3", "s", "m")
        ),
        *(
            Backbone(
                f"resnet{depth}v2",
                f"ResNet{depth}V2",
                **TF_MODE,
                weights_file=f"resnet{depth}v2{_KERAS}_notop.h5",
            )
            for depth in (50, 101, 152)
        ),
        *(_mobilenet(alpha) for alpha in (0.25, 0.5, 0.75, 1.0)),
        Backbone(
            "mobilenetv2",
            "MobileNetV2",
            **TF_MODE,
            weights_file=f"mobilenet_v2{_KERAS}_1.0_224_no_top.h5",
        ),
        Backbone(
            "mobilenetv3-small",
            "MobileNetV3Small",
            weights_file="weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        ),
        Backbone(
            "mobilenetv3-large",
            "MobileNetV3Large",
            weights_file="weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        ),
        Backbone("vgg16", "VGG16", caffe=True, weights_file=f"vgg16{_KERAS}_notop.h5"),
        Backbone(
            "xception", "Xception", **TF_MODE, weights_file=f"xception{_KERAS}_notop.h5", min_image_size=71
        ),
        Backbone("small-cnn", "", scale=1 / 255.0, min_image_size=8),
    ]
}
BACKBONE_NAMES: tuple[str, ...] = tuple(BACKBONES)


# Ensemble methods of `blend --method`: name -> the module implementing it (one file each, exposing
# METHOD; see pipeline.infer.ensembles). `auto` picks the competition metric's own (its `ensemble`).
ENSEMBLES: dict[str, str] = {
    "weighted": "pipeline.infer.ensembles.weighted",  # probabilities, weights of least OOF log loss
    "rank": "pipeline.infer.ensembles.rank",  # ranks, weights chosen greedily on the metric (ROC AUC)
    "greedy": "pipeline.infer.ensembles.greedy",  # Caruana's forward selection on the metric
}


def get_backbone(name: str) -> Backbone:
    """The registry entry for `name`, or a KeyError listing the choices."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]
