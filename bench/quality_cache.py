"""evaluate_quality's report with the real set's features cached (warm) vs computed (cold), side by
side in one process on the same data: a new synthetic set against a larger real set of larger
images (128 px; real profiles have 512 px), the usual case. Value: warm time over cold time (below
1: the cache saves that share; with Inception at 299 px the share is larger still)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _quality import real_synthetic_extractors  # noqa: E402
from _report import report  # noqa: E402
from _smoke import sizes  # noqa: E402

from fairaug.config.quality import EvaluateQualityConfig  # noqa: E402
from fairaug.metrics.features import FeatureCache  # noqa: E402
from fairaug.metrics.report import quality_report  # noqa: E402

N_REAL, REAL_SIZE, N_SYNTHETIC, SIZE, REPEATS = sizes((1000, 128, 150, 64, 3), (40, 64, 30, 64, 1))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        real, synthetic, extractors = real_synthetic_extractors(tmp, N_REAL, REAL_SIZE, N_SYNTHETIC, SIZE)
        config = EvaluateQualityConfig(n_bootstrap=20, cache_dir=str(tmp / "cache"))
        cold, warm = [], []
        for _ in range(REPEATS):
            shutil.rmtree(tmp / "cache", ignore_errors=True)
            start = time.perf_counter()
            first = quality_report(real, synthetic, extractors, config, FeatureCache(config.cache_dir))
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            again = quality_report(real, synthetic, extractors, config, FeatureCache(config.cache_dir))
            warm.append(time.perf_counter() - start)
            assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True), "the cache changed a value"
    ratio = min(warm) / min(cold)
    print(f"{N_SYNTHETIC} synthetic ({SIZE} px) vs {N_REAL} real images ({REAL_SIZE} px), evaluator + pixels: "
          f"cold {min(cold):.2f} s, warm {min(warm):.2f} s")
    report("quality_cache", ratio, "warm/cold time", "<= 0.80")


if __name__ == "__main__":
    main()
