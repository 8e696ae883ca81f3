"""Command line: `python -m pipeline <command> --help`. Parses, builds the Config, calls pipeline.flow.

Every configuration flag is generated from the settings declared in pipeline.config and grouped
by section in `--help` (the sections the command uses; `--help-all` shows every one); a `--config`
file (or preset name) sets their defaults. Nothing heavy is imported here (see pipeline.flow).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.competitions import UnknownCompetitionError
from pipeline.config import Config, ConfigError, load_config, section_title, settings, use_backend

DEMO_PRESET = "demo"
DEMO_TUNE_PRESET = "demo-tune"
EVERY_SECTION = (
    "",
    "paths",
    "data",
    "augment",
    "model",
    "train",
    "predict",
    "tune",
    "kernel",
    "stack",
    "blend",
)
SECTIONS_OF = {  # the settings each command uses, shown in its --help
    "download": ("", "paths", "data"),
    "index": ("", "paths", "data"),
    "preview": ("", "paths", "data", "augment"),
    "train": ("", "paths", "data", "augment", "model", "train"),
    "predict": ("", "paths", "predict", "data.batch_size", "data.cache"),
    "tune": ("", "paths", "data", "augment", "model", "train", "tune"),
    "submit": ("", "paths", "predict.run"),
    "report": ("", "paths", "predict.run"),
    "classify": ("", "paths", "predict.run"),
    "export": ("", "paths", "predict.run"),
    "leaderboard": ("", "paths"),
    "stack": ("", "paths", "data", "model", "train", "stack"),
    "lr-find": ("", "paths", "data", "augment", "model", "train"),
    "blend": ("", "paths", "train.run_name", "blend"),
    "kernel status": ("", "paths", "kernel"),
    "weights-dataset": ("", "paths", "model", "stack", "kernel"),
    "describe-competition": ("paths",),
    "kernel output": ("", "paths", "kernel", "predict"),
    "kernel gather": ("", "paths", "kernel"),
}
_CHOICE = re.compile(
    r"argument (?P<flag>\S+?): invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.*)\)"
)


class Parser(argparse.ArgumentParser):
    """argparse with short refusals: one line with the error (and the closest choices for a
    misspelt one) and where to find the help, instead of the whole usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        match = _CHOICE.match(message)
        if match:
            choices = re.findall(r"'([^']*)'", match["choices"]) or match["choices"].split(", ")
            close = difflib.get_close_matches(match["value"], choices, n=3, cutoff=0.5)
            hint = f"did you mean {' or '.join(close)}?" if close else f"choose from {', '.join(choices)}"
            message = f"{match['flag']}: {match['value']!r} is not a choice; {hint}"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_config_flags(
    parser: argparse.ArgumentParser, sections: tuple[str, ...] = EVERY_SECTION, show_all: bool = False
) -> None:
    """--config, --params, --verbose and one flag per declared setting, in one --help group per
    section; `sections` names the sections (or single dotted settings) the command reads: the other
    flags are accepted but not shown (unless `show_all`)."""
    files = parser.add_argument_group("configuration files and output")
    files.add_argument(
        "--config",
        action="append",
        metavar="FILE",
        help="TOML file, saved config.json, or preset name (pipeline/configs/<name>.toml); repeatable, later wins",
    )
    files.add_argument("--params", help="tuned parameters: 'best' (of the study) or a JSON file")
    files.add_argument(
        "--verbose",
        action="store_true",
        help="print the resolved configuration first (saved with outputs anyway)",
    )
    files.add_argument("--help-all", action="store_true", help="show the flags of every section, then exit")
    groups: dict[str, argparse._ArgumentGroup] = {}
    overridden = recipe_defaults()
    for spec in settings():
        if spec.kind is dict:  # tables (tune.space) are set in TOML files only
            continue
        shown = show_all or spec.section in sections or spec.key in sections
        if shown and spec.section not in groups:
            title = f"[{spec.section}] " if spec.section else ""
            groups[spec.section] = parser.add_argument_group(title + section_title(spec.section))
        target = groups[spec.section] if shown else parser
        allowed = f", {spec.within.describe()}" if spec.within else ""
        recipes = "".join(
            f"; {value!r} for {', '.join(names)}" for value, names in overridden.get(spec.key, {}).items()
        )
        text = (
            f"{spec.help} ({spec.key}, default: {spec.default!r}{recipes}{allowed})"
            if shown
            else argparse.SUPPRESS
        )
        if spec.kind is bool:
            target.add_argument(
                spec.flag, dest=spec.key, action=argparse.BooleanOptionalAction, default=None, help=text
            )
            continue
        choices = spec.choices if spec.choices and not spec.each else None
        long_list = choices is not None and len(choices) > 4
        if shown and (spec.each or long_list):
            text = f"{text}; from {', '.join(spec.choices or ())}"
        target.add_argument(
            spec.flag,
            dest=spec.key,
            type=_argparse_type(spec.parse or spec.kind),
            choices=choices,
            default=None,
            metavar=None if choices and not long_list else spec.name.split("_")[-1].upper(),
            help=text,
        )


