"""DVC stage train_classifier@<dataset>-<variant>: the downstream classifier whose per-FST quality
measures the effect of synthetic augmentation (real: the real train split only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fairaug.cli import exit_on_user_error
from fairaug.config import load_params
from fairaug.errors import FairaugError
from fairaug.fairness.stages import train_real_classifier


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--variant", choices=["real", "augmented"], required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="outputs/<dataset>/prepared")
    parser.add_argument("--synthetic", type=Path, help="augmented: outputs/<dataset>/synthetic (default)")
    parser.add_argument("--out", type=Path, required=True, help="outputs/<dataset>/classifier/<variant>")
    args = parser.parse_args()

    if args.variant == "augmented":
        synthetic = args.synthetic or Path("outputs", args.dataset, "synthetic")
        if not synthetic.is_dir():
            raise FairaugError(f"--variant augmented needs the generate stage ({synthetic}), which has not run")
        raise FairaugError("--variant augmented: training on real + synthetic images is not implemented yet")
    train_real_classifier(load_params(), args.dataset, args.prepared, args.out)


if __name__ == "__main__":
    main()
