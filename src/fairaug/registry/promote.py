"""Registration and gated promotion in the MLflow model registry (the gates are in gates.py, the
promote stage, which also is `fairaug promote` on the LoRA in outputs/, in stage.py).

One registered model per data set (``promote.model_name``, default ``fairaug-<dataset>-lora``). A
candidate LoRA is registered once: its digest (LoRA bytes + base) is the version tag
``fairaug.lora_sha256``, so the same bytes find their version again and nothing new is registered.
A new version starts with ``fairaug.decision = pending``; a rerun after an interruption finds it
and completes the decision. Each decision:

- opens an MLflow run of stage ``promote`` in ``fairaug/<dataset>`` (the audit trail: MLflow keeps
  no promotion history of its own), which stores the evidence (``promotion/metrics.json``) and tags
  ``fairaug.version``, ``fairaug.decision``, ``fairaug.decision_reason``, ``fairaug.forced``,
  ``fairaug.champion_before`` and ``fairaug.champion_after``;
- moves the aliases: ``champion`` to a promoted version (the one it replaces is tagged
  ``fairaug.replaced_by``), ``challenger`` to one that passed every fixed gate but does not beat
  the champion; a champion rejected on a rerun loses its alias;
- tags the version with every gate (``gate.<name>.metric|value|threshold|champion_value|passed|reason``)
  and the decision (``fairaug.decision``, ``fairaug.decision_reason``, ``fairaug.forced``,
  ``fairaug.decided_at``, ``fairaug.decision_run``).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from fairaug.config import Params
from fairaug.errors import FairaugError
from fairaug.io import reasons_path
from fairaug.metrics_files import read_metrics
from fairaug.registry.gates import GateResult, Verdict, decide, evaluate_gates
from fairaug.registry.model import lora_candidate, log_lora_model
from fairaug.tracking import configure_tracking, stage_run
from fairaug.tracking.runs import experiment_name
from fairaug.tracking.model_registry import promotion_history
from fairaug.tracking.pipelines import downstream_run_ids
from fairaug.tracking.search import UPSTREAM_TAG
from fairaug.tracking.server import check_tracking_server, tracking_errors

CHAMPION, CHALLENGER = "champion", "challenger"
EVIDENCE = "promotion/metrics.json"
STAGE = "promote"
MAX_TAG = 4000  # model version tag values are capped (5000 in MLflow's stores)


@dataclass(frozen=True)
class Evidence:
    """What a decision reads: the candidate's metrics (quality.json + fairness.json and their detail
    files) and the reasons recorded for missing ones."""

    metrics: dict
    reasons: dict


@dataclass(frozen=True)
class Outcome:
    version: int | None  # None: a dry run of a LoRA not registered yet
    verdict: Verdict
    champion_before: int | None
    champion_after: int | None
    registered: bool  # a new version was created by this call


def read_evidence(quality_path: Path, fairness_path: Path) -> Evidence:
    """Both metrics files with their detail files (`read_metrics`: the gates read per-FST values)
    and the reasons files beside them (`reasons_path`)."""
    metrics, reasons = {}, {}
    for path in (Path(quality_path), Path(fairness_path)):
        if not path.is_file():
            raise FairaugError(f"{path}: not found; run the evaluate stages first (dvc repro)")
        metrics |= read_metrics(path)
        if reasons_path(path).is_file():
            reasons |= json.loads(reasons_path(path).read_text())
    return Evidence(metrics, reasons)


def find_version(client: MlflowClient, name: str, digest: str) -> ModelVersion | None:
    found = client.search_model_versions(f"name = '{name}' and tag.`fairaug.lora_sha256` = '{digest}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def recorded_evidence(version: ModelVersion) -> Evidence | None:
    """The evidence of a version's latest decision, from its decision run; None if it has none."""
    run_id = version.tags.get("fairaug.decision_run")
    if not run_id:
        return None
    try:
        stored = mlflow.artifacts.load_dict(f"runs:/{run_id}/{EVIDENCE}")
    except (MlflowException, OSError):
        return None
    return Evidence(stored["metrics"], stored["reasons"])


