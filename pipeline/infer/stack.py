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
from pipeline.config import Config, ConfigError, stack_backbones, stack_sizes
from pipeline.data.input_pipeline import make_dataset
from pipeline.fit.metrics import as_columns, scores
from pipeline.fit.pseudo import describe, pseudo_labels
from pipeline.fit.splits import kfold_assignment
from pipeline.infer.postprocess import post_process
from pipeline.infer.tta import VIEWS, parse_views
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
    """Every (backbone, size) block of the stack, in the order their features are concatenated."""
    return [Block(b, s) for b in stack_backbones(config) for s in stack_sizes(config)]


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
    return GridSearchCV(model, {"logisticregression__C": C_GRID}, cv=inner, scoring="neg_log_loss")


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


def stack_run_dir(config: Config) -> Path:
    """runs/<slug>/stack-<backbones>-<sizes>px/ unless train.run_name names it."""
    sizes = "+".join(str(s) for s in stack_sizes(config))
    pseudo = "-pseudo" if config.train.pseudo_label else ""
    name = config.train.run_name or f"stack-{'+'.join(stack_backbones(config))}-{sizes}px{pseudo}"
    return layout.competition_runs(config) / name


def fit_stack(config: Config, competition: Competition, index: ImageIndex) -> StackResult:
    """Features of every block (cached), a head per fold of the saved split, OOF and test predictions."""
    images = pd.concat([index.train[["path"]], index.test[["path"]]], ignore_index=True)
    features = np.concatenate([block_features(config, block, images) for block in blocks(config)], axis=1)
    train_x, test_x = features[: len(index.train)], features[len(index.train) :]
    labels = index.train["label"].to_numpy()
    folds = kfold_assignment(config, index).to_numpy()
    pseudo = pseudo_labels(config, index.test, competition.num_classes)
    if len(pseudo):
        print(describe(pseudo, len(index.test), config.train.pseudo_label))
    test_position = {str(i): n for n, i in enumerate(index.test["id"].astype(str))}
    pseudo_x = test_x[[test_position[i.removeprefix("test:")] for i in pseudo["id"]]]
    pseudo_y, pseudo_w = pseudo["label"].to_numpy(dtype=int), pseudo["weight"].to_numpy(dtype=float)
    run = Run(stack_run_dir(config))
    k = competition.num_classes

    def probabilities(fit: BaseEstimator, x: np.ndarray) -> np.ndarray:  # P(positive), or every class's
        return fit.predict_proba(x)[:, 1] if k == 2 else fit.predict_proba(x)

    oof, test_parts, rows, strengths = np.zeros((len(labels), k) if k > 2 else len(labels)), [], [], []
    for fold in range(config.train.folds):
        started = time.perf_counter()
        inside = folds != fold  # the fold's training side, and the pseudo-labelled test images
        x = np.concatenate([train_x[inside], pseudo_x])
        y = np.concatenate([labels[inside], pseudo_y])
        weights = np.concatenate([np.ones(int(inside.sum())), pseudo_w])
        fit = head(config.stack.c, config.data.seed).fit(x, y, logisticregression__sample_weight=weights)
        oof[folds == fold] = probabilities(fit, train_x[folds == fold])
        test_parts.append(probabilities(fit, test_x))
        strengths.append(chosen_c(fit))
        rows.append({"fold": str(fold), **scores(labels[folds == fold], oof[folds == fold])})
        print(
            f"stack fold {fold + 1}/{config.train.folds}: C {strengths[-1]:.3g}, {competition.metric} "
            f"{rows[-1][competition.metric]:.4f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    rows.append({"fold": "all", **scores(labels, oof)})
    ids = index.train["id"].astype(str).to_numpy()
    run.save_config(config)
    run.write_cross_validation(
        pd.DataFrame({"id": ids, "label": labels, "fold": folds, **as_columns(oof)}), rows
    )
    chosen, columns = post_process(
        competition.submission_kind,
        oof,
        labels,
        np.mean(test_parts, axis=0),
        views=parse_views(config.stack.views),
        average="probability",
        folds=config.train.folds,
        metric=competition.metric,
        models=[f"{block.name} features" for block in blocks(config)],
    )
    test = pd.DataFrame({"id": index.test["id"].astype(str).to_numpy(), **columns})
    run.write_final_oof(pd.DataFrame({"id": ids, "label": labels, **as_columns(oof)}))
    run.write_test_predictions(test)
    run.write_postprocessing(chosen)
    print(
        f"Stack of {features.shape[1]:,} features ({', '.join(b.name for b in blocks(config))}); "
        f"C per fold {', '.join(f'{c:.3g}' for c in strengths)}; OOF "
        + ", ".join(f"{k} {v:.4f}" for k, v in chosen.oof_with_tta.items())
    )
    return StackResult(run, test, chosen)
