"""Settings declared once: defaults < presets/files < flags, choices, the search space, round trips."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pipeline import layout
from pipeline.config import DEFAULT_COMPETITION, Config, ConfigError, load_config, settings, use_backend


def test_defaults_then_toml_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('competition = "dogs-vs-cats"\n[data]\nimage_size = 160\nbatch_size = 16\n')
    config = load_config(toml, {"data.batch_size": 8, "augment.mixup_alpha": "0.2"}, environ={})
    assert config.competition == "dogs-vs-cats"
    assert config.data.image_size == 160  # from the file
    assert config.data.batch_size == 8  # the flag wins over the file
    assert config.augment.mixup_alpha == 0.2  # coerced to the field's type
    assert config.data.resize_mode == Config().data.resize_mode  # untouched default
    assert load_config(environ={}).competition == DEFAULT_COMPETITION


def test_unknown_keys_and_bad_values_are_named(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("[data]\nimage_sise = 160\n")
    with pytest.raises(ConfigError, match="image_sise"):
        load_config(toml, environ={})
    with pytest.raises(ConfigError, match="resize_mode"):
        load_config(overrides={"data.resize_mode": "squash"}, environ={})
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        load_config(overrides={"data.batch_size": "many"}, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("model.backbone", "resnet9000", r"model\.backbone = .resnet9000"),
        ("predict.tta", "original,bogus", "predict.tta"),
        ("predict.tta", "", "predict.tta"),
        ("competition", "cats-vs-horses", "known: .*dogs-vs-cats"),
        ("tune.timeout", "soon", "tune.timeout"),
    ],
)
def test_registry_names_are_checked_when_the_config_is_built(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={key: value}, environ={})


def test_the_search_space_is_keyed_by_setting_and_checked(tmp_path: Path) -> None:
    toml = tmp_path / "tune.toml"
    toml.write_text('[tune.space]\n"model.dropout" = "float:0.1:0.3"\n"data.batch_size" = "choice:8,16"\n')
    config = load_config(toml, environ={})
    assert config.tune.space == {"model.dropout": "float:0.1:0.3", "data.batch_size": "choice:8,16"}
    bad = {
        "model.dropot": "float:0:1",
        "model.backbone": "choice:small-cnn,nope",
        "train.head_learning_rate": "log:0:1",
        "model.dropout": "uniform:0:1",
        "paths.data_root": "choice:a,b",
    }
    for key, spec in bad.items():
        with pytest.raises(ConfigError, match=r"tune\.space"):
            load_config(overrides={"tune.space": {key: spec}}, environ={})


def test_presets_are_files_and_a_saved_config_json_reproduces_a_run(tmp_path: Path) -> None:
    demo = load_config("demo", environ={})
    assert (demo.competition, demo.model.backbone, demo.train.folds) == ("dogs-vs-cats-demo", "small-cnn", 2)
    assert load_config("demo-tune", environ={}).tune.space["model.backbone"] == "choice:small-cnn"
    config = load_config("demo", {"data.image_size": 48, "tune.timeout": "90m"}, environ={})
    config.save(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["data"]["image_size"] == 48
    assert load_config(tmp_path / "config.json", environ={}) == config
    with pytest.raises(ConfigError, match="preset"):
        load_config("no-such-preset", environ={})


def test_kaggle_notebook_paths() -> None:
    config = load_config(environ={"KAGGLE_KERNEL_RUN_TYPE": "Interactive"})
    assert layout.input_dir(config) == Path("/kaggle/input") / DEFAULT_COMPETITION
    assert layout.competition_dir(config) == Path("/kaggle/working/data") / DEFAULT_COMPETITION
    assert config.paths.runs_root == "/kaggle/working/runs"
    assert layout.input_dir(load_config(environ={})) == Path("data") / DEFAULT_COMPETITION


def test_every_setting_is_declared_with_help_and_a_unique_flag() -> None:
    declared = settings()
    flags = [s.flag for s in declared]
    assert len(flags) == len(set(flags))
    assert all(s.help for s in declared)
    keys = {s.key for s in declared}
    assert {"data.image_size", "model.backbone", "predict.tta", "predict.run", "tune.space"} <= keys
    assert {s.key: s.choices for s in declared}["data.resize_mode"] == ("crop", "pad", "stretch")


def test_the_backend_comes_from_the_environment_unless_set_and_cannot_change_once_keras_runs() -> None:
    import keras

    from pipeline.config import use_backend

    assert load_config(environ={"KERAS_BACKEND": "jax"}).backend == "jax"
    assert (
        load_config(overrides={"backend": "tensorflow"}, environ={"KERAS_BACKEND": "jax"}).backend
        == "tensorflow"
    )
    assert load_config(environ={"KERAS_BACKEND": "torch"}).backend == "tensorflow"  # not one we run on
    with pytest.raises(ConfigError, match="backend"):
        load_config(overrides={"backend": "theano"}, environ={})
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    if importlib.util.find_spec(other) is None:  # the README's setup has no JAX: how to get it is said
        with pytest.raises(ConfigError, match=f"EXTRAS=dev,{other}"):
            use_backend(other)
    else:
        with pytest.raises(
            ConfigError, match=f"already imported on '{keras.backend.backend()}'.*KERAS_BACKEND={other}"
        ):
            use_backend(other)
    use_backend(keras.backend.backend())  # the same backend is fine


def test_a_fraction_for_a_whole_number_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("[data]\nimage_size = 128.5\n")
    with pytest.raises(ConfigError, match=r"data\.image_size"):
        load_config(toml, environ={})
    toml.write_text("[data]\nimage_size = 128.0\n")
    assert load_config(toml, environ={}).data.image_size == 128


def test_a_missing_jax_is_one_sentence_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"EXTRAS=dev,jax"):
        use_backend("jax")


def test_a_backbone_familys_recipe_sits_under_files_and_flags(tmp_path: Path) -> None:
    mobilenet = load_config(overrides={"model.backbone": "mobilenet-0.25"}, environ={})
    assert (mobilenet.train.head_epochs, mobilenet.train.fine_epochs, mobilenet.train.unfreeze) == (6, 6, 0.6)
    assert (mobilenet.train.folds, mobilenet.train.head_cache_features) == (3, True)
    assert load_config(environ={}).train.head_epochs == Config().train.head_epochs  # other families
    toml = tmp_path / "mine.toml"
    toml.write_text('[model]\nbackbone = "mobilenet-0.25"\n[train]\nhead_epochs = 2\n')
    mine = load_config(toml, {"train.fine_epochs": 1}, environ={})
    assert (mine.train.head_epochs, mine.train.fine_epochs, mine.train.unfreeze) == (2, 1, 0.6)
    assert load_config(mine.save(tmp_path), environ={}) == mine  # a saved config.json reproduces it


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[data]\nbatch_size = true\n", "data.batch_size"),
        ("[data]\nimage_size = 48.9\n", "data.image_size"),
        ("[train]\nfolds = 2.7\n", "train.folds"),
        ("[model]\ndropout = true\n", "model.dropout"),
        ("[model]\ndropout = 1.5\n", "model.dropout"),
        ("[data]\nshuffle_buffer = -5\n", "data.shuffle_buffer"),
        ("[train]\nhead_learning_rate = -0.1\n", "train.head_learning_rate"),
        ("[train]\nfine_learning_rate = -1e-4\n", "train.fine_learning_rate"),
        ("[train]\nlabel_smoothing = 0.7\n", "train.label_smoothing"),
        ("[model]\nbackbone = 'xception'\n[data]\nimage_size = 64\n", "data.image_size"),
        ("[tune.space]\n'model.dropout' = 'float:0.0:1.5'\n", "model.dropout"),
    ],
)
def test_values_out_of_range_or_of_another_type_are_refused(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path, environ={})


def test_every_default_lies_in_its_range() -> None:
    ranged = [spec for spec in settings() if spec.within is not None]
    assert len(ranged) > 30
    for spec in ranged:
        assert spec.default in spec.within, spec.key


def test_more_folds_than_the_smallest_class_has_images_is_refused_before_training() -> None:
    import pandas as pd

    from pipeline.acquire.index import ImageIndex
    from pipeline.fit.splits import check_split

    labels = [0] * 6 + [1] * 3
    train = pd.DataFrame({"id": [str(i) for i in range(9)], "label": labels})
    index = ImageIndex(train, pd.DataFrame(), pd.DataFrame())
    config = load_config(overrides={"train.folds": 3}, environ={})
    check_split(config, index, holdout=False)  # 3 folds: each class has 3 images at least
    with pytest.raises(ConfigError, match=r"train\.folds.*--folds 3 or fewer"):
        check_split(load_config(overrides={"train.folds": 4}, environ={}), index, holdout=False)
    alone = ImageIndex(
        pd.DataFrame({"id": ["1", "2", "3"], "label": [0, 0, 1]}), pd.DataFrame(), pd.DataFrame()
    )
    with pytest.raises(ConfigError) as refused:  # no number of folds helps: not advised
        check_split(load_config(overrides={"train.folds": 2}, environ={}), alone, holdout=False)
    assert "folds" not in str(refused.value)
    with pytest.raises(ConfigError, match=r"train\.validation_fraction"):
        check_split(
            load_config(overrides={"train.validation_fraction": 0.2}, environ={}), index, holdout=True
        )


def test_the_image_cache_is_planned_against_the_memory_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from collections import namedtuple

    from pipeline.data import sizes

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sizes.shutil, "disk_usage", lambda path: usage(0, 0, 100e9))
    big = load_config(overrides={"data.image_size": 4000}, environ={})  # 600 images: 28.8 GB
    assert sizes.cache_bytes(big, 600) == 600 * 4000 * 4000 * 3
    small = load_config(overrides={"data.image_size": 160}, environ={})
    assert sizes.plan_cache(small, 600, tmp_path, available=16e9).data.cache == "memory"
    assert capsys.readouterr().out == ""  # nothing to say when it fits
    assert sizes.plan_cache(big, 600, tmp_path, available=16e9).data.cache == "disk"
    assert "28.8 GB" in capsys.readouterr().out
    monkeypatch.setattr(sizes.shutil, "disk_usage", lambda path: usage(0, 0, 1e9))
    assert sizes.plan_cache(big, 600, tmp_path, available=16e9).data.cache == "none"
    explicit = load_config(overrides={"data.image_size": 4000, "data.cache": "memory"}, environ={})
    with pytest.raises(ConfigError, match=r"28\.8 GB.*16\.0 GB"):
        sizes.plan_cache(explicit, 600, tmp_path, available=16e9)
    on_disk = load_config(overrides={"data.image_size": 4000, "data.cache": "disk"}, environ={})
    assert sizes.plan_cache(on_disk, 600, tmp_path, available=16e9).data.cache == "disk"