def judge(client: MlflowClient, params: Params, name: str, version: int | None, evidence: Evidence,
          force_reason: str | None) -> tuple[Verdict, ModelVersion | None]:
    """The verdict for ``version`` (None: not registered yet) against the current champion."""
    champion = alias_version(client, name, CHAMPION)
    other = champion if champion is not None and int(champion.version) != version else None
    champion_metrics = None
    if other is not None:
        champion_metrics = (recorded_evidence(other) or Evidence({}, {})).metrics
    results = evaluate_gates(params.promote.gates, evidence.metrics, evidence.reasons, champion_metrics)
    return decide(results, force_reason), champion


def register(client: MlflowClient, params: Params, dataset: str, lora_dir: Path, base_dir: Path, run_id: str,
             experiment_id: str) -> tuple[ModelVersion, bool]:
    """The version of this LoRA, registered (model logged in run ``run_id``) unless it already is."""
    name = params.promote.registered_model(dataset)
    candidate = lora_candidate(params, dataset, lora_dir, base_dir)
    if (existing := find_version(client, name, candidate.digest)) is not None:
        return existing, False
    labels = params.dataset(dataset).allowed_labels() or []
    info = log_lora_model(params, candidate, labels)
    run_tags = client.get_run(run_id).data.tags
    tags = {"fairaug.dataset": dataset, "fairaug.lora_sha256": candidate.digest, "fairaug.decision": "pending",
            "fairaug.profile": params.profile, "git.commit": run_tags.get("git.commit", "")}  # fmt: skip
    if train_lora_run := run_tags.get(f"{UPSTREAM_TAG}train_lora"):  # absent: no run in this store trained it
        lineage = downstream_run_ids(client, experiment_id, train_lora_run)
        tags |= {f"fairaug.run.{key}": value for key, value in lineage.items()}
        prepare_run = client.get_run(lineage["train_lora"]).data.tags.get("fairaug.upstream.prepare")
        if prepare_run:
            data_key = f"dvc.md5.{params.dataset(dataset).root}"
            tags["fairaug.data_md5"] = client.get_run(prepare_run).data.tags.get(data_key, "")
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    return client.get_model_version(name, version.version), True


def _gate_tags(result: GateResult) -> dict[str, str]:
    def text(value: float | None) -> str:
        return "" if value is None else f"{value:.6g}"

    return {f"gate.{result.name}.metric": result.metric, f"gate.{result.name}.value": text(result.value),
            f"gate.{result.name}.threshold": text(result.threshold),
            f"gate.{result.name}.champion_value": text(result.champion_value),
            f"gate.{result.name}.passed": str(result.passed).lower(),
            f"gate.{result.name}.reason": result.reason[:MAX_TAG]}  # fmt: skip


