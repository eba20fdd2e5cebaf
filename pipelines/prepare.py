"""DVC stage prepare@<dataset>: validate the raw data, write manifest.parquet and the validation report,
and the train split for the shared base model."""

from __future__ import annotations

import argparse
from pathlib import Path

from fairaug.errors import exit_on_user_error
from fairaug.config import load_params
from fairaug.data.stage import prepare
from fairaug.progress import quiet_library_bars


@exit_on_user_error
def main() -> None:
    quiet_library_bars()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", type=Path, required=True, help="outputs/<dataset>/prepared")
    parser.add_argument("--base-train", type=Path, required=True, help="outputs/base_train/<dataset>.parquet")
    args = parser.parse_args()
    prepare(load_params(), args.dataset, args.out, args.base_train)


if __name__ == "__main__":
    main()
