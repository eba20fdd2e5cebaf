"""Progress bars on a terminal only: written into a log (DVC, CI, nohup, a pipe), every update of a
bar is one more '\\r' frame. One rule for every bar, ours and the libraries'."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm import tqdm  # not tqdm.auto: its asyncio bar calls iter() once more, which starts a DataLoader's workers twice


def bars_shown() -> bool:
    """Whether progress bars are drawn: only when stderr, where they go, is a terminal."""
    return sys.stderr.isatty()


def progress_bar(iterable: Iterable | None = None, *, hide: bool = False, **options) -> tqdm:
    """A tqdm bar (``options`` as tqdm's) drawn on a terminal only; ``hide`` hides it there too (a
    loop too short to watch, a worker process that is not the first)."""
    return tqdm(iterable, disable=hide or not bars_shown(), **options)


def quiet_library_bars() -> None:
    """The libraries' own bars under the same rule, off a terminal: MLflow's artifact transfers,
    Hugging Face Hub downloads, transformers' and diffusers' model loading. Called first thing by
    each entry point; the diffusers and transformers switches only where the caller already
    imported them (importing diffusers costs seconds)."""
    if bars_shown():
        return
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # read at each transfer
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when huggingface_hub is imported
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    for name in ("transformers.utils.logging", "diffusers.utils.logging"):
        if name in sys.modules:
            sys.modules[name].disable_progress_bar()
