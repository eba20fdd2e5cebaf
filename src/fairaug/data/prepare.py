"""Validate a raw data set and turn it into the manifest: FST per image and group-disjoint splits.

`validate_dataset` (the `fairaug validate` command) and `prepare_dataset` (the `prepare` stage)
share every check, so a data set that validates is one that prepares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from fairaug.config.models import DatasetConfig, PrepareConfig
from fairaug.data.formats import FORMAT_NAMES, FORMATS, read_imagefolder, read_table, records_from_table
from fairaug.data.scan import scan_images
from fairaug.data.splits import assign_splits, near_duplicates_across_splits, split_groups, stratified_subsample
from fairaug.skin.types import FST_UNKNOWN, FST_VALUES
from fairaug.data.validation import (
    CheckResult,
    image_checks,
    raise_first_error,
    record_checks,
    run_checks,
    split_checks,
)
from fairaug.errors import DataError
from fairaug.skin.ita import DEFAULT_MAX_ABSTENTION_SHARE, DEFAULT_MIN_SKIN_FRACTION, set_abstention_reason

MANIFEST_COLUMNS = [
    "path", "sha256", "label", "fst", "fst_source", "group_id", "split",
    "split_group", "fst_label", "fst_ita", "ita", "skin_fraction", "width", "height", "phash",
]


@dataclass
class ValidatedData:
    """Records that passed every check, with their scan, and the checks' outcomes."""

    root: Path
    format: str
    records: pd.DataFrame
    checks: list[CheckResult] = field(default_factory=list)


def _source_columns(fmt: str) -> dict[str, str]:
    """Record column -> the column name the user sees in their file."""
    if fmt == "imagefolder":
        return {"path": "image", "label": "label directory"}
    spec = FORMATS[fmt]
    return {"path": spec.image_column, "label": spec.label_column, "fst_label": spec.fst_column or "fst",
            "group_id": spec.group_column or spec.image_column}


def _read_records(root: Path, fmt: str) -> tuple[pd.DataFrame, list[str] | None]:
    """Records and the raw FST values the format allows (None when it has no FST column)."""
    if fmt not in FORMAT_NAMES:
        raise DataError(f"unknown format '{fmt}' (formats: {', '.join(FORMAT_NAMES)})")
    if not root.is_dir():
        raise DataError("data set directory not found", file=root)
    if fmt == "imagefolder":
        return read_imagefolder(root), None
    spec = FORMATS[fmt]
    table, source = read_table(root, fmt)
    missing = [c for c in spec.required_columns if c not in table.columns]
    if missing:
        raise DataError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)} "
            f"(found: {', '.join(table.columns)})",
            file=source,
        )
    fst_values = None
    if spec.fst_column in table.columns:
        fst_values = [*spec.fst_values, *spec.fst_ranges]
    return records_from_table(root, spec, table, source), fst_values


def validate_dataset(
    root: Path, fmt: str, allowed_labels: list[str] | None, min_image_size: int,
    min_skin_fraction: float = DEFAULT_MIN_SKIN_FRACTION,
) -> ValidatedData:
    """Run every metadata and image check; raise a DataError naming the first problem."""
    root = Path(root)
    records, fst_values = _read_records(root, fmt)
    sources = _source_columns(fmt)
    if allowed_labels is None and fmt in FORMATS:
        allowed_labels = list(FORMATS[fmt].labels) if FORMATS[fmt].labels else None
    checks = run_checks(records, record_checks(allowed_labels, fst_values), "records")
    raise_first_error(checks, records, root, sources)

    records = records.join(scan_images(root, records["path"], min_skin_fraction))
    file_checks = run_checks(records, image_checks(min_image_size), "images")
    raise_first_error(file_checks, records, root, sources)
    return ValidatedData(root, fmt, records.drop(columns="file_status"), checks + file_checks)


