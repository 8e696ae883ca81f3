"""Every setting of a run, declared once: its type, default, help text and allowed values.

Code defaults < Kaggle notebook paths < TOML presets/files (`--config`) < command-line flags.
The command line (flags grouped by section in `--help`), the validation of choices and the
tuning search space are all derived from the declarations below. One `Config` is built per
run, printed at its start and saved beside its outputs as `config.json` (which `--config`
reads back).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import os
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text
from pipeline.competitions import get_competition
from pipeline.registry import BACKBONE_NAMES, BACKBONES, ENSEMBLES, Backbone

KAGGLE_NOTEBOOK_ENV = "KAGGLE_KERNEL_RUN_TYPE"
DEFAULT_COMPETITION = "dogs-vs-cats-redux-kernels-edition"
CONFIG_FILE = "config.json"  # the configuration saved beside every output (`--config` reads it)
PRESETS_DIR = Path(__file__).with_name("configs")  # `--config demo` reads configs/demo.toml
TTA_VIEWS = ("original", "hflip", "zoom", "zoom-hflip")  # implemented in pipeline.infer.tta
SPACE_KINDS = ("choice", "int", "float", "log")
ACCELERATORS = ("gpu", "tpu", "none")
BACKENDS = ("tensorflow", "jax")
RECIPES = ("auto", "finetune", "stack")  # what `train` builds (pipeline.flow.train)


class ConfigError(ValueError):
    """A configuration value or file is wrong; the message says which and how to fix it."""


def duration(text: str | float) -> float:
    """Seconds from '3h', '90m', '45s' or a plain number of seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    value = str(text).strip()
    try:
        if value and value[-1] in units:
            return float(value[:-1]) * units[value[-1]]
        return float(value)
    except ValueError as error:
        raise ValueError(f"{text!r} is not a duration such as 3h, 90m or 600") from error


def switch(value: str | bool) -> str:
    """auto | on | off from a word or a boolean (TOML true/false, --internet true)."""
    text = str(value).strip().lower()
    return {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}.get(text, text)


AUTO_RATE = 0.0  # a learning rate of "auto": the learning-rate finder's suggestion, read at train time


def learning_rate(value: str | float) -> float:
    """A learning rate from a number or "auto" (AUTO_RATE)."""
    return AUTO_RATE if str(value).strip().lower() == "auto" else float(value)


def internet_enabled(config: Config) -> bool:
    """Whether the kernel gets internet: kernel.internet, or (auto) unless a code competition."""
    if config.kernel.internet != "auto":
        return config.kernel.internet == "on"
    return not get_competition(config.competition).code_competition


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    each: bool = False,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
    within: str | None = None,
) -> Any:
    """Declare one setting. `choices`: allowed values (`each`: of every comma-separated item);
    `flag`: its command-line name when not `--<name>`; `parse`: how text becomes the value;
    `within`: the numbers allowed, as an interval such as "[0, 1)" or "(0, inf)"."""
    if within is not None:
        Interval.parse(within)  # a malformed declaration fails at import, not in a user's run
    metadata = {
        "help": help,
        "choices": choices,
        "each": each,
        "flag": flag,
        "parse": parse,
        "within": within,
    }
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Interval:
    """The numbers a setting allows: [low, high] with either end open; inf for no bound."""

    low: float
    high: float
    low_open: bool
    high_open: bool

    @classmethod
    def parse(cls, text: str) -> Interval:
        """The interval written as "[0, 1)", "(0, inf)", "[1, inf)"."""
        low, high = (float(part) for part in text[1:-1].split(","))
        if text[0] not in "[(" or text[-1] not in ")]" or low > high:
            raise ValueError(f"{text!r} is not an interval such as [0, 1) or (0, inf)")
        return cls(low, high, text[0] == "(", text[-1] == ")")

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        """In words: 'above 0', 'at least 1', 'in [0, 1)'."""
        if self.high == float("inf"):
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        return (
            f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        )


