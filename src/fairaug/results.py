"""The effect over seeds: finished DVC experiments collected into Markdown tables per data set
(`fairaug results`, docs/results.md).

Experiments come from ``dvc exp show --json`` (those of the HEAD commit, finished: run in the
workspace, or by `dvc queue start` with executor state success), each with its params and the
numbers of every ``outputs/<d>/metrics/fairness.json`` and ``quality.json`` it has, each merged with
the detail file beside it (a DVC out, read from the experiment with `dvc.api.read`). Experiments are
grouped by every param whose value differs between them, except the seeds (`SEED_PARAMS`): the runs
of one group differ only by seeds, so their spread is the seed-to-seed variation of the result. Per
group and data set, each metric of the real-only and the augmented classifier and their paired
difference (``fairness/delta.<metric>``: augmented minus real-only within one experiment) is given as
mean ± sample standard deviation (ddof 1) over the experiments that have it, with their number and
each FST group's test images; the difference also with the t interval of its mean over seeds (one
that excludes 0: the seeds' spread does not explain the effect). Beside it, the synthetic set's
label fidelity (`QUALITY_METRICS`), so that an effect can be read against how much the synthetic
images looked like their label in the same runs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from fairaug.errors import DataError
from fairaug.fairness.files import FAIRNESS
from fairaug.io import atomic_write_text
from fairaug.metrics.files import QUALITY
from fairaug.metrics_files import detail_path
from fairaug.names import QUALITY_NAMESPACE, metric_key
from fairaug.skin.types import FST_ROMAN, FST_VALUES

# params that only draw random numbers: runs that differ by these alone are repeats of one setting
SEED_PARAMS = (
    "prepare.seed",  # the split: its variation is part of what a result must survive
    "base.pretrain.seed",
    "train_lora.seed",
    "generate.seed",
    "mix.seed",
    "train_classifier.seed",
    "train_classifier.evaluator_seed",
    "evaluate_quality.seed",
    "evaluate_fairness.seed",
)
# column -> the variant of its keys (`metric_key`): fairness/auroc, fairness/augmented.auroc, fairness/delta.auroc
VARIANTS = {"real": None, "augmented": "augmented", "delta": "delta"}
# the rows of a table: per-FST values (with the group's test images) and the gaps
PER_FST_METRICS = ("auroc", "sensitivity")
OVERALL_METRICS = ("auroc", "balanced_accuracy", "auroc_gap", "eod")
# the synthetic set's rows (variant "synthetic"): per FST too, with the group's synthetic images
QUALITY_METRICS = ("label_confidence.evaluator", "label_confidence_ratio.evaluator")
QUALITY_OVERALL = ("filter.acceptance", "fst_fidelity")
SYNTHETIC = "synthetic"
CONFIDENCE = 0.95  # of the interval of a difference's mean over seeds


@dataclass(frozen=True)
class Experiment:
    """One finished DVC experiment: its name, its params flattened to dotted keys, and per data set
    the fairness numbers (fairness.json and fairness_detail.json merged) and the quality numbers
    (quality.json and quality_detail.json)."""

    name: str
    params: Mapping[str, object]
    fairness: Mapping[str, Mapping[str, float]]
    quality: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def flatten(data: Mapping, prefix: str = "") -> dict[str, object]:
    """Nested params -> ``{"mix.mode": ...}``; lists stay values."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def experiments_from_show(
    show: Sequence[Mapping], read_file: Callable[[str, str], str]
) -> tuple[str, list[Experiment]]:
    """The baseline commit and its finished experiments from ``dvc exp show --json`` output;
    ``read_file(path, rev)`` reads a file of an experiment (the detail files)."""
    baselines = [entry for entry in show if entry.get("rev") != "workspace"]
    if not baselines:
        raise DataError("dvc exp show lists no commit: commit the project, then run experiments")
    baseline = baselines[0]
    experiments = []
    for entry in baseline.get("experiments") or []:
        if (entry.get("executor") or {}).get("state", "success") != "success":  # queued, running or failed
            continue
        revision = entry["revs"][0]
        if revision.get("error") or not revision.get("data"):
            continue
        data = revision["data"]
        params = {}
        for file, content in data.get("params", {}).items():
            prefix = "" if file == "params.yaml" else f"{file}:"
            params |= flatten(content.get("data", {}), prefix)
        numbers: dict[str, dict[str, Mapping[str, float]]] = {FAIRNESS: {}, QUALITY: {}}
        for path, content in data.get("metrics", {}).items():
            if Path(path).name not in numbers or "data" not in content:
                continue
            detail = detail_path(path).as_posix()
            try:
                extra = json.loads(read_file(detail, revision["rev"]))
            except Exception as err:  # DVC raises its own error types for a missing file or cache entry
                raise DataError(f"experiment {revision['name']}: cannot read {detail} ({err})") from None
            numbers[Path(path).name][Path(path).parent.parent.name] = content["data"] | extra
        if numbers[FAIRNESS]:
            experiments.append(Experiment(revision["name"] or revision["rev"][:7], params, numbers[FAIRNESS],
                                          numbers[QUALITY]))  # fmt: skip
    return baseline["rev"], experiments


