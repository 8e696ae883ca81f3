"""`make report`: one self-contained page per finished run, runs/<slug>/<run>/report.html, with its
PNG files beside it in report/.

Everything comes from the run folder (configuration, histories, metrics, validation predictions,
model); the validation images are read through the competition's index when it is on this machine
(a kernel's downloaded outputs have no images: the page says so), and the tuning study, the
augmentation preview and the ledger are shown when they exist.
"""

from __future__ import annotations

import base64
import contextlib
import io
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from pipeline import layout
from pipeline.acquire.index import with_indexed_classes
from pipeline.competitions import Competition, get_competition
from pipeline.config import Config, apply_settings
from pipeline.fit.metrics import from_columns
from pipeline.infer.postprocess import choose_clip, choose_temperature, clip, with_temperature
from pipeline.metrics import METRICS
from pipeline.report import plots
from pipeline.report.classes import per_class_table, predictions_table, top_confusions
from pipeline.run import PostProcessing, Run
from pipeline.tables import read_id_csv

SECTIONS = {
    "summary": "Summary",
    "portfolio": "Portfolio: members, scores, time, weights",
    "curves": "Learning curves",
    "metrics": "Metrics per fold and out-of-fold",
    "errors": "Confusion matrix, ROC, precision-recall, calibration",
    "gallery": "Most confidently wrong and least certain images",
    "model": "The model",
    "inside": "Inside the CNN: filters, feature maps, Grad-CAM",
    "extras": "Tuning, augmentation preview, leaderboard",
}
TEMPLATE = "page.j2"  # beside this module; Jinja2, every value autoescaped


class Page:
    """The report being written: sections of HTML with images embedded and saved beside."""

    def __init__(self, hidden: tuple[str, ...] = ()) -> None:
        self.parts: dict[str, list[str]] = {key: [] for key in SECTIONS}
        self.hidden = hidden  # table columns (metrics) that do not apply to this competition

    def add(self, section: str, kind: str, **fields: object) -> None:
        """One block of a section, rendered by the template (values escaped there)."""
        self.parts[section].append({"kind": kind, **fields})

    def text(self, section: str, words: str) -> None:
        self.add(section, "text", words=words)

    def heading(self, section: str, words: str) -> None:
        self.add(section, "heading", words=words)

    def pre(self, section: str, words: str, summary: str = "") -> None:
        """Preformatted text, folded under `summary` when one is given."""
        self.add(section, "pre", words=words, summary=summary)

    def rows(self, section: str, rows: dict[str, object]) -> None:
        """A two-column table of names and values."""
        self.add(section, "rows", rows=[(name, str(value)) for name, value in rows.items()])

    def image(self, section: str, path: Path, caption: str = "") -> None:
        self.add(
            section, "image", data=base64.b64encode(path.read_bytes()).decode(), caption=caption or path.stem
        )

    def table(self, section: str, frame: pd.DataFrame) -> None:
        """A table for people: whole numbers as such, seconds to the second, scores to 4 places;
        metrics that do not apply to the competition left out (see `applies`)."""
        shown = frame[[c for c in frame.columns if c not in self.hidden]]
        formats = {c: (lambda v: f"{v:.0f}") for c in shown.columns if "seconds" in str(c)}
        markup = shown.to_html(index=False, float_format=lambda v: f"{v:.4f}", formatters=formats, border=0)
        self.add(section, "table", html=Markup(markup))  # pandas escapes every cell

    def render(self, title: str) -> str:
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True, keep_trailing_newline=True
        )
        sections = [
            {"key": key, "title": SECTIONS[key], "blocks": blocks}
            for key, blocks in self.parts.items()
            if blocks
        ]
        return environment.get_template(TEMPLATE).render(title=title, sections=sections)


def _run_config(member: Run, config: Config) -> Config:
    saved = member.read_config()
    return apply_settings(config, {k: v for k, v in saved.items() if k != "paths"}, str(member.config_path))


