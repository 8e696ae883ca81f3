"""The pipeline's steps as public functions of a `Config`: what the CLI, the Makefile, a notebook
and a Kaggle kernel all call.

    config = load_config("demo")        # or load_config("run.toml", {"data.image_size": 160})
    download(config); train(config); submission = predict(config); submit(config, submission)

The import rule lives here: heavy libraries (TensorFlow, Keras, the Kaggle client) are imported
inside the steps that need them, never at the top of this module, `cli`, `config`, `layout`, `run`
or `competitions`, so that `--help`, `submit`, `leaderboard` and every check that needs no model
start without TensorFlow. The flow runs one way: `cli` and `demo/` call this module, which calls
the stages (acquire, data, model, fit, infer, report, submit, kernel), which read and write
through `layout` and `run`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import layout
from pipeline.atomic import require_writable, write_atomically
from pipeline.competitions import get_competition
from pipeline.config import Config
from pipeline.locks import exclusive
from pipeline.native_logs import load_tensorflow
from pipeline.run import Run

PLACEHOLDER_USERNAME = "your-kaggle-username"  # in a bundle built without credentials

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.acquire.index import ImageIndex
    from pipeline.kernel.shards import Share


def download(config: Config, force: bool = False) -> ImageIndex:
    """Download the competition through the Kaggle API (unless attached or complete), unpack, index."""
    from pipeline.acquire.download import download_competition, is_downloaded
    from pipeline.kaggle_api import KaggleGateway

    competition = get_competition(config.competition)
    source, target = layout.input_dir(config), layout.competition_dir(config)
    require_writable(target)
    if source != target and source.is_dir():
        print(f"Competition files are attached at {source}; nothing to download.")
        archive_is_new = False
    else:
        with exclusive(target, "downloading", wait=True):  # a second download waits for the first
            archive_is_new = force or not is_downloaded(competition, target)
            download_competition(competition, target, KaggleGateway(), force=force)
    return index(config, rebuild=archive_is_new)


def describe_competition(config: Config, slug: str) -> Path:
    """Infer the table of a competition we have none for from its download (fetched first when it
    is not here; or a local zip or folder of its files, named after its slug), write it into the
    user's competitions file, print what was inferred and what to check; return that file."""
    import dataclasses
    import shutil

    from pipeline.acquire.describe import describe_download, write_table
    from pipeline.acquire.download import archive_problem
    from pipeline.competitions import UnknownCompetitionError, check_slug, user_file
    from pipeline.kaggle_api import KaggleGateway

    local = Path(slug) if slug.endswith(".zip") or Path(slug).is_dir() else None
    if local is not None:
        if not local.exists():
            raise FileNotFoundError(f"{local} does not exist: pass the competition's zip, folder or slug")
        slug = local.stem if local.is_file() else local.name
    check_slug(slug)  # before it names a folder or reaches Kaggle
    try:
        known = get_competition(slug)
    except UnknownCompetitionError:
        known = None
    if known is not None:
        raise UnknownCompetitionError(
            f"{slug} is described already (pipeline/competitions.toml or {user_file()}): nothing to infer."
        )
    there = dataclasses.replace(config, competition=slug)  # paths of a competition not described yet
    folders = [layout.input_dir(there), layout.competition_dir(there)]
    archive = next((f / f"{slug}.zip" for f in folders if (f / f"{slug}.zip").is_file()), None)
    if local is not None and local.is_file() and archive is None:  # where `index` looks for it
        archive = layout.competition_dir(there) / f"{slug}.zip"
        archive.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(archive, lambda path: shutil.copyfile(local, path))
        print(f"Copied {local} to {archive}")
    if local is not None and local.is_dir():
        archive = local
    elif archive is None:
        print(f"Downloading {slug}.zip to describe it ...", flush=True)
        archive = KaggleGateway().download_competition_archive(slug, layout.competition_dir(there))
    if archive.is_file() and (problem := archive_problem(archive)) is not None:
        raise FileNotFoundError(
            f"{archive} is damaged ({problem}): delete it and run describe-competition again."
        )
    found = describe_download(slug, archive)
    print(f"Inferred from {archive}:\n" + "\n".join(f"  - {line}" for line in found.inferred))
    print("Check:\n" + "\n".join(f"  - {line}" for line in found.unsure))
    target = user_file()
    header = (
        "# Your competitions: tables written by `describe-competition` (or by hand); the fields are\n"
        "# documented at the top of pipeline/competitions.toml. Edit them freely.\n"
    )
    write_table(target, slug, found.table, header)
    reading = f' ARGS="--input-root {archive.parent}"' if archive.is_dir() else ""
    print(f"Table [{slug}] written to {target}; next: make index COMPETITION={slug}{reading}")
    return target


