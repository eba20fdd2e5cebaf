"""The base Stable Diffusion pipeline: a tiny one built from config, or a pinned hub / local one.

`base_model` writes ``base.json`` into its output directory, recording where the base came from and
the sha256 of every weights file; `load_base_pipeline` reads it back and refuses weights whose bytes
changed since. The tiny base is saved in full (a diffusers pipeline directory); hub and local bases
are only recorded, never copied. Weights load from safetensors only, never from pickle (`.bin`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from huggingface_hub import snapshot_download
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from fairaug.config.diffusion import BaseConfig
from fairaug.diffusion.files import BASE_FILE, verify_base_weights
from fairaug.errors import ConfigError
from fairaug.io import sha256_file, write_json
from fairaug.weights.require import hub_cache, require_hub_snapshot

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
# The base generates skin images for a medical study: no NSFW filter (it blanks images it misreads);
# safetensors only: a pickled .bin can run code when loaded.
LOAD_OPTIONS = {"safety_checker": None, "requires_safety_checker": False, "use_safetensors": True}
# Small channel counts: 8 groups keep several channels per group (32 groups of 1 channel would
# normalise away each channel's mean, i.e. the skin colour).
NORM_GROUPS = 8


def build_tiny_pipeline(base: BaseConfig, tokenizer: CLIPTokenizer) -> StableDiffusionPipeline:
    """An untrained Stable Diffusion pipeline of ``base.tiny``'s sizes, initialised from ``base.pretrain.seed``."""
    tiny = base.tiny
    down_factor = 2 ** (len(tiny.vae_channels) - 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(base.pretrain.seed)
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * len(tiny.vae_channels),
            up_block_types=("UpDecoderBlock2D",) * len(tiny.vae_channels),
            block_out_channels=tuple(tiny.vae_channels),
            layers_per_block=1,
            latent_channels=tiny.latent_channels,
            norm_num_groups=NORM_GROUPS,
            sample_size=base.resolution,
            mid_block_add_attention=False,  # attention at full latent resolution costs more than it gives here
        )
        unet = UNet2DConditionModel(
            sample_size=base.resolution // down_factor,
            in_channels=tiny.latent_channels,
            out_channels=tiny.latent_channels,
            # attention below the full latent resolution only (the layout of diffusers' own test UNet):
            # at full resolution it has 4x the tokens and cost a third of every CPU step
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(tiny.unet_channels) - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (len(tiny.unet_channels) - 1) + ("UpBlock2D",),
            mid_block_type=None,
            block_out_channels=tuple(tiny.unet_channels),
            layers_per_block=1,
            norm_num_groups=NORM_GROUPS,
            cross_attention_dim=tiny.text_hidden_size,
            # diffusers reads attention_head_dim as the number of heads (a historic misnomer): heads of
            # the configured size
            attention_head_dim=tuple(max(1, channels // tiny.attention_head_size) for channels in tiny.unet_channels),
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=tiny.text_hidden_size,
                intermediate_size=4 * tiny.text_hidden_size,
                num_hidden_layers=tiny.text_layers,
                num_attention_heads=tiny.text_heads,
                max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    # SD's training noise schedule, so that LoRA recipes and samplers tuned for SD apply unchanged
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        prediction_type=base.prediction_type,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def weight_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every weights file under ``folder`` (symlinks followed, as in the HF cache), by relative path."""
    return {path.relative_to(folder).as_posix(): sha256_file(path) for path in sorted(Path(folder).rglob("*"))
            if path.suffix in WEIGHT_SUFFIXES and path.is_file()}  # fmt: skip


def save_tiny_base(pipeline: StableDiffusionPipeline, out_dir: Path) -> dict:
    """Save the pipeline (safetensors) into ``out_dir`` and record it in ``base.json``."""
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    record = {"source": "tiny", "weights": weight_hashes(out_dir)}
    write_json(Path(out_dir) / BASE_FILE, record)
    return record


def resolve_base(base: BaseConfig, out_dir: Path, cache_dir: str | Path | None = None) -> dict:
    """Load a hub (pinned revision) or local base once, so that it is known to work and cached, and
    record it in ``out_dir/base.json``; nothing big is written.

    With ``cache_dir`` (params ``weights.cache_dir``) a hub base is read offline from that weights
    cache, where `fairaug weights fetch` put it; a missing file stops here, named. Without it, the
    default Hugging Face cache (and the network, if allowed) is used."""
    if base.source == "hub":
        key, location, options = "base.hub_id", base.hub_id, {"revision": base.revision}
        if cache_dir is not None:
            location = require_hub_snapshot(hub_cache(cache_dir), base.hub_id, base.revision)
            options = {}
    elif base.source == "local":
        key, location, options = "base.local_path", base.local_path, {}
    else:
        raise ValueError(f"resolve_base is for hub and local bases, not {base.source!r}")
    try:
        StableDiffusionPipeline.from_pretrained(location, **options, **LOAD_OPTIONS)
    except OSError as err:  # diffusers' "not found" and "no .safetensors file" (a pickle-only base)
        raise ConfigError(f"{key} {location}: {err}") from None
    if base.source == "hub":
        if cache_dir is not None:
            snapshot = Path(location)
        else:
            snapshot = Path(snapshot_download(base.hub_id, revision=base.revision, local_files_only=True))
        record = {"source": "hub", "hub_id": base.hub_id, "revision": base.revision}
        if cache_dir is not None:
            record["cache_dir"] = str(cache_dir)
    else:
        snapshot = Path(base.local_path)
        record = {"source": "local", "local_path": base.local_path}
    record["weights"] = weight_hashes(snapshot)
    write_json(Path(out_dir) / BASE_FILE, record)
    return record


def load_base_pipeline(base_dir: Path, **kwargs) -> StableDiffusionPipeline:
    """The base pipeline that ``base_model`` recorded in ``base_dir``, its weights checked against the
    record; ``kwargs`` go to ``from_pretrained`` (e.g. ``torch_dtype``)."""
    record = json.loads((Path(base_dir) / BASE_FILE).read_text())
    kwargs = LOAD_OPTIONS | kwargs
    if record["source"] == "hub" and "cache_dir" in record:  # fetched by `fairaug weights fetch`: offline
        snapshot = require_hub_snapshot(hub_cache(record["cache_dir"]), record["hub_id"], record["revision"])
        verify_base_weights(base_dir, record, snapshot)
        return StableDiffusionPipeline.from_pretrained(snapshot, **kwargs)
    if record["source"] == "hub":
        pipeline = StableDiffusionPipeline.from_pretrained(record["hub_id"], revision=record["revision"], **kwargs)
        snapshot = snapshot_download(record["hub_id"], revision=record["revision"], local_files_only=True)
        verify_base_weights(base_dir, record, Path(snapshot), all_present=False)
        return pipeline
    location = Path(base_dir if record["source"] == "tiny" else record["local_path"])
    verify_base_weights(base_dir, record, location)
    return StableDiffusionPipeline.from_pretrained(location, **kwargs)
