"""The training loops' AdamW: fused on CPU, and the same updates as torch's reference loop; 8-bit AdamW
from bitsandbytes or a clear error."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from fairaug.diffusion.optim import adamw, lora_optimizer
from fairaug.errors import ConfigError


def _train(make_optimizer, steps: int = 5) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.SiLU(), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 8, 8))  # materialise the lazy layer before the optimizer sees it
    optimizer = make_optimizer(model.parameters())
    for batch in torch.randn(steps, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1)):
        optimizer.zero_grad()
        model(batch).square().mean().backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def test_adamw_is_fused_on_cpu_and_matches_the_reference_loop():
    optimizer = adamw(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    assert optimizer.defaults["fused"] is True
    fused = _train(lambda params: adamw(params, lr=1e-2, weight_decay=0.1))
    reference = _train(lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1, foreach=False))
    for ours, theirs in zip(fused, reference, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    untrained = _train(lambda params: adamw(params, lr=1e-2), steps=0)
    assert all((ours - initial).abs().max() > 1e-3 for ours, initial in zip(fused, untrained, strict=True))


def test_8bit_adam_is_bitsandbytes_or_one_line_never_a_quiet_fallback(monkeypatch):
    params = list(torch.nn.Linear(2, 2).parameters())
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # not installed
    with pytest.raises(ConfigError, match="train_lora.use_8bit_adam: bitsandbytes is not installed"):
        lora_optimizer(params, lr=1e-3, weight_decay=0.0, use_8bit_adam=True)
    assert isinstance(lora_optimizer(params, lr=1e-3, weight_decay=0.0), torch.optim.AdamW)

    class AdamW8bit(torch.optim.AdamW):  # bitsandbytes' class, as far as the call goes
        pass

    installed = types.ModuleType("bitsandbytes")
    installed.optim = types.SimpleNamespace(AdamW8bit=AdamW8bit)
    monkeypatch.setitem(sys.modules, "bitsandbytes", installed)
    optimizer = lora_optimizer(params, lr=1e-3, weight_decay=0.1, use_8bit_adam=True)
    assert type(optimizer) is AdamW8bit and optimizer.defaults["weight_decay"] == 0.1
