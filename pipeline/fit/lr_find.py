"""The learning-rate range test (fastai's `lr_find`, Keras flavour): the learning rate grows
exponentially batch by batch from `LOW` to `HIGH` while the training loss is recorded, for the head
phase (backbone frozen) and for fine-tuning (the top blocks unfrozen, after one head epoch); the
suggestion is the rate where the smoothed loss falls fastest. `--lr-head auto` / `--lr-fine auto`
train with the saved suggestions.

    find_learning_rates(config, competition, index) -> {"head": ..., "fine": ...} and a plot
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np

from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.atomic import write_text
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.data.input_pipeline import make_dataset
from pipeline.fit.splits import holdout_split
from pipeline.fit.train import compile_model
from pipeline.model.backbones import unfreeze_top_blocks
from pipeline.model.classifier import build_classifier

LOW, HIGH = 1e-7, 1.0  # the range tried
STEPS = 200  # batches per phase (the dataset repeats when it has fewer)
SMOOTHING = 0.9  # exponential moving average of the loss, bias-corrected
DIVERGED = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum


class RangeTest(keras.callbacks.Callback):
    """Sets the learning rate of every batch on an exponential ramp and records the loss."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps, self.rates, self.losses = steps, [], []
        self._average, self._best = 0.0, math.inf

    def rate(self, step: int) -> float:
        return LOW * (HIGH / LOW) ** (step / max(1, self.steps - 1))

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.model.optimizer.learning_rate.assign(self.rate(len(self.rates)))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", math.nan))
        self._average = SMOOTHING * self._average + (1 - SMOOTHING) * loss
        smoothed = self._average / (1 - SMOOTHING ** (len(self.rates) + 1))
        self.rates.append(self.rate(len(self.rates)))
        self.losses.append(smoothed)
        self._best = min(self._best, smoothed)
        if not math.isfinite(smoothed) or smoothed > DIVERGED * self._best or len(self.rates) >= self.steps:
            self.model.stop_training = True


def suggestion(rates: list[float], losses: list[float]) -> float:
    """The "valley" rate (the heuristic fastai's `lr_find` suggests by default): find the longest
    falling stretch of the smoothed loss (the longest decreasing subsequence, bumps skipped) and
    take the rate half-way down its middle third, well before the loss turns up again."""
    values = np.asarray(losses, dtype=float)
    n = len(values)
    if n < 10:
        raise ValueError("too few steps in the range test to suggest a learning rate")
    longest = np.ones(n, dtype=int)  # longest decreasing subsequence ending at each point
    for i in range(1, n):
        earlier = longest[:i][values[:i] > values[i]]
        if len(earlier):
            longest[i] = earlier.max() + 1
    end = int(np.argmax(longest))
    start = max(0, end - int(longest[end]) + 1)  # where the stretch begins, at the earliest
    third = (end - start) / 3
    return float(rates[start + int(third) + int(third / 2)])


def _range_test(
    model: keras.Model, dataset, config: Config, steps: int, num_classes: int
) -> tuple[list[float], list[float]]:
    test = RangeTest(steps)
    compile_model(model, config, LOW, num_classes=num_classes, jit_compile=False)
    model.fit(dataset.repeat(), steps_per_epoch=steps, epochs=1, callbacks=[test], verbose=0, shuffle=False)
    return test.rates, test.losses


def find_learning_rates(
    config: Config, competition: Competition, index: ImageIndex, steps: int = STEPS
) -> dict:
    """Run the range test for the head phase and for fine-tuning on the holdout split's training
    images; save the curves and suggestions (layout.lr_find_file) and return them."""
    steps, k = steps or STEPS, competition.num_classes
    train, _ = holdout_split(config, index)
    keras.utils.set_random_seed(config.data.seed)
    dataset = make_dataset(train, config, training=True, num_classes=k)
    classifier = build_classifier(config, num_classes=k)
    classifier.backbone.trainable = not classifier.spec.pretrained
    start = classifier.model.get_weights()
    curves = {"head": _range_test(classifier.model, dataset, config, steps, k)}
    found = {"head": suggestion(*curves["head"])}
    if classifier.spec.pretrained:
        classifier.model.set_weights(start)  # from the start: one head epoch at the suggestion
        compile_model(classifier.model, config, found["head"], num_classes=k, jit_compile=False)
        classifier.model.fit(dataset, epochs=1, verbose=0, shuffle=False)  # tf.data shuffles
        unfreeze_top_blocks(classifier.backbone, config.train.unfreeze, classifier.spec)
        curves["fine"] = _range_test(classifier.model, dataset, config, steps, k)
        found["fine"] = suggestion(*curves["fine"])
    saved = {
        "suggested": found,
        "curves": {k: {"rate": r, "loss": loss} for k, (r, loss) in curves.items()},
    }
    write_text(layout.lr_find_file(config), json.dumps(saved, indent=1) + "\n")
    return saved
