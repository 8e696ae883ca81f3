"""Command line: `python -m pipeline <command> --help`.

Heavy libraries (TensorFlow, the Kaggle client) are imported inside the commands that need
them, so `--help` is instant and needs no credentials.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.competitions import UnknownCompetitionError, get_competition, known_competitions
from pipeline.config import Config, ConfigError, load_config

DEMO_COMPETITION = "dogs-vs-cats-demo"


def duration(text: str) -> float:
    """Seconds from '3h', '90m', '45s' or a plain number of seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 3h, 90m or 600") from error


# flag -> dotted configuration key; every flag defaults to None (= keep the config's value)
_FLAGS: dict[str, tuple[str, type | None, str]] = {
    "--competition": ("competition", str, "competition slug"),
    "--data-root": ("paths.data_root", str, "folder of downloaded and unpacked data"),
    "--input-root": (
        "paths.input_root",
        str,
        "read-only folder of competition files (Kaggle: /kaggle/input)",
    ),
    "--runs-root": ("paths.runs_root", str, "folder of run outputs"),
    "--submissions-root": ("paths.submissions_root", str, "folder of submission files and the ledger"),
    "--image-size": ("data.image_size", int, "square side of model inputs in pixels"),
    "--resize-mode": ("data.resize_mode", str, "crop | pad | stretch"),
    "--batch-size": ("data.batch_size", int, "images per batch"),
    "--cache": ("data.cache", str, "memory | disk | none: cache of resized images"),
    "--seed": ("data.seed", int, "random seed of shuffling and augmentation"),
    "--deterministic": ("data.deterministic", None, "identical batches on every run (slower)"),
    "--augment-where": ("augment.where", str, "pipeline | model: where augmentation runs"),
    "--randaugment": ("augment.randaugment_magnitude", float, "RandAugment magnitude in [0, 1]; 0 = off"),
    "--mixup": ("augment.mixup_alpha", float, "MixUp alpha; 0 = off"),
    "--cutmix": ("augment.cutmix_alpha", float, "CutMix alpha; 0 = off"),
    "--backbone": ("model.backbone", str, "efficientnetv2-b0..m, resnet50v2/101v2/152v2, small-cnn"),
    "--weights": ("model.weights", str, "imagenet | none | path to a weights file"),
    "--dropout": ("model.dropout", float, "dropout before the output layer"),
    "--run-name": ("train.run_name", str, "folder name under runs/"),
    "--folds": ("train.folds", int, "number of stratified folds"),
    "--tta": ("predict.tta", str, "TTA views: original,hflip,zoom,zoom-hflip"),
    "--study": ("tune.study", str, "Optuna study name (continued if it exists)"),
    "--storage": ("tune.storage", str, "Optuna storage URL (default: a journal file under runs/)"),
    "--trials": ("tune.trials", int, "trials per worker"),
    "--timeout": ("tune.timeout", duration, "time limit per worker: 3h, 90m, 600"),
    "--workers": ("tune.workers", int, "parallel worker processes on this machine"),
    "--pruner": ("tune.pruner", str, "median | hyperband | none"),
    "--epochs-head": ("train.head_epochs", int, "epochs with the backbone frozen"),
    "--epochs-fine": ("train.fine_epochs", int, "epochs of fine-tuning; 0 = none"),
    "--lr-head": ("train.head_learning_rate", float, "learning rate of the head phase"),
    "--lr-fine": ("train.fine_learning_rate", float, "peak learning rate of fine-tuning"),
    "--unfreeze": ("train.unfreeze", float, "top blocks to unfreeze: fraction (< 1) or count"),
    "--weight-decay": ("train.weight_decay", float, "AdamW weight decay"),
    "--label-smoothing": ("train.label_smoothing", float, "label smoothing of the loss"),
    "--patience": ("train.patience", int, "early-stopping patience in epochs"),
    "--mixed-precision": ("train.mixed_precision", str, "auto | on | off"),
    "--jit-compile": ("train.jit_compile", str, "auto | on | off (XLA)"),
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file of settings (sections [paths], [data], [augment], ...)")
    parser.add_argument("--params", help="tuned parameters: 'best' (of the study) or a JSON file")
    for flag, (key, kind, text) in _FLAGS.items():
        if kind is None:
            parser.add_argument(flag, action="store_const", const=True, default=None, help=text)
        else:
            parser.add_argument(flag, type=kind, default=None, help=f"{text} ({key})")


def _config(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> Config:
    overrides = dict(defaults or {})
    for flag, (key, _, _) in _FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides[key] = value
    if getattr(args, "params", None):
        from pipeline.tune import load_params, study_dir

        base = load_config(args.config, overrides)
        path = study_dir(base) / "best_params.json" if args.params == "best" else Path(args.params)
        tuned = load_params(path)
        print(f"Tuned parameters from {path}: {tuned}")
        overrides = {**tuned, **overrides}  # flags given explicitly still win
    config = load_config(args.config, overrides)
    get_competition(config.competition)  # fail early on an unknown slug
    print("Configuration:\n" + config.to_json())
    return config


def _download_and_index(config: Config, force: bool) -> None:
    from pipeline.download import download_competition, is_downloaded
    from pipeline.kaggle_api import KaggleGateway
    from pipeline.prepare import describe_index, index_dir, prepare_index

    competition = get_competition(config.competition)
    input_dir = config.input_dir()
    attached = input_dir != config.competition_dir() and input_dir.is_dir()
    if attached:
        print(f"Competition files are attached at {input_dir}; nothing to download.")
        archive_is_new = False
    else:
        archive_is_new = force or not is_downloaded(competition, config.competition_dir())
        download_competition(competition, config.competition_dir(), KaggleGateway(), force=force)
    index = prepare_index(config, competition, rebuild=archive_is_new)
    print(describe_index(index, competition, index_dir(config)))


def cmd_download(args: argparse.Namespace) -> None:
    """Download, unpack and index a competition."""
    _download_and_index(_config(args), args.force)


def cmd_index(args: argparse.Namespace) -> None:
    """Unpack and index competition files already on disk (no network)."""
    from pipeline.prepare import describe_index, index_dir, prepare_index

    config = _config(args)
    competition = get_competition(config.competition)
    index = prepare_index(config, competition, rebuild=args.rebuild)
    print(describe_index(index, competition, index_dir(config)))


def cmd_preview(args: argparse.Namespace) -> None:
    """Draw a few augmented training batches, report on them and save a picture grid."""
    _preview(_config(args), args.batches)


def _preview(config: Config, batches: int) -> None:
    from pipeline.prepare import prepare_index
    from pipeline.preview import preview_batches

    competition = get_competition(config.competition)
    index = prepare_index(config, competition)
    out_dir = Path(config.paths.runs_root) / config.competition / "preview"
    config.save(out_dir / "config.json")
    report = preview_batches(index.train, config, competition, out_dir / "batch.png", batches)
    print(f"Training pipeline: {report}")
    print(f"First augmented batch saved as {out_dir / 'batch.png'}")


def cmd_train(args: argparse.Namespace) -> None:
    """Train the two-phase recipe on every stratified fold (or on one holdout split with --holdout)."""
    _train(_config(args), holdout=args.holdout)


def _train(config: Config, holdout: bool) -> None:
    from pipeline.kfold import train_kfold
    from pipeline.prepare import prepare_index
    from pipeline.train import train_holdout

    competition = get_competition(config.competition)
    index = prepare_index(config, competition)
    if holdout:
        train_holdout(config, competition, index)
    else:
        train_kfold(config, competition, index)


def cmd_predict(args: argparse.Namespace) -> None:
    """Predict the test set with every fold model and TTA; write the validated submission CSV."""
    _predict(_config(args))


def _predict(config: Config) -> Path:
    from pipeline.predict import predict_ensemble
    from pipeline.prepare import prepare_index, sample_submission
    from pipeline.submit import write_ensemble_submission

    competition = get_competition(config.competition)
    index = prepare_index(config, competition)
    ensemble = predict_ensemble(config, competition, index)
    sample = sample_submission(config, competition)
    return write_ensemble_submission(config, competition, ensemble.test, sample, index.train["label"])


def cmd_submit(args: argparse.Namespace) -> None:
    """Validate the newest submission CSV of the run (or --file) and upload it through the Kaggle API."""
    config = _config(args)
    _submit(config, Path(args.file) if args.file else None)


def _submit(config: Config, path: Path | None) -> None:
    from pipeline.kaggle_api import KaggleGateway
    from pipeline.prepare import sample_submission
    from pipeline.submit import latest_submission, submit_file

    competition = get_competition(config.competition)
    chosen = path or latest_submission(config, competition)
    submit_file(config, competition, chosen, sample_submission(config, competition), KaggleGateway())


def cmd_leaderboard(args: argparse.Namespace) -> None:
    """Show every submission with its CV and leaderboard scores; update the ledger and its plot."""
    _leaderboard(_config(args))


def _leaderboard(config: Config) -> None:
    from pipeline.kaggle_api import KaggleGateway
    from pipeline.submit import show_leaderboard

    show_leaderboard(config, get_competition(config.competition), KaggleGateway())


def cmd_tune(args: argparse.Namespace) -> None:
    """Search the recipe with Optuna; stop and start again at will, or run several workers."""
    import subprocess

    from pipeline.prepare import prepare_index
    from pipeline.tune import fail_interrupted_trials, load_study, run_worker, summarize

    config = _config(args)
    competition = get_competition(config.competition)
    index = prepare_index(config, competition)
    if args.worker_index is None:  # before any worker of this command starts
        load_study(config)
        fail_interrupted_trials(config)
    if args.worker_index is not None or config.tune.workers == 1:
        study = run_worker(config, competition, index, worker=args.worker_index or 0)
        if args.worker_index is None:
            summarize(config, study)
        return
    argv = [*args.argv, "--workers", "1"]
    workers = [
        subprocess.Popen([sys.executable, "-m", "pipeline", *argv, "--worker-index", str(i)])
        for i in range(config.tune.workers)
    ]
    failed = [i for i, worker in enumerate(workers) if worker.wait() != 0]
    if failed:
        print(
            f"warning: worker(s) {failed} ended with an error; their finished trials are kept.",
            file=sys.stderr,
        )
    summarize(config, load_study(config))


def cmd_demo_data(args: argparse.Namespace) -> None:
    """Generate the demo competition's archive and hidden solution."""
    from pipeline.demo_data import generate_competition

    competition = get_competition(args.competition)
    archive = generate_competition(
        competition, Path(args.out), args.train_per_class, args.test_size, args.seed
    )
    print(f"Wrote {archive} and {archive.with_name('solution.csv')}")


def cmd_sandbox(args: argparse.Namespace) -> None:
    """Serve competition archives through the sandbox Kaggle API until Ctrl-C."""
    from pipeline.sandbox import SANDBOX_KEY, SANDBOX_USERNAME, SandboxServer, SandboxState, find_archives

    archives = find_archives(Path(folder) for folder in args.serve)
    if not archives:
        raise FileNotFoundError(f"no <slug>.zip archive in {', '.join(args.serve)}")
    server = SandboxServer(SandboxState(archives), port=args.port)
    print(f"Sandbox Kaggle API on {server.url} serving: {', '.join(sorted(archives))}")
    print(
        "Use it from another shell with:\n"
        f"  export PIPELINE_KAGGLE_ENDPOINT={server.url} KAGGLE_USERNAME={SANDBOX_USERNAME} KAGGLE_KEY={SANDBOX_KEY}"
    )
    server.serve_forever()


@contextlib.contextmanager
def _sandbox_environment(url: str) -> Iterator[None]:
    """Point the Kaggle adapter at the sandbox with its own credentials, restoring the environment after."""
    from pipeline.kaggle_api import ENDPOINT_ENV
    from pipeline.sandbox import SANDBOX_KEY, SANDBOX_USERNAME

    values = {ENDPOINT_ENV: url, "KAGGLE_USERNAME": SANDBOX_USERNAME, "KAGGLE_KEY": SANDBOX_KEY}
    saved = {key: os.environ.get(key) for key in [*values, "KAGGLE_API_TOKEN"]}
    os.environ.update(values)
    os.environ.pop("KAGGLE_API_TOKEN", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


DEMO_SETTINGS = {
    "competition": DEMO_COMPETITION,
    "data.image_size": 64,
    "model.backbone": "small-cnn",
    "train.folds": 2,
    "train.head_epochs": 8,
    "train.head_learning_rate": 3e-3,
    "train.patience": 4,
}


def cmd_demo(args: argparse.Namespace) -> None:
    """The whole flow offline on the generated demo competition: download, train, predict, submit, leaderboard."""
    from pipeline.demo_data import generate_competition
    from pipeline.sandbox import SandboxServer, SandboxState, find_archives

    config = _config(args, DEMO_SETTINGS)
    competition = get_competition(config.competition)
    served = Path(config.paths.data_root) / "_sandbox" / competition.slug
    if not (served / competition.archive).is_file():
        print(f"Generating the demo competition in {served} ...")
        generate_competition(competition, served)
    with SandboxServer(SandboxState(find_archives([served]))) as server, _sandbox_environment(server.url):
        print(f"Sandbox Kaggle API on {server.url}")
        _download_and_index(config, force=False)
        _preview(config, batches=2)
        _train(config, holdout=False)
        submission = _predict(config)
        _submit(config, submission)
        _leaderboard(config)


def build_parser() -> argparse.ArgumentParser:
    """The `python -m pipeline` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Kaggle image-classification pipeline. Competitions: " + ", ".join(known_competitions()),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], None], config: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=handler.__doc__, description=handler.__doc__)
        if config:
            _add_config_flags(sub)
        sub.set_defaults(handler=handler)
        return sub

    command("download", cmd_download).add_argument("--force", action="store_true", help="download again")
    command("index", cmd_index).add_argument(
        "--rebuild", action="store_true", help="index again from scratch"
    )
    command("preview", cmd_preview).add_argument("--batches", type=int, default=3)
    command("train", cmd_train).add_argument("--holdout", action="store_true", help="one holdout split only")
    command("predict", cmd_predict)
    command("tune", cmd_tune).add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    command("submit", cmd_submit).add_argument(
        "--file", help="submission CSV to upload (default: the newest)"
    )
    command("leaderboard", cmd_leaderboard)
    command("demo", cmd_demo)
    demo_data = command("demo-data", cmd_demo_data, config=False)
    demo_data.add_argument("--out", required=True, help="folder to write <slug>.zip and solution.csv into")
    demo_data.add_argument("--competition", default=DEMO_COMPETITION, help="layout to follow")
    demo_data.add_argument("--train-per-class", type=int, default=300)
    demo_data.add_argument("--test-size", type=int, default=100)
    demo_data.add_argument("--seed", type=int, default=0)
    sandbox = command("sandbox", cmd_sandbox, config=False)
    sandbox.add_argument(
        "--serve", nargs="+", required=True, help="folders holding <slug>.zip (+ solution.csv)"
    )
    sandbox.add_argument("--port", type=int, default=8765)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; known failures end with a one-paragraph error and exit status 2."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter; errors still show
    from pipeline.kaggle_api import KaggleError
    from pipeline.submission import SubmissionError
    from pipeline.unpack import MissingDataError, UnsafeArchiveError

    expected = (
        KaggleError,
        ConfigError,
        UnknownCompetitionError,
        MissingDataError,
        UnsafeArchiveError,
        zipfile.BadZipFile,
        FileNotFoundError,
        SubmissionError,
    )
    try:
        args.handler(args)
    except expected as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue where it stopped.", file=sys.stderr)
        return 130
    return 0
