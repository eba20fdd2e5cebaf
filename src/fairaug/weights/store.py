"""Fetch the weights plan into the cache (connected machine, once), check it offline, and keep the lock
file (``weights.lock.json`` in the project root: what, from where, which files, their sha256).

The fetch is resolve -> transfer -> verify -> record. Only the transfer touches the network (a
`Transport`: huggingface_hub's snapshot_download and torch hub's download); tests swap it for a copy
from a local directory, everything else runs as on a connected machine. A file whose sha256 is not the
pinned or locked one is refused (deleted, named, exit 2), before anything loads it.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from fairaug.errors import DataError, FairaugError
from fairaug.io import atomic_write_bytes, sha256_file, write_json
from fairaug.weights.require import FETCH_COMMAND, required_snapshot_files
from fairaug.weights.spec import HUB_ALLOW_PATTERNS, WeightSpec

LOCK_FILE = "weights.lock.json"
LOCK_VERSION = 1
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Transport(Protocol):
    def snapshot(self, hub_id: str, revision: str, allow_patterns: list[str], cache: Path) -> Path:
        """Put ``hub_id`` at ``revision`` (the files matching ``allow_patterns``) into the hub cache
        ``cache`` and return its snapshot directory."""

    def download(self, url: str, dest: Path) -> None:
        """Write the bytes at ``url`` to ``dest``."""


class NetworkTransport:
    """The Hugging Face hub and plain HTTPS downloads (a connected machine)."""

    def snapshot(self, hub_id: str, revision: str, allow_patterns: list[str], cache: Path) -> Path:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, revision=revision, allow_patterns=allow_patterns, cache_dir=cache))

    def download(self, url: str, dest: Path) -> None:
        import torch.hub

        torch.hub.download_url_to_file(url, str(dest), progress=True)


def matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


# ------------------------------------------------------------------------------------------ lock file
def read_lock(root: Path) -> dict:
    path = Path(root) / LOCK_FILE
    if not path.is_file():
        return {"version": LOCK_VERSION, "weights": {}}
    try:
        lock = json.loads(path.read_text())
        assert isinstance(lock.get("weights"), dict)
    except (ValueError, AssertionError):
        raise DataError("not a weights lock file (JSON with a 'weights' mapping); restore it from git", file=path) from None
    return lock


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------- check
@dataclass(frozen=True)
class Status:
    spec: WeightSpec
    state: Literal["ok", "missing", "tampered", "unrecorded"]
    detail: str  # the files concerned, or what was verified


def _expected_url(spec: WeightSpec, entry: dict | None) -> str | None:
    return spec.pinned_sha256 or (entry or {}).get("sha256")


def _expected_hub(spec: WeightSpec, entry: dict | None) -> dict[str, str]:
    return dict((entry or {}).get("files", {})) | spec.hub_pins()


def check_spec(spec: WeightSpec, entry: dict | None) -> Status:
    """Is ``spec`` in the cache with the pinned / locked bytes? (offline; hashes every file)"""
    if spec.kind == "url":
        files = {spec.path: _expected_url(spec, entry)}
        if spec.convert_to is not None:
            files[spec.convert_to] = (entry or {}).get("converted", {}).get("sha256")
    else:
        expected = _expected_hub(spec, entry)
        names = sorted(expected) or required_snapshot_files(spec.path)
        files = {spec.path / name: expected.get(name) for name in names}
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        return Status(spec, "missing", ", ".join(missing))
    changed = [str(path) for path, digest in files.items() if digest and sha256_file(path) != digest]
    if changed:
        return Status(spec, "tampered", f"sha256 differs from the pinned / locked one: {', '.join(changed)}")
    weights = [path for path in files if path.suffix in (".safetensors", ".pth")]
    unrecorded = [str(path) for path in weights if not files[path]]
    if unrecorded:
        return Status(spec, "unrecorded", f"no sha256 pinned or in {LOCK_FILE} for {', '.join(unrecorded)}")
    return Status(spec, "ok", f"{len(files)} files, sha256 as pinned / locked")


def check_weights(specs: list[WeightSpec], root: Path) -> list[Status]:
    lock = read_lock(root)["weights"]
    return [check_spec(spec, lock.get(spec.key)) for spec in specs]


# ---------------------------------------------------------------------------------------------- fetch
def _refuse(path: Path, got: str, expected: str, where: str) -> None:
    path.unlink(missing_ok=True)
    raise DataError(f"refused: sha256 {got} is not the {where} {expected} (deleted; the source or the download "
                    "is not the pinned file)", file=path)


def _verify_download(spec: WeightSpec, path: Path, entry: dict | None) -> tuple[str, str]:
    """sha256 of a downloaded file and how it was verified; a mismatch is refused."""
    digest = sha256_file(path)
    if spec.pinned_sha256:
        if digest != spec.pinned_sha256:
            _refuse(path, digest, spec.pinned_sha256, "pinned")
        return digest, "matches the sha256 pinned in fairaug"
    if entry and entry.get("sha256"):
        if digest != entry["sha256"]:
            _refuse(path, digest, entry["sha256"], f"{LOCK_FILE}'s")
        return digest, f"matches {LOCK_FILE}"
    if spec.sha256_prefix and not digest.startswith(spec.sha256_prefix):
        _refuse(path, digest, spec.sha256_prefix + "...", "file name's")
    prefix = f" (its name's prefix {spec.sha256_prefix} checked)" if spec.sha256_prefix else ""
    return digest, f"sha256 not pinned: recorded on this first fetch{prefix}; commit {LOCK_FILE}"


def _convert(source: Path, dest: Path) -> str:
    """Write the torch state dict ``source`` (read with weights_only: tensors only) as safetensors."""
    import safetensors.torch
    import torch

    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
        data = safetensors.torch.save({key: value.contiguous() for key, value in state.items()})
    except Exception as err:  # noqa: BLE001 - a file that is no state dict of tensors is bad input
        raise DataError(f"not a torch state dict of tensors: {str(err).splitlines()[0][:200]}", file=source) from None
    atomic_write_bytes(dest, data)
    return sha256_file(dest)


def fetch_url(spec: WeightSpec, transport: Transport, entry: dict | None, root: Path) -> tuple[dict, str]:
    if entry and check_spec(spec, entry).state == "ok":
        return entry, "already fetched, sha256 as pinned / locked"
    expected = _expected_url(spec, entry)
    have = spec.path.is_file() and expected is not None and sha256_file(spec.path) == expected
    if have:
        digest, how = expected, "already fetched"
    else:
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        partial = spec.path.with_name(spec.path.name + ".partial")
        try:
            transport.download(spec.source, partial)
        except OSError as err:
            partial.unlink(missing_ok=True)
            raise FairaugError(f"{spec.source}: download failed: {str(err).splitlines()[0][:200]}") from None
        digest, how = _verify_download(spec, partial, entry)
        partial.replace(spec.path)
    record = {"kind": "url", "what": spec.what, "source": spec.source, "path": _relative(spec.path, root),
              "sha256": digest, "pinned": bool(spec.pinned_sha256)}
    if spec.convert_to is not None:
        converted = _convert(spec.path, spec.convert_to)
        locked = (entry or {}).get("converted", {}).get("sha256")
        if locked and converted != locked:
            _refuse(spec.convert_to, converted, locked, f"{LOCK_FILE}'s")
        record["converted"] = {"path": _relative(spec.convert_to, root), "sha256": converted}
        how += f"; safetensors copy {spec.convert_to}"
    return record, how


def _drop(path: Path) -> None:
    """Delete a cached file, and its blob when it is a hub-cache symlink (so the hub fetches it again)."""
    target = path.resolve()
    path.unlink(missing_ok=True)
    if target != path:
        target.unlink(missing_ok=True)


def fetch_hub(spec: WeightSpec, transport: Transport, entry: dict | None, root: Path) -> tuple[dict, str]:
    expected = _expected_hub(spec, entry)
    for name, digest in expected.items():  # altered files go, so that the transfer replaces them
        path = spec.path / name
        if path.is_file() and sha256_file(path) != digest:
            _drop(path)
    try:
        snapshot = transport.snapshot(spec.source, spec.revision, HUB_ALLOW_PATTERNS, spec.hub_cache)
    except OSError as err:  # huggingface_hub's errors are OSErrors (no network, unknown repo or revision)
        raise FairaugError(f"{spec.source}@{spec.revision}: fetch failed: {str(err).splitlines()[0][:200]}") from None
    if Path(snapshot).resolve() != spec.path.resolve():
        raise FairaugError(f"{spec.source}@{spec.revision}: the hub put it at {snapshot}, not at {spec.path}")
    files = {}
    for path in sorted(p for p in spec.path.rglob("*") if p.is_file()):
        name = path.relative_to(spec.path).as_posix()
        if not matches(name, HUB_ALLOW_PATTERNS):
            continue
        digest = sha256_file(path)
        blob = path.resolve().name  # the hub cache names LFS blobs by their sha256
        if SHA256.match(blob) and blob != digest:
            _drop(path)
            raise DataError(f"refused: sha256 {digest} is not the hub's {blob} (deleted; fetch again)", file=path)
        if name in expected and expected[name] != digest:
            _drop(path)
            raise DataError(f"refused: sha256 {digest} is not the pinned / locked {expected[name]} (deleted)",
                            file=path)
        files[name] = digest
    for name in required_snapshot_files(spec.path):
        if name not in files:
            raise DataError(f"{spec.source}@{spec.revision} has no {name} (not a diffusers Stable Diffusion "
                            "pipeline with safetensors weights?)", file=spec.path)
    pinned = bool(spec.hub_pins())
    record = {"kind": "hub", "what": spec.what, "source": spec.source, "revision": spec.revision,
              "path": _relative(spec.path, root), "files": files, "pinned": pinned}
    how = ("sha256 as pinned" if pinned else
           f"pinned by revision; file sha256 recorded on this first fetch, commit {LOCK_FILE}") if not entry else (
           f"matches {LOCK_FILE}")  # fmt: skip
    return record, f"{len(files)} files, {how}"


def fetch_weights(specs: list[WeightSpec], root: Path, transport: Transport | None = None) -> list[tuple[WeightSpec, str]]:
    """Fetch every spec (what is there and verified is kept), record it in the lock file, and say
    how each was verified. The lock file is written after each weight, so a failure keeps the rest."""
    transport = transport or NetworkTransport()
    lock = read_lock(root)
    done = []
    for spec in specs:
        entry = lock["weights"].get(spec.key)
        fetch = fetch_hub if spec.kind == "hub" else fetch_url
        record, how = fetch(spec, transport, entry, Path(root))
        lock["weights"][spec.key] = record
        lock["version"] = LOCK_VERSION
        write_json(Path(root) / LOCK_FILE, lock)
        done.append((spec, how))
    return done


def fetch_command(profile: str) -> str:
    return f"{FETCH_COMMAND} --profile {profile}"
