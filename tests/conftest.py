"""Shared fixtures: one valid project copied per test into tmp_path, fixture data made once per session,
and a temporary MLflow store. Tests never touch the user's mlflow.db, data/ or home directory."""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
# Two xdist workers (and the stages they start) share the cores: one OpenMP thread per process. With
# torch's default of one per core, concurrent processes oversubscribe them and spin (bench/threads.py:
# 28x slower). A pipeline runs one stage at a time and keeps the default, faster for a process alone.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)
# the venv's console scripts (dvc, fairaug) even when pytest is started as .venv/bin/python -m pytest
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["params.yaml", "dvc.yaml", ".dvcignore", "pipelines", "profiles", "src"]
DERM_N, WOUND_N = 160, 90


def scheduling_unit(nodeid: str) -> str:
    """What one xdist worker runs as a whole: a test file, or a test directory with a conftest.py of
    its own (its session fixtures, such as the dashboards' seeded store, are then built once)."""
    path = nodeid.split("::", 1)[0]
    folder = posixpath.dirname(path)
    return folder if folder != "tests" and (REPO_ROOT / folder / "conftest.py").exists() else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`pytest -n N`: whole units per worker (`scheduling_unit`), so that a module fixture (a trained
    LoRA, a generated set) is built once, not once on each worker that runs some of its tests."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scheduling_unit(nodeid)

    return UnitScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Under xdist, the longest units first, so that the workers finish together: the e2e test (about
    13 minutes alone on one worker), then units with slow tests, then the rest, each group in collection
    order (`make test` passes --no-loadscope-reorder, which keeps this order)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank: dict[str, int] = {}
    for item in items:
        unit = scheduling_unit(item.nodeid)
        own = 0 if item.get_closest_marker("e2e") else 1 if item.get_closest_marker("slow") else 2
        rank[unit] = min(rank.get(unit, 2), own)
    items.sort(key=lambda item: rank[scheduling_unit(item.nodeid)])  # stable: a unit's tests stay together


@pytest.fixture(autouse=True)
def _no_tracking_uri_leak(monkeypatch):
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: never let one test's store leak into the next."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def fixture_data(tmp_path_factory) -> Path:
    """Small derm (HAM10000 layout) and wound (CSV layout) fixture data sets, made once."""
    from fairaug.data.fixtures import write_derm_fixture, write_wound_fixture

    root = tmp_path_factory.mktemp("fixture-data")
    write_derm_fixture(root / "ham10000", n=DERM_N, seed=0)
    write_wound_fixture(root / "wound", n=WOUND_N, seed=1, layout="csv")
    return root


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """An untrained tiny Stable Diffusion pipeline directory (base.json included) for derm prompts."""
    from fairaug.config import Params
    from fairaug.config.diffusion import BaseConfig
    from fairaug.diffusion.base import build_tiny_pipeline, save_tiny_base
    from fairaug.diffusion.prompts import all_prompts
    from fairaug.diffusion.tokenizer import build_tokenizer

    out = tmp_path_factory.mktemp("base")
    tokenizer = build_tokenizer(all_prompts(Params().prompts.templates, {"derm": ["mel", "nv"]}))
    save_tiny_base(build_tiny_pipeline(BaseConfig(), tokenizer), out)
    return out


@pytest.fixture
def derm_copy(fixture_data, tmp_path) -> Path:
    """A private copy of the derm fixture that a test may break."""
    return Path(shutil.copytree(fixture_data / "ham10000", tmp_path / "ham10000"))


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch) -> str:
    """A temporary MLflow store for this test."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def training_sets(monkeypatch) -> list:
    """The data sets the classifier trains on, in the order fairness.training makes their shuffled loaders."""
    from fairaug.fairness import training

    sets = []
    make_loader = training.make_loader

    def spy(dataset, config, shuffle=False):
        if shuffle:
            sets.append(dataset)
        return make_loader(dataset, config, shuffle)

    monkeypatch.setattr(training, "make_loader", spy)
    return sets


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def make_project(root: Path, fixture_data: Path, datasets: tuple[str, ...] = ()) -> Path:
    """A copy of this project (params, dvc.yaml, stages, code) with the small fixture data under data/
    (only ``datasets``' when given), in its own git + DVC repo; its split holds no per-FST minimum."""
    root.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, root / name)
    if datasets:
        for name in datasets:
            shutil.copytree(fixture_data / name, root / "data" / name)
    else:
        shutil.copytree(fixture_data, root / "data")
    # the tiny profile's 30 test images per FST need its 1500-image fixtures, not these small ones
    write_params(root, prepare={"split": {"min_test_per_fst": None}})
    return dvc_repo(root, {".gitignore": "/data\n/outputs\nmlflow.db*\nmlartifacts/\n"})


def dvc_repo(root: Path, files: Mapping[str, str] | None = None) -> Path:
    """A git + DVC repository at ``root``; with ``files`` (relative path -> text), they are written
    and everything under ``root`` is committed."""
    root.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "test"], root)
    run(["dvc", "init", "-q"], root)
    if files is not None:
        for name, text in files.items():
            (root / name).write_text(text)
        run(["git", "add", "-A"], root)
        run(["git", "commit", "-qm", "toy"], root)
    return root


def write_params(root: Path, **sections) -> None:
    """Rewrite a project copy's params.yaml with ``sections`` deep-merged in (tiny limits), validated."""
    from fairaug.config import load_params, render_params
    from fairaug.config.loader import merge_overlay, params_from_dict

    params = load_params(root / "params.yaml")
    updated = params_from_dict(merge_overlay(params.model_dump(mode="json"), sections))
    (root / "params.yaml").write_text(render_params(updated))


@pytest.fixture
def project(tmp_path, fixture_data, monkeypatch) -> Path:
    """make_project in tmp_path, as the working directory."""
    root = make_project(tmp_path / "project", fixture_data)
    monkeypatch.chdir(root)
    return root


def load_services_module():
    """scripts/services.py (PostgreSQL + S3 + MLflow server on 127.0.0.1) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fairaug_services", REPO_ROOT / "scripts" / "services.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    """PostgreSQL, an S3 object store (moto) and an MLflow server on them (scripts/services.py), started
    once per test run and shared by the xdist workers (pytest-xdist's pattern: a lock in the run's
    common temp directory): the first worker that needs them starts them, the last one done stops
    them. Tests that share it keep apart by their experiment prefix (params
    tracking.experiment_prefix); `.env` holds the variables."""
    from filelock import FileLock

    module = load_services_module()
    common = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        common = common.parent  # the controller's basetemp, parent of every worker's
    lock, users = FileLock(common / "services.lock"), common / "services.users"
    with lock:
        count = int(users.read_text()) if users.exists() else 0
        started = module.Services.load(common / "services") if count else module.start(common / "services")
        users.write_text(str(count + 1))
    yield started
    with lock:
        count = int(users.read_text()) - 1
        users.write_text(str(count))
        if count == 0:
            started.stop()
