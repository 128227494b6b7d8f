"""`lora_adapter` [tune] and the `tune_and_evaluate` job (with `evaluation_report` from
`assets.evaluate`).

Both assets are unpartitioned and read the reference sample partitions (drops with a
taxonomy.tsv) that one tenant may use: its own and the shared ones (config `tenant`, required
when several tenants hold private references; adapters live under
adapters/<model>/tenant=<t>/). The work is in `core.tuning.run` and
`core.evaluation.evaluate`; these functions pick inputs, call them, and record what happened.
"""

import contextlib
import time
from pathlib import Path

from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from bioscan_resources.tracking import WandbResource
from dagster import (
    AssetExecutionContext,
    Config,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)
from pydantic import Field

from bioscan_assets.assets.evaluate import as_metric, evaluation_report, no_regression
from bioscan_assets.assets.keys import ADAPTER_KEY, OWNERS, SHARDS_KEY
from bioscan_assets.assets.provenance import record_provenance
from bioscan_assets.assets.retry import STORAGE_RETRY
from bioscan_assets.core.calls.references import tenant_scope
from bioscan_assets.core.storage import Store
from bioscan_assets.core.tuning.adapter import ADAPTER_FILES
from bioscan_assets.core.tuning.config import TrainConfig
from bioscan_assets.core.tuning.progress import ProgressLog, loss_history, write_loss_history
from bioscan_assets.core.tuning.reference_data import (
    find_reference_partitions,
    no_reference_message,
)
from bioscan_assets.core.tuning.run import prepare_tuning, tune_adapter
from bioscan_assets.core.tuning.split import TEST_FRACTION, UNSEEN_GENUS_FRACTION
from bioscan_assets.k8s import accelerator_step_tags
from bioscan_assets.partitions import samples_partitions
from bioscan_assets.settings import bioscan_home

_TRAIN = TrainConfig()  # the defaults live in core; the config below only describes them


class TuneConfig(Config):
    """Defaults fit the bundled demo on 2 CPU cores (demo model, ~60 training sequences)."""

    steps: int = Field(default=_TRAIN.steps, description="Optimiser steps.")
    batch_size: int = Field(
        default=_TRAIN.batch_size, description="Sequences per step (rounded to the mesh)."
    )
    crop_tokens: int = Field(
        default=_TRAIN.crop_tokens,
        description="Tokens per training window (<cls> + 6-mers; 64 ~ 380 bp).",
    )
    window: str = Field(
        default=_TRAIN.window,
        description="Training window: 'random' (anywhere; reads from any region) or 'start' "
        "(always the first, in training and prediction; references sharing a start primer).",
    )
    learning_rate: float = Field(
        default=_TRAIN.learning_rate, description="Peak AdamW learning rate."
    )
    warmup_steps: int = Field(
        default=_TRAIN.warmup_steps, description="Linear warmup steps before cosine decay."
    )
    weight_decay: float = _TRAIN.weight_decay
    lora_rank: int = _TRAIN.lora_rank
    lora_alpha: float = _TRAIN.lora_alpha
    lora_dropout: float = _TRAIN.lora_dropout
    lora_targets: list[str] = Field(default_factory=lambda: list(_TRAIN.lora_targets))
    remat: bool = Field(default=_TRAIN.remat, description="Rematerialise layers (less memory).")
    rank_weights: list[float] = Field(
        default_factory=lambda: list(_TRAIN.rank_weights),
        description="Loss weight per rank, kingdom to species.",
    )
    seed: int = Field(
        default=_TRAIN.seed, description="Seeds the split, the adapter init and the batches."
    )
    unseen_genus_fraction: float = Field(
        default=UNSEEN_GENUS_FRACTION,
        description="Share of genera held out entirely (unseen-genus test set).",
    )
    test_fraction: float = Field(
        default=TEST_FRACTION,
        description="Share of the other sequences held out (seen-genus test set).",
    )
    checkpoint_every_steps: int = _TRAIN.checkpoint_every_steps
    checkpoint_every_minutes: float = _TRAIN.checkpoint_every_minutes
    keep_checkpoints: int = _TRAIN.keep_checkpoints
    log_every_steps: int = Field(
        default=0,
        ge=0,
        description="Log step, loss per rank, learning rate, throughput and ETA every N steps "
        "(0: about ten lines per run).",
    )
    tenant: str = Field(
        default="",
        description="Train for this tenant, on its own reference samples plus the shared ones "
        "(tenant 'shared' and shared_reference_keys); the adapter is stored under "
        "adapters/<model>/tenant=<t>/ and only that tenant's calls use it. Empty: the one tenant "
        "holding private references; required when several do (one run per tenant).",
    )
    shared_reference_keys: list[str] = Field(
        default_factory=list,
        description="Partition keys of reference samples every tenant may use, besides the "
        "'shared' tenant's (as taxonomy_calls' config of the same name).",
    )

    def train_config(self) -> TrainConfig:
        """The TrainConfig fields this config sets; the rest keep TrainConfig's defaults."""
        return TrainConfig.from_json(self.model_dump())


