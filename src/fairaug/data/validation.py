"""Data validation with great-expectations (ephemeral context).

Checks run on the record table (see formats.py) and on the per-image scan. A failed check becomes
one DataError that names the file, row and source column of the first offending record and the
others (up to NAMED_PLACES of them, then how many more); every check's outcome also goes into the
validation report.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from fairaug.errors import DataError

Severity = Literal["error", "warning"]
NAMED_PLACES = 10  # the other offending rows an error line names; more would bury the message


@dataclass(frozen=True)
class Check:
    """One expectation, the record column it is about, how to explain an offending record, and what
all the offending records amount to (duplicates: how many distinct files)."""

    expectation: object  # a great_expectations Expectation
    column: str
    explain: Callable[[pd.Series], str]
    severity: Severity = "error"
    summarize: Callable[[pd.DataFrame], str] | None = None


@dataclass
class CheckResult:
    expectation: str
    column: str
    severity: Severity
    success: bool
    unexpected_count: int = 0
    unexpected_index: list[int] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["unexpected_index"] = data["unexpected_index"][:20]
        return data


@functools.cache
def _batch_definition():
    """One ephemeral context for the process: building it costs about a second."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    asset = context.data_sources.add_pandas("fairaug").add_dataframe_asset("records")
    return asset.add_batch_definition_whole_dataframe("all")


def run_checks(frame: pd.DataFrame, checks: list[Check], suite_name: str) -> list[CheckResult]:
    import great_expectations as gx

    batch_definition = _batch_definition()  # first: a suite needs GX's active context
    suite = gx.ExpectationSuite(name=suite_name)
    for index, check in enumerate(checks):
        check.expectation.meta = {"fairaug_check": index}
        suite.add_expectation(check.expectation)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame.reset_index(drop=True)})
    outcome = batch.validate(suite, result_format="COMPLETE")
    # GX does not keep the suite's order (and has no ids without a saved suite): match by our meta tag
    by_index = {result.expectation_config.meta["fairaug_check"]: result for result in outcome.results}
    results = []
    for index, check in enumerate(checks):
        result = by_index[index]
        error = (result.exception_info or {}).get("exception_message") if not result.success else None
        index = [int(i) for i in result.result.get("unexpected_index_list") or []]
        message = ""
        if index:
            message = check.explain(frame.iloc[index[0]])
            if check.summarize is not None:
                message += f"; {check.summarize(frame.iloc[index])}"
        elif error:
            message = f"check could not run: {error}"
        results.append(
            CheckResult(
                expectation=result.expectation_config.type,
                column=check.column,
                severity=check.severity,
                success=bool(result.success),
                unexpected_count=int(result.result.get("unexpected_count") or len(index)),
                unexpected_index=index,
                message=message,
            )
        )
    return results


def raise_first_error(
    results: list[CheckResult], frame: pd.DataFrame, root: Path, source_columns: dict[str, str]
) -> None:
    """Raise a DataError for the first failed error-level check, naming where the problem is."""
    for result in results:
        if result.success or result.severity != "error":
            continue
        column = source_columns.get(result.column, result.column)
        if not result.unexpected_index:
            raise DataError(result.message or "check failed", file=root, column=column)
        record = frame.iloc[result.unexpected_index[0]]
        row = record.get("source_row")
        raise DataError(
            result.message + _others(result, frame, record["source_file"]),
            file=root / record["source_file"],
            row=None if pd.isna(row) else int(row),
            column=column if not pd.isna(row) else None,
        )


def images(n: int) -> str:
    return f"{n} distinct image{'s' if n != 1 else ''}"


def _others(result: CheckResult, frame: pd.DataFrame, first_file: str) -> str:
    """`` (and 3 more: row 7, row 9, row 12)``: where the other offending records are (rows of the first's
    file, else file and row, else the image path), NAMED_PLACES at most; empty when there are none."""
    more = result.unexpected_count - 1
    if more <= 0:
        return ""
    places = []
    for index in result.unexpected_index[1 : NAMED_PLACES + 1]:
        record = frame.iloc[index]
        row = record.get("source_row")
        if pd.isna(row):
            places.append(str(record["path"]))
        else:
            places.append(f"row {int(row)}" if record["source_file"] == first_file
                          else f"{record['source_file']} row {int(row)}")  # fmt: skip
    unnamed = more - len(places)
    tail = f" and {unnamed} more" if unnamed > 0 else ""
    return f" (and {more} more: {', '.join(places)}{tail})"


def record_checks(allowed_labels: list[str] | None, fst_values: list[str] | None) -> list[Check]:
    """Checks of the metadata values: ids present and unique, labels and FST allowed."""
    import great_expectations as gx

    ex = gx.expectations
    checks = [
        Check(ex.ExpectColumnValuesToMatchRegex(column="path", regex=r"\S"), "path", lambda r: "empty image id"),
        Check(
            ex.ExpectColumnValuesToBeUnique(column="path"),
            "path",
            lambda r: f"duplicate image '{r['path']}' (each image must be listed once)",
            summarize=lambda rows: f"{images(rows['path'].nunique())} listed more than once, {len(rows)} times in all",
        ),
        Check(ex.ExpectColumnValuesToMatchRegex(column="label", regex=r"\S"), "label", lambda r: "empty label"),
        Check(ex.ExpectColumnValuesToMatchRegex(column="group_id", regex=r"\S"), "group_id", lambda r: "empty group id"),
    ]
    if allowed_labels is not None:
        allowed = ", ".join(allowed_labels)
        checks.append(
            Check(
                ex.ExpectColumnValuesToBeInSet(column="label", value_set=list(allowed_labels)),
                "label",
                lambda r: f"unknown label '{r['label']}' (allowed: {allowed})",
            )
        )
    if fst_values is not None:
        shown = ", ".join(v if v else "empty" for v in fst_values)
        checks.append(
            Check(
                ex.ExpectColumnValuesToBeInSet(column="fst_label", value_set=list(fst_values)),
                "fst_label",
                lambda r: f"invalid Fitzpatrick skin type '{r['fst_label']}' (allowed: {shown})",
            )
        )
    return checks


def image_checks(min_image_size: int) -> list[Check]:
    """Checks of the image files: inside the root, present, decodable, large enough; duplicates warned."""
    import great_expectations as gx

    ex = gx.expectations
    return [
        Check(
            ex.ExpectColumnValuesToBeInSet(column="file_status", value_set=["ok"]),
            "path",
            lambda r: f"{r['file_status']}: {r['path']}",
        ),
        Check(
            ex.ExpectColumnValuesToBeBetween(column="min_side", min_value=min_image_size),
            "path",
            lambda r: f"image {r['path']} is {r['width']}x{r['height']} px, smaller than {min_image_size} px",
        ),
        Check(
            ex.ExpectColumnValuesToBeUnique(column="sha256"),
            "path",
            lambda r: f"identical bytes listed more than once: {r['path']}",
            severity="warning",
            summarize=lambda rows: f"{len(rows)} image files hold {images(rows['sha256'].nunique())}",
        ),
    ]


def split_checks() -> list[Check]:
    """Every record's split is its group's split: no lesion/patient in two splits."""
    import great_expectations as gx

    return [
        Check(
            gx.expectations.ExpectColumnPairValuesToBeEqual(column_A="split", column_B="group_split"),
            "group_id",
            lambda r: f"group '{r['group_id']}' is in more than one split ({r['split']} and {r['group_split']})",
        )
    ]
