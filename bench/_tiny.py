"""Shared bench setup: a tiny SD pipeline built from config (random weights), saved as a base dir."""

from __future__ import annotations

from pathlib import Path

from fairaug.config import Params
from fairaug.config.diffusion import BaseConfig
from fairaug.diffusion.base import build_tiny_pipeline, save_tiny_base
from fairaug.diffusion.prompts import all_prompts
from fairaug.diffusion.tokenizer import build_tokenizer

TEMPLATE = Params().prompts.templates["derm"]


def tiny_tokenizer():
    return build_tokenizer(all_prompts(Params().prompts.templates, {"derm": ["mel", "nv", "bkl"]}))


def tiny_base(out: Path) -> Path:
    save_tiny_base(build_tiny_pipeline(BaseConfig(), tiny_tokenizer()), out)
    return out
