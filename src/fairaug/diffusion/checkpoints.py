"""Resumable training checkpoints: complete or absent, tied to the run they belong to.

A checkpoint is a directory `checkpoint-<step>` written under a temporary name and renamed when
complete, so a kill never leaves a half-written one. Its `state.json` records a fingerprint of what
the training depends on (params, base model, data) and the layout of its files; checkpoints of
another fingerprint or layout are never resumed from, since DVC keeps them (a persist out) across
parameter changes and fairaug versions.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from fairaug.errors import ConfigError
from fairaug.io import temp_path

STATE_FILE = "state.json"
# what the LoRA trainer writes into a checkpoint beside STATE_FILE
LORA_STATE = "lora.safetensors"
EMA_STATE = "ema.pt"  # with EMA: diffusers EMAModel.state_dict() (shadow weights, step, decay)
BEST_STATE = "best.safetensors"  # once a validation loss was measured
TRAINING_STATE = "training_state.pt"  # optimizer, lr scheduler, RNG states
PREFIX = "checkpoint-"
# The files a checkpoint holds. 1 (state.json without "layout"): the EMA as hand-named p{i} tensors;
# 2: the EMA as diffusers' EMAModel.state_dict().
LAYOUT = 2


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


def _of_run(checkpoint: Path, fingerprint: str) -> bool:
    state = read_state(checkpoint)
    return state.get("fingerprint") == fingerprint and state.get("layout", 1) == LAYOUT


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
        if read_state(path).get("layout", 1) != LAYOUT:
            raise ConfigError(f"--resume {path}: a checkpoint written by an older fairaug (layout "
                              f"{read_state(path).get('layout', 1)}, this one reads {LAYOUT}); start over (--resume none)")
        return path
    matching = [p for p in complete_checkpoints(root) if _of_run(p, fingerprint)]
    return matching[-1] if matching else None


def remove_stale(root: Path, fingerprint: str) -> list[Path]:
    """Delete checkpoints of other runs and leftovers of interrupted writes; return what went."""
    if not root.is_dir():
        return []
    stale = [p for p in root.iterdir() if p.is_dir() and (
        _step_of(p) is None or not (p / STATE_FILE).is_file() or not _of_run(p, fingerprint)
    )]
    for path in stale:
        shutil.rmtree(path)
    return stale


def write_checkpoint(root: Path, step: int, state: dict, write_files, limit: int) -> Path:
    """Write ``checkpoint-<step>`` atomically: ``write_files(tmp_dir)`` then state.json, then rename.

    Keeps the newest ``limit`` checkpoints.
    """
    final = root / f"{PREFIX}{step:06d}"
    tmp = temp_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_files(tmp)
    (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step, "layout": LAYOUT}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in complete_checkpoints(root)[:-limit]:
        shutil.rmtree(old)
    return final


def rng_states() -> dict:
    """Global RNG states as tensors and numbers, so they load with torch.load(weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(keys.astype(np.int64)),
            "numpy_extra": [int(pos), int(has_gauss), float(cached)],
            "python": torch.tensor(python_state, dtype=torch.int64), "python_extra": [version, gauss_next]}


def restore_rng_states(states: dict) -> None:
    """Set the global torch, numpy and Python RNGs to what `rng_states` returned."""
    torch.set_rng_state(states["torch"])
    pos, has_gauss, cached = states["numpy_extra"]
    np.random.set_state(("MT19937", states["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, gauss_next = states["python_extra"]
    random.setstate((version, tuple(states["python"].tolist()), gauss_next))
