"""The command line as a user meets it: help, early refusals, tuned parameters, a light `submit`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import build_parser, config_from_args, main
from pipeline.config import ConfigError


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_every_command_has_help_without_credentials_or_tensorflow(kaggle_env: Path) -> None:
    commands = ["download", "index", "preview", "train", "predict", "tune", "submit", "leaderboard", "demo"]
    probe = (
        "import contextlib, io, sys\n"
        "from pipeline.cli import main\n"
        f"for command in {[*commands, 'demo-data', 'sandbox']!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "        main([command, '--help'])\n"
        "    assert 'usage:' in out.getvalue(), command\n"
        "print('tensorflow' in sys.modules, 'kaggle' in sys.modules)"
    )
    result = run_python(probe)
    assert result.stdout.strip() == "False False", result.stderr[-2000:]


def test_help_groups_flags_by_section() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for title in ("[data] How images become batches:", "[train] Two-phase transfer learning", "[model]"):
        assert title in text
    assert text.index("--image-size") < text.index("--epochs-head")
    assert "--tta" not in text and "--trials" not in text  # predict's and tune's settings
    assert "--tta" in build_parser(show_all=True)._subparsers._group_actions[0].choices["train"].format_help()


def test_submit_a_file_without_importing_tensorflow(
    tmp_path: Path, demo_archive_dir: Path, kaggle_env: Path
) -> None:
    bad = tmp_path / "mine.csv"
    bad.write_text("ID,label\n1,0.5\n")
    roots = [
        "--data-root", str(tmp_path / "data"),
        "--input-root", str(demo_archive_dir.parent),
        "--submissions-root", str(tmp_path / "submissions"),
    ]  # fmt: skip
    argv = ["submit", "--competition", "dogs-vs-cats-demo", *roots, "--file", str(bad)]
    result = run_python(
        f"import sys\nfrom pipeline.cli import main\ncode = main({argv!r})\nprint(code, 'tensorflow' in sys.modules)"
    )
    assert result.stdout.strip().splitlines()[-1] == "2 False", result.stderr[-2000:]
    assert str(bad) in result.stderr and "header" in result.stderr
    assert "invalid" in (tmp_path / "submissions" / "ledger.csv").read_text()


def test_unknown_competition_lists_the_known_ones(tmp_path: Path, capsys) -> None:
    assert main(["index", "--competition", "cats-vs-horses", "--data-root", str(tmp_path)]) == 2
    assert "dogs-vs-cats-redux-kernels-edition" in capsys.readouterr().err


def test_bad_names_fail_before_any_work(tmp_path: Path, capsys) -> None:
    assert main(["predict", "--tta", "original,bogus", "--data-root", str(tmp_path)]) == 2
    assert "predict.tta" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse refuses a backbone outside the registry
        main(["train", "--backbone", "resnet5", "--data-root", str(tmp_path)])
    refusal = capsys.readouterr().err
    assert "'resnet5'" in refusal and "resnet50v2" in refusal and len(refusal.splitlines()) <= 2
    for flag, value, key in [("--dropout", "1.5", "model.dropout"), ("--lr-head", "-0.1", "train.head_")]:
        assert main(["train", flag, value, "--data-root", str(tmp_path)]) == 2
        assert key in capsys.readouterr().err
    toml = tmp_path / "run.toml"
    toml.write_text('[model]\nbackbone = "nope"\n')
    assert main(["train", "--config", str(toml), "--data-root", str(tmp_path)]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run.toml"]  # nothing was unpacked or created


def test_predict_takes_the_newest_finished_run_or_says_what_to_run(tmp_path: Path) -> None:
    from pipeline import layout
    from pipeline.config import load_config
    from pipeline.layout import NoModelsError, require_run

    config = load_config(
        overrides={"paths.runs_root": str(tmp_path), "model.backbone": "small-cnn"}, environ={}
    )
    with pytest.raises(NoModelsError, match="train --holdout"):
        require_run(config)
    other = layout.competition_runs(config) / "resnet50v2-224px-holdout"
    other.mkdir(parents=True)
    (other / "metrics.json").write_text("{}")
    assert require_run(config).path == other  # whatever backbone made it: flags need not be repeated
    chosen = load_config(overrides={"paths.runs_root": str(tmp_path), "predict.run": "missing"}, environ={})
    with pytest.raises(NoModelsError, match="Finished runs: resnet50v2-224px-holdout"):
        require_run(chosen)


def test_tuned_parameters_apply_under_explicit_flags(tmp_path: Path) -> None:
    params = tmp_path / "best_params.json"
    params.write_text(
        json.dumps({"params": {"model.backbone": "small-cnn", "data.batch_size": 64, "model.dropout": 0.4}})
    )
    args = build_parser().parse_args(
        ["train", "--params", str(params), "--batch-size", "8", "--data-root", str(tmp_path)]
    )
    config = config_from_args(args)
    assert config.model.backbone == "small-cnn" and config.model.dropout == 0.4  # from the study
    assert config.data.batch_size == 8  # a flag given explicitly wins
    missing = build_parser().parse_args(["train", "--params", "best", "--data-root", str(tmp_path)])
    with pytest.raises(ConfigError, match="run `make tune` first"):
        config_from_args(missing)


def test_config_files_and_presets_set_the_defaults_of_flags(tmp_path: Path) -> None:
    args = build_parser().parse_args(["train", "--config", "demo", "--image-size", "48"])
    config = config_from_args(args)
    assert config.competition == "dogs-vs-cats-demo" and config.data.image_size == 48
    assert config.model.backbone == "small-cnn"
    flags = build_parser().parse_args(["train", "--no-flip", "--timeout", "2h"])
    assert config_from_args(flags).augment.flip is False and config_from_args(flags).tune.timeout == 7200


def test_a_kernel_bundle_to_look_at_needs_no_credentials(kaggle_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert main(["kernel", "build", "--competition", "dogs-vs-cats-demo", "--out", str(out)]) == 0
    metadata = json.loads((out / "kernel-metadata.json").read_text())
    assert metadata["id"].startswith("your-kaggle-username/")


def test_a_misspelt_choice_in_a_config_file_gets_the_closest_names(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('[model]\nbackbone = "resnet5"\n')
    with pytest.raises(ConfigError, match="did you mean resnet50v2"):
        config_from_args(build_parser().parse_args(["train", "--config", str(toml)]))


def test_a_full_disk_anywhere_is_one_sentence_that_says_to_run_the_same_command(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from pipeline import flow

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "model.keras"))

    monkeypatch.setattr(flow, "report", full)
    assert main(["report", "--runs-root", str(tmp_path)]) == 2
    refusal = capsys.readouterr().err.strip()
    assert len(refusal.splitlines()) == 1 and "model.keras" in refusal and "same command" in refusal
