import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from fairaug.config import Params, render_params
from fairaug.data.files import MANIFEST
from fairaug.tracking import stage_run
from fairaug.tracking.lineage import dvc_md5, git_commit, stage_deps
from fairaug.tracking.pipelines import newest_downstream
from fairaug.tracking.runs import (
    ABANDONED_TAG,
    DVC_EXPERIMENT_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    PROCESS_TAG,
    ensure_experiment,
    flatten,
)

from conftest import dvc_repo, run


def test_flatten_nested_params():
    assert flatten({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": None}) == {"a.b.c": 1, "a.d": [1, 2], "e": None}


def test_dvc_md5_equals_what_dvc_records(tmp_path):
    """Our md5 of a file and of a directory must be the one DVC writes into dvc.lock."""
    dvc_repo(tmp_path)
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("alpha\n")
    (tmp_path / "d" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 3)
    (tmp_path / "f.txt").write_text("one file\r\nwith CRLF\r\n")
    run(["dvc", "stage", "add", "-q", "-n", "s", "-d", "d", "-d", "f.txt", "-o", "o.txt", "cp f.txt o.txt"], tmp_path)
    run(["dvc", "repro", "-q"], tmp_path)
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    recorded = {dep["path"]: dep["md5"] for dep in lock["stages"]["s"]["deps"]}
    assert recorded["d"].endswith(".dir")
    assert dvc_md5(tmp_path / "d") == recorded["d"]
    assert dvc_md5(tmp_path / "f.txt") == recorded["f.txt"]


def test_git_commit_outside_git_is_unknown(tmp_path):
    assert git_commit(tmp_path) == ("unknown", False)


def test_stage_deps_are_the_deps_dvc_collects_for_every_stage(project):
    """Resolved from dvc.yaml alone, each stage's file deps equal what DVC's own collection gives."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(str(project)) as repo:
        collected = {stage.addressing: tuple(dep.def_path for dep in stage.deps if not isinstance(dep, ParamsDependency))
                     for stage in repo.index.stages if isinstance(stage, PipelineStage)}  # fmt: skip
    assert {"base_model", "prepare@ham10000", "promote@wound"} <= set(collected)
    assert {name: stage_deps(name, project) for name in collected} == collected
    assert stage_deps("prepare@no_such_dataset", project) == ()


def test_stage_run_logs_lineage_params_and_out_md5(project, mlflow_uri):
    params = Params()
    upstream_dir = project / "outputs" / "ham10000" / "prepared"
    with stage_run("prepare", "ham10000", params, {"prepare": {"split": {"train": 0.7}}}, outs=[upstream_dir]) as upstream:
        upstream_dir.mkdir(parents=True)
        (upstream_dir / MANIFEST).write_bytes(b"rows")
    assert [p.name for p in upstream_dir.iterdir()] == [MANIFEST]  # no run id in the DVC out

    with stage_run("train_lora", "ham10000", params, {"lr": 1e-3}, upstream={"prepare": upstream_dir}) as down:
        pass

    client = mlflow.MlflowClient(mlflow_uri)
    first = client.get_run(upstream.run_id)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert first.data.tags["fairaug.stage"] == "prepare"
    assert first.data.tags["fairaug.dataset"] == "ham10000"
    assert first.data.tags["fairaug.profile"] == "tiny"
    assert first.data.tags["git.commit"] == head
    assert first.data.params == {"prepare.split.train": "0.7"}
    # deps come from dvc.yaml (foreach resolved): the data directory and the stage's code
    assert first.data.tags["dvc.md5.data/ham10000"] == dvc_md5(project / "data" / "ham10000")
    assert first.data.tags["dvc.md5.pipelines/prepare.py"] == dvc_md5(project / "pipelines" / "prepare.py")
    assert first.data.tags["dvc.out_md5.outputs/ham10000/prepared"] == dvc_md5(upstream_dir)
    experiment = client.get_experiment(first.info.experiment_id)
    assert experiment.name == "fairaug/ham10000"

    second = client.get_run(down.run_id)
    assert second.data.tags["fairaug.upstream.prepare"] == upstream.run_id
    assert second.data.tags["dvc.md5.outputs/ham10000/prepared"] == dvc_md5(upstream_dir)


def test_upstream_run_is_the_newest_that_wrote_the_bytes_there_now(project, mlflow_uri):
    params = Params()
    prepared = Path("outputs", "ham10000", "prepared")  # relative, as dvc.yaml gives it to the stages

    def prepare_run(content: bytes | None, fail: bool = False) -> str:
        with contextlib.suppress(RuntimeError), stage_run("prepare", "ham10000", params, {}, outs=[prepared]) as made:
            if content is not None:
                prepared.mkdir(parents=True, exist_ok=True)
                (prepared / MANIFEST).write_bytes(content)
            if fail:
                raise RuntimeError("killed")
        return made.run_id

    def linked() -> dict[str, str]:
        with stage_run("base_model", "ham10000", params, {}, upstream={"prepare": prepared}) as down:
            pass
        tags = mlflow.MlflowClient(mlflow_uri).get_run(down.run_id).data.tags
        return {k: v for k, v in tags.items() if k.startswith(("fairaug.upstream.", "fairaug.upstream_missing."))}

    assert linked() == {"fairaug.upstream_missing.prepare": "outputs/ham10000/prepared does not exist"}
    first = prepare_run(b"A")
    assert linked() == {"fairaug.upstream.prepare": first}
    prepare_run(b"B")
    same_bytes = prepare_run(b"A")  # a rerun with identical outputs: DVC sees no change below it
    assert linked() == {"fairaug.upstream.prepare": same_bytes}
    prepare_run(b"C", fail=True)  # a failed run's outputs are no one's
    assert "fairaug.upstream_missing.prepare" in linked()

    # a fresh clone after `dvc pull`: the outputs are there, the store has no run that wrote them
    (prepared / MANIFEST).write_bytes(b"A")
    mlflow_uri = f"sqlite:///{project / 'fresh.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri  # the conftest fixture removes it after the test
    (reason,) = linked().values()
    assert reason.startswith("no finished run in this tracking store wrote outputs/ham10000/prepared as it is now")


def test_failed_stage_run_is_marked_failed(project, mlflow_uri):
    with pytest.raises(RuntimeError), stage_run("prepare", "wound", Params(), {}) as failing:
        raise RuntimeError("boom")
    assert mlflow.MlflowClient(mlflow_uri).get_run(failing.run_id).info.status == "FAILED"


def test_default_store_is_sqlite_in_project_root(project, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with stage_run("prepare", "wound", Params(), {}) as default:
        pass
    assert (project / "mlflow.db").exists()
    run_info = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_run(default.run_id)
    assert run_info.info.artifact_uri.startswith((project / "mlartifacts").as_uri())


def ended_process() -> str:
    """The <host>:<pid> tag of a process of this host that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}"


def test_runs_an_ended_process_left_running_are_failed_by_the_next_run_and_lineage_skips_them(project, mlflow_uri):
    params = Params()
    client = mlflow.MlflowClient(mlflow_uri)
    experiment = client.create_experiment("fairaug/wound")
    prepared = Path("outputs", "wound", "prepared")
    with stage_run("prepare", "wound", params, {}, outs=[prepared]) as finished:
        prepared.mkdir(parents=True)
        (prepared / MANIFEST).write_bytes(b"A")
    # a later prepare wrote these same bytes and lost its server before closing its run
    out_tag = {f"dvc.out_md5.{prepared.as_posix()}": dvc_md5(prepared)}

    def left_running(process: str, name: str = "prepare@wound") -> str:
        return client.create_run(experiment, run_name=name, tags={PROCESS_TAG: process, **out_tag}).info.run_id

    abandoned = left_running(ended_process())
    alive = left_running(f"{socket.gethostname()}:{os.getpid()}")  # a parallel experiment still at work
    elsewhere = left_running("another-host.example:1")  # its process cannot be checked from here
    other_stage = left_running(ended_process(), name="base_model@wound")
    with stage_run("prepare", "wound", params, {}) as rerun:
        pass

    status = {run_id: client.get_run(run_id).info.status for run_id in (abandoned, alive, elsewhere, other_stage)}
    assert status == {abandoned: "FAILED", alive: "RUNNING", elsewhere: "RUNNING", other_stage: "RUNNING"}
    assert "ended without closing the run" in client.get_run(abandoned).data.tags[ABANDONED_TAG]
    assert client.get_run(rerun.run_id).data.tags[PROCESS_TAG] == f"{socket.gethostname()}:{os.getpid()}"
    # lineage takes only finished runs: the upstream of a new run, and the runs that followed a LoRA
    with stage_run("base_model", "wound", params, {}, upstream={"prepare": prepared}) as base:
        pass
    assert client.get_run(base.run_id).data.tags["fairaug.upstream.prepare"] == finished.run_id
    with stage_run("generate", "wound", params, {}) as generate:
        mlflow.set_tag("fairaug.upstream.train_lora", "lora-run")
    with pytest.raises(RuntimeError), stage_run("generate", "wound", params, {}):
        mlflow.set_tag("fairaug.upstream.train_lora", "lora-run")
        raise RuntimeError("killed")  # newer, and FAILED
    assert newest_downstream(client, experiment, "generate", "train_lora", "lora-run").info.run_id == generate.run_id


def test_stage_run_removes_the_temporaries_a_killed_run_left_beside_its_outs(project, mlflow_uri):
    metrics = project / "outputs" / "wound" / "metrics"
    metrics.mkdir(parents=True)
    stale = [metrics / ".quality.json.k3x9a1.tmp", metrics / ".quality.json.tmp"]
    for path in stale:
        path.write_text("half a write")
    (metrics / ".prepared.abc.tmp").mkdir()  # a directory out's temporary
    kept = [metrics / ".other.json.k3x9a1.tmp", metrics / ".quality.json.notes", metrics / "quality.json.tmp"]
    for path in kept:
        path.write_text("not a temporary of these outs")
    with stage_run("evaluate_quality", "wound", Params(), {}, outs=[metrics / "quality.json", metrics / "prepared"]):
        assert not any(path.exists() for path in [*stale, metrics / ".prepared.abc.tmp"])
    assert all(path.exists() for path in kept)


# a stage's first contact with the store, at a given moment (after every process has imported mlflow)
FIRST_CONTACT = ("import sys, time; from pathlib import Path; import mlflow; "
                 "from fairaug.tracking.runs import configure_tracking; "
                 "time.sleep(max(0.0, float(sys.argv[1]) - time.time())); "
                 "configure_tracking(Path.cwd()); mlflow.search_experiments()")


def test_stages_starting_together_on_a_new_embedded_store_all_reach_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    start = str(time.time() + 10)
    processes = [subprocess.Popen([sys.executable, "-c", FIRST_CONTACT, start], cwd=tmp_path,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]  # fmt: skip
    errors = [process.communicate()[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, "\n".join(errors)
    assert mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()


def test_an_experiment_another_stage_creates_after_the_lookup_is_used(project, mlflow_uri, monkeypatch):
    """Experiments queued together look the experiment up at once; whichever creates it second gets
    RESOURCE_ALREADY_EXISTS from the store and must use the one the first created."""
    mlflow.set_tracking_uri(mlflow_uri)
    created_by_the_other = mlflow.create_experiment("fairaug/wound")
    lookup, lookups = mlflow.get_experiment_by_name, []

    def lookup_first_before_the_other_created_it(name):
        lookups.append(name)
        return None if len(lookups) == 1 else lookup(name)

    monkeypatch.setattr(mlflow, "get_experiment_by_name", lookup_first_before_the_other_created_it)
    assert ensure_experiment("fairaug/wound", project, embedded_store=False) == created_by_the_other
    assert len(mlflow.search_experiments(filter_string="name = 'fairaug/wound'")) == 1
    tags = mlflow.MlflowClient(mlflow_uri).get_experiment(created_by_the_other).tags
    assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


LOG_STAGE = """from pathlib import Path
from fairaug.config import load_params
from fairaug.tracking import stage_run
with stage_run("log", "toy", load_params("params.yaml"), {}, dvc_stage="log"):
    Path("logged.txt").write_text(str(Path.cwd()))
"""


def test_experiment_run_in_a_temporary_clone_logs_to_the_workspace_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    stage = {"cmd": "python log_run.py", "deps": ["log_run.py"], "params": ["train_classifier.seed"], "outs": ["logged.txt"]}
    workspace = dvc_repo(tmp_path / "workspace", {
        "params.yaml": render_params(Params()), "log_run.py": LOG_STAGE, ".gitignore": "mlflow.db*\nmlartifacts/\n",
        "dvc.yaml": yaml.safe_dump({"stages": {"log": stage}})})
    run(["dvc", "exp", "run", "--temp", "-n", "seed-7", "-S", "train_classifier.seed=7"], workspace)
    client = mlflow.MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    [logged] = client.search_runs([client.get_experiment_by_name("fairaug/toy").experiment_id])
    assert logged.data.tags[DVC_EXPERIMENT_TAG] == "seed-7"
    assert logged.info.artifact_uri.startswith((workspace / "mlartifacts").as_uri())
    assert not (workspace / "logged.txt").exists()  # the stage ran in the temporary clone
