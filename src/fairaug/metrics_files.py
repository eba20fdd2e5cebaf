"""The metrics files of the evaluate stages (DESIGN.md, "Metric naming"). A stage's flat report of
numbers is written to three files beside each other, e.g. for quality.json:

    quality.json            DVC metrics: the headline, the numbers a person compares first in
                            `dvc exp show` (the stage's headline patterns), each with its
                            ``.ci_low`` / ``.ci_high`` / ``.n``
    quality_detail.json     every other number under the same keys: per-FST and per-label values,
                            group sizes and flags, secondary metrics (a plain DVC out; shown on
                            request by ``dvc metrics show outputs/<d>/metrics/quality_detail.json``)
    quality_reasons.json    ``<name>.reason`` of every missing value (`fairaug.io.reasons_path`)

A key lives in exactly one of the first two: `read_metrics` gives their union, the whole report.
Also here: the worst FST group of a metric in such a report (``<metric>.worst_fst``), which the
promotion gates read and fairness.json's headline shows.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fairaug.io import reasons_path, write_json
from fairaug.skin.types import FST_VALUES

BESIDE_A_VALUE = (".ci_low", ".ci_high", ".n")
WORST_FST = ".worst_fst"
SMALL_GROUP = re.compile(r"^(?P<prefix>.*)fst(?P<k>[1-6])\.small_group$")
Numbers = Mapping[str, float | int | bool]


def detail_path(metrics_path: str | os.PathLike) -> Path:
    """Where a metrics file's detail lives: ``quality.json`` -> ``quality_detail.json`` beside it."""
    metrics_path = Path(metrics_path)
    return metrics_path.with_name(f"{metrics_path.stem}_detail.json")


def value_name(key: str) -> str:
    """The value a key belongs to: ``quality/kid.pixels.ci_low`` -> ``quality/kid.pixels``."""
    for suffix in BESIDE_A_VALUE:
        if key.endswith(suffix):
            return key.removesuffix(suffix)
    return key


def _pattern(pattern: str) -> re.Pattern[str]:
    # '*' is one dot-free part of a name: 'quality/kid.*' is kid.pixels, never kid.pixels.fst1
    return re.compile("[^.]*".join(re.escape(part) for part in pattern.split("*")))


def split_headline(numbers: Numbers, headline: Iterable[str]) -> tuple[dict, dict]:
    """(headline, detail) of a report's numbers: a key is headline when the value it belongs to
    (`value_name`) matches one of the ``headline`` patterns in full (``*``: one dot-free part)."""
    patterns = [_pattern(pattern) for pattern in headline]
    top, detail = {}, {}
    for key, value in numbers.items():
        is_headline = any(pattern.fullmatch(value_name(key)) for pattern in patterns)
        (top if is_headline else detail)[key] = value
    return top, detail


def write_metrics(path: str | os.PathLike, numbers: Numbers, reasons: Mapping[str, str],
                  headline: Iterable[str]) -> list[Path]:  # fmt: skip
    """Write the headline of ``numbers`` to ``path``, the rest to `detail_path` and ``reasons`` to
    `reasons_path`, each atomically; returns the three paths."""
    top, detail = split_headline(numbers, headline)
    return [write_json(path, top), write_json(detail_path(path), detail), write_json(reasons_path(path), reasons)]


def read_metrics(path: str | os.PathLike) -> dict:
    """A metrics file's numbers and its detail file's: the stage's whole report but the reasons."""
    path = Path(path)
    metrics = json.loads(path.read_text())
    if detail_path(path).is_file():  # files written before the split hold everything in one
        metrics |= json.loads(detail_path(path).read_text())
    return metrics


@dataclass(frozen=True)
class MetricValue:
    """A metric read from a report: its value, or None and why it is missing."""

    value: float | None
    reason: str = ""


def finite(value: object) -> float | None:
    """``value`` as a float when it is a finite number (not a flag), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def worst_fst(metrics: Mapping[str, object], base: str, greater_is_better: bool) -> MetricValue:
    """The worst per-FST value of ``base`` (min when greater is better, else max) over groups not
    flagged small (flags: the longest ``<prefix>fst<k>.small_group`` whose prefix starts ``base``,
    e.g. ``fairness/augmented.``)."""
    prefixes = {m["prefix"] for key in metrics if (m := SMALL_GROUP.match(key)) and base.startswith(m["prefix"])}
    prefix = max(prefixes, key=len, default=None)
    values = [
        value for k in FST_VALUES
        if (value := finite(metrics.get(f"{base}.fst{k}"))) is not None
        and not (prefix is not None and metrics.get(f"{prefix}fst{k}.small_group") is True)
    ]  # fmt: skip
    if not values:
        return MetricValue(None, f"no FST group of {base} has a value (or every group is small)")
    return MetricValue(min(values) if greater_is_better else max(values))
