"""kernel-metadata.json: built from the configuration and the Kaggle username, validated before
any request. Every field is set explicitly (the client's defaults differ from its documentation,
e.g. enable_internet)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline.config import Config, internet_enabled
from pipeline.registry import get_backbone

METADATA_FILE = "kernel-metadata.json"
CODE_FILE = "pipeline_kernel.py"
MACHINE_SHAPES = {"gpu": "NvidiaTeslaT4", "tpu": "TpuV5E8", "none": None}  # none: the CPU machine
SESSION_LIMITS = {"gpu": 12 * 3600, "tpu": 9 * 3600, "none": 12 * 3600}  # Kaggle stops a session there
SAFETY_MARGIN = 45 * 60  # seconds kept free before Kaggle's session limit for prediction and saving
_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"
_SLUG = re.compile(rf"^{_NAME}/{_NAME}$")
_MODEL = re.compile(rf"^{_NAME}/{_NAME}/{_NAME}/{_NAME}/[0-9]+$")


class KernelMetadataError(ValueError):
    """The kernel metadata would be refused by Kaggle; the message says which field and how to fix it."""


def slugify(text: str) -> str:
    """Kaggle's slug of a title: lower case, runs of other characters become one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def kernel_slug(config: Config) -> str:
    """The kernel's slug under the user's name: kernel.slug, or <competition>-pipeline."""
    return config.kernel.slug or f"{config.competition}-pipeline"


def build_metadata(config: Config, username: str) -> dict[str, Any]:
    """kernel-metadata.json for pushing `config` as <username>/<slug> on the configured accelerator."""
    slug = kernel_slug(config)
    accelerator = config.kernel.accelerator
    return {
        "id": f"{username}/{slug}",
        "title": slug.replace("-", " ").title(),
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": accelerator == "gpu",
        "enable_tpu": accelerator == "tpu",
        "enable_internet": internet_enabled(config),
        "machine_shape": MACHINE_SHAPES[accelerator],
        "competition_sources": [config.competition],
        "dataset_sources": [d for d in (config.kernel.weights_dataset, config.kernel.state_dataset) if d],
        "kernel_sources": [],
        "model_sources": model_sources(config),
        "keywords": [],
        # no docker_image: a TPU kernel given one runs on the CPU image
    }


def model_sources(config: Config) -> list[str]:
    """kernel.model_sources, and the Kaggle Model holding the backbone's preset when its weights
    come from one (attached, the kernel needs no internet for them)."""
    listed = [m.strip() for m in config.kernel.model_sources.split(",") if m.strip()]
    spec = get_backbone(config.model.backbone)
    if spec.model_source and config.model.weights == "imagenet":
        listed.append(spec.model_source)
    return list(dict.fromkeys(listed))


def check_weights_reachable(config: Config) -> None:
    """Refuse, before anything is written or uploaded, weights a kernel cannot reach: a preset
    folder on this machine."""
    spec = get_backbone(config.model.backbone)
    if spec.family_entry.weights == "preset" and config.model.weights not in ("", "none", "imagenet"):
        raise KernelMetadataError(
            f"model.weights = {config.model.weights!r} is a folder on this machine, which a kernel cannot "
            f"reach: push with --weights imagenet (the Kaggle Model {spec.model_source} is attached)"
        )


def time_budget(config: Config) -> float:
    """Seconds the kernel may work: train.time_budget, or the session limit less a safety margin."""
    return config.train.time_budget or SESSION_LIMITS[config.kernel.accelerator] - SAFETY_MARGIN


def weights_route(config: Config) -> str:
    """One sentence: how the backbone's weights reach the kernel."""
    spec = get_backbone(config.model.backbone)
    if not spec.pretrained:
        return f"Weights: none needed ({spec.name} trains from scratch)."
    if config.model.weights in ("", "none"):
        return f"Weights: none ({spec.name} starts from random weights: --weights none)."
    if spec.family_entry.weights == "preset":
        return f"Weights: the Kaggle Model {spec.model_source} is attached to the kernel (model_sources)."
    if config.kernel.weights_dataset:
        return f"Weights: {spec.weights_file} from the attached dataset {config.kernel.weights_dataset}."
    if internet_enabled(config):
        return (
            f"Weights: keras.applications downloads {spec.weights_file} in the kernel (internet on; "
            "--internet off to run offline)."
        )
    return (
        f"Weights: the kernel is offline (code competition or --internet off) and no dataset holds "
        f"{spec.weights_file}: attach one with --weights-dataset owner/slug, or the kernel will stop at its start."
    )


def validate_metadata(metadata: dict[str, Any], folder: Path, shown_as: Path | None = None) -> None:
    """Raise KernelMetadataError unless Kaggle would accept `metadata` with the files in `folder`
    (named `shown_as` in the message: the folder it is meant for, when checked before it moves there)."""

    def wrong(field: str, problem: str) -> KernelMetadataError:
        return KernelMetadataError(f"{(shown_as or folder) / METADATA_FILE}: {field} {problem}")

    kernel_id = str(metadata.get("id", ""))
    if not _SLUG.match(kernel_id):
        raise wrong("id", f"is {kernel_id!r}; write <username>/<slug> (letters, digits, - and _)")
    title = str(metadata.get("title", ""))
    if len(title) < 5 or slugify(title) != kernel_id.split("/")[1].lower():
        raise wrong("title", f"{title!r} must be 5+ characters whose slug is {kernel_id.split('/')[1]!r}")
    code = folder / str(metadata.get("code_file", ""))
    if not metadata.get("code_file") or not code.is_file():
        raise wrong("code_file", f"{metadata.get('code_file')!r} is not a file in {folder}")
    if metadata.get("language") != "python" or metadata.get("kernel_type") not in ("script", "notebook"):
        raise wrong("language/kernel_type", "must be python and script (or notebook)")
    if metadata.get("machine_shape") not in MACHINE_SHAPES.values():
        raise wrong(
            "machine_shape", f"is {metadata.get('machine_shape')!r}; use NvidiaTeslaT4, TpuV5E8 or null"
        )
    if metadata.get("enable_tpu") and metadata.get("docker_image"):
        raise wrong("docker_image", "must not be set for a TPU kernel (Kaggle would run it on the CPU image)")
    for field in ("is_private", "enable_gpu", "enable_tpu", "enable_internet"):
        if not isinstance(metadata.get(field), bool):
            raise wrong(field, "must be set explicitly to true or false")
    for field in ("competition_sources",):
        for source in metadata.get(field, []):
            if not re.match(rf"^{_NAME}$", str(source)):
                raise wrong(field, f"has {source!r}; write the competition's slug")
    for field in ("dataset_sources", "kernel_sources"):
        for source in metadata.get(field, []):
            if not _SLUG.match(str(source)):
                raise wrong(field, f"has {source!r}; write owner/slug")
    for source in metadata.get("model_sources", []):
        if not _MODEL.match(str(source)):
            raise wrong("model_sources", f"has {source!r}; write owner/model/framework/variation/version")
