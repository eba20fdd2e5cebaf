"""Image sets streamed in batches, their features, and the on-disk cache of the real set's features.

Only one batch of images (a shard, for a synthetic set) is in memory at a time; features of every
image are kept (n x d floats). Real-set features are cached under ``<cache_dir>/<key>.npz``, the key
hashing the set's version (its files' identities) and the extractor's key (network + weights hash),
so evaluating a new synthetic set against the same real set does not recompute them.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fairaug.data.files import MANIFEST
from fairaug.data.storage import read_synthetic
from fairaug.errors import DataError
from fairaug.images import IMAGE_SUFFIXES, read_rgb
from fairaug.io import atomic_write_bytes
from fairaug.metrics.extractors import Extractor, Output
from fairaug.progress import progress_bar

Batches = Iterator[tuple[pd.DataFrame, list[np.ndarray]]]


@dataclass(frozen=True)
class ImageSet:
    """One row per image (``path``; ``label`` and ``fst`` when known), read by `batches(size)`."""

    rows: pd.DataFrame
    batches: Callable[[int], Batches]
    version: str  # changes whenever an image may have: the feature cache's key
    root: Path | None = None  # where ``rows.path`` are, for `read_rgb` of single images

    def image(self, path: str) -> np.ndarray:
        return read_rgb(Path(self.root) / path)


def _file_batches(root: Path, paths: Sequence[str], rows: pd.DataFrame) -> Callable[[int], Batches]:
    def batches(size: int) -> Batches:
        for start in range(0, len(paths), size):
            yield rows.iloc[start : start + size], [read_rgb(root / p) for p in paths[start : start + size]]

    return batches


def _digest(parts: Sequence[object]) -> str:
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()[:16]


def folder_set(root: str | Path) -> ImageSet:
    """Every png/jpg under ``root`` (recursively, sorted); no labels or FST."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("not a directory", file=root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found", file=root)
    paths = [p.relative_to(root).as_posix() for p in files]
    stats = [p.stat() for p in files]
    version = _digest([f"{p} {s.st_size} {s.st_mtime_ns}" for p, s in zip(paths, stats, strict=True)])
    rows = pd.DataFrame({"path": paths})
    return ImageSet(rows, _file_batches(root, paths, rows), version, root)


def manifest_set(manifest: pd.DataFrame, root: str | Path, split: str) -> ImageSet:
    """The prepared manifest's rows of ``split``; its sha256 column identifies the images."""
    rows = manifest[manifest["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"the prepared manifest has no '{split}' rows")
    version = _digest(rows["path"] + " " + rows["sha256"])
    return ImageSet(rows, _file_batches(Path(root), list(rows["path"]), rows), version, Path(root))


def synthetic_set(out_dir: str | Path) -> ImageSet:
    """The generate stage's kept images, shard by shard (the batch size is the shard's). Shards come
    in file order, not manifest order: use the rows `extract` returns."""
    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).is_file():
        raise DataError(f"no {MANIFEST}: run the generate stage first", file=out_dir)
    manifest = pd.read_parquet(out_dir / MANIFEST)
    rows = manifest[manifest["kept"]].reset_index(drop=True)
    if rows.empty:
        raise DataError("no kept synthetic images", file=out_dir / MANIFEST)

    def batches(_size: int) -> Batches:
        yield from read_synthetic(out_dir, rows)

    return ImageSet(rows, batches, _digest(rows["id"]))


def extract(
    image_set: ImageSet,
    extractors: Sequence[Extractor],
    batch_size: int,
    on_batch: Callable[[pd.DataFrame, list[np.ndarray]], None] | None = None,
    desc: str = "features",
) -> tuple[pd.DataFrame, dict[str, Output]]:
    """One streaming pass: the rows in the order read, and every extractor's features (and logits)
    in that order; ``on_batch`` sees each batch too (per-image metrics that need the pixels)."""
    rows_read: list[pd.DataFrame] = []
    parts: dict[str, list[Output]] = {e.name: [] for e in extractors}
    with progress_bar(total=len(image_set.rows), desc=desc, unit="img", leave=False) as progress:
        for rows, images in image_set.batches(batch_size):
            rows_read.append(rows)
            for extractor in extractors:
                parts[extractor.name].append(extractor.extract(images))
            if on_batch is not None:
                on_batch(rows, images)
            progress.update(len(images))
    return pd.concat(rows_read, ignore_index=True), {name: _concat(outputs) for name, outputs in parts.items()}


def _concat(outputs: list[Output]) -> Output:
    logits = [o.logits for o in outputs]
    return Output(np.concatenate([o.features for o in outputs]),
                  None if any(lg is None for lg in logits) else np.concatenate(logits))


class FeatureCache:
    """Features of an image set per extractor, kept on disk; ``directory=None`` disables it."""

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory is not None else None

    def path(self, image_set: ImageSet, extractor: Extractor) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{_digest([image_set.version, extractor.key])}.npz"

    def features(self, image_set: ImageSet, extractors: Sequence[Extractor], batch_size: int) -> dict[str, Output]:
        """Cached features where there are some; the rest in one pass over the images, then cached."""
        found = {e.name: self._load(self.path(image_set, e), len(image_set.rows)) for e in extractors}
        missing = [e for e in extractors if found[e.name] is None]
        computed = extract(image_set, missing, batch_size, desc="real features")[1] if missing else {}
        for extractor in missing:
            self._store(self.path(image_set, extractor), computed[extractor.name])
        return {name: found[name] or computed[name] for name in found}

    @staticmethod
    def _load(path: Path | None, n: int) -> Output | None:
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                output = Output(data["features"], data["logits"] if "logits" in data else None)
        except (OSError, ValueError, KeyError):
            return None  # unreadable entry: recomputed and rewritten
        return output if len(output.features) == n else None

    @staticmethod
    def _store(path: Path | None, output: Output) -> None:
        if path is None:
            return
        buffer = io.BytesIO()
        arrays = {"features": output.features} | ({"logits": output.logits} if output.logits is not None else {})
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())