def _reference_keys(
    context: AssetExecutionContext, store: Store, config: TuneConfig
) -> tuple[str, list[str], dict[str, str]]:
    """(tenant, the reference partitions that tenant may use, {skipped key: why})."""
    keys = context.instance.get_dynamic_partitions(samples_partitions.name)
    found, skipped = find_reference_partitions(store, keys)
    try:
        tenant, references = tenant_scope(config.tenant, found, config.shared_reference_keys)
    except ValueError as error:
        raise Failure(str(error), allow_retries=False) from None
    for key in sorted(set(found) - set(references)):
        skipped[key] = f"another tenant's private reference (training for {tenant})"
    for key, why in skipped.items():
        context.log.info(f"{key}: not used ({why})")
    if not references:
        message = f"{no_reference_message(skipped, len(keys))} for tenant {tenant}"
        raise Failure(message, allow_retries=False)
    return tenant, references, skipped


@asset(
    key=ADAPTER_KEY,
    group_name="tune",
    deps=[SHARDS_KEY],
    kinds={"jax", "wandb"},
    owners=OWNERS,
    code_version="lora-1",
    retry_policy=STORAGE_RETRY,
    op_tags=accelerator_step_tags(),
    pool="tpu",
    description="LoRA adapter (query/value) on the frozen encoder plus a seven-rank taxonomy "
    "head, trained on the reference samples; a small versioned artefact under adapters/.",
)
def lora_adapter(
    context: AssetExecutionContext,
    config: TuneConfig,
    storage: StorageResource,
    accelerator: AcceleratorResource,
    tracking: WandbResource,
) -> MaterializeResult:
    started_at = time.time()
    store = storage.output_store()
    executor = accelerator.executor()
    model, acc = executor.model, executor.accelerator
    train_config = config.train_config()
    tenant, references, skipped = _reference_keys(context, store, config)
    inputs = prepare_tuning(
        store,
        references,
        train_config.seed,
        unseen_genus_fraction=config.unseen_genus_fraction,
        test_fraction=config.test_fraction,
    )
    split = inputs.split
    context.log.info(
        f"{len(inputs.data.ids)} labelled sequences from {len(references)} reference samples; "
        f"split {split.counts()} (digest {split.digest()})"
    )
    if not model.pretrained:
        context.log.warning(
            f"base model {model.model_id} is NOT pretrained (random weights): the adapter "
            "learns on a random encoder"
        )
    run_name = f"lora-{model.model_id}-{tenant}-{context.run.run_id[:8]}"
    progress = ProgressLog(train_config.steps, config.log_every_steps, context.log.info)
    with tracking.start(
        run_name,
        "tune",
        {
            **train_config.to_json(),
            "base_model": model.model_id,
            "base_weights_hash": model.weights_hash,
            "pretrained": model.pretrained,
            "split": split.counts() | {"digest": split.digest()},
            "dagster_run_id": context.run.run_id,
            "tenant": tenant,
        },
        tags=["lora", model.model_id, f"tenant:{tenant}"],
        archive=store,
    ) as run:
        tuned = tune_adapter(
            store,
            inputs,
            model,
            train_config,
            workdir=Path(bioscan_home()) / "tune",
            accelerator=acc,
            say=context.log.info,
            on_metrics=progress.chain(
                lambda metrics, step: run.log(
                    {f"train/{k}": v for k, v in metrics.items()}, step=step
                )
            ),
            tenant=tenant,
        )
        result, doc, folder = tuned.result, tuned.doc, tuned.folder
        losses = write_loss_history(
            store, folder, loss_history(result.history, (result.resumed_from_step or 0) + 1)
        )
        run.summary(
            {
                "adapter/version": doc["version"],
                "adapter/trainable_fraction": result.parameters["trainable_fraction"],
                "train/seconds": result.train_seconds,
            }
        )
        with contextlib.ExitStack() as stack:
            files = [
                stack.enter_context(store.local_copy(f"{folder}/{name}")) for name in ADAPTER_FILES
            ]
            run.log_artifact(
                f"lora-adapter-{model.model_id}",
                "model",
                files,
                {
                    "version": doc["version"],
                    "base_weights_hash": model.weights_hash,
                    "tenant": tenant,
                },
            )
        wandb_dir = run.dir

    provenance = record_provenance(
        context,
        store,
        inputs={f"sequence_shards/{k}": v for k, v in inputs.data.shard_versions().items()},
        config=train_config.to_json(),
        rows=inputs.rows(),
        model=model.provenance(),
        device=acc.describe(),
        started_at=started_at,
        outputs={"adapter": store.url(folder), "bytes": doc["weights"]["bytes"]},
    )
    return MaterializeResult(
        metadata={
            "adapter_version": doc["version"],
            "adapter_path": folder,
            "adapter_url": MetadataValue.path(store.url(folder)),
            "adapter_bytes": doc["weights"]["bytes"],
            "base_model_id": model.model_id,
            "base_weights_hash": model.weights_hash,
            "pretrained": model.pretrained,
            "tenant": tenant,
            "reference_partitions": ", ".join(references),
            "skipped_partitions": MetadataValue.json(skipped),
            "split_digest": split.digest(),
            "train_sequences": len(split.train),
            "test_seen_genus": len(split.test_seen),
            "test_unseen_genus": len(split.test_unseen),
            "steps": result.steps,
            "resumed_from_step": result.resumed_from_step
            if result.resumed_from_step is not None
            else -1,
            "resumed_from": result.resumed_from or "none",
            "final_loss": as_metric(result.final_loss()),
            "loss_per_rank": MetadataValue.md(tuned.loss_table()),
            "loss_history": MetadataValue.path(store.url(losses)),
            "train_seconds": round(result.train_seconds, 2),
            "first_step_seconds": round(result.first_step_seconds, 2),
            "sequences_per_s": round(result.sequences_per_s, 3),
            "tokens_per_s": round(result.tokens_per_s, 1),
            "trainable_parameters": result.parameters["actual_trainable"],
            "trainable_fraction": result.parameters["trainable_fraction"],
            "adapter_fraction": result.parameters["adapter_fraction"],
            "nt_2_5b_adapter_fraction": tuned.reference_adapter_fraction,
            "checkpoints": MetadataValue.json(result.checkpoints),
            "wandb_dir": wandb_dir or "disabled",
            **run.metadata(),
            **{k: v for k, v in acc.describe().items()},
            **provenance,
        },
        data_version=DataVersion(doc["version"]),
    )


tune_assets = [lora_adapter, evaluation_report]
tune_checks = [no_regression]
tune_and_evaluate = define_asset_job(
    "tune_and_evaluate",
    selection=[lora_adapter, evaluation_report],
    description="Tune the LoRA adapter on the reference samples, then evaluate it against the "
    "kNN and naive Bayes baselines.",
)
