"""An open pipeline for Kaggle image-classification competitions."""

__version__ = "0.1.0"

# Lower layers never import higher ones (lazily inside a function neither). Within a layer,
# modules may import each other, as long as no circle forms.
LAYERS: list[tuple[str, ...]] = [
    (
        "pipeline.atomic",
        "pipeline.competitions",
        "pipeline.locks",
        "pipeline.native_logs",
        "pipeline.registry",
        "pipeline.tables",
        "pipeline.metrics",
    ),
    ("pipeline.config",),
    ("pipeline.run",),
    ("pipeline.layout", "pipeline.kaggle_api"),
    ("pipeline.acquire",),
    ("pipeline.data",),
    ("pipeline.model",),
    ("pipeline.fit",),
    ("pipeline.infer",),
    ("pipeline.recipe",),
    ("pipeline.submit",),
    ("pipeline.report",),
    ("pipeline.kernel",),
    ("pipeline.flow",),
    ("pipeline.kernel.runner", "pipeline.demo", "pipeline.cli", "pipeline.__main__"),  # entry points
]
