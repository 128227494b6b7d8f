"""A sample's calls end to end: fit the tenant's classifier, stream the shard rows, commit.

Plain data in and out, so the Dagster asset only picks partitions and records metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from bioscan_assets.core.calls.calls import CallCache, Classifier, call_table
from bioscan_assets.core.calls.calls_layout import calls_version, write_calls
from bioscan_assets.core.calls.model_calls import fit_knn_calls, fit_lora_calls
from bioscan_assets.core.calls.references import (
    References,
    find_references,
    load_references,
    shard_manifest,
    usable_reference_keys,
)
from bioscan_assets.core.classify.calibrated import CalibratedNB
from bioscan_assets.core.classify.reference_gate import DEFAULT_UNSEEN_RATE
from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.layout import shard_dir, split_partition_key
from bioscan_assets.core.manifests import iter_parts
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS


@dataclass(frozen=True)
class CallSettings:
    """Knobs of the three classifiers; those of the method used feed the calls' version
    (through the classifier's description)."""

    threshold: float = 0.8
    bootstrap: int = 100
    unseen_rate: float = DEFAULT_UNSEEN_RATE
    seed: int = 0
    batch_rows: int = 4096
    knn_k: int = 5
    knn_threshold: float = 0.5
    lora_threshold: float = 0.5


@dataclass
class ModelContext:
    """What the kNN and LoRA calls need beyond the references: the encoder and, for LoRA, the
    adapter the evaluation ranked."""

    model: LoadedModel
    accelerator: Accelerator
    adapter_folder: str | None = None


@dataclass
class TenantClassifier:
    """The fitted classifier of one tenant (None: no usable reference) and what it learnt from."""

    tenant: str
    classifier: Classifier | None
    references: References
    settings: CallSettings
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        text = json.dumps(self.description, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def fit_tenant_classifier(
    store: Store,
    tenant: str,
    partition_keys: Iterable[str],
    settings: CallSettings | None = None,
    shared_keys: Iterable[str] = (),
    method: str = "kmer_nb",
    models: ModelContext | None = None,
) -> TenantClassifier:
    """Fit `method` on the references `tenant` may use (see `references`), never on another's
    private ones. kNN and LoRA need `models`."""
    settings = settings or CallSettings()
    usable = usable_reference_keys(tenant, partition_keys, shared_keys)
    keys = find_references(store, usable)
    if method not in FITTERS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(sorted(FITTERS))}")
    if method != "kmer_nb" and models is None:
        raise ValueError(f"method {method} needs the encoder (models=ModelContext(...))")
    classifier, refs, description = FITTERS[method](store, tenant, keys, settings, models)
    if classifier is None:
        description = {
            "method": "none",
            "reason": "no reference available",
            "references": refs.describe(),
        }
    else:
        description = description | {"references": refs.describe()}
    return TenantClassifier(tenant, classifier, refs, settings, description)


def _fit_nb(
    store: Store, tenant: str, keys: list[str], settings: CallSettings, _models: Any
) -> tuple[Classifier | None, References, dict[str, Any]]:
    refs = load_references(store, keys)
    if not len(refs):
        return None, refs, {}
    classifier = CalibratedNB(
        threshold=settings.threshold,
        bootstrap=settings.bootstrap,
        unseen_rate=settings.unseen_rate,
        seed=settings.seed,
    ).fit(refs.sequences, refs.lineages)
    return classifier, refs, classifier.describe()


def _shard_versions(store: Store, keys: Iterable[str]) -> dict[str, str]:
    return {key: str(shard_manifest(store, key).get("version")) for key in sorted(keys)}


def _fit_knn(
    store: Store, tenant: str, keys: list[str], settings: CallSettings, models: ModelContext
) -> tuple[Classifier | None, References, dict[str, Any]]:
    if not keys:
        return None, References(), {}
    classifier, vectors = fit_knn_calls(
        store,
        keys,
        models.model,
        models.accelerator,
        k=settings.knn_k,
        threshold=settings.knn_threshold,
    )
    refs = References(
        ids=vectors.ids, lineages=vectors.lineages, versions=_shard_versions(store, keys)
    )
    return classifier, refs, classifier.describe() if classifier else {}


def _fit_lora(
    store: Store, tenant: str, keys: list[str], settings: CallSettings, models: ModelContext
) -> tuple[Classifier | None, References, dict[str, Any]]:
    if not keys:
        return None, References(), {}
    if not models.adapter_folder:
        raise ValueError("method lora needs the evaluated adapter's folder")
    classifier, learnt = fit_lora_calls(
        store,
        models.adapter_folder,
        keys,
        models.model,
        models.accelerator,
        tenant=tenant,
        threshold=settings.lora_threshold,
    )
    refs = References(versions=_shard_versions(store, learnt))
    return classifier, refs, classifier.describe()


FITTERS = {"kmer_nb": _fit_nb, "knn": _fit_knn, "lora": _fit_lora}


def _shard_rows(
    store: Store, key: str, manifest: dict, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    tenant, sample_id = split_partition_key(key)
    yield from iter_parts(
        store, shard_dir(tenant, sample_id), manifest, ["sequence_id", "dna_sequence"], batch_rows
    )


def call_sample(store: Store, key: str, fitted: TenantClassifier) -> dict[str, Any]:
    """Call every shard row of partition `key` and commit; returns the calls manifest."""
    tenant, sample_id = split_partition_key(key)
    if tenant != fitted.tenant:
        raise ValueError(
            f"partition {key} is not tenant {fitted.tenant}'s: refusing its classifier"
        )
    manifest = shard_manifest(store, key)
    cache = CallCache(fitted.classifier)
    version = calls_version(str(manifest.get("version")), fitted.description)

    def tables() -> Iterator[pa.Table]:
        for batch in _shard_rows(store, key, manifest, fitted.settings.batch_rows):
            yield call_table(batch.column(0).to_pylist(), batch.column(1).to_pylist(), cache)

    summary = _Summary()
    written = write_calls(
        store,
        tenant,
        sample_id,
        summary.watch(tables()),
        version=version,
        info=lambda: {
            "shard_version": manifest.get("version"),
            "classifier": fitted.description,
            "classifier_fingerprint": fitted.fingerprint,
            "settings": asdict(fitted.settings),
            "distinct_sequences_classified": cache.classified,
            "summary": summary.as_dict(),
        },
    )
    return written


class _Summary:
    """Rows per status and per deepest rank, counted as the tables stream past."""

    def __init__(self) -> None:
        self.status: dict[str, int] = {}
        self.deepest: dict[str, int] = {rank: 0 for rank in RANKS}
        self.reverse = 0

    def watch(self, tables: Iterable[pa.Table]) -> Iterator[pa.Table]:
        for table in tables:
            for status in table.column("status").to_pylist():
                self.status[status] = self.status.get(status, 0) + 1
            for rank in table.column("deepest_rank").to_pylist():
                if rank is not None:
                    self.deepest[rank] += 1
            self.reverse += sum(table.column("reverse_strand").to_pylist())
            yield table

    def as_dict(self) -> dict[str, Any]:
        called = {rank: 0 for rank in RANKS}
        running = 0
        for rank in reversed(RANKS):
            running += self.deepest[rank]
            called[rank] = running
        return {"status": self.status, "called_at_rank": called, "reverse_strand": self.reverse}
