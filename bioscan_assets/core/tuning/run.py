"""One tuning run as `lora_adapter` does it: reference partitions in, a saved adapter out.

Two steps so the caller can open its tracking run (which records the split) in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.model import lora as lora_mod
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.model.presets import PRESETS
from bioscan_assets.core.storage import Store
from bioscan_assets.core.tuning.adapter import Adapter, save_adapter
from bioscan_assets.core.tuning.config import TrainConfig
from bioscan_assets.core.tuning.labels import Lineage
from bioscan_assets.core.tuning.loop import TrainResult, train_classifier
from bioscan_assets.core.tuning.reference_data import ReferenceData, load_reference_data
from bioscan_assets.core.tuning.split import TEST_FRACTION, UNSEEN_GENUS_FRACTION, Split, make_split

log = logging.getLogger(__name__)

# the preset whose adapter share the asset reports, whatever model it trained on
REFERENCE_PRESET = "nt-2.5b-multi-species"


@dataclass
class TuningInputs:
    references: list[str]
    data: ReferenceData
    split: Split
    train_sequences: list[str]
    train_lineages: list[Lineage]

    def rows(self) -> dict[str, int]:
        """Row counts for the provenance manifest."""
        return {
            "labelled": len(self.data.ids),
            "train": len(self.split.train),
            "test_seen_genus": len(self.split.test_seen),
            "test_unseen_genus": len(self.split.test_unseen),
        }


def prepare_tuning(
    store: Store,
    references: Sequence[str],
    seed: int,
    *,
    unseen_genus_fraction: float = UNSEEN_GENUS_FRACTION,
    test_fraction: float = TEST_FRACTION,
) -> TuningInputs:
    """The labelled rows of `references`, the split, and the training subset."""
    data = load_reference_data(store, references)
    split = make_split(
        data.ids,
        data.lineages,
        seed,
        unseen_genus_fraction=unseen_genus_fraction,
        test_fraction=test_fraction,
    )
    train_seqs, train_lineages = data.subset(split.train)
    return TuningInputs(list(references), data, split, train_seqs, train_lineages)


@dataclass
class TunedAdapter:
    result: TrainResult
    adapter: Adapter
    doc: dict[str, Any]  # adapter.json as saved, plus `path` and `url`
    reference_adapter_fraction: float  # the same LoRA settings on REFERENCE_PRESET

    @property
    def folder(self) -> str:
        return self.doc["path"]

    def loss_table(self) -> str:
        """Markdown: classes and last-step loss per rank."""
        last = self.result.history[-1] if self.result.history else {}
        rows = "\n".join(
            f"| {rank} | {len(labels)} | {last.get(f'loss_{rank}', float('nan')):.4f} |"
            for rank, labels in self.adapter.vocab.labels.items()
        )
        return "| rank | classes | final loss |\n|---|---|---|\n" + rows


def tune_adapter(
    store: Store,
    inputs: TuningInputs,
    model: LoadedModel,
    config: TrainConfig,
    *,
    workdir: str | Path,
    accelerator: Accelerator | None = None,
    say: Callable[[str], None] = log.info,
    on_metrics: Callable[[dict[str, float], int], None] | None = None,
    tenant: str | None = None,
) -> TunedAdapter:
    """Train (or resume) on the training split, then save the adapter and its split (under
    the tenant's own folder when the run is for one tenant)."""
    result = train_classifier(
        inputs.train_sequences,
        inputs.train_lineages,
        model,
        config,
        workdir=workdir,
        ids=inputs.split.train,
        accelerator=accelerator,
        store=store,
        say=say,
        on_metrics=on_metrics,
    )
    adapter = Adapter.from_training(
        result,
        model,
        inputs.split,
        reference_partitions=inputs.references,
        **({"tenant": tenant} if tenant else {}),
        final_loss=result.final_loss(),
        train_seconds=round(result.train_seconds, 3),
        sequences_per_s=round(result.sequences_per_s, 3),
        tokens_per_s=round(result.tokens_per_s, 1),
        trainable_fraction=result.parameters["trainable_fraction"],
        parameters=result.parameters,
        run_key=result.run_key,
    )
    doc = save_adapter(store, adapter, inputs.split, tenant)
    big = lora_mod.trainable_fraction(PRESETS[REFERENCE_PRESET], config.lora)
    return TunedAdapter(result, adapter, doc, big["adapter_fraction"])
