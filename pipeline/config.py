"""Run configuration: defaults in code, overridden by a TOML file, then by command-line flags.

One `Config` object is built per run, printed at its start and saved beside its outputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KAGGLE_NOTEBOOK_ENV = "KAGGLE_KERNEL_RUN_TYPE"
DEFAULT_COMPETITION = "dogs-vs-cats-redux-kernels-edition"


class ConfigError(ValueError):
    """A configuration value or file is wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class PathsConfig:
    """Where competition files come from and where the pipeline writes."""

    data_root: str = "data"  # data/<slug>/: downloads, unpacked images, index
    input_root: str = ""  # read-only competition files (Kaggle: /kaggle/input); "" = data_root
    runs_root: str = "runs"
    submissions_root: str = "submissions"


@dataclass(frozen=True)
class DataConfig:
    """How images become batches."""

    image_size: int = 224
    resize_mode: str = "crop"  # crop | pad | stretch: keep the aspect ratio by centre crop or padding
    cache: str = "memory"  # memory | disk | none: cache of resized images
    batch_size: int = 32
    shuffle_buffer: int = 2048
    seed: int = 42
    deterministic: bool = False  # exact same batches on every run, at some cost in speed
    validation_workers: int = 8


@dataclass(frozen=True)
class AugmentConfig:
    """Keras augmentation layers; 0 switches one off."""

    where: str = "pipeline"  # pipeline (tf.data, CPU) | model (inside the model: faster on a GPU)
    flip: bool = True
    rotation: float = 0.05  # fraction of a full turn
    zoom: float = 0.1
    translation: float = 0.1
    contrast: float = 0.1
    brightness: float = 0.1
    crop: float = 0.0  # fraction of the side cut away by RandomCrop (centre crop at evaluation)
    randaugment_magnitude: float = 0.0  # RandAugment factor in [0, 1]
    randaugment_ops: int = 2
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0


@dataclass(frozen=True)
class ModelConfig:
    """The network: a keras.applications backbone (or the small CNN) and its head."""

    backbone: str = "efficientnetv2-b0"
    weights: str = "imagenet"  # imagenet | none | path to a weights file (Kaggle: an attached dataset)
    dropout: float = 0.2


@dataclass(frozen=True)
class TrainConfig:
    """Two-phase transfer learning: head on a frozen backbone, then fine-tuning of the top blocks."""

    run_name: str = ""  # "" = <competition>-<backbone>-<image size>
    folds: int = 5  # stratified k-fold; `train --holdout` trains fold 0 of 1/validation_fraction folds only
    validation_fraction: float = 0.2
    head_epochs: int = 3
    head_learning_rate: float = 1e-3
    fine_epochs: int = 5  # 0 = no fine-tuning (the small CNN trains whole in the first phase)
    fine_learning_rate: float = 1e-4
    unfreeze: float = 0.3  # < 1: fraction of the backbone's blocks; >= 1: a count of top blocks
    warmup_fraction: float = 0.1  # of the fine-tuning steps, before cosine decay
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    patience: int = 3  # early stopping on val_loss, best weights restored, in each phase
    mixed_precision: str = "auto"  # auto (GPU: float16, TPU: bfloat16, CPU: off) | on | off
    jit_compile: str = "auto"  # auto | on | off: XLA
    steps_per_execution: int = 1


@dataclass(frozen=True)
class PredictConfig:
    """How fold models become one prediction per test image."""

    tta: str = "original,hflip"  # views, comma-separated: original, hflip, zoom, zoom-hflip
    average: str = "auto"  # auto (the better on out-of-fold predictions) | probability | logit


@dataclass(frozen=True)
class TuneConfig:
    """Optuna search of the recipe. Each space entry is `choice:a,b`, `int:lo:hi`, `float:lo:hi`,
    `log:lo:hi` (log-uniform), or "" to keep the configured value."""

    study: str = "recipe"
    storage: str = ""  # "" = journal file runs/<competition>/tune/<study>.journal; or an RDB URL
    trials: int = 20  # per worker and per invocation
    timeout: float = 0.0  # seconds per worker; 0 = no limit
    workers: int = 1
    pruner: str = "median"  # median | hyperband | none
    backbone: str = "choice:efficientnetv2-b0,resnet50v2"
    image_size: str = "choice:160,192,224"
    batch_size: str = "choice:16,32"
    head_learning_rate: str = "log:1e-4:3e-3"
    fine_learning_rate: str = "log:1e-5:3e-4"
    unfreeze: str = "float:0.1:0.6"
    dropout: str = "float:0.0:0.5"
    weight_decay: str = "log:1e-6:1e-3"
    label_smoothing: str = "float:0.0:0.15"
    randaugment_magnitude: str = "float:0.0:0.6"
    mixup_alpha: str = "float:0.0:0.4"
    head_epochs: str = "int:1:4"
    fine_epochs: str = "int:0:6"


