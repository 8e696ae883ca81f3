"""CSV files the project did not write (sample submissions, labels, submissions, solutions) are
read as text: ids and class names stay exactly as written (`0001` stays `0001`, `NA` stays `NA`)."""

from __future__ import annotations

from typing import Any

import pandas as pd


class TableError(ValueError):
    """A CSV file that is empty or no table; the message names it."""


def read_text_csv(source: Any, **options: Any) -> pd.DataFrame:
    """`pd.read_csv(source)` with every cell as the text in the file: no number or missing-value
    guess; TableError for a file that is empty or no CSV table."""
    try:
        return pd.read_csv(source, dtype=str, keep_default_na=False, **options)
    except pd.errors.EmptyDataError as error:
        raise TableError(f"{_name(source)} is empty: it should be a CSV table with a header row") from error
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise TableError(f"{_name(source)} is not a CSV table ({str(error)[:200]})") from error


def _name(source: Any) -> str:
    return str(getattr(source, "name", source)) if not hasattr(source, "read") else "the CSV file"


def read_id_csv(source: Any, **options: Any) -> pd.DataFrame:
    """A table the project wrote (predictions, folds, the index): ids as text (`NA` and `0001`
    included), the other columns as pandas reads them."""
    return pd.read_csv(source, dtype={"id": str}, keep_default_na=False, **options)
