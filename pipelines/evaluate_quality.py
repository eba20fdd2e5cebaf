"""DVC stage evaluate_quality@<dataset>: the quality report (FID, KID, IS, SSIM, LPIPS, diversity,
memorization, realness, FST fidelity, the evaluator's label confidence, overall and per FST) of the
synthetic set against the real train split: quality.json (DVC metrics, the headline numbers),
quality_detail.json (the rest) and quality_reasons.json for the metrics that are unavailable."""

from __future__ import annotations

import argparse
from pathlib import Path

from fairaug.errors import exit_on_user_error
from fairaug.config import load_params
from fairaug.metrics.stage import evaluate_quality
from fairaug.progress import quiet_library_bars


@exit_on_user_error
def main() -> None:
    quiet_library_bars()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="outputs/<dataset>/prepared")
    parser.add_argument("--synthetic", type=Path, required=True, help="outputs/<dataset>/synthetic")
    parser.add_argument("--evaluator", type=Path, required=True, help="outputs/<dataset>/classifier/evaluator")
    parser.add_argument("--out", type=Path, required=True, help="outputs/<dataset>/metrics/quality.json")
    args = parser.parse_args()
    evaluate_quality(load_params(), args.dataset, args.prepared, args.synthetic, args.evaluator, args.out)


if __name__ == "__main__":
    main()
