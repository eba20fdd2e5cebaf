"""The optimizers of the diffusion training loops."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from fairaug.errors import ConfigError


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 1e-2) -> torch.optim.AdamW:
    """torch's AdamW, fused (one kernel over all parameters) where the parameters' device has the fused
    kernel: the default per-parameter loop was a tenth of a tiny-profile CPU training step."""
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
                for p in params)  # fmt: skip
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def lora_optimizer(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float,
                   use_8bit_adam: bool = False) -> torch.optim.Optimizer:
    """`adamw`, or bitsandbytes' 8-bit AdamW when asked for. Without bitsandbytes that is a ConfigError,
    not a quiet fallback: the run would train with another optimizer than its recorded params say."""
    if not use_8bit_adam:
        return adamw(params, lr=lr, weight_decay=weight_decay)
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise ConfigError("train_lora.use_8bit_adam: bitsandbytes is not installed; `pip install bitsandbytes` "
                          "(CUDA), or set it false") from None
    return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