def recipe_defaults() -> dict[str, dict[object, list[str]]]:
    """Setting -> value -> the backbones whose recipe (their family's, then their own) sets it: the
    defaults that apply for them, shown in --help beside the code's."""
    from pipeline.registry import BACKBONES

    found: dict[str, dict[object, list[str]]] = {}
    for name, backbone in BACKBONES.items():
        for key, value in backbone.recipe_defaults.items():
            found.setdefault(key, {}).setdefault(value, []).append(name)
    return found


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, by dotted key."""
    return {s.key: getattr(args, s.key) for s in settings() if getattr(args, s.key, None) is not None}


def config_from_args(args: argparse.Namespace, presets: tuple[str, ...] = ()) -> Config:
    """Presets < --config files < tuned parameters (--params) < flags; printed once built."""
    files = [*presets, *(args.config or [])]
    overrides = flag_values(args)
    if getattr(args, "params", None):
        from pipeline.fit.tune import best_params_path, load_params

        base = load_config(files, overrides)
        path = best_params_path(base) if args.params == "best" else Path(args.params)
        tuned = load_params(path)
        print(f"Tuned parameters from {path}: {tuned}")
        overrides = {**tuned, **overrides}  # flags given explicitly still win
    config = load_config(files, overrides)
    use_backend(config.backend)
    if getattr(args, "verbose", False):
        print("Configuration:\n" + config.to_json())
    return config


def cmd_download(args: argparse.Namespace) -> None:
    """Download, unpack and index a competition."""
    from pipeline import flow

    flow.download(config_from_args(args), args.force)


def cmd_index(args: argparse.Namespace) -> None:
    """Unpack and index competition files already on disk (no network)."""
    from pipeline import flow

    flow.index(config_from_args(args), args.rebuild)


def cmd_preview(args: argparse.Namespace) -> None:
    """Draw a few augmented training batches, report on them and save a picture grid."""
    from pipeline import flow

    flow.preview(config_from_args(args), args.batches)


def cmd_train(args: argparse.Namespace) -> None:
    """Train the two-phase recipe on every stratified fold (or on one holdout split with --holdout)."""
    from pipeline import flow

    flow.train(config_from_args(args), holdout=args.holdout, wait=args.wait)


def cmd_predict(args: argparse.Namespace) -> None:
    """Predict the test set with a finished run (k-fold or holdout) and TTA; write the validated submission CSV."""
    from pipeline import flow

    flow.predict(config_from_args(args))


def cmd_submit(args: argparse.Namespace) -> None:
    """Validate the newest submission CSV of the competition (or --file) and upload it through the Kaggle API."""
    from pipeline import flow

    flow.submit(config_from_args(args), Path(args.file) if args.file else None, force=args.force)


def cmd_classify(args: argparse.Namespace) -> None:
    """What is in these photos: each file's (or folder's files') class and probability from a run's whole ensemble."""
    from pipeline import flow

    flow.classify(config_from_args(args), [Path(p) for p in args.photos])


def cmd_export(args: argparse.Namespace) -> None:
    """Write a run's whole ensemble as one model: a TensorFlow SavedModel (no need of this package), .keras, TFLite."""
    from pipeline import flow

    flow.export(config_from_args(args), Path(args.out) if args.out else None)


