"""One MLflow run per pipeline stage, tagged with its lineage.

Tags (DESIGN.md): fairaug.stage, fairaug.dataset, fairaug.profile, git.commit (+ git.dirty),
dvc.md5.<dep> for every dependency dvc.yaml declares, dvc.out_md5.<out> for every output the stage
wrote, fairaug.upstream.<role> = the run id of each upstream stage run, and fairaug.process =
<host>:<pid> of the stage's process: a run it left RUNNING (killed, or its tracking server stopped
mid-stage) is marked FAILED by the next run of the stage on that host.

An upstream run is found in MLflow by the DVC md5 of the dependency it produced: the newest finished
run whose dvc.out_md5.<path> tag is that md5. Nothing is written into the DVC outs, so a rerun with
byte-identical outputs leaves them (and every stage below) up to date, and a stage DVC skipped or
restored from its run cache is still found. Where no run in the store wrote those bytes (a clone
whose outputs came from `dvc pull`, another tracking store), the lineage tag is left out and
fairaug.upstream_missing.<role> says why.

Experiments that DVC runs in a temporary clone (`dvc queue start`, `dvc exp run --temp`) log to the
embedded store of the workspace they were queued from, not to one deleted with the clone, and every
run of a DVC experiment carries its name (`dvc.exp_name`), which `dvc exp show` lists.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from mlflow import MlflowClient

from fairaug.config.models import Params
from fairaug.io import remove_stale_temps
from fairaug.tracking.lineage import dvc_md5, git_commit, stage_deps
from fairaug.tracking.search import DVC_EXPERIMENT_TAG, NEWEST_FIRST, UPSTREAM_TAG, quoted
from fairaug.tracking.server import check_tracking_server, tracking_errors

DEFAULT_STORE = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
DVC_MD5_TAG = "dvc.md5."
DVC_OUT_MD5_TAG = "dvc.out_md5."
UPSTREAM_MISSING_TAG = "fairaug.upstream_missing."
# the process that opened a run (<host>:<pid>): a run still RUNNING whose process is gone was abandoned
PROCESS_TAG = "fairaug.process"
ABANDONED_TAG = "fairaug.abandoned"
# MLflow 3 opens experiments without this tag in its GenAI view (traces, token usage); this one
# selects the model training view, whose runs table has the Dataset column.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def store_root(root: Path) -> Path:
    """The directory of the embedded store: the DVC workspace a stage runs for. DVC sets DVC_ROOT to the
    workspace an experiment was queued from when it runs the experiment in a temporary clone; else
    ``root``."""
    return Path(os.environ.get("DVC_ROOT") or root).resolve()


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded store sqlite:///<store_root>/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root(root) / DEFAULT_STORE}"


def create_store(root: Path) -> None:
    """Make the embedded store's tables now if it has none, one process at a time: MLflow makes a new
    SQLite store on first use, which stages starting at once would all try ("table ... already exists")."""
    with FileLock(store_root(root) / f"{DEFAULT_STORE}.lock"):
        MlflowClient(tracking_uri(root)).search_experiments(max_results=1)


def configure_tracking(root: Path) -> bool:
    """Use `tracking_uri` (MLFLOW_TRACKING_URI when set, else the embedded store, made if new).

    Returns whether the embedded store is used. Decided before `set_tracking_uri`, which itself
    exports MLFLOW_TRACKING_URI (for child processes).
    """
    import mlflow

    embedded = not os.environ.get("MLFLOW_TRACKING_URI")
    if embedded:
        create_store(root)
    mlflow.set_tracking_uri(tracking_uri(root))
    return embedded


def experiment_name(params: Params, dataset: str) -> str:
    return f"{params.tracking.experiment_prefix}/{dataset}"


def ensure_experiment(name: str, root: Path, embedded_store: bool) -> str:
    """The experiment's id, created on first use; with the embedded store, artifacts go to mlartifacts/."""
    import mlflow
    from mlflow.exceptions import MlflowException

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        artifact_location = None
        if embedded_store:
            artifact_location = (store_root(root) / DEFAULT_ARTIFACTS / name.replace("/", "-")).as_uri()
        try:
            return mlflow.create_experiment(name, artifact_location=artifact_location,
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException as err:  # a stage running in parallel created it since the lookup
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = mlflow.get_experiment_by_name(name)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # created before the tag was
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


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


@dataclass(frozen=True)
class StageRun:
    run_id: str
    experiment_id: str


def dvc_path(path: Path, root: Path) -> str:
    """``path`` as dvc.yaml names it: relative to the project root, with forward slashes (absolute
    outside the root)."""
    absolute = (root / path).resolve()
    return absolute.relative_to(root).as_posix() if absolute.is_relative_to(root) else absolute.as_posix()


def producer_run_id(client: MlflowClient, experiment_id: str, path: str, md5: str) -> str | None:
    """The newest finished run of the experiment that wrote ``path`` (dvc.yaml's name) with DVC md5
    ``md5``; None when none did."""
    runs = client.search_runs([experiment_id],
                              f"tags.`{DVC_OUT_MD5_TAG}{path}` = {quoted(md5)} AND attributes.status = 'FINISHED'",
                              order_by=list(NEWEST_FIRST), max_results=1)  # fmt: skip
    return runs[0].info.run_id if runs else None


def upstream_tags(experiment_id: str, root: Path, upstream: Mapping[str, Path],
                  dep_tags: Mapping[str, str]) -> dict[str, str]:  # fmt: skip
    """``fairaug.upstream.<role>``: the run that wrote each upstream output as it is now, or
    ``fairaug.upstream_missing.<role>``: why there is none. ``dep_tags``: the `lineage_tags` already
    made, whose md5s are not computed twice (a synthetic set takes a while to hash)."""
    client = MlflowClient()
    tags = {}
    for role, out in upstream.items():
        path = dvc_path(out, root)
        if not (root / path).exists():
            tags[f"{UPSTREAM_MISSING_TAG}{role}"] = f"{path} does not exist"
            continue
        md5 = dep_tags.get(f"{DVC_MD5_TAG}{path}") or dvc_md5(root / path)
        if run_id := producer_run_id(client, experiment_id, path, md5):
            tags[f"{UPSTREAM_TAG}{role}"] = run_id
        else:
            tags[f"{UPSTREAM_MISSING_TAG}{role}"] = (
                f"no finished run in this tracking store wrote {path} as it is now (DVC md5 {md5}), "
                "e.g. outputs from `dvc pull` or a run logged to another store")
    return tags


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def process_gone(process: str) -> bool:
    """Whether the process a `PROCESS_TAG` names has ended: only decidable on its own host (False elsewhere,
    and for a pid that another process now has)."""
    host, _, pid = process.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    with contextlib.suppress(OSError, IndexError):  # exited, not yet reaped by its parent (Linux)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def end_abandoned_runs(client: MlflowClient, experiment_id: str, run_name: str) -> list[str]:
    """Mark FAILED the runs of ``run_name`` left RUNNING by a process that has ended without closing
    them (killed, or its tracking server stopped mid-stage so that closing failed); their lineage is
    then never taken for a finished run's. Runs of live processes (parallel experiments) and of other
    hosts are left as they are.

    Returns:
        The run ids marked FAILED.
    """
    running = client.search_runs([experiment_id],
                                 f"attributes.run_name = {quoted(run_name)} AND attributes.status = 'RUNNING'")  # fmt: skip
    ended = []
    for run in running:
        process = run.data.tags.get(PROCESS_TAG, "")
        if process_gone(process):
            client.set_tag(run.info.run_id, ABANDONED_TAG,
                           f"process {process} ended without closing the run; marked FAILED by {this_process()}")
            client.set_terminated(run.info.run_id, "FAILED")
            ended.append(run.info.run_id)
    return ended


def lineage_tags(dvc_stage: str, stage: str, dataset: str, params: Params, root: Path) -> dict:
    """The run's tags but its upstream runs: stage, data set, profile, commit, DVC experiment, deps' DVC md5s."""
    commit, dirty = git_commit(root)
    tags = {
        "fairaug.stage": stage,
        "fairaug.dataset": dataset,
        "fairaug.profile": params.profile,
        "git.commit": commit,
        "git.dirty": str(dirty).lower(),
        PROCESS_TAG: this_process(),
    }
    if experiment := os.environ.get("DVC_EXP_NAME"):  # set by `dvc exp run` and its queue
        tags[DVC_EXPERIMENT_TAG] = experiment
    for dep in stage_deps(dvc_stage, root):
        if (root / dep).exists():
            tags[f"{DVC_MD5_TAG}{dep}"] = dvc_md5(root / dep)
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
    outs: Sequence[Path] = (),
    dvc_stage: str | None = None,
    nested: bool = False,
) -> Iterator[StageRun]:
    """Open the MLflow run of ``stage@dataset`` with lineage tags and the stage's params logged.

    Args:
        upstream: role (``prepare``, ``train_classifier.real``) -> the upstream output this stage
            reads; tagged with the run that wrote it (module docstring).
        outs: what this stage writes (final paths, not temporary ones), tagged with their DVC md5
            when the block ends, so that downstream stages find this run. Temporaries that a killed
            earlier run left beside them are removed first.
        dvc_stage: the DVC stage name when it is not ``<stage>@<dataset>`` (a matrix item, a stage
            shared by all data sets); the run is named after it and its deps are looked up under it.
        nested: open the run while another stage run is active (a stage shared by all data sets
            has one run in each data set's experiment, the later ones nested under the first).

    The run ends FAILED if the block raises, so a failed stage is visible in the UI; runs of this
    stage that an ended process left RUNNING are marked FAILED first (`end_abandoned_runs`).
    """
    import mlflow

    root = (root or Path.cwd()).resolve()
    dvc_stage = dvc_stage or f"{stage}@{dataset}"
    for out in outs:
        remove_stale_temps(root / out)
    embedded_store = configure_tracking(root)
    # a server that does not answer, or stops answering during the stage: one line, in seconds
    uri = tracking_uri(root)
    check_tracking_server(uri)
    with tracking_errors(uri):
        experiment_id = ensure_experiment(experiment_name(params, dataset), root, embedded_store)
        end_abandoned_runs(MlflowClient(), experiment_id, dvc_stage)
        tags = lineage_tags(dvc_stage, stage, dataset, params, root)
        tags |= upstream_tags(experiment_id, root, upstream or {}, tags)
        with mlflow.start_run(experiment_id=experiment_id, run_name=dvc_stage, tags=tags, nested=nested) as run:
            mlflow.log_params(flatten(stage_params))
            yield StageRun(run.info.run_id, experiment_id)
            written = [dvc_path(out, root) for out in outs]
            mlflow.set_tags({f"{DVC_OUT_MD5_TAG}{path}": dvc_md5(root / path) for path in written if (root / path).exists()})
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
