"""The registries as plain data: backbone families, backbones, ensemble methods.

No Keras import here, so that the configuration can check a name before any work starts. A
backbone of a known family is one line in BACKBONES; a new family is one file under
pipeline/model/families/ (building, preprocessing, blocks, Grad-CAM layer) and one line in
FAMILIES; an ensemble method is one file under pipeline/infer/ensembles/ and one line in ENSEMBLES.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    """A kind of backbone: the module that builds it, and what every backbone of it shares."""

    name: str
    module: str  # pipeline.model.families.<file>, exposing FAMILY
    pretrained: bool  # frozen first, then fine-tuned; False: trained whole from scratch
    recipe: tuple[tuple[str, object], ...] = ()  # the family's recipe defaults (dotted settings)
    extra: str = ""  # the optional dependency group it needs: make setup EXTRAS=dev,<extra>
    package: str = ""  # the import name that extra installs, checked before TensorFlow loads
    weights: str = "none"  # where pretrained weights come from: file (a notop .h5) | preset | none

    def missing(self) -> str | None:
        """One sentence when this family's optional package is not installed here, else None."""
        if not self.package or importlib.util.find_spec(self.package) is not None:
            return None
        return (
            f"backbones of the {self.name} family need the {self.package} package: run "
            f"`make setup EXTRAS=dev,{self.extra}` (or pip install -e '.[{self.extra}]')"
        )


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("keras-applications", "pipeline.model.families.applications", pretrained=True, weights="file"),
        Family(
            "keras-hub",
            "pipeline.model.families.hub",
            pretrained=True,
            extra="hub",
            package="keras_hub",
            weights="preset",
        ),
        Family("small-cnn", "pipeline.model.families.small_cnn", pretrained=False),
    )
}


@dataclass(frozen=True)
class Backbone:
    """One feature extractor: its family, how the family builds it, what its inputs must be."""

    name: str
    constructor: str  # keras.applications: the class's name; keras-hub: the preset's name
    family: str = "keras-applications"
    # How [0, 255] RGB pixels become the backbone's inputs (keras.applications' preprocess_input):
    # x * scale + offset ("tf" mode: [-1, 1] is 1/127.5 and -1), or "caffe" (BGR, ImageNet mean
    # subtracted). EfficientNetV2 and MobileNetV3 rescale inside themselves: scale 1, offset 0.
    # keras-hub presets carry their own (their image converter).
    scale: float = 1.0
    offset: float = 0.0
    caffe: bool = False
    options: tuple[tuple[str, float], ...] = ()  # constructor keywords, e.g. (("alpha", 0.25),)
    weights_file: str = ""  # the notop file keras.applications downloads for these weights
    handle: str = ""  # keras-hub: the preset on Kaggle Models, kaggle://owner/model/keras/variation/version
    architecture: str = ""  # keras-hub: the Backbone class a preset of it must hold (its config.json)
    # This backbone's own recipe defaults, measured (README "Quality ladder"): dotted settings that
    # replace the code defaults and the family's, under any file or flag.
    recipe: tuple[tuple[str, object], ...] = ()
    min_image_size: int = 32  # the smallest input the family builds without its top
    patch_size: int = 0  # transformers: the image side must be a multiple of it

    @property
    def family_entry(self) -> Family:
        """The family this backbone belongs to."""
        return FAMILIES[self.family]

    @property
    def pretrained(self) -> bool:
        """True for pretrained networks (frozen, then fine-tuned); False for the small CNN."""
        return self.family_entry.pretrained

    @property
    def model_source(self) -> str:
        """The Kaggle Model a kernel attaches for these weights (owner/model/framework/variation/
        version), or '' when they do not come from one."""
        return self.handle.removeprefix("kaggle://")

    def weights_problem(self, weights: str) -> str | None:
        """One sentence when `weights` cannot be this backbone's (read without Keras: checked
        before any work), else None."""
        if self.family_entry.weights != "preset" or weights in ("", "none", "imagenet"):
            return None
        folder = Path(weights)
        if not (folder / "config.json").is_file():
            return (
                f"model.weights = {weights!r} is no keras-hub preset folder (it has no config.json): pass the "
                f"folder a preset was saved to, or 'imagenet' for {self.handle}"
            )
        try:
            saved = json.loads((folder / "config.json").read_text()).get("class_name", "")
        except (OSError, ValueError):
            saved = "unreadable"
        if self.architecture and saved != self.architecture:
            return (
                f"model.weights = {weights!r} holds a {saved or 'model of no known class'}, but {self.name} is a "
                f"{self.architecture}: pass a preset of {self.name}'s architecture, or choose the backbone that fits it"
            )
        return None

    @property
    def recipe_defaults(self) -> dict[str, object]:
        """The settings that apply for this backbone unless a file or flag says otherwise: its
        family's recipe, then its own."""
        return {**dict(self.family_entry.recipe), **dict(self.recipe)}


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


