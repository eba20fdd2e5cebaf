"""`fairaug repro` on a small DVC project shaped like the pipeline: a stage per data set, a stage
shared by both, then a chain per data set. Real DVC, stages that write files and record when they ran."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import yaml

from fairaug.repro import Plan, parse_dag, plan_chains, run_stages, side_by_side_threads

from conftest import dvc_repo, run

pytestmark = pytest.mark.slow
# each stage records its OpenMP threads and when it started and ended; prepare and train sleep, so
# that two of them run at once only if they overlap
STAGE = ("python -c \"import json, os, sys, time; start = time.time(); time.sleep(float(sys.argv[2])); "
         "json.dump({'omp': os.environ.get('OMP_NUM_THREADS'), 'start': start, 'end': time.time()}, "
         "open(sys.argv[1], 'w')); sys.exit(int(sys.argv[3]))\"")


def write_pipeline(project, train_exit_codes: dict[str, int]) -> None:
    """dvc.yaml: prepare@a/b, base (shared), then train@<d> (exiting with its code) and promote@<d>."""
    stages = {
        "prepare": {"foreach": ["a", "b"], "do": {"cmd": f"{STAGE} prepared_${{item}}.json 2 0",
                                                  "outs": ["prepared_${item}.json"]}},
        "base": {"cmd": f"{STAGE} base.json 0 0", "deps": ["prepared_a.json", "prepared_b.json"],
                 "outs": ["base.json"]},
        "train": {"foreach": train_exit_codes, "do": {
            "cmd": f"{STAGE} trained_${{key}}.json 3 ${{item}}", "deps": ["base.json", "prepared_${key}.json"],
            "outs": ["trained_${key}.json"]}},
        "promote": {"foreach": ["a", "b"], "do": {"cmd": f"{STAGE} promoted_${{item}}.json 0 0",
                                                  "deps": ["trained_${item}.json"], "outs": ["promoted_${item}.json"]}},
    }
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))


@pytest.fixture
def dvc_project(tmp_path):
    dvc_repo(tmp_path)
    write_pipeline(tmp_path, {"a": 0, "b": 0})
    return tmp_path


def record(project, name: str) -> dict:
    return json.loads((project / name).read_text())


def test_plan_runs_the_shared_stages_then_one_chain_per_data_set(dvc_project):
    upstream = parse_dag(run(["dvc", "dag", "--dot"], dvc_project).stdout)
    assert upstream["train@a"] == {"base", "prepare@a"} and upstream["prepare@b"] == set()
    assert plan_chains(upstream) == Plan(
        upstream=["prepare@a", "prepare@b"], shared=["base"],
        chains={"promote@a": ["train@a", "promote@a"], "promote@b": ["train@b", "promote@b"]})


def test_plan_of_independent_chains_has_nothing_shared():
    upstream = {"x": set(), "y": {"x"}, "z": set()}
    assert plan_chains(upstream) == Plan(upstream=[], shared=[], chains={"y": ["x", "y"], "z": ["z"]})


def test_plan_orders_each_chain_upstream_first():
    # d <- c <- a, d <- b <- a, e <- d; f <- a: "a" is shared, the chain of "e" runs b and c before d
    upstream = {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "c"}, "e": {"d"}, "f": {"a"}}
    assert plan_chains(upstream) == Plan(upstream=[], shared=["a"], chains={"e": ["b", "c", "d", "e"], "f": ["f"]})


class Launches:
    """A stand-in for `dvc repro -s`: records when each stage ran, fails the stages in ``failing``."""

    def __init__(self, failing=()):
        self.failing, self.spans, self.running, self.most = set(failing), {}, 0, 0
        self.lock = threading.Lock()

    def __call__(self, stage: str) -> int:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        start = time.monotonic()
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
            self.spans[stage] = (start, time.monotonic())
        return 1 if stage in self.failing else 0


# "e" after b and c, both after a; "z" after y
PARENTS = {"a": set(), "b": {"a"}, "c": {"a"}, "e": {"b", "c"}, "y": set(), "z": {"y"}}


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_run_stages_starts_a_stage_once_its_upstream_is_done_and_at_most_jobs_at_once(jobs):
    launches = Launches()
    assert run_stages(PARENTS, jobs, launches) == ([], [])
    assert sorted(launches.spans) == sorted(PARENTS)
    for stage, (start, _) in launches.spans.items():
        for parent in PARENTS[stage]:
            assert launches.spans[parent][1] <= start, f"{stage} started before {parent} ended"
    assert launches.most == jobs  # a and y are ready at once, then b, c and z


def test_run_stages_skips_what_a_failed_stage_feeds_and_finishes_the_rest():
    launches = Launches(failing={"a"})
    assert run_stages(PARENTS, 2, launches) == (["a"], ["b", "c", "e"])
    assert sorted(launches.spans) == ["a", "y", "z"]


@pytest.mark.parametrize(("jobs", "cores", "threads"), [(2, 2, 1), (2, 16, 8), (3, 16, 5), (4, 2, 1), (1, 2, 2)])
def test_side_by_side_threads_share_out_the_cores(jobs, cores, threads):
    assert side_by_side_threads(jobs, cores) == threads


def test_repro_runs_chains_side_by_side_and_leaves_nothing_to_run(dvc_project, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    result = run(["fairaug", "repro", "--jobs", "2"], dvc_project)
    a, b = record(dvc_project, "trained_a.json"), record(dvc_project, "trained_b.json")
    assert a["start"] < b["end"] and b["start"] < a["end"], "the two chains ran one after the other"
    assert a["omp"] == b["omp"] == str(side_by_side_threads(2))
    prepared_a, prepared_b, base = (record(dvc_project, f"{name}.json")
                                    for name in ("prepared_a", "prepared_b", "base"))
    assert prepared_a["start"] < prepared_b["end"] and prepared_b["start"] < prepared_a["end"]
    assert prepared_a["omp"] == str(side_by_side_threads(2))
    assert base["omp"] is None  # the last shared stage runs alone, with torch's default: every core
    assert max(prepared_a["end"], prepared_b["end"]) <= base["start"] and base["end"] <= min(a["start"], b["start"])
    assert "[a] Running stage 'train@a'" in result.stdout and "[b] Running stage 'promote@b'" in result.stdout
    again = run(["dvc", "repro"], dvc_project)  # dvc.lock, written by both chains, holds every stage
    assert "Data and pipelines are up to date." in again.stdout


def test_repro_with_one_job_runs_the_chains_in_turn(dvc_project):
    run(["fairaug", "repro", "--jobs", "1"], dvc_project)
    a, b = record(dvc_project, "trained_a.json"), record(dvc_project, "trained_b.json")
    assert a["end"] <= b["start"]


def test_a_failing_chain_fails_repro_and_the_other_chain_finishes(dvc_project):
    write_pipeline(dvc_project, {"a": 0, "b": 3})
    result = run(["fairaug", "repro"], dvc_project, check=False)
    assert result.returncode == 1
    assert "failed: train@b" in result.stderr and "not run: promote@b" in result.stderr
    assert "[b] ERROR: failed to reproduce 'train@b'" in result.stdout
    assert (dvc_project / "promoted_a.json").exists() and not (dvc_project / "promoted_b.json").exists()


def test_repro_outside_a_dvc_project_is_one_clear_error(tmp_path):
    result = run(["fairaug", "repro"], tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: dvc dag failed in .") and "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []
