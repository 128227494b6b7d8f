"""The adapter artefact: LoRA leaves + head + vocabularies + what base they belong to.

`adapters/<model_id>/<version>/` holds `adapter.safetensors`, `split.json` and `adapter.json`
(written last); `adapters/<model_id>/latest.json` points at the newest. Never the base weights.
An adapter trained for one tenant (on the references that tenant may use) lives under
`adapters/<model_id>/tenant=<t>/` with its own `latest.json`, so tenants never share one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from bioscan_assets.core.layout import adapter_root
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.model.nt_model import NTConfig
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.core.tuning.config import TrainConfig
from bioscan_assets.core.tuning.labels import LabelVocab
from bioscan_assets.core.tuning.loop import TrainResult
from bioscan_assets.core.tuning.split import Split

ADAPTER_FORMAT = "bioscan-lora-adapter/1"
# what one saved adapter folder holds (the W&B artefact carries the same files)
ADAPTER_FILES = ("adapter.safetensors", "adapter.json", "split.json")


@dataclass
class Adapter:
    lora: dict
    head: dict
    vocab: LabelVocab
    config: TrainConfig
    base_model_id: str
    base_weights_hash: str
    base_pretrained: bool
    base_config: dict[str, Any]
    split_digest: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    @classmethod
    def from_training(
        cls, result: TrainResult, model: LoadedModel, split: Split | None = None, **extra: Any
    ) -> Adapter:
        return cls(
            lora=result.lora,
            head=result.head,
            vocab=result.vocab,
            config=result.config,
            base_model_id=model.model_id,
            base_weights_hash=model.weights_hash,
            base_pretrained=model.pretrained,
            base_config=asdict(model.config),
            split_digest=split.digest() if split else None,
            extra=extra,
        )

    def tensors(self) -> dict[str, np.ndarray]:
        out = {}
        for prefix, tree in (("lora", self.lora), ("head", self.head)):
            for path, value in flatten_dict(tree, sep="/").items():
                out[f"{prefix}/{path}"] = np.ascontiguousarray(value, dtype=np.float32)
        return out

    def describe(self, weights_sha256: str, weights_bytes: int) -> dict[str, Any]:
        return {
            "format": ADAPTER_FORMAT,
            "base_model": {
                "model_id": self.base_model_id,
                "weights_hash": self.base_weights_hash,
                "pretrained": self.base_pretrained,
                "config": self.base_config,
            },
            "lora": asdict(self.config.lora) | {"targets": list(self.config.lora_targets)},
            "train_config": self.config.to_json(),
            "ranks": list(RANKS),
            "vocab": self.vocab.labels,
            "split_digest": self.split_digest,
            "weights": {
                "file": "adapter.safetensors",
                "sha256": weights_sha256,
                "bytes": weights_bytes,
            },
            "extra": self.extra,
        }


def adapter_dir(model_id: str, version: str, tenant: str | None = None) -> str:
    return f"{adapter_root(model_id, tenant)}/{version}"


def latest_pointer(model_id: str, tenant: str | None = None) -> str:
    return f"{adapter_root(model_id, tenant)}/latest.json"


def save_adapter(
    store: Store, adapter: Adapter, split: Split | None = None, tenant: str | None = None
) -> dict[str, Any]:
    """Write weights, split, then `adapter.json`, then the `latest.json` pointer; returns the doc.

    The version hashes the weights and everything that defines the adapter, so re-saving the
    same adapter rewrites the same folder.
    """
    blob = save_tensors(adapter.tensors(), metadata={"format": ADAPTER_FORMAT})
    sha = hashlib.sha256(blob).hexdigest()
    doc = adapter.describe(sha, len(blob))
    # `extra` (timings, provenance) is recorded but does not define the adapter
    defining = {k: v for k, v in doc.items() if k != "extra"}
    version = hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:12]
    doc["version"] = version
    adapter.version = version
    folder = adapter_dir(adapter.base_model_id, version, tenant)
    store.write_bytes(f"{folder}/adapter.safetensors", blob)
    if split is not None:
        store.write_bytes(f"{folder}/split.json", json.dumps(split.to_json()).encode())
        doc["split"] = {"file": "split.json", **split.counts(), "seed": split.seed}
    store.write_bytes(f"{folder}/adapter.json", json.dumps(doc, indent=1, sort_keys=True).encode())
    store.write_bytes(
        latest_pointer(adapter.base_model_id, tenant),
        json.dumps({"version": version, "path": folder}).encode(),
    )
    doc["path"] = folder
    doc["url"] = store.url(folder)
    return doc


def load_adapter(store: Store, folder: str) -> tuple[Adapter, dict[str, Any]]:
    """The adapter in `folder` (checked against its recorded sha256) and its `adapter.json`."""
    try:
        doc = json.loads(store.read_bytes(f"{folder}/adapter.json"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no adapter at {store.url(folder)}: materialise lora_adapter first"
        ) from None
    if doc.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{store.url(folder)}/adapter.json: format {doc.get('format')!r}")
    blob = store.read_bytes(f"{folder}/{doc['weights']['file']}")
    if hashlib.sha256(blob).hexdigest() != doc["weights"]["sha256"]:
        raise ValueError(f"{store.url(folder)}: weights do not match the sha256 in adapter.json")
    tensors = load_tensors(blob)
    trees: dict[str, dict] = {"lora": {}, "head": {}}
    for name, value in tensors.items():
        prefix, _, path = name.partition("/")
        trees[prefix][path] = value
    base = doc["base_model"]
    adapter = Adapter(
        lora=unflatten_dict(trees["lora"], sep="/"),
        head=unflatten_dict(trees["head"], sep="/"),
        vocab=LabelVocab({rank: list(doc["vocab"][rank]) for rank in RANKS}),
        config=TrainConfig.from_json(doc["train_config"]),
        base_model_id=base["model_id"],
        base_weights_hash=base["weights_hash"],
        base_pretrained=base["pretrained"],
        base_config=base["config"],
        split_digest=doc.get("split_digest"),
        extra=doc.get("extra", {}),
        version=doc["version"],
    )
    return adapter, doc


def latest_adapter_folder(store: Store, model_id: str, tenant: str | None = None) -> str:
    """The folder `latest.json` points at; FileNotFoundError when no adapter was saved."""
    return json.loads(store.read_bytes(latest_pointer(model_id, tenant)))["path"]


def load_latest_adapter(
    store: Store, model_id: str, tenant: str | None = None
) -> tuple[Adapter, dict[str, Any]]:
    try:
        folder = latest_adapter_folder(store, model_id, tenant)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no adapter for model {model_id} under {store.url('adapters')}: "
            "materialise lora_adapter first"
        ) from None
    return load_adapter(store, folder)


def loader_config(doc: dict[str, Any]) -> NTConfig:
    """The base encoder config an adapter document was trained on (for checks and tooling)."""
    cfg = dict(doc["base_model"]["config"])
    cfg["lora_targets"] = tuple(cfg.get("lora_targets", ()))
    return NTConfig(**cfg)
