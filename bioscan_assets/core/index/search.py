"""Nearest-neighbour search in a tenant's vector index, by DNA sequence or by indexed sequence id.

The tenant is always required and is the only input to the database path (validated by
`layout.check_tenant` first), so a query can only ever open that tenant's database. Query
sequences are normalised like shard rows and embedded with the table's own model; the table's
schema metadata (model id, weights hash, dimension) must match the model used for the query.
Raw DNA never appears in errors: only lengths and hashes. The model and encoder modules load JAX
(~2 s), so they are imported only by the paths that embed a query sequence; a search by id or
vector stays light.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bioscan_assets.core import layout
from bioscan_assets.core.index.ann import AnnParams
from bioscan_assets.core.index.partition_rows import reads_per_hash
from bioscan_assets.core.index.tables import (
    HASH_COLUMN,
    KEY_SEPARATOR,
    META_WEIGHTS,
    list_model_tables,
    open_table,
    rank_column,
    sql_string,
    table_dim,
    tenant_exists,
)
from bioscan_assets.core.ingest.normalise import NORMALISE_TABLE
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS

if TYPE_CHECKING:
    from bioscan_assets.core.model.loaded import LoadedModel

MAX_K = 1000
_RESULT_COLUMNS = ["key", "sequence_id", "sample_id", "taxonomy", *RANKS]


class SearchError(ValueError):
    """A query that cannot be answered; the message says what to do instead."""


class InvalidTenantError(SearchError):
    pass


class UnknownTenantError(SearchError):
    pass


class MissingTableError(SearchError):
    def __init__(self, message: str, models: list[str]):
        super().__init__(message)
        self.models = models


class InvalidSequenceError(SearchError):
    pass


class SequenceNotFoundError(SearchError):
    pass


@dataclass(frozen=True)
class Hit:
    sequence_id: str
    sample_id: str
    distance: float  # cosine distance, 0 = same direction
    taxonomy: str | None
    ranks: dict[str, str | None]
    # rows of the tenant's index with this hit's sequence (identical reads, all samples);
    # None where the table predates `sequence_hash` or the row was indexed before it
    reads: int | None = None

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_sequence(sequence: str) -> str:
    """How a query sequence is named in logs and errors: length and a hash, never the bases."""
    return f"sequence of {len(sequence)} bases (sha256 {hashlib.sha256(sequence.encode()).hexdigest()[:12]})"


def normalise_query(sequence: str, *, name: str = "query") -> str:
    """Upper case, U->T, other codes -> N, whitespace removed; refuses sequences without A/C/G/T."""
    cleaned = "".join(sequence.split())
    normalised = cleaned.encode("ascii", errors="replace").translate(NORMALISE_TABLE).decode()
    if not any(base in normalised for base in "ACGT"):
        raise InvalidSequenceError(
            f"{name}: no valid bases (A, C, G, T or U) in the {describe_sequence(cleaned)}"
        )
    return normalised


def build_hint(tenant: str, model_id: str) -> str:
    return (
        "build it by materialising the vector_index asset for one of the tenant's samples, e.g. "
        f"BIOSCAN_MODEL={model_id} dagster asset materialize -m bioscan_assets.definitions "
        f"--select vector_index --partition {tenant}/<sample_id>"
    )


def _check_tenant(tenant: str) -> str:
    try:
        return layout.check_tenant(tenant)
    except ValueError as error:
        raise InvalidTenantError(str(error)) from None


def check_tenant_exists(storage: Store, tenant: str, model_id: str = "<model>") -> None:
    """InvalidTenantError / UnknownTenantError unless the tenant has an index database."""
    _check_tenant(tenant)
    if not tenant_exists(storage, tenant):
        raise UnknownTenantError(
            f"unknown tenant {tenant!r}: there is no vector index for it under "
            f"{storage.url('lancedb')}; {build_hint(tenant, model_id)}"
        )


def open_index(storage: Store, tenant: str, model_id: str):
    """The tenant's table for the model; clear errors when the tenant or the table is missing."""
    check_tenant_exists(storage, tenant, model_id)
    table = open_table(storage, tenant, model_id)
    if table is None:
        models = list(list_model_tables(storage, tenant))
        have = ", ".join(models) if models else "none"
        raise MissingTableError(
            f"tenant {tenant!r} has no index for model {model_id!r} (models indexed for this "
            f"tenant: {have}); {build_hint(tenant, model_id)}",
            models,
        )
    return table