def _hub(
    name: str, preset: str, model: str, version: int, architecture: str, size: int = 32, patch: int = 0
) -> Backbone:
    return Backbone(
        name,
        preset,
        family="keras-hub",
        handle=f"kaggle://keras/{model}/keras/{preset}/{version}",
        architecture=architecture,
        min_image_size=size,
        patch_size=patch,
    )


# keras-hub image encoders (extra [hub]); their weights come from a preset: the Kaggle Models
# handle (downloaded by kagglehub; the versions keras-hub 0.32 registers), a Kaggle Model attached
# to a kernel, or a local preset folder (--weights DIR).
HUB_BACKBONES = (
    _hub("dinov2-small", "dinov2_small", "dinov2", 1, "DINOV2Backbone", size=28, patch=14),
    _hub("dinov2-base", "dinov2_base", "dinov2", 1, "DINOV2Backbone", size=28, patch=14),
    _hub("dinov3-small", "dinov3_vit_small_lvd1689m", "dinov3", 1, "DINOV3Backbone", size=32, patch=16),
    _hub("vit-base16", "vit_base_patch16_224_imagenet", "vit", 4, "ViTBackbone", patch=16),
    _hub("hub-efficientnet-b0", "efficientnet_b0_ra_imagenet", "efficientnet", 2, "EfficientNetBackbone"),
    _hub(
        "hub-efficientnet2-rw-s", "efficientnet2_rw_s_ra2_imagenet", "efficientnet", 2, "EfficientNetBackbone"
    ),
    _hub("hub-resnetv2-50", "resnet_v2_50_imagenet", "resnetv2", 3, "ResNetBackbone"),
    _hub("hub-mobilenetv3-large", "mobilenet_v3_large_100_imagenet", "mobilenetv3", 1, "MobileNetBackbone"),
    _hub("siglip-base16", "siglip_base_patch16_224", "siglip", 1, "SigLIPBackbone", patch=16),
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
        Backbone("small-cnn", "", family="small-cnn", scale=1 / 255.0, min_image_size=8),
        *HUB_BACKBONES,
    ]
}
BACKBONE_NAMES: tuple[str, ...] = tuple(BACKBONES)


# Ensemble methods of `blend --method`: name -> the module implementing it (one file each, exposing
# METHOD; see pipeline.infer.ensembles). `auto` picks the competition metric's own (its `ensemble`).
ENSEMBLES: dict[str, str] = {
    "weighted": "pipeline.infer.ensembles.weighted",  # probabilities, weights of least OOF log loss
    "rank": "pipeline.infer.ensembles.rank",  # ranks, weights chosen greedily on the metric (ROC AUC)
    "greedy": "pipeline.infer.ensembles.greedy",  # Caruana's forward selection on the metric
    "geometric": "pipeline.infer.ensembles.geometric",  # weighted geometric mean, weights chosen greedily
}


def get_backbone(name: str) -> Backbone:
    """The registry entry for `name`, or a KeyError listing the choices."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]
