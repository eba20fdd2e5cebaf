"""Prediction files (predictions.parquet, ``fairaug fairness-report``): the classifier's output and
the fairness report's input.

Columns ``label`` (class name), ``fst`` (int 1..6, or 0: unknown) and one ``score_<label>`` column
per class; the classes are the score columns in file order. Other columns (path, group_id, ...) are kept.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from fairaug.skin.types import FST_UNKNOWN, FST_VALUES
from fairaug.errors import DataError
from fairaug.io import atomic_write_bytes

SCORE_PREFIX = "score_"


def score_column(label: str) -> str:
    return f"{SCORE_PREFIX}{label}"


def prediction_classes(frame: pd.DataFrame, source: object = "predictions") -> list[str]:
    """The classes of a prediction table: its ``score_<label>`` columns, in column order."""
    classes = [str(c)[len(SCORE_PREFIX):] for c in frame.columns if str(c).startswith(SCORE_PREFIX)]
    if len(classes) < 2:
        raise DataError(
            f"needs a {SCORE_PREFIX}<label> column per class (at least two), found {len(classes)}", file=source
        )
    return classes


def check_predictions(
    frame: pd.DataFrame, classes: Sequence[str], source: object = "predictions", first_row: int = 1
) -> None:
    """Raise a DataError naming the column (and row: ``first_row`` is the number of the first data
    row) of the first problem: a missing column, a label without a score column, an FST outside
    1..6 or a score that is not a finite number."""
    for column in ["label", "fst", *(score_column(c) for c in classes)]:
        if column not in frame.columns:
            found = ", ".join(map(str, frame.columns))
            raise DataError(f"missing column (found: {found})", file=source, column=column)

    def first_bad(column: str, bad: ArrayLike, message: str) -> None:
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            position = int(np.argmax(bad))
            value = frame[column].iloc[position]
            value = value.item() if isinstance(value, np.generic) else value  # 9, not np.int64(9)
            raise DataError(f"{message}, got {value!r}", file=source, row=position + first_row, column=column)

    first_bad("label", ~frame["label"].isin(classes), f"label must be one of {', '.join(classes)}")
    fst = pd.to_numeric(frame["fst"], errors="coerce")
    first_bad("fst", ~fst.isin([*FST_VALUES, FST_UNKNOWN]),
              f"FST must be an integer from 1 to 6 ({FST_UNKNOWN}: unknown)")
    for c in classes:
        column = score_column(c)
        score = pd.to_numeric(frame[column], errors="coerce")
        first_bad(column, ~np.isfinite(score.to_numpy(np.float64)), "score must be a finite number")


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A prediction table from .parquet or .csv, checked (DataError naming file, row and column).
    Rows count data rows from 1 in a parquet file, and are line numbers in a CSV (header: line 1)."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise DataError("predictions must be a .parquet or .csv file", file=path)
    if not path.is_file():
        raise DataError("file not found", file=path)
    try:
        if path.suffix == ".parquet":
            frame, first_row = pd.read_parquet(path), 1
        else:
            frame, first_row = pd.read_csv(path, dtype={"label": str}), 2
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DataError(f"not a readable {path.suffix[1:]} file: {str(err).strip()}", file=path) from None
    classes = prediction_classes(frame, source=path)
    frame = frame.assign(label=frame["label"].astype(str)) if "label" in frame.columns else frame
    check_predictions(frame, classes, source=path, first_row=first_row)
    return frame.assign(fst=frame["fst"].astype(np.int64))


def write_predictions(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a prediction table as parquet, atomically."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return atomic_write_bytes(path, buffer.getvalue())
