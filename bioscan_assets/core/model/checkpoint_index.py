"""Which files hold a checkpoint's weights: one file or shards named by an index.

The four layouts the Hub uses, tried in transformers' order: `model.safetensors`,
`model.safetensors.index.json` (+ its shards), `pytorch_model.bin`,
`pytorch_model.bin.index.json` (+ its shards). An index is checked here against the files that
exist, so a missing shard is reported before any weight is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from bioscan_assets.core.model.hf_format import CheckpointError, is_ignored

SAFETENSORS, BIN = "safetensors", "bin"
# (file, format, is an index), in the order transformers looks for them
CANDIDATES = (
    ("model.safetensors", SAFETENSORS, False),
    ("model.safetensors.index.json", SAFETENSORS, True),
    ("pytorch_model.bin", BIN, False),
    ("pytorch_model.bin.index.json", BIN, True),
)
WEIGHT_FILES = tuple(name for name, _, is_index in CANDIDATES if not is_index)
_LIST_LIMIT = 3


@dataclass(frozen=True)
class Layout:
    format: str  # SAFETENSORS or BIN
    shards: tuple[str, ...]  # weight files, in the order they are read
    index: str | None = None  # the index file, for sharded layouts
    weight_map: dict[str, str] = field(default_factory=dict)  # tensor -> shard (sharded only)

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.shards, self.index) if self.index else self.shards


def _encoder_first(tensor: str) -> tuple[bool, str]:
    return is_ignored(tensor), tensor


def pick(names: Collection[str]) -> tuple[str, str, bool] | None:
    """The first weights file (or index) present: (name, format, is an index)."""
    return next((c for c in CANDIDATES if c[0] in names), None)


def _weight_map(text: str, where: str, fmt: str) -> dict[str, str]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{where}: not JSON ({error})") from None
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{where}: no 'weight_map' (tensor name -> shard file)")
    suffix = ".safetensors" if fmt == SAFETENSORS else ".bin"
    for tensor, shard in weight_map.items():
        if (
            not isinstance(shard, str)
            or "/" in shard
            or "\\" in shard
            or shard.startswith(".")
            or not shard.endswith(suffix)
        ):
            raise CheckpointError(
                f"{where}: tensor {tensor} is mapped to {shard!r}, not a {suffix} file in the "
                "same folder"
            )
    return weight_map


def read_layout(names: Collection[str], read_text: Callable[[str], str], source: str) -> Layout:
    """The layout of a checkpoint whose files are `names`; `read_text` reads the index."""
    chosen = pick(names)
    if chosen is None:
        raise CheckpointError(
            f"{source}: no weights file; expected one of "
            f"{', '.join(name for name, _, _ in CANDIDATES)}"
        )
    name, fmt, is_index = chosen
    if not is_index:
        return Layout(fmt, (name,))
    where = f"{source}/{name}"
    weight_map = _weight_map(read_text(name), where, fmt)
    shards = tuple(sorted(set(weight_map.values())))
    missing = [shard for shard in shards if shard not in names]
    if missing:
        shard = missing[0]
        held = sorted((t for t, s in weight_map.items() if s == shard), key=_encoder_first)
        more = f" and {len(held) - _LIST_LIMIT} more" if len(held) > _LIST_LIMIT else ""
        raise CheckpointError(
            f"{where} lists shard {shard} (holding {', '.join(held[:_LIST_LIMIT])}{more}) but "
            f"that file is missing from {source}"
            + (f"; also missing: {', '.join(missing[1:])}" if len(missing) > 1 else "")
        )
    return Layout(fmt, shards, name, weight_map)