def read_experiments(repo: Path) -> tuple[str, list[Experiment]]:
    """The HEAD commit and its finished experiments in the DVC project at ``repo``."""
    import dvc.api  # DVC is only needed here; importing it costs a second

    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=repo,
                           capture_output=True, text=True)  # fmt: skip
    if shown.returncode != 0:
        last = (shown.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"dvc exp show failed in {repo}: {last}")
    return experiments_from_show(json.loads(shown.stdout),
                                 lambda path, rev: dvc.api.read(path, repo=str(repo), rev=rev))  # fmt: skip


def setting_params(experiments: Sequence[Experiment]) -> list[str]:
    """The params whose value differs between experiments, seeds left out: what makes a group."""
    keys = sorted({key for e in experiments for key in e.params} - set(SEED_PARAMS))
    return [key for key in keys if len({json.dumps(e.params.get(key), sort_keys=True) for e in experiments}) > 1]


def seed_summary(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1; NaN for one value) and number of the finite values."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if not len(finite):
        return math.nan, math.nan, 0
    return float(finite.mean()), float(finite.std(ddof=1)) if len(finite) > 1 else math.nan, len(finite)


def mean_interval(mean: float, std: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The t interval of a mean of ``n`` values with sample standard deviation ``std`` (n - 1
    degrees of freedom: few seeds make it wide); NaN for fewer than two values."""
    if n < 2 or not math.isfinite(std):
        return math.nan, math.nan
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


def _rows() -> list[tuple[str, str | None]]:
    """(metric name, the fairness key of its group size or None)."""
    rows = [(f"{m}.fst{k}", metric_key(f"fst{k}.n")) for m in PER_FST_METRICS for k in FST_VALUES]
    return rows + [(m, None) for m in OVERALL_METRICS]


def _quality_rows() -> list[tuple[str, str]]:
    """(metric name, the quality key of its synthetic images): each metric overall, then per FST."""
    rows = []
    for metric in QUALITY_METRICS:
        rows += [(metric, "n_synthetic")] + [(f"{metric}.fst{k}", f"n_synthetic.fst{k}") for k in FST_VALUES]
    return rows + [(metric, "n_synthetic") for metric in QUALITY_OVERALL]


def _group_size(sizes: Sequence[float]) -> str:
    """A group's size over the experiments: one number, or their range."""
    sizes = sorted({int(size) for size in sizes})
    return "" if not sizes else str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"


def aggregate(experiments: Sequence[Experiment]) -> pd.DataFrame:
    """One row per data set, setting (group of experiments), metric and variant (real, augmented,
    delta; synthetic for the quality metrics): mean, std and seeds (`seed_summary`), ci_low and
    ci_high (`mean_interval`), test_n (the FST group's test images, or their range over the group's
    experiments; synthetic: the group's synthetic images), experiments (their names)."""
    varying = setting_params(experiments)
    groups: dict[str, list[Experiment]] = {}
    for e in experiments:
        setting = ", ".join(f"{key}={json.dumps(e.params.get(key))}" for key in varying) or "all experiments"
        groups.setdefault(setting, []).append(e)
    records = []
    datasets = sorted({d for e in experiments for d in e.fairness})
    for dataset in datasets:
        for setting, members in groups.items():
            runs = [e for e in members if dataset in e.fairness]
            if not runs:
                continue
            names = ", ".join(sorted(e.name for e in runs))

            def record(metric: str, variant: str, values: list, n: str) -> dict:
                mean, std, seeds = seed_summary(values)
                low, high = mean_interval(mean, std, seeds)
                return {"dataset": dataset, "setting": setting, "metric": metric, "variant": variant, "mean": mean,
                        "std": std, "seeds": seeds, "ci_low": low, "ci_high": high, "test_n": n,
                        "experiments": names}  # fmt: skip

            for metric, n_key in _rows():
                test_n = _group_size([e.fairness[dataset][n_key] for e in runs if n_key in e.fairness[dataset]])
                for variant, prefix in VARIANTS.items():
                    key = metric_key(metric, prefix)
                    records.append(record(metric, variant, [e.fairness[dataset].get(key) for e in runs], test_n))
            quality = [e.quality.get(dataset, {}) for e in runs]
            for metric, n_key in _quality_rows():
                n = _group_size([q[QUALITY_NAMESPACE + n_key] for q in quality if QUALITY_NAMESPACE + n_key in q])
                records.append(record(metric, SYNTHETIC, [q.get(QUALITY_NAMESPACE + metric) for q in quality], n))
    return pd.DataFrame(records, columns=["dataset", "setting", "metric", "variant", "mean", "std", "seeds",
                                          "ci_low", "ci_high", "test_n", "experiments"])  # fmt: skip


def _cell(mean: float, std: float, seeds: int) -> str:
    seeds = int(seeds)
    if not seeds:
        return "n/a"
    spread = "" if math.isnan(std) else f" ± {std:.3f}"
    return f"{mean:.3f}{spread} ({seeds})"


def _interval(low: float, high: float) -> str:
    return "" if math.isnan(low) else f"{low:+.3f} to {high:+.3f}"


def _label(metric: str) -> str:
    name, _, group = metric.partition(".fst")
    return f"{name} FST {FST_ROMAN[int(group)]}" if group else metric


def results_markdown(table: pd.DataFrame, commit: str, command: str) -> str:
    """docs/results.md: per data set and setting, a row per metric with real-only, augmented and
    delta as ``mean ± std (seeds)`` and the t interval of delta's mean, and the FST group's test
    images; then the synthetic set's rows with the group's synthetic images, or where an earlier
    setting of the data set had the same rows (e.g. mix modes of the same seeds: one synthetic set
    behind both), a reference to it."""
    lines = ["# Fairness effect over seeds", "",
             f"Made by `{command}` from the finished DVC experiments of commit `{commit}`.",
             "Each cell: mean ± sample standard deviation (ddof 1) over the experiments of the setting "
             "(they differ only by seeds: " + ", ".join(f"`{p}`" for p in SEED_PARAMS) + "), and in "
             "brackets how many have the value (n/a: none; fairness_reasons.json says why). delta = augmented - "
             "real-only within each experiment; its interval: the t interval of its mean over the seeds "
             f"({CONFIDENCE:.0%}, seeds - 1 degrees of freedom; an interval that excludes 0: the seeds' spread does "
             "not explain the effect). test n: the FST group's test images. Synthetic images: the quality metrics of the set the augmented "
             "classifier chose from, by the evaluator (never the filter's classifier); label_confidence_ratio is over "
             "the evaluator's label confidence on the real test images of the same group.", ""]  # fmt: skip
    for dataset, by_dataset in table.groupby("dataset", sort=True):
        lines += [f"## {dataset}", ""]
        shown: dict[tuple[str, ...], str] = {}  # a synthetic table -> the first setting that showed it
        for setting, rows in by_dataset.groupby("setting", sort=True):
            lines += [f"### {setting}", "", f"Experiments: {rows['experiments'].iloc[0]}", "",
                      f"| metric | test n | real-only | augmented | delta | delta, {CONFIDENCE:.0%} interval |",
                      "|---|---|---|---|---|---|"]  # fmt: skip
            synthetic = rows["variant"] == SYNTHETIC
            for metric, cells in rows[~synthetic].groupby("metric", sort=False):
                by_variant = cells.set_index("variant")
                values = [_cell(*by_variant.loc[v, ["mean", "std", "seeds"]]) for v in VARIANTS]
                values.append(_interval(*by_variant.loc["delta", ["ci_low", "ci_high"]]))
                lines.append(f"| {_label(metric)} | {cells['test_n'].iloc[0]} | {' | '.join(values)} |")
            lines.append("")
            if rows.loc[synthetic, "seeds"].any():
                table_rows = tuple(f"| {_label(row.metric)} | {row.test_n} | {_cell(row.mean, row.std, row.seeds)} |"
                                   for row in rows[synthetic].itertuples())  # fmt: skip
                if table_rows in shown:  # settings that differ only downstream of generate share their sets
                    lines += [f"Synthetic images: the same as under `{shown[table_rows]}`.", ""]
                    continue
                shown[table_rows] = setting
                lines += ["| synthetic images | n | value |", "|---|---|---|", *table_rows, ""]
    return "\n".join(lines).rstrip() + "\n"


def write_results(repo: Path, out: Path, command: str) -> pd.DataFrame:
    """Collect the finished experiments of the DVC project ``repo`` into ``out`` (Markdown, written
    atomically; ``command`` is recorded as what made it); returns the `aggregate` table."""
    commit, experiments = read_experiments(Path(repo))
    if not experiments:
        raise DataError(f"no finished DVC experiment with {FAIRNESS} at commit {commit[:7]}: queue some (dvc exp "
                        "run --queue -S train_classifier.seed=1 ...) and run them (dvc queue start)")  # fmt: skip
    table = aggregate(experiments)
    atomic_write_text(Path(out), results_markdown(table, commit, command))
    return table
