"""dvc.yaml's code deps cannot drift from the code: each stage lists every fairaug module its
script imports, directly or through other modules (function-level imports included), so that a
change there reruns the stage. Left out on purpose, as dvc.yaml's header says: `fairaug.config`
(its values reach a stage as DVC params), `fairaug.tracking`, `fairaug.errors` and `fairaug.progress`
(MLflow logging, error lines and progress bars shape no output), and package `__init__` files (re-exports; the modules they
re-export are followed)."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT
from fairaug.config.fairness import ClassifierConfig

SRC = REPO_ROOT / "src"
NOT_DEPS = ("fairaug.config", "fairaug.tracking", "fairaug.errors", "fairaug.progress")
SCRIPT = re.compile(r"(pipelines/\w+\.py)")


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """fairaug modules named by any import in ``path`` (``from pkg import mod`` counts ``pkg.mod``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "fairaug" and module_file(name) is not None}


def code_deps(script: Path) -> set[str]:
    """Repository-relative files of every fairaug module the script runs, less the NOT_DEPS."""
    seen, todo = set(), list(imported_modules(script))
    while todo:
        name = todo.pop()
        if name in seen or name.startswith(NOT_DEPS):
            continue
        seen.add(name)
        todo += imported_modules(module_file(name))
    files = {module_file(name) for name in seen}
    return {path.relative_to(REPO_ROOT).as_posix() for path in files if path.name != "__init__.py"}


def stages() -> dict[str, dict]:
    definitions = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in definitions.items()}


@pytest.mark.parametrize("stage", sorted(stages()))
def test_stage_lists_the_code_it_runs(stage):
    definition = stages()[stage]
    script = SCRIPT.search(definition["cmd"]).group(1)
    listed = {dep.split("#")[0].strip() for dep in definition["deps"]}
    assert script in listed
    missing = code_deps(REPO_ROOT / script) - listed
    assert not missing, f"{stage}: dvc.yaml does not list {sorted(missing)}"
    unused = {dep for dep in listed if dep.startswith("src/")} - code_deps(REPO_ROOT / script)
    assert not unused, f"{stage}: dvc.yaml lists code the stage does not run: {sorted(unused)}"


def test_the_walk_follows_function_level_and_re_exported_imports(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from fairaug.generation.stage import generate_synthetic\n")
    deps = code_deps(script)
    assert "src/fairaug/generation/stage.py" in deps and "src/fairaug/data/storage.py" in deps
    assert "src/fairaug/diffusion/files.py" in deps  # through generation.sampler
    assert not any(dep.startswith(("src/fairaug/config/", "src/fairaug/tracking/")) for dep in deps)


@pytest.mark.parametrize(("stage", "other_seed"), [("train_classifier", "evaluator_seed"),
                                                   ("train_evaluator", "seed"),
                                                   ("train_classifier_augmented", "evaluator_seed")])
def test_classifier_stages_list_every_classifier_param_but_the_other_models_seed(stage, other_seed):
    """Key by key, so that a seed experiment keeps the evaluator and a new evaluator seed retrains
    nothing else; a param added to ClassifierConfig must join the lists."""
    listed = {param.removeprefix("train_classifier.") for param in stages()[stage]["params"]
              if param.startswith("train_classifier")}
    assert "train_classifier" not in stages()[stage]["params"]  # the whole section would be every key
    assert listed == set(ClassifierConfig.model_fields) - {other_seed}
