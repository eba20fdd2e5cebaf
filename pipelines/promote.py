"""DVC stage promote@<dataset>: register the LoRA in the MLflow model registry (once per LoRA), judge
it by the gates of params `promote` over quality.json and fairness.json (with their detail files
beside them), move the `champion` / `challenger` aliases and write promotion.json (DVC metrics)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fairaug.errors import exit_on_user_error
from fairaug.config import load_params
from fairaug.progress import quiet_library_bars
from fairaug.registry.stage import promote


@exit_on_user_error
def main() -> None:
    quiet_library_bars()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--quality", type=Path, required=True, help="outputs/<dataset>/metrics/quality.json")
    parser.add_argument("--fairness", type=Path, required=True, help="outputs/<dataset>/metrics/fairness.json")
    parser.add_argument("--lora", type=Path, required=True, help="outputs/<dataset>/models/lora")
    parser.add_argument("--base", type=Path, required=True, help="outputs/models/base (one for every data set)")
    parser.add_argument("--out", type=Path, required=True, help="outputs/<dataset>/metrics/promotion.json")
    args = parser.parse_args()
    outcome = promote(load_params(), args.dataset, args.quality, args.fairness, args.lora, args.base, args.out)
    print(f"{args.dataset}: version {outcome.version} {outcome.verdict.decision}: {outcome.verdict.reason}")


if __name__ == "__main__":
    main()
