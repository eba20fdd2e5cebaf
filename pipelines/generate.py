"""DVC stage generate@<dataset>: an FST-balanced synthetic set from the LoRA, filtered (resumable).

Runs as `python pipelines/generate.py ...` or under `accelerate launch [--cpu --num_processes N]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fairaug.errors import exit_on_user_error
from fairaug.config import load_params
from fairaug.generation.stage import generate_synthetic
from fairaug.progress import quiet_library_bars


@exit_on_user_error
def main() -> None:
    quiet_library_bars()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="outputs/<dataset>/prepared")
    parser.add_argument("--base", type=Path, required=True, help="outputs/models/base (one for every data set)")
    parser.add_argument("--lora", type=Path, required=True, help="outputs/<dataset>/models/lora")
    parser.add_argument("--classifier", type=Path, help="outputs/<dataset>/classifier/real (confidence filter)")
    parser.add_argument("--out", type=Path, required=True, help="outputs/<dataset>/synthetic")
    args = parser.parse_args()
    generate_synthetic(load_params(), args.dataset, args.prepared, args.base, args.lora, args.classifier, args.out)


if __name__ == "__main__":
    main()
