"""The report's figures: matplotlib (Agg, no display), each function data in -> one PNG out."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

# The course's hand-made edge detectors, shown beside the filters the network learned.
EDGE_FILTERS = {
    "Prewitt x": np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], float),
    "Prewitt y": np.array([[-1, -1, -1], [0, 0, 0], [1, 1, 1]], float),
    "Sobel x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float),
    "Sobel y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], float),
}


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)
    return path


def learning_curves(histories: dict[str, pd.DataFrame], path: Path) -> Path:
    """Loss and accuracy per epoch of every member (train dashed, validation solid), the head/fine
    boundary as a dotted line and the epoch whose weights early stopping restored as a dot."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for (name, history), colour in zip(histories.items(), plt.cm.tab10.colors, strict=False):
        for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
            if metric not in history:
                continue
            axis.plot(history["epoch"] + 1, history[metric], "--", color=colour, alpha=0.6)
            axis.plot(
                history["epoch"] + 1, history[f"val_{metric}"], "-", color=colour, label=f"{name} validation"
            )
            fine = history[history["phase"] == "fine"]
            if len(fine):
                axis.axvline(fine["epoch"].min() + 0.5, color=colour, linestyle=":", alpha=0.8)
            last_phase = history[history["phase"] == history["phase"].iloc[-1]]
            best = last_phase.loc[last_phase["val_loss"].idxmin()]
            axis.plot(best["epoch"] + 1, best[f"val_{metric}"], "o", color=colour)
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_title("loss (dashed: training; dotted line: fine-tuning starts)")
    axes[1].set_title("accuracy (dot: the epoch early stopping restored)")
    return _save(figure, path)


def confusion(labels: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...], path: Path) -> Path:
    """The confusion matrix of hard predictions, counts in the cells."""
    matrix = confusion_matrix(labels, predicted, labels=list(range(len(classes))))
    figure, axis = plt.subplots(figsize=(3.6, 3.2))
    axis.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        dark = count > matrix.max() / 2
        axis.text(column, row, str(count), ha="center", va="center", color="white" if dark else "black")
    axis.set_xticks(range(len(classes)), classes)
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    return _save(figure, path)


def confusion_normalised(
    labels: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...], path: Path
) -> Path:
    """The confusion matrix of many classes, each row normalised to the true class's images (the
    diagonal is its recall); shares written in the cells up to 15 classes, class names on the axes
    up to 40 (beyond that the table of top confusions names them)."""
    count = len(classes)
    matrix = confusion_matrix(labels, predicted, labels=list(range(count))).astype(float)
    matrix /= np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = min(14.0, 2.5 + 0.45 * count)
    figure, axis = plt.subplots(figsize=(side, side * 0.9))
    shown = axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(shown, ax=axis, fraction=0.04, label="share of the true class")
    if count <= 15:
        for (row, column), share in np.ndenumerate(matrix):
            if share >= 0.005:
                colour = "white" if share > 0.5 else "black"
                axis.text(column, row, f"{share:.2f}", ha="center", va="center", color=colour, fontsize=8)
    if count <= 40:
        axis.set_xticks(range(count), classes, rotation=90, fontsize=8)
        axis.set_yticks(range(count), classes, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    return _save(figure, path)


def one_vs_rest_roc(
    labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...], path: Path
) -> Path:
    """One-vs-rest ROC curves: every class's up to 12 classes, else the 6 with the lowest AUC; the
    micro-average (every image and class pooled) in black."""
    from sklearn.metrics import auc

    onehot = np.eye(len(classes))[labels]
    areas = {}
    curves = {}
    for k in range(len(classes)):
        if 0 < onehot[:, k].sum() < len(labels):
            fpr, tpr, _ = roc_curve(onehot[:, k], probabilities[:, k])
            curves[k], areas[k] = (fpr, tpr), auc(fpr, tpr)
    shown = sorted(areas, key=areas.__getitem__)[: 12 if len(classes) <= 12 else 6]
    figure, axis = plt.subplots(figsize=(5.2, 4.4))
    for k in sorted(shown):
        axis.plot(*curves[k], label=f"{classes[k]} (AUC {areas[k]:.3f})", linewidth=1)
    fpr, tpr, _ = roc_curve(onehot.ravel(), probabilities.ravel())
    axis.plot(fpr, tpr, color="black", linewidth=2, label=f"micro-average (AUC {auc(fpr, tpr):.3f})")
    axis.plot([0, 1], [0, 1], ":", color="grey")
    title = "ROC, one class against the rest" + ("" if len(classes) <= 12 else " (the 6 lowest AUC)")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    axis.legend(fontsize=7)
    return _save(figure, path)