def record_decision(client: MlflowClient, name: str, version: ModelVersion, verdict: Verdict, evidence: Evidence,
                    champion: ModelVersion | None, run_id: str) -> int | None:
    """Store the evidence, move the aliases, tag the version and the run (module docstring), in an
    order that a rerun can complete: the version leaves ``pending`` last but one. Returns the
    champion version after the decision."""
    number = int(version.version)
    client.log_dict(run_id, {"metrics": evidence.metrics, "reasons": evidence.reasons}, EVIDENCE)
    is_champion = champion is not None and int(champion.version) == number
    challenger = alias_version(client, name, CHALLENGER)
    is_challenger = challenger is not None and int(challenger.version) == number
    reason = verdict.reason
    if verdict.decision == "promoted":
        client.set_registered_model_alias(name, CHAMPION, number)
        if champion is not None and not is_champion:
            client.set_model_version_tag(name, champion.version, "fairaug.replaced_by", str(number))
        if is_challenger:
            client.delete_registered_model_alias(name, CHALLENGER)
    elif verdict.decision == "challenger":
        client.set_registered_model_alias(name, CHALLENGER, number)
    else:
        if is_challenger:
            client.delete_registered_model_alias(name, CHALLENGER)
        if is_champion:
            client.delete_registered_model_alias(name, CHAMPION)
            reason += "; it is no longer the champion"
    champion_after = number if verdict.decision == "promoted" else None if is_champion else (
        int(champion.version) if champion is not None else None)  # fmt: skip
    stale = {key for key in version.tags if key.startswith("gate.")}
    tags = {key: value for result in verdict.gates for key, value in _gate_tags(result).items()}
    for key in stale - set(tags):
        client.delete_model_version_tag(name, version.version, key)
    tags |= {"fairaug.decision_reason": reason[:MAX_TAG], "fairaug.forced": str(verdict.forced).lower(),
             "fairaug.decided_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
             "fairaug.decision_run": run_id, "fairaug.decision": verdict.decision}  # fmt: skip
    for key, value in tags.items():  # the decision itself last
        client.set_model_version_tag(name, version.version, key, value)
    run_tags = {"fairaug.version": str(number), "fairaug.decision": verdict.decision,
                "fairaug.decision_reason": reason[:MAX_TAG], "fairaug.forced": str(verdict.forced).lower(),
                "fairaug.champion_before": str(champion.version) if champion else "",
                "fairaug.champion_after": str(champion_after or "")}  # fmt: skip
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in run_tags.items()])
    return champion_after


def connect(root: Path) -> tuple[MlflowClient, str]:
    """A client of the project's tracking store (checked to answer) and its URI."""
    configure_tracking(root)
    uri = mlflow.get_tracking_uri()
    check_tracking_server(uri)
    return MlflowClient(), uri


def decide_and_record(client: MlflowClient, params: Params, name: str, version: ModelVersion, evidence: Evidence,
                       force_reason: str | None, run_id: str, registered: bool) -> Outcome:
    """Judge ``version`` against the champion and record the decision in run ``run_id``."""
    verdict, champion = judge(client, params, name, int(version.version), evidence, force_reason)
    after = record_decision(client, name, version, verdict, evidence, champion, run_id)
    return Outcome(int(version.version), verdict, int(champion.version) if champion else None, after, registered)


def promote_version(params: Params, dataset: str, version: int, *, dry_run: bool = False,
                    force_reason: str | None = None, root: Path | None = None) -> Outcome:
    """Decide again on a registered version with the evidence of its last decision and today's
    gates (`fairaug promote --version N`, the dashboard's promote button)."""
    root = (root or Path.cwd()).resolve()
    name = params.promote.registered_model(dataset)
    client, uri = connect(root)
    with tracking_errors(uri):
        try:
            model_version = client.get_model_version(name, str(version))
        except MlflowException:
            raise FairaugError(f"--version {version}: {name} has no version {version}") from None
        evidence = recorded_evidence(model_version)
        if evidence is None:
            raise FairaugError(f"{name} version {version} has no recorded evidence: promote it from its outputs "
                               f"(dvc repro promote@{dataset})")  # fmt: skip
        if dry_run:
            verdict, champion = judge(client, params, name, version, evidence, force_reason)
            before = int(champion.version) if champion else None
            return Outcome(version, verdict, before, before, registered=False)
        with stage_run(STAGE, dataset, params, {"promote": params.promote.model_dump()}, root=root) as run:
            return decide_and_record(client, params, name, model_version, evidence, force_reason, run.run_id, False)


def decision_history(params: Params, dataset: str, root: Path | None = None) -> pd.DataFrame:
    """Every decision on ``dataset``'s model, oldest first: one row per promote run
    (`fairaug.tracking.model_registry.promotion_history`)."""
    client, uri = connect((root or Path.cwd()).resolve())
    with tracking_errors(uri):
        experiment = client.get_experiment_by_name(experiment_name(params, dataset))
        if experiment is None:
            return promotion_history(client, None)
        return promotion_history(client, experiment.experiment_id)
