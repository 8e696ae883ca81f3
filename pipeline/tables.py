"""CSV files the project did not write (sample submissions, labels, submissions, solutions) are
read as text: ids and class names stay exactly as written (`0001` stays `0001`, `NA` stays `NA`)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def read_text_csv(source: Any, **options: Any) -> pd.DataFrame:
    """`pd.read_csv(source)` with every cell as the text in the file: no number or missing-value guess."""
    return pd.read_csv(source, dtype=str, keep_default_na=False, **options)


def read_id_csv(source: Any, **options: Any) -> pd.DataFrame:
    """A table the project wrote (predictions, folds, the index): ids as text (`NA` and `0001`
    included), the other columns as pandas reads them."""
    return pd.read_csv(source, dtype={"id": str}, keep_default_na=False, **options)
