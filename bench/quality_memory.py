"""Peak memory of evaluate_quality's report at n and 4n synthetic images (160 px, in shards), each
in a fresh process: the growth of the peak resident set over the process's size before the
evaluation. Images stream shard by shard; what still grows with n is feature-sized (n x d arrays
and their temporaries in the metrics). The evaluator extractor (d = 128) keeps n above d at both
sizes, so FID's d x d work is the same in both runs (pixels' d = 768 would switch FID from the
n x d to the d x d factor between them: a constant, but it would show here). Value: growth at 4n
over growth at n (holding every image would add about 3n images' bytes, printed beside it)."""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _quality import classifier, real_set, synthetic_dir  # noqa: E402
from _report import report  # noqa: E402
from _smoke import sizes  # noqa: E402

N, SIZE, N_REAL = sizes((200, 160, 200), (20, 64, 30))


def child(tmp: Path, n: int) -> None:
    """Evaluate synthetic-<n> and print the peak growth in MiB."""
    from fairaug.config.quality import EvaluateQualityConfig
    from fairaug.fairness.files import WEIGHTS
    from fairaug.metrics.extractors import build_extractors
    from fairaug.metrics.features import FeatureCache, synthetic_set
    from fairaug.metrics.report import quality_report

    real = real_set(tmp / "real", N_REAL)  # rewrites the same bytes: the fixture is deterministic
    extractors = build_extractors(["evaluator"], evaluator=tmp / WEIGHTS)
    config = EvaluateQualityConfig(n_bootstrap=10, cache_dir=str(tmp / "cache"))  # warm: filled by the parent
    synthetic = synthetic_set(tmp / f"synthetic-{n}")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    quality_report(real, synthetic, extractors, config, FeatureCache(config.cache_dir))
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)


def growth(tmp: Path, n: int) -> float:
    result = subprocess.run([sys.executable, __file__, "--child", str(tmp), str(n)], capture_output=True, text=True,
                            check=True)  # fmt: skip
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    from fairaug.config.quality import EvaluateQualityConfig
    from fairaug.fairness.files import WEIGHTS
    from fairaug.metrics.extractors import build_extractors
    from fairaug.metrics.features import FeatureCache

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        real = real_set(tmp / "real", N_REAL)
        extractors = build_extractors(["evaluator", "pixels"], evaluator=classifier(tmp / WEIGHTS))
        # the cache holds evaluator and pixels (nearest-real matching) features of the real set
        FeatureCache(EvaluateQualityConfig(cache_dir=str(tmp / "cache")).cache_dir).features(real, extractors, 64)
        for n in (N, 4 * N):
            synthetic_dir(tmp / f"synthetic-{n}", n, SIZE)
        small, large = growth(tmp, N), growth(tmp, 4 * N)
    ratio = large / small
    image_mib = SIZE * SIZE * 3 / 2**20
    print(f"peak growth during evaluation: {small:.0f} MiB at {N} images, {large:.0f} MiB at {4 * N} "
          f"(holding every image would add {3 * N * image_mib:.0f} MiB more at {4 * N})")
    report("quality_memory", ratio, "peak growth 4n/n", "<= 1.30")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
