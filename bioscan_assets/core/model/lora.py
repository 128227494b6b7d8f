"""LoRA on the frozen Nucleotide Transformer: settings, initialisation, counting, checks.

The encoder (`nt_model.NucleotideTransformer`) keeps adapters in their own variable collection,
`"lora"`, as `layer_N/<target>_lora/{a, b}`, next to the base `"params"`. Training
differentiates the `"lora"` tree alone; the base tree is never updated nor saved with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from bioscan_assets.core.model.nt_model import NTConfig, variable_shapes

TARGETS = ("query", "key", "value")


@dataclass(frozen=True)
class LoRASettings:
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.1
    targets: tuple[str, ...] = ("query", "value")

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        bad = [t for t in self.targets if t not in TARGETS]
        if bad or not self.targets:
            raise ValueError(f"LoRA targets {list(self.targets)}: choose from {list(TARGETS)}")

    def apply_to(self, config: NTConfig, remat: bool = False) -> NTConfig:
        """The encoder config with these adapters (and optional rematerialisation) switched on."""
        return replace(
            config,
            lora_rank=self.rank,
            lora_alpha=float(self.alpha),
            lora_dropout=float(self.dropout),
            lora_targets=tuple(self.targets),
            remat=remat,
        )


def lora_parameter_count(config: NTConfig, settings: LoRASettings) -> int:
    """A (in x r) plus B (r x out) per adapted projection; q/k/v are hidden x hidden."""
    h = config.hidden_size
    return config.num_layers * len(settings.targets) * settings.rank * (h + h)


def trainable_fraction(
    config: NTConfig, settings: LoRASettings, head_parameters: int = 0
) -> dict[str, Any]:
    """Analytic counts from the config alone (nothing is allocated, so it works for NT-2.5B)."""
    base = config.encoder_parameter_count()
    lora = lora_parameter_count(config, settings)
    return {
        "base_parameters": base,
        "lora_parameters": lora,
        "head_parameters": head_parameters,
        "adapter_fraction": lora / (base + lora),
        "trainable_fraction": (lora + head_parameters) / (base + lora + head_parameters),
    }


def init_lora(config: NTConfig, settings: LoRASettings, seed: int) -> dict:
    """The `"lora"` collection: A ~ Kaiming-uniform (fan in), B = 0, so training starts at the base.

    Shapes come from the module itself (`variable_shapes`, nothing computed); values from numpy,
    so the same seed gives the same adapter on any machine and device count.
    """
    shapes = variable_shapes(settings.apply_to(config))["lora"]
    rng = np.random.default_rng([seed, 0x10A])
    flat = {}
    for path, shape in sorted(
        flatten_dict(shapes, is_leaf=lambda _, x: isinstance(x, tuple)).items()
    ):
        if path[-1] == "a":
            bound = float(np.sqrt(6.0 / shape[0]))
            flat[path] = rng.uniform(-bound, bound, shape).astype(np.float32)
        else:
            flat[path] = np.zeros(shape, np.float32)
    return unflatten_dict(flat)


def check_matches(config: NTConfig, settings: LoRASettings, lora: Any) -> None:
    """Refuse an adapter tree whose layout or shapes differ from what `config` + `settings` build."""
    want = flatten_dict(
        variable_shapes(settings.apply_to(config))["lora"],
        is_leaf=lambda _, x: isinstance(x, tuple),
    )
    got = {k: tuple(np.shape(v)) for k, v in flatten_dict(lora).items()}
    if got != want:
        missing = sorted("/".join(k) for k in set(want) - set(got))
        extra = sorted("/".join(k) for k in set(got) - set(want))
        wrong = sorted("/".join(k) for k in set(want) & set(got) if want[k] != got[k])
        raise ValueError(
            "adapter does not fit the base model: "
            f"missing {missing[:3]}, unexpected {extra[:3]}, wrong shape {wrong[:3]}"
        )


def count(tree: Any) -> int:
    return int(sum(np.prod(np.shape(v)) for v in flatten_dict(tree).values()))
