"""The denoising objective shared by base pretraining and LoRA training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_snr


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    tokens = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                       truncation=True, return_tensors="pt")
    return text_encoder(tokens.input_ids.to(text_encoder.device))[0]


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Scaled VAE latents, sampled with ``generator`` so that a step is reproducible."""
    distribution = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
    noise = torch.randn(distribution.mean.shape, generator=generator).to(distribution.mean)
    return (distribution.mean + distribution.std * noise) * vae.config.scaling_factor


def denoising_loss(
    unet,
    noise_scheduler,
    latents: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    generator: torch.Generator,
    snr_gamma: float | None = None,
    noise_offset: float = 0.0,
) -> torch.Tensor:
    """MSE between the UNet's prediction and its target at random timesteps.

    ``snr_gamma`` weights each sample by min(SNR, gamma) / SNR (Min-SNR, Hang et al. 2023), so that
    easy low-noise timesteps do not dominate. ``noise_offset`` adds per-channel constant noise, which
    lets the model learn overall brightness (dark skin) instead of pinning images to mid-grey.
    """
    batch = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((batch, latents.shape[1], 1, 1), generator=generator)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=generator)
    noise, timesteps = noise.to(latents), timesteps.to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    prediction = unet(noisy, timesteps, encoder_hidden_states).sample
    if snr_gamma is None:
        return F.mse_loss(prediction.float(), target.float())
    snr = compute_snr(noise_scheduler, timesteps)
    clipped = torch.clamp(snr, max=snr_gamma)
    weights = clipped / (snr + 1) if noise_scheduler.config.prediction_type == "v_prediction" else clipped / snr
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weights).mean()