@dataclass(frozen=True)
class Config:
    """Everything a run depends on."""

    competition: str = DEFAULT_COMPETITION
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain nested dictionaries."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The configuration as indented JSON, the form saved with outputs."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: Path) -> None:
        """Write the configuration as JSON next to a run's outputs."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")

    def competition_dir(self) -> Path:
        """Where this competition's downloads, images and index live (writable)."""
        return Path(self.paths.data_root) / self.competition

    def input_dir(self) -> Path:
        """Where this competition's original files are read from (may be read-only)."""
        return Path(self.paths.input_root or self.paths.data_root) / self.competition


def _section_types() -> dict[str, type]:
    return {f.name: f.type for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.default_factory)}


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Convert `value` to the type of `default`, or raise a ConfigError naming `where`."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: expected a {kind.__name__}, got {value!r}") from error


def apply_settings(config: Config, values: dict[str, Any], source: str) -> Config:
    """Return `config` with dotted or nested `values` applied; unknown keys are errors."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            flat[key] = value
    sections = {name: getattr(config, name) for name in _section_types()}
    top: dict[str, Any] = {}
    for key, value in flat.items():
        section, _, name = key.rpartition(".")
        if not section:
            if name not in {f.name for f in dataclasses.fields(Config)} or name in sections:
                raise ConfigError(f"{source}: unknown setting {key!r}")
            top[name] = _coerce(value, getattr(config, name), f"{source}: {key}")
            continue
        if section not in sections:
            raise ConfigError(f"{source}: unknown section {section!r} in {key!r} (known: {sorted(sections)})")
        current = sections[section]
        if name not in {f.name for f in dataclasses.fields(current)}:
            known = sorted(f.name for f in dataclasses.fields(current))
            raise ConfigError(f"{source}: unknown setting {key!r}; [{section}] has {known}")
        coerced = _coerce(value, getattr(current, name), f"{source}: {key}")
        sections[section] = dataclasses.replace(current, **{name: coerced})
    return dataclasses.replace(config, **sections, **top)


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


def validate(config: Config) -> Config:
    """Check values that have a fixed set of choices or a range; return the config unchanged."""
    choices = {
        "data.resize_mode": (config.data.resize_mode, {"crop", "pad", "stretch"}),
        "data.cache": (config.data.cache, {"memory", "disk", "none"}),
        "augment.where": (config.augment.where, {"pipeline", "model"}),
        "train.mixed_precision": (config.train.mixed_precision, {"auto", "on", "off"}),
        "train.jit_compile": (config.train.jit_compile, {"auto", "on", "off"}),
        "predict.average": (config.predict.average, {"auto", "probability", "logit"}),
        "tune.pruner": (config.tune.pruner, {"median", "hyperband", "none"}),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key} = {value!r}: choose one of {sorted(allowed)}")
    if config.data.image_size < 8 or config.data.batch_size < 1:
        raise ConfigError("data.image_size must be >= 8 and data.batch_size >= 1")
    if not 0.0 <= config.augment.crop < 0.5:
        raise ConfigError(f"augment.crop = {config.augment.crop}: use a fraction in [0, 0.5)")
    if config.augment.crop > 0 and config.augment.where == "model":
        raise ConfigError("augment.crop needs augment.where = 'pipeline' (the model takes fixed-size images)")
    if not 0.0 <= config.augment.randaugment_magnitude <= 1.0:
        raise ConfigError("augment.randaugment_magnitude must be in [0, 1]")
    if not 0.0 < config.train.validation_fraction < 0.5:
        raise ConfigError("train.validation_fraction must be in (0, 0.5)")
    if config.train.folds < 2:
        raise ConfigError("train.folds must be >= 2 (use `train --holdout` for a single split)")
    if config.train.head_epochs < 1 or config.train.fine_epochs < 0:
        raise ConfigError("train.head_epochs must be >= 1 and train.fine_epochs >= 0")
    return config


def load_config(
    toml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Build the run's configuration: code defaults < Kaggle notebook paths < TOML file < flags."""
    config = apply_settings(Config(), kaggle_notebook_overrides(environ), "Kaggle notebook paths")
    if toml_path:
        path = Path(toml_path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist: pass an existing TOML file to --config")
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path} is not valid TOML: {error}") from error
        config = apply_settings(config, values, str(path))
    if overrides:
        config = apply_settings(config, {k: v for k, v in overrides.items() if v is not None}, "command line")
    return validate(config)
