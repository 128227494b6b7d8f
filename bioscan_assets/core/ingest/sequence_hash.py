"""The content key of a sequence: xxh3-128 of its normalised bases, as 32 lower-case hex digits.

Shards carry it per row (`sequence_hash`), the embedding step computes one vector per distinct
key and keeps it in the tenant's hash store, and the vector index counts reads by it. Always
hash the *normalised* spelling (`normalise.normalise`), so `acgu` and `ACGT` share a key.
Hex rather than 16 raw bytes: the same value in Parquet, JSON manifests and LanceDB filters.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import xxhash

HASH_ALGORITHM = "xxh3_128"
HASH_HEX_CHARS = 32

_hexdigest = xxhash.xxh3_128_hexdigest


def sequence_hash(sequence: str | bytes) -> str:
    """The key of one normalised sequence."""
    return _hexdigest(sequence.encode("ascii") if isinstance(sequence, str) else sequence)


def hash_segments(buffer: bytes, offsets: np.ndarray) -> pa.StringArray:
    """Keys of the sequences `buffer[offsets[i]:offsets[i + 1]]` (a shard lane's joined batch).

    One C call per row over memoryview slices (no copies): ~2 M rows/s on one core.
    """
    view = memoryview(buffer)
    bounds = offsets.tolist()
    digests = list(map(_hexdigest, map(view.__getitem__, map(slice, bounds[:-1], bounds[1:]))))
    return pa.array(digests, pa.string())


def hash_strings(sequences: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    """Keys of an Arrow string column of normalised sequences (shards written before the key)."""
    return pa.array([sequence_hash(s) for s in sequences.to_pylist()], pa.string())