def index(config: Config, rebuild: bool = False) -> ImageIndex:
    """Unpack and index competition files already on disk (no network); print what was found."""
    from pipeline.acquire.index import describe_index, prepare_index

    competition = get_competition(config.competition)
    require_writable(layout.competition_dir(config))
    found = prepare_index(config, competition, rebuild=rebuild)
    competition = found.resolve(competition)
    print(describe_index(found, competition, layout.index_dir(config)))
    return found


def preview(config: Config, batches: int = 3) -> Path:
    """Draw a few augmented training batches, describe them and save a picture grid; return its path."""
    from pipeline.acquire.index import prepare_index

    competition = get_competition(config.competition)
    found = prepare_index(config, competition)
    competition = found.resolve(competition)
    load_tensorflow()
    from pipeline.data.preview import preview_batches

    out_dir = layout.preview_dir(config)
    config.save(out_dir)
    picture = out_dir / "batch.png"
    summary = preview_batches(found.train, config, competition, picture, batches)
    print(f"Training pipeline: {summary}")
    print(f"First augmented batch saved as {picture}")
    return picture


def train(
    config: Config,
    holdout: bool = False,
    wait: bool = False,
    report_after: bool = True,
    share: Share | None = None,
) -> Run:
    """Train `train.recipe`: auto (the default), the portfolio of the auto recipe
    (pipeline.recipe.portfolio), whose ensemble `predict` submits; finetune, the two-phase recipe on
    every stratified fold, then the `train.refit` models on all the images; stack, the stacked
    features (its submission written); with `holdout`, the two-phase recipe on one split alone
    (the quick iteration); with `share` (a shard of a kernel group), its folds and refits alone.
    Return the run.

    One command at a time per run folder: another one is refused with its holder's PID, or waited
    for with `wait`. The run's report is written after it unless `report_after` is False (for
    callers that write it once prediction has run)."""
    from pipeline.acquire.index import prepare_index
    from pipeline.data.sizes import plan_cache
    from pipeline.fit.pseudo import pseudo_labels
    from pipeline.fit.splits import check_split
    from pipeline.registry import get_backbone

    if config.train.recipe == "stack" and not holdout:
        stack(config)  # writes its submission too
        from pipeline.infer.stack import stack_run_dir

        return Run(stack_run_dir(config))
    competition = get_competition(config.competition)
    require_writable(layout.competition_dir(config), layout.competition_runs(config))
    require_weights(config)
    spec = get_backbone(config.model.backbone)
    auto = config.train.recipe == "auto" and not holdout and share is None
    if auto and spec.pretrained:
        from pipeline.config import check_stack

        check_stack(config)
    config = resolve_auto_rates(config)
    found = prepare_index(config, competition)  # missing data is reported before TensorFlow loads
    competition = found.resolve(competition)
    check_split(config, found, holdout, competition.classes)
    pseudo_labels(
        config, found.test, competition.num_classes
    )  # a run to take labels from that is missing: refused now
    seen = len(found.train) + (len(found.test) if auto and spec.pretrained else 0)  # the stack sees both
    config = plan_cache(config, seen, layout.image_cache_dir(config))  # before memory is spent
    load_tensorflow()
    from pipeline.model.families import family_of

    print(family_of(spec).describe_weights(spec, config.model.weights))
    from pipeline.fit.cross_validation import train_kfold
    from pipeline.fit.refit import train_refits
    from pipeline.fit.train import train_holdout

    if auto and spec.pretrained:  # the portfolio: its ensemble is what predict submits
        from pipeline.recipe.portfolio import portfolio_dir, run_portfolio

        with exclusive(portfolio_dir(config), "training", wait=wait):
            run = run_portfolio(config, competition, found)
        if report_after:
            report(config, run)
        return run
    if auto:
        print(
            f"recipe auto: {spec.name} has no pretrained features to stack; training the fine-tuned folds alone"
        )
    run_dir = layout.holdout_run_dir(config) if holdout else layout.kfold_run_dir(config)
    budget = config.train.time_budget
    deadline = time.monotonic() + budget if budget else None
    with exclusive(run_dir, "training", wait=wait):
        if share is not None:
            run = train_kfold(config, competition, found, folds=share.folds)
            if share.refits:
                train_refits(
                    config,
                    competition,
                    found,
                    run,
                    deadline=deadline,
                    only=share.refits,
                    epochs=share.refit_epochs,
                )
        elif holdout:
            run = train_holdout(config, competition, found)
        else:
            run = train_kfold(config, competition, found)
        if config.train.refit and not holdout and share is None:  # on all the images, for the folds' epochs
            train_refits(config, competition, found, run, deadline=deadline)
    if report_after:
        report(config, run)
    return run


