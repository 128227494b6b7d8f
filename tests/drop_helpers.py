"""Tiny lab drops for tests: random FASTA plus a sample.json with correct sha256s."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from bioscan_assets.core.storage import Store


def fasta_bytes(n_seqs: int = 3, *, seed: int = 0, length: int = 60) -> bytes:
    rng = random.Random(seed)
    lines = []
    for i in range(n_seqs):
        lines.append(f">seq{i}")
        lines.append("".join(rng.choice("ACGT") for _ in range(length)))
    return ("\n".join(lines) + "\n").encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def as_store(root: Store | Path | str) -> Store:
    return root if isinstance(root, Store) else Store(str(root))


def write_drop(
    landing: Store | Path | str,
    tenant: str = "acme-lab",
    sample_id: str = "S001",
    *,
    seed: int = 0,
    n_files: int = 1,
    extra: dict[str, Any] | None = None,
    manifest: dict[str, Any] | None = None,
    write_manifest: bool = True,
) -> dict[str, Any]:
    """Write `<tenant>/<sample_id>/` with FASTA files, then sample.json last; return the manifest.

    `extra` is merged into the generated manifest; `manifest` replaces it entirely.
    """
    store = as_store(landing)
    folder = f"{tenant}/{sample_id}"
    files = []
    for i in range(n_files):
        data = fasta_bytes(seed=seed * 1000 + i)
        name = f"reads_{i}.fasta"
        store.write_bytes(f"{folder}/{name}", data)
        files.append({"path": name, "sha256": sha256_hex(data)})
    doc: dict[str, Any] = {
        "tenant": tenant,
        "sample_id": sample_id,
        "collected_at": "2026-11-01T10:00:00Z",
        "latitude": 10.5,
        "longitude": -45.2,
        "depth_m": 500.0,
        "files": files,
    }
    doc.update(extra or {})
    if manifest is not None:
        doc = manifest
    if write_manifest:
        write_manifest_json(store, tenant, sample_id, doc)
    return doc


def write_manifest_json(store: Store | Path | str, tenant: str, sample_id: str, doc: Any) -> bytes:
    raw = json.dumps(doc, indent=2).encode() if not isinstance(doc, bytes) else doc
    as_store(store).write_bytes(f"{tenant}/{sample_id}/sample.json", raw)
    return raw
