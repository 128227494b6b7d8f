"""The hash store: a tenant's embedding vectors of one model's weights, keyed by sequence hash.

Not the vector index (LanceDB, for search): this is what makes the embedding step compute one
forward pass per distinct sequence. Layout, under `layout.hash_store_dir`:

    vectors/<model_id>/<weights_hash[:16]>/tenant=<t>/commit=<id>/part-00000.parquet
                                                                 /_manifest.json   (last)

Append-only: a commit is a part (`sequence_hash`, `vector`) plus a manifest written last that
lists the part (sha256, rows) and its hashes, so what the store holds is read from manifests
alone. A commit without a manifest (a killed writer) is ignored, and retention removes it.
A commit is named by its part's sha256, so the same vectors computed in the same chunks give
the same names (partition manifests that list them stay byte-identical across re-runs). When
a hash is in two commits (possible only without the lock, on GCS) the earliest wins. The folder is built from a validated tenant name only, so one tenant's
store is never reachable through another's; every manifest must also name its own tenant,
model and weights.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bioscan_assets.core import layout
from bioscan_assets.core.embedding.store_lock import folder_lock
from bioscan_assets.core.manifests import (
    MANIFEST_NAME,
    CorruptArtefactError,
    iter_parts,
    read_manifest,
)
from bioscan_assets.core.storage import Store

PART_NAME = "part-00000.parquet"
COMMIT_PREFIX = "commit="
COMMIT_CHARS = 20  # hex digits of the part's sha256 that name a commit


def store_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("sequence_hash", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


def commit_of(rel: str, folder: str) -> str | None:
    """The commit id of a file under the store folder (None for other files, e.g. the lock)."""
    first = rel[len(folder) + 1 :].split("/", 1)[0]
    return first[len(COMMIT_PREFIX) :] if first.startswith(COMMIT_PREFIX) else None


@dataclass
class Holdings:
    """What the store holds: `hashes[i]` is in commit `commits[commit_index[i]]`, earliest first."""

    hashes: pa.StringArray
    commit_index: np.ndarray
    commits: list[dict[str, Any]]

    def locate(self, wanted: pa.Array) -> np.ndarray:
        """Per wanted hash, its position in `hashes` (the earliest commit), or -1 if absent."""
        found = pc.index_in(wanted, value_set=self.hashes)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


class HashStore:
    """One tenant's vectors of one model's weights (see the module docstring for the layout)."""

    def __init__(self, store: Store, model_id: str, weights_hash: str, tenant: str):
        self.store = store
        self.model_id = model_id
        self.weights_hash = weights_hash
        self.tenant = layout.check_tenant(tenant)
        self.folder = layout.hash_store_dir(model_id, weights_hash, tenant)

    def lock(self, timeout_s: float = 24 * 3600.0) -> AbstractContextManager[str | None]:
        """Held around find-missing + compute + commit, so two runs never compute one hash twice."""
        return folder_lock(self.store, self.folder, timeout_s)

    def commit_dir(self, commit: str) -> str:
        return layout.hash_store_commit_dir(self.model_id, self.weights_hash, self.tenant, commit)

    def commit_ids(self) -> list[str]:
        """Committed ids (their manifest exists), oldest first."""
        found = set()
        for rel in self.store.list_files(self.folder):
            commit = commit_of(rel, self.folder)
            if commit and rel == f"{self.folder}/{COMMIT_PREFIX}{commit}/{MANIFEST_NAME}":
                found.add(commit)
        return sorted(found)

    def read_commit(self, commit: str) -> dict[str, Any]:
        """A commit's manifest, checked against this store's tenant, model and weights."""
        folder = self.commit_dir(commit)
        doc = read_manifest(self.store, folder, "not a committed hash-store commit")
        url = self.store.url(f"{folder}/{MANIFEST_NAME}")
        for key in ("tenant", "model_id", "weights_hash"):
            if doc.get(key) != getattr(self, key):
                raise CorruptArtefactError(
                    f"{url}: field {key} is {doc.get(key)!r}, expected {getattr(self, key)!r}"
                )
        if len(doc.get("hashes", ())) != int(doc.get("rows", -1)):
            raise CorruptArtefactError(f"{url}: 'hashes' and 'rows' disagree")
        doc["commit"] = commit
        return doc

    def holdings(self) -> Holdings:
        commits = [self.read_commit(c) for c in self.commit_ids()]
        commits.sort(key=lambda doc: (doc.get("created_at", ""), doc["commit"]))
        hashes = [h for doc in commits for h in doc["hashes"]]
        index = np.repeat(
            np.arange(len(commits), dtype=np.int64), [len(d["hashes"]) for d in commits]
        )
        return Holdings(pa.array(hashes, pa.string()), index, commits)

    def add(self, hashes: list[str], vectors: np.ndarray, *, by: str) -> dict[str, Any]:
        """Commit vectors: the part first, then the manifest. Returns the manifest."""
        if len(hashes) != len(vectors) or not len(hashes):
            raise ValueError(f"{len(hashes)} hashes for {len(vectors)} vectors")
        dim = int(vectors.shape[1])
        table = pa.Table.from_arrays(
            [
                pa.array(hashes, pa.string()),
                pa.FixedSizeListArray.from_arrays(
                    pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1)), dim
                ),
            ],
            schema=store_schema(dim),
        )
        with tempfile.TemporaryDirectory(prefix="bioscan-hs-") as tmp:
            local = Path(tmp) / PART_NAME
            pq.write_table(table, local, compression="zstd", write_statistics=False)
            digest = hashlib.sha256(local.read_bytes()).hexdigest()
            commit = digest[:COMMIT_CHARS]  # named by its bytes: equal runs, equal names
            folder = self.commit_dir(commit)
            self.store.put_file(local, f"{folder}/{PART_NAME}")
        manifest = {
            "tenant": self.tenant,
            "model_id": self.model_id,
            "weights_hash": self.weights_hash,
            "dim": dim,
            "rows": len(hashes),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": by,
            "files": [{"path": PART_NAME, "rows": len(hashes), "sha256": digest}],
            "hashes": list(hashes),
        }
        self.store.write_bytes(f"{folder}/{MANIFEST_NAME}", json.dumps(manifest).encode())
        return {**manifest, "commit": commit}

    def iter_commit(self, doc: dict[str, Any]) -> Iterator[pa.RecordBatch]:
        """A commit's rows, each part checked against the manifest's sha256 and row count."""
        yield from iter_parts(self.store, self.commit_dir(doc["commit"]), doc, None, 8192)

    def fill(self, holdings: Holdings, positions: np.ndarray, out: np.ndarray) -> set[str]:
        """`out[i]` = the vector at `holdings.hashes[positions[i]]` (-1: left alone); returns the
        commits read. Only commits that are the chosen source of some row are opened."""
        need = positions >= 0
        chosen = holdings.commit_index[positions[need]]
        used: set[str] = set()
        for commit_no in np.unique(chosen):
            doc = holdings.commits[int(commit_no)]
            used.add(doc["commit"])
            # the rows of `out` this commit is the chosen source for
            rows = np.flatnonzero(need)[chosen == commit_no]
            targets = holdings.hashes.take(pa.array(positions[rows]))
            filled = 0
            for batch in self.iter_commit(doc):
                at = pc.index_in(batch.column("sequence_hash"), value_set=targets)
                hit = at.is_valid().to_numpy(zero_copy_only=False)
                if not hit.any():
                    continue
                vectors = batch.column("vector").flatten().to_numpy(zero_copy_only=False)
                vectors = vectors.reshape(batch.num_rows, -1)
                out[rows[at.to_numpy(zero_copy_only=False)[hit].astype(np.int64)]] = vectors[hit]
                filled += int(hit.sum())
            if filled < len(rows):
                raise CorruptArtefactError(
                    f"{self.store.url(self.commit_dir(doc['commit']))}: its manifest lists "
                    f"{len(rows) - filled} hash(es) its part does not hold"
                )
        return used
