"""Time of the tiny base's VAE phase with its perceptual loss (`base.pretrain.vae_perceptual_weight`:
the prompt network trained first, then every VAE step also through that network) vs without it, side
by side in this process: the same images, VAE steps and draws; the network's steps in the defaults'
proportion to the VAE's (`perceptual_net_steps` / `vae_steps`).
Value: with / without seconds.
"""

from __future__ import annotations

import time

import numpy as np

from fairaug.config import Params
from fairaug.config.diffusion import BaseConfig, PretrainConfig
from fairaug.diffusion.base import build_tiny_pipeline
from fairaug.diffusion.pretrain import GenericSkinImages, train_perceptual_net, train_vae

from _report import best_of_alternating, report
from _smoke import sizes
from _tiny import tiny_tokenizer

VAE_STEPS, REPEATS, IMAGES = sizes((200, 3, 256), (2, 1, 16))


def vae_phase(config: PretrainConfig, images: GenericSkinImages, tokenizer) -> float:
    vae = build_tiny_pipeline(BaseConfig(pretrain=config), tokenizer).vae
    weights = np.full(len(images), 1 / len(images))
    start = time.perf_counter()
    perceptual = None
    if config.vae_perceptual_weight > 0:
        perceptual, _ = train_perceptual_net(images.pixels, images.prompts, weights, config, progress=False)
    train_vae(vae, images.pixels, weights, config, progress=False, perceptual=perceptual)
    return time.perf_counter() - start


def main() -> None:
    tokenizer = tiny_tokenizer()
    images = GenericSkinImages(IMAGES, 32, Params().prompts.templates["skin"], seed=0)
    default = PretrainConfig()
    net_steps = max(1, round(VAE_STEPS * default.perceptual_net_steps / default.vae_steps))
    without = PretrainConfig(vae_steps=VAE_STEPS, vae_perceptual_weight=0.0)
    with_loss = without.model_copy(update={"vae_perceptual_weight": default.vae_perceptual_weight,
                                           "perceptual_net_steps": net_steps})
    without_s, with_s = best_of_alternating(lambda: vae_phase(without, images, tokenizer),
                                            lambda: vae_phase(with_loss, images, tokenizer), REPEATS)
    ratio = with_s / without_s
    print(f"{VAE_STEPS} VAE steps (+ {net_steps} network steps): with {with_s:.2f} s, without {without_s:.2f} s")
    report("vae_perceptual", ratio, "with/without s of the VAE phase", "<= 1.50")


if __name__ == "__main__":
    main()
