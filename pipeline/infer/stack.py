"""Stacked bottleneck features, how the best Dogs vs. Cats Redux solutions were built: the pooled
features of frozen ImageNet backbones at several image sizes (each averaged over views such as a
horizontal flip), computed once per image and cached, concatenated; a standardised logistic
regression fit in each fold of the saved k-fold split (out-of-fold predictions kept); the fold
models' test predictions averaged, then post-processed like `predict`'s.

    block_features(...) per (backbone, size)  ->  fit_stack(...)  ->  the run's OOF, CV, test predictions
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.atomic import write_atomically
from pipeline.competitions import Competition
from pipeline.config import Config, ConfigError, sizes_for, stack_backbones, stack_sizes
from pipeline.data.input_pipeline import make_dataset
from pipeline.fit.class_weights import class_weights, sample_weights
from pipeline.fit.class_weights import describe as describe_weights
from pipeline.fit.metrics import as_columns, scores
from pipeline.fit.pseudo import describe, pseudo_labels
from pipeline.fit.splits import kfold_assignment
from pipeline.infer.postprocess import post_process
from pipeline.infer.tta import VIEWS, parse_views
from pipeline.metrics import Metric, get_metric
from pipeline.model.classifier import HEAD_DROPOUT, build_classifier
from pipeline.registry import get_backbone
from pipeline.run import PostProcessing, Run

C_GRID = np.logspace(-4, 1, 11)  # inverse L2 strengths tried by the inner cross-validation


@dataclass(frozen=True)
class Block:
    """One group of features: a backbone seeing every image at one size, views averaged."""

    backbone: str
    size: int

    @property
    def name(self) -> str:
        return f"{self.backbone}-{self.size}px"


def blocks(config: Config) -> list[Block]:
    """Every (backbone, size) block of the stack, in the order their features are concatenated
    (stack.sizes = auto: the candidates, before selection)."""
    return [Block(b, s) for b in stack_backbones(config) for s in sizes_for(config, get_backbone(b))]


def block_weights(config: Config, backbone: str) -> str:
    """The weights a block's backbone loads: model.weights for model.backbone, else imagenet."""
    return config.model.weights if backbone == config.model.backbone else "imagenet"


def block_config(config: Config, block: Block) -> Config:
    """The configuration a block's images and network are built with."""
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, image_size=block.size),
        model=dataclasses.replace(
            config.model, backbone=block.backbone, weights=block_weights(config, block.backbone)
        ),
        augment=dataclasses.replace(config.augment, where="pipeline"),
    )


def extractor(config: Config) -> keras.Model:
    """Image -> pooled features of the configured (frozen) backbone, preprocessing included."""
    model = build_classifier(config, num_classes=2).model  # the output layer is not used
    return keras.Model(model.input, model.get_layer(HEAD_DROPOUT).input)


def check_weights(config: Config) -> None:
    """Load every backbone's weights once, before any feature is computed: a missing or wrong
    weights file is refused (WeightsError) before any work."""
    for backbone in stack_backbones(config):
        size = max(get_backbone(backbone).min_image_size, 32)
        extractor(block_config(config, Block(backbone, size)))
        keras.backend.clear_session()


