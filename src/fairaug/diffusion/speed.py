"""Speed and memory options of the GPU path, shared by train_lora and generate.

At their defaults they touch nothing, so CPU results stay bit-identical. An option that needs CUDA
stops a run on another device with one line, instead of failing deep inside or, like accelerate's
fp16 on a CPU, silently doing nothing. Attention needs no option: diffusers gives every attention
layer torch's scaled_dot_product_attention (AttnProcessor2_0: flash / memory-efficient kernels on
CUDA) and nothing in fairaug replaces it.
"""

from __future__ import annotations

import torch

from fairaug.errors import ConfigError


def require_cuda(option: str, device: torch.device | str, instead: str) -> None:
    """A ConfigError naming ``option`` and what to set ``instead``, unless ``device`` is a CUDA device."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ConfigError(f"{option} needs a CUDA device, this run is on {device.type}: set {instead} here, or run "
                          "on a GPU")


def speed_up(module: torch.nn.Module, channels_last: bool = False, compile: bool = False) -> torch.nn.Module:
    """``module`` in channels-last memory format and/or compiled in place (`torch.nn.Module.compile`:
    its state dict keys, and so saved LoRAs, stay as they are)."""
    if channels_last:
        module.to(memory_format=torch.channels_last)
    if compile:
        module.compile()
    return module
