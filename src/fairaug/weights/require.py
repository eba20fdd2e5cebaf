"""Preflight of the code that loads pretrained weights: a missing file stops it with one line that
names the file and the command that fetches it (no network access, no half-started stage).

Layout of the weights cache (params ``weights.cache_dir``): ``huggingface/hub`` is a Hugging Face hub
cache (``models--<org>--<name>/snapshots/<revision>/...``), ``torch/hub/checkpoints`` holds downloads
under the names torchvision and torch-fidelity give them. This module imports nothing heavy: every
stage that loads weights imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

from fairaug.errors import DataError

FETCH_COMMAND = "fairaug weights fetch"
FETCH_HINT = (f"fetch it once on a connected machine with `{FETCH_COMMAND} --profile <profile>` "
              "(`fairaug weights check` lists what is missing)")
HUB_SUBDIR = Path("huggingface") / "hub"
CHECKPOINTS_SUBDIR = Path("torch") / "hub" / "checkpoints"
# the weights file of each Stable Diffusion component (diffusers / transformers names, safetensors only)
COMPONENT_WEIGHTS = {
    "unet": "unet/diffusion_pytorch_model.safetensors",
    "vae": "vae/diffusion_pytorch_model.safetensors",
    "text_encoder": "text_encoder/model.safetensors",
}
NOT_LOADED = {"safety_checker"}  # fairaug loads bases without the NSFW filter (diffusion/base.py)


def hub_cache(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / HUB_SUBDIR


def checkpoints_dir(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / CHECKPOINTS_SUBDIR


def download_path(cache_dir: str | Path, url: str, configured: str | Path | None = None,
                  project_root: str | Path = ".") -> Path:
    """Where a stage loads the download ``url`` from: the ``configured`` local file (relative to the
    project root), else the weights cache, under the file name torchvision and torch hub give it."""
    root = Path(project_root)
    return root / configured if configured else checkpoints_dir(root / cache_dir) / Path(url).name


def snapshot_dir(cache: str | Path, hub_id: str, revision: str) -> Path:
    """Where a Hugging Face hub cache keeps ``hub_id`` at ``revision``."""
    return Path(cache) / f"models--{hub_id.replace('/', '--')}" / "snapshots" / revision


def require_file(path: str | Path, what: str) -> Path:
    """``path``, or a DataError naming it and the fetch command."""
    if not Path(path).is_file():
        raise DataError(f"missing {what}: {FETCH_HINT}", file=path)
    return Path(path)


def required_snapshot_files(snapshot: Path) -> list[str]:
    """What loading a Stable Diffusion pipeline from ``snapshot`` reads: model_index.json, every
    component's config and the UNet, VAE and text encoder weights (safetensors)."""
    index = snapshot / "model_index.json"
    if not index.is_file():
        return ["model_index.json"]
    components = json.loads(index.read_text())
    files = ["model_index.json"]
    for name, value in components.items():
        if name.startswith("_") or name in NOT_LOADED or not isinstance(value, list) or None in value:
            continue
        config = {"scheduler": "scheduler_config.json", "tokenizer": "tokenizer_config.json",
                  "feature_extractor": "preprocessor_config.json"}.get(name, "config.json")
        files.append(f"{name}/{config}")
        if name in COMPONENT_WEIGHTS:
            files.append(COMPONENT_WEIGHTS[name])
    return files


def require_hub_snapshot(cache: str | Path, hub_id: str, revision: str) -> Path:
    """The local snapshot of ``hub_id`` at ``revision`` in the hub cache ``cache``, with every file a
    pipeline load needs; else a DataError naming the first missing file."""
    snapshot = snapshot_dir(cache, hub_id, revision)
    for name in required_snapshot_files(snapshot):
        require_file(snapshot / name, f"base model {hub_id}@{revision[:12]}")
    return snapshot


def read_state_dict(path: str | Path) -> dict:
    """The tensors of a weights file: safetensors, or a torch file read with weights_only (no pickled
    code runs); an unreadable or foreign file is a DataError naming it."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            import safetensors.torch

            return safetensors.torch.load_file(path)
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unreadable or foreign file is the user's input error
        raise DataError(f"not a state dict of tensors: {str(err).splitlines()[0][:200]}", file=path) from None
