"""Compare two pipeline output trees (e.g. `outputs/` of `make demo` before and after a refactor).

    python scripts/compare_outputs.py BEFORE/outputs AFTER/outputs

Files are compared by content, not bytes where the bytes carry more than the content: parquet as
tables, safetensors as tensors (exact), JSON as values (NaN equals NaN). Checkpoint directories and
the keys and files that hold run ids or times are left out (`IGNORED_PATHS`, `IGNORED_KEYS`). Prints
each difference and exits 1 when there is one, 0 when the trees hold the same results.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from pathlib import Path

import pandas as pd
from safetensors.torch import load_file

IGNORED_PATHS = ("*/checkpoints/*", "*/.fairaug-*", "*.lock", "*/tmp*")  # resume state, temp files
IGNORED_KEYS = ("run_id", "experiment_id", "created", "duration_s", "seconds")  # vary run to run


def same_json(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        keep = lambda d: {k: v for k, v in d.items() if k not in IGNORED_KEYS}  # noqa: E731
        a, b = keep(a), keep(b)
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def same_content(a: Path, b: Path) -> bool:
    if a.suffix == ".parquet":
        try:
            pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b), check_exact=True)
        except AssertionError:
            return False
        return True
    if a.suffix == ".safetensors":
        left, right = load_file(str(a)), load_file(str(b))
        return left.keys() == right.keys() and all(left[k].equal(right[k]) for k in left)
    if a.suffix == ".json":
        return same_json(json.loads(a.read_text()), json.loads(b.read_text()))
    return a.read_bytes() == b.read_bytes()


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
            and not any(fnmatch.fnmatch("/" + str(p.relative_to(root)), pattern) for pattern in IGNORED_PATHS)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    before, after = files(args.before), files(args.after)
    problems = [f"only in {args.before}: {name}" for name in sorted(before - after)]
    problems += [f"only in {args.after}: {name}" for name in sorted(after - before)]
    common = sorted(before & after)
    problems += [f"differs: {name}" for name in common if not same_content(args.before / name, args.after / name)]
    print("\n".join(problems) if problems else f"same results: {len(common)} files compared")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
