"""Synthetic images stored as parquet shards of PNG bytes.

A data set of 60k images as plain files makes DVC hash and stat 60k files on every status; shards
of `shard_size` images keep that to a few hundred files (bench/dvc_status.py measures both). A shard
is written to a temp file and renamed, so it is complete or absent, and it records the fingerprint
of what its pixels depend on (models and sampler settings, not the plan).

An image is identified by (id, prompt, seed): the id names its (fst, label, index), and a stored
image with the same three and fingerprint is the image a new sampling would make. So a changed plan
(more or fewer images per cell, other shard or batch sizes) reuses every image it already has:
`prepare_resume` moves the shards that are not the plan's aside into `reusable/`, the sampler takes
their images from there and samples only the rest, and `drop_reusable` deletes what is left once
every shard of the plan is written. The shards then hold exactly what a run from nothing writes.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from fairaug.data.files import MANIFEST
from fairaug.errors import DataError
from fairaug.io import path_escape, remove_stale_temps, temp_path

SHARDS = "shards"
REUSABLE = "reusable"  # shards of an earlier plan whose images the current one may still use
FINGERPRINT_KEY = b"fairaug.fingerprint"
IMAGE_KEY = ["id", "prompt", "seed"]
IMAGE_COLUMNS = ["id", "fst", "label", "index", "prompt", "seed"]  # stored beside each image's png


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
    tmp = temp_path(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def shard_fingerprint(path: Path) -> str | None:
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None  # unreadable: treated as not done
    return metadata.get(FINGERPRINT_KEY, b"").decode() or None


def _stored_keys(path: Path) -> pd.DataFrame:
    return pq.read_table(path, columns=IMAGE_KEY).to_pandas()


def _holds_plan_shard(path: Path, fingerprint: str, plan_shard: pd.DataFrame) -> bool:
    if shard_fingerprint(path) != fingerprint:
        return False
    stored = _stored_keys(path)
    return stored.equals(plan_shard[IMAGE_KEY].reset_index(drop=True).astype(stored.dtypes))


def done_shards(out_dir: Path, fingerprint: str, plan: pd.DataFrame) -> set[int]:
    """Plan shards already on disk: same fingerprint, the same images in the same order."""
    return {int(shard) for shard, rows in plan.groupby("shard")
            if shard_path(out_dir, shard).is_file()
            and _holds_plan_shard(shard_path(out_dir, shard), fingerprint, rows)}


def prepare_resume(out_dir: Path, fingerprint: str, plan: pd.DataFrame) -> None:
    """Leave in shards/ only finished shards of this plan (one process, before sampling): leftovers of
    killed writes (anywhere in the set: a persist out that DVC would cache with them) and shards of
    another fingerprint are deleted, other shards of this fingerprint (an earlier plan's) move to
    reusable/, whose images `generate_shards` takes instead of sampling."""
    remove_stale_temps(out_dir, inside=True)
    reusable = out_dir / REUSABLE
    for folder in (out_dir / SHARDS, reusable):
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            if shard_fingerprint(path) != fingerprint:
                path.unlink()
    done = done_shards(out_dir, fingerprint, plan)
    for path in sorted((out_dir / SHARDS).glob("shard-*.parquet")) if (out_dir / SHARDS).is_dir() else []:
        if int(path.stem.removeprefix("shard-")) not in done:
            reusable.mkdir(exist_ok=True)
            path.rename(reusable / f"{uuid.uuid4().hex}.parquet")  # unique: earlier kills may have left some


def reusable_images(out_dir: Path) -> pd.DataFrame:
    """(id, prompt, seed, file) of every image in reusable/ (after `prepare_resume`: this fingerprint's)."""
    files = sorted((out_dir / REUSABLE).glob("*.parquet")) if (out_dir / REUSABLE).is_dir() else []
    frames = [_stored_keys(path).assign(file=path) for path in files]
    return (pd.concat(frames, ignore_index=True).drop_duplicates(IMAGE_KEY) if frames
            else pd.DataFrame(columns=[*IMAGE_KEY, "file"]))


def read_reusable(rows: pd.DataFrame) -> dict[str, bytes]:
    """id -> png of rows of `reusable_images`, one file read at a time."""
    found = {}
    for path, part in rows.groupby("file"):
        table = pq.read_table(path, columns=["id", "png"], filters=[("id", "in", list(part["id"]))])
        found |= dict(zip(table["id"].to_pylist(), table["png"].to_pylist(), strict=True))
    return found


def drop_reusable(out_dir: Path) -> None:
    """Delete the images no shard of the plan needed (once every shard of the plan is written)."""
    shutil.rmtree(out_dir / REUSABLE, ignore_errors=True)


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


def _shard_file(out_dir: Path, rows: pd.DataFrame) -> pd.Series:
    """The shard file part of each row's ``path`` (``shards/shard-NNNNNN.parquet#<id>``), checked to
    stay inside ``out_dir``: a DataError naming the manifest row otherwise."""
    shard_files = rows["path"].str.partition("#")[0]
    for row, shard_file in zip(rows.index, shard_files, strict=True):
        if (escape := path_escape(out_dir, shard_file, root_name="synthetic set's root")) is not None:
            raise DataError(f"{shard_file}: {escape}", file=out_dir / MANIFEST, row=row, column="path")
    return shard_files


def _pngs_by_shard(out_dir: Path, rows: pd.DataFrame) -> Iterator[tuple[pd.DataFrame, list[bytes]]]:
    """Manifest ``rows`` grouped by their shard file, with their PNG bytes in row order."""
    for shard_file, shard_rows in rows.groupby(_shard_file(out_dir, rows), sort=True):
        try:
            pngs = pq.read_table(out_dir / shard_file, columns=["id", "png"]).to_pandas().set_index("id")["png"]
        except (OSError, pa.ArrowInvalid) as err:
            raise DataError(f"cannot read shard {shard_file}: {err}", file=out_dir / MANIFEST) from None
        image_ids = shard_rows["path"].str.partition("#")[2]
        absent = ~image_ids.isin(pngs.index)
        if absent.any():
            raise DataError(f"no image '{image_ids[absent].iloc[0]}' in {shard_file}", file=out_dir / MANIFEST,
                            row=absent.idxmax(), column="path")  # fmt: skip
        yield shard_rows, list(pngs[image_ids])


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
