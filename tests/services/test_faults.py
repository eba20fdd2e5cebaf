"""Faults of a team-like setup (scripts/services.py's PostgreSQL + S3 + MLflow server):

- the tracking server stops during a stage: one line within 30 s, exit != 0, no DVC out or lock
  entry and no finished run; after a restart `dvc repro` completes with a run that has its lineage,
  and the run the stopped server left RUNNING is marked FAILED;
- the object store does not answer `dvc push`: a clear error, the cache and workspace intact;
- a stage killed mid-write leaves no out for DVC to cache, and a rerun completes, removes the
  temporary the killed write left beside the out and marks the killed run FAILED;
- a full disk, a read-only out directory or a file where it should be: one line, exit != 0, no
  traceback (the first two on a small tmpfs: skipped where mount is not allowed).
"""

import dataclasses
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from fairaug.tracking.runs import ABANDONED_TAG

from conftest import make_project, run, write_params

pytestmark = pytest.mark.slow
PREFIX = "faults"  # this module's experiments on the shared server
PREPARED, CLASSIFIER = "outputs/wound/prepared", "outputs/wound/classifier/real"


@pytest.fixture(scope="module")
def wound_template(tmp_path_factory, fixture_data) -> Path:
    """A small project (ci profile, the wound data alone) whose stages log under experiment prefix
    `faults`; made once, copied by each test."""
    root = make_project(tmp_path_factory.mktemp("faults") / "project", fixture_data, datasets=("wound",))
    run(["fairaug", "profile", "ci"], root)
    write_params(root, tracking={"experiment_prefix": PREFIX})
    run(["git", "commit", "-qam", "ci profile"], root)
    return root


@pytest.fixture
def wound_project(wound_template, tmp_path, services) -> Path:
    """This test's copy of the template, its stages logging to the shared server."""
    return Path(shutil.copytree(wound_template, tmp_path / "project", symlinks=True))


def locked_stages(root: Path) -> set[str]:
    lock = root / "dvc.lock"
    return set(yaml.safe_load(lock.read_text())["stages"]) if lock.exists() else set()


