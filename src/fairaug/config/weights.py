"""Params of pretrained weights fetched once on a connected machine (`fairaug weights fetch`)."""

from __future__ import annotations

from pydantic import Field

from fairaug.config.base import StrictModel


class WeightsConfig(StrictModel):
    cache_dir: str = Field(
        ".fairaug-weights",
        description="where `fairaug weights fetch` puts hub bases (huggingface/hub, the HF cache layout) and "
        "downloaded weights (torch/hub/checkpoints); relative to the project root, gitignored",
    )