def _images(config: Config, ids: list[str]) -> dict[str, Path]:
    """Paths of training images by id, through the competition's index when it is here."""
    table = layout.index_dir(config) / "train.csv"
    if not table.is_file():
        return {}
    index = read_id_csv(table)
    found = index[index["id"].isin(ids)]
    return {row.id: Path(row.path) for row in found.itertuples() if Path(row.path).is_file()}


def _thumbnail(path: Path, side: int = 160) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((side, side))
        return np.asarray(image, dtype=np.float32)


ORDINAL_ONLY = ("qwk",)  # agreement of ordered classes: meaningless for classes without an order


def not_applying(competition: Competition) -> tuple[str, ...]:
    """Metrics computed for every run that say nothing for this competition: QWK unless the
    competition is scored by it (its classes are ordered)."""
    return tuple(m for m in ORDINAL_ONLY if competition.metric != m)


def build_report(config: Config, run: Run) -> Path:
    """Write the run's report.html (and report/*.png) for a finished k-fold or holdout run."""
    members = run.members()
    if not members:
        raise FileNotFoundError(f"{run.path} has no finished model to report on: train it first.")
    config = _run_config(members[0], config)
    competition = with_indexed_classes(config, get_competition(config.competition))
    out = run.report_draft_dir()
    page = Page(hidden=not_applying(competition))
    metrics = [m.read_metrics() for m in members]
    validation = pd.concat([m.read_validation().assign(member=m.name) for m in members], ignore_index=True)
    chosen = run.read_postprocessing()
    threshold = chosen.threshold if chosen is not None and chosen.threshold is not None else 0.5
    validation = predictions_table(validation, threshold)
    if not competition.classes:  # classes read from data that is not on this machine: numbered
        probabilities = from_columns(validation)
        count = probabilities.shape[1] if probabilities.ndim == 2 else 2
        competition = competition.with_classes(tuple(str(k) for k in range(count)))

    _summary(page, config, run, members, metrics, chosen)
    histories = {m.name: h for m in members if (h := m.read_history()) is not None}
    page.image(
        "curves", plots.learning_curves(histories, out / "learning_curves.png"), "loss and accuracy per epoch"
    )
    _metrics(page, run, metrics, members)
    if competition.num_classes > 2:
        _errors_of_many_classes(page, validation, competition.classes, chosen, out)
    else:
        _errors_of_two_classes(page, validation, competition.classes, chosen, threshold, out)
    model = _load_model(members[0])
    images = _images(config, validation["id"].tolist())
    commons = _what_errors_share(page, config, validation)
    _gallery(page, validation, images, competition.classes, out, commons)
    _model_section(page, model, config, out)
    _inside(page, model, config, competition, validation, images, out)
    _extras(page, config, out)
    return run.publish_report(page.render(f"{competition.title}: run {run.name}"))


def _errors_of_two_classes(
    page: Page,
    validation: pd.DataFrame,
    classes: tuple[str, ...],
    chosen: PostProcessing | None,
    threshold: float,
    out: Path,
) -> None:
    labels, probabilities = validation["label"].to_numpy(), validation["probability"].to_numpy()
    page.image(
        "errors",
        plots.confusion(labels, validation["predicted"].to_numpy(), classes, out / "confusion.png"),
        f"confusion matrix at threshold {threshold}",
    )
    page.image(
        "errors", plots.roc_and_pr(labels, probabilities, out / "roc_pr.png"), "ROC and precision-recall"
    )
    c = (
        chosen.clip
        if chosen is not None and chosen.clip is not None
        else choose_clip(probabilities, labels)[0]
    )
    before = METRICS["log_loss"].score(labels, probabilities)
    after = METRICS["log_loss"].score(labels, clip(probabilities, c))
    note = f"clip c={c}: log loss {before:.4f} -> {after:.4f}"
    page.image(
        "errors",
        plots.calibration(labels, probabilities, note, out / "calibration.png"),
        f"calibration; {note}",
    )


