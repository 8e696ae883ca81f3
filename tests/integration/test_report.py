"""The report page: built from a tiny run, opened in headless Chromium; Grad-CAM that looks where the model does."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest

from pipeline import flow
from pipeline.acquire.index import ImageIndex
from pipeline.competitions import Competition
from pipeline.model.classifier import HEAD_DROPOUT, OUTPUT
from pipeline.report.build import SECTIONS
from pipeline.report.inside import gradcam
from tests.conftest import tiny_config

PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.images = images.length;
  document.body.dataset.broken = images.filter((i) => !i.complete || i.naturalWidth === 0).length;
  document.body.dataset.requests = performance.getEntriesByType("resource").length;
});
</script></body>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI_REQUIRE_BROWSER"):
            pytest.fail("chromium is missing: apt-get install chromium")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


def path_without(tmp_path: Path, program: str) -> str:
    """A PATH with every program of today's PATH except `program` (linked into one folder)."""
    folder = tmp_path / f"path-without-{program}"
    folder.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        for tool in Path(directory).glob("*") if Path(directory).is_dir() else ():
            target = folder / tool.name
            if tool.name != program and not target.exists() and os.access(tool, os.X_OK):
                target.symlink_to(tool)
    return str(folder)


def open_in_browser(browser: str, page: Path) -> tuple[str, str, int]:
    """(DOM, <body> attributes, images shown) of the report opened in headless Chromium."""
    text = page.read_text()
    probed = page.with_name("probed.html")  # the report's policy also forbids scripts: let the probe run
    probed.write_text(
        text.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';").replace(
            "</body>", PROBE
        )
    )
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    return dom, body, int(re.search(r'data-images="(\d+)"', body).group(1))


def test_the_report_opens_whole_in_a_browser_with_every_section(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    demo: Competition,
    demo_archive_dir: Path,
    demo_index: ImageIndex,
) -> None:
    browser = chromium()
    config = tiny_config(
        tmp_path,
        paths__input_root=str(demo_archive_dir.parent),
        paths__submissions_root=str(tmp_path / "submissions"),
        model__backbone="small-cnn",
        data__image_size=48,
        train__head_epochs=2,
    )
    run = flow.train(config, holdout=True)  # writes the report at the end
    page = run.report_page
    for graphviz in ("as installed", "hidden"):  # the page is whole with or without Graphviz's dot
        if graphviz == "hidden":
            monkeypatch.setenv("PATH", path_without(tmp_path, "dot"))
            flow.report(config, run)
        text = page.read_text()
        assert not re.search(r"""(src|href)=["']?https?:""", text)  # nothing to fetch from elsewhere
        dom, body, shown = open_in_browser(browser, page)
        assert 'data-broken="0"' in body and 'data-requests="0"' in body, (graphviz, body)
        assert shown == text.count("<img ") >= 8  # every figure drawn (galleries depend on the errors)
        for key in (k for k in SECTIONS if k != "portfolio"):  # a portfolio's section: only on its page
            assert f'<section id="{key}">' in dom, (graphviz, key)
        assert '<section id="portfolio">' not in dom  # an empty section is left out
        assert "Prewitt" in text and "Grad-CAM" in text and "resolved configuration" in text
        figures = {p.name for p in run.report_dir.glob("*.png")}
        assert len(figures) == shown, graphviz  # each figure also beside the page
    assert "model.png" not in figures and "Total params" in text  # no diagram: the summary instead
    assert "Graphviz (apt-get install graphviz) is not installed" in text and "https://graphviz" not in text


def one_half_model(half: str) -> keras.Model:
    """A classifier whose decision depends on one half of the image only (the other is masked out)."""
    mask = np.zeros((1, 16, 16, 1), "float32")
    mask[:, :, :8] = 1.0
    if half == "right":
        mask = mask[:, :, ::-1].copy()
    image = keras.Input((16, 16, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(image)
    kept = keras.layers.Lambda(lambda x: x * mask, name="one_half")(features)
    backbone = keras.Model(image, keras.layers.GlobalAveragePooling2D()(kept), name="backbone")
    inputs = keras.Input((16, 16, 3))
    dropped = keras.layers.Dropout(0.0, name=HEAD_DROPOUT)(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name=OUTPUT)(dropped))


@pytest.mark.parametrize("half", ["left", "right"])
@pytest.mark.parametrize("predicted", [0, 1])
def test_gradcam_of_the_predicted_class_lies_in_the_half_the_decision_depends_on(
    half: str, predicted: int
) -> None:
    keras.utils.set_random_seed(0)
    model = one_half_model(half)
    dense = model.get_layer(OUTPUT)
    kernel, _ = dense.get_weights()
    dense.set_weights([kernel, np.array([8.0 if predicted else -8.0], "float32")])  # saturated: P = 0 or 1
    images = np.random.default_rng(1).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    assert ((model.predict(images, verbose=0)[:, 0] > 0.5) == bool(predicted)).all()
    heat, chosen = gradcam(model, images)
    assert chosen.tolist() == [predicted] * 4 and heat.shape == (4, 16, 16)
    assert (heat.max(axis=(1, 2)) > 0).all()  # no blank map, whichever class was chosen
    left = heat[:, :, :8].sum() / heat.sum()
    assert (left if half == "left" else 1 - left) > 0.95


def test_feature_maps_are_named_by_block_and_drawn_beside_their_input(tmp_path: Path) -> None:
    from pipeline.config import load_config
    from pipeline.model.classifier import build_classifier
    from pipeline.report import plots
    from pipeline.report.inside import feature_maps

    config = load_config(
        overrides={"model.backbone": "mobilenet-0.25", "model.weights": "none", "data.image_size": 96},
        environ={},
    )
    image = np.random.default_rng(0).uniform(0, 255, (96, 96, 3)).astype("float32")
    from pipeline.registry import get_backbone

    maps = feature_maps(build_classifier(config, 2).model, image, spec=get_backbone("mobilenet-0.25"))
    assert list(maps) == ["stem (Conv2D)", "block4 (ReLU)", "block9 (ReLU)", "block13 (ReLU)"]
    assert plots.feature_maps(image, maps, tmp_path / "maps.png").stat().st_size > 1000
