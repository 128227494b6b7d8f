"""The helpers every test shares: random DNA, lab drops, and subprocesses.

One of each, so that what a drop or a child process looks like is decided in one place:
`random_dna` makes sequences, `write_drop` writes a lab drop (sample.json last, as labs do),
`run`/`start` run a command with the repository importable and output captured.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bioscan_assets.core.storage import Store

REPO = Path(__file__).resolve().parents[1]

# --- sequences -------------------------------------------------------------------------------


def random_dna(
    rng: np.random.Generator,
    length: int,
    *,
    alphabet: str = "ACGT",
    p: Sequence[float] | None = None,
) -> str:
    """One random sequence; `p` weights the alphabet (e.g. a few N)."""
    return "".join(rng.choice(list(alphabet), int(length), p=p))


def fasta_bytes(n_seqs: int = 3, *, seed: int = 0, length: int = 60) -> bytes:
    """A small random FASTA (`>seq0`, `>seq1`, ...), one line per sequence."""
    rng = np.random.default_rng(seed)
    return fasta({f"seq{i}": random_dna(rng, length) for i in range(n_seqs)})


def fasta(sequences: Mapping[str, str]) -> bytes:
    return "".join(f">{name}\n{seq}\n" for name, seq in sequences.items()).encode()


def taxonomy_text(rows: Iterable[tuple[str, str]]) -> bytes:
    """taxonomy.tsv (QIIME 2): a header, then Feature ID and Taxon per row."""
    return ("Feature ID\tTaxon\n" + "".join(f"{a}\t{b}\n" for a, b in rows)).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- lab drops -------------------------------------------------------------------------------

TAXONOMY_FILE = "taxonomy.tsv"


def as_store(root: Store | Path | str) -> Store:
    return root if isinstance(root, Store) else Store(str(root))


def write_drop(
    landing: Store | Path | str,
    tenant: str = "acme-lab",
    sample_id: str = "S001",
    files: Mapping[str, bytes] | None = None,
    *,
    sequences: Mapping[str, str] | None = None,
    listed: Sequence[str | Mapping[str, Any]] | None = None,
    taxonomy: str | Mapping[str, str] | None = None,
    seed: int = 0,
    n_files: int = 1,
    extra: Mapping[str, Any] | None = None,
    manifest: Any = None,
    write_manifest: bool = True,
) -> dict[str, Any]:
    """Write `<tenant>/<sample_id>/`: its files first, then sample.json; return the document.

    What goes in: `files` (name -> bytes), or `sequences` as `seqs.fasta`, or, when neither is
    given and `listed` does not name files already there, `n_files` random FASTA files.
    sample.json lists `listed` (default: every written file but taxonomy.tsv) with the sha256
    of the bytes in the folder; an entry may be a dict, whose `reference` (a path) becomes a
    checksummed reference. `taxonomy` names a taxonomy file, or maps Feature ID -> Taxon to
    write taxonomy.tsv. `extra` is merged into the document; `manifest` replaces it.
    """
    store = as_store(landing)
    folder = f"{tenant}/{sample_id}"
    if files is None:
        if sequences is not None:
            files = {"seqs.fasta": fasta(sequences)}
        elif listed is None:
            files = {f"reads_{i}.fasta": fasta_bytes(seed=seed * 1000 + i) for i in range(n_files)}
        else:
            files = {}
    if isinstance(taxonomy, Mapping):
        files = {**files, TAXONOMY_FILE: taxonomy_text(taxonomy.items())}
        taxonomy = TAXONOMY_FILE
    for name, data in files.items():
        store.write_bytes(f"{folder}/{name}", data)

    def checksum(path: str) -> str:
        return sha256_hex(store.read_bytes(f"{folder}/{path}"))

    entries = []
    for item in listed if listed is not None else [n for n in files if n != TAXONOMY_FILE]:
        entry = {"path": item} if isinstance(item, str) else dict(item)
        entry.setdefault("sha256", checksum(entry["path"]))
        if isinstance(entry.get("reference"), str):
            entry["reference"] = {
                "path": entry["reference"],
                "sha256": checksum(entry["reference"]),
            }
        entries.append(entry)
    doc: dict[str, Any] = {
        "sample_id": sample_id,
        "tenant": tenant,
        "collected_at": "2026-11-01T10:00:00Z",
        "latitude": 10.5,
        "longitude": -45.2,
        "depth_m": 500.0,
        "files": entries,
    }
    if taxonomy:
        doc["taxonomy"] = taxonomy
    doc.update(extra or {})
    if manifest is not None:
        doc = manifest
    if write_manifest:
        write_manifest_json(store, tenant, sample_id, doc)
    return doc


def write_manifest_json(store: Store | Path | str, tenant: str, sample_id: str, doc: Any) -> bytes:
    """sample.json as given (a document, or raw bytes for a broken one)."""
    raw = doc if isinstance(doc, bytes) else json.dumps(doc, indent=2).encode()
    as_store(store).write_bytes(f"{tenant}/{sample_id}/sample.json", raw)
    return raw


# --- subprocesses ----------------------------------------------------------------------------


def python(*args: str | Path) -> list[str]:
    """This interpreter with `args` (`python("-m", "tests.integration.tune_worker", ...)`)."""
    return [sys.executable, *map(str, args)]


def command_env(**overrides: str) -> dict[str, str]:
    """This environment, the repository importable from any cwd, unbuffered output, `overrides`."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1", **overrides}


def run(
    command: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
    cwd: Path = REPO,
) -> subprocess.CompletedProcess[str]:
    """Run to the end with text output captured; with `check`, a failure shows stderr's tail."""
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=dict(env) if env is not None else command_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, (
            f"{' '.join(map(str, command))[:300]} exited {done.returncode}:\n"
            f"{done.stdout[-1000:]}\n{done.stderr[-4000:]}"
        )
    return done


def start(
    command: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    **popen: Any,
) -> subprocess.Popen:
    """`run`'s background twin, for a process a test kills, races or serves from."""
    return subprocess.Popen(
        [str(part) for part in command],
        cwd=cwd,
        env=dict(env) if env is not None else command_env(),
        **popen,
    )


def last_json_line(stdout: str) -> Any:
    """The JSON result a worker prints as its last line."""
    return json.loads(stdout.strip().splitlines()[-1])
