from pathlib import Path

import pytest

from pipeline.config import DEFAULT_COMPETITION, Config, ConfigError, load_config


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
    with pytest.raises(ConfigError, match="expected a int"):
        load_config(overrides={"data.batch_size": "many"}, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})


def test_kaggle_notebook_paths() -> None:
    config = load_config(environ={"KAGGLE_KERNEL_RUN_TYPE": "Interactive"})
    assert config.input_dir() == Path("/kaggle/input") / DEFAULT_COMPETITION
    assert config.competition_dir() == Path("/kaggle/working/data") / DEFAULT_COMPETITION
    assert config.paths.runs_root == "/kaggle/working/runs"
    assert load_config(environ={}).input_dir() == Path("data") / DEFAULT_COMPETITION


def test_saved_config_round_trips(tmp_path: Path) -> None:
    import json

    config = load_config(overrides={"data.image_size": 64}, environ={})
    config.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["data"]["image_size"] == 64
    assert load_config(overrides={f"data.{k}": v for k, v in saved["data"].items()}, environ={}) == config
