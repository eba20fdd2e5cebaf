"""Where a stage's inputs came from: git commit, DVC md5 of each dependency, the stage's deps."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path


def git_commit(root: Path) -> tuple[str, bool]:
    """(HEAD commit, whether tracked files differ from it); ("unknown", False) outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, bool(dirty)


def dvc_md5(path: Path) -> str:
    """The md5 DVC records for ``path`` in dvc.lock (``<md5>.dir`` for a directory)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem
    from dvc_objects.fs.memory import MemoryFileSystem

    staging = HashFileDB(MemoryFileSystem(), "/staging")  # dry run: nothing is written anywhere
    _, _, obj = build(staging, str(path), LocalFileSystem(), "md5", dry_run=True)
    return obj.hash_info.value


@functools.cache
def stage_deps(stage_name: str, root: Path) -> tuple[str, ...]:
    """The file and directory dependencies dvc.yaml declares for ``stage_name`` (e.g. ``prepare@ham10000``).

    Resolved by DVC's own resolver so that foreach/matrix interpolation comes out exactly as `dvc
    repro` resolves it, from dvc.yaml alone: collecting the stage would also parse dvc.lock, half a
    second of every stage process. Empty when there is no dvc.yaml or no such stage (a stage run by
    hand in a test). Params deps (a separate `params` key) are left out: the stage logs their values
    as MLflow params.
    """
    if not (root / "dvc.yaml").exists():
        return ()
    from dvc.dvcfile import ProjectFile
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            definition = ProjectFile(repo, str(root / "dvc.yaml")).resolver.resolve_one(stage_name)
    except DvcException:
        return ()
    return tuple(definition[stage_name].get("deps", []))
