"""Any checkpoint layout -> sharded safetensors, tensor by tensor, nothing written on failure.

The published NT-2.5B is PyTorch `.bin`, which needs torch to read. Converting once (where
torch is installed) gives files any machine reads without it. Every tensor keeps its name,
dtype and bytes, so the weights hash, and every embedding filed under it, stays valid; the
heads the encoder ignores are kept too, so `transformers` still loads the result.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from bioscan_assets.core.model import hub, safetensors_io, streaming
from bioscan_assets.core.model.checkpoint import Located, locate, read_config
from bioscan_assets.core.model.checkpoint_index import WEIGHT_FILES, read_layout
from bioscan_assets.core.model.hf_format import CheckpointError

DEFAULT_SHARD_BYTES = 2 << 30
INDEX = "model.safetensors.index.json"


def _pack(sizes: list[tuple[str, int]], limit: int) -> list[list[str]]:
    """Consecutive tensors into shards of at most `limit` bytes (a bigger tensor alone)."""
    shards: list[list[str]] = [[]]
    used = 0
    for name, size in sizes:
        if shards[-1] and used + size > limit:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return shards


def _refuse_existing(destination: Path) -> None:
    taken = [n for n in ("config.json", INDEX, *WEIGHT_FILES) if (destination / n).exists()]
    if taken:
        raise CheckpointError(
            f"{destination}: already holds a checkpoint ({', '.join(taken)}); choose an empty "
            "directory"
        )


def _convert(found: Located, destination: Path, shard_bytes: int) -> dict[str, Any]:
    config, _tokenizer, layout = read_config(found)
    files = {shard: found.path(shard) for shard in layout.shards}
    streaming.plan(layout, files, config, found.source)  # refuse bad checkpoints before writing
    with contextlib.ExitStack() as stack:
        # every source tensor (heads included), read where the index says it lives
        holder: dict[str, streaming.Shard] = {}
        meta: dict[str, tuple[Any, tuple[int, ...]]] = {}
        for shard in layout.shards:
            label = f"{found.source}/{shard}"
            opened = streaming.open_shard(files[shard], layout.format, label)
            source = stack.enter_context(opened)
            for name, (dtype, shape) in source.tensors.items():
                if layout.weight_map.get(name, shard) == shard and name not in holder:
                    holder[name], meta[name] = source, (dtype, shape)
        sizes = [(n, int(dtype.itemsize) * math.prod(shape)) for n, (dtype, shape) in meta.items()]
        groups = _pack(sizes, shard_bytes)
        names = (
            ["model.safetensors"]
            if len(groups) == 1
            else [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
        )
        for name, group in zip(names, groups, strict=True):
            safetensors_io.write_file(
                destination / f".{name}.tmp",
                [(t, *meta[t]) for t in group],
                lambda t: holder[t].view(t),  # straight from the mapped source file
                done=lambda t: holder[t].done(t),
            )
    written = list(names)
    if len(groups) > 1:
        weight_map = {t: name for name, group in zip(names, groups, strict=True) for t in group}
        total = sum(size for _, size in sizes)
        doc = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (destination / f".{INDEX}.tmp").write_text(json.dumps(doc, indent=2) + "\n")
        written.append(INDEX)
    shutil.copyfile(found.path("vocab.txt"), destination / ".vocab.txt.tmp")
    written.append("vocab.txt")
    origin = found.origin or hub.read_source(found.names, found.read_text)
    record = {**origin, "converted_from": found.source}
    (destination / f".{hub.SOURCE_FILE}.tmp").write_text(json.dumps(record, indent=1) + "\n")
    written.append(hub.SOURCE_FILE)
    shutil.copyfile(found.path("config.json"), destination / ".config.json.tmp")
    written.append("config.json")  # last: a directory with config.json is complete
    for name in written:
        os.replace(destination / f".{name}.tmp", destination / name)
    return {
        "source": found.source,
        "destination": str(destination),
        "from": {"format": layout.format, "files": list(layout.shards)},
        "to": {
            "format": "safetensors",
            "files": names,
            "index": INDEX if len(groups) > 1 else None,
        },
        "tensors": len(meta),
        "bytes": sum(size for _, size in sizes),
    }


def convert_checkpoint(
    source: str, destination: str | Path, shard_bytes: int = DEFAULT_SHARD_BYTES
) -> dict[str, Any]:
    """Write `source` (directory, gs:// or Hub id) as sharded safetensors into `destination`."""
    destination = Path(destination).expanduser()
    created = not destination.exists()
    destination.mkdir(parents=True, exist_ok=True)
    try:
        _refuse_existing(destination)
        with locate(source) as found:
            report = _convert(found, destination, shard_bytes)
    finally:
        for tmp in destination.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        if created and not any(destination.iterdir()):
            destination.rmdir()  # a failed conversion leaves nothing behind
    # the result must read back as the same layout it claims
    names = {p.name for p in destination.iterdir()}
    read_layout(names, lambda n: (destination / n).read_text(), str(destination))
    return report