def one_line_error(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def stage_runs(client: MlflowClient, stage: str, status: str | None = None) -> list:
    experiment = client.get_experiment_by_name(f"{PREFIX}/wound")
    if experiment is None:
        return []
    query = f"tags.`fairaug.stage` = '{stage}'" + (f" AND attributes.status = '{status}'" if status else "")
    return client.search_runs([experiment.experiment_id], query)


def test_tracking_server_stopped_during_a_stage(wound_project, services, tmp_path):
    root = wound_project
    # a server of this test's own on the same database and bucket: stopping it leaves the shared one
    own = dataclasses.replace(services, state_dir=str(tmp_path), pg_data="", pids={}, mlflow_port=0)
    own.start_mlflow(workers=1)
    try:
        env = own.env
        run(["dvc", "repro", "prepare@wound"], root, env=env)
        shared = MlflowClient(services.tracking_uri)  # watches the same database
        stage = subprocess.Popen(["dvc", "repro", "train_classifier@wound-real"], cwd=root, text=True,
                                 start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env={**os.environ, **env})  # fmt: skip
        deadline = time.monotonic() + 300
        while not stage_runs(shared, "train_classifier", "RUNNING"):
            assert stage.poll() is None and time.monotonic() < deadline, stage.communicate()
            time.sleep(0.1)
        # the stage's run is open: pause the stage (dvc and its command), stop the server, go on
        os.killpg(stage.pid, signal.SIGSTOP)
        own.stop_mlflow()
        os.killpg(stage.pid, signal.SIGCONT)
        stopped = time.monotonic()
        stdout, stderr = stage.communicate(timeout=120)
        took = time.monotonic() - stopped
        assert stage.returncode != 0, stdout
        errors = one_line_error(stderr)
        assert len(errors) == 1 and "MLflow tracking" in errors[0] and own.tracking_uri in errors[0], stderr
        assert took < 30, f"{took:.0f} s from the server's stop to the stage's error"
        # nothing half-registered: no out, no lock entry, no finished run of the stage
        assert not (root / CLASSIFIER).exists()
        assert "train_classifier@wound-real" not in locked_stages(root)
        assert stage_runs(shared, "train_classifier", "FINISHED") == []
        (abandoned,) = stage_runs(shared, "train_classifier", "RUNNING")  # the stage could not close it

        own.start_mlflow(port=own.mlflow_port, workers=1)  # the same address again
        rerun = run(["dvc", "repro", "train_classifier@wound-real"], root, env=env)
        assert "Running stage 'train_classifier@wound-real'" in rerun.stdout
        # the rerun marked the run of the ended process FAILED: none is left RUNNING for ever
        assert stage_runs(shared, "train_classifier", "RUNNING") == []
        (failed,) = stage_runs(shared, "train_classifier", "FAILED")
        assert failed.info.run_id == abandoned.info.run_id and ABANDONED_TAG in failed.data.tags
        (finished,) = stage_runs(shared, "train_classifier", "FINISHED")
        (prepare,) = stage_runs(shared, "prepare", "FINISHED")
        assert finished.data.tags["fairaug.upstream.prepare"] == prepare.info.run_id
        assert "train_classifier@wound-real" in locked_stages(root)
    finally:
        own.stop_mlflow()


def test_object_store_unreachable_on_push(wound_project, services, tmp_path):
    root = wound_project
    env = services.env
    run(["dvc", "repro", "prepare@wound"], root, env=env)
    # the project's remote on an address where nothing listens (the shared store keeps running)
    from fairaug_services import configure_dvc_remote, free_port

    dead = dataclasses.replace(services, s3_port=free_port())
    configure_dvc_remote(root, dead)
    before = run(["dvc", "status", "--json"], root, env=env).stdout
    manifest = (root / PREPARED / "manifest.parquet").read_bytes()
    started = time.monotonic()
    push = run(["dvc", "push"], root, check=False, env=env)
    took = time.monotonic() - started
    assert push.returncode != 0
    assert "Traceback" not in push.stderr + push.stdout
    # DVC's own line names the endpoint it could not reach
    assert f"Could not connect to the endpoint URL: \"{dead.s3_endpoint}/" in push.stderr, push.stderr
    assert took < 60, f"dvc push took {took:.0f} s to give up"
    # nothing lost locally: the workspace and the cache are as they were
    assert (root / PREPARED / "manifest.parquet").read_bytes() == manifest
    assert run(["dvc", "status", "--json"], root, env=env).stdout == before
    shutil.rmtree(root / PREPARED)  # the cache still has it all
    run(["dvc", "checkout", "prepare@wound"], root, env=env)
    assert (root / PREPARED / "manifest.parquet").read_bytes() == manifest
    # and the live store takes the push
    configure_dvc_remote(root, services)
    assert run(["dvc", "push"], root, env=env).returncode == 0


def test_stage_killed_mid_write_leaves_no_out_dvc_would_cache(wound_project, services):
    root = wound_project
    stage = subprocess.Popen(["dvc", "repro", "prepare@wound"], cwd=root, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **services.env})  # fmt: skip
    deadline = time.monotonic() + 300
    # the stage writes into a temporary sibling of its out (.prepared.*.tmp) and renames it at the end
    while not list((root / "outputs" / "wound").glob(".prepared.*.tmp")):
        assert stage.poll() is None and time.monotonic() < deadline, "prepare ended before it was killed"
        time.sleep(0.05)
    os.killpg(stage.pid, signal.SIGKILL)
    stage.wait()
    assert not (root / PREPARED).exists()
    assert "prepare@wound" not in locked_stages(root)
    commit = run(["dvc", "commit", "-f", "prepare@wound"], root, check=False)
    assert commit.returncode != 0  # DVC has nothing to cache: the out does not exist
    assert list((root / "outputs" / "wound").glob(".prepared.*.tmp"))  # the killed write's, beside the out
    client = MlflowClient(services.tracking_uri)
    (killed,) = stage_runs(client, "prepare", "RUNNING")
    # a rerun completes with a whole out, removes the killed write's temporary and fails its run
    run(["dvc", "repro", "prepare@wound"], root, env=services.env)
    assert len(pd.read_parquet(root / PREPARED / "manifest.parquet")) > 0
    assert "prepare@wound" in locked_stages(root)
    assert list((root / "outputs").rglob("*.tmp")) == []
    assert stage_runs(client, "prepare", "RUNNING") == []
    assert killed.info.run_id in [r.info.run_id for r in stage_runs(client, "prepare", "FAILED")]


def test_file_where_the_out_directory_should_be_is_one_line(wound_project, services):
    root = wound_project
    (root / "outputs").mkdir()
    (root / "outputs" / "wound").write_text("not a directory\n")
    # DVC itself stops before the stage: its one line
    result = run(["dvc", "repro", "prepare@wound"], root, check=False, env=services.env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "ERROR: failed to reproduce 'prepare@wound': [Errno 20] Not a directory" in result.stderr, result.stderr
    assert "prepare@wound" not in locked_stages(root)
    # the stage alone (as `dvc repro` runs it when DVC has nothing to check first): its one line
    result = run(["python", "pipelines/prepare.py", "--dataset", "wound", "--out", PREPARED, "--base-train",
                  "outputs/base_train/wound.parquet"], root, check=False,
                 env=services.env)  # fmt: skip
    assert result.returncode != 0
    assert one_line_error(result.stderr) == ["error: outputs/wound is a file where a directory is expected"]


def mount_tmpfs(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")


def test_read_only_out_directory_is_one_line(wound_project, services):
    root = wound_project
    target = root / "outputs" / "wound"
    mount_tmpfs(target, "ro,size=64k")
    try:
        result = run(["dvc", "repro", "prepare@wound"], root, check=False, env=services.env)
        assert result.returncode != 0
        (line,) = one_line_error(result.stderr)
        assert "outputs/wound" in line and "Read-only file system" in line, line
        assert "prepare@wound" not in locked_stages(root)
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_disk_full_is_one_line(wound_project, services):
    root = wound_project
    target = root / "outputs" / "wound"
    mount_tmpfs(target, "size=64k")
    try:
        result = run(["dvc", "repro", "prepare@wound"], root, check=False, env=services.env)
        assert result.returncode != 0
        (line,) = one_line_error(result.stderr)
        assert "No space left on device" in line, line
        assert not (root / PREPARED).exists() and "prepare@wound" not in locked_stages(root)
    finally:
        subprocess.run(["umount", str(target)], check=False)