def confidence_calibration(confidence: np.ndarray, correct: np.ndarray, note: str, path: Path) -> Path:
    """Reliability of the top class: accuracy against confidence (P of the predicted class) per
    bin, y = x, and the histogram of confidences."""
    axes = ("P(predicted class)", "observed accuracy", "reliability of the top class")
    return _reliability(correct.astype(int), confidence, note, path, axes)


def roc_and_pr(labels: np.ndarray, probabilities: np.ndarray, path: Path) -> Path:
    """ROC curve (with the chance diagonal) and precision-recall curve."""
    figure, (roc_axis, pr_axis) = plt.subplots(1, 2, figsize=(8, 3.6))
    fpr, tpr, _ = roc_curve(labels, probabilities)
    roc_axis.plot(fpr, tpr)
    roc_axis.plot([0, 1], [0, 1], ":", color="grey")
    roc_axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    precision, recall, _ = precision_recall_curve(labels, probabilities)
    pr_axis.plot(recall, precision)
    pr_axis.set(xlabel="recall", ylabel="precision", title="precision-recall")
    return _save(figure, path)


def _reliability(
    outcomes: np.ndarray, scores: np.ndarray, note: str, path: Path, axes: tuple[str, str, str]
) -> Path:
    """Observed frequency of `outcomes` (0/1) per bin of `scores` against y = x, beside the
    histogram of `scores`; `axes`: the score's name, the outcome's name, the curve's title."""
    score_name, outcome_name, title = axes
    figure, (curve_axis, hist_axis) = plt.subplots(1, 2, figsize=(8, 3.6))
    if 0 < outcomes.sum() < len(outcomes):  # both outcomes present: a curve to draw
        observed, predicted = calibration_curve(outcomes, scores, n_bins=10, strategy="uniform")
        curve_axis.plot(predicted, observed, "o-", label="model")
    curve_axis.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    curve_axis.set(xlabel=score_name, ylabel=outcome_name, title=title)
    curve_axis.legend(fontsize=8)
    hist_axis.hist(scores, bins=20, range=(0, 1))
    hist_axis.set(xlabel=score_name, ylabel="images", title=note)
    return _save(figure, path)


def calibration(labels: np.ndarray, probabilities: np.ndarray, clip_note: str, path: Path) -> Path:
    """Reliability diagram (fraction positive per probability bin against y = x) and the histogram
    of predicted probabilities, with what clipping did to the log loss."""
    axes = ("predicted P(positive)", "observed fraction positive", "reliability")
    return _reliability(np.asarray(labels, dtype=int), probabilities, clip_note, path, axes)


CAPTION_POINTS = 9  # 11 px at the 90 dpi figures are saved with
CAPTION_CHARACTERS = 24  # per line of a caption under a 2.6-inch image: neighbours never overlap


def _caption(text: str) -> str:
    return "\n".join(textwrap.wrap(text, CAPTION_CHARACTERS)) or text