def resolve_model_id(spec: str) -> str:
    """The model id behind a BIOSCAN_MODEL-style spec without loading weights where possible.

    A preset name is its own id; a checkpoint path's id includes its weights digest, so the
    checkpoint is loaded to learn it.
    """
    if "/" not in spec and not spec.startswith("."):
        return spec
    from bioscan_assets.core.model.presets import load_model

    return load_model(spec).model_id


def _where(
    filters: dict[str, str] | None, samples: Sequence[str] | None, labelled_only: bool = False
) -> str | None:
    clauses = ["taxonomy IS NOT NULL"] if labelled_only else []
    for rank, value in (filters or {}).items():
        if rank not in RANKS:
            raise SearchError(f"unknown rank {rank!r} in filters; ranks are {', '.join(RANKS)}")
        if not isinstance(value, str) or not value:
            raise SearchError(f"filter {rank}: the value must be a non-empty string")
        clauses.append(f"{rank_column(rank)} = {sql_string(value)}")
    if samples:
        for sample in samples:
            try:
                layout.check_sample_id(sample)
            except ValueError as error:
                raise SearchError(str(error)) from None
        clauses.append(f"sample_id IN ({', '.join(sql_string(s) for s in samples)})")
    return " AND ".join(clauses) if clauses else None


def _hits(
    rows: Any, skip_key: str | None, k: int, reads: dict[str, int] | None = None
) -> list[Hit]:
    out = []
    data = rows.to_pydict()
    hashes = data.get(HASH_COLUMN) or [None] * rows.num_rows
    for i in range(rows.num_rows):
        if skip_key is not None and data["key"][i] == skip_key:
            continue
        out.append(
            Hit(
                sequence_id=data["sequence_id"][i],
                sample_id=data["sample_id"][i],
                distance=float(data["_distance"][i]),
                taxonomy=data["taxonomy"][i],
                ranks={rank: data[rank][i] for rank in RANKS},
                reads=(reads or {}).get(hashes[i]),
            )
        )
    return out[:k]


def lookup_vector(
    table, sequence_id: str, samples: Sequence[str] | None = None
) -> tuple[str, np.ndarray]:
    """(key, vector) of an indexed sequence; its sample must be given when the id is ambiguous."""
    clause = f"sequence_id = {sql_string(sequence_id)}"
    if samples and len(samples) == 1:
        clause = f"key = {sql_string(samples[0] + KEY_SEPARATOR + sequence_id)}"
    elif samples:
        clause += f" AND sample_id IN ({', '.join(sql_string(s) for s in samples)})"
    rows = table.search().where(clause).select(["key", "sample_id", "vector"]).limit(2).to_arrow()
    where = f" in sample(s) {', '.join(samples)}" if samples else ""
    if rows.num_rows == 0:
        raise SequenceNotFoundError(f"sequence id {sequence_id!r} is not in the index{where}")
    if rows.num_rows > 1:
        found = sorted(set(rows.column("sample_id").to_pylist()))
        raise SequenceNotFoundError(
            f"sequence id {sequence_id!r} occurs in several samples ({', '.join(found)}, ...): "
            "say which sample it is from"
        )
    vector = np.asarray(rows.column("vector")[0].values.to_numpy(zero_copy_only=False), np.float32)
    return rows.column("key")[0].as_py(), vector


def search_vector(
    table,
    vector: np.ndarray,
    *,
    k: int = 10,
    filters: dict[str, str] | None = None,
    samples: Sequence[str] | None = None,
    params: AnnParams | None = None,
    exact: bool = False,
    exclude_key: str | None = None,
    labelled_only: bool = False,
) -> list[Hit]:
    """Top-k by cosine distance, filters applied before the search (prefilter); with
    `labelled_only`, only rows that carry a taxonomy."""
    if not 1 <= k <= MAX_K:
        raise SearchError(f"k must be between 1 and {MAX_K}, got {k}")
    vector = np.asarray(vector, np.float32).reshape(-1)
    dim = table_dim(table)
    if vector.shape[0] != dim:
        raise SearchError(f"query vector has {vector.shape[0]} dimensions, the index has {dim}")
    if not np.isfinite(vector).all() or not np.any(vector):
        raise SearchError("query vector is zero or not finite; cosine distance is undefined")
    params = params or AnnParams()
    limit = k + (1 if exclude_key else 0)
    query = (
        table.search(vector, vector_column_name="vector")
        .distance_type("cosine")
        .limit(limit)
        .select([*_RESULT_COLUMNS, *_hash_column(table), "_distance"])
    )
    where = _where(filters, samples, labelled_only)
    if where:
        query = query.where(where, prefilter=True)
    if exact:
        query = query.bypass_vector_index()
    else:
        query = query.nprobes(params.nprobes)
        if params.refine_factor:
            query = query.refine_factor(params.refine_factor)
    rows = query.to_arrow()
    return _hits(rows, exclude_key, k, _reads(table, rows))


