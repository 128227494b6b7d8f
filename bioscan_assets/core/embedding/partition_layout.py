"""A partition's per-row embedding layout (DESIGN.md: `sequence_id, vector` in shard order),
written from one vector per distinct sequence hash.

Readers (`reader.py`) see the same layout as before the hash store: one row per shard row, parts
then `_manifest.json` last. Vectors are copied here, not joined at read time, so reading
costs what it did; the parts are larger (about 64 MB each), which makes reads no slower.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bioscan_assets.core.schema import embedding_schema
from bioscan_assets.core.storage import Store

PART_BYTES = 64 << 20
IN_MEMORY_BYTES = 512 << 20


@contextlib.contextmanager
def vector_matrix(rows: int, dim: int) -> Iterator[np.ndarray]:
    """float32 [rows, dim] for the distinct sequences: in memory, or a temp-file memmap when big
    (a partition of a million distinct 2560-dim vectors needs 10 GB)."""
    if rows * dim * 4 <= IN_MEMORY_BYTES:
        yield np.zeros((rows, dim), np.float32)
        return
    with tempfile.TemporaryDirectory(prefix="bioscan-vectors-") as tmp:
        matrix = np.lib.format.open_memmap(
            Path(tmp) / "vectors.npy", mode="w+", dtype=np.float32, shape=(rows, dim)
        )
        try:
            yield matrix
        finally:
            del matrix


def part_name(key: str, start: int, end: int) -> str:
    return f"part-{key}-{start:09d}-{end:09d}.parquet"


def _write_part(store: Store, rel: str, ids: pa.Array, vectors: np.ndarray) -> str:
    dim = vectors.shape[1]
    table = pa.Table.from_arrays(
        [
            ids,
            pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
        ],
        schema=embedding_schema(dim),
    )
    with tempfile.TemporaryDirectory(prefix="bioscan-emb-") as tmp:
        local = Path(tmp) / "part.parquet"
        pq.write_table(table, local, compression="zstd", write_statistics=False)
        digest = hashlib.sha256(local.read_bytes()).hexdigest()
        store.put_file(local, rel)
    return digest


def write_rows(
    store: Store,
    directory: str,
    key: str,
    batches: Iterator[pa.RecordBatch],
    distinct: pa.Array,
    vectors: np.ndarray,
) -> list[dict]:
    """Per-row parts from (`sequence_id`, `sequence_hash`) batches in shard order: each row gets
    the vector of its hash (`vectors[i]` belongs to `distinct[i]`). Returns the manifest's files."""
    dim = vectors.shape[1]
    part_rows = max(1024, PART_BYTES // (dim * 4))
    files: list[dict] = []
    ids: list[pa.Array] = []
    index: list[np.ndarray] = []
    pending = start = 0

    def flush() -> None:
        nonlocal ids, index, pending, start
        end = start + pending
        name = part_name(key, start, end)
        rows = np.concatenate(index)
        chunk = pa.concat_arrays(ids) if len(ids) > 1 else ids[0]
        digest = _write_part(store, f"{directory}/{name}", chunk, vectors[rows])
        files.append({"path": name, "rows": pending, "sha256": digest})
        ids, index, pending, start = [], [], 0, end

    for batch in batches:
        at = pc.index_in(batch.column("sequence_hash"), value_set=distinct)
        if at.null_count:
            raise RuntimeError(f"{directory}: a shard row's hash has no vector")
        positions = at.to_numpy(zero_copy_only=False).astype(np.int64)
        offset = 0
        while offset < batch.num_rows:
            take = min(part_rows - pending, batch.num_rows - offset)
            ids.append(batch.column("sequence_id").slice(offset, take))
            index.append(positions[offset : offset + take])
            pending += take
            offset += take
            if pending >= part_rows:
                flush()
    if pending:
        flush()
    return files
