"""Retention policies and prices as configured: `config/retention.yaml`, validated.

The file holds both what retention may delete (`policies:`, `protected:`) and what compute
and storage cost (`prices:`, read by `prices.py`); one loader serves both.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)
# Never deleted, whatever a policy file says.
BUILTIN_PROTECTED = (
    "raw/",
    "manifests/",
    "audit/",
    "quarantine/",
    "sensor_state/",
    "adapters/",
    "reports/",
)
POLICY_NAMES = (
    "sequence_shards",
    "sequence_embeddings",
    "checkpoints",
    "lancedb",
    "wandb",
)
# Policies that no longer exist: a file naming one loads with a warning, the policy ignored.
RETIRED = {
    "jax_cache": "JAX caps its compilation cache itself (jax_compilation_cache_max_size, set "
    "from the accelerator resource's compilation_cache_max_bytes)",
}
_REQUIRED = {
    "sequence_shards": ("expire_after_days",),
    "sequence_embeddings": ("expire_after_days",),
    "checkpoints": ("roots", "keep_last"),
    "lancedb": ("cleanup_older_than_days",),
    "wandb": ("path",),
}


def load_policy_file(path: str | Path | None = None) -> dict[str, Any]:
    """The bundled `config/retention.yaml`, or another file of the same shape."""
    if path:
        text = Path(path).read_text()
        name = str(path)
    else:
        text = resources.files("bioscan_assets").joinpath("config/retention.yaml").read_text()
        name = "bioscan_assets/config/retention.yaml"
    doc = yaml.safe_load(text) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{name}: expected a mapping at the top level")
    return doc


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Policies:
    """Validated retention settings (see config/retention.yaml)."""

    policies: dict[str, dict[str, Any]]
    protected: tuple[str, ...]
    prices: dict[str, Any]

    def get(self, name: str) -> dict[str, Any] | None:
        """The policy's settings, or None when it is switched off."""
        doc = self.policies.get(name)
        if not doc or not doc.get("enabled", True):
            return None
        return doc

    def only(self, names: Iterable[str]) -> Policies:
        """The same settings with every policy but `names` left out (the protected set stays)."""
        names = list(names)
        unknown = sorted(set(names) - set(POLICY_NAMES))
        if unknown:
            raise ValueError(f"unknown policies {unknown}; known: {', '.join(POLICY_NAMES)}")
        return replace(self, policies={k: v for k, v in self.policies.items() if k in names})


def load_policies(
    path: str | Path | None = None, overrides: Mapping[str, Any] | str | None = None
) -> Policies:
    """Policies from the file (bundled by default) with `overrides` (a mapping or YAML text)
    merged on top key by key. Unknown policy names and missing fields are errors."""
    doc = load_policy_file(path)
    if isinstance(overrides, str):
        overrides = yaml.safe_load(overrides) or {}
        if not isinstance(overrides, dict):
            raise ValueError("retention overrides must be a YAML mapping")
    if overrides:
        doc = _merge(doc, overrides)
    policies = doc.get("policies") or {}
    for name in sorted(set(policies) & set(RETIRED)):
        log.warning(f"retention policy {name} is ignored: {RETIRED[name]}")
        policies = {k: v for k, v in policies.items() if k != name}
    unknown = sorted(set(policies) - set(POLICY_NAMES))
    if unknown:
        raise ValueError(
            f"unknown retention policy {', '.join(unknown)}; known: {', '.join(POLICY_NAMES)}"
        )
    for name, fields in _REQUIRED.items():
        settings = policies.get(name)
        if not settings or not settings.get("enabled", True):
            continue
        for key in fields:
            if settings.get(key) is None:
                raise ValueError(f"retention policy {name}: `{key}` is required")
    lance_tags = (policies.get("lancedb") or {}).get("tags", "keep")
    if lance_tags not in ("keep", "move", "delete"):
        raise ValueError(
            f"retention policy lancedb: tags must be keep, move or delete, not {lance_tags!r}"
        )
    extra = [p if p.endswith("/") else p + "/" for p in doc.get("protected") or []]
    protected = tuple(dict.fromkeys([*BUILTIN_PROTECTED, *extra]))
    return Policies(policies=policies, protected=protected, prices=dict(doc.get("prices") or {}))


def days(value: Any) -> timedelta:
    """A policy's day count (int, float or numeric string) as a duration."""
    return timedelta(days=float(value))
