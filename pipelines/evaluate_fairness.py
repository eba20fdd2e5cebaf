"""DVC stage evaluate_fairness@<dataset>: fairness.json (DVC metrics, the headline numbers),
fairness_detail.json (per-FST values and the rest) and per-FST plots from the real-only classifier
and, once it exists, the augmented one (with deltas)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fairaug.errors import exit_on_user_error
from fairaug.config import load_params
from fairaug.fairness.evaluation import evaluate_fairness
from fairaug.progress import quiet_library_bars


@exit_on_user_error
def main() -> None:
    quiet_library_bars()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--real", type=Path, required=True, help="outputs/<dataset>/classifier/real")
    parser.add_argument("--augmented", type=Path, help="outputs/<dataset>/classifier/augmented")
    parser.add_argument("--out", type=Path, required=True, help="outputs/<dataset>/metrics/fairness.json")
    args = parser.parse_args()
    evaluate_fairness(load_params(), args.dataset, args.real, args.augmented, args.out)


if __name__ == "__main__":
    main()