def cmd_report(args: argparse.Namespace) -> None:
    """Write the report page of a finished run (--run NAME, or the newest of the backbone and size)."""
    from pipeline import flow

    flow.report(config_from_args(args))


def cmd_leaderboard(args: argparse.Namespace) -> None:
    """Show every submission with its CV and leaderboard scores; update the ledger and its plot."""
    from pipeline import flow

    flow.leaderboard(config_from_args(args))


def cmd_lr_find(args: argparse.Namespace) -> None:
    """The learning-rate range test for the head phase and fine-tuning: a plot and suggestions (then --lr-head auto)."""
    from pipeline import flow

    flow.lr_find(config_from_args(args))


def cmd_stack(args: argparse.Namespace) -> None:
    """Stack frozen backbones' features at several sizes, a logistic regression per fold; write the submission CSV."""
    from pipeline import flow

    flow.stack(config_from_args(args))


def cmd_blend(args: argparse.Namespace) -> None:
    """Blend predicted runs (--runs A,B; default: all of them) with weights fit on their out-of-fold predictions."""
    from pipeline import flow

    flow.blend(config_from_args(args), [name.strip() for name in args.runs.split(",") if name.strip()])


def cmd_tune(args: argparse.Namespace) -> None:
    """Search the recipe with Optuna; stop and start again at will, or run several workers."""
    from pipeline import flow

    flow.tune(config_from_args(args), worker_index=args.worker_index)


def cmd_demo(args: argparse.Namespace) -> None:
    """The whole flow offline on the generated demo competition: download, train, predict, submit, leaderboard."""
    from pipeline.demo.flows import demo

    demo(config_from_args(args, presets=(DEMO_PRESET,)))


def cmd_kernel_build(args: argparse.Namespace) -> None:
    """Write the Kaggle kernel bundle (script + kernel-metadata.json) without pushing it."""
    from pipeline import flow

    flow.kernel_build(config_from_args(args), Path(args.out) if args.out else None)


def cmd_kernel_push(args: argparse.Namespace) -> None:
    """Bundle this code and configuration, push it as a Kaggle kernel (GPU, TPU or CPU) and start it."""
    from pipeline import flow

    flow.kernel_push(config_from_args(args), resume=args.resume)


def cmd_kernel_status(args: argparse.Namespace) -> None:
    """The status of the latest pushed kernel version; --wait follows it until it ends."""
    from pipeline import flow

    flow.kernel_status(config_from_args(args), wait=args.wait)


def cmd_kernel_output(args: argparse.Namespace) -> None:
    """Fetch the latest kernel's outputs into runs/<slug>/; a group's shards are gathered into one run
    (or study) and predicted; --submit submits the CSV."""
    from pipeline import flow

    flow.kernel_output(config_from_args(args), submit_it=args.submit)


def cmd_kernel_resume_demo(args: argparse.Namespace) -> None:
    """The resume rehearsal offline: a tuning kernel stopped by its budget, resumed to a submission."""
    from pipeline.demo.flows import kernel_resume_demo

    kernel_resume_demo(config_from_args(args, presets=(DEMO_PRESET, DEMO_TUNE_PRESET, "demo-resume")))