def _hash_column(table) -> list[str]:
    return [HASH_COLUMN] if HASH_COLUMN in table.schema.names else []


def _reads(table, rows: Any) -> dict[str, int]:
    """Reads (index rows of the tenant) per hit's sequence hash: what each hit stands for."""
    if HASH_COLUMN not in rows.schema.names:
        return {}
    return reads_per_hash(table, rows.column(HASH_COLUMN).to_pylist())


def _check_model(table, model: LoadedModel, model_id: str) -> None:
    meta = table.schema.metadata or {}
    if model.model_id != model_id:
        raise SearchError(f"the query model is {model.model_id!r}, the index is for {model_id!r}")
    weights = meta.get(META_WEIGHTS, b"").decode()
    if weights and model.weights_hash and weights != model.weights_hash:
        raise SearchError(
            f"the index for {model_id!r} was built with weights {weights[:12]}…, the loaded "
            f"model has {model.weights_hash[:12]}…: its vectors are not comparable"
        )
    if model.config.hidden_size != table_dim(table):
        raise SearchError(
            f"model {model_id!r} embeds {model.config.hidden_size} dimensions, the index "
            f"holds {table_dim(table)}"
        )


def embed_queries(
    table,
    sequences: Sequence[str],
    model_id: str,
    model: LoadedModel | None = None,
    executor: Any = None,
) -> np.ndarray:
    """Embeddings of query sequences with the table's model, [N, dim] float32."""
    from bioscan_assets.core.embedding.compute import (
        embed_sequences,  # jax: only for sequence queries
    )

    if model is None:
        if executor is not None:
            model = executor.model
        else:
            from bioscan_assets.core.model.presets import load_model

            model = load_model(model_id)
    _check_model(table, model, model_id)
    return embed_sequences(list(sequences), model, executor)


def search(
    storage: Store,
    tenant: str,
    model_id: str,
    *,
    sequence: str | None = None,
    sequence_id: str | None = None,
    sample_id: str | None = None,
    vector: np.ndarray | None = None,
    k: int = 10,
    filters: dict[str, str] | None = None,
    samples: list[str] | None = None,
    model: LoadedModel | None = None,
    executor: Any = None,
    params: AnnParams | None = None,
    exact: bool = False,
) -> list[Hit]:
    """Nearest neighbours of one query in the tenant's index for `model_id`.

    Give exactly one of `sequence` (DNA, embedded with the table's model: `model`/`executor`
    or the preset of that name), `sequence_id` (an indexed sequence; `sample_id` says which
    sample it is from, needed when the id occurs in several) or `vector`. `filters` are rank
    equalities ({"genus": "Bacillus"}), `samples` restricts hits to those samples. A query by
    sequence id does not return the sequence itself.
    """
    given = [
        name
        for name, v in (("sequence", sequence), ("sequence_id", sequence_id), ("vector", vector))
        if v is not None
    ]
    if len(given) != 1:
        raise SearchError("give exactly one of sequence, sequence_id or vector")
    if sample_id is not None and sequence_id is None:
        raise SearchError(
            "sample_id names the sample of a sequence_id query; use samples= to filter hits"
        )
    _where(filters, samples)  # validate before touching storage
    normalised = normalise_query(sequence) if sequence is not None else None
    table = open_index(storage, tenant, model_id)
    exclude = None
    if normalised is not None:
        vector = embed_queries(table, [normalised], model_id, model, executor)[0]
    elif sequence_id is not None:
        scope = [sample_id] if sample_id else samples
        exclude, vector = lookup_vector(table, sequence_id, scope)
    return search_vector(
        table,
        vector,
        k=k,
        filters=filters,
        samples=samples,
        params=params,
        exact=exact,
        exclude_key=exclude,
    )
