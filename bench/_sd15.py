"""Shared GPU bench setup: a Stable Diffusion 1.5-sized pipeline built from SD 1.5's configs (written
out here, random weights: nothing is downloaded), and the skip line for machines without CUDA."""

from __future__ import annotations

import json

import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

# stable-diffusion-v1-5 unet/config.json, vae/config.json, text_encoder/config.json, scheduler (the sizes
# and layout that set the cost; ~860 M + 84 M + 123 M parameters)
UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, act_fn="silu", norm_eps=1e-5,
            downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, center_input_sample=False)  # fmt: skip
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
           block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, act_fn="silu", scaling_factor=0.18215)
TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                 clip_sample=False, prediction_type="epsilon", steps_offset=1)
TOKENS = 77  # SD's prompt length: the cross-attention cost


def sd15_pipeline(tokenizer) -> StableDiffusionPipeline:
    """SD 1.5's architecture with random weights (fp32, CPU) and ``tokenizer`` padded to 77 tokens."""
    torch.manual_seed(0)
    tokenizer.model_max_length = TOKENS
    return StableDiffusionPipeline(
        vae=AutoencoderKL(**VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**TEXT)), tokenizer=tokenizer,
        unet=UNet2DConditionModel(**UNET), scheduler=DDPMScheduler(**SCHEDULER), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )


def skip_without_cuda(bench: str, unit: str, target: str) -> bool:
    """On a machine without CUDA: say so in one line, print the skipped result line, return True."""
    if torch.cuda.is_available():
        return False
    print(f"{bench}: skipped, no CUDA device (needs a GPU: SD 1.5 at 512 px)")
    print(json.dumps({"bench": bench, "value": None, "unit": unit, "target": target, "holds": None,
                      "skipped": "no CUDA device"}))
    return True