@dataclass(frozen=True)
class PathsConfig:
    """Where competition files come from and where the pipeline writes (see pipeline.layout)."""

    data_root: str = setting("data", "folder of downloaded and unpacked data: data/<slug>/")
    input_root: str = setting(
        "", "read-only folder of competition files (Kaggle: /kaggle/input); '' = data root"
    )
    runs_root: str = setting("runs", "folder of run outputs: runs/<slug>/<run>/")
    submissions_root: str = setting("submissions", "folder of submission files and the ledger")


@dataclass(frozen=True)
class DataConfig:
    """How images become batches."""

    image_size: int = setting(224, "square side of model inputs in pixels", within="[8, 4096]")
    resize_mode: str = setting(
        "crop",
        "keep the aspect ratio by centre crop or letterbox, or stretch",
        choices=("crop", "pad", "stretch"),
    )
    cache: str = setting(
        "auto",
        "cache of resized uint8 images; auto: memory when it fits in half the memory available, else disk",
        choices=("auto", "memory", "disk", "none"),
    )
    batch_size: int = setting(32, "images per batch (per device)", within="[1, inf)")
    shuffle_buffer: int = setting(2048, "images in the shuffle buffer", within="[0, inf)")
    seed: int = setting(
        42, "random seed of splits, shuffling, augmentation and initial weights", within="[0, 4294967295]"
    )
    deterministic: bool = setting(
        False, "identical batches on every run (augmentation runs serially: slower)"
    )
    validation_workers: int = setting(8, "threads that validate images while indexing", within="[1, inf)")


@dataclass(frozen=True)
class AugmentConfig:
    """Keras augmentation layers; 0 switches one off."""

    where: str = setting(
        "pipeline",
        "where augmentation runs: tf.data on the CPU, or inside the model (faster on a GPU)",
        choices=("pipeline", "model"),
        flag="--augment-where",
    )
    flip: bool = setting(True, "random horizontal flips")
    rotation: float = setting(0.05, "random rotation, as a fraction of a full turn", within="[0, 1]")
    zoom: float = setting(0.1, "random zoom, as a fraction of the side", within="[0, 1)")
    translation: float = setting(0.1, "random translation, as a fraction of the side", within="[0, 1)")
    contrast: float = setting(0.1, "random contrast factor", within="[0, 1]")
    brightness: float = setting(0.1, "random brightness factor", within="[0, 1]")
    crop: float = setting(
        0.0, "fraction of the side cut by RandomCrop (centre crop at evaluation)", within="[0, 0.5)"
    )
    randaugment_magnitude: float = setting(
        0.0,
        "RandAugment magnitude in [0, 1]; 0 = off",
        flag="--randaugment",
        within="[0, 1]",
    )
    randaugment_ops: int = setting(2, "RandAugment operations per image", within="[1, inf)")
    mixup_alpha: float = setting(0.0, "MixUp alpha; 0 = off", flag="--mixup", within="[0, inf)")
    cutmix_alpha: float = setting(0.0, "CutMix alpha; 0 = off", flag="--cutmix", within="[0, inf)")


