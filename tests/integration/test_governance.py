"""Governance on the real graph: tenant isolation of every read path, and no raw sequence in
any log, event, metadata, error, run manifest or quarantine record.

One module fixture materialises the bundled demo drops (two tenants) through raw_sequences,
sequence_shards, sequence_embeddings (tiny model) and vector_index, then tune_and_evaluate,
plus a set of bad drops, all on one temp `DagsterInstance` whose compute log manager captures
stdout/stderr of every step.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam
import pytest
from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from bioscan_resources.tracking import WandbResource
from bioscan_resources.vector_store import VectorStoreResource
from dagster import DagsterInstance, Definitions, materialize
from dagster._serdes import serialize_value

from bioscan_assets.assets.embed import embed_checks, sequence_embeddings
from bioscan_assets.assets.index import index_assets, index_checks
from bioscan_assets.assets.ingest import ingest_assets, ingest_checks
from bioscan_assets.assets.tune import tune_and_evaluate, tune_assets, tune_checks
from bioscan_assets.core.embedding import compute as emb
from bioscan_assets.core.embedding.hash_store import HashStore
from bioscan_assets.core.governance import costs, provenance
from bioscan_assets.core.index import partition_rows as vi
from bioscan_assets.core.index import search
from bioscan_assets.core.ingest.raw import read_raw_manifest
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches, read_shard_manifest
from bioscan_assets.core.storage import Store
from bioscan_assets.demo import DEMO_LANDING, stage_drops
from bioscan_assets.partitions import samples_partitions
from tests.helpers import write_drop
from tests.ingest_data import fasta_text, fastq_text, random_reads, write_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KMER = 20
MODEL = "tiny"
A, B = "acme-lab", "reef-survey"
TUNE_CONFIG = {
    "ops": {
        "lora_adapter": {"config": {"tenant": A, "steps": 8, "batch_size": 8, "crop_tokens": 48}},
        "evaluation_report": {"config": {"tenant": A, "nb_bootstrap": 20}},
    }
}


# --- 20-mers ---------------------------------------------------------------------------------

_CODE = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"ACGT"):
    _CODE[_c] = _i
_RUN = re.compile(rb"[ACGTacgt]{%d,}" % KMER)
_WEIGHTS = (4 ** np.arange(KMER - 1, -1, -1)).astype(np.uint64)


def kmer_codes(run: bytes) -> np.ndarray:
    """Every 20-mer of an A/C/G/T run as a 40-bit integer."""
    codes = _CODE[np.frombuffer(run.upper(), np.uint8)].astype(np.uint64)
    windows = np.lib.stride_tricks.sliding_window_view(codes, KMER)
    return windows @ _WEIGHTS


def kmers_of_text(data: bytes) -> set[int]:
    out: set[int] = set()
    for match in _RUN.finditer(data):
        out.update(kmer_codes(match.group()).tolist())
    return out


def _decompressed(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip/bgzip, possibly truncated on purpose
        out = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            return out.decompress(data)
        except zlib.error:
            return b""
    return data


def input_kmers(landing: Path) -> set[int]:
    """20-mers of every sequence-like run in every file dropped, good or bad."""
    found: set[int] = set()
    for path in sorted(p for p in landing.rglob("*") if p.is_file()):
        if path.name.endswith((".bam", ".cram")):
            with pysam.AlignmentFile(str(path), check_sq=False) as bam:
                for read in bam.fetch(until_eof=True):
                    found |= kmers_of_text((read.query_sequence or "").encode())
        else:
            found |= kmers_of_text(_decompressed(path))
    return found


def leaks(text: bytes, kmers: set[int]) -> list[tuple[int, str]]:
    """(offset, sha256 prefix) of each A/C/G/T run containing an input 20-mer; never the run."""
    hits = []
    for match in _RUN.finditer(text):
        codes = kmer_codes(match.group())
        if any(int(c) in kmers for c in codes):
            hits.append((match.start(), hashlib.sha256(match.group()).hexdigest()[:12]))
    return hits


# --- the demo, for real -------------------------------------------------------------------------

# Bad drops: every kind of input error, each carrying real sequence text near the fault.
BAD = {
    "BAD-FASTQ-QUAL": "quality shorter than the sequence",
    "BAD-FASTQ-SEPARATOR": "a sequence line where the '+' line belongs",
    "BAD-SHA": "sha256 differs from sample.json",
    "BAD-GZIP": "truncated gzip",
    "BAD-TAXONOMY": "taxonomy line without a tab",
}


def _write_bad_drops(landing: Path) -> None:
    reads = random_reads(6, seed=99, length=(150, 150))
    seqs = [r.seq for r in reads]

    folder = landing / A / "BAD-FASTQ-QUAL"
    text = fastq_text(reads[:2]).decode().splitlines()
    text[7] = text[7][:-30]  # the 2nd record's quality line loses 30 characters
    write_bytes(folder / "reads.fastq", ("\n".join(text) + "\n").encode())
    write_drop(landing, A, folder.name, listed=["reads.fastq"])

    folder = landing / A / "BAD-FASTQ-SEPARATOR"
    text = fastq_text(reads[:2]).decode().splitlines()
    text[6] = seqs[5]  # the 2nd record's '+' line replaced by a read
    write_bytes(folder / "reads.fastq", ("\n".join(text) + "\n").encode())
    write_drop(landing, A, folder.name, listed=["reads.fastq"])

    folder = landing / A / "BAD-SHA"
    write_bytes(folder / "reads.fasta", fasta_text(reads[2:3]))
    write_drop(landing, A, folder.name, listed=["reads.fasta"])
    write_bytes(folder / "reads.fasta", fasta_text(reads[2:4]))  # changed after sample.json

    folder = landing / A / "BAD-GZIP"
    data = gzip.compress(fastq_text(reads[3:6]), mtime=0)
    write_bytes(folder / "reads.fastq.gz", data[: len(data) // 2])
    write_drop(landing, A, folder.name, listed=["reads.fastq.gz"])

    folder = landing / A / "BAD-TAXONOMY"
    write_bytes(folder / "reads.fasta", fasta_text(reads[4:5]))
    taxonomy = f"Feature ID\tTaxon\nread4 {seqs[4]} k__Bacteria\n".encode()
    write_bytes(folder / "taxonomy.tsv", taxonomy)
    write_drop(landing, A, folder.name, listed=["reads.fasta"], taxonomy="taxonomy.tsv")


@dataclass
class Demo:
    root: Path
    landing: Path
    store: Store
    instance: DagsterInstance
    good: list[str]
    results: dict[str, object]


def build_demo(root: Path, timings: dict[str, float] | None = None) -> Demo:
    """Materialise the demo drops and the bad drops under `root` (see the module docstring)."""
    timings = {} if timings is None else timings
    landing, storage = root / "landing", root / "storage"
    good = [f"{t}/{s}" for t, s in stage_drops(DEMO_LANDING, Store(str(landing)))]
    _write_bad_drops(landing)
    (root / "dagster").mkdir()
    instance = DagsterInstance.local_temp(str(root / "dagster"))
    resources = {
        "storage": StorageResource(landing=str(landing), storage=str(storage)),
        "accelerator": AcceleratorResource(
            model=MODEL, compilation_cache=str(root / "home" / "jax_cache")
        ),
        "vector_store": VectorStoreResource(),
        "tracking": WandbResource(directory=str(root / "home" / "wandb")),
    }
    sample_graph = [
        *ingest_assets,
        *ingest_checks,
        sequence_embeddings,
        *embed_checks,
        *index_assets,
        *index_checks,
    ]
    instance.add_dynamic_partitions(samples_partitions.name, good + [f"{A}/{name}" for name in BAD])
    results: dict[str, object] = {}
    for key in good:
        started = time.perf_counter()
        results[key] = materialize(
            sample_graph,
            partition_key=key,
            instance=instance,
            resources=resources,
            tags={"bioscan/trigger": "ci"},
            raise_on_error=False,
        )
        timings[key] = time.perf_counter() - started
    for name in BAD:
        started = time.perf_counter()
        results[name] = materialize(
            [*ingest_assets, *ingest_checks],
            partition_key=f"{A}/{name}",
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
        timings[name] = time.perf_counter() - started
    defs = Definitions(
        assets=[*ingest_assets, sequence_embeddings, *index_assets, *tune_assets],
        asset_checks=tune_checks,
        jobs=[tune_and_evaluate],
        resources=resources,
    )
    started = time.perf_counter()
    results["tune_and_evaluate"] = defs.resolve_job_def("tune_and_evaluate").execute_in_process(
        instance=instance, run_config=TUNE_CONFIG, raise_on_error=False
    )
    timings["tune_and_evaluate"] = time.perf_counter() - started
    return Demo(root, landing, Store(str(storage)), instance, good, results)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    root = tmp_path_factory.mktemp("governance")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOSCAN_HOME", str(root / "home"))
        patch.setenv("WANDB_MODE", "offline")
        built = build_demo(root)
    yield built
    built.instance.dispose()


def test_the_demo_ran_and_the_bad_drops_failed_clearly(demo):
    for key in demo.good:
        assert demo.results[key].success, key
    assert demo.results["tune_and_evaluate"].success
    for name in BAD:
        result = demo.results[name]
        assert not result.success, name
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert failures, name
        message = failures[0].event_specific_data.error.message
        # the error names the file (or sample.json's field) it is about
        assert any(f in message for f in ("reads.fast", "taxonomy.tsv", "sample.json")), name


def _event_log_text(instance: DagsterInstance) -> tuple[bytes, int]:
    chunks, count = [], 0
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            chunks.append(serialize_value(entry))
            count += 1
        chunks.append(serialize_value(run.tags))
    return "\n".join(chunks).encode(), count


def _compute_logs(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".out", ".err")
    }


def test_no_input_sequence_reaches_logs_events_metadata_or_records(demo):
    kmers = input_kmers(demo.landing)
    assert len(kmers) > 20_000  # the distinct 20-mers of every read dropped
    # positive control: the scanner finds a read in text that holds one
    sample = next(demo.landing.rglob("reference_16S.fasta")).read_bytes()[:5000]
    assert leaks(b"error: " + sample, kmers)

    events, count = _event_log_text(demo.instance)
    assert count > 200 and b"STEP_FAILURE" in events and b"ASSET_MATERIALIZATION" in events
    found = {"event log": leaks(events, kmers)}
    compute = _compute_logs(demo.root / "dagster")
    assert compute and sum(len(v) for v in compute.values()) > 0
    for name, data in compute.items():
        found[f"compute log {name}"] = leaks(data, kmers)
    for area in ("manifests", "quarantine"):
        for rel in demo.store.list_files(area):
            if rel.endswith((".json", ".jsonl", ".md", ".html", ".txt")):
                found[rel] = leaks(demo.store.read_bytes(rel), kmers)
    bad = {where: hits for where, hits in found.items() if hits}
    assert not bad, f"input sequences found (offset, sha256 of the run): {bad}"


# --- tenant isolation ---------------------------------------------------------------------------

# (tenant, sample_id) a caller of tenant A might pass to reach B's sample REEF-07
CRAFTED = [
    (A, "REEF-07"),
    (A, "../../tenant=reef-survey/sample=REEF-07"),
    (A, "REEF-07/../../tenant=reef-survey/sample=REEF-07"),
    (f"{A}/../{B}", "REEF-07"),
    (f"../{B}", "REEF-07"),
    (f"{B}/", "REEF-07"),
    (f"{B}\n", "REEF-07"),
    (f"{B}/.", "REEF-07"),  # "." is a legal path component: the prefix resolves to B's
    ("*", "REEF-07"),
    ("", "REEF-07"),
    (f"{B.upper()}", "REEF-07"),
]
REFUSED = (ValueError, FileNotFoundError, KeyError, search.SearchError)


def _readers(store: Store):
    return {
        "read_raw_manifest": lambda t, s: [read_raw_manifest(store, t, s)],
        "read_shard_manifest": lambda t, s: [read_shard_manifest(store, t, s)],
        "iter_shard_batches": lambda t, s: list(iter_shard_batches(store, t, s)),
        "embedding.read_embedding_manifest": lambda t, s: [
            emb.read_embedding_manifest(store, MODEL, t, s)
        ],
        "embedding.iter_embedding_batches": lambda t, s: list(
            emb.iter_embedding_batches(store, MODEL, t, s)
        ),
        "hash_store.commits": lambda t, s: (
            HashStore(
                store,
                MODEL,
                emb.read_embedding_manifest(store, MODEL, B, "REEF-07")["weights_hash"],
                t,
            )
            .holdings()
            .commits
        ),
        "vector_index.read_embedding_manifest": lambda t, s: [
            vi.read_embedding_manifest(store, MODEL, t, s)
        ],
        "vector_index.iter_index_batches": lambda t, s: list(
            vi.iter_index_batches(store, t, s, MODEL, dim=64)
        ),
        "vector_index.partition_summary": lambda t, s: [
            r for r in [vi.partition_summary(store, t, MODEL, s)] if r["rows"]
        ],
        "search.search(sequence_id)": lambda t, s: search.search(
            store, t, MODEL, sequence_id=_b_sequence_id(store), sample_id=s
        ),
        "search.search(samples)": lambda t, s: search.search(
            store, t, MODEL, vector=_b_vector(store), samples=[s], k=50
        ),
    }


def _b_sequence_id(store: Store) -> str:
    batch = next(iter_shard_batches(store, B, "REEF-07", columns=["sequence_id"]))
    return batch.column(0)[0].as_py()


def _b_vector(store: Store) -> np.ndarray:
    batch = next(emb.iter_embedding_batches(store, MODEL, B, "REEF-07"))
    return np.asarray(batch.column("vector")[0].values.to_numpy(zero_copy_only=False), np.float32)


def fingerprint(value: list) -> set:
    """What identifies the data a reader returned: row keys, vector bytes, whole documents."""
    out: set = set()
    for item in value:
        if hasattr(item, "num_rows"):  # a record batch
            columns = item.to_pydict()
            if "vector" in columns:
                out |= {
                    ("vector", hashlib.sha256(np.asarray(v, np.float32).tobytes()).hexdigest())
                    for v in columns["vector"]
                }
            samples = columns.get("sample_id") or [None] * item.num_rows
            out |= {
                ("row", sa, sq)
                for sa, sq in zip(samples, columns.get("sequence_id", []), strict=False)
            }
        elif isinstance(item, search.Hit):
            out.add(("row", item.sample_id, item.sequence_id))
        else:
            out.add(("doc", json.dumps(item, sort_keys=True, default=repr)))
    return out


@pytest.fixture(scope="module")
def b_data(demo) -> dict[str, set]:
    """What each reader gives tenant B for its own sample: the readers do serve data."""
    return {name: fingerprint(read(B, "REEF-07")) for name, read in _readers(demo.store).items()}


def test_the_readers_do_serve_their_own_tenant(b_data):
    empty = [name for name, found in b_data.items() if not found]
    assert not empty, f"{empty} return nothing for tenant {B}'s own sample"


PARAMS = [pytest.param(t, s) for t, s in CRAFTED]


@pytest.mark.parametrize(("tenant", "sample_id"), PARAMS, ids=repr)
def test_no_reader_gives_another_tenants_data(demo, b_data, tenant, sample_id):
    leaked = []
    for name, read in _readers(demo.store).items():
        try:
            value = read(tenant, sample_id)
        except REFUSED:
            continue
        if fingerprint(value) & b_data[name]:
            leaked.append(name)
    assert not leaked, f"{leaked} returned tenant {B}'s data for {(tenant, sample_id)!r}"


def test_search_never_crosses_tenants(demo):
    vector = _b_vector(demo.store)
    hits = search.search(demo.store, A, MODEL, vector=vector, k=50, exact=True)
    assert hits and {h.sample_id for h in hits} <= {
        s.split("/")[1] for s in demo.good if s.startswith(A)
    }


def test_costs_and_manifests_stay_within_the_tenant(demo):
    for tenant in (A, B):
        docs = [doc for _rel, doc in provenance.iter_run_manifests(demo.store, tenant)]
        assert all(doc["tenant"] == tenant for doc in docs)
        summary = costs.tenant_summary(demo.store, tenant)
        own = sum(
            sum(demo.store.list_sizes(p).values())
            for p in costs.tenant_prefixes(demo.store, tenant)
            if not p.startswith("raw/")
        )
        assert summary["storage_total_bytes"] - summary["storage_bytes"].get("raw", 0) == own
    # every area a tenant's data lands in is charged to it: the hash store, adapters, reports too
    charged = costs.tenant_summary(demo.store, A)["storage_bytes"]
    assert {"raw", "shards", "embeddings", "vectors", "lancedb", "adapters", "reports"} <= {
        area for area, size in charged.items() if size > 0
    }, charged
    for crafted, _ in CRAFTED[3:]:
        with pytest.raises(ValueError):
            costs.tenant_summary(demo.store, crafted)
        with pytest.raises(ValueError):
            list(provenance.iter_run_manifests(demo.store, crafted))
