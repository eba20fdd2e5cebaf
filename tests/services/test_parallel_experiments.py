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


def queue_states(root, env) -> dict[str, str]:
    """Experiment name -> the state column of `dvc queue status` (Queued, Running, Success, Failed, ...)."""
    lines = run(["dvc", "queue", "status"], root, env=env).stdout.splitlines()
    return {line.split()[1]: line.split()[-1] for line in lines[1:]
            if line.strip() and not line.startswith(("Worker", "No worker", "No experiments"))}  # fmt: skip


def queue_and_run(root, env, seeds) -> dict[str, str]:
    """Queue one experiment per split seed and run them two at a time; the queue's final states."""
    for seed in seeds:
        run(["dvc", "exp", "run", "--queue", "-n", f"seed-{seed}", "-S", f"prepare.seed={seed}",
             "train_classifier@wound-real"], root, env=env)  # fmt: skip
    started = time.monotonic()
    run(["dvc", "queue", "start", "-j", "2"], root, env=env)
    while (states := queue_states(root, env)) and {"Queued", "Running"} & set(states.values()):
        assert time.monotonic() - started < QUEUE_TIMEOUT_S, states
        time.sleep(5)
    return states


def failed_logs(root, env, states: dict[str, str]) -> str:
    """The states, then the log of every experiment that failed."""
    failed = [name for name, state in states.items() if state == "Failed"]
    logs = [run(["dvc", "queue", "logs", name], root, check=False, env=env) for name in failed]
    return "\n".join([str(states), *(f"{name}: {log.stdout[-3000:]}{log.stderr[-2000:]}"
                                      for name, log in zip(failed, logs, strict=True))])


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
    states = queue_and_run(root, env, SEEDS)
    # DVC's queue workers race each other (treeverse/dvc#10673, #8763): with -j 2 a task now and then
    # fails in DVC's own bookkeeping, outside any stage. Such a task is queued once more (what a user
    # does); a stage that failed (DVC: "failed to reproduce") fails the test.
    if failed := [name for name, state in states.items() if state == "Failed"]:
        logs = failed_logs(root, env, states)
        assert "failed to reproduce" not in logs, logs
        print(f"re-queued after DVC's worker race: {logs}")
        run(["dvc", "queue", "remove", "--failed"], root, env=env)
        states = queue_and_run(root, env, [int(name.removeprefix("seed-")) for name in failed])
    assert sorted(states) == [f"seed-{seed}" for seed in SEEDS] and set(states.values()) == {"Success"}, \
        failed_logs(root, env, states)

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