@dataclass(frozen=True)
class ModelConfig:
    """The network: a keras.applications backbone (or the small CNN) and its head."""

    backbone: str = setting("efficientnetv2-b0", "feature extractor", choices=BACKBONE_NAMES)
    weights: str = setting(
        "imagenet", "imagenet | none | path to a weights file (Kaggle: an attached dataset)"
    )
    dropout: float = setting(0.2, "dropout before the output layer", within="[0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    """Two-phase transfer learning: head on a frozen backbone, then fine-tuning of the top blocks."""

    recipe: str = setting(
        "auto",
        "what `train` builds: auto (a portfolio chosen on out-of-fold scores within the time budget: "
        "stacked features, fine-tuned folds, pseudo-labels, their ensemble), finetune (two-phase folds "
        "and refits) or stack (stacked features alone)",
        choices=RECIPES,
    )
    run_name: str = setting("", "folder name under runs/<slug>/; '' = <backbone>-<size>px")
    folds: int = setting(
        5, "stratified folds of `train` (`train --holdout` trains one split)", within="[2, inf)"
    )
    validation_fraction: float = setting(
        0.2,
        "validation share of the holdout split (fold 0 of 1/fraction folds)",
        within="(0, 0.5)",
    )
    head_epochs: int = setting(3, "epochs with the backbone frozen", flag="--epochs-head", within="[1, inf)")
    head_learning_rate: float = setting(
        1e-3,
        "learning rate of the head phase; auto (stored as 0): the suggestion of `lr-find`",
        flag="--lr-head",
        within="[0, inf)",
        parse=learning_rate,
    )
    head_cache_features: bool = setting(
        False,
        "head phase on backbone features computed once, images unaugmented (always when augmentation is off)",
    )
    fine_epochs: int = setting(5, "epochs of fine-tuning; 0 = none", flag="--epochs-fine", within="[0, inf)")
    fine_learning_rate: float = setting(
        1e-4,
        "peak learning rate of fine-tuning; auto (stored as 0): the suggestion of `lr-find`",
        flag="--lr-fine",
        within="[0, inf)",
        parse=learning_rate,
    )
    unfreeze: float = setting(
        0.3, "top blocks to unfreeze: a fraction (<= 1; 1 = all) or a count (> 1)", within="(0, inf)"
    )
    warmup_fraction: float = setting(
        0.1, "share of fine-tuning steps of linear warmup before cosine decay", within="[0, 1)"
    )
    weight_decay: float = setting(1e-4, "AdamW weight decay", within="[0, inf)")
    label_smoothing: float = setting(0.0, "label smoothing of the loss", within="[0, 0.5)")
    ema: bool = setting(
        False, "keep an exponential moving average of the weights (Keras use_ema): validated and saved"
    )
    patience: int = setting(3, "early-stopping patience in epochs (best weights restored)", within="[0, inf)")
    refit: int = setting(
        1,
        "after the folds, this many models trained on all the images for the epochs the folds chose (0 = none)",
        within="[0, inf)",
    )
    pseudo_label: str = setting(
        "",
        "run whose test predictions label the confident test images, added to every fold's training "
        "side (never its validation side); '' = off",
    )
    pseudo_threshold: float = setting(
        0.95, "confidence (max of P and 1 - P) a test image needs to be pseudo-labelled", within="(0.5, 1]"
    )
    pseudo_weight: float = setting(
        1.0,
        "weight of a pseudo-labelled image against a labelled one (stack: sample weights)",
        within="(0, 1]",
    )
    time_budget: float = setting(
        0.0,
        "seconds `train` may work (3h, 90m): no fold or portfolio member is started that would not fit; "
        "0 = none (recipe auto: 20m here, the session's limit in a kernel)",
        parse=duration,
        within="[0, inf)",
    )
    class_weight: str = setting(
        "auto",
        "weights of the classes in the loss (fine-tuning) and the stack's fit: balanced (inverse "
        "frequency), none, or auto (balanced when the largest class has over 3x the smallest's images)",
        choices=("auto", "balanced", "none"),
    )
    mixed_precision: str = setting(
        "auto", "auto: float16 on GPU, bfloat16 on TPU, off on CPU", choices=("auto", "on", "off")
    )
    jit_compile: str = setting("auto", "XLA; auto: on for GPU/TPU, off on CPU", choices=("auto", "on", "off"))
    steps_per_execution: int = setting(
        1, "batches per compiled call (more: less overhead on TPU)", within="[1, inf)"
    )


@dataclass(frozen=True)
class PredictConfig:
    """How a finished run's models become one prediction per test image."""

    run: str = setting("", "run folder under runs/<slug>/ to predict with; '' = the newest finished run")
    tta: str = setting("original,hflip", "comma-separated TTA views", choices=TTA_VIEWS, each=True)
    ensemble: str = setting(
        "all",
        "models whose test predictions are averaged: all (folds and refits), folds, refit (the refit models alone)",
        choices=("all", "folds", "refit"),
    )
    average: str = setting(
        "auto",
        "averaging space; auto: the better on OOF predictions",
        choices=("auto", "probability", "logit"),
    )


@dataclass(frozen=True)
class StackConfig:
    """Stacked bottleneck features (`stack`): frozen backbones' pooled features, a linear head per fold."""

    backbones: str = setting(
        "", "comma-separated pretrained backbones whose features are stacked; '' = model.backbone"
    )
    # auto: features at every size of AUTO_STACK_SIZES, the blocks kept by forward selection on
    # out-of-fold log loss (on dogs-vs-cats-mini with MobileNet 0.25: 160 alone 0.166, 160+224+288
    # 0.107, 224+288+352 0.099, 192+256+320 0.105; README "Measured quality").
    sizes: str = setting(
        "auto",
        "comma-separated image sizes at which each backbone sees every image; auto: those of "
        "160,224,288,352 that out-of-fold scores keep",
        flag="--sizes",
    )
    views: str = setting(
        "original,hflip",
        "views whose features are averaged (flip-invariant features)",
        choices=TTA_VIEWS,
        each=True,
    )
    c: float = setting(
        0.0,
        "inverse L2 strength of the logistic regression; 0 = chosen in each fold by inner cross-validation",
        within="[0, inf)",
        flag="--stack-c",
    )


@dataclass(frozen=True)
class BlendConfig:
    """Blending finished runs (`blend`) on their out-of-fold predictions."""

    method: str = setting(
        "auto",
        "how members combine: weighted (OOF log loss), rank (ranks; ROC AUC), greedy (forward selection "
        "on the metric); auto: the competition metric's own",
        choices=("auto", *ENSEMBLES),
        flag="--method",
    )


DEFAULT_SPACE = {
    "model.backbone": "choice:efficientnetv2-b0,resnet50v2",
    "data.image_size": "choice:160,192,224",
    "data.batch_size": "choice:16,32",
    "train.head_learning_rate": "log:1e-4:3e-3",
    "train.fine_learning_rate": "log:1e-5:3e-4",
    "train.unfreeze": "float:0.1:0.6",
    "model.dropout": "float:0.0:0.5",
    "train.weight_decay": "log:1e-6:1e-3",
    "train.label_smoothing": "float:0.0:0.15",
    "augment.randaugment_magnitude": "float:0.0:0.6",
    "augment.mixup_alpha": "float:0.0:0.4",
    "train.head_epochs": "int:1:4",
    "train.fine_epochs": "int:0:6",
}


@dataclass(frozen=True)
class TuneConfig:
    """Optuna search of the recipe."""

    study: str = setting("recipe", "Optuna study name (continued if it exists)")
    storage: str = setting("", "Optuna storage URL; '' = a journal file under runs/<slug>/tune/")
    trials: int = setting(20, "trials per worker and per invocation", within="[1, inf)")
    timeout: float = setting(
        0.0, "time limit per worker: 3h, 90m, 600; 0 = none", parse=duration, within="[0, inf)"
    )
    workers: int = setting(1, "parallel worker processes on this machine", within="[1, inf)")
    pruner: str = setting("median", "pruning of bad trials", choices=("median", "hyperband", "none"))
    # TOML table [tune.space]: "<section>.<setting>" = "choice:a,b" | "int:lo:hi" | "float:lo:hi" |
    # "log:lo:hi" (log-uniform). The table replaces this default space as a whole.
    space: dict = setting(DEFAULT_SPACE, "search space by dotted setting name (TOML [tune.space] only)")


@dataclass(frozen=True)
class KernelConfig:
    """Running the pipeline as a Kaggle kernel (notebook session) on Kaggle's GPUs or TPU."""

    accelerator: str = setting(
        "gpu", "Kaggle machine: gpu (T4 x2), tpu (v5e-8) or none (CPU)", choices=ACCELERATORS
    )
    slug: str = setting("", "kernel slug under your username; '' = <competition>-pipeline")
    task: str = setting(
        "train",
        "what the kernel runs: train (k folds, predict, report), tune (the Optuna study of `tune`), "
        "or all (tune, then train with the best parameters, predict, report)",
        choices=("train", "tune", "all"),
    )
    tune_share: float = setting(
        0.5, "task all: the share of the kernel's time budget given to tuning", within="(0, 1)"
    )
    shards: int = setting(
        1,
        "kernels pushed at once, each owning a share of the work: fold k (then the refits) to kernel "
        "k mod N for train, an equal share of tune.trials for tune; gathered by `kernel output`",
        within="[1, 100]",
    )
    internet: str = setting(
        "auto",
        "internet in the kernel; auto: on (keras.applications downloads the weights) unless the "
        "competition is a code competition, whose kernels must run offline",
        choices=("auto", "on", "off"),
        parse=switch,
    )
    weights_dataset: str = setting(
        "", "dataset owner/slug holding the backbone's *_notop.h5 (attached read-only)"
    )
    model_sources: str = setting("", "comma-separated Kaggle models owner/model/framework/variation/version")
    state_dataset: str = setting(
        "", "dataset owner/slug carrying the previous version's state (set by `kernel push --resume`)"
    )


@dataclass(frozen=True)
class Config:
    """Everything a run depends on."""

    competition: str = setting(DEFAULT_COMPETITION, "competition slug (pipeline/competitions.toml)")
    backend: str = setting(
        "tensorflow",
        "Keras backend (default: KERAS_BACKEND, else tensorflow); jax for Kaggle's TPUs",
        choices=BACKENDS,
    )
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    stack: StackConfig = field(default_factory=StackConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    kernel: KernelConfig = field(default_factory=KernelConfig)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain nested dictionaries."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The configuration as indented JSON, the form saved with outputs."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, folder: Path) -> Path:
        """Write the configuration as <folder>/config.json (whole, then renamed); return its path."""
        return write_text(folder / CONFIG_FILE, self.to_json() + "\n")


@dataclass(frozen=True)
class Setting:
    """One declared setting, as the command line and validation see it."""

    key: str  # dotted: data.image_size
    section: str  # "" for top-level settings
    name: str
    default: Any
    kind: type
    help: str
    choices: tuple[str, ...] | None
    each: bool
    flag: str
    parse: Callable[[str], Any] | None
    within: Interval | None  # the numbers allowed


def _section_classes() -> dict[str, type]:
    return {
        f.name: f.default_factory
        for f in dataclasses.fields(Config)
        if dataclasses.is_dataclass(f.default_factory)
    }


def section_title(section: str) -> str:
    """The first line of a section's docstring without its full stop, for --help group titles."""
    doc = (_section_classes()[section].__doc__ or "") if section else "The competition and the Keras backend"
    return doc.strip().splitlines()[0].rstrip(".")


def _settings_of(cls: type, section: str) -> Iterator[Setting]:
    instance = cls()
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        default = getattr(instance, f.name)
        meta = f.metadata
        yield Setting(
            key=f"{section}.{f.name}" if section else f.name,
            section=section,
            name=f.name,
            default=default,
            kind=type(default),
            help=meta["help"],
            choices=meta["choices"],
            each=meta["each"],
            flag=meta["flag"] or "--" + f.name.replace("_", "-"),
            parse=meta["parse"],
            within=Interval.parse(meta["within"]) if meta["within"] else None,
        )


def settings() -> list[Setting]:
    """Every declared setting, top-level first, then section by section."""
    found = list(_settings_of(Config, ""))
    for section, cls in _section_classes().items():
        found.extend(_settings_of(cls, section))
    return found


def settings_by_key() -> dict[str, Setting]:
    """Every declared setting by its dotted key."""
    return {s.key: s for s in settings()}


def parse_space_entry(key: str, spec: str) -> tuple[str, list[Any]]:
    """(kind, values) of one search-space entry such as 'log:1e-4:3e-3' or 'choice:a,b'."""
    kind, _, rest = str(spec).partition(":")
    where = f"tune.space[{key!r}] = {spec!r}"
    if kind not in SPACE_KINDS or not rest:
        raise ConfigError(f"{where}: write choice:a,b | int:lo:hi | float:lo:hi | log:lo:hi")
    if kind == "choice":
        return kind, [_number(v.strip()) for v in rest.split(",") if v.strip()]
    try:
        low, high = (int(v) if kind == "int" else float(v) for v in rest.split(":"))
    except ValueError as error:
        raise ConfigError(f"{where}: {kind} needs two numbers lo:hi ({error})") from error
    if low > high or (kind == "log" and low <= 0):
        raise ConfigError(f"{where}: needs lo <= hi" + (" and lo > 0" if kind == "log" else ""))
    return kind, [low, high]


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _coerce(value: Any, spec: Setting, where: str) -> Any:
    """Convert `value` to the setting's type, or raise a ConfigError naming `where`."""
    if spec.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if spec.kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table of dotted setting names, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if spec.kind in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if spec.kind is int and isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    try:
        return spec.parse(value) if spec.parse else spec.kind(value)
    except (TypeError, ValueError) as error:
        kind = {int: "whole number", float: "number"}.get(spec.kind, spec.kind.__name__)
        raise ConfigError(f"{where}: expected a {kind}, got {value!r}") from error


def apply_settings(config: Config, values: dict[str, Any], source: str) -> Config:
    """Return `config` with dotted or nested `values` applied; unknown keys are errors."""
    known = settings_by_key()
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key in _section_classes():
            flat.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            flat[key] = value
    sections = {name: getattr(config, name) for name in _section_classes()}
    top: dict[str, Any] = {}
    for key, value in flat.items():
        spec = known.get(key)
        if spec is None:
            section = key.rpartition(".")[0]
            if section and section not in sections:
                raise ConfigError(
                    f"{source}: unknown section {section!r} in {key!r} (known: {sorted(sections)})"
                )
            names = sorted(s.name for s in known.values() if s.section == section)
            raise ConfigError(f"{source}: unknown setting {key!r}; [{section or 'top level'}] has {names}")
        coerced = _coerce(value, spec, f"{source}: {key}")
        if spec.section:
            sections[spec.section] = dataclasses.replace(sections[spec.section], **{spec.name: coerced})
        else:
            top[spec.name] = coerced
    return dataclasses.replace(config, **sections, **top)


def environment_defaults(environ: dict[str, str]) -> dict[str, Any]:
    """Settings the environment gives when nothing else does: KERAS_BACKEND, if it names one we run on."""
    backend = environ.get("KERAS_BACKEND", "")
    return {"backend": backend} if backend in BACKENDS else {}


def use_backend(name: str) -> None:
    """Make Keras run on `name`: set before Keras is first imported, or a clear error when Keras is
    already running on another backend (its backend is fixed at import)."""
    import sys

    if name == "jax" and importlib.util.find_spec("jax") is None:
        raise ConfigError(
            "backend = 'jax' but JAX is not installed here: run `make setup EXTRAS=dev,jax` "
            "(or `pip install 'jax>=0.4.35'`), or choose --backend tensorflow."
        )
    loaded = sys.modules.get("keras")
    if loaded is None:
        os.environ["KERAS_BACKEND"] = name
        return
    current = loaded.backend.backend()
    if current != name:
        raise ConfigError(
            f"backend = {name!r}, but Keras was already imported on {current!r} in this process: choose the "
            f"backend before Keras is imported (KERAS_BACKEND={name} in the environment, or the first cell "
            "of a notebook), or run the command in a new process."
        )


def kaggle_notebook_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Path settings for a Kaggle notebook session: inputs read-only, outputs under /kaggle/working."""
    environ = dict(os.environ) if environ is None else environ
    if KAGGLE_NOTEBOOK_ENV not in environ:
        return {}
    return {
        "paths.input_root": "/kaggle/input",
        "paths.data_root": "/kaggle/working/data",
        "paths.runs_root": "/kaggle/working/runs",
        "paths.submissions_root": "/kaggle/working/submissions",
    }


def _check_choices(config: Config) -> None:
    values = config.to_dict()
    for spec in settings():
        if spec.choices is None:
            continue
        value = values[spec.section][spec.name] if spec.section else values[spec.name]
        items = [v.strip() for v in str(value).split(",") if v.strip()] if spec.each else [value]
        wrong = [v for v in items if v not in spec.choices]
        if wrong or not items:
            close = difflib.get_close_matches(str(wrong[0]) if wrong else "", spec.choices, n=3, cutoff=0.5)
            hint = (
                f"did you mean {' or '.join(close)}?" if close else f"choose from {', '.join(spec.choices)}"
            )
            raise ConfigError(f"{spec.key} = {value!r}: {hint}")


def _check_ranges(config: Config) -> None:
    values = config.to_dict()
    for spec in settings():
        value = values[spec.section][spec.name] if spec.section else values[spec.name]
        if spec.within is not None and value not in spec.within:
            raise ConfigError(f"{spec.key} = {value!r}: must be {spec.within.describe()}")


def _check_space(space: dict[str, str]) -> None:
    known = settings_by_key()
    for key, spec in space.items():
        if key not in known or known[key].section in ("", "paths", "tune", "kernel", "stack"):
            raise ConfigError(
                f"tune.space has {key!r}, which is not a setting that can be tuned; use dotted names "
                "such as 'model.backbone' or 'train.head_learning_rate'"
            )
        kind, values = parse_space_entry(key, spec)
        within = known[key].within
        if within is not None and any(isinstance(v, str) or v not in within for v in values):
            raise ConfigError(f"tune.space[{key!r}] = {spec!r}: {key} must be {within.describe()}")
        choices = known[key].choices
        if kind == "choice" and choices and not known[key].each:
            wrong = [v for v in values if v not in choices]
            if wrong:
                raise ConfigError(f"tune.space[{key!r}] has {wrong}: choose from {', '.join(choices)}")


def validate(config: Config) -> Config:
    """Check choices (registries included), ranges and the search space; return the config unchanged."""
    try:
        get_competition(config.competition)
    except KeyError as error:
        raise ConfigError(str(error.args[0])) from error
    _check_choices(config)
    _check_ranges(config)
    _check_space(config.tune.space)
    backbone = BACKBONES[config.model.backbone]
    check_image_size(backbone, config.data.image_size, "data.image_size")
    if (missing := backbone.family_entry.missing()) is not None:
        raise ConfigError(f"model.backbone = {backbone.name!r}: {missing}")
    if (problem := backbone.weights_problem(config.model.weights)) is not None:
        raise ConfigError(problem)
    if config.augment.crop > 0 and config.augment.where == "model":
        raise ConfigError("augment.crop needs augment.where = 'pipeline' (the model takes fixed-size images)")
    if not stack_sizes(config):
        raise ConfigError("stack.sizes is empty: give one image size at least, such as 160")
    return config


def check_image_size(backbone: Backbone, size: int, setting_name: str) -> None:
    """Refuse a size the backbone cannot take: under its smallest input, or (transformers) not a
    multiple of its patch size."""
    if size < backbone.min_image_size:
        raise ConfigError(
            f"{setting_name} = {size}: {backbone.name} needs at least {backbone.min_image_size} px"
        )
    if backbone.patch_size and size % backbone.patch_size:
        below = size - size % backbone.patch_size
        raise ConfigError(
            f"{setting_name} = {size}: {backbone.name} cuts images into {backbone.patch_size}-px patches; "
            f"use a multiple of {backbone.patch_size}, such as {max(below, backbone.patch_size)} or "
            f"{below + backbone.patch_size}"
        )


def stack_backbones(config: Config) -> list[str]:
    """The backbones `stack` uses: stack.backbones, else model.backbone."""
    return [b.strip() for b in (config.stack.backbones or config.model.backbone).split(",") if b.strip()]


AUTO_STACK_SIZES = (160, 224, 288, 352)  # stack.sizes = auto: the candidates, before selection


def stack_sizes(config: Config) -> list[int]:
    """The image sizes `stack` computes features at (stack.sizes = auto: every candidate), as
    numbers (ConfigError for anything else)."""
    if config.stack.sizes.strip() == "auto":
        return list(AUTO_STACK_SIZES)
    try:
        return [int(v) for v in config.stack.sizes.split(",") if v.strip()]
    except ValueError as error:
        raise ConfigError(
            f"stack.sizes = {config.stack.sizes!r}: write whole numbers such as 128,160,224"
        ) from error


def sizes_for(config: Config, backbone: Backbone) -> list[int]:
    """The sizes one backbone's stack blocks are computed at: stack.sizes as given; for auto each
    candidate rounded to a size the backbone takes (a multiple of its patch, its smallest input)."""
    sizes = stack_sizes(config)
    if config.stack.sizes.strip() != "auto":
        return sizes
    patch = backbone.patch_size or 1
    rounded = [max(backbone.min_image_size, patch * max(1, round(size / patch))) for size in sizes]
    return list(dict.fromkeys(rounded))


def check_stack(config: Config) -> None:
    """Refuse, before any work, a stack of backbones without ImageNet weights or sizes they cannot take."""
    sizes = stack_sizes(config)
    for name in stack_backbones(config):
        backbone = BACKBONES.get(name)
        if backbone is None or not backbone.pretrained:
            known = ", ".join(b.name for b in BACKBONES.values() if b.pretrained)
            raise ConfigError(f"stack.backbones has {name!r}: choose pretrained backbones among {known}")
        if max(sizes) > 4096:
            raise ConfigError(f"stack.sizes = {config.stack.sizes!r}: {name} needs sizes up to 4096")
        for size in sizes_for(config, backbone):
            check_image_size(backbone, size, "stack.sizes")
        if (missing := backbone.family_entry.missing()) is not None:
            raise ConfigError(f"stack.backbones has {name!r}: {missing}")


def resolve_config_file(name: str | Path) -> Path:
    """A TOML/JSON file path, or the preset `pipeline/configs/<name>.toml` when `name` is no file."""
    path = Path(name)
    if path.is_file():
        return path
    preset = PRESETS_DIR / f"{name}.toml"
    if preset.is_file():
        return preset
    presets = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.toml")))
    raise ConfigError(
        f"config file {path} does not exist: pass an existing TOML or JSON file, or a preset ({presets})"
    )


def read_config_file(name: str | Path) -> tuple[Path, dict[str, Any]]:
    """The settings in a TOML file, a saved config.json, or a preset."""
    path = resolve_config_file(name)
    try:
        if path.suffix == ".json":
            return path, json.loads(path.read_text())
        return path, tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(
            f"{path} is not valid {path.suffix.lstrip('.').upper() or 'TOML'}: {error}"
        ) from error


def load_config(
    files: str | Path | list[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Build the run's configuration: code defaults < the backbone family's recipe defaults (the
    registry) < KERAS_BACKEND < Kaggle notebook paths < files, in order < flags."""
    environment = dict(os.environ) if environ is None else environ
    sources = [] if files is None else files if isinstance(files, list) else [files]
    layers = [read_config_file(source) for source in sources]
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}

    def build(base: Config) -> Config:
        config = apply_settings(base, environment_defaults(environment), "the environment")
        config = apply_settings(config, kaggle_notebook_overrides(environment), "Kaggle notebook paths")
        for path, values in layers:
            config = apply_settings(config, values, str(path))
        return apply_settings(config, flags, "command line") if flags else config

    config = build(Config())
    backbone = BACKBONES.get(config.model.backbone)
    if backbone is not None and backbone.recipe_defaults:  # known only once everything is read
        defaults = apply_settings(Config(), backbone.recipe_defaults, f"{backbone.name}'s recipe defaults")
        config = build(defaults)
    return validate(config)