def require_weights(config: Config) -> None:
    """Before any folder is made or TensorFlow loads: a weights file that is not there is refused,
    and a frozen head phase on a backbone of random weights is said to learn little."""
    from pathlib import Path

    from pipeline.config import ConfigError
    from pipeline.registry import get_backbone

    spec, weights = get_backbone(config.model.backbone), config.model.weights
    local = spec.family_entry.weights == "file" and weights not in ("", "none", "imagenet")
    if local and not Path(weights).is_file():
        raise ConfigError(
            f"model.weights = {weights!r}: no such file. Pass {spec.weights_file} (the notop weights of "
            f"{spec.name}), 'imagenet' (downloaded by Keras) or 'none'."
        )
    if spec.pretrained and weights in ("", "none") and config.train.head_epochs > 0:
        print(
            f"warning: {spec.name} has no pretrained weights here (--weights none): the head phase trains on a "
            "frozen backbone of random features and learns little; pass --weights imagenet or a weights file"
        )


def lr_find(config: Config) -> dict[str, float]:
    """The learning-rate range test for the head phase and fine-tuning: a plot, the suggestions
    printed and saved (`--lr-head auto` / `--lr-fine auto` train with them); return them."""
    from pipeline.acquire.index import prepare_index

    competition = get_competition(config.competition)
    require_weights(config)
    found = prepare_index(config, competition)
    competition = found.resolve(competition)
    load_tensorflow()
    from pipeline.fit.lr_find import find_learning_rates
    from pipeline.report.plots import lr_find_plot

    saved = find_learning_rates(config, competition, found)
    picture = lr_find_plot(saved, layout.lr_find_file(config).with_suffix(".png"))
    shown = ", ".join(f"{phase} {rate:.1e}" for phase, rate in saved["suggested"].items())
    print(f"Suggested learning rates: {shown} (saved in {layout.lr_find_file(config)}; plot {picture})")
    return saved["suggested"]


def resolve_auto_rates(config: Config) -> Config:
    """`config` with learning rates of "auto" replaced by the saved suggestions of `lr-find` for
    its backbone and size; refused in one sentence when there are none."""
    import dataclasses
    import json

    from pipeline.config import AUTO_RATE, ConfigError

    train = config.train
    if AUTO_RATE not in (train.head_learning_rate, train.fine_learning_rate):
        return config
    path = layout.lr_find_file(config)
    if not path.is_file():
        raise ConfigError(
            f"a learning rate of auto needs the suggestions of `lr-find` in {path}: run `lr-find` with "
            "the same backbone and image size first"
        )
    suggested = json.loads(path.read_text())["suggested"]
    head = suggested["head"] if train.head_learning_rate == AUTO_RATE else train.head_learning_rate
    fine = suggested.get("fine", 1e-4) if train.fine_learning_rate == AUTO_RATE else train.fine_learning_rate
    print(f"Learning rates from lr-find: head {head:.1e}, fine {fine:.1e}")
    return dataclasses.replace(
        config, train=dataclasses.replace(train, head_learning_rate=head, fine_learning_rate=fine)
    )


def _say_which(config: Config, run: Run) -> None:
    """One line naming the run a command took by itself (no --run given)."""
    if not config.predict.run:
        print(f"Run {run.name}: the newest finished run of {config.competition} (--run NAME for another).")


