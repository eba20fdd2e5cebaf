"""`fairaug repro`: `dvc repro` with the pipeline's independent stages run side by side.

`dvc repro` runs one stage at a time. But every data set's stages form a chain of their own, ending
in its `promote@<d>`, once the stages all chains share (base_model) are done; and what the shared
stages need (each data set's prepare) is independent too. So this runs those side by side, then the
last shared stages alone with every core, then the stages of the chains side by side: each stage in
a `dvc repro --single-item` process of its own as soon as the stages upstream of it are done, up to
``jobs`` at a time (DVC's documented parallel stage execution). Single items: a `dvc repro <end of
chain>` would check the shared stages again, and two processes checking one stage at once collide on
DVC's lock of its outputs. Each process waits for the repository lock (--wait-for-lock) while
another one writes dvc.lock. Stages side by side get cores / jobs OpenMP threads: torch's default of
one thread per core in each would oversubscribe the cores (bench/threads.py). A `dvc repro`
afterwards has nothing to run. Results equal a plain `dvc repro`'s up to float rounding (fewer
threads sum in another order).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from fairaug.errors import FairaugError

DOT_EDGE = re.compile(r'^"(?P<upstream>[^"]+)" -> "(?P<downstream>[^"]+)";$')
DOT_NODE = re.compile(r'^"(?P<node>[^"]+)";$')


@dataclass(frozen=True)
class Plan:
    """What to run, in turn: ``upstream``, the stages the shared ones need (each data set's prepare),
    side by side; ``shared``, the last of the stages every chain needs (base_model), alone with every
    core; then the stages of each chain (named by its last stage, its stages upstream first) side by side."""

    upstream: list[str]
    shared: list[str]
    chains: dict[str, list[str]]


def parse_dag(dot: str) -> dict[str, set[str]]:
    """Each node of `dvc dag --dot` output (stages and .dvc files) -> the nodes directly upstream of it."""
    upstream: dict[str, set[str]] = {}
    for line in dot.splitlines():
        if edge := DOT_EDGE.match(line.strip()):
            upstream.setdefault(edge["upstream"], set())
            upstream.setdefault(edge["downstream"], set()).add(edge["upstream"])
        elif node := DOT_NODE.match(line.strip()):
            upstream.setdefault(node["node"], set())
    return upstream


def ancestors(node: str, upstream: Mapping[str, set[str]]) -> set[str]:
    found, todo = set(), list(upstream[node])
    while todo:
        if (parent := todo.pop()) not in found:
            found.add(parent)
            todo.extend(upstream[parent])
    return found


def in_order(nodes: set[str], upstream: Mapping[str, set[str]]) -> list[str]:
    """``nodes`` with each one after those of them upstream of it (ties by name)."""
    done: list[str] = []
    while len(done) < len(nodes):
        done.append(min(node for node in nodes - set(done) if not (upstream[node] & nodes) - set(done)))
    return done


def plan_chains(upstream: Mapping[str, set[str]]) -> Plan:
    """Chains end in the nodes nothing depends on. Shared: the nodes upstream of two chains or more;
    those no other shared node depends on run alone, those upstream of them first."""
    downstream_of_some = {parent for parents in upstream.values() for parent in parents}
    ends = sorted(node for node in upstream if node not in downstream_of_some)
    lineage = {end: ancestors(end, upstream) | {end} for end in ends}
    shared = {node for node in upstream if sum(node in nodes for nodes in lineage.values()) > 1}
    upstream_of_shared = set().union(*(ancestors(node, upstream) for node in shared))
    return Plan(upstream=in_order(upstream_of_shared, upstream), shared=sorted(shared - upstream_of_shared),
                chains={end: in_order(lineage[end] - shared - upstream_of_shared, upstream) for end in ends})


def chain_label(name: str) -> str:
    """The prefix of the output lines of a chain (named by its last stage) or a stage run side by
    side: the data set of a `<stage>@<dataset>` name."""
    return name.rsplit("@", 1)[-1]


def dvc_executable() -> str:
    if (dvc := shutil.which("dvc")) is None:
        raise FairaugError("dvc not found on PATH (make setup installs it into .venv/bin)")
    return dvc


def run_prefixed(command: list[str], label: str, env: Mapping[str, str], cwd: Path,
                 write: Callable[[str], None]) -> int:  # fmt: skip
    """Run ``command``, passing each line of its output (stdout and stderr) to ``write`` as `[label] line`."""
    with subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as process:  # fmt: skip
        for line in process.stdout:
            write(f"[{label}] {line.rstrip()}")
    return process.returncode


def side_by_side_threads(jobs: int, cores: int | None = None) -> int:
    """OpenMP threads of a stage run side by side: the cores shared out between the processes running at once."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // jobs)


def run_stages(parents: Mapping[str, set[str]], jobs: int, launch: Callable[[str], int]) -> tuple[list[str], list[str]]:
    """Run every stage of ``parents`` (stage -> the stages of ``parents`` upstream of it) as soon as
    those upstream of it are done, up to ``jobs`` at a time, those with the most stages downstream
    first: when one chain is done, the other's independent stages (its evaluator and its augmented
    classifier) share the cores. ``launch`` runs a stage and returns its exit code. Returns the
    stages that failed and those never started because a stage upstream of them failed."""
    waiting = {stage: set(upstream) for stage, upstream in parents.items()}
    lineage = {stage: ancestors(stage, parents) for stage in parents}
    below = {stage: sum(stage in upstream for upstream in lineage.values()) for stage in parents}
    done: set[str] = set()
    failed: list[str] = []
    running: dict = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while True:
            ready = sorted((stage for stage, upstream in waiting.items() if upstream <= done),
                           key=lambda stage: (-below[stage], stage))
            for stage in ready[: jobs - len(running)]:
                del waiting[stage]
                running[pool.submit(launch, stage)] = stage
            if not running:
                return failed, sorted(waiting)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                stage = running.pop(future)
                (done.add if future.result() == 0 else failed.append)(stage)


def repro(project: Path, jobs: int, write: Callable[[str], None] = print) -> tuple[list[str], list[str]]:
    """Run the pipeline of ``project`` as the module docstring says; returns the stages that failed
    and those not run because of them."""
    dvc = dvc_executable()
    dot = subprocess.run([dvc, "dag", "--dot"], cwd=project, capture_output=True, text=True)
    if dot.returncode != 0:
        raise FairaugError(f"dvc dag failed in {project}: {dot.stderr.strip() or dot.stdout.strip()}")
    upstream = parse_dag(dot.stdout)
    plan = plan_chains(upstream)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(side_by_side_threads(jobs)))
    label = {stage: chain_label(stage) for stage in plan.upstream}
    label |= {stage: chain_label(end) for end, stages in plan.chains.items() for stage in stages}
    lock = threading.Lock()

    def write_line(line: str) -> None:
        with lock:
            write(line)

    def launch(stage: str) -> int:
        command = [dvc, "--wait-for-lock", "repro", "--single-item", stage]
        return run_prefixed(command, label[stage], env, project, write_line)

    def side_by_side(stages: list[str]) -> tuple[list[str], list[str]]:
        return run_stages({stage: upstream[stage] & set(stages) for stage in stages}, jobs, launch)

    chain_stages = [stage for stages in plan.chains.values() for stage in stages]
    write(f"fairaug repro: {jobs} stages at a time, {env['OMP_NUM_THREADS']} OpenMP thread(s) each, but for "
          f"{', '.join(plan.shared) or 'none'} (alone, every core); chains: {', '.join(plan.chains)}")  # fmt: skip
    failed, not_run = side_by_side(plan.upstream)
    if failed:
        return failed, not_run + plan.shared + chain_stages
    if plan.shared and subprocess.run([dvc, "repro", "--single-item", *plan.shared], cwd=project).returncode:
        return plan.shared, chain_stages
    return side_by_side(chain_stages)
