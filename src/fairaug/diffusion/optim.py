"""The optimizer of every diffusion training loop."""

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
