"""DVC stage base_model: pretrain the tiny base on every data set (tiny profile) or record a pinned hub/local one."""

from __future__ import annotations

import argparse
from pathlib import Path

from fairaug.errors import exit_on_user_error
from fairaug.config import load_params
from fairaug.diffusion.stage import base_model
from fairaug.progress import quiet_library_bars


@exit_on_user_error
def main() -> None:
    quiet_library_bars()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-splits", type=Path, required=True,
                        help="outputs/base_train: <dataset>.parquet of every data set")
    parser.add_argument("--out", type=Path, required=True, help="outputs/models/base")
    args = parser.parse_args()
    base_model(load_params(), args.train_splits, args.out)


if __name__ == "__main__":
    main()
