"""Names and checks of the files the base_model and train_lora stages write: what the registry and
generate read without importing torch or diffusers (a stage that only reads them starts faster)."""

from __future__ import annotations

import json
from pathlib import Path

from fairaug.errors import ConfigError, DataError
from fairaug.io import verify_sha256

BASE_FILE = "base.json"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
EMA_WEIGHTS = "pytorch_lora_weights_ema.safetensors"
KOHYA_WEIGHTS = "pytorch_lora_weights_kohya.safetensors"
LATEST_WEIGHTS = "pytorch_lora_weights_latest.safetensors"  # the last step's (LORA_WEIGHTS: the selected one's)
WEIGHTS_BY_CHOICE = {"ema": EMA_WEIGHTS, "final": LORA_WEIGHTS, "latest": LATEST_WEIGHTS}  # generate.lora_weights
# the weights files the run wrote, with their sha256: the out is a DVC persist out, so a file in it is
# not proof that this run wrote it
WEIGHTS_RECORD = "lora.json"


def verify_base_weights(base_dir: Path, record: dict, location: Path, *, all_present: bool = True) -> None:
    """Refuse weights under ``location`` whose sha256 is not the one ``base_dir/base.json`` recorded.

    ``all_present=False`` (hub bases) checks only the recorded files in the local cache: the hub
    downloads what a pipeline needs, and a file not on disk cannot have been altered on it.
    """
    record_file = Path(base_dir) / BASE_FILE
    if not record.get("weights"):
        raise DataError("no weight hashes recorded; rerun `dvc repro base_model`", file=record_file)
    for name, digest in record["weights"].items():
        path = Path(location) / name
        if all_present or path.is_file():
            verify_sha256(path, digest, record_file, "restore it or rerun `dvc repro base_model`")


def trained_weights(lora_dir: Path, choice: str) -> Path:
    """The weights file ``generate.lora_weights: <choice>`` names, if the LoRA run wrote it: listed in
    its ``WEIGHTS_RECORD``, with the recorded bytes."""
    path = Path(lora_dir) / WEIGHTS_BY_CHOICE[choice]
    record_file = Path(lora_dir) / WEIGHTS_RECORD
    if not record_file.is_file():
        raise DataError("not found: no finished train_lora run wrote this directory; run `dvc repro train_lora` "
                        "first", file=record_file)
    recorded = json.loads(record_file.read_text())["weights"]
    if path.name not in recorded:
        why = " (its EMA was off: train_lora.ema.enabled false)" if choice == "ema" else ""
        raise ConfigError(f"generate.lora_weights: {choice}: the LoRA run did not write {path}{why}; it wrote "
                          f"{', '.join(sorted(recorded))}")
    verify_sha256(path, recorded[path.name], record_file, "rerun `dvc repro train_lora`")
    return path
