"""Resumable training checkpoints: complete or absent, tied to the run they belong to.

A checkpoint is a directory `checkpoint-<step>` written under a temporary name and renamed when
complete, so a kill never leaves a half-written one. Its `state.json` records a fingerprint of what
the training depends on (params, base model, data); checkpoints of another fingerprint are never
resumed from, since DVC keeps them (a persist out) across parameter changes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from fairaug.errors import ConfigError

STATE_FILE = "state.json"
# what the LoRA trainer writes into a checkpoint beside STATE_FILE
LORA_STATE = "lora.safetensors"
EMA_STATE = "ema.safetensors"  # with EMA
BEST_STATE = "best.safetensors"  # once a validation loss was measured
TRAINING_STATE = "training_state.pt"  # optimizer, lr scheduler, RNG states
PREFIX = "checkpoint-"


def _step_of(path: Path) -> int | None:
    suffix = path.name.removeprefix(PREFIX)
    return int(suffix) if path.name.startswith(PREFIX) and suffix.isdigit() else None


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _step_of(p) is not None and (p / STATE_FILE).is_file()]
    return sorted(found, key=_step_of)


def read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())


def find_checkpoint(root: Path, resume: str | os.PathLike | None, fingerprint: str) -> Path | None:
    """The checkpoint to resume from: ``"latest"`` of this fingerprint, an explicit path, or None."""
    if resume is None:
        return None
    if str(resume) != "latest":
        path = Path(resume)
        if not path.is_dir():
            raise ConfigError(f"--resume {path}: no such directory")
        if not (path / STATE_FILE).is_file():
            raise ConfigError(f"--resume {path}: not a complete checkpoint (no {STATE_FILE})")
        if read_state(path).get("fingerprint") != fingerprint:
            raise ConfigError(f"--resume {path}: a checkpoint of another training (other params, base model or "
                              "data); resuming it would not train this LoRA")
        return path
    matching = [p for p in complete_checkpoints(root) if read_state(p).get("fingerprint") == fingerprint]
    return matching[-1] if matching else None


def remove_stale(root: Path, fingerprint: str) -> list[Path]:
    """Delete checkpoints of other runs and leftovers of interrupted writes; return what went."""
    if not root.is_dir():
        return []
    stale = [p for p in root.iterdir() if p.is_dir() and (
        _step_of(p) is None or not (p / STATE_FILE).is_file() or read_state(p).get("fingerprint") != fingerprint
    )]
    for path in stale:
        shutil.rmtree(path)
    return stale


def write_checkpoint(root: Path, step: int, state: dict, write_files, limit: int) -> Path:
    """Write ``checkpoint-<step>`` atomically: ``write_files(tmp_dir)`` then state.json, then rename.

    Keeps the newest ``limit`` checkpoints.
    """
    final = root / f"{PREFIX}{step:06d}"
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_files(tmp)
    (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in complete_checkpoints(root)[:-limit]:
        shutil.rmtree(old)
    return final