def _errors_of_many_classes(
    page: Page, validation: pd.DataFrame, classes: tuple[str, ...], chosen: PostProcessing | None, out: Path
) -> None:
    labels, predicted = validation["label"].to_numpy(dtype=int), validation["predicted"].to_numpy()
    probabilities = from_columns(validation)
    page.image(
        "errors",
        plots.confusion_normalised(labels, predicted, classes, out / "confusion.png"),
        "confusion matrix, each row divided by the true class's images (the diagonal is its recall)",
    )
    confusions = top_confusions(labels, predicted, classes)
    if confusions.empty:
        page.text("errors", "No validation image is confused with another class.")
    else:
        page.heading("errors", "The most frequent confusions")
        page.table("errors", confusions)
    page.heading("errors", "Per class (the lowest F1 first)")
    page.table("errors", per_class_table(labels, predicted, classes))
    page.image(
        "errors",
        plots.one_vs_rest_roc(labels, probabilities, classes, out / "roc.png"),
        "ROC curves, one class against the rest",
    )
    temperature = chosen.temperature if chosen is not None and chosen.temperature is not None else None
    if temperature is None:
        temperature = choose_temperature(probabilities, labels)[0]
    before = METRICS["log_loss"].score(labels, probabilities)
    after = METRICS["log_loss"].score(labels, with_temperature(probabilities, temperature))
    note = f"temperature {temperature:g}: log loss {before:.4f} -> {after:.4f}"
    page.image(
        "errors",
        plots.confidence_calibration(
            validation["p_predicted"].to_numpy(),
            ~validation["wrong"].to_numpy(),
            note,
            out / "calibration.png",
        ),
        f"calibration of the top class; {note} (on these validation predictions)",
    )


def _summary(
    page: Page,
    config: Config,
    run: Run,
    members: list[Run],
    metrics: list[dict],
    chosen: PostProcessing | None,
) -> None:
    scores = run.read_cv_table()
    overall = (
        scores[scores["fold"].astype(str) == "all"].iloc[0].to_dict() if scores is not None else metrics[0]
    )
    rows = {
        "competition": config.competition,
        "backbone": config.model.backbone,
        "image size": f"{config.data.image_size} px",
        "models": f"{len(members)} ({'k-fold' if members[0] != run else 'holdout'})"
        + (f" + {len(refits)} refit on all the images" if (refits := run.refit_members()) else ""),
        "in the submission": ", ".join(chosen.models) if chosen and chosen.models else "predict has not run",
        "wall time": f"{sum(m.get('seconds', 0) for m in metrics):.0f} s of training",
        **{k: f"{float(overall[k]):.4f}" for k in METRICS if k in overall and k not in page.hidden},
    }
    page.rows("summary", rows)
    page.pre("summary", config.to_json(), summary="resolved configuration")


def _metrics(page: Page, run: Run, metrics: list[dict], members: list[Run]) -> None:
    table = run.read_cv_table()
    if table is not None:
        page.table("metrics", table)
    else:
        page.table(
            "metrics", pd.DataFrame([{"model": m.name, **s} for m, s in zip(members, metrics, strict=True)])
        )


def _load_model(member: Run):
    from pipeline.model.classifier import load_trained_model

    return load_trained_model(member.model_path)


MAX_PROPERTY_IMAGES = 30_000  # images read for "what the errors have in common" (thumbnails: ~2 ms each)