def resolve_fst(
    records: pd.DataFrame, fmt: str, fst_source: str, root: Path,
    max_abstention_share: float = DEFAULT_MAX_ABSTENTION_SHARE,
) -> tuple[pd.DataFrame, str | None]:
    """Set fst / fst_source: the data's FST label when there is one (per `fst_source`), else ITA, else
    unknown (FST_UNKNOWN, where the ITA estimate abstained: too little non-lesion skin, or a set of
    lesion crops). Returns the records and why the set's ITA estimates are void (None: they stand).

    ``fst_label`` goes from the raw text to the exact FST it names (missing for none or a range).
    """
    spec = FORMATS.get(fmt)
    raw = records["fst_label"]
    exact = raw.map(spec.fst_values if spec else {}).astype("Int64")
    records = records.assign(fst_label=exact)
    if fst_source == "label" and exact.isna().any():
        first = records[exact.isna()].iloc[0]
        raise DataError(
            f"prepare.fst_source is 'label' but {int(exact.isna().sum())} images have no FST label "
            "(set prepare.fst_source: auto to estimate those with ITA)",
            file=root / first["source_file"],
            row=None if pd.isna(first["source_row"]) else int(first["source_row"]),
        )
    estimate = records["fst_ita"].astype("int64")
    if (void_reason := set_abstention_reason(estimate, max_abstention_share)) is not None:
        records = records.assign(fst_ita=FST_UNKNOWN)
        estimate = records["fst_ita"]
    abstained = estimate == FST_UNKNOWN
    if spec is not None and spec.fst_ranges:
        # a coarse label (DDI's 12/34/56) bounds the ITA estimate to the pair it names
        bounds = raw.map(spec.fst_ranges)
        low = bounds.map(lambda b: b[0] if isinstance(b, tuple) else 1)
        high = bounds.map(lambda b: b[1] if isinstance(b, tuple) else 6)
        estimate = estimate.clip(lower=low, upper=high).where(~abstained, FST_UNKNOWN)
    use_label = exact.notna() if fst_source != "ita" else pd.Series(False, index=records.index)
    return records.assign(
        fst=np.where(use_label, exact.fillna(0).astype("int64"), estimate).astype("int64"),
        fst_source=np.select([use_label, abstained], ["label", "unknown"], "ita"),
    ), void_reason


def ita_agreement(records: pd.DataFrame) -> dict:
    """How often the ITA estimate matches the FST label where it did not abstain, with the confusion
    matrix (rows: label), and how many labelled images it abstained on."""
    all_labelled = records[records["fst_label"].notna()]
    labelled = all_labelled[all_labelled["fst_ita"] != FST_UNKNOWN]
    if labelled.empty:
        return {"n": 0, "abstained": int(len(all_labelled))}
    truth = labelled["fst_label"].astype(int).to_numpy()
    estimate = labelled["fst_ita"].astype(int).to_numpy()
    return {
        "n": int(len(labelled)),
        "abstained": int(len(all_labelled) - len(labelled)),
        "agreement": float(np.mean(truth == estimate)),
        "within_one": float(np.mean(np.abs(truth - estimate) <= 1)),
        "labels": list(FST_VALUES),
        "confusion_matrix": confusion_matrix(truth, estimate, labels=list(FST_VALUES)).tolist(),
    }


def _counts(manifest: pd.DataFrame, values: pd.Series) -> dict:
    table = pd.crosstab(manifest["split"], values)
    return {split: {str(k): int(v) for k, v in row.items()} for split, row in table.iterrows()}


