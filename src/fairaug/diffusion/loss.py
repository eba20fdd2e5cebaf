"""The denoising objective shared by base pretraining and LoRA training.

The random draws of a step (flips, latent sampling, noise, timesteps, prompt dropout) are made for
the whole global batch from a generator seeded by (seed, step) and then sliced per process, so a
step gives the same result on one process or several, and after a resume.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_snr

from fairaug.diffusion.data import step_generator
from fairaug.progress import progress_bar


@dataclass(frozen=True)
class StepNoise:
    """Everything random about one step, for every sample of the global batch."""

    flip: torch.Tensor  # (B,) bool: mirror the image
    latent_noise: torch.Tensor  # (B, C, h, w): sample of the VAE posterior
    noise: torch.Tensor  # (B, C, h, w): diffusion noise (with offset)
    timesteps: torch.Tensor  # (B,) int64
    drop_prompt: torch.Tensor  # (B,) bool: train unconditionally (classifier-free guidance)

    def slice(self, rank: int, world_size: int) -> StepNoise:
        """This process's share: samples rank, rank + world_size, ... (as the batch sampler slices)."""
        return StepNoise(**{f.name: getattr(self, f.name)[rank::world_size] for f in fields(self)})


def draw_step_noise(
    seed: int,
    step: int,
    batch_size: int,
    latent_shape: tuple[int, int, int],
    num_train_timesteps: int,
    noise_offset: float = 0.0,
    prompt_dropout: float = 0.0,
) -> StepNoise:
    generator = step_generator(seed, step, stream=1)
    channels = latent_shape[0]
    noise = torch.randn((batch_size, *latent_shape), generator=generator)
    offset = torch.randn((batch_size, channels, 1, 1), generator=generator)
    return StepNoise(
        flip=torch.rand(batch_size, generator=generator) < 0.5,
        latent_noise=torch.randn((batch_size, *latent_shape), generator=generator),
        # noise offset: per-channel constant noise lets the model learn overall brightness (dark skin)
        # instead of pinning every image to mid-grey
        noise=noise + noise_offset * offset,
        timesteps=torch.randint(0, num_train_timesteps, (batch_size,), generator=generator),
        drop_prompt=torch.rand(batch_size, generator=generator) < prompt_dropout,
    )


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    tokens = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                       truncation=True, return_tensors="pt")
    return text_encoder(tokens.input_ids.to(text_encoder.device))[0]


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, latent_noise: torch.Tensor) -> torch.Tensor:
    """Scaled VAE latents: a posterior sample with the given standard-normal noise."""
    distribution = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
    sample = distribution.mean + distribution.std * latent_noise.to(distribution.mean)
    return sample * vae.config.scaling_factor


class PosteriorCache:
    """The VAE posterior (mean, std) of every training image, as is and mirrored, encoded once.

    The VAE is frozen while the UNet trains, so encoding each batch again every step repeats the same
    work (a sixth of a tiny-profile step). A step still draws a fresh posterior sample from the cached
    mean and std, so `latents` equals `encode_latents` of the (flipped) pixels up to float rounding.
    Memory: 2 orientations x (mean, std) x one latent per image, kept on the CPU.
    """

    def __init__(self, vae, pixel_batches: Iterable[torch.Tensor], total: int | None = None, progress: bool = True):
        means, stds = [], []
        with torch.no_grad():
            for pixels in progress_bar(pixel_batches, total=total, desc="encode latents", unit="batch",
                                       hide=not progress):
                pixels = pixels.to(vae.device, vae.dtype)
                posteriors = [vae.encode(view).latent_dist for view in (pixels, pixels.flip(-1))]
                means.append(torch.stack([p.mean.float().cpu() for p in posteriors]))
                stds.append(torch.stack([p.std.float().cpu() for p in posteriors]))
        self.mean, self.std = torch.cat(means, dim=1), torch.cat(stds, dim=1)  # (orientation, image, C, h, w)
        self.scaling_factor = vae.config.scaling_factor

    def __len__(self) -> int:
        return self.mean.shape[1]

    def latents(self, indices: torch.Tensor, flip: torch.Tensor, latent_noise: torch.Tensor) -> torch.Tensor:
        """Scaled posterior samples of images ``indices`` (mirrored where ``flip``), as `encode_latents`."""
        orientation, indices = flip.long(), torch.as_tensor(indices)
        mean, std = self.mean[orientation, indices], self.std[orientation, indices]
        return (mean + std * latent_noise.to(mean)) * self.scaling_factor


def denoise(unet, noise_scheduler, latents: torch.Tensor, encoder_hidden_states: torch.Tensor, noise: torch.Tensor,
            timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The noisy latents of a step, the UNet's prediction on them and its target (noise, or velocity for
    v-prediction)."""
    noise, timesteps = noise.to(latents), timesteps.to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    v_prediction = noise_scheduler.config.prediction_type == "v_prediction"
    target = noise_scheduler.get_velocity(latents, noise, timesteps) if v_prediction else noise
    prediction = unet(noisy, timesteps, encoder_hidden_states).sample
    return noisy, prediction, target


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, noise_scheduler, timesteps: torch.Tensor,
                 snr_gamma: float | None = None) -> torch.Tensor:
    """MSE between prediction and target; ``snr_gamma`` weights each sample by min(SNR, gamma) / SNR
    (Min-SNR, Hang et al. 2023), so that easy low-noise timesteps do not dominate the gradient."""
    if snr_gamma is None:
        return F.mse_loss(prediction.float(), target.float())
    timesteps = timesteps.to(prediction.device)
    snr = compute_snr(noise_scheduler, timesteps)
    clipped = torch.clamp(snr, max=snr_gamma)
    v_prediction = noise_scheduler.config.prediction_type == "v_prediction"
    weights = clipped / (snr + 1) if v_prediction else clipped / snr
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weights).mean()


def denoising_loss(
    unet,
    noise_scheduler,
    latents: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """`weighted_mse` of the UNet's prediction of a step (`denoise`)."""
    _, prediction, target = denoise(unet, noise_scheduler, latents, encoder_hidden_states, noise, timesteps)
    return weighted_mse(prediction, target, noise_scheduler, timesteps, snr_gamma)


def predicted_original(noise_scheduler, noisy: torch.Tensor, prediction: torch.Tensor,
                       timesteps: torch.Tensor) -> torch.Tensor:
    """The clean latents x0 that the UNet's prediction implies (DDPMScheduler.step's pred_original_sample,
    for a whole batch of timesteps): with a = alphas_cumprod[t], x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)
    for epsilon prediction, x0 = sqrt(a) x_t - sqrt(1 - a) v for v-prediction."""
    alphas = noise_scheduler.alphas_cumprod.to(noisy.device)[timesteps.to(noisy.device)].float()
    alphas = alphas.view(-1, *([1] * (noisy.dim() - 1)))
    noisy, prediction = noisy.float(), prediction.float()
    if noise_scheduler.config.prediction_type == "v_prediction":
        return alphas.sqrt() * noisy - (1 - alphas).sqrt() * prediction
    if noise_scheduler.config.prediction_type == "epsilon":
        return (noisy - (1 - alphas).sqrt() * prediction) / alphas.sqrt()
    raise ValueError(f"no x0 formula for prediction_type {noise_scheduler.config.prediction_type!r}")


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] (not clamped: the gradient flows back through the frozen VAE decoder)."""
    return vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample
