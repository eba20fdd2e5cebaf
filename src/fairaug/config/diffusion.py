"""Params of the diffusion stages: `prompts`, `base` (base_model) and `train_lora`."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from fairaug.config.base import StrictModel

# Skin type first: on the tiny model, the first tokens of a prompt weigh most (DESIGN.md).
DEFAULT_TEMPLATES: dict[str, str] = {
    "derm": "fitzpatrick skin type {fst}, dermoscopic image of {label_name}",
    "wound": "fitzpatrick skin type {fst}, photo of a wound in the {label_name} healing phase",
    "skin": "fitzpatrick skin type {fst}, photo of healthy skin",
}


class PromptsConfig(StrictModel):
    templates: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_TEMPLATES),
        description="prompt per domain (derm, wound, skin); {fst} is the Roman FST, {label_name} the label's words",
    )
    negative: str = Field("", description="negative prompt at generation time")


class TinyArchitecture(StrictModel):
    unet_channels: list[int] = Field([32, 64], description="UNet block widths (down path)")
    vae_channels: list[int] = Field(
        [16, 32, 32],
        description="VAE block widths; n blocks: latents 1/2^(n-1) of the image side (8x8 at 32 px: half the UNet step of 16x16)",
    )
    latent_channels: int = Field(4, description="VAE latent channels")
    text_hidden_size: int = Field(32, description="CLIP text encoder width (= UNet cross-attention dim)")
    text_layers: int = Field(2, description="CLIP text encoder layers")
    text_heads: int = Field(2, description="CLIP text encoder attention heads")
    attention_head_size: int = Field(
        32, gt=0, description="channels per UNet attention head (CPU attention is slow with many small heads: 32 is 3x faster than 2)"
    )


class PretrainConfig(StrictModel):
    vae_steps: int = Field(1500, ge=0, description="VAE training steps (reconstruction + KL)")
    vae_batch_size: int = Field(16, gt=0, description="VAE batch size")
    vae_lr: float = Field(1e-3, gt=0, description="VAE learning rate")
    vae_perceptual_weight: float = Field(
        2.0, ge=0, description="weight of the VAE's perceptual loss (LPIPS distance on a small network trained "
        "first, here, to tell the pretraining prompts apart: data set, label, FST), added to its pixel losses, which "
        "blur the lesions' marks (tiny: label confidence +0.04 dermoscopy, +0.08 wounds over three seeds); 0: off"
    )
    perceptual_net_steps: int = Field(
        1000, gt=0, description="training steps (batch 64) of that network, when vae_perceptual_weight > 0"
    )
    unet_steps: int = Field(4000, ge=0, description="UNet denoising steps, text encoder trained with it")
    unet_batch_size: int = Field(
        32, gt=0, description="UNet batch size (tiny: 32 instead of 16, with the VAE's 1500 steps, perceptual "
        "weight 2 and 1000 network steps, gave label confidence dermoscopy +0.10, wounds +0.05 over three seeds, for "
        "about 130 s more of base; the VAE's three alone gave dermoscopy nothing, batch 32 alone +0.06)"
    )
    unet_lr: float = Field(1e-3, gt=0, description="UNet learning rate")
    noise_offset: float = Field(
        0.1, ge=0, description="per-channel noise offset of the UNet phase: lets it learn overall colour, i.e. skin tone"
    )
    generic_skin_images: int = Field(
        600, ge=0, description="extra skin images of every FST, uniform: stands for SD's knowledge of all skin types"
    )
    prompt_dropout: float = Field(0.1, ge=0, lt=1, description="share of empty prompts (classifier-free guidance)")
    seed: int = Field(0, description="pretraining seed")


HUB_REVISION = re.compile(r"^[0-9a-f]{40}$")


class BaseConfig(StrictModel):
    source: Literal["tiny", "hub", "local"] = Field(
        "tiny", description="tiny: built from config and pretrained here; hub: hub_id@revision; local: local_path"
    )
    hub_id: str | None = Field(None, description="hub repository of a Stable Diffusion pipeline")
    revision: str | None = Field(None, description="pinned commit (40 hex digits) of hub_id")
    local_path: str | None = Field(None, description="a diffusers pipeline directory on disk")
    resolution: int = Field(32, gt=0, description="training and generation image size in pixels")
    prediction_type: Literal["epsilon", "v_prediction"] = Field("epsilon", description="tiny profile's UNet target")
    tiny: TinyArchitecture = Field(default_factory=TinyArchitecture)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)

    @model_validator(mode="after")
    def _source_is_complete(self) -> BaseConfig:
        if self.source == "hub" and not (self.hub_id and self.revision and HUB_REVISION.match(self.revision)):
            raise ValueError("source 'hub' needs hub_id and a pinned revision (a 40-hex-digit commit)")
        if self.source == "local" and not self.local_path:
            raise ValueError("source 'local' needs local_path")
        return self


class EmaConfig(StrictModel):
    enabled: bool = Field(True, description="keep an exponential moving average of the LoRA weights")
    decay: float = Field(0.995, gt=0, lt=1, description="EMA decay per step")


class PerceptualLossConfig(StrictModel):
    weight: float = Field(
        0.0, ge=0, description="weight of the feature loss between the decoded x0 prediction and the real image, added "
        "to the (Min-SNR weighted) diffusion loss; 0: off (wound-care LoRA systems use 0.1)",
    )
    net: Literal["vgg16"] = Field("vgg16", description="feature network (torchvision, ImageNet weights)")
    layers: list[Literal["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]] = Field(
        ["relu1_2", "relu2_2", "relu3_3", "relu4_3"], min_length=1,
        description="feature maps compared (mean squared error, averaged over layers): Johnson et al. 2016's set",
    )
    weights_path: str | None = Field(
        None, description="torchvision ImageNet weights of net (vgg16-397923af.pth, or a safetensors copy); null: the "
        "weights cache (weights.cache_dir), where `fairaug weights fetch` puts them",
    )


class TrainLoraConfig(StrictModel):
    rank: int = Field(8, gt=0, description="LoRA rank")
    alpha: float = Field(8.0, gt=0, description="LoRA alpha (scale = alpha / rank)")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    target_modules: list[str] = Field(["to_q", "to_k", "to_v", "to_out.0"], description="UNet modules given LoRA")
    max_steps: int = Field(300, gt=0, description="optimizer steps")
    batch_size: int = Field(16, gt=0, description="images per optimizer step (all processes, all accumulation)")
    gradient_accumulation_steps: int = Field(1, gt=0, description="micro-batches per optimizer step")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    lr_scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine"] = Field(
        "constant", description="diffusers.optimization scheduler"
    )
    lr_warmup_steps: int = Field(0, ge=0, description="warm-up steps of the scheduler")
    weight_decay: float = Field(1e-2, ge=0, description="AdamW weight decay")
    use_8bit_adam: bool = Field(
        False, description="bitsandbytes' 8-bit AdamW (CUDA; needs bitsandbytes installed, else the stage stops): "
        "a quarter of AdamW's state memory, which for a LoRA is small anyway",
    )
    snr_gamma: float | None = Field(5.0, gt=0, description="Min-SNR loss weighting gamma; null: plain MSE")
    noise_offset: float = Field(0.05, ge=0, description="per-channel noise offset (learns overall brightness)")
    prompt_dropout: float = Field(0.1, ge=0, lt=1, description="share of empty prompts (classifier-free guidance)")
    balance_by: list[Literal["fst", "label"]] = Field(["fst", "label"], description="cells the sampler balances")
    balance_power: float = Field(1.0, ge=0, le=1, description="0: data distribution, 1: every cell equally likely")
    ema: EmaConfig = Field(default_factory=EmaConfig)
    mixed_precision: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32", description="training precision: fp16/bf16 run the forward passes under accelerate's autocast "
        "(bf16: Ampere or newer, or CPU; fp16: CUDA only, with loss scaling)",
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute UNet (and, with the perceptual loss, VAE decoder) activations in the backward "
        "pass: about half the activation memory for ~25% longer steps",
    )
    channels_last: bool = Field(
        False, description="UNet weights and activations in channels-last memory format (faster convolutions on "
        "CUDA tensor cores; float rounding may differ)",
    )
    compile: bool = Field(
        False, description="torch.compile the UNet (minutes of compilation, then faster steps on a GPU)"
    )
    perceptual_loss: PerceptualLossConfig = Field(default_factory=PerceptualLossConfig)
    cache_latents: bool = Field(
        True, description="encode every train image once (as is and mirrored) instead of every step; costs 4 latents of memory per image"
    )
    dataloader_num_workers: int = Field(
        0, ge=0, description="DataLoader worker processes decoding train images: for the latent cache, and each step's batch when latents are not cached or the perceptual loss is on (0: none)"
    )
    checkpoint_every: int = Field(100, gt=0, description="steps between resumable checkpoints")
    checkpoint_limit: int = Field(2, gt=0, description="checkpoints kept (oldest deleted)")
    validate_every: int = Field(
        150, gt=0, description="steps between validations (validation loss, sample grid and its scores)"
    )
    validation_images: int = Field(64, gt=0, description="validation images in the validation loss")
    select_by: Literal["samples", "val_loss"] = Field(
        "samples", description="which validation's LoRA is shipped (pytorch_lora_weights.safetensors; the last "
        "step's is _latest) and what early stopping waits for. samples: the grid of every label x FST (one seed "
        "each) scored by the filter's classifier (classifier/real, never the evaluator): the highest label "
        "confidence among validations whose KID to the real val split is no worse than the base model's "
        "(step 0); val_loss: the lowest validation loss",
    )
    early_stopping_patience: int | None = Field(
        None, gt=0, description="stop after this many validations without improvement of select_by; null: never"
    )
    sample_steps: int = Field(12, gt=0, description="sampler steps of the validation grids (as generate.steps)")
    guidance_scale: float = Field(5.0, ge=1, description="classifier-free guidance of the validation grids")
    export_kohya: bool = Field(False, description="also write the LoRA in kohya/webui key format")
    seed: int = Field(0, description="training seed")
