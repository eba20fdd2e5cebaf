"""DVC stages train_classifier@<dataset>-real, train_evaluator@<dataset> and
train_classifier_augmented@<dataset>: the downstream classifier whose per-FST quality measures the
effect of synthetic augmentation (real: the real train split only; augmented: plus kept synthetic
images mixed by params `mix`), and the evaluator (the real train split, its own seed) that grades
synthetic images in evaluate_quality, which the generate filter never sees."""

from __future__ import annotations

import argparse
from pathlib import Path

from fairaug.errors import exit_on_user_error
from fairaug.config import load_params
from fairaug.fairness.stage import train_augmented_classifier, train_evaluator, train_real_classifier
from fairaug.progress import quiet_library_bars


@exit_on_user_error
def main() -> None:
    quiet_library_bars()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--variant", choices=["real", "evaluator", "augmented"], required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="outputs/<dataset>/prepared")
    parser.add_argument("--synthetic", type=Path, help="augmented: outputs/<dataset>/synthetic (default)")
    parser.add_argument("--out", type=Path, required=True, help="outputs/<dataset>/classifier/<variant>")
    args = parser.parse_args()

    params = load_params()
    if args.variant == "augmented":
        synthetic = args.synthetic or Path("outputs", args.dataset, "synthetic")
        train_augmented_classifier(params, args.dataset, args.prepared, synthetic, args.out)
    elif args.variant == "evaluator":
        train_evaluator(params, args.dataset, args.prepared, args.out)
    else:
        train_real_classifier(params, args.dataset, args.prepared, args.out)


if __name__ == "__main__":
    main()