def _with_models(run: Run) -> Run:
    """The run whose Keras models classify and export use: a portfolio's fine-tuned member (its
    stacked members' heads are scikit-learn fits, not models), said in one line."""
    if not run.is_portfolio:
        return run
    from pipeline.recipe.plan import FINETUNE

    member = Run(run.path / FINETUNE)
    if not member.has_finished_models:
        raise FileNotFoundError(
            f"run {run.name} is a portfolio whose members are stacked features without a Keras model: train "
            "with --recipe finetune (or give the portfolio the time for its fine-tuned member) to classify or export"
        )
    print(
        f"Run {run.name} is a portfolio: using its fine-tuned member ({member.path}), the one with Keras models."
    )
    return member


RUN_INPUTS = ("model.backbone", "data.image_size", "data.resize_mode")  # fixed when a run is trained


def with_run_inputs(config: Config, run: Run) -> Config:
    """`config` with the backbone, image size and resizing `run` was trained with (a run predicts
    only the inputs its models take), saying so when they differ from the configured ones."""
    from pipeline.config import apply_settings, settings_by_key

    saved = run.trained_config()
    if saved is None:
        return config
    known = settings_by_key()
    values = {}
    for key in RUN_INPUTS:
        section, name = key.split(".")
        if name in saved.get(section, {}):
            values[key] = known[key].kind(saved[section][name])
    current = {key: getattr(getattr(config, key.split(".")[0]), key.split(".")[1]) for key in values}
    if values == current:
        return config
    shown = ", ".join(f"{key.split('.')[1]} {value}" for key, value in values.items())
    print(f"Run {run.name} was trained with {shown}: using them.")
    return apply_settings(config, values, f"run {run.name}")


def report(config: Config, run: Run | None = None) -> Path:
    """Write the run's report.html (`predict.run`, else the newest finished run); return its path."""
    if run is None:
        run = layout.require_run(config)
        _say_which(config, run)
    require_writable(run.path)
    config = with_run_inputs(config, run)
    load_tensorflow()
    from pipeline.report.build import build_report

    if run.is_portfolio:  # its page, and the fine-tuned member's own when it was trained
        from pipeline.recipe.plan import FINETUNE
        from pipeline.report.portfolio import build_portfolio_report

        member = Run(run.path / FINETUNE)
        inner = build_report(config, member) if member.has_finished_models else None
        page = build_portfolio_report(config, run, inner)
        print(f"Report: {page}")
        return page
    page = build_report(config, run)
    print(f"Report: {page}")
    return page


def predict(config: Config) -> Path:
    """Predict the test set with a finished run (k-fold or holdout) and TTA; write the validated
    submission CSV and return its path."""
    from pipeline.acquire.index import prepare_index, sample_submission
    from pipeline.data.sizes import plan_cache

    competition = get_competition(config.competition)
    run = layout.require_run(config)  # both checked before TensorFlow loads
    _say_which(config, run)
    require_writable(layout.competition_dir(config), run.path, layout.submissions_dir(config))
    config = with_run_inputs(config, run)
    found = prepare_index(config, competition)
    competition = found.resolve(competition)
    if run.is_portfolio:  # the auto recipe's ensemble: its test predictions are made
        test = run.read_test_predictions()
    else:
        config = plan_cache(config, len(found.test), layout.image_cache_dir(config))
        load_tensorflow()
        from pipeline.infer.predict import predict_run

        test = predict_run(config, competition, found, run).test
    from pipeline.submit.upload import write_run_submission

    sample = sample_submission(config, competition)
    return write_run_submission(config, competition, run.name, test, sample, found.train["label"])


def predict_members(config: Config) -> Run:
    """Predict the test set with each finished model of the configured k-fold run (TTA views,
    cached in each model's folder) without combining them: a shard's share of `predict`, which
    combines every fold once the group is gathered. Return the run."""
    from pipeline.acquire.index import prepare_index
    from pipeline.data.sizes import plan_cache

    competition = get_competition(config.competition)
    run = Run(layout.kfold_run_dir(config))
    found = prepare_index(config, competition)
    config = plan_cache(config, len(found.test), layout.image_cache_dir(config))
    load_tensorflow()
    from pipeline.infer.predict import cache_member_predictions

    cache_member_predictions(config, found, run)
    return run