def cmd_kernel_fanout_demo(args: argparse.Namespace) -> None:
    """The fan-out rehearsal offline: the demo's folds in 3 sandbox kernels gathered into one submission,
    then a tuning group of 2 kernels sharing one study of 6 trials."""
    from pipeline.demo.flows import kernel_fanout_demo

    kernel_fanout_demo(config_from_args(args, presets=(DEMO_PRESET, DEMO_TUNE_PRESET, "demo-fanout")))


def cmd_describe_competition(args: argparse.Namespace) -> None:
    """Infer a competition's table from its downloaded files and write it into your competitions file."""
    from pipeline import flow

    flow.describe_competition(config_from_args(args), args.slug)


def cmd_weights_dataset(args: argparse.Namespace) -> None:
    """Upload the backbones' ImageNet weights (from the Keras cache) as a private dataset for offline kernels."""
    from pipeline import flow

    flow.weights_dataset(config_from_args(args))


def cmd_kernel_demo(args: argparse.Namespace) -> None:
    """The Kaggle-kernel round trip offline: push to the sandbox (which runs it here), follow, fetch, submit."""
    from pipeline.demo.flows import kernel_demo

    kernel_demo(config_from_args(args, presets=(DEMO_PRESET,)))


def cmd_demo_data(args: argparse.Namespace) -> None:
    """Generate the demo competition's archive and hidden solution."""
    from pipeline.competitions import get_competition
    from pipeline.demo.generate import generate

    competition = get_competition(args.competition)
    archive = generate(competition, Path(args.out), args.train_per_class, args.test_size, args.seed)
    print(f"Wrote {archive} and {archive.with_name('solution.csv')}")


def cmd_sandbox(args: argparse.Namespace) -> None:
    """Serve competition archives through the sandbox Kaggle API until Ctrl-C."""
    from pipeline.demo.sandbox import (
        SANDBOX_KEY,
        SANDBOX_USERNAME,
        SandboxServer,
        SandboxState,
        find_archives,
    )

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


