"""What a profile's stages load, where from and where to: the weights plan, and the sha256 pins.

Pins: a full sha256 where it is known (seen in public code; confirmed on the first fetch on a
connected machine), else the sha256 prefix that torchvision's file names carry (torch hub checks
it). A file with no full pin gets its sha256 recorded in the lock file (weights.lock.json) on the
first fetch, and `fairaug weights fetch` says so; from then on the lock file pins it.

Hub bases are pinned by revision (a git commit: it fixes the tree, LFS pointers and so every file's
sha256 included); their file hashes are recorded in the lock file on the first fetch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from fairaug.config.models import Params
from fairaug.weights.require import checkpoints_dir, download_path, hub_cache, snapshot_dir

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
TORCHVISION_URLS = {  # the IMAGENET1K_V1 weights, as torchvision 0.29 names them
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "efficientnet_b0": "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
}
PERCEPTUAL_URLS = {"vgg16": TORCHVISION_URLS["vgg"]}  # train_lora.perceptual_loss.net -> its ImageNet weights
# full sha256 of downloads, by file name; not yet confirmed by a fetch from this repository
URL_SHA256 = {
    "weights-inception-2015-12-05-6726825d.pth": "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    "alexnet-owt-7be5be79.pth": "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
}
# full sha256 of hub files, by (hub_id, revision) and path in the snapshot; none known offline yet
HUB_SHA256: dict[tuple[str, str], dict[str, str]] = {}
# What a Stable Diffusion pipeline load reads, and nothing else: no single-file checkpoints
# (v1-5-pruned*.safetensors, 4-8 GB each), no fp16 / non-EMA variants, no safety checker, no pickles.
HUB_ALLOW_PATTERNS = [
    "model_index.json",
    "scheduler/*.json",
    "tokenizer/*.json",
    "tokenizer/*.txt",
    "feature_extractor/*.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
]
NAME_HASH = re.compile(r"-([0-9a-f]{6,})\.[a-z]+$")


@dataclass(frozen=True)
class WeightSpec:
    """One thing to fetch: a hub snapshot or a downloaded file (and its safetensors conversion)."""

    key: str  # lock file key: <hub_id>@<revision>, or the download's file name
    what: str  # for people: "base model", "Inception-v3 FID weights", ...
    kind: Literal["hub", "url"]
    source: str  # hub id or URL
    path: Path  # snapshot directory, or the downloaded file
    used_by: str  # the stages that load it
    revision: str | None = None
    hub_cache: Path | None = None
    convert_to: Path | None = None  # a safetensors copy of the state dict (what the loader reads)

    @property
    def pinned_sha256(self) -> str | None:
        return URL_SHA256.get(self.path.name) if self.kind == "url" else None

    @property
    def sha256_prefix(self) -> str | None:
        match = NAME_HASH.search(self.path.name) if self.kind == "url" else None
        return match.group(1) if match else None

    def hub_pins(self) -> dict[str, str]:
        return HUB_SHA256.get((self.source, self.revision or ""), {})


def _url_spec(url: str, what: str, path: Path, used_by: str, convert_to: Path | None = None) -> WeightSpec:
    return WeightSpec(key=Path(url).name, what=what, kind="url", source=url, path=path, used_by=used_by,
                      convert_to=convert_to)


def weight_plan(params: Params, project_root: Path = Path(".")) -> list[WeightSpec]:
    """Every pretrained weight the stages of ``params`` load, at the paths they load it from."""
    root = Path(project_root)
    cache = root / params.weights.cache_dir
    specs = []
    base = params.base
    if base.source == "hub":
        specs.append(WeightSpec(
            key=f"{base.hub_id}@{base.revision}", what="base model", kind="hub", source=base.hub_id,
            revision=base.revision, hub_cache=hub_cache(cache),
            path=snapshot_dir(hub_cache(cache), base.hub_id, base.revision),
            used_by="base_model, train_lora, generate, promote",
        ))  # fmt: skip
    quality = params.evaluate_quality
    if "inception" in quality.extractors and (quality.inception_weights or quality.require_weights):
        path = download_path(params.weights.cache_dir, INCEPTION_URL, quality.inception_weights, root)
        specs.append(_url_spec(INCEPTION_URL, "Inception-v3 FID weights (torch-fidelity)", path, "evaluate_quality"))
    if quality.lpips_weights or quality.require_weights:
        url = TORCHVISION_URLS[quality.lpips_net]
        path = download_path(params.weights.cache_dir, url, quality.lpips_weights, root)
        specs.append(_url_spec(url, f"LPIPS backbone ({quality.lpips_net}, ImageNet)", path, "evaluate_quality"))
    perceptual = params.train_lora.perceptual_loss
    if perceptual.weight > 0:
        url = PERCEPTUAL_URLS[perceptual.net]
        path = download_path(params.weights.cache_dir, url, perceptual.weights_path, root)
        specs.append(_url_spec(url, f"perceptual loss network ({perceptual.net}, ImageNet)", path, "train_lora"))
    classifier = params.train_classifier
    if classifier.arch != "small_cnn" and classifier.weights_path:
        url = TORCHVISION_URLS[classifier.arch]
        specs.append(_url_spec(url, f"classifier backbone ({classifier.arch}, ImageNet)",
                               checkpoints_dir(cache) / Path(url).name,
                               "train_classifier, generate (filter), evaluate_quality (evaluator)",
                               convert_to=root / classifier.weights_path))  # fmt: skip
    return _merge_shared(specs)


def _merge_shared(specs: list[WeightSpec]) -> list[WeightSpec]:
    """One spec per file: LPIPS on vgg and the perceptual loss may load the same vgg16 download."""
    merged: dict[tuple[str, Path], WeightSpec] = {}
    for spec in specs:
        same = merged.get((spec.key, spec.path))
        merged[spec.key, spec.path] = replace(same, what=f"{same.what}; {spec.what}",
                                              used_by=f"{same.used_by}, {spec.used_by}") if same else spec
    return list(merged.values())
