"""Atomic file and directory writes (a killed process never leaves a half-written output behind), file
digests, and the containment check of paths read from a manifest."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from fairaug.errors import DataError


# Every temporary a write makes is named `.<name>[.<random>].tmp`, beside what it becomes: a write
# killed half way leaves one, which `remove_stale_temps` recognises and removes when the stage reruns.
TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"


def temp_path(path: str | os.PathLike) -> Path:
    """The fixed temporary name of ``path`` (``.<name>.tmp`` beside it), for writers that are the only
    ones writing ``path`` (a checkpoint, a shard, a safetensors file)."""
    path = Path(path)
    return path.with_name(f"{TEMP_PREFIX}{path.name}{TEMP_SUFFIX}")


def remove_stale_temps(path: str | os.PathLike, *, inside: bool = False) -> list[Path]:
    """Remove what interrupted writes of ``path`` left: its temporaries beside it (``.<name>.tmp``,
    ``.<name>.<random>.tmp``) and, with ``inside``, every temporary anywhere in the directory ``path``
    (a DVC `persist` out, which a rerun writes into instead of replacing). Only for a place no other
    process is writing to.

    Returns:
        The paths removed.
    """
    path = Path(path)
    beside = path.parent.glob(f"{TEMP_PREFIX}{glob.escape(path.name)}.*") if path.parent.is_dir() else []
    stale = [p for p in beside if p.name.endswith(TEMP_SUFFIX)]
    if inside and path.is_dir():
        stale += path.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}")
    stale = sorted(stale)
    for temp in stale:
        if temp.is_dir() and not temp.is_symlink():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
    return stale


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; outputs are ordinary shared files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def path_escape(root: Path, relative_path: str, root_name: str = "data set root") -> str | None:
    """Why ``relative_path`` (from a manifest) would read outside ``root``: it is absolute, climbs out
    with '..', or leads out through a symbolic link. None when it stays inside."""
    normalized = posixpath.normpath(relative_path.replace("\\", "/"))
    if posixpath.isabs(normalized) or normalized == ".." or normalized.startswith("../"):
        return f"path escapes the {root_name}"
    path = root / relative_path
    if path.exists() and not path.resolve().is_relative_to(root.resolve()):
        return f"path escapes the {root_name} (through a symbolic link)"
    return None


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks (weights files are gigabytes)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str, recorded_in: str | os.PathLike, remedy: str) -> None:
    """Refuse a file whose bytes are not the ones whose sha256 ``recorded_in`` holds (one-line DataError)."""
    if not Path(path).is_file():
        raise DataError(f"missing, but recorded in {recorded_in}; {remedy}", file=path)
    if sha256_file(path) != expected:
        raise DataError(f"sha256 differs from the one recorded in {recorded_in} (the file changed after it was "
                        f"recorded); {remedy}", file=path)


def reasons_path(metrics_path: str | os.PathLike) -> Path:
    """Where the reasons for a metrics file's missing values live: ``quality.json`` ->
    ``quality_reasons.json`` beside it (DVC metrics hold numbers only)."""
    metrics_path = Path(metrics_path)
    return metrics_path.with_name(f"{metrics_path.stem}_reasons.json")


def standard_json(obj: object) -> object:
    """``obj`` without NaN or infinity, which standard JSON lacks (strict parsers, jq and DVC reject
    the ``NaN`` token): such a value is left out of a mapping, and None in a list. Why a value is
    missing is the writer's to record (``<name>.reason``, or the reasons file beside it)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {key: standard_json(value) for key, value in obj.items()
                if not (isinstance(value, float) and not math.isfinite(value))}  # fmt: skip
    if isinstance(obj, list | tuple):
        return [standard_json(value) for value in obj]
    return obj


def write_json(path: str | os.PathLike, obj: object) -> Path:
    """Pretty, key-sorted, standard JSON (`standard_json`) so that DVC metrics diffs are readable and stable."""
    return atomic_write_text(path, json.dumps(standard_json(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temp directory that replaces ``path`` only if the block succeeds.

    On any error (or a kill) ``path`` is left as it was and the temp directory is removed, so a
    failed stage leaves no partial outputs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX))
    tmp.chmod(0o755)  # mkdtemp makes 0700
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