def build_parser(show_all: bool = False) -> argparse.ArgumentParser:
    """The `python -m pipeline` argument parser (`show_all`: every section in each --help)."""
    parser = Parser(
        prog="python -m pipeline",
        description="Kaggle image-classification pipeline: download -> index -> train -> predict -> submit.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(
        name: str, handler: Callable[[argparse.Namespace], None], config: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=handler.__doc__, description=handler.__doc__)
        if config:
            add_config_flags(sub, SECTIONS_OF.get(name, EVERY_SECTION), show_all)
        sub.set_defaults(handler=handler)
        return sub

    command("download", cmd_download).add_argument("--force", action="store_true", help="download again")
    command("index", cmd_index).add_argument(
        "--rebuild", action="store_true", help="index again from scratch"
    )
    command("preview", cmd_preview).add_argument(
        "--batches", type=int, default=3, help="augmented batches to draw and describe (default: 3)"
    )
    train = command("train", cmd_train)
    train.add_argument("--holdout", action="store_true", help="one holdout split only")
    train.add_argument("--wait", action="store_true", help="wait for another command training the same run")
    command("predict", cmd_predict)
    command("tune", cmd_tune).add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    submit = command("submit", cmd_submit)
    submit.add_argument("--file", help="submission CSV to upload (default: the competition's newest)")
    submit.add_argument(
        "--force", action="store_true", help="upload even if the same content was submitted before"
    )
    command("lr-find", cmd_lr_find)
    command("stack", cmd_stack)
    command("blend", cmd_blend).add_argument(
        "--runs",
        default="",
        help="comma-separated runs under runs/<slug>/ (or paths), predicted first (default: every predicted run "
        "of the competition that is no blend)",
    )
    command("leaderboard", cmd_leaderboard)
    command("report", cmd_report)
    command("export", cmd_export).add_argument(
        "--out", help="folder to write the model into (default: runs/<slug>/<run>/export/)"
    )
    command("classify", cmd_classify).add_argument("photos", nargs="+", help="image files or folders of them")
    command("demo", cmd_demo)
    command("kernel-demo", cmd_kernel_demo)
    command("kernel-resume-demo", cmd_kernel_resume_demo)
    command("kernel-fanout-demo", cmd_kernel_fanout_demo)
    command("weights-dataset", cmd_weights_dataset)
    command("describe-competition", cmd_describe_competition).add_argument(
        "slug",
        help="the competition's slug (www.kaggle.com/competitions/<slug>), or a zip or folder of its files named after it",
    )
    kernel = commands.add_parser(
        "kernel", help="run the pipeline as a Kaggle kernel (or a group of them): build, push, status, output"
    )
    steps = kernel.add_subparsers(dest="step", required=True, metavar="STEP", parser_class=Parser)
    for name, handler in (
        ("build", cmd_kernel_build),
        ("push", cmd_kernel_push),
        ("status", cmd_kernel_status),
        ("output", cmd_kernel_output),
        ("gather", cmd_kernel_output),
    ):
        step = steps.add_parser(name, help=handler.__doc__, description=handler.__doc__)
        add_config_flags(step, SECTIONS_OF.get(f"kernel {name}", EVERY_SECTION), show_all)
        step.set_defaults(handler=handler)
        if name == "build":
            step.add_argument("--out", help="folder to write the bundle into (default: runs/<slug>/kernel/)")
        if name == "push":
            step.add_argument(
                "--resume",
                action="store_true",
                help="carry the previous version's state (study, finished folds, backups) into this one, "
                "through the private dataset <user>/<slug>-state",
            )
        if name == "status":
            step.add_argument("--wait", action="store_true", help="poll with backoff until the run ends")
        if name in ("output", "gather"):
            step.add_argument(
                "--submit", action="store_true", help="submit the kernel's (or group's) submission"
            )
    demo_data = command("demo-data", cmd_demo_data, config=False)
    demo_data.add_argument("--out", required=True, help="folder to write <slug>.zip and solution.csv into")
    demo_data.add_argument("--competition", default="dogs-vs-cats-demo", help="layout to follow")
    demo_data.add_argument(
        "--train-per-class", type=int, default=300, help="training images per class (default: 300)"
    )
    demo_data.add_argument("--test-size", type=int, default=100, help="test images (default: 100)")
    demo_data.add_argument("--seed", type=int, default=0, help="random seed of the images (default: 0)")
    sandbox = command("sandbox", cmd_sandbox, config=False)
    sandbox.add_argument(
        "--serve", nargs="+", required=True, help="folders holding <slug>.zip (+ solution.csv)"
    )
    sandbox.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default: 8765)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; known failures end with a one-sentence error and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_all = "--help-all" in argv
    args = build_parser(show_all).parse_args(["--help" if a == "--help-all" else a for a in argv])
    from pipeline.acquire.describe import DescribeError
    from pipeline.acquire.unpack import MissingDataError, UnsafeArchiveError
    from pipeline.atomic import disk_error_message
    from pipeline.kaggle_api import KaggleError
    from pipeline.kernel.metadata import KernelMetadataError
    from pipeline.layout import SplitMismatchError
    from pipeline.locks import FolderInUseError
    from pipeline.submit.submission_file import SubmissionError
    from pipeline.tables import TableError

    expected = (
        KaggleError,
        ConfigError,
        UnknownCompetitionError,
        MissingDataError,
        UnsafeArchiveError,
        zipfile.BadZipFile,
        FileNotFoundError,
        SubmissionError,
        FolderInUseError,
        SplitMismatchError,
        DescribeError,
        KernelMetadataError,
        TableError,
    )
    try:
        args.handler(args)
    except expected as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full, read-only or foreign disk anywhere: one sentence
        if (sentence := disk_error_message(error)) is None:
            raise
        print(f"error: {sentence}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue where it stopped.", file=sys.stderr)
        return 130
    return 0
