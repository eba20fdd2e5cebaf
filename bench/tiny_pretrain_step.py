"""Time per step of the tiny base's UNet pretraining: the tiny SD as it was vs as it is now.

Before: attention at the full 16x16 latent resolution with 2-channel heads (16 and 32 heads), a
(32, 64) VAE, and every batch encoded by the VAE every step. Now: `build_tiny_pipeline` (a
(16, 32, 32) VAE, so 8x8 latents; attention below the full latent resolution only, 32-channel
heads) and `pretrain.train_unet`, which encodes each image once (`PosteriorCache`, outside the timed
steps). Same images, batch and step count, side by side in this process.
Value: now / before seconds per step.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from fairaug.config import Params
from fairaug.config.diffusion import BaseConfig, PretrainConfig
from fairaug.diffusion.base import build_tiny_pipeline
from fairaug.diffusion.data import hflip
from fairaug.diffusion.loss import denoising_loss, draw_step_noise, encode_latents
from fairaug.diffusion.pretrain import GenericSkinImages, encode_with_unit_variance, train_unet

from _report import best_of_alternating, report
from _smoke import sizes
from _tiny import tiny_tokenizer

STEPS, REPEATS, IMAGES = sizes((20, 3, 256), (2, 1, 32))


def pipeline_before(tokenizer):
    """The tiny SD of the previous release, written out with diffusers' own classes."""
    pipeline = build_tiny_pipeline(BaseConfig(), tokenizer)
    pipeline.vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                 block_out_channels=(32, 64), layers_per_block=1, latent_channels=4,
                                 norm_num_groups=8, sample_size=32, mid_block_add_attention=False)
    pipeline.unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), mid_block_type=None, block_out_channels=(32, 64),
        layers_per_block=1, norm_num_groups=8, cross_attention_dim=32, attention_head_dim=(16, 32))
    return pipeline


def before(pipeline, pixels: torch.Tensor, token_ids: torch.Tensor, config: PretrainConfig) -> float:
    unet, text_encoder, vae = pipeline.unet, pipeline.text_encoder, pipeline.vae
    parameters = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=config.unet_lr)
    rng = np.random.default_rng(0)
    start = 0.0
    for step in range(STEPS + 1):
        if step == 1:  # the first step warms up allocators
            start = time.perf_counter()
        indices = rng.choice(len(pixels), config.unet_batch_size)
        draws = draw_step_noise(0, step, len(indices), (4, 16, 16), 1000)
        latents = encode_latents(vae, hflip(pixels[indices], draws.flip), draws.latent_noise)
        loss = denoising_loss(unet, pipeline.scheduler, latents, text_encoder(token_ids[indices])[0], draws.noise,
                              draws.timesteps, snr_gamma=5.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / STEPS


def now(pipeline, pixels: torch.Tensor, prompts: list[str], config: PretrainConfig) -> float:
    """train_unet's own progress is not exposed per step: time 1 and STEPS + 1 steps, take the difference."""
    weights = np.full(len(pixels), 1 / len(pixels))
    posteriors = encode_with_unit_variance(pipeline.vae, pixels, config.seed, progress=False)
    elapsed = []
    for steps in (1, STEPS + 1):
        start = time.perf_counter()
        train_unet(pipeline, posteriors, prompts, weights, config.model_copy(update={"unet_steps": steps}),
                   progress=False)
        elapsed.append(time.perf_counter() - start)
    return (elapsed[1] - elapsed[0]) / STEPS


def main() -> None:
    tokenizer = tiny_tokenizer()
    images = GenericSkinImages(IMAGES, 32, Params().prompts.templates["skin"], seed=0)
    prompts = images.prompts
    token_ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                          truncation=True, return_tensors="pt").input_ids
    config = PretrainConfig(vae_steps=0)
    before_s, now_s = best_of_alternating(
        lambda: before(pipeline_before(tokenizer), images.pixels, token_ids, config),
        lambda: now(build_tiny_pipeline(BaseConfig(), tokenizer), images.pixels, prompts, config), REPEATS)
    ratio = now_s / before_s
    print(f"s/step at batch {config.unet_batch_size}: now {now_s:.4f}, before {before_s:.4f}")
    report("tiny_pretrain_step", ratio, "now/before s per step", "<= 0.50")


if __name__ == "__main__":
    main()
