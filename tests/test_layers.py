"""No upward imports: every fairaug package sits on a floor and imports only its own package and the
floors below (function-level imports included), like diffusers' models / schedulers / pipelines.

Floors, lowest first, and why each sits where it does:

    errors        the user-error type and its one-line exit: everything raises it
    io, images, progress, labels, stats, names
                  files written atomically, images read, progress bars, the data sets' label words, the
                  statistics both metric packages share (bootstrap, interval, report writer), metric
                  key names: leaves that import nothing of fairaug but errors
    skin          the Fitzpatrick types (values, names, unknown, within one type), ITA, the skin renderer:
                  everything that counts by FST needs them
    metrics_files flat metrics JSON with `.n` / `.ci_*` / reasons beside the value (per-FST names)
    config        pydantic params; labels and prompt templates are below it or in it, never above
    tracking      MLflow stage runs and lineage: stage code in every package above calls `stage_run`, so
                  it sits below them (data's prepare stage included); its run-reading helpers must not
                  import what they read; weights (fetch, check, and the files every loader requires
                  before loading) beside it
    data          readers, fixtures, validation, splits, manifests, and the synthetic set's shard storage
                  (read by fairness, metrics and the dashboard, written by generation)
    diffusion     base model, prompts, LoRA training, checkpoints, sampling
    fairness      the classifier (also the generate filter's and the quality evaluator's model), the mixed
                  data set, per-FST metrics
    metrics       quality metrics: extractors (the evaluator is a fairness classifier), FID/KID/SSIM/...
    generation    plan, sampler, filter: samples with diffusion, filters with the fairness classifier and
                  the metrics' SSIM and thumbnail neighbours
    registry      gates and promotion of LoRA checkpoints, on top of what every stage wrote; repro beside
                  it, which runs the pipeline's stages side by side (DVC) once the tracking store exists,
                  and results, which collects the quality and fairness numbers of DVC experiments
    cli           the command line, over everything

`pipelines/` and `dashboards/` are outside the package, on top; nothing in src/fairaug imports them.
Within a floor, packages do not import each other (peers stay independent). A new package or top-level
module fails here until it is given a floor.
"""

import ast
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "fairaug"
FLOORS: list[set[str]] = [
    {"errors"},
    {"io", "images", "progress", "labels", "stats", "names"},
    {"skin"},
    {"metrics_files"},
    {"config"},
    {"tracking", "weights"},
    {"data"},
    {"diffusion"},
    {"fairness"},
    {"metrics"},
    {"generation"},
    {"registry", "repro", "results"},
    {"cli"},
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}


def package_of(module: str) -> str | None:
    """``fairaug.data.fixtures`` -> ``data``; None for ``fairaug`` itself and non-fairaug modules."""
    parts = module.split(".")
    return parts[1] if parts[0] == "fairaug" and len(parts) > 1 else None


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str) -> list[tuple[str, int]]:
    """(imported module, line) of every import in ``path``, relative ones resolved."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            # `from fairaug import data` imports package `data`
            found += [(f"{name}.{alias.name}" if name == "fairaug" else name, node.lineno) for alias in node.names]
    return found


def import_graph(root: Path) -> list[tuple[str, str, int]]:
    """(importing module, imported fairaug module, line) for every module under ``root``."""
    return [(module_name(path, root), imported, line)
            for path in sorted(root.rglob("*.py"))
            for imported, line in imports(path, module_name(path, root))
            if imported.split(".")[0] == "fairaug"]  # fmt: skip


def violations(graph: list[tuple[str, str, int]], floor: dict[str, int] = FLOOR) -> list[str]:
    """One line per import of a package on the same floor or a higher one, and per unplaced package."""
    found = []
    for importer, imported, line in graph:
        low, high = package_of(importer), package_of(imported)
        if low is None or high is None or low == high:
            continue
        for name in (low, high):
            if name not in floor:
                found.append(f"{name}: no floor in tests/test_layers.py (imported by {importer}:{line})")
        if low in floor and high in floor and floor[high] >= floor[low]:
            direction = "a peer" if floor[high] == floor[low] else "a higher floor"
            found.append(f"{importer}:{line} imports {imported} ({low} -> {high}: {direction})")
    return sorted(set(found))


def test_every_module_is_on_a_floor():
    names = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
             if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").is_file()}  # fmt: skip
    assert names - FLOOR.keys() == set(), "give these a floor in FLOORS"
    assert FLOOR.keys() - names == set(), "FLOORS names modules that do not exist"


def test_no_package_imports_a_higher_floor():
    found = violations(import_graph(PACKAGE))
    assert not found, "upward imports:\n" + "\n".join(found)


def test_the_library_imports_neither_pipelines_nor_dashboards():
    found = [f"{module_name(path, PACKAGE)}:{line} imports {imported}" for path in sorted(PACKAGE.rglob("*.py"))
             for imported, line in imports(path, module_name(path, PACKAGE))
             if imported.split(".")[0] in ("pipelines", "dashboards")]  # fmt: skip
    assert not found, found


# The upward imports fairaug had before issue 16 (commit 62980b9), as this test would have reported them.
BEFORE = [
    ("fairaug.config.diffusion", "fairaug.diffusion.prompts"),  # prompt templates
    ("fairaug.config.models", "fairaug.data.labels"),  # label words (data <-> config: data -> config is down)
    ("fairaug.diffusion.sampling", "fairaug.metrics.functional"),  # within_one_type
    ("fairaug.metrics.extractors", "fairaug.generation.filter"),  # thumbnail_features (generation <-> metrics:
    ("fairaug.metrics.report", "fairaug.generation.filter"),  # generation -> metrics is down)
    ("fairaug.metrics.features", "fairaug.generation.storage"),  # shard storage
    ("fairaug.fairness.mix", "fairaug.generation.storage"),  # shard storage
    ("fairaug.metrics_files", "fairaug.data.labels"),  # FST values
    ("fairaug.tracking.tables", "fairaug.fairness.metrics"),  # metric_key
]


@pytest.mark.parametrize(("importer", "imported"), BEFORE)
def test_the_upward_imports_fairaug_had_are_caught(importer, imported):
    low, high = package_of(importer), package_of(imported)
    assert violations([(importer, imported, 1)]) == [f"{importer}:1 imports {imported} ({low} -> {high}: a higher floor)"]
    assert violations([(imported, importer, 1)]) == []  # the other way round is allowed


def test_peers_unplaced_packages_and_relative_imports(tmp_path):
    assert violations([("fairaug.io", "fairaug.images", 3)]) == [
        "fairaug.io:3 imports fairaug.images (io -> images: a peer)"]
    assert violations([("fairaug.plots", "fairaug.io", 1)]) == [
        "plots: no floor in tests/test_layers.py (imported by fairaug.plots:1)"]
    assert violations([("fairaug.data.fixtures", "fairaug.data.labels", 1), ("fairaug.cli", "fairaug.data", 2)]) == []
    root = tmp_path / "fairaug"
    (root / "skin").mkdir(parents=True)
    (root / "skin" / "__init__.py").write_text("from ..config import models\n")
    (root / "skin" / "ita.py").write_text("def f():\n    from fairaug import diffusion\n    from . import types\n")
    assert violations(import_graph(root)) == [
        "fairaug.skin.ita:2 imports fairaug.diffusion (skin -> diffusion: a higher floor)",
        "fairaug.skin:1 imports fairaug.config (skin -> config: a higher floor)",
    ]
