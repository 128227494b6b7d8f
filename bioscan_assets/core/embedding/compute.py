"""Sequence embeddings: tokenise, batch, run the encoder on the mesh, and write resumable parts.

`embed_partition` commits chunks of the sample's shard rows as it goes (a Parquet part per
chunk, published atomically, its row range in its name), then writes `_manifest.json` last.
A killed run resumes from the first uncommitted row; a changed shard version or model makes
the old parts stale and they are replaced.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_assets.core import layout
from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.batching import pack_batches, split_windows
from bioscan_assets.core.embedding.reader import (  # noqa: F401  (re-exported)
    MANIFEST,
    iter_embedding_batches,
    read_embedding_manifest,
)
from bioscan_assets.core.ingest.shards import iter_shard_batches, read_shard_manifest
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.model.nt_model import mean_pool
from bioscan_assets.core.schema import embedding_schema
from bioscan_assets.core.storage import Store

_PART = re.compile(r"^part-([0-9a-f]{12})-(\d{9})-(\d{9})\.parquet$")


@dataclass
class EmbedStats:
    sequences: int = 0
    real_tokens: int = 0
    computed_tokens: int = 0
    windowed: int = 0
    batches: int = 0
    read_s: float = 0.0
    tokenise_s: float = 0.0
    compute_s: float = 0.0
    write_s: float = 0.0
    shapes: set[tuple[int, int]] = field(default_factory=set)

    @property
    def padding_efficiency(self) -> float:
        return self.real_tokens / self.computed_tokens if self.computed_tokens else 1.0

    def as_metadata(self, wall_s: float) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "shapes"}
        out.update(
            compilations=len(self.shapes),
            padding_efficiency=round(self.padding_efficiency, 4),
            sequences_per_s=round(self.sequences / wall_s, 2) if wall_s else 0.0,
            tokens_per_s=round(self.real_tokens / wall_s, 1) if wall_s else 0.0,
            wall_s=round(wall_s, 3),
        )
        for key in ("read_s", "tokenise_s", "compute_s", "write_s"):
            out[key] = round(out[key], 3)
        return out


class EmbeddingExecutor:
    """One model on one accelerator; jitted forward + mean-pool, one compile per batch shape."""

    def __init__(self, model: LoadedModel, accelerator: Accelerator, token_budget: int = 8192):
        self.model = model
        self.accelerator = accelerator
        self.token_budget = token_budget
        self.stats = EmbedStats()
        self.compiled_shapes: set[tuple[int, int]] = set()  # for the process lifetime
        self._params = accelerator.replicate(model.params)
        module = model.module(accelerator.dtype)
        pad_id = model.tokenizer.pad_id

        def forward(params: Any, ids: jax.Array) -> jax.Array:
            mask = ids != pad_id
            return mean_pool(module.apply({"params": params}, ids, mask), mask)

        self._forward = jax.jit(
            forward,
            in_shardings=(accelerator.replicated, accelerator.batch_sharding),
            out_shardings=accelerator.batch_sharding,
        )

    @property
    def compilations(self) -> int:
        return len(self.compiled_shapes)

    def embed(self, sequences: list[str]) -> np.ndarray:
        """float32 [N, H] in input order; long sequences are windowed and length-weighted."""
        stats = self.stats
        started = time.perf_counter()
        tokenizer = self.model.tokenizer
        max_tokens = self.model.config.max_tokens
        pieces: list[np.ndarray] = []
        owner: list[int] = []
        for row, sequence in enumerate(sequences):
            windows = split_windows(tokenizer.encode(sequence), max_tokens)
            stats.windowed += len(windows) > 1
            pieces.extend(windows)
            owner.extend([row] * len(windows))
        stats.tokenise_s += time.perf_counter() - started

        started = time.perf_counter()
        pooled = np.zeros((len(pieces), self.model.config.hidden_size), np.float32)
        pending: list[tuple[Any, np.ndarray]] = []
        for batch in pack_batches(
            pieces,
            pad_id=tokenizer.pad_id,
            max_tokens=max_tokens,
            token_budget=self.token_budget,
            device_count=self.accelerator.device_count,
        ):
            stats.shapes.add(batch.ids.shape)
            self.compiled_shapes.add(batch.ids.shape)
            stats.batches += 1
            stats.real_tokens += batch.real_tokens
            stats.computed_tokens += batch.computed_tokens
            # dispatch now, fetch later: the host packs the next batch while the device works
            pending.append(
                (self._forward(self._params, self.accelerator.shard_batch(batch.ids)), batch.rows)
            )
            if len(pending) > 1:
                self._collect(pending.pop(0), pooled)
        for item in pending:
            self._collect(item, pooled)
        stats.compute_s += time.perf_counter() - started

        owner_arr = np.asarray(owner)
        weights = np.array([len(p) for p in pieces], np.float32)
        out = np.zeros((len(sequences), pooled.shape[1]), np.float32)
        np.add.at(out, owner_arr, pooled * weights[:, None])
        totals = np.bincount(owner_arr, weights=weights, minlength=len(sequences))
        stats.sequences += len(sequences)
        return out / np.maximum(totals, 1.0)[:, None].astype(np.float32)

    @staticmethod
    def _collect(item: tuple[Any, np.ndarray], pooled: np.ndarray) -> None:
        result, rows = item
        values = np.asarray(result)
        real = rows >= 0
        pooled[rows[real]] = values[real]


def embed_sequences(
    sequences: list[str], model: LoadedModel, executor: EmbeddingExecutor | None = None
) -> np.ndarray:
    """Embeddings for ad-hoc sequences (search queries), float32 [N, H]."""
    executor = executor or EmbeddingExecutor(model, Accelerator.discover())
    return executor.embed(sequences)


# --- resumable partition writer -------------------------------------------------------------


def run_key(shard_version: str, weights_hash: str) -> str:
    """What the parts were computed from; parts of another key are stale."""
    return hashlib.sha256(f"{shard_version}|{weights_hash}".encode()).hexdigest()[:12]


def _committed(store: Store, directory: str, key: str) -> list[tuple[int, int, str]]:
    parts = []
    for rel in store.list_files(directory):
        match = _PART.match(rel.rsplit("/", 1)[-1])
        if match and match.group(1) == key:
            parts.append((int(match.group(2)), int(match.group(3)), rel.rsplit("/", 1)[-1]))
    parts.sort()
    # keep the contiguous prefix from row 0: chunks are committed in order
    prefix, expected = [], 0
    for start, end, name in parts:
        if start != expected:
            break
        prefix.append((start, end, name))
        expected = end
    return prefix


def _write_part(store: Store, rel: str, ids: list[str], vectors: np.ndarray) -> str:
    dim = vectors.shape[1]
    table = pa.Table.from_arrays(
        [
            pa.array(ids, pa.string()),
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


def embed_partition(
    store: Store,
    tenant: str,
    sample_id: str,
    executor: EmbeddingExecutor,
    *,
    chunk_rows: int = 512,
    chunk_seconds: float = 120.0,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Embed every shard row of the partition; resumes from committed chunks. Returns the manifest."""
    model = executor.model
    shards = read_shard_manifest(store, tenant, sample_id)
    key = run_key(shards["version"], model.weights_hash)
    directory = layout.embedding_dir(model.model_id, tenant, sample_id)
    manifest_rel = f"{directory}/{MANIFEST}"
    if store.exists(manifest_rel):
        existing = json.loads(store.read_bytes(manifest_rel))
        if existing.get("key") == key:
            log(f"{tenant}/{sample_id}: embeddings already current ({existing['rows']} rows)")
            return {**existing, "resumed_rows": existing["rows"], "computed_rows": 0}

    committed = _committed(store, directory, key)
    done = committed[-1][1] if committed else 0
    total = int(shards["rows"])
    if done:
        log(f"{tenant}/{sample_id}: resuming at row {done}/{total} ({len(committed)} chunks kept)")
    started = time.perf_counter()
    row = 0
    chunk_ids: list[str] = []
    chunk_seqs: list[str] = []
    chunk_start = done
    chunk_clock = time.perf_counter()

    def flush() -> None:
        nonlocal chunk_ids, chunk_seqs, chunk_start, chunk_clock
        if not chunk_ids:
            return
        vectors = executor.embed(chunk_seqs)
        if not np.isfinite(vectors).all():
            raise FloatingPointError(
                f"{tenant}/{sample_id}: NaN/Inf in embeddings of rows {chunk_start}+"
            )
        t = time.perf_counter()
        end = chunk_start + len(chunk_ids)
        name = f"part-{key}-{chunk_start:09d}-{end:09d}.parquet"
        digest = _write_part(store, f"{directory}/{name}", chunk_ids, vectors)
        committed.append((chunk_start, end, name))
        hashes[name] = digest
        executor.stats.write_s += time.perf_counter() - t
        elapsed = time.perf_counter() - started
        log(
            f"{tenant}/{sample_id}: {end}/{total} rows embedded "
            f"({(end - done) / max(elapsed, 1e-9):.1f} seq/s)"
        )
        chunk_ids, chunk_seqs = [], []
        chunk_start = end
        chunk_clock = time.perf_counter()

    hashes: dict[str, str] = {}
    t_read = time.perf_counter()
    for batch in iter_shard_batches(
        store, tenant, sample_id, columns=["sequence_id", "dna_sequence"]
    ):
        executor.stats.read_s += time.perf_counter() - t_read
        ids = batch.column(0).to_pylist()
        seqs = batch.column(1).to_pylist()
        for sequence_id, sequence in zip(ids, seqs, strict=True):
            if row >= done:
                chunk_ids.append(sequence_id)
                chunk_seqs.append(sequence)
                if (
                    len(chunk_ids) >= chunk_rows
                    or time.perf_counter() - chunk_clock >= chunk_seconds
                ):
                    flush()
            row += 1
        t_read = time.perf_counter()
    flush()

    if row != total:
        raise RuntimeError(f"{tenant}/{sample_id}: shard manifest says {total} rows, read {row}")
    files = []
    for start, end, name in committed:
        digest = hashes.get(name) or store.sha256(f"{directory}/{name}")[0]
        files.append({"path": name, "rows": end - start, "sha256": digest})
    manifest = {
        "key": key,
        "model_id": model.model_id,
        "weights_hash": model.weights_hash,
        "pretrained": model.pretrained,
        "dim": model.config.hidden_size,
        "shard_version": shards["version"],
        "rows": total,
        "files": files,
    }
    store.write_bytes(manifest_rel, json.dumps(manifest, indent=2).encode())
    keep = {f["path"] for f in files} | {MANIFEST}
    for rel in store.list_files(directory):
        if rel.rsplit("/", 1)[-1] not in keep:
            store.delete(rel)
    return {**manifest, "resumed_rows": done, "computed_rows": total - done}
