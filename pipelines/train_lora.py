"""DVC stage train_lora@<dataset>: FST-balanced LoRA fine-tuning of the base model (resumable), its
validation grids judged by the filter's classifier.

Runs as `python pipelines/train_lora.py ...` or under `accelerate launch [--cpu --num_processes N]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fairaug.errors import exit_on_user_error
from fairaug.config import load_params
from fairaug.diffusion.stage import train_lora
from fairaug.generation.validation import validation_judge
from fairaug.progress import quiet_library_bars


@exit_on_user_error
def main() -> None:
    quiet_library_bars()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="outputs/<dataset>/prepared")
    parser.add_argument("--base", type=Path, required=True, help="outputs/models/base (one for every data set)")
    parser.add_argument("--classifier", type=Path, required=True,
                        help="outputs/<dataset>/classifier/real: the filter's classifier, judge of the samples")
    parser.add_argument("--out", type=Path, required=True, help="outputs/<dataset>/models/lora")
    parser.add_argument("--resume", default="latest", help="'latest' (default), 'none', or a checkpoint directory")
    args = parser.parse_args()
    resume = None if args.resume == "none" else args.resume
    params = load_params()
    judge = validation_judge(params, args.dataset, args.prepared, args.classifier)
    train_lora(params, args.dataset, args.prepared, args.base, args.out, resume, judge)


if __name__ == "__main__":
    main()
