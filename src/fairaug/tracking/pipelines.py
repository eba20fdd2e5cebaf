"""Pipeline runs: the stage runs one `dvc repro` made, found through their lineage tags.

A pipeline run is named by its head, the run of its most downstream stage (evaluate_fairness once
the pipeline got that far), and holds every run reachable through ``fairaug.upstream.<role>`` tags
from it, plus the branch stages that hang off one of those runs without being upstream of the head
(evaluate_quality reads the synthetic set but feeds no classifier). Upstream runs can be shared: a
prepare run that DVC did not rerun belongs to every later pipeline run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities import Run

from fairaug.tracking.search import (
    COMMIT_TAG,
    NEWEST_FIRST,
    STAGE_TAG,
    UPSTREAM_TAG,
    RunFilter,
    RunPage,
    quoted,
    role,
    runs_by_id,
    search_page,
    started,
    upstream_ids,
)

# head candidates, most downstream first (evaluate_quality before generate: it names generate's run)
HEAD_STAGES = ("evaluate_fairness", "evaluate_quality", "generate", "train_classifier", "train_lora", "base_model",
               "prepare")  # fmt: skip
# branch stage -> the role whose run it hangs off
BRANCHES = {"evaluate_quality": "generate"}


@dataclass(frozen=True)
class Pipeline:
    """One pipeline run: its head run and its stage runs by role (``train_classifier.real``, ...)."""

    head: Run
    runs: Mapping[str, Run]

    @property
    def label(self) -> str:
        return head_label(self.head)

    def run(self, run_role: str) -> Run | None:
        return self.runs.get(run_role)


def head_label(head: Run) -> str:
    """A name that tells pipeline runs apart in a legend: start time, commit and run id of the head."""
    commit = head.data.tags.get(COMMIT_TAG, "")[:7] or "no commit"
    return f"{started(head):%Y-%m-%d %H:%M:%S} · {commit} · {head.info.run_id[:8]}"


def pipeline_heads(
    client: MlflowClient,
    experiment_id: str,
    head_stage: str,
    run_filter: RunFilter = RunFilter(),
    max_results: int = 100,
    page_token: str | None = None,
) -> RunPage:
    """A page of head runs (``head_stage`` runs, newest first) matching ``run_filter``'s other fields."""
    head_filter = RunFilter(head_stage, run_filter.profile, run_filter.commit, run_filter.started_after,
                            run_filter.started_before)  # fmt: skip
    return search_page(client, [experiment_id], head_filter, max_results, page_token)


def assemble(client: MlflowClient, heads: Sequence[Run]) -> list[Pipeline]:
    """The pipeline run of each head, in the heads' order.

    Args:
        client: the store to read.
        heads: head runs, e.g. a page of `pipeline_heads`.

    Returns:
        One `Pipeline` per head. A lineage tag naming a run the store no longer has leaves that role
        out; a pipeline knows nothing of stages that did not run.
    """
    experiment_ids = sorted({head.info.experiment_id for head in heads})
    known: dict[str, Run] = {head.info.run_id: head for head in heads}
    frontier = {run_id for head in heads for run_id in upstream_ids(head).values()}
    while frontier - known.keys():  # one search per lineage level, not per run
        missing = frontier - known.keys()
        found = runs_by_id(client, missing, experiment_ids)
        known |= found
        frontier = {run_id for run in found.values() for run_id in upstream_ids(run).values()}
    pipelines = []
    for head in heads:
        runs = _ancestors(head, known)
        for branch, anchor in BRANCHES.items():
            if branch not in runs and anchor in runs:
                branch_run = _branch_run(client, runs[anchor], branch)
                if branch_run is not None:
                    runs[branch] = branch_run
        pipelines.append(Pipeline(head, runs))
    return pipelines


def _ancestors(head: Run, known: Mapping[str, Run]) -> dict[str, Run]:
    runs, stack = {}, [head]
    while stack:
        run = stack.pop()
        if role(run) in runs:
            continue
        runs[role(run)] = run
        stack.extend(known[run_id] for run_id in upstream_ids(run).values() if run_id in known)
    return runs


def newest_downstream(client: MlflowClient, experiment_id: str, stage: str, upstream_role: str,
                      run_id: str) -> Run | None:  # fmt: skip
    """The newest finished ``stage`` run whose lineage names ``run_id`` as its ``upstream_role`` run (a
    failed or abandoned one wrote nothing downstream stages read)."""
    found = client.search_runs([experiment_id],
                               f'tags."{STAGE_TAG}" = {quoted(stage)} AND tags."{UPSTREAM_TAG}{upstream_role}" = {quoted(run_id)}'
                               " AND attributes.status = 'FINISHED'",
                               max_results=1, order_by=list(NEWEST_FIRST))  # fmt: skip
    return found[0] if found else None


def _branch_run(client: MlflowClient, anchor: Run, stage: str) -> Run | None:
    """The newest ``stage`` run whose lineage names ``anchor``."""
    return newest_downstream(client, anchor.info.experiment_id, stage, role(anchor), anchor.info.run_id)


# (role, stage, upstream role): the runs that followed a LoRA's training, in pipeline order
DOWNSTREAM_OF_TRAIN_LORA = (
    ("generate", "generate", "train_lora"),
    ("evaluate_quality", "evaluate_quality", "generate"),
    ("train_classifier.augmented", "train_classifier", "generate"),
    ("evaluate_fairness", "evaluate_fairness", "train_classifier.augmented"),
)


def downstream_run_ids(client: MlflowClient, experiment_id: str, train_lora_run_id: str) -> dict[str, str]:
    """Run ids of the generate, evaluation and augmented-classifier runs that followed a LoRA's
    training run (newest of each), by role; absent where none ran."""
    ids = {"train_lora": train_lora_run_id}
    for key, stage, upstream in DOWNSTREAM_OF_TRAIN_LORA:
        if upstream in ids and (run := newest_downstream(client, experiment_id, stage, upstream, ids[upstream])):
            ids[key] = run.info.run_id
    return ids
