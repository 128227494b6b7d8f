"""The tenant's LanceDB tables: names, schema, connecting and opening, filter literals.

Layout (DESIGN.md "Data layouts"): `<storage>/lancedb/<tenant>/` is the tenant's database; each
model id gets its own table `sequences_<model id>` ("table `sequences` per model id": the model
id is part of the name, so vectors of two models never share a table, and the table's schema
metadata records the model id, weights hash and dimension, checked on every write and query).

Columns: `key` (= `<sample_id>/<sequence_id>`, the merge key; sample ids never contain `/`),
the shards' first six, `vector`, `tenant`, `sample_id`, `model_id`, then one column per rank
(kingdom .. species, split from `taxonomy`) so rank filters are plain equality and can use
bitmap indexes, and last `sequence_hash` (search counts the reads a hit stands for by it). `key`
comes first and carries a BTree index: LanceDB's merge_insert can
silently match nothing when the key is not a leading indexed column (lancedb#3515).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pyarrow as pa

from bioscan_assets.core import layout
from bioscan_assets.core.schema import SHARD_SCHEMA
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS

TABLE_PREFIX = "sequences_"
KEY_SEPARATOR = "/"
SCHEMA_VERSION = "1"
META_MODEL_ID = b"bioscan.model_id"
META_WEIGHTS = b"bioscan.weights_hash"
META_DIM = b"bioscan.dim"
META_SCHEMA = b"bioscan.schema_version"
SHARD_COLUMNS = [f.name for f in SHARD_SCHEMA][:6]
HASH_COLUMN = "sequence_hash"  # from the shards (format 2): identical reads share it
_TABLE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]")


class VectorIndexError(ValueError):
    """Bad input to the index: inconsistent shards/embeddings, wrong model, bad names."""


def table_name(model_id: str) -> str:
    """`sequences_<model id>`; ids with characters LanceDB refuses get a hash suffix, never a clash."""
    if not model_id:
        raise VectorIndexError("model id must not be empty")
    safe = _TABLE_NAME_RE.sub("_", model_id)
    if safe != model_id:
        safe = f"{safe[:80]}_{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"
    return TABLE_PREFIX + safe


def check_tenant(tenant: str) -> str:
    """`layout.check_tenant`, raising the index's own error type."""
    try:
        return layout.check_tenant(tenant)
    except ValueError as error:
        raise VectorIndexError(str(error)) from None


def check_sample_id(sample_id: str) -> str:
    """`layout.check_sample_id`, raising the index's own error type."""
    try:
        return layout.check_sample_id(sample_id)
    except ValueError as error:
        raise VectorIndexError(str(error)) from None


def database_uri(store: Store, tenant: str) -> str:
    """The tenant's LanceDB URI, built only from a validated tenant name."""
    return store.url(layout.lancedb_dir(check_tenant(tenant)))


def sql_string(value: str) -> str:
    """A SQL string literal for LanceDB filters."""
    if any(ord(ch) < 32 for ch in value):
        raise VectorIndexError("filter values must not contain control characters")
    return "'" + value.replace("'", "''") + "'"


def rank_column(rank: str) -> str:
    """A rank column in a filter; `class` and `order` are SQL keywords, so always quoted."""
    if rank not in RANKS:
        raise VectorIndexError(f"unknown rank {rank!r}; ranks are {', '.join(RANKS)}")
    return f"`{rank}`"


def connect(store: Store, tenant: str) -> Any:
    import lancedb  # seconds to import: only the paths that open a table pay for it

    return lancedb.connect(database_uri(store, tenant))


def tenant_exists(store: Store, tenant: str) -> bool:
    rel = layout.lancedb_dir(check_tenant(tenant))
    local = store.local_path(rel)
    if local is not None:
        return local.is_dir()
    return bool(store.list_files(rel)[:1])


def table_names(db: Any) -> list[str]:
    """Every table of a LanceDB connection, across result pages."""
    names: list[str] = []
    token = None
    while True:
        page = db.list_tables(page_token=token)
        names.extend(page.tables)
        token = page.page_token
        if not token:
            return names


def list_model_tables(store: Store, tenant: str) -> dict[str, str]:
    """{model id: table name} of the tenant's index tables (model id from the schema metadata)."""
    if not tenant_exists(store, tenant):
        return {}
    db = connect(store, tenant)
    out = {}
    for name in table_names(db):
        if not name.startswith(TABLE_PREFIX):
            continue
        meta = db.open_table(name).schema.metadata or {}
        model_id = meta.get(META_MODEL_ID, name[len(TABLE_PREFIX) :].encode()).decode()
        out[model_id] = name
    return dict(sorted(out.items()))


def open_table(store: Store, tenant: str, model_id: str) -> Any:
    """The model's table for the tenant, or None when it does not exist."""
    if not tenant_exists(store, tenant):
        return None
    db = connect(store, tenant)
    name = table_name(model_id)
    if name not in table_names(db):
        return None
    table = db.open_table(name)
    found = (table.schema.metadata or {}).get(META_MODEL_ID, b"").decode()
    if found and found != model_id:
        raise VectorIndexError(f"table {name} holds model {found!r}, not {model_id!r}")
    return table


def table_dim(table: Any) -> int:
    return table.schema.field("vector").type.list_size


def hash_field() -> pa.Field:
    """Nullable: a table made before the column existed gets it, empty, on its next upsert."""
    return pa.field(HASH_COLUMN, pa.string())


def index_schema(dim: int, model_id: str, weights_hash: str = "") -> pa.Schema:
    shard = {f.name: f for f in SHARD_SCHEMA}
    fields = [
        pa.field("key", pa.string(), nullable=False),
        *(shard[name] for name in SHARD_COLUMNS),
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        *(pa.field(rank, pa.string()) for rank in RANKS),
        hash_field(),
    ]
    metadata = {
        META_MODEL_ID: model_id.encode(),
        META_WEIGHTS: weights_hash.encode(),
        META_DIM: str(dim).encode(),
        META_SCHEMA: SCHEMA_VERSION.encode(),
    }
    return pa.schema(fields, metadata=metadata)
