"""prepare's image scan (decode, sha256, pHash, ITA) with a thread pool vs a plain sequential loop.

Both run side by side in this process on the same fixture images; the ratio is pool time over loop
time (below 1 means the pool is faster).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd

from fairaug.data.fixtures import write_derm_fixture
from fairaug.data.scan import scan_image, scan_images
from _report import report
from _smoke import sizes

N_IMAGES, SIZE, REPEATS = sizes((300, 128, 3), (20, 64, 1))


def best_of(func, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_derm_fixture(Path(tmp) / "derm", n=N_IMAGES, seed=0, size=SIZE)
        metadata = pd.read_csv(root / "HAM10000_metadata.csv")
        paths = pd.Series([str(next(root.glob(f"*/{i}.jpg")).relative_to(root)) for i in metadata["image_id"]])
        pooled = scan_images(root, paths)
        looped = pd.DataFrame([scan_image(root, p) for p in paths], index=paths.index)
        assert pooled.equals(looped[pooled.columns]), "the pool must give the loop's results"
        loop_s = best_of(lambda: [scan_image(root, p) for p in paths])
        pool_s = best_of(lambda: scan_images(root, paths))
    ratio = pool_s / loop_s
    print(f"{N_IMAGES} images at {SIZE} px: loop {loop_s:.2f} s, pool {pool_s:.2f} s")
    report("scan_images", ratio, "pool/loop time", "<= 1.00")


if __name__ == "__main__":
    main()
