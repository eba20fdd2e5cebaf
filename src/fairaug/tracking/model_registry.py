"""The model registry as the dashboard reads it: versions with aliases and decisions, each version's
gate table, and the promotion history (promote runs, oldest first).

Conventions (written by `fairaug.registry`): model ``promote.model_name`` (``fairaug-<dataset>-lora``,
`PromoteConfig.registered_model`); aliases champion and
challenger; version tags ``fairaug.decision``, ``fairaug.decision_reason``, ``fairaug.forced``,
``fairaug.decided_at``, ``fairaug.replaced_by``, ``fairaug.lora_sha256`` and per gate
``gate.<name>.{metric,value,threshold,champion_value,passed,reason}``; every decision is a run of
stage ``promote`` in experiment ``fairaug/<dataset>``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from fairaug.tracking.search import RunFilter, quoted, search_page

GATE_FIELDS = ("metric", "value", "threshold", "champion_value", "passed", "reason")
HISTORY_TAGS = ("fairaug.version", "fairaug.decision", "fairaug.decision_reason", "fairaug.forced",
                "fairaug.champion_before", "fairaug.champion_after")  # fmt: skip
VERSION_COLUMNS = ["version", "aliases", "decision", "reason", "forced", "decided_at", "replaced_by", "created",
                   "run_id", "lora_sha256"]  # fmt: skip


def model_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """The versions of registered model ``name``, newest first; empty when none is registered."""
    try:
        versions = client.search_model_versions(f"name = {quoted(name)}")
    except MlflowException:
        return []
    return sorted(versions, key=lambda version: int(version.version), reverse=True)


def version_aliases(client: MlflowClient, name: str) -> dict[int, list[str]]:
    """Version -> its aliases (champion, challenger), read from the registered model ``name``:
    version searches do not return aliases."""
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        return {}
    by_version: dict[int, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        by_version.setdefault(int(version), []).append(alias)
    return by_version


def versions_table(versions: list[ModelVersion], aliases: Mapping[int, list[str]]) -> pd.DataFrame:
    """One row per version: aliases, decision, reason, forced, time, replaced_by, lineage."""
    rows = []
    for version in versions:
        tags = version.tags
        rows.append({"version": int(version.version), "aliases": ", ".join(aliases.get(int(version.version), [])),
                     "decision": tags.get("fairaug.decision", "pending"), "reason": tags.get("fairaug.decision_reason", ""),
                     "forced": tags.get("fairaug.forced") == "true", "decided_at": tags.get("fairaug.decided_at", ""),
                     "replaced_by": tags.get("fairaug.replaced_by", ""),
                     "created": pd.Timestamp(version.creation_timestamp, unit="ms"), "run_id": version.run_id,
                     "lora_sha256": tags.get("fairaug.lora_sha256", "")[:12]})  # fmt: skip
    return pd.DataFrame(rows, columns=VERSION_COLUMNS)


def gate_table(version: ModelVersion) -> pd.DataFrame:
    """One row per gate recorded on the version: metric, value, threshold, the champion's value,
    passed and the reason; values as numbers (NaN where a gate had none)."""
    names = sorted({key.split(".")[1] for key in version.tags if key.startswith("gate.") and key.count(".") >= 2})
    rows = []
    for name in names:
        row = {"gate": name} | {field: version.tags.get(f"gate.{name}.{field}") for field in GATE_FIELDS}
        for field in ("value", "threshold", "champion_value"):
            row[field] = pd.to_numeric(row[field], errors="coerce")
        row["passed"] = row["passed"] == "true"
        rows.append(row)
    return pd.DataFrame(rows, columns=["gate", *GATE_FIELDS])


def promotion_history(client: MlflowClient, experiment_id: str | None) -> pd.DataFrame:
    """Every promotion decision of the experiment (its ``promote`` runs), oldest first; no rows for
    no experiment."""
    runs, token = [], None
    while experiment_id is not None:
        page = search_page(client, [experiment_id], RunFilter(stage="promote"), max_results=500, page_token=token)
        runs.extend(page.runs)
        token = page.next_page_token
        if token is None:
            break
    rows = [{"time": pd.Timestamp(run.info.start_time, unit="ms"), "run_id": run.info.run_id}
            | {tag.removeprefix("fairaug."): run.data.tags.get(tag, "") for tag in HISTORY_TAGS}
            for run in runs]  # fmt: skip
    columns = ["time", "run_id", *(tag.removeprefix("fairaug.") for tag in HISTORY_TAGS)]
    return pd.DataFrame(rows, columns=columns).sort_values("time", ignore_index=True)
