"""What one run costs: device classes, their prices, and the estimate a run manifest records.

Prices are list-price placeholders from `config/retention.yaml` (`prices:`), overridable per
deployment. Compute: device-hours x the device class's hourly price; a GPU/TPU step also
pays its host's wall time at the CPU price. Storage: bytes x price per GB-month.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bioscan_assets.core.governance.policy import load_policy_file

DEVICE_CLASSES = ("cpu", "gpu", "tpu")
GB = 1e9
_PLATFORMS = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}


def device_class(kind: str | None) -> str:
    """cpu / gpu / tpu from a JAX platform name or a device kind string."""
    text = (kind or "cpu").strip().lower()
    if text in _PLATFORMS:
        return _PLATFORMS[text]
    if "tpu" in text:
        return "tpu"
    if any(word in text for word in ("nvidia", "gpu", "cuda", "amd", "rocm")):
        return "gpu"
    return "cpu"


@dataclass(frozen=True)
class Prices:
    """Hourly price per device of each class, and storage per GB-month."""

    device_hour: Mapping[str, float] = field(
        default_factory=lambda: {"cpu": 0.10, "gpu": 3.00, "tpu": 1.20}
    )
    storage_gb_month: float = 0.020
    currency: str = "USD"

    def __post_init__(self) -> None:
        missing = [c for c in DEVICE_CLASSES if c not in self.device_hour]
        if missing:
            raise ValueError(f"prices.device_hour lacks {', '.join(missing)}")
        bad = {k: v for k, v in self.device_hour.items() if float(v) < 0}
        if bad or self.storage_gb_month < 0:
            raise ValueError(f"prices must be >= 0 (got {bad or self.storage_gb_month})")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> Prices:
        doc = dict(doc or {})
        base = cls()
        hourly = {
            **base.device_hour,
            **{k: float(v) for k, v in (doc.get("device_hour") or {}).items()},
        }
        return cls(
            device_hour=hourly,
            storage_gb_month=float(doc.get("storage_gb_month", base.storage_gb_month)),
            currency=str(doc.get("currency", base.currency)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "device_hour": dict(sorted(self.device_hour.items())),
            "storage_gb_month": self.storage_gb_month,
            "currency": self.currency,
        }


def default_prices() -> Prices:
    """The prices of the bundled policy file."""
    return Prices.from_dict(load_policy_file().get("prices"))


def estimate_cost(
    prices: Prices,
    *,
    device_kind: str,
    device_seconds: float,
    wall_seconds: float,
    bytes_stored: int = 0,
) -> dict[str, Any]:
    """Compute and monthly storage cost of one run (rounded to 1e-6 of the currency)."""
    kind = device_class(device_kind)
    compute = device_seconds / 3600.0 * float(prices.device_hour[kind])
    host = 0.0 if kind == "cpu" else wall_seconds / 3600.0 * float(prices.device_hour["cpu"])
    storage = bytes_stored / GB * prices.storage_gb_month
    return {
        "currency": prices.currency,
        "device_kind": kind,
        "device_hours": round(device_seconds / 3600.0, 6),
        "compute_usd": round(compute + host, 6),
        "storage_bytes": int(bytes_stored),
        "storage_usd_per_month": round(storage, 6),
        "prices": prices.as_dict(),
    }
