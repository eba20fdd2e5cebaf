"""Synthetic images stored as parquet shards of PNG bytes.

A data set of 60k images as plain files makes DVC hash and stat 60k files on every status; shards
of `shard_size` images keep that to a few hundred files (bench/dvc_status.py measures both). A shard
is written to a temp file and renamed, so it is complete or absent, and it records the fingerprint
of the plan it belongs to: a persisted out is only ever resumed by the same plan.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SHARDS = "shards"
MANIFEST = "manifest.parquet"
FINGERPRINT_KEY = b"fairaug.fingerprint"


def shard_path(out_dir: Path, shard: int) -> Path:
    return out_dir / SHARDS / f"shard-{shard:06d}.parquet"


def png_bytes(image: np.ndarray) -> bytes:
    """Lossless, deterministic PNG of an HxWx3 uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def write_shard(path: Path, rows: pd.DataFrame, images: list[bytes], fingerprint: str) -> Path:
    table = pa.Table.from_pandas(rows.assign(png=images).reset_index(drop=True), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), FINGERPRINT_KEY: fingerprint.encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def shard_fingerprint(path: Path) -> str | None:
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None  # unreadable: treated as not done
    return metadata.get(FINGERPRINT_KEY, b"").decode() or None


def done_shards(out_dir: Path, fingerprint: str) -> set[int]:
    """Shards already written for this plan."""
    root = out_dir / SHARDS
    if not root.is_dir():
        return set()
    return {int(p.stem.removeprefix("shard-")) for p in root.glob("shard-*.parquet")
            if shard_fingerprint(p) == fingerprint}


def remove_stale(out_dir: Path, fingerprint: str) -> list[Path]:
    """Delete shards of other plans and leftovers of killed writes."""
    root = out_dir / SHARDS
    stale = [p for p in root.glob("*") if p.name.startswith(".") or shard_fingerprint(p) != fingerprint] \
        if root.is_dir() else []
    for path in stale:
        path.unlink()
    return stale


def iter_shards(out_dir: Path) -> Iterator[pd.DataFrame]:
    """Stored image rows (plan columns, png bytes, shard_file) one shard at a time, in plan order."""
    for path in sorted((out_dir / SHARDS).glob("shard-*.parquet")):
        yield pq.read_table(path).to_pandas().assign(shard_file=f"{SHARDS}/{path.name}")


def read_shards(out_dir: Path) -> pd.DataFrame:
    """Every stored image row at once (small sets and tests; large sets: `iter_shards`)."""
    frames = list(iter_shards(out_dir))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def _pngs_by_shard(out_dir: Path, rows: pd.DataFrame) -> Iterator[tuple[pd.DataFrame, list[bytes]]]:
    """Manifest ``rows`` grouped by their shard file, with their PNG bytes in row order."""
    for shard_file, shard_rows in rows.groupby(rows["path"].str.split("#").str[0], sort=True):
        pngs = pq.read_table(out_dir / shard_file, columns=["id", "png"]).to_pandas().set_index("id")["png"]
        yield shard_rows, [pngs[image_id] for image_id in shard_rows["id"]]


def read_synthetic(out_dir: Path, rows: pd.DataFrame | None = None) -> Iterator[tuple[pd.DataFrame, list[np.ndarray]]]:
    """Images of a finished synthetic set shard by shard: manifest ``rows`` (default: the kept ones)
    and their decoded HxWx3 uint8 images. One shard is in memory at a time."""
    if rows is None:
        manifest = pd.read_parquet(out_dir / MANIFEST)
        rows = manifest[manifest["kept"]]
    for shard_rows, pngs in _pngs_by_shard(out_dir, rows):
        yield shard_rows, [decode(png) for png in pngs]


def read_synthetic_png(out_dir: Path, rows: pd.DataFrame) -> list[bytes]:
    """The PNG bytes (not decoded) of some manifest rows, in their order: random access for a chosen
    few (the augmented classifier holds them compressed and decodes one at a time)."""
    found = {image_id: png for shard_rows, pngs in _pngs_by_shard(out_dir, rows)
             for image_id, png in zip(shard_rows["id"], pngs, strict=True)}
    return [found[image_id] for image_id in rows["id"]]
