"""`fairaug repro`: `dvc repro` with the pipeline's independent chains run side by side.

`dvc repro` runs one stage at a time. After the stages every data set shares (prepare, base_model),
each data set's stages form a chain of their own that ends in its `promote@<d>`. So this runs the
shared stages with one `dvc repro`, then each chain in a process of its own, up to ``jobs`` at a
time (DVC's documented parallel stage execution). A chain runs its stages one `dvc repro -s` at a
time, in order: a plain `dvc repro <end of chain>` would check the shared stages again, and two
processes checking one stage at once collide on DVC's lock of its outputs. Each process waits for
the repository lock (--wait-for-lock) when another one writes dvc.lock. Every chain process gets
cores / jobs OpenMP threads: torch's default of one thread per core in each would oversubscribe the
cores (bench/threads.py). Results equal a plain `dvc repro`'s up to float rounding (fewer threads
sum in another order), and a `dvc repro` afterwards has nothing to run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fairaug.errors import FairaugError

DOT_EDGE = re.compile(r'^"(?P<upstream>[^"]+)" -> "(?P<downstream>[^"]+)";$')
DOT_NODE = re.compile(r'^"(?P<node>[^"]+)";$')


@dataclass(frozen=True)
class Plan:
    """What to run: ``shared`` in one `dvc repro` first, then each chain (named by the pipeline's last
    stage, with its stages in the order they run: those upstream of it that are not shared) on its own."""

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
    """Chains end in the nodes nothing depends on. Shared: the nodes upstream of two chains or more,
    named by the last of them (those no other shared node depends on): `dvc repro` of those runs all."""
    downstream_of_some = {parent for parents in upstream.values() for parent in parents}
    ends = sorted(node for node in upstream if node not in downstream_of_some)
    lineage = {end: ancestors(end, upstream) | {end} for end in ends}
    shared = {node for node in upstream if sum(node in nodes for nodes in lineage.values()) > 1}
    upstream_of_shared = set().union(*(ancestors(node, upstream) for node in shared))
    return Plan(shared=sorted(shared - upstream_of_shared),
                chains={end: in_order(lineage[end] - shared - upstream_of_shared, upstream) for end in ends})


def chain_label(chain: str) -> str:
    """The prefix of a chain's output lines: its data set for a `<stage>@<dataset>` stage."""
    return chain.rsplit("@", 1)[-1]


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


def chain_threads(jobs: int, cores: int | None = None) -> int:
    """OpenMP threads of each chain process: the cores shared out between the processes running at once."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // jobs)


def repro(project: Path, jobs: int, write: Callable[[str], None] = print) -> list[str]:
    """Run the pipeline of ``project`` as the module docstring says; returns the chains that failed."""
    dvc = dvc_executable()
    dot = subprocess.run([dvc, "dag", "--dot"], cwd=project, capture_output=True, text=True)
    if dot.returncode != 0:
        raise FairaugError(f"dvc dag failed in {project}: {dot.stderr.strip() or dot.stdout.strip()}")
    plan = plan_chains(parse_dag(dot.stdout))
    if plan.shared:
        write(f"fairaug repro: shared stages first ({', '.join(plan.shared)})")
        shared = subprocess.run([dvc, "repro", *plan.shared], cwd=project)
        if shared.returncode != 0:
            return plan.shared
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(chain_threads(min(jobs, len(plan.chains)))))
    write(f"fairaug repro: {len(plan.chains)} chains, {jobs} at a time, {env['OMP_NUM_THREADS']} OpenMP "
          f"thread(s) each: {', '.join(plan.chains)}")  # fmt: skip
    lock = threading.Lock()

    def write_line(line: str) -> None:
        with lock:
            write(line)

    def run_chain(end: str) -> int:
        for stage in plan.chains[end]:
            command = [dvc, "--wait-for-lock", "repro", "--single-item", stage]
            if code := run_prefixed(command, chain_label(end), env, project, write_line):
                return code
        return 0

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        codes = dict(zip(plan.chains, pool.map(run_chain, plan.chains), strict=True))
    return [end for end, code in codes.items() if code != 0]