def prepare_dataset(name: str, dataset: DatasetConfig, config: PrepareConfig) -> tuple[pd.DataFrame, dict]:
    """The manifest of a data set and its validation report (raises DataError on bad input)."""
    root = Path(dataset.root)
    validated = validate_dataset(root, dataset.format, dataset.allowed_labels(), config.min_image_size,
                                 config.min_skin_fraction)
    records, ita_void_reason = resolve_fst(validated.records, dataset.format, config.fst_source, root,
                                           config.max_abstention_share)
    if config.max_images is not None:
        records = stratified_subsample(records, config.max_images, config.seed)
    conflicts = label_conflicts(records, root, config.allow_label_conflicts)
    groups, merged = split_groups(records, config.near_duplicate_distance)
    # stratify on label and FST jointly, so that every skin type reaches the test split for fairness metrics
    strata = [records["label"] + "|" + records["fst"].astype(str), records["label"]]
    split = assign_splits(strata, groups, config.split, config.seed, fst=records["fst"])
    records = records.assign(split_group=groups, split=split)
    records = records.assign(group_split=records.groupby("group_id")["split"].transform("first"))
    disjoint = run_checks(records, split_checks(), "splits")
    raise_first_error(disjoint, records, root, _source_columns(dataset.format))

    manifest = records[MANIFEST_COLUMNS].reset_index(drop=True)
    near_duplicates = near_duplicates_across_splits(manifest, config.near_duplicate_distance)
    report = {
        "dataset": name,
        "format": dataset.format,
        "root": dataset.root,
        "n_images": int(len(manifest)),
        "n_groups": int(manifest["group_id"].nunique()),
        "success": True,
        "checks": [c.to_dict() for c in validated.checks + disjoint],
        "fst_source": {k: int(v) for k, v in manifest["fst_source"].value_counts().items()},
        "min_skin_fraction": config.min_skin_fraction,
        "ita_void": {"max_abstention_share": config.max_abstention_share, "reason": ita_void_reason},
        "label_counts": _counts(manifest, manifest["label"]),
        "fst_counts": _counts(manifest, manifest["fst"].map(lambda k: "unknown" if k == FST_UNKNOWN else str(k))),
        "min_test_per_fst": config.split.min_test_per_fst,
        "ita_agreement": ita_agreement(records),
        "near_duplicates": {
            "max_distance": config.near_duplicate_distance,
            "count": len(near_duplicates),
            "pairs": near_duplicates[:100],
        },
        "split_groups": merged,
        "label_conflicts": {"count": len(conflicts), "sets": conflicts[:100]},
    }
    return manifest, report


def label_conflicts(records: pd.DataFrame, root: Path, allowed: bool) -> list[dict]:
    """Sets of byte-identical images with different labels: a DataError naming the first unless
    ``allowed`` (they are then reported, and kept in one split like every identical copy)."""
    labels = records.groupby("sha256")["label"].nunique()
    conflicting = records[records["sha256"].isin(labels[labels > 1].index)]
    sets = [{"sha256": sha, "paths": rows["path"].tolist(), "labels": sorted(set(rows["label"]))}
            for sha, rows in conflicting.groupby("sha256", sort=True)]  # fmt: skip
    if sets and not allowed:
        first = sets[0]
        files = sum(len(s["paths"]) for s in sets)
        raise DataError(f"identical images with different labels ({', '.join(first['labels'])}): "
                        f"{', '.join(first['paths'])}; {len(sets)} such set{'s' if len(sets) > 1 else ''}, "
                        f"{files} files in all. Fix the labels, or set "
                        "prepare.allow_label_conflicts: true to keep them (reported, never split apart)",
                        file=root)  # fmt: skip
    return sets


def summary_metrics(report: dict) -> dict[str, float]:
    """The report's headline numbers as MLflow metrics."""
    metrics = {
        "data/n_images": float(report["n_images"]),
        "data/n_groups": float(report["n_groups"]),
        "data/near_duplicates": float(report["near_duplicates"]["count"]),
        "data/merged_groups": float(report["split_groups"]["groups_before"] - report["split_groups"]["groups_after"]),
        "data/label_conflicts": float(report["label_conflicts"]["count"]),
        "data/fst_unknown": float(report["fst_source"].get("unknown", 0)),
    }
    for k, n in report["fst_counts"].get("test", {}).items():
        if k != "unknown":  # the test images of each FST: the n behind every per-FST fairness metric
            metrics[f"data/test_images.fst{k}"] = float(n)
    if report["ita_agreement"].get("n"):
        metrics["data/ita_agreement"] = report["ita_agreement"]["agreement"]
    return metrics