def image_grid(images: list[np.ndarray], captions: list[str], path: Path, columns: int = 5) -> Path:
    """Images (H, W, 3 in [0, 255] or [0, 1]) in a grid, each with its caption (wrapped, 11 px)."""
    rows = max(1, -(-len(images) // columns))
    lines = max((_caption(c).count("\n") + 1 for c in captions), default=1)
    figure, axes = plt.subplots(
        rows, columns, figsize=(2.6 * columns, (2.4 + 0.2 * lines) * rows), squeeze=False
    )
    for axis in axes.ravel():
        axis.axis("off")
    for axis, image, caption in zip(axes.ravel(), images, captions, strict=False):
        axis.imshow(np.clip(image / (255.0 if image.max() > 1.0 else 1.0), 0, 1))
        axis.set_title(_caption(caption), fontsize=CAPTION_POINTS)
    return _save(figure, path)


LUMINANCE = np.array([0.299, 0.587, 0.114])  # how a grey image weighs red, green and blue


def grey_filter(kernel: np.ndarray) -> np.ndarray:
    """A (k, k, channels) filter as one (k, k) kernel acting on grey images: the luminance-weighted
    sum of its colour channels (the mean for other channel counts)."""
    if kernel.shape[-1] == 3:
        return kernel @ LUMINANCE
    return kernel.mean(axis=-1)


def nearest_edge_filter(kernel: np.ndarray) -> tuple[str, float] | None:
    """The classic edge detector (Prewitt or Sobel, x or y, either sign) closest to a (k, k) kernel
    by cosine similarity, and that similarity; None for kernels that are not 3x3."""
    if kernel.shape != (3, 3) or not np.any(kernel):
        return None
    flat = kernel.ravel() / np.linalg.norm(kernel)
    scores = {name: float(flat @ edge.ravel() / np.linalg.norm(edge)) for name, edge in EDGE_FILTERS.items()}
    name = max(scores, key=lambda n: abs(scores[n]))
    return (name if scores[name] >= 0 else f"-{name}"), abs(scores[name])


def _kernel_tile(axis: plt.Axes, kernel: np.ndarray, title: str, numbers: bool) -> None:
    """One kernel on a diverging map centred at 0, with cell borders (and values if small)."""
    scale = float(np.abs(kernel).max()) or 1.0
    axis.imshow(kernel, cmap="RdBu_r", vmin=-scale, vmax=scale)
    k = kernel.shape[0]
    axis.set_xticks(np.arange(-0.5, k, 1), minor=True)
    axis.set_yticks(np.arange(-0.5, k, 1), minor=True)
    axis.grid(which="minor", color="black", linewidth=0.6)
    axis.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    if numbers and k <= 3:
        for (row, column), value in np.ndenumerate(kernel):
            text = f"{value:.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.2f}"
            shade = "white" if abs(value) > 0.6 * scale else "black"
            axis.text(column, row, text, ha="center", va="center", fontsize=6, color=shade)
    axis.set_title(title, fontsize=7)


def filters_and_edges(filters: np.ndarray, path: Path, shown: int = 8) -> Path:
    """Prewitt and Sobel, then the first convolution's filters: each colour channel and the grey
    sum, each tile on a diverging scale centred at 0, with the nearest classic kernel over the grey."""
    count = min(shown, filters.shape[-1])
    channels = filters.shape[2]
    per_filter = channels + 1 if channels == 3 else 1
    columns = max(len(EDGE_FILTERS), 2 * per_filter)
    rows = 1 + -(-count // (columns // per_filter))
    figure, axes = plt.subplots(rows, columns, figsize=(1.35 * columns, 1.55 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, (name, edge) in zip(axes[0], EDGE_FILTERS.items(), strict=False):
        axis.axis("on")
        _kernel_tile(axis, edge, name, numbers=True)
    per_row = columns // per_filter
    for i in range(count):
        kernel = filters[..., i]
        grey = grey_filter(kernel)
        near = nearest_edge_filter(grey)
        tiles = [(kernel[..., c], f"{i}: {'RGB'[c]}") for c in range(3)] if channels == 3 else []
        label = f"{i}: grey" + (f"\n~{near[0]} ({near[1]:.2f})" if near else "")
        tiles.append((grey, label))
        row, start = 1 + i // per_row, (i % per_row) * per_filter
        for offset, (tile, title) in enumerate(tiles):
            axis = axes[row, start + offset]
            axis.axis("on")
            _kernel_tile(axis, tile, title, numbers=offset == len(tiles) - 1)
    return _save(figure, path)


def feature_maps(image: np.ndarray, maps: dict[str, np.ndarray], path: Path, channels: int = 6) -> Path:
    """The input image, then a few channels of its activations at each depth: one row per layer,
    named with its block and shape, all of a row on one colour scale with its colour bar."""
    rows = len(maps) + 1
    figure, axes = plt.subplots(rows, channels, figsize=(1.6 * channels + 0.6, 1.75 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    axes[0, 0].imshow(np.clip(image / 255.0, 0, 1))
    axes[0, 0].set_title(f"input {image.shape[0]}x{image.shape[1]}", fontsize=7, loc="left")
    for row, (name, activations) in enumerate(maps.items(), start=1):
        shown = activations[..., :channels]
        low, high = float(shown.min()), float(shown.max())
        picture = None
        for column in range(shown.shape[-1]):
            picture = axes[row, column].imshow(shown[..., column], cmap="viridis", vmin=low, vmax=high)
        h, w, c = activations.shape
        axes[row, 0].set_title(f"{name}: {h}x{w}, {c} channels", fontsize=7, loc="left")
        if picture is not None:
            figure.colorbar(picture, ax=list(axes[row]), fraction=0.02, pad=0.01)
    return _save(figure, path)


def heatmap_overlays(
    images: list[np.ndarray], heatmaps: list[np.ndarray], captions: list[str], path: Path
) -> Path:
    """Grad-CAM heat maps over their images."""
    columns = len(images)
    lines = max((_caption(c).count("\n") + 1 for c in captions), default=1)
    figure, axes = plt.subplots(1, columns, figsize=(2.6 * columns, 2.4 + 0.2 * lines), squeeze=False)
    for axis, image, heat, caption in zip(axes[0], images, heatmaps, captions, strict=True):
        axis.imshow(np.clip(image / 255.0, 0, 1))
        axis.imshow(heat, cmap="jet", alpha=0.45, extent=(0, image.shape[1], image.shape[0], 0))
        axis.set_title(_caption(caption), fontsize=CAPTION_POINTS)
        axis.axis("off")
    return _save(figure, path)


def lr_find_plot(saved: dict, path: Path) -> Path:
    """The learning-rate range test: smoothed training loss against the learning rate (log scale)
    for each phase, each suggestion marked."""
    figure, axis = plt.subplots(figsize=(5.6, 3.8))
    for (phase, curve), color in zip(saved["curves"].items(), ("tab:blue", "tab:orange"), strict=False):
        axis.plot(curve["rate"], curve["loss"], color=color, label=phase)
        rate = saved["suggested"][phase]
        axis.axvline(rate, color=color, linestyle=":", label=f"{phase}: suggested {rate:.1e}")
    losses = [v for curve in saved["curves"].values() for v in curve["loss"]]
    axis.set(
        xscale="log",
        xlabel="learning rate",
        ylabel="training loss (smoothed)",
        title="learning-rate range test",
        ylim=(min(losses) * 0.9, min(max(losses), 4 * min(losses)) * 1.1),
    )
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _save(figure, path)


def submission_labels(rows: pd.DataFrame) -> list[str]:
    """One label per submission: its time (UTC, to the minute) and its run, so that several
    submissions of one run can be told apart."""
    times = pd.to_datetime(rows["time"], errors="coerce", utc=True)
    return [
        f"{t:%m-%d %H:%M} {run}" if pd.notna(t) else str(run)
        for t, run in zip(times, rows["run"], strict=True)
    ]


def cv_against_public(rows: pd.DataFrame, metric: str, path: Path) -> Path:
    """Each scored submission as a point labelled with its time and run, CV (x) against public
    score (y), the latest highlighted, with y = x: points leaving the line show a CV that stops
    predicting the leaderboard."""
    figure, axis = plt.subplots(figsize=(5.6, 4.6))
    order = pd.to_datetime(rows["time"], errors="coerce", utc=True).argsort(kind="stable").to_numpy()
    rows = rows.iloc[order]
    earlier, latest = rows.iloc[:-1], rows.iloc[-1:]
    axis.scatter(
        earlier["cv_score"], earlier["public_score"], zorder=3, color="tab:blue", label="submissions"
    )
    axis.scatter(
        latest["cv_score"],
        latest["public_score"],
        zorder=4,
        s=90,
        color="tab:red",
        marker="*",
        label="latest",
    )
    for label, row in zip(submission_labels(rows), rows.itertuples(), strict=True):
        axis.annotate(
            label,
            (row.cv_score, row.public_score),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
            annotation_clip=False,  # a label past the axes is drawn whole; the saved bounds take it in
        )
    values = pd.concat([rows["cv_score"], rows["public_score"]]).dropna()
    low, high = float(values.min()), float(values.max())
    pad = 0.05 * (high - low or 1.0)
    axis.plot([low - pad, high + pad], [low - pad, high + pad], ":", color="grey", label="y = x")
    axis.set(
        xlabel=f"CV {metric} (out-of-fold)",
        ylabel=f"public leaderboard {metric}",
        title="CV against public score",
    )
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _save(figure, path)
