"""Four queued DVC experiments (different split seeds), two at a time (`dvc queue start -j 2`), against
one MLflow server on PostgreSQL: four complete sets of stage runs, none lost, failed or mixed up (each
run's lineage tag points at the run of its own experiment), and `dvc exp show` lists all four.

Cheap chain: prepare@wound -> train_classifier@wound-real in the ci profile on the small fixture."""

import json
import time

import pytest
from mlflow import MlflowClient

from conftest import make_project, run, write_params

pytestmark = pytest.mark.slow
SEEDS = (1, 2, 3, 4)
PREFIX = "exps"  # this test's experiments on the shared server
PREPARED, CLASSIFIER = "outputs/wound/prepared", "outputs/wound/classifier/real"
QUEUE_TIMEOUT_S = 900


def queue_states(root, env) -> list[str]:
    """The state column of `dvc queue status` (Queued, Running, Success, Failed, ...)."""
    lines = run(["dvc", "queue", "status"], root, env=env).stdout.splitlines()
    return [line.split()[-1] for line in lines[1:]
            if line.strip() and not line.startswith(("Worker", "No worker", "No experiments"))]  # fmt: skip


def dvc_project_with_tracked_data(root, fixture_data):
    """make_project with the wound data alone, in DVC (queued experiments run in temporary clones:
    data must come from git or the DVC cache)."""
    make_project(root, fixture_data, datasets=("wound",))
    run(["fairaug", "profile", "ci"], root)
    write_params(root, tracking={"experiment_prefix": PREFIX}, train_classifier={"epochs": 1})
    (root / ".gitignore").write_text("/outputs\nmlflow.db\nmlartifacts/\n")
    run(["dvc", "add", "-q", "data/wound"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "ci profile, data in DVC"], root)
    return root


def exp_show(root, env) -> dict[int, dict]:
    """`dvc exp show --json`: seed -> {name, outs: {path: md5}} for each experiment of the baseline."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env=env).stdout)
    experiments = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for revision in exp["revs"]:
                data = revision["data"]
                seed = data["params"]["params.yaml"]["data"]["prepare"]["seed"]
                outs = {path: out["hash"] for path, out in (data.get("outs") or {}).items()}
                experiments[seed] = {"name": revision.get("name") or exp.get("name"), "outs": outs}
    return experiments


def test_four_queued_experiments_run_two_at_a_time_against_one_server(tmp_path, fixture_data, services):
    root = dvc_project_with_tracked_data(tmp_path / "project", fixture_data)
    env = services.env
    for seed in SEEDS:
        run(["dvc", "exp", "run", "--queue", "-n", f"seed-{seed}", "-S", f"prepare.seed={seed}",
             "train_classifier@wound-real"], root, env=env)  # fmt: skip
    started = time.monotonic()
    run(["dvc", "queue", "start", "-j", "2"], root, env=env)
    while (states := queue_states(root, env)) and any(s in ("Queued", "Running") for s in states):
        assert time.monotonic() - started < QUEUE_TIMEOUT_S, states
        time.sleep(5)
    assert states == ["Success"] * len(SEEDS), run(["dvc", "queue", "status"], root, env=env).stdout

    experiments = exp_show(root, env)
    assert sorted(experiments) == list(SEEDS), experiments
    assert sorted(e["name"] for e in experiments.values()) == [f"seed-{seed}" for seed in SEEDS]
    assert len({e["outs"][PREPARED] for e in experiments.values()}) == len(SEEDS)  # the seeds split apart

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(f"{PREFIX}/wound")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    prepares = [r for r in runs if r.data.tags["fairaug.stage"] == "prepare"]
    classifiers = [r for r in runs if r.data.tags["fairaug.stage"] == "train_classifier"]
    assert len(prepares) == len(classifiers) == len(SEEDS) and len(runs) == 2 * len(SEEDS)  # four complete sets, no extra run
    for seed, exp in experiments.items():
        # the prepare run of this experiment: its params and the bytes DVC recorded for it
        (prepare,) = [r for r in prepares if r.data.tags[f"dvc.out_md5.{PREPARED}"] == exp["outs"][PREPARED]]
        assert prepare.data.params["prepare.seed"] == str(seed)
        (classifier,) = [r for r in classifiers if r.data.tags[f"dvc.out_md5.{CLASSIFIER}"] == exp["outs"][CLASSIFIER]]
        # lineage within the experiment: the classifier read this experiment's split, and says so
        assert classifier.data.tags[f"dvc.md5.{PREPARED}"] == exp["outs"][PREPARED]
        assert classifier.data.tags["fairaug.upstream.prepare"] == prepare.info.run_id
        assert classifier.data.tags["fairaug.variant"] == "real"
