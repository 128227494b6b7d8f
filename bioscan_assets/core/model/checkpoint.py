"""Hugging Face checkpoints (`config.json`, `vocab.txt`, weights) <-> a LoadedModel.

A checkpoint is a local directory, a `gs://bucket/prefix` or a Hub id `org/name[@revision]`,
in any layout the Hub uses (one file or shards; safetensors or PyTorch `.bin`; see
`checkpoint_index`). Keys may carry the `esm.` prefix (`EsmForMaskedLM`) and LayerNorms the
legacy `gamma/beta` names. Weights stream in shard by shard (`streaming`), so a 2.5B model
needs about its own size in memory, not twice that.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict

from bioscan_assets.core.model import hub, safetensors_io, streaming
from bioscan_assets.core.model.checkpoint_index import Layout, read_layout
from bioscan_assets.core.model.hf_format import (
    CheckpointError,
    config_from_hf,
    config_to_hf,
    hf_name,
)
from bioscan_assets.core.model.loaded import LoadedModel, weights_hash
from bioscan_assets.core.model.nt_model import NTConfig
from bioscan_assets.core.model.tokenizer import NTTokenizer
from bioscan_assets.core.storage import Store

__all__ = ["CheckpointError", "Located", "load_checkpoint", "locate", "save_checkpoint"]


@dataclass
class Located:
    """A checkpoint's files on this machine, and what to call it."""

    source: str  # what provenance records: a path, gs:// URL or `org/name@commit`
    directory: Path | None  # the local folder, or None for gs:// (files copied one by one)
    names: set[str]  # every file at the checkpoint's top level
    files: dict[str, Path] = field(default_factory=dict)  # name -> local path, once fetched
    origin: dict[str, str] = field(default_factory=dict)  # repo_id / revision / commit
    fetch: Any = None  # name -> local path (gs:// only)

    def read_text(self, name: str) -> str:
        return self.path(name).read_text()

    def path(self, name: str) -> Path:
        if name not in self.files:
            if name not in self.names:
                raise CheckpointError(f"{self.source}: missing {name}")
            assert self.directory is not None or self.fetch is not None
            self.files[name] = self.fetch(name) if self.fetch else self.directory / name
        return self.files[name]


@contextlib.contextmanager
def locate(location: str, hint: str = "") -> Iterator[Located]:
    """A local directory, a gs:// prefix (files fetched to a temp copy as needed) or a Hub id."""
    if location.startswith("gs://"):
        store = Store(location)
        names = {st.rel for st in store.list_stats() if "/" not in st.rel}
        with contextlib.ExitStack() as stack:

            def fetch(name: str) -> Path:
                return stack.enter_context(store.local_copy(name))

            yield Located(location, None, names, fetch=fetch)
        return
    directory = Path(location).expanduser()
    if directory.is_dir():
        names = {p.name for p in directory.iterdir() if p.is_file()}
        yield Located(location, directory, names)
        return
    ref = hub.parse_ref(location)
    if ref is None or location.startswith((".", "/", "~")):
        raise CheckpointError(f"{location}: checkpoint directory not found")
    hint = hint or f"(No local directory {location} exists either.) {hub.copy_hint(location)}"
    snap = hub.snapshot(ref, hint)
    origin = {"repo_id": ref.repo_id, "revision": ref.revision, "commit": snap.commit}
    names = {p.name for p in snap.directory.iterdir() if p.is_file()}
    yield Located(f"{ref.repo_id}@{snap.commit}", snap.directory, names, origin=origin)


def _model_id(source: str, digest: str) -> str:
    stem = source.rstrip("/").rsplit("/", 1)[-1].lower()
    stem = re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._")[:64]
    return f"{stem or 'checkpoint'}-{digest[:8]}"


def read_config(found: Located) -> tuple[NTConfig, NTTokenizer, Layout]:
    """config.json, vocab.txt and the weights layout, checked against each other."""
    source = found.source
    if "config.json" not in found.names:
        raise CheckpointError(f"{source}: missing config.json")
    try:
        doc = json.loads(found.read_text("config.json"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{source}/config.json: not JSON ({error})") from None
    config = config_from_hf(doc, source, found.names)
    try:
        tokenizer = NTTokenizer.from_vocab_file(found.path("vocab.txt"))
    except ValueError as error:
        raise CheckpointError(f"{source}/vocab.txt: {error}") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"{source}: vocab.txt has {tokenizer.vocab_size} tokens but config.json says "
            f"vocab_size={config.vocab_size}"
        )
    special = [
        f"<{name}> is token {ours} in vocab.txt but config.json says {field_}={theirs}"
        for name, ours, field_, theirs, needed in (
            ("pad", tokenizer.pad_id, "pad_token_id", config.pad_token_id, True),
            (
                "mask",
                tokenizer.mask_id,
                "mask_token_id",
                config.mask_token_id,
                config.token_dropout,
            ),
        )
        if needed and ours != theirs
    ]
    if special:
        raise CheckpointError(f"{source}: {'; '.join(special)}")
    return config, tokenizer, read_layout(found.names, found.read_text, source)


def load_located(
    found: Located,
    dtype: Any = np.float32,
    place: streaming.Place | None = None,
    model_id: str | None = None,
) -> LoadedModel:
    config, tokenizer, layout = read_config(found)
    origin = found.origin or hub.read_source(found.names, found.read_text)
    # headers first (every problem reported before any weight is read), then the weights
    plan = streaming.plan(layout, {s: found.path(s) for s in layout.shards}, config, found.source)
    params = streaming.stream(plan, layout, found.files, found.source, dtype, place)
    digest = weights_hash(params)
    stem = origin["repo_id"] if found.origin else found.source
    return LoadedModel(
        model_id=model_id or _model_id(stem, digest),
        config=config,
        params=params,
        tokenizer=tokenizer,
        weights_hash=digest,
        pretrained=True,
        source=found.source,
        origin=origin,
    )


def load_checkpoint(
    location: str, dtype: Any = np.float32, place: streaming.Place | None = None
) -> LoadedModel:
    """A checkpoint from a local directory, `gs://bucket/prefix` or Hub id `org/name[@rev]`.

    `dtype` is what the weights are held in (float32 unless memory is short); `place(path,
    array)` may move each tensor to the devices as soon as it is read.
    """
    with locate(location) as found:
        return load_located(found, dtype, place)


def save_checkpoint(model: LoadedModel, directory: str | Path) -> None:
    """Write the Hugging Face layout (safetensors) that `EsmModel.from_pretrained` reads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for path, leaf in flatten_dict(model.params, sep="/").items():
        name, transpose = hf_name(path)
        array = np.asarray(leaf, dtype=np.float32)
        state[name] = np.ascontiguousarray(array.T if transpose else array)
    entries = [(name, array.dtype, array.shape) for name, array in state.items()]
    doc = config_to_hf(model.config)
    # each file atomically, config.json last: a directory with config.json is complete
    _write_atomic(
        directory / "model.safetensors",
        lambda tmp: safetensors_io.write_file(tmp, entries, state.__getitem__),
    )
    _write_atomic(directory / "vocab.txt", model.tokenizer.write_vocab_file)
    _write_atomic(
        directory / "config.json", lambda tmp: tmp.write_text(json.dumps(doc, indent=2) + "\n")
    )


def _write_atomic(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
