"""Reading stage runs back from MLflow: server-side filtered, paged `search_runs`.

Every function takes an `MlflowClient`, so the dashboard, the bench and the tests give it whichever
store they read (the tests: a temporary sqlite store). Filters go to the tracking server as a
`filter_string`: the dashboard never pulls a whole experiment to filter it itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

STAGE_TAG = "fairaug.stage"
DATASET_TAG = "fairaug.dataset"
PROFILE_TAG = "fairaug.profile"
VARIANT_TAG = "fairaug.variant"
COMMIT_TAG = "git.commit"
DVC_EXPERIMENT_TAG = "dvc.exp_name"  # the DVC experiment a run belongs to (`dvc exp show`)
UPSTREAM_TAG = "fairaug.upstream."
# dvc.yaml's stages, upstream first (promote: the registry's decisions)
STAGES = ("prepare", "base_model", "train_lora", "train_classifier", "generate", "evaluate_quality",
          "evaluate_fairness", "promote")  # fmt: skip
NEWEST_FIRST = ("attributes.start_time DESC",)
RUN_ID_BATCH = 100  # run ids per `run_id IN (...)` filter: keeps the SQL statement small


def quoted(value: str) -> str:
    """A string literal of MLflow's filter grammar."""
    return "'" + value.replace("'", "\\'") + "'"


@dataclass(frozen=True)
class RunFilter:
    """What the Runs page filters on; every field left None matches all runs."""

    stage: str | None = None
    profile: str | None = None
    commit: str | None = None  # a prefix of the git commit
    experiment: str | None = None  # a DVC experiment's name
    started_after: datetime | None = None
    started_before: datetime | None = None

    def filter_string(self) -> str:
        """The MLflow ``filter_string`` of these conditions ("" when there are none)."""
        clauses = []
        if self.stage:
            clauses.append(f'tags."{STAGE_TAG}" = {quoted(self.stage)}')
        if self.profile:
            clauses.append(f'tags."{PROFILE_TAG}" = {quoted(self.profile)}')
        if self.commit:
            clauses.append(f'tags."{COMMIT_TAG}" LIKE {quoted(self.commit.strip() + "%")}')
        if self.experiment:
            clauses.append(f'tags."{DVC_EXPERIMENT_TAG}" = {quoted(self.experiment)}')
        if self.started_after:
            clauses.append(f"attributes.start_time >= {int(self.started_after.timestamp() * 1000)}")
        if self.started_before:
            clauses.append(f"attributes.start_time < {int(self.started_before.timestamp() * 1000)}")
        return " AND ".join(clauses)


@dataclass(frozen=True)
class RunPage:
    runs: list[Run]
    next_page_token: str | None


def fairaug_experiments(client: MlflowClient, prefix: str = "fairaug") -> dict[str, str]:
    """Data set name -> experiment id of the ``<prefix>/<dataset>`` experiments, sorted by name."""
    experiments = client.search_experiments(filter_string=f"name LIKE {quoted(prefix + '/%')}")
    return {e.name.removeprefix(f"{prefix}/"): e.experiment_id for e in sorted(experiments, key=lambda e: e.name)}


def search_page(
    client: MlflowClient,
    experiment_ids: Sequence[str],
    run_filter: RunFilter = RunFilter(),
    max_results: int = 50,
    page_token: str | None = None,
) -> RunPage:
    """One page of runs, newest first, filtered by the tracking server.

    Args:
        client: the store to read.
        experiment_ids: experiments to search.
        run_filter: conditions on stage, profile, commit prefix and start time.
        max_results: page size.
        page_token: the ``next_page_token`` of the previous page; None for the first.

    Returns:
        The page's runs and the token of the next page (None on the last page).
    """
    runs = client.search_runs(list(experiment_ids), run_filter.filter_string(), max_results=max_results,
                              order_by=list(NEWEST_FIRST), page_token=page_token)  # fmt: skip
    return RunPage(list(runs), runs.token or None)


def runs_by_id(client: MlflowClient, run_ids: Iterable[str], experiment_ids: Sequence[str]) -> dict[str, Run]:
    """The runs of ``run_ids`` found in the experiments (deleted or missing ones are left out)."""
    wanted = sorted(set(run_ids))
    found: dict[str, Run] = {}
    for start in range(0, len(wanted), RUN_ID_BATCH):
        batch = wanted[start:start + RUN_ID_BATCH]
        listed = ", ".join(quoted(run_id) for run_id in batch)
        runs = client.search_runs(list(experiment_ids), f"attributes.run_id IN ({listed})", max_results=len(batch))
        found |= {run.info.run_id: run for run in runs}
    return found


def first_stage_present(client: MlflowClient, experiment_id: str, stages: Sequence[str]) -> str | None:
    """The first of ``stages`` with at least one run in the experiment (one one-row search per stage
    tried, so put the likeliest first); None when none has a run."""
    return next((stage for stage in stages
                 if client.search_runs([experiment_id], RunFilter(stage=stage).filter_string(), max_results=1)),
                None)  # fmt: skip


def role(run: Run) -> str:
    """What a run is in its pipeline: its stage, with the variant when it has one
    (``train_classifier.real``), as the ``fairaug.upstream.<role>`` tags of its downstream runs name it."""
    tags = run.data.tags
    stage = tags.get(STAGE_TAG, run.info.run_name or "?")
    return f"{stage}.{tags[VARIANT_TAG]}" if VARIANT_TAG in tags else stage


def upstream_ids(run: Run) -> dict[str, str]:
    """The run ids of a run's upstream stage runs, by the name its lineage tags give them."""
    return {key.removeprefix(UPSTREAM_TAG): value for key, value in run.data.tags.items()
            if key.startswith(UPSTREAM_TAG)}  # fmt: skip


def started(run: Run) -> pd.Timestamp:
    return pd.Timestamp(run.info.start_time, unit="ms")


def runs_table(runs: Sequence[Run], metric_names: Sequence[str] = (), param_names: Sequence[str] = ()) -> pd.DataFrame:
    """One row per run: id, name, stage (role), status, start, duration, commit, DVC experiment, profile,
    then the asked metrics (NaN where a run has none) and params (None where absent)."""
    rows = []
    for run in runs:
        info, tags = run.info, run.data.tags
        duration = (info.end_time - info.start_time) / 1000 if info.end_time else float("nan")
        row = {"run_id": info.run_id, "experiment_id": info.experiment_id, "run": info.run_name, "stage": role(run),
               "status": info.status, "started": started(run), "seconds": duration,
               "commit": tags.get(COMMIT_TAG, "")[:10], "experiment": tags.get(DVC_EXPERIMENT_TAG),
               "profile": tags.get(PROFILE_TAG)}  # fmt: skip
        row |= {name: run.data.metrics.get(name, float("nan")) for name in metric_names}
        row |= {f"params.{name}": run.data.params.get(name) for name in param_names}
        rows.append(row)
    columns = ["run_id", "experiment_id", "run", "stage", "status", "started", "seconds", "commit", "experiment", "profile",
               *metric_names, *(f"params.{name}" for name in param_names)]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