def classify(config: Config, photos: list[Path]) -> pd.DataFrame:
    """What is in each photo (files, or folders of them): the class and its probability from the
    run's whole ensemble with its TTA views and post-processing (`predict.run`, else the
    competition's newest finished run), as `predict` would give them; printed and returned."""
    from pipeline.acquire.index import with_indexed_classes

    competition = with_indexed_classes(config, get_competition(config.competition))
    run = layout.require_run(config)
    _say_which(config, run)
    run = _with_models(run)
    config = with_run_inputs(config, run)
    load_tensorflow()
    from pipeline.infer.classify import classify_images, image_files

    paths, problems = image_files(photos)
    for problem in problems:
        print(f"skipped {problem}")
    if not paths:
        raise FileNotFoundError(f"no image to classify among {', '.join(map(str, photos))}")
    found = classify_images(config, competition, run, paths)
    for path, name, probability in zip(found["path"], found["class"], found["probability"], strict=True):
        print(f"{path}: {name} ({probability:.3f})")
    return found


def export(config: Config, out: Path | None = None) -> Path:
    """Write the run's whole ensemble (`predict.run`, else the newest finished run) as one model:
    a TensorFlow SavedModel to load without this package, a .keras file, TFLite where possible."""
    from pipeline.acquire.index import with_indexed_classes

    competition = with_indexed_classes(config, get_competition(config.competition))
    run = layout.require_run(config)
    _say_which(config, run)
    run = _with_models(run)
    config = with_run_inputs(config, run)
    target = out or layout.export_dir(run)
    require_writable(target)
    load_tensorflow()
    from pipeline.infer.export import export_run

    return export_run(config, competition, run, target)


def submit(config: Config, file: Path | None = None, force: bool = False) -> int | None:
    """Validate a submission CSV (default: the newest of the configured run), upload it unless the
    same bytes were submitted already (`force` uploads again), record it in the ledger; return
    Kaggle's reference (None when skipped)."""
    from pipeline.acquire.index import sample_submission, with_indexed_classes
    from pipeline.kaggle_api import KaggleGateway
    from pipeline.submit.upload import latest_submission_or_explain, submit_file

    if file is not None and not file.is_file():  # before anything about the competition's data
        raise FileNotFoundError(f"{file} does not exist: pass the submission CSV to upload with --file")
    competition = with_indexed_classes(config, get_competition(config.competition))
    require_writable(layout.submissions_dir(config))  # the ledger
    chosen = file or latest_submission_or_explain(config)
    sample = sample_submission(config, competition)
    return submit_file(config, competition, chosen, sample, KaggleGateway(), force=force)


def leaderboard(config: Config) -> None:
    """Merge Kaggle's scores into the ledger, print it, plot CV against public score, show the rank."""
    from pipeline.kaggle_api import KaggleGateway
    from pipeline.report.build import scored_submissions_plot
    from pipeline.submit.upload import show_leaderboard

    show_leaderboard(config, get_competition(config.competition), KaggleGateway())
    plot = scored_submissions_plot(config, layout.scores_plot(config))
    if plot:
        print(f"CV against public score: {plot}")


def stack(config: Config) -> Path:
    """Stacked bottleneck features: frozen backbones' pooled features at `stack.sizes` (cached),
    a logistic regression per fold of the saved split; write the validated submission CSV and
    return its path."""
    from pipeline.acquire.index import prepare_index, sample_submission
    from pipeline.config import check_stack
    from pipeline.data.sizes import plan_cache
    from pipeline.fit.pseudo import pseudo_labels
    from pipeline.fit.splits import check_split

    competition = get_competition(config.competition)
    check_stack(config)
    require_weights(config)
    require_writable(
        layout.competition_dir(config), layout.competition_runs(config), layout.submissions_dir(config)
    )
    found = prepare_index(config, competition)
    competition = found.resolve(competition)
    check_split(config, found, False, competition.classes)
    pseudo_labels(
        config, found.test, competition.num_classes
    )  # a run to take labels from that is missing: refused now
    config = plan_cache(config, len(found.train) + len(found.test), layout.image_cache_dir(config))
    load_tensorflow()
    from pipeline.infer.stack import check_weights, fit_stack, stack_run_dir
    from pipeline.submit.upload import write_run_submission

    check_weights(config)  # a missing weights file is refused before any feature is computed
    with exclusive(stack_run_dir(config), "stacking", wait=False):
        result = fit_stack(config, competition, found)
    sample = sample_submission(config, competition)
    return write_run_submission(
        config, competition, result.run.name, result.test, sample, found.train["label"]
    )


