"""`dvc status` on a 60k-image synthetic set: plain PNG files vs parquet shards of 64 images
(the generate stage's storage), each tracked by `dvc add` in its own repo, side by side.
Value: shards' status time over plain files' (below 1: shards are faster)."""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fairaug.data.storage import write_shard
from _report import report
from _smoke import sizes

N_IMAGES, SHARD_SIZE = int(os.environ.get("BENCH_N_IMAGES", sizes(60_000, 200))), 64
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1"}


def dvc(*args: str, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["dvc", *args], cwd=cwd, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - start


def repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    dvc("init", "-q", cwd=path)
    return path


def main() -> None:
    rng = np.random.default_rng(0)
    pngs = []
    for _ in range(N_IMAGES):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    with tempfile.TemporaryDirectory() as tmp:
        files, shards = repo(Path(tmp) / "files"), repo(Path(tmp) / "shards")
        for i, png in enumerate(pngs):
            target = files / "synthetic" / f"{i % 100:02d}" / f"{i:06d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png)
        for shard, first in enumerate(range(0, N_IMAGES, SHARD_SIZE)):
            rows = pd.DataFrame({"id": [f"{i:06d}" for i in range(first, min(first + SHARD_SIZE, N_IMAGES))]})
            write_shard(shards / "synthetic" / f"shard-{shard:06d}.parquet", rows, pngs[first : first + len(rows)], "b")
        add_files, add_shards = dvc("add", "synthetic", cwd=files), dvc("add", "synthetic", cwd=shards)
        status_files = min(dvc("status", cwd=files) for _ in range(3))
        status_shards = min(dvc("status", cwd=shards) for _ in range(3))
    ratio = status_shards / status_files
    print(f"{N_IMAGES} images: dvc add {add_files:.1f} s (files) vs {add_shards:.1f} s (shards); "
          f"dvc status {status_files:.2f} s vs {status_shards:.2f} s")
    report("dvc_status", ratio, "shards/files status time", "<= 0.50")


if __name__ == "__main__":
    main()
