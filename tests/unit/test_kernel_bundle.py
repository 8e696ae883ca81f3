"""The Kaggle kernel bundle: metadata built from the configuration and validated before any request."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.kernel.bundle import MAX_SCRIPT_BYTES, build_bundle
from pipeline.kernel.metadata import KernelMetadataError, build_metadata, slugify, validate_metadata
from pipeline.kernel.runner import KernelSetupError, check_accelerator, find_competition_root, find_weights
from pipeline.model.devices import tpu_address


def config(**values: object):
    return load_config(overrides={"competition": "dogs-vs-cats", **values}, environ={})


@pytest.mark.parametrize(
    ("accelerator", "shape"), [("gpu", "NvidiaTeslaT4"), ("tpu", "TpuV5E8"), ("none", None)]
)
def test_metadata_sets_every_field_from_the_configuration(tmp_path: Path, accelerator: str, shape) -> None:
    values = {"kernel.accelerator": accelerator, "kernel.weights_dataset": "me/effnet-weights"}
    folder = build_bundle(config(**values), "me", tmp_path)
    metadata = json.loads((folder / "kernel-metadata.json").read_text())
    assert (
        metadata["id"] == "me/dogs-vs-cats-pipeline" and slugify(metadata["title"]) == "dogs-vs-cats-pipeline"
    )
    assert (
        metadata["machine_shape"] == shape and metadata["enable_internet"] is True
    )  # not a code competition
    assert (metadata["enable_gpu"], metadata["enable_tpu"]) == (accelerator == "gpu", accelerator == "tpu")
    assert metadata["competition_sources"] == ["dogs-vs-cats"] and metadata["dataset_sources"] == [
        "me/effnet-weights"
    ]
    assert metadata["is_private"] is True and "docker_image" not in metadata
    script = (folder / metadata["code_file"]).read_text()
    line = next(line for line in script.splitlines() if line.startswith("CONFIG = json.loads("))
    embedded = json.loads(ast.literal_eval(line[len("CONFIG = json.loads(") : -1]))
    assert embedded["competition"] == "dogs-vs-cats" and embedded["kernel"]["accelerator"] == accelerator
    assert "PACKAGE = " in script
    assert len(script.encode()) < MAX_SCRIPT_BYTES


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "no-owner"}, "id"),
        ({"title": "Another Name"}, "title"),
        ({"code_file": "missing.py"}, "code_file"),
        ({"dataset_sources": ["not a slug"]}, "dataset_sources"),
        ({"model_sources": ["me/model/keras"]}, "model_sources"),
        ({"machine_shape": "NvidiaTeslaP100"}, "machine_shape"),
        ({"enable_internet": "yes"}, "enable_internet"),
        ({"enable_tpu": True, "docker_image": "gcr.io/kaggle-images/python"}, "docker_image"),
    ],
)
def test_bad_metadata_is_refused_with_the_field_named(tmp_path: Path, change: dict, field: str) -> None:
    folder = build_bundle(config(), "me", tmp_path)
    metadata = {**build_metadata(config(), "me"), **change}
    with pytest.raises(KernelMetadataError, match=field):
        validate_metadata(metadata, folder)


def test_both_kaggle_input_layouts_are_found(tmp_path: Path) -> None:
    (tmp_path / "flat" / "dogs-vs-cats").mkdir(parents=True)
    (tmp_path / "nested" / "competitions" / "dogs-vs-cats").mkdir(parents=True)
    assert find_competition_root(tmp_path / "flat", "dogs-vs-cats") == tmp_path / "flat"
    assert find_competition_root(tmp_path / "nested", "dogs-vs-cats") == tmp_path / "nested" / "competitions"
    with pytest.raises(KernelSetupError, match="competition_sources"):
        find_competition_root(tmp_path / "flat", "dogs-vs-cats-redux-kernels-edition")


def test_attached_weights_are_used_and_missing_ones_fail_fast(tmp_path: Path) -> None:
    mobilenet = config(**{"model.backbone": "mobilenet-0.25", "kernel.internet": "off"})
    with pytest.raises(
        KernelSetupError, match=r"no mobilenet_2_5_224_tf_no_top\.h5 .*no internet.*--weights-dataset"
    ):
        find_weights(mobilenet, tmp_path)
    attached = tmp_path / "my-weights" / "mobilenet_2_5_224_tf_no_top.h5"
    attached.parent.mkdir()
    attached.write_bytes(b"h5")
    assert find_weights(mobilenet, tmp_path) == str(attached)
    online = config(**{"model.backbone": "resnet50v2", "kernel.internet": True})  # TOML true = on
    assert find_weights(online, tmp_path) == "imagenet"
    assert find_weights(config(**{"model.backbone": "small-cnn"}), tmp_path) == "imagenet"  # not used


def test_a_gpu_or_tpu_push_never_runs_quietly_on_the_cpu() -> None:
    with pytest.raises(KernelSetupError, match="pushed for a gpu"):
        check_accelerator("gpu", [], [], sandbox=False)
    with pytest.raises(KernelSetupError, match="CPU-only TensorFlow"):
        check_accelerator("tpu", ["/physical_device:GPU:0"], [], sandbox=False)
    check_accelerator("gpu", ["/physical_device:GPU:0"], [], sandbox=False)
    check_accelerator("none", [], [], sandbox=False)
    check_accelerator("gpu", [], [], sandbox=True)  # the sandbox says so and runs on its CPU


def test_the_tpu_is_resolved_locally_on_a_tpu_vm(tmp_path: Path) -> None:
    absent = tmp_path / "accel0"
    assert tpu_address({}, absent) is None
    assert tpu_address({"TPU_ACCELERATOR_TYPE": "v5litepod-8"}, absent) == "local"
    absent.touch()
    assert tpu_address({}, absent) == "local"  # /dev/accel0: a TPU VM such as Kaggle's v5e-8
    assert tpu_address({"TPU_NAME": "grpc://10.0.0.2:8470"}, absent) == "grpc://10.0.0.2:8470"


def test_internet_is_on_by_default_except_in_code_competitions_and_the_weights_route_is_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses

    from pipeline import config as config_module
    from pipeline.competitions import get_competition
    from pipeline.config import internet_enabled
    from pipeline.kernel.metadata import weights_route

    default = config(**{"model.backbone": "mobilenet-0.25"})
    assert default.kernel.internet == "auto" and internet_enabled(default)
    assert "downloads mobilenet_2_5_224_tf_no_top.h5 in the kernel" in weights_route(default)
    assert not internet_enabled(config(**{"kernel.internet": False}))
    code = dataclasses.replace(get_competition("dogs-vs-cats"), code_competition=True)
    monkeypatch.setattr(config_module, "get_competition", lambda slug: code)
    assert not internet_enabled(default)
    assert "attach one with --weights-dataset" in weights_route(default)
    attached = config(**{"model.backbone": "mobilenet-0.25", "kernel.weights_dataset": "me/weights"})
    assert "from the attached dataset me/weights" in weights_route(attached)


def test_a_refused_kernel_slug_leaves_the_previous_bundle_as_it_was(tmp_path: Path) -> None:
    folder = build_bundle(config(), "me", tmp_path / "kernel")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(KernelMetadataError):
        build_bundle(config(**{"kernel.slug": "bad slug!"}), "me", tmp_path / "kernel")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernel"]


def test_a_refused_kernel_slug_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "nothing"))
    flags = ["--runs-root", str(tmp_path / "runs"), "--slug", "bad slug!"]
    assert main(["kernel", "build", *flags]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.py"))