def blend(config: Config, runs: list[str]) -> Path:
    """Blend finished runs with weights fit on their out-of-fold predictions; write the validated
    submission CSV and return its path."""
    from pipeline.acquire.index import prepare_index, sample_submission
    from pipeline.infer.blend import BlendError, find_runs, predicted_runs
    from pipeline.infer.blend import blend as blend_runs
    from pipeline.submit.upload import write_run_submission

    if not runs:  # every predicted run of the competition that is not itself a blend
        runs = predicted_runs(config)
        print(
            f"Blending the competition's predicted runs: {', '.join(runs) or 'none'} (--runs A,B to choose)"
        )
    if len(runs) < 2:  # before anything about the competition's data
        raise BlendError("blend needs two predicted runs at least: --runs A,B (make blend RUNS=A,B)")
    competition = get_competition(config.competition)
    require_writable(layout.competition_runs(config), layout.submissions_dir(config))
    runs_found = find_runs(config, runs)
    found = prepare_index(config, competition)
    competition = found.resolve(competition)
    result = blend_runs(config, competition, runs_found)
    sample = sample_submission(config, competition)
    return write_run_submission(
        config, competition, result.run.name, result.test, sample, found.train["label"]
    )


def tune(config: Config, worker_index: int | None = None) -> None:
    """Search the recipe with Optuna: `tune.workers` processes on one study, resumable at will."""
    from pipeline.acquire.index import prepare_index
    from pipeline.data.sizes import plan_cache
    from pipeline.fit.splits import check_split

    competition = get_competition(config.competition)
    require_writable(layout.competition_dir(config), layout.competition_runs(config))
    require_weights(config)
    config = resolve_auto_rates(config)
    found = prepare_index(config, competition)
    competition = found.resolve(competition)
    check_split(config, found, True, competition.classes)  # every trial trains on the holdout split
    config = plan_cache(config, len(found.train), layout.image_cache_dir(config))
    load_tensorflow()
    from pipeline.fit.tune import (
        fail_interrupted_trials,
        load_study,
        run_worker,
        run_worker_processes,
        summarize,
    )

    if worker_index is not None:  # one worker process of a pool started below
        run_worker(config, competition, found, worker=worker_index)
        return
    load_study(config)
    fail_interrupted_trials(config)
    if config.tune.workers == 1:
        summarize(config, run_worker(config, competition, found))
        return
    failed = run_worker_processes(config)
    if failed:
        print(f"warning: worker(s) {failed} ended with an error; their finished trials are kept.")
    summarize(config, load_study(config))


def kernel_build(config: Config, out_dir: Path | None = None) -> Path:
    """Write the Kaggle kernel bundle (script + kernel-metadata.json), validated, without pushing."""
    from pipeline.kaggle_api import KaggleError, KaggleGateway
    from pipeline.kernel.bundle import build_bundle
    from pipeline.kernel.metadata import CODE_FILE, weights_route

    try:
        username = KaggleGateway().username()
    except KaggleError:  # a bundle to look at needs no account; `kernel push` asks for one
        username = PLACEHOLDER_USERNAME
        print(f"No Kaggle credentials here: the bundle's id says {username!r} (kernel push uses yours).")
    folder = build_bundle(config, username, out_dir or layout.kernel_dir(config))
    size = (folder / CODE_FILE).stat().st_size
    print(f"Kernel bundle in {folder}: {CODE_FILE} ({size:,} bytes) and kernel-metadata.json")
    print(weights_route(config))
    return folder


def kernel_push(config: Config, resume: bool = False) -> dict:
    """Bundle the local code and configuration, push it as a Kaggle kernel and start its run; with
    `resume`, the previous version's fetched state goes with it (session.carry_state)."""
    from pipeline.kaggle_api import KaggleGateway
    from pipeline.kernel import group, session

    if config.kernel.shards > 1 or (resume and group.is_latest(config)):
        return group.push_group(config, KaggleGateway(), resume=resume)
    return session.push(config, KaggleGateway(), resume=resume)


