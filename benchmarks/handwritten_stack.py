"""The second reference: a stack of frozen features written by hand, as a user would after reading
about the Dogs vs. Cats Redux winners, without this project: MobileNet 0.25 (ImageNet weights)
features at 224, 288 and 352 px concatenated, scikit-learn's LogisticRegressionCV, predictions
clipped to [0.005, 0.995]."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SIZES = (224, 288, 352)


def features(paths: list[str], size: int, weights: Path) -> np.ndarray:
    """Pooled features of the frozen backbone, 256 photos at a time."""
    base = keras.applications.MobileNet(
        input_shape=(size, size, 3), alpha=0.25, include_top=False, weights=str(weights), pooling="avg"
    )
    parts = []
    for start in range(0, len(paths), 256):
        chunk = paths[start : start + 256]
        x = np.stack(
            [keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size))) for p in chunk]
        )
        parts.append(base.predict(x / 127.5 - 1, batch_size=64, verbose=0))
    return np.concatenate(parts)


def stack_and_predict(
    train_paths: list[str], labels: np.ndarray, test_paths: list[str], weights: Path
) -> np.ndarray:
    """P(dog) of every test photo (every class's probability with more than two classes)."""
    x_train = np.hstack([features(train_paths, s, weights) for s in SIZES])
    x_test = np.hstack([features(test_paths, s, weights) for s in SIZES])
    model = make_pipeline(
        StandardScaler(), LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss", max_iter=3000)
    )
    model.fit(x_train, labels)
    predicted = np.clip(model.predict_proba(x_test), 0.005, 0.995)
    return predicted[:, 1] if predicted.shape[1] == 2 else predicted / predicted.sum(axis=1, keepdims=True)
