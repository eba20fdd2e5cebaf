"""The optimizers of the diffusion training loops."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 1e-2) -> torch.optim.AdamW:
    """torch's AdamW, fused (one kernel over all parameters) where the parameters' device has the fused
    kernel: the default per-parameter loop was a tenth of a tiny-profile CPU training step."""
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
                for p in params)  # fmt: skip
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def lora_optimizer(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float,
                   use_8bit_adam: bool = False) -> torch.optim.Optimizer:
    """`adamw`, or bitsandbytes' 8-bit AdamW when asked for and installed (a warning when it is not)."""
    if use_8bit_adam:
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
        except ImportError:
            import warnings

            warnings.warn("use_8bit_adam: bitsandbytes is not installed, using torch AdamW", stacklevel=2)
    return adamw(params, lr=lr, weight_decay=weight_decay)