def _features_file(config: Config, block: Block, images: pd.DataFrame) -> Path:
    weights = block_weights(config, block.backbone)
    key = "\n".join([weights, config.data.resize_mode, config.stack.views, *images["path"].astype(str)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return layout.features_dir(config) / f"{block.name}-{digest}.npy"


def block_features(config: Config, block: Block, images: pd.DataFrame) -> np.ndarray:
    """(images, features) of one block, views averaged; from the cache when computed before
    (a block is computed whole, then saved whole: an interrupted stack resumes at the next block)."""
    path = _features_file(config, block, images)
    if path.is_file():
        try:
            saved = np.load(path)
            if saved.shape[0] == len(images) and np.isfinite(saved).all() and saved.any():
                return saved
        except (OSError, ValueError):
            pass
        print(
            f"warning: discarding the damaged feature cache {path} (cut, NaN or all zeros); computing it again"
        )
    start = time.perf_counter()
    settings = block_config(config, block)
    network = extractor(settings)
    dataset = make_dataset(images[["path"]], settings, training=False)
    views = parse_views(config.stack.views)
    values = np.mean(
        [np.asarray(network.predict(dataset.map(VIEWS[v]), verbose=0), np.float32) for v in views], axis=0
    )
    keras.backend.clear_session()
    if not np.isfinite(values).all():
        raise ConfigError(
            f"the features of {block.name} hold NaN or infinite values: its weights "
            f"({block_weights(config, block.backbone) or 'none'}) look damaged; download them again"
        )
    write_atomically(path, lambda p: np.save(p, values))
    print(
        f"features {block.name}: {values.shape[1]} per image x {len(views)} view(s), "
        f"{len(images):,} images in {time.perf_counter() - start:.0f} s"
    )
    return values


def head(c: float, seed: int) -> BaseEstimator:
    """Standardised features -> logistic regression; its C chosen by a 3-fold inner
    cross-validation on log loss when `c` is 0."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c or 1.0, max_iter=5000))
    if c > 0:
        return model
    inner = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    return GridSearchCV(  # the grid's fits in parallel processes: 4x faster on 2 cores than in series
        model, {"logisticregression__C": C_GRID}, cv=inner, scoring="neg_log_loss", n_jobs=-1
    )


def chosen_c(fit: BaseEstimator) -> float:
    """The C a fitted head uses."""
    model = fit.best_estimator_ if isinstance(fit, GridSearchCV) else fit
    return float(model[-1].C)


@dataclass(frozen=True)
class StackResult:
    """A finished stack: its run folder and test predictions."""

    run: Run
    test: pd.DataFrame  # id, probability (post-processed), label (hard-label competitions)
    postprocessing: PostProcessing
    blocks: list[Block]  # the blocks whose features were stacked (stack.sizes = auto: those kept)


def stack_run_dir(config: Config) -> Path:
    """runs/<slug>/stack-<backbones>-<sizes>px/ (sizes auto: -auto) unless train.run_name names it."""
    sizes = "auto" if config.stack.sizes.strip() == "auto" else "+".join(map(str, stack_sizes(config))) + "px"
    pseudo = "-pseudo" if config.train.pseudo_label else ""
    name = config.train.run_name or f"stack-{'+'.join(stack_backbones(config))}-{sizes}{pseudo}"
    return layout.competition_runs(config) / name


@dataclass(frozen=True)
class StackData:
    """What every fit of the stack's heads shares: labels, folds, pseudo-labelled test images and
    the class weights."""

    labels: np.ndarray
    folds: np.ndarray
    pseudo_rows: np.ndarray  # positions in the test set of the pseudo-labelled images
    pseudo_labels: np.ndarray
    pseudo_weights: np.ndarray
    class_weight: dict[int, float] | None
    num_classes: int
    c: float
    seed: int


@dataclass(frozen=True)
class FoldFits:
    """Out-of-fold and test predictions of one set of features, with the C of each fold."""

    oof: np.ndarray
    test: np.ndarray  # the fold models' test predictions, averaged
    strengths: list[float]
    rows: list[dict]


def fit_folds(train_x: np.ndarray, test_x: np.ndarray, data: StackData, log: bool = False) -> FoldFits:
    """A head per fold on its training side (and the pseudo-labelled test images): OOF and test
    predictions."""
    k, labels, folds = data.num_classes, data.labels, data.folds

    def probabilities(fit: BaseEstimator, x: np.ndarray) -> np.ndarray:  # P(positive), or every class's
        return fit.predict_proba(x)[:, 1] if k == 2 else fit.predict_proba(x)

    oof = np.zeros((len(labels), k) if k > 2 else len(labels))
    test_parts, rows, strengths = [], [], []
    pseudo_x = test_x[data.pseudo_rows]
    count = int(folds.max()) + 1
    for fold in range(count):
        started = time.perf_counter()
        inside = folds != fold  # the fold's training side, and the pseudo-labelled test images
        x = np.concatenate([train_x[inside], pseudo_x])
        y = np.concatenate([labels[inside], data.pseudo_labels])
        weights = np.concatenate([np.ones(int(inside.sum())), data.pseudo_weights])
        weights = weights * sample_weights(y, data.class_weight)
        fit = head(data.c, data.seed).fit(x, y, logisticregression__sample_weight=weights)
        oof[folds == fold] = probabilities(fit, train_x[folds == fold])
        test_parts.append(probabilities(fit, test_x))
        strengths.append(chosen_c(fit))
        rows.append({"fold": str(fold), **scores(labels[folds == fold], oof[folds == fold])})
        if log:
            print(
                f"stack fold {fold + 1}/{count}: C {strengths[-1]:.3g}, log_loss {rows[-1]['log_loss']:.4f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    rows.append({"fold": "all", **scores(labels, oof)})
    return FoldFits(oof, np.mean(test_parts, axis=0), strengths, rows)


def selection_metric(competition: Competition) -> Metric:
    """What the blocks are chosen on: the competition's metric when it scores probabilities; log
    loss when it scores labels (accuracy moves in steps of one image and ties; log loss orders the
    same choices smoothly)."""
    metric = competition.metric_entry
    return metric if metric.scores == "probabilities" else get_metric("log_loss")


def select_blocks(
    features: dict[Block, np.ndarray], n_train: int, data: StackData, metric: Metric
) -> list[Block]:
    """Forward selection of blocks on out-of-fold scores: the best block alone, then the block
    whose features improve the OOF score most, while one does."""

    def score(chosen: list[Block]) -> float:
        x = np.concatenate([features[b][:n_train] for b in chosen], axis=1)
        fits = fit_folds(
            x,
            x[:1],  # no test images to predict; one keeps scikit-learn's shapes valid
            dataclasses.replace(
                data,
                pseudo_rows=np.zeros(0, dtype=int),
                pseudo_labels=np.zeros(0, dtype=int),
                pseudo_weights=np.zeros(0),
            ),
        )
        return metric.of_probabilities(data.labels, fits.oof)

    chosen: list[Block] = []
    best = float("nan")
    while len(chosen) < len(features):
        trials = {b: score([*chosen, b]) for b in features if b not in chosen}
        block = min(trials, key=lambda b: -trials[b] if metric.higher_is_better else trials[b])
        if chosen and not metric.better(trials[block], best):
            break
        chosen.append(block)
        best = trials[block]
        print(
            f"stack selection: {' + '.join(b.name for b in chosen)}: OOF {metric.name} {best:.4f}", flush=True
        )
    return chosen


def fit_stack(config: Config, competition: Competition, index: ImageIndex) -> StackResult:
    """Features of every block (cached), the blocks the OOF score keeps (stack.sizes = auto), a
    head per fold of the saved split, OOF and test predictions."""
    images = pd.concat([index.train[["path"]], index.test[["path"]]], ignore_index=True)
    features = {block: block_features(config, block, images) for block in blocks(config)}
    labels = index.train["label"].to_numpy()
    pseudo = pseudo_labels(config, index.test, competition.num_classes)
    if len(pseudo):
        print(describe(pseudo, len(index.test), config.train.pseudo_label))
    test_position = {str(i): n for n, i in enumerate(index.test["id"].astype(str))}
    k = competition.num_classes
    weights = class_weights(labels, k, config.train.class_weight)
    if weights is not None:
        print(describe_weights(weights, list(competition.classes)))
    data = StackData(
        labels,
        kfold_assignment(config, index).to_numpy(),
        np.array([test_position[i.removeprefix("test:")] for i in pseudo["id"]], dtype=int),
        pseudo["label"].to_numpy(dtype=int),
        pseudo["weight"].to_numpy(dtype=float),
        weights,
        k,
        config.stack.c,
        config.data.seed,
    )
    kept = list(features)
    if config.stack.sizes.strip() == "auto" and len(kept) > 1:
        kept = select_blocks(features, len(labels), data, selection_metric(competition))
    joined = np.concatenate([features[b] for b in kept], axis=1)
    train_x, test_x = joined[: len(labels)], joined[len(labels) :]
    run = Run(stack_run_dir(config))
    fits = fit_folds(train_x, test_x, data, log=True)
    ids = index.train["id"].astype(str).to_numpy()
    run.save_config(config)
    run.write_cross_validation(
        pd.DataFrame({"id": ids, "label": labels, "fold": data.folds, **as_columns(fits.oof)}), fits.rows
    )
    chosen, columns = post_process(
        competition.submission_kind,
        fits.oof,
        labels,
        fits.test,
        views=parse_views(config.stack.views),
        average="probability",
        folds=config.train.folds,
        metric=competition.metric,
        models=[f"{block.name} features" for block in kept],
    )
    test = pd.DataFrame({"id": index.test["id"].astype(str).to_numpy(), **columns})
    run.write_final_oof(pd.DataFrame({"id": ids, "label": labels, **as_columns(fits.oof)}))
    run.write_test_predictions(test)
    run.write_postprocessing(chosen)
    print(
        f"Stack of {joined.shape[1]:,} features ({', '.join(b.name for b in kept)}); "
        f"C per fold {', '.join(f'{c:.3g}' for c in fits.strengths)}; OOF "
        + ", ".join(f"{k} {v:.4f}" for k, v in chosen.oof_with_tta.items())
    )
    return StackResult(run, test, chosen, kept)
