"""DVC stage base_model@<dataset>: pretrain the tiny base (tiny profile) or record a pinned hub/local one."""

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
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="outputs/<dataset>/prepared")
    parser.add_argument("--out", type=Path, required=True, help="outputs/<dataset>/models/base")
    args = parser.parse_args()
    base_model(load_params(), args.dataset, args.prepared, args.out)


if __name__ == "__main__":
    main()
