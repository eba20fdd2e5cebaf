"""Prompts built from per-domain templates: the same words at training and at generation time."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from fairaug.labels import HAM10000_DX, WOUND_PHASES
from fairaug.skin.types import FST_ROMAN, FST_UNKNOWN, FST_VALUES

LABEL_NAMES: dict[str, dict[str, str]] = {"derm": HAM10000_DX, "wound": WOUND_PHASES, "skin": {}}


def label_name(domain: str, label: str) -> str:
    """The words for a label (``mel`` -> ``melanoma``); unknown labels stand for themselves."""
    return LABEL_NAMES.get(domain, {}).get(label, label)


def build_prompt(template: str, domain: str, label: str, fst: int) -> str:
    return template.format(fst=FST_ROMAN[int(fst)], label_name=label_name(domain, label), label=label)


def promptable(rows: pd.DataFrame) -> pd.DataFrame:
    """The manifest rows a prompt can describe: an image of unknown FST has no words for its skin type,
    so it is left out of diffusion training (the classifiers still use it)."""
    return rows[rows["fst"] != FST_UNKNOWN]


def all_prompts(templates: dict[str, str], domain_labels: dict[str, Iterable[str]]) -> list[str]:
    """Every prompt the templates can make for these labels and all six FSTs (the tokenizer's corpus)."""
    prompts = []
    for domain, template in templates.items():
        for label in domain_labels.get(domain, [""]):
            prompts.extend(build_prompt(template, domain, label, fst) for fst in FST_VALUES)
    return prompts
