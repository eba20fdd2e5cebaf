"""One MLflow run per pipeline stage, tagged with its lineage.

Tags (DESIGN.md): fairaug.stage, fairaug.dataset, fairaug.profile, git.commit (+ git.dirty),
dvc.md5.<dep> for every dependency dvc.yaml declares, and fairaug.upstream.<stage> = the run id of
each upstream stage, read from the run file that stage wrote into its outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from fairaug.config.models import Params
from fairaug.io import write_json
from fairaug.tracking.lineage import dvc_md5, git_commit, stage_deps

RUN_FILE = "mlflow_run.json"
DEFAULT_STORE = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
DVC_MD5_TAG = "dvc.md5."
# MLflow 3 opens experiments without this tag in its GenAI view (traces, token usage); this one
# selects the model training view, whose runs table has the Dataset column.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded store sqlite:///<root>/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / DEFAULT_STORE).resolve()}"


def configure_tracking(root: Path) -> bool:
    """Use `tracking_uri` (MLFLOW_TRACKING_URI when set, else the embedded store).

    Returns whether the embedded store is used. Decided before `set_tracking_uri`, which itself
    exports MLFLOW_TRACKING_URI (for child processes).
    """
    import mlflow

    embedded = not os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri(root))
    return embedded


def experiment_name(params: Params, dataset: str) -> str:
    return f"{params.tracking.experiment_prefix}/{dataset}"


def ensure_experiment(name: str, root: Path, embedded_store: bool) -> str:
    """The experiment's id, created on first use; with the embedded store, artifacts go to mlartifacts/."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # created before the tag was
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return experiment.experiment_id
    artifact_location = None
    if embedded_store:
        artifact_location = (root / DEFAULT_ARTIFACTS / name.replace("/", "-")).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=artifact_location,
                                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


def flatten(data: Mapping, prefix: str = "") -> dict[str, object]:
    """Nested params as MLflow param keys: {"split": {"train": 0.7}} -> {"split.train": 0.7}."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def numeric_metrics(report: Mapping[str, object]) -> dict[str, float]:
    """MLflow metrics of a report, named as its keys: its numbers (values, n, intervals; NaN
    included), not flags or reasons."""
    return {key: float(value) for key, value in report.items()
            if isinstance(value, int | float) and not isinstance(value, bool)}  # fmt: skip


def read_run_id(out_dir: Path) -> str:
    """The MLflow run id an upstream stage recorded in its outputs."""
    return json.loads((Path(out_dir) / RUN_FILE).read_text())["run_id"]


@dataclass(frozen=True)
class StageRun:
    run_id: str
    experiment_id: str

    def write_run_file(self, out_dir: Path) -> Path:
        """Record the run id in the stage's outputs so downstream stages can link to it."""
        return write_json(Path(out_dir) / RUN_FILE, {"run_id": self.run_id, "experiment_id": self.experiment_id})


def lineage_tags(stage: str, dataset: str, params: Params, root: Path, upstream: Mapping[str, Path]) -> dict:
    commit, dirty = git_commit(root)
    tags = {
        "fairaug.stage": stage,
        "fairaug.dataset": dataset,
        "fairaug.profile": params.profile,
        "git.commit": commit,
        "git.dirty": str(dirty).lower(),
    }
    for dep in stage_deps(f"{stage}@{dataset}", root):
        if (root / dep).exists():
            tags[f"{DVC_MD5_TAG}{dep}"] = dvc_md5(root / dep)
    for upstream_stage, out_dir in upstream.items():
        tags[f"fairaug.upstream.{upstream_stage}"] = read_run_id(root / out_dir)
    return tags


@contextlib.contextmanager
def stage_run(
    stage: str,
    dataset: str,
    params: Params,
    stage_params: Mapping,
    *,
    root: Path | None = None,
    upstream: Mapping[str, Path] | None = None,
) -> Iterator[StageRun]:
    """Open the MLflow run of ``stage@dataset`` with lineage tags and the stage's params logged.

    The run ends FAILED if the block raises, so a failed stage is visible in the UI.
    """
    import mlflow

    root = (root or Path.cwd()).resolve()
    embedded_store = configure_tracking(root)
    experiment_id = ensure_experiment(experiment_name(params, dataset), root, embedded_store)
    tags = lineage_tags(stage, dataset, params, root, upstream or {})
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{stage}@{dataset}", tags=tags) as run:
        mlflow.log_params(flatten(stage_params))
        yield StageRun(run.info.run_id, experiment_id)
        log_data_inputs(mlflow.MlflowClient().get_run(run.info.run_id).data.tags)


def log_data_inputs(tags: Mapping[str, str]) -> None:
    """Log each data dependency named by a ``dvc.md5.<path>`` tag as an MLflow dataset input (digest =
    the DVC md5, source = the path), so that the MLflow UI's Dataset column shows the data version.

    Read from the run's tags at its end rather than at its start: a matrix stage tags its deps itself
    inside the run. Code deps (.py files) are versions of the code, not data: `git.commit` covers them.
    """
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    paths = sorted(key.removeprefix(DVC_MD5_TAG) for key in tags if key.startswith(DVC_MD5_TAG))
    datasets = [MetaDataset(LocalArtifactDatasetSource(path), name=path, digest=tags[f"{DVC_MD5_TAG}{path}"])
                for path in paths if not path.endswith(".py")]  # fmt: skip
    if datasets:
        mlflow.log_inputs(datasets, contexts=["input"] * len(datasets), tags_list=[None] * len(datasets))