def _what_errors_share(page: Page, config: Config, validation: pd.DataFrame) -> pd.DataFrame | None:
    """Error rates by image property (grayscale, size, aspect ratio, brightness) and the finding, in
    the errors section; returns the evaluated images with their properties (for the galleries)."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.report.errors import error_table, finding, image_properties

    table = layout.index_dir(config) / "train.csv"
    if not table.is_file():
        return None
    index = read_id_csv(table)[["id", "path", "width", "height"]]
    evaluated = validation.merge(index, on="id").head(MAX_PROPERTY_IMAGES)
    evaluated = evaluated[[Path(p).is_file() for p in evaluated["path"]]].reset_index(drop=True)
    if evaluated.empty:
        return None
    with ThreadPoolExecutor(max_workers=config.data.validation_workers) as pool:
        properties = pd.DataFrame(list(pool.map(image_properties, map(Path, evaluated["path"]))))
    evaluated = pd.concat([evaluated, properties], axis=1)
    rates = error_table(evaluated, evaluated)
    found = finding(rates)
    page.heading("errors", "What the errors have in common")
    page.text(
        "errors",
        (found[0].upper() + found[1:] + ".")
        if found
        else f"No group of images stands out: {int(evaluated['wrong'].sum())} errors spread over the groups.",
    )
    page.table("errors", rates.rename(columns={"share of training images": "share of the images"}))
    return evaluated


def _gallery(
    page: Page,
    validation: pd.DataFrame,
    images: dict[str, Path],
    classes: tuple[str, ...],
    out: Path,
    commons: pd.DataFrame | None = None,
) -> None:
    from pipeline.report.errors import dominant_group

    if not images:
        page.text(
            "gallery",
            "The training images are not on this machine (e.g. a kernel's downloaded outputs): no gallery.",
        )
        return
    frame = validation[validation["id"].isin(images)]
    wrong = frame[frame["wrong"]].nlargest(12, "p_predicted")
    unsure = frame.nsmallest(12, "margin")
    for name, rows in (("most confidently wrong", wrong), ("least certain", unsure)):
        if rows.empty:
            page.text("gallery", f"No {name} images.")
            continue
        captions = [_caption(r, classes) for r in rows.itertuples()]
        thumbnails = [_thumbnail(images[r.id]) for r in rows.itertuples()]
        note = None
        if commons is not None:
            shown = commons[commons["id"].isin(rows["id"])]
            note = dominant_group(shown, commons) if len(shown) == len(rows) else None
        page.image(
            "gallery",
            plots.image_grid(thumbnails, captions, out / f"{name.replace(' ', '_')}.png"),
            f"{name}: {note}" if note else name,
        )


def _caption(row: object, classes: tuple[str, ...]) -> str:
    true, predicted = classes[int(row.label)], classes[int(row.predicted)]
    if len(classes) == 2:
        return f"{true}: P({classes[-1]})={row.probability:.2f}"
    return f"true {true}, predicted {predicted} ({row.p_predicted:.2f})"


def _model_section(page: Page, model, config: Config, out: Path) -> None:
    import keras

    from pipeline.model.backbones import unfreeze_top_blocks
    from pipeline.model.classifier import BACKBONE_LAYER
    from pipeline.registry import get_backbone

    diagram = out / "model.png"
    try:
        keras.utils.plot_model(model, to_file=str(diagram), show_shapes=True, dpi=70)
        page.image("model", diagram, "model diagram (keras.utils.plot_model)")
    except (ImportError, OSError) as error:  # pydot or Graphviz's `dot` missing
        missing = (
            "pydot (pip install pydot)" if "pydot" in str(error) else "Graphviz (apt-get install graphviz)"
        )
        page.text("model", f"No diagram here: {missing} is not installed. The layers instead:")
        lines: list[str] = []
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
        page.pre("model", chr(10).join(lines))
    backbone = model.get_layer(BACKBONE_LAYER)
    total, in_backbone = model.count_params(), backbone.count_params()
    rows = [{"phase": "all weights", "trainable": total, "frozen": 0}]
    spec = get_backbone(config.model.backbone)
    if spec.pretrained:
        rows.append(
            {"phase": "head (backbone frozen)", "trainable": total - in_backbone, "frozen": in_backbone}
        )
        if config.train.fine_epochs > 0:
            with contextlib.redirect_stdout(io.StringIO()):
                unfreeze_top_blocks(backbone, config.train.unfreeze, spec)
            trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
            rows.append(
                {
                    "phase": f"fine (top {config.train.unfreeze} blocks, BN frozen)",
                    "trainable": trainable,
                    "frozen": total - trainable,
                }
            )
    else:
        rows.append({"phase": "trained whole from scratch", "trainable": total, "frozen": 0})
    page.table("model", pd.DataFrame(rows))


def _model_inputs(config: Config, paths: list[Path]) -> np.ndarray:
    from pipeline.data.input_pipeline import make_dataset

    frame = pd.DataFrame({"path": [str(p) for p in paths]})
    return np.concatenate([batch.numpy() for batch in make_dataset(frame, config, training=False)])


def _inside(
    page: Page,
    model,
    config: Config,
    competition: Competition,
    validation: pd.DataFrame,
    images: dict[str, Path],
    out: Path,
) -> None:
    from pipeline.report.inside import feature_maps, first_conv_filters, gradcam

    filters = first_conv_filters(model)
    if filters is not None:
        page.image(
            "inside",
            plots.filters_and_edges(filters, out / "filters.png"),
            (
                "Prewitt and Sobel, then the first convolution's filters: each colour channel and their grey "
                "(luminance-weighted) sum, centred at 0 (red positive, blue negative), with the nearest "
                "classic kernel and its cosine similarity"
            ),
        )
    if not images:
        page.text("inside", "No images here for feature maps and Grad-CAM.")
        return
    chosen = validation[validation["id"].isin(images)].groupby("label").head(3)
    inputs = _model_inputs(config, [images[i] for i in chosen["id"]])
    from pipeline.registry import get_backbone

    maps = feature_maps(model, inputs[0], spec=get_backbone(config.model.backbone))
    if maps:
        page.image(
            "inside",
            plots.feature_maps(inputs[0], maps, out / "feature_maps.png"),
            "the input image, then its feature maps at four depths (each row on one colour scale)",
        )
    else:
        page.text("inside", "No feature maps: this backbone's features are a sequence of tokens.")
    try:
        heat, predicted = gradcam(model, inputs, spec=get_backbone(config.model.backbone))
    except NotImplementedError as error:
        page.text("inside", f"No Grad-CAM: {error} (rebuild this report with --backend tensorflow).")
        return
    classes, positive = competition.classes, competition.classes[-1]
    if len(classes) == 2:
        captions = [
            f"{classes[c]} (P({positive})={p:.2f}); true {classes[int(label)]}"
            for c, p, label in zip(predicted, chosen["probability"], chosen["label"], strict=True)
        ]
    else:
        captions = [
            f"{classes[c]} (P={p:.2f}); true {classes[int(label)]}"
            for c, p, label in zip(
                predicted,
                from_columns(chosen)[np.arange(len(chosen)), predicted],
                chosen["label"],
                strict=True,
            )
        ]
    page.image(
        "inside",
        plots.heatmap_overlays(list(inputs), list(heat), captions, out / "gradcam.png"),
        "Grad-CAM of the class the model chose (named first in each title): where the evidence for it lies",
    )


def _extras(page: Page, config: Config, out: Path) -> None:
    shown = False
    for name in ("optimization_history", "param_importances"):
        path = layout.study_dir(config) / f"{name}.png"
        if path.is_file():
            page.image("extras", path, f"Optuna study {config.tune.study}: {name.replace('_', ' ')}")
            shown = True
    ranges = layout.lr_find_file(config).with_suffix(".png")
    if ranges.is_file():
        page.image("extras", ranges, "learning-rate range test (make lr-find) and the suggested rates")
        shown = True
    preview = layout.preview_dir(config) / "batch.png"
    if preview.is_file():
        page.image("extras", preview, "augmented training batch (make preview)")
        shown = True
    plot = scored_submissions_plot(config, out / "cv_against_public.png")
    if plot is not None:
        page.image("extras", plot, "CV against public leaderboard score, one point per submission")
        shown = True
    if not shown:
        page.text(
            "extras", "No tuning study, learning-rate test, augmentation preview or scored submission yet."
        )


def scored_submissions_plot(config: Config, path: Path) -> Path | None:
    """The CV-against-public scatter of the competition's scored submissions, or None without any."""
    from pipeline.submit.ledger import read_ledger, scored

    rows = scored(read_ledger(layout.ledger_path(config)), config.competition)
    metric = get_competition(config.competition).metric
    return None if rows.empty else plots.cv_against_public(rows, metric, path)
