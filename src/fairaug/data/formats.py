"""Readers of the supported raw layouts, all producing the same table of image records.

Each reader reads its metadata as text (so that "VI" or "7" in an FST column is reported as bad
input rather than coerced), maps its columns to the record columns, and names where each record
came from (file and 1-based line) so that validation errors can point at it.

Record columns: path (relative to the data set root, posix), label, fst_label (raw FST text, ""
when absent), group_id, source_file, source_row.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fairaug.errors import DataError
from fairaug.images import IMAGE_SUFFIXES
from fairaug.labels import HAM10000_DX

RECORD_COLUMNS = ["path", "label", "fst_label", "group_id", "source_file", "source_row"]
HEADER_LINES = 1  # CSV data rows start on line 2


@dataclass(frozen=True)
class FormatSpec:
    """How one layout maps onto records, and which raw values are allowed."""

    name: str
    image_column: str
    label_column: str
    fst_column: str | None = None
    group_column: str | None = None
    # raw FST text -> FST 1..6, or None for "unknown" (estimate with ITA)
    fst_values: dict[str, int | None] = field(default_factory=dict)
    # raw FST text -> the FST pair a coarse label allows (DDI's 12/34/56)
    fst_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None
    label_from_raw: Callable[[str], str] | None = None
    locate: Callable[[Path, str], str] = field(default=lambda root, value: value)

    @property
    def required_columns(self) -> list[str]:
        return [c for c in (self.image_column, self.label_column) if c]


def _first_existing(root: Path, candidates: list[str]) -> str:
    """The first candidate path that exists, else the first one (validation then reports it missing)."""
    return next((c for c in candidates if (root / c).is_file()), candidates[0])


def _locate_ham10000(root: Path, image_id: str) -> str:
    return _first_existing(root, [f"HAM10000_images_part_{part}/{image_id}.jpg" for part in (1, 2)])


def _locate_in_images_dir(suffix: str) -> Callable[[Path, str], str]:
    def locate(root: Path, value: str) -> str:
        name = value if Path(value).suffix else f"{value}{suffix}"
        return _first_existing(root, [name, f"images/{name}"])

    return locate


FST_1_TO_6 = {str(k): k for k in range(1, 7)}

FORMATS: dict[str, FormatSpec] = {
    "ham10000": FormatSpec(
        name="ham10000",
        image_column="image_id",
        label_column="dx",
        fst_column="fitzpatrick",
        group_column="lesion_id",
        fst_values={**FST_1_TO_6, "": None},
        labels=tuple(HAM10000_DX),
        locate=_locate_ham10000,
    ),
    "fitzpatrick17k": FormatSpec(
        name="fitzpatrick17k",
        image_column="md5hash",
        label_column="label",
        fst_column="fitzpatrick_scale",
        fst_values={**FST_1_TO_6, "-1": None},
        locate=_locate_in_images_dir(".jpg"),
    ),
    "ddi": FormatSpec(
        name="ddi",
        image_column="DDI_file",
        label_column="malignant",
        fst_column="skin_tone",
        group_column="DDI_ID",
        fst_ranges={"12": (1, 2), "34": (3, 4), "56": (5, 6)},
        labels=("benign", "malignant"),
        label_from_raw=lambda raw: {"true": "malignant", "false": "benign"}.get(raw.strip().lower(), raw),
        locate=_locate_in_images_dir(".png"),
    ),
    "csv": FormatSpec(
        name="csv",
        image_column="image",
        label_column="label",
        fst_column="fst",
        group_column="group_id",
        fst_values={**FST_1_TO_6, "": None},
    ),
}
METADATA_FILES = {
    "ham10000": "HAM10000_metadata.csv",
    "fitzpatrick17k": "fitzpatrick17k.csv",
    "ddi": "ddi_metadata.csv",
}
FORMAT_NAMES = (*FORMATS, "imagefolder")


def read_csv_text(path: Path) -> pd.DataFrame:
    """Every cell as text; BOM and CRLF (as real exports have) are accepted."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError("file not found", file=path) from None
    except pd.errors.EmptyDataError:
        raise DataError("empty file: no header and no rows", file=path) from None
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text (byte {err.start})", file=path) from None
    except (pd.errors.ParserError, csv.Error) as err:
        raise DataError(f"not a valid CSV: {str(err).strip()}", file=path) from None
    if frame.empty:
        raise DataError("no data rows (only a header)", file=path)
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def find_metadata_csv(root: Path, fmt: str) -> Path:
    if fmt in METADATA_FILES:
        return root / METADATA_FILES[fmt]
    preferred = root / "labels.csv"
    if preferred.exists():
        return preferred
    candidates = sorted(root.glob("*.csv"))
    if len(candidates) != 1:
        found = ", ".join(c.name for c in candidates) or "none"
        raise DataError(f"expected labels.csv or exactly one .csv file (found: {found})", file=root)
    return candidates[0]


def read_table(root: Path, fmt: str) -> tuple[pd.DataFrame, Path]:
    """The raw metadata table of a CSV-based layout, as text, and the file it came from."""
    path = find_metadata_csv(root, fmt)
    return read_csv_text(path), path


def records_from_table(root: Path, spec: FormatSpec, table: pd.DataFrame, source: Path) -> pd.DataFrame:
    """Map a validated raw table onto record columns."""
    images = table[spec.image_column].str.strip()
    labels = table[spec.label_column]
    if spec.label_from_raw is not None:
        labels = labels.map(spec.label_from_raw)
    fst_raw = table[spec.fst_column].str.strip() if spec.fst_column in table else pd.Series("", index=table.index)
    groups = table[spec.group_column] if spec.group_column in table else images
    return pd.DataFrame(
        {
            "path": [spec.locate(root, value) for value in images],
            "label": labels.str.strip(),
            "fst_label": fst_raw,
            "group_id": groups.str.strip().where(groups.str.strip() != "", images),
            "source_file": source.name,
            "source_row": table.index + 1 + HEADER_LINES,
        }
    )


def read_imagefolder(root: Path) -> pd.DataFrame:
    """`<label>/<image>` directories; every image is its own group, FST from ITA."""
    if not root.is_dir():
        raise DataError("data set directory not found", file=root)
    rows = [
        {"path": p.relative_to(root).as_posix(), "label": p.parent.name}
        for label_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        for p in sorted(label_dir.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not rows:
        raise DataError("no images found in <label>/<image> subdirectories", file=root)
    frame = pd.DataFrame(rows)
    frame["fst_label"] = ""
    frame["group_id"] = frame["path"]
    frame["source_file"] = frame["path"]
    frame["source_row"] = None
    return frame[RECORD_COLUMNS]