def weights_dataset(config: Config) -> str:
    """Upload the configured backbones' ImageNet notop files (from the Keras cache) as one private
    dataset for offline kernels; return its owner/slug."""
    from pipeline.kaggle_api import KaggleGateway
    from pipeline.kernel.session import wait_until_ready
    from pipeline.kernel.weights import dataset_id, pack_weights

    gateway = KaggleGateway()
    username = gateway.username()
    dataset = dataset_id(config, username)
    folder = pack_weights(config, username)
    files = sorted(p.name for p in folder.glob("*.h5"))
    print(f"Uploading {', '.join(files)} as dataset {dataset} ...", flush=True)
    gateway.publish_dataset(folder, dataset, "ImageNet notop weights for offline kernels")
    wait_until_ready(gateway, dataset, time.sleep)
    print(
        f"Dataset {dataset} is ready: push with --weights-dataset {dataset} (or set kernel.weights_dataset)."
    )
    return dataset


def kernel_status(config: Config, wait: bool = False) -> str:
    """The status of the latest pushed kernel version (QUEUED, RUNNING, COMPLETE, ERROR, ...)."""
    from pipeline.kaggle_api import KaggleGateway
    from pipeline.kernel import group, session

    if group.is_latest(config):  # one row per shard
        table = group.status(config, KaggleGateway(), wait=wait)
        return "COMPLETE" if (table["status"] == "COMPLETE").all() else ", ".join(table["status"])
    return session.status(config, KaggleGateway(), wait=wait)


def kernel_output(config: Config, submit_it: bool = False) -> Path:
    """Fetch the latest kernel version's outputs, record its CV in the ledger, optionally submit
    its submission.csv; return the outputs folder."""
    from pipeline.acquire.index import sample_submission, with_indexed_classes
    from pipeline.kaggle_api import KaggleGateway
    from pipeline.kernel import group, session
    from pipeline.submit.upload import record_kernel_submission, submit_file
    from pipeline.tables import read_text_csv

    if group.is_latest(config):
        return kernel_gather(config, submit_it)
    competition = with_indexed_classes(config, get_competition(config.competition))
    gateway = KaggleGateway()
    target, run = session.fetch_outputs(config, gateway)
    submission = target / "submission.csv"
    tuned = sorted(target.glob("runs/*/tune/*/best_params.json"))
    if not submission.is_file() and tuned:  # a tuning kernel (kernel.task = tune)
        print(f"Tuning kernel: best parameters in {tuned[-1]}; train with them: train --params {tuned[-1]}")
        return target
    if not submission.is_file():
        raise FileNotFoundError(f"the kernel left no submission.csv in {target}: see its log there.")
    score = record_kernel_submission(config, competition, submission, target, run)
    cv = "" if score is None else f" (CV {competition.metric} {score:.5f})"
    print(f"Kernel submission: {submission}{cv}")
    if submit_it:
        copied = target / competition.sample_submission  # left by the kernel beside its outputs
        sample = read_text_csv(copied) if copied.is_file() else sample_submission(config, competition)
        submit_file(config, competition, submission, sample, gateway, run)
    return target


def kernel_gather(config: Config, submit_it: bool = False) -> Path:
    """Gather the last kernel group: fetch its ended shards, merge their folds into one run (or their
    trials into one study); once every fold is there, predict with all of them (OOF post-processing
    over the whole training set), record the submission in the ledger once, optionally submit it.
    Return the run folder (the study's folder for a tuning group)."""
    from pipeline.acquire.index import sample_submission, with_indexed_classes
    from pipeline.config import apply_settings, validate
    from pipeline.kaggle_api import KaggleGateway
    from pipeline.kernel import group
    from pipeline.submit.upload import record_kernel_submission, submit_file

    gateway = KaggleGateway()
    gathered = group.gather(config, gateway)
    merged = gathered.config
    if gathered.run is None:  # a tuning group
        from pipeline.fit.tune import best_params_path

        print(f"Train with the gathered study's best parameters: --params {best_params_path(merged)}")
        return layout.study_dir(merged)
    if gathered.missing_folds:
        return gathered.run.path
    merged = validate(apply_settings(merged, {"predict.run": gathered.run.name}, "the gathered run"))
    submission = predict(merged)
    competition = with_indexed_classes(merged, get_competition(merged.competition))
    score = record_kernel_submission(merged, competition, submission, gathered.run.path, gathered.run)
    cv = "" if score is None else f" (CV {competition.metric} {score:.5f})"
    print(f"Group submission: {submission}{cv}; its report: make report ARGS='--run {gathered.run.name}'")
    if submit_it:
        sample = sample_submission(merged, competition)
        submit_file(merged, competition, submission, sample, gateway, gathered.run)
    return gathered.run.path
