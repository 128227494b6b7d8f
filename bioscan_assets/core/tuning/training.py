"""LoRA tuning of the frozen encoder with a seven-rank taxonomy head, and the adapter artefact.

- Labels: one vocabulary per rank from the training lineages; unknown ranks (and, at test
  time, labels never seen in training) are -1 and masked out of the loss.
- Loss: per-rank masked cross-entropy, combined with per-rank weights (coarse ranks weigh more).
- Optimiser: AdamW with linear warmup and cosine decay, global-norm clipping. Only the LoRA
  leaves and the head are differentiated; the base tree is an argument, never updated or saved.
- Data-parallel: every batch is sharded along the accelerator mesh's `data` axis, parameters are
  replicated; XLA inserts the gradient all-reduce.
- Determinism: batch contents, crops and dropout keys are functions of (seed, step) only, so a
  run resumed from a checkpoint computes the same updates as one that never stopped.
- Checkpoints: Orbax, every N steps or T minutes, last K kept, written locally and copied to the
  output store by a background thread; resume looks locally first, then in the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.traverse_util import flatten_dict, unflatten_dict

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.batching import split_windows
from bioscan_assets.core.model import lora as lora_mod
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.model.nt_model import NTConfig, NucleotideTransformer, mean_pool
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS

log = logging.getLogger(__name__)

DEFAULT_RANK_WEIGHTS: tuple[float, ...] = (2.0, 1.8, 1.5, 1.2, 1.0, 0.8, 0.6)
ADAPTER_FORMAT = "bioscan-lora-adapter/1"
WINDOWS = ("random", "start")
Lineage = tuple[str | None, ...]


# --- labels and split ------------------------------------------------------------------------


@dataclass
class LabelVocab:
    """Sorted labels per rank, from the training lineages only."""

    labels: dict[str, list[str]]

    @classmethod
    def from_lineages(cls, lineages: Sequence[Sequence[str | None]]) -> LabelVocab:
        return cls(
            {
                rank: sorted({lin[r] for lin in lineages if lin[r] is not None})
                for r, rank in enumerate(RANKS)
            }
        )

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(self.labels[rank]) for rank in RANKS)

    def encode(self, lineages: Sequence[Sequence[str | None]]) -> np.ndarray:
        """int32 [N, 7]; -1 where the rank is unknown or its label is not in the vocabulary."""
        index = {rank: {label: i for i, label in enumerate(self.labels[rank])} for rank in RANKS}
        out = np.full((len(lineages), len(RANKS)), -1, np.int32)
        for n, lineage in enumerate(lineages):
            for r, rank in enumerate(RANKS):
                if lineage[r] is not None:
                    out[n, r] = index[rank].get(lineage[r], -1)
        return out

    def label_sets(self) -> list[set[str]]:
        return [set(self.labels[rank]) for rank in RANKS]


@dataclass
class Split:
    """Which ids train and which test; unseen-genus test ids belong to genera held out entirely."""

    seed: int
    train: list[str]
    test_seen: list[str]
    test_unseen: list[str]
    unseen_genera: list[str]

    @property
    def test(self) -> list[str]:
        return self.test_seen + self.test_unseen

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"digest": self.digest()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Split:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    def digest(self) -> str:
        text = json.dumps(
            [self.seed, self.train, self.test_seen, self.test_unseen], separators=(",", ":")
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def counts(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "test_seen_genus": len(self.test_seen),
            "test_unseen_genus": len(self.test_unseen),
            "unseen_genera": len(self.unseen_genera),
        }


def make_split(
    ids: Sequence[str],
    lineages: Sequence[Sequence[str | None]],
    seed: int,
    *,
    unseen_genus_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_test: int | None = None,
) -> Split:
    """Deterministic in (ids, labels, seed), whatever the input order.

    A share of the genera goes to test whole (unseen genera); of the other sequences, a share
    goes to test as long as each genus keeps at least one training sequence (seen genera).
    Sequences without a genus label train. `max_test` caps each test group (benchmarks).
    """
    if len(ids) != len(lineages):
        raise ValueError(f"{len(ids)} ids but {len(lineages)} lineages")
    if len(set(ids)) != len(ids):
        raise ValueError("sequence ids must be unique across the reference samples")
    genus_rank = RANKS.index("genus")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    genus_of = {ids[i]: lineages[i][genus_rank] for i in order}
    genera = sorted({g for g in genus_of.values() if g is not None})
    rng = np.random.default_rng([seed, 0x5B17])
    n_unseen = round(unseen_genus_fraction * len(genera))
    if unseen_genus_fraction > 0 and len(genera) >= 2:
        n_unseen = min(max(n_unseen, 1), len(genera) - 1)
    else:
        n_unseen = 0
    unseen = set(rng.choice(genera, size=n_unseen, replace=False).tolist()) if n_unseen else set()
    ordered = [ids[i] for i in order]
    test_unseen = [i for i in ordered if genus_of[i] in unseen]
    rest = [i for i in ordered if genus_of[i] not in unseen]
    remaining: dict[str | None, int] = {}
    for i in rest:
        remaining[genus_of[i]] = remaining.get(genus_of[i], 0) + 1
    want = round(test_fraction * len(rest))
    if max_test is not None:
        want = min(want, max_test)
        if len(test_unseen) > max_test:
            test_unseen = sorted(rng.choice(test_unseen, size=max_test, replace=False).tolist())
    test_seen = []
    for position in rng.permutation(len(rest)):
        if len(test_seen) >= want:
            break
        candidate = rest[position]
        genus = genus_of[candidate]
        if genus is not None and remaining[genus] > 1:
            test_seen.append(candidate)
            remaining[genus] -= 1
    chosen = set(test_seen) | set(test_unseen)
    train = [i for i in ordered if i not in chosen and genus_of[i] not in unseen]
    return Split(seed, train, sorted(test_seen), sorted(test_unseen), sorted(unseen))


# --- reference data ----------------------------------------------------------------------------


@dataclass
class ReferenceData:
    """Labelled sequences of the reference partitions; ids are `<tenant>/<sample>/<sequence_id>`."""

    ids: list[str]
    sequences: list[str]
    lineages: list[Lineage]
    partitions: dict[str, dict[str, Any]]  # partition key -> rows, labelled rows, shard version

    def subset(self, wanted: Sequence[str]) -> tuple[list[str], list[Lineage]]:
        index = {sid: i for i, sid in enumerate(self.ids)}
        missing = [w for w in wanted if w not in index]
        if missing:
            raise KeyError(
                f"{len(missing)} ids of the recorded split are no longer in the reference shards "
                f"(e.g. {missing[0]}): re-materialise lora_adapter"
            )
        rows = [index[w] for w in wanted]
        return [self.sequences[i] for i in rows], [self.lineages[i] for i in rows]


def find_reference_partitions(
    store: Store, partition_keys: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    """(reference partition keys, {key: why it was skipped}) from shard and raw manifests.

    A partition is a reference sample when its drop had a taxonomy.tsv that matched sequences.
    A reference drop whose shards are missing is reported, so the caller can say what to run.
    """
    from bioscan_assets.core.ingest.raw import read_raw_manifest
    from bioscan_assets.core.ingest.shards import read_shard_manifest
    from bioscan_assets.core.layout import split_partition_key

    references, skipped = [], {}
    for key in sorted(partition_keys):
        tenant, sample_id = split_partition_key(key)
        try:
            shards = read_shard_manifest(store, tenant, sample_id)
        except FileNotFoundError:
            try:
                raw = read_raw_manifest(store, tenant, sample_id)
            except FileNotFoundError:
                skipped[key] = "not ingested (no raw or shard manifest)"
                continue
            if raw.get("taxonomy"):
                skipped[key] = "reference drop without shards: materialise sequence_shards"
            else:
                skipped[key] = "no taxonomy.tsv"
            continue
        labels = shards.get("taxonomy") or {}
        if labels.get("matched_ids", 0) > 0:
            references.append(key)
        else:
            skipped[key] = "no taxonomy.tsv" if not labels else "taxonomy.tsv matched no sequence"
    return references, skipped


def load_reference_data(store: Store, partition_keys: Sequence[str]) -> ReferenceData:
    """Every labelled row (non-null `taxonomy`) of the given partitions' shards."""
    from bioscan_assets.core.ingest.shards import iter_shard_batches, read_shard_manifest
    from bioscan_assets.core.layout import split_partition_key
    from bioscan_assets.core.taxonomy import split_taxon

    data = ReferenceData([], [], [], {})
    for key in sorted(partition_keys):
        tenant, sample_id = split_partition_key(key)
        manifest = read_shard_manifest(store, tenant, sample_id)
        rows = labelled = 0
        for batch in iter_shard_batches(
            store, tenant, sample_id, columns=["sequence_id", "dna_sequence", "taxonomy"]
        ):
            for sid, seq, taxon in zip(
                batch.column(0).to_pylist(),
                batch.column(1).to_pylist(),
                batch.column(2).to_pylist(),
                strict=True,
            ):
                rows += 1
                lineage = split_taxon(taxon)
                if taxon is None or all(label is None for label in lineage):
                    continue
                labelled += 1
                data.ids.append(f"{key}/{sid}")
                data.sequences.append(seq)
                data.lineages.append(lineage)
        data.partitions[key] = {
            "rows": rows,
            "labelled_rows": labelled,
            "shard_version": manifest["version"],
        }
    return data


# --- model -------------------------------------------------------------------------------------


class TaxonomyHead(nn.Module):
    """LayerNorm on the pooled embedding, then one linear classifier per rank."""

    num_classes: tuple[int, ...]

    @nn.compact
    def __call__(self, pooled: jax.Array) -> list[jax.Array]:
        x = nn.LayerNorm(dtype=jnp.float32, name="norm")(pooled.astype(jnp.float32))
        return [
            nn.Dense(max(1, n), dtype=jnp.float32, name=f"rank_{rank}")(x)
            for rank, n in zip(RANKS, self.num_classes, strict=True)
        ]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 16
    batch_size: int = 8
    crop_tokens: int = 64  # <cls> + 63 tokens (~380 bp) per training window
    # "random": a window anywhere in the sequence (reads from any region); "start": always the
    # first window, in training and prediction (references that all begin at the same primer)
    window: str = "random"
    learning_rate: float = 2e-3
    warmup_steps: int = 2
    end_learning_rate_fraction: float = 0.05
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = ("query", "value")
    remat: bool = False
    rank_weights: tuple[float, ...] = DEFAULT_RANK_WEIGHTS
    seed: int = 0
    checkpoint_every_steps: int = 10
    checkpoint_every_minutes: float = 10.0
    keep_checkpoints: int = 3
    eval_batch_size: int = 8

    def __post_init__(self) -> None:
        if len(self.rank_weights) != len(RANKS):
            raise ValueError(f"rank_weights needs {len(RANKS)} values ({', '.join(RANKS)})")
        if self.steps < 1 or self.batch_size < 1 or self.crop_tokens < 2:
            raise ValueError("steps and batch_size must be >= 1, crop_tokens >= 2")
        if self.window not in WINDOWS:
            raise ValueError(f"window={self.window!r}: choose from {', '.join(WINDOWS)}")
        if self.keep_checkpoints < 1 or self.checkpoint_every_steps < 1:
            raise ValueError("keep_checkpoints and checkpoint_every_steps must be >= 1")
        _ = self.lora  # validates the LoRA settings

    @property
    def lora(self) -> lora_mod.LoRASettings:
        return lora_mod.LoRASettings(
            self.lora_rank, self.lora_alpha, self.lora_dropout, tuple(self.lora_targets)
        )

    def schedule(self) -> optax.Schedule:
        warmup = min(self.warmup_steps, max(self.steps - 1, 0))
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=self.learning_rate,
            warmup_steps=warmup,
            decay_steps=max(self.steps, warmup + 1),
            end_value=self.learning_rate * self.end_learning_rate_fraction,
        )

    def optimizer(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.clip_by_global_norm(self.clip_norm),
            optax.adamw(self.schedule(), weight_decay=self.weight_decay),
        )

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["lora_targets"] = list(self.lora_targets)
        doc["rank_weights"] = list(self.rank_weights)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in names}
        for key in ("lora_targets", "rank_weights"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def _result_affecting(config: TrainConfig) -> dict[str, Any]:
    """Config fields that change the trained weights (not checkpoint cadence)."""
    skip = {"checkpoint_every_steps", "checkpoint_every_minutes", "keep_checkpoints"}
    return {k: v for k, v in config.to_json().items() if k not in skip}


def run_key(
    config: TrainConfig, model: LoadedModel, ids: Sequence[str], vocab: LabelVocab, labels: Any
) -> str:
    """What a checkpoint was computed from; a checkpoint of another key is never resumed."""
    digest = hashlib.sha256()
    digest.update(json.dumps(_result_affecting(config), sort_keys=True).encode())
    digest.update(f"|{model.model_id}|{model.weights_hash}|".encode())
    digest.update(json.dumps(list(ids)).encode())
    digest.update(json.dumps(vocab.labels, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()[:16]


# --- batches -----------------------------------------------------------------------------------


def crop(tokens: np.ndarray, length: int, rng: np.random.Generator | None) -> np.ndarray:
    """`<cls>` + a window of `length - 1` tokens: random start in training, the start otherwise."""
    if len(tokens) <= length:
        return tokens
    body = tokens[1:]
    start = 0 if rng is None else int(rng.integers(0, len(body) - (length - 1) + 1))
    return np.concatenate((tokens[:1], body[start : start + length - 1]))


def training_batch(
    tokens: Sequence[np.ndarray],
    labels: np.ndarray,
    step: int,
    config: TrainConfig,
    batch_size: int,
    pad_id: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The batch of a step: depends on (seed, step) only, so resumed runs see the same data."""
    rng = np.random.default_rng([config.seed, 0xBA7C, step])
    n = len(tokens)
    picks = rng.choice(n, size=batch_size, replace=n < batch_size)
    ids = np.full((batch_size, config.crop_tokens), pad_id, np.int32)
    for row, index in enumerate(picks):
        window = crop(tokens[index], config.crop_tokens, rng if config.window == "random" else None)
        ids[row, : len(window)] = window
    return ids, labels[picks]


# --- checkpoints -------------------------------------------------------------------------------

COMMITTED = "_COMMITTED"


class CheckpointSync:
    """Orbax checkpoints in a local directory, mirrored to `store/prefix` in the background.

    Saving is synchronous and local (the state is the adapter, head and optimiser: megabytes);
    the copy to the store runs on a daemon thread from a hard-linked snapshot, so training never
    waits on the network. A step is usable in the store once its `_COMMITTED` marker exists.
    """

    def __init__(
        self,
        local_dir: Path,
        keep: int,
        store: Store | None = None,
        prefix: str = "",
        say: Callable[[str], None] = log.info,
    ):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.local_dir = Path(local_dir).absolute()
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.store = store
        self.prefix = prefix.strip("/")
        self.say = say
        self.uploaded: list[int] = []
        self.upload_errors: list[str] = []
        self.save_seconds: list[float] = []
        self._manager = self._new_manager()
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def _new_manager(self):
        ocp = self._ocp
        return ocp.CheckpointManager(
            self.local_dir,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, enable_async_checkpointing=False, create=True
            ),
        )

    # resume
    def store_steps(self) -> list[int]:
        if self.store is None:
            return []
        steps = []
        for rel in self.store.list_files(self.prefix):
            parts = rel[len(self.prefix) :].strip("/").split("/")
            if len(parts) == 2 and parts[1] == COMMITTED and parts[0].isdigit():
                steps.append(int(parts[0]))
        return sorted(steps)

    def latest(self) -> tuple[int | None, str | None]:
        """(step, where) of the newest checkpoint: local first, else fetched from the store."""
        step = self._manager.latest_step()
        if step is not None:
            return step, "local"
        remote = self.store_steps()
        if not remote:
            return None, None
        step = remote[-1]
        self._download(step)
        self._manager = self._new_manager()
        return step, "storage"

    def _download(self, step: int) -> None:
        assert self.store is not None
        base = f"{self.prefix}/{step}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{step}.download-", dir=self.local_dir))
        for rel in self.store.list_files(base):
            inner = rel[len(base) :].strip("/")
            if inner == COMMITTED:
                continue
            target = tmp / inner
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.store.read_bytes(rel))
        os.replace(tmp, self.local_dir / str(step))
        self.say(f"checkpoint step {step} fetched from {self.store.url(base)}")

    def restore(self, step: int, target: Any) -> Any:
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), target
        )
        return self._manager.restore(step, args=self._ocp.args.StandardRestore(abstract))

    # save
    def save(self, step: int, state: Any) -> None:
        started = time.perf_counter()
        host_state = jax.tree.map(np.asarray, state)
        self._manager.save(step, args=self._ocp.args.StandardSave(host_state), force=True)
        self._manager.wait_until_finished()
        if self.store is not None:
            snapshot = self.local_dir.parent / f".upload-{self.local_dir.name}-{step}"
            shutil.rmtree(snapshot, ignore_errors=True)
            shutil.copytree(self.local_dir / str(step), snapshot, copy_function=os.link)
            self._ensure_thread()
            self._queue.put((step, snapshot))
        self.save_seconds.append(time.perf_counter() - started)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._upload_loop, daemon=True)
            self._thread.start()

    def _upload_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                step, snapshot = item
                self._upload(step, snapshot)
            except Exception as error:  # a failed upload must not kill training
                self.upload_errors.append(f"{type(error).__name__}: {error}")
                log.warning("checkpoint upload failed: %s", error)
            finally:
                self._queue.task_done()

    def _upload(self, step: int, snapshot: Path) -> None:
        assert self.store is not None
        base = f"{self.prefix}/{step}"
        try:
            for path in sorted(p for p in snapshot.rglob("*") if p.is_file()):
                self.store.put_file(path, f"{base}/{path.relative_to(snapshot).as_posix()}")
            self.store.write_bytes(f"{base}/{COMMITTED}", json.dumps({"step": step}).encode())
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)
        self.uploaded.append(step)
        steps = self.store_steps()
        for old in steps[: max(0, len(steps) - self.keep)]:
            # marker first: a half-deleted step is never taken for a complete one
            self.store.delete(f"{self.prefix}/{old}/{COMMITTED}")
            for rel in self.store.list_files(f"{self.prefix}/{old}"):
                self.store.delete(rel)

    def close(self, timeout: float = 600.0) -> None:
        """Wait for queued uploads (the last checkpoint must reach the store)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        self._manager.close()


# --- training ----------------------------------------------------------------------------------


@dataclass
class TrainResult:
    lora: dict  # numpy tree, LoRA leaves only
    head: dict  # numpy tree
    vocab: LabelVocab
    config: TrainConfig
    run_key: str
    steps: int
    resumed_from_step: int | None
    resumed_from: str | None
    history: list[dict[str, float]]
    train_seconds: float
    first_step_seconds: float
    sequences_per_s: float
    tokens_per_s: float
    parameters: dict[str, Any]
    checkpoints: dict[str, Any] = field(default_factory=dict)

    last_loss: float | None = None

    def final_loss(self) -> float | None:
        if self.history:
            return self.history[-1]["loss"]
        return (
            self.last_loss if self.last_loss is not None and np.isfinite(self.last_loss) else None
        )


def _batch_size(config: TrainConfig, devices: int) -> int:
    return -(-config.batch_size // devices) * devices


def _loss_terms(
    logits: list[jax.Array], labels: jax.Array, weights: jax.Array
) -> tuple[jax.Array, jax.Array]:
    per_rank, present = [], []
    for r, lg in enumerate(logits):
        y = labels[:, r]
        valid = y >= 0
        ce = optax.softmax_cross_entropy_with_integer_labels(lg, jnp.maximum(y, 0))
        n = valid.sum()
        per_rank.append((ce * valid).sum() / jnp.maximum(n, 1))
        present.append(n > 0)
    per_rank_arr = jnp.stack(per_rank)
    w = weights * jnp.stack(present)
    return (w * per_rank_arr).sum() / jnp.maximum(w.sum(), 1e-9), per_rank_arr


def train_classifier(
    sequences: Sequence[str],
    lineages: Sequence[Sequence[str | None]],
    model: LoadedModel,
    config: TrainConfig,
    *,
    workdir: str | Path,
    ids: Sequence[str] | None = None,
    accelerator: Accelerator | None = None,
    store: Store | None = None,
    store_prefix: str = "tune/checkpoints",
    say: Callable[[str], None] = log.info,
    on_metrics: Callable[[dict[str, float], int], None] | None = None,
    stop_after_step: int | None = None,
) -> TrainResult:
    """Train (or resume) the adapter and head; `ids` name the sequences for the run key."""
    if not sequences or len(sequences) != len(lineages):
        raise ValueError(f"{len(sequences)} sequences for {len(lineages)} lineages")
    if config.crop_tokens > model.config.max_tokens:
        raise ValueError(
            f"crop_tokens={config.crop_tokens} exceeds the model's {model.config.max_tokens} positions"
        )
    accelerator = accelerator or Accelerator.discover()
    vocab = LabelVocab.from_lineages(lineages)
    labels = vocab.encode(lineages)
    tokenizer = model.tokenizer
    tokens = tokenizer.encode_batch(list(sequences))
    ids = list(ids) if ids is not None else [f"#{i}" for i in range(len(sequences))]
    key = run_key(config, model, ids, vocab, labels)
    batch_size = _batch_size(config, accelerator.device_count)

    settings = config.lora
    enc_config = settings.apply_to(model.config, remat=config.remat)
    encoder = NucleotideTransformer(enc_config, dtype=accelerator.dtype)
    head = TaxonomyHead(vocab.sizes)
    head_params = head.init(
        jax.random.PRNGKey(config.seed), jnp.zeros((1, model.config.hidden_size), jnp.float32)
    )["params"]
    trainable = {
        "lora": lora_mod.init_lora(model.config, settings, config.seed),
        "head": jax.tree.map(np.asarray, head_params),
    }
    frozen = model.params
    head_count = lora_mod.count(trainable["head"])
    parameters = lora_mod.trainable_fraction(model.config, settings, head_count)
    parameters["actual_trainable"] = lora_mod.count(trainable)
    tx = config.optimizer()
    schedule = config.schedule()
    weights = jnp.asarray(config.rank_weights, jnp.float32)
    pad_id = tokenizer.pad_id

    def loss_fn(train_tree, frozen_tree, ids_b, labels_b, rng):
        mask = ids_b != pad_id
        hidden = encoder.apply(
            {"params": frozen_tree, "lora": train_tree["lora"]},
            ids_b,
            mask,
            deterministic=False,
            rngs={"dropout": rng},
        )
        logits = head.apply({"params": train_tree["head"]}, mean_pool(hidden, mask))
        return _loss_terms(logits, labels_b, weights)

    def train_step(state, frozen_tree, ids_b, labels_b):
        rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), state["step"])
        (loss, per_rank), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["trainable"], frozen_tree, ids_b, labels_b, rng
        )
        updates, opt_state = tx.update(grads, state["opt_state"], state["trainable"])
        new_state = {
            "step": state["step"] + 1,
            "loss": loss,
            "trainable": optax.apply_updates(state["trainable"], updates),
            "opt_state": opt_state,
        }
        return new_state, loss, per_rank, optax.tree.norm(grads)

    rep, data = accelerator.replicated, accelerator.batch_sharding
    step_fn = jax.jit(
        train_step,
        in_shardings=(rep, rep, data, data),
        out_shardings=(rep, rep, rep, rep),
        donate_argnums=(0,),
    )
    state = {
        "step": np.asarray(0, np.int32),
        "loss": np.asarray(
            np.nan, np.float32
        ),  # the last step's, so a finished run resumed says it
        "trainable": trainable,
        "opt_state": jax.tree.map(np.asarray, tx.init(trainable)),
    }
    workdir = Path(workdir)
    sync = CheckpointSync(
        workdir / key / "checkpoints",
        config.keep_checkpoints,
        store,
        f"{store_prefix.strip('/')}/{key}",
        say,
    )
    resumed_step, resumed_from = sync.latest()
    if resumed_step is not None:
        state = sync.restore(resumed_step, state)
        say(f"resuming run {key} from step {resumed_step} ({resumed_from} checkpoint)")
    state = accelerator.replicate(state)
    frozen_dev = accelerator.replicate(frozen)

    history: list[dict[str, float]] = []
    start = int(np.asarray(state["step"]))
    last_save = time.monotonic()
    started = time.perf_counter()
    first_step_s = 0.0
    timed_s, timed_steps = 0.0, 0
    real_tokens = 0
    try:
        for step in range(start, config.steps):
            t = time.perf_counter()
            ids_np, labels_np = training_batch(tokens, labels, step, config, batch_size, pad_id)
            state, loss, per_rank, grad_norm = step_fn(
                state,
                frozen_dev,
                accelerator.shard_batch(ids_np),
                accelerator.shard_batch(labels_np),
            )
            loss_v = float(loss)  # waits for the step
            elapsed = time.perf_counter() - t
            if step == start:
                first_step_s = elapsed
            else:
                timed_s += elapsed
                timed_steps += 1
            batch_tokens = int((ids_np != pad_id).sum())
            real_tokens += batch_tokens
            if not np.isfinite(loss_v):
                raise FloatingPointError(f"loss is {loss_v} at step {step}; lower learning_rate")
            record = {
                "loss": loss_v,
                "learning_rate": float(schedule(step)),
                "grad_norm": float(grad_norm),
                "sequences_per_s": batch_size / elapsed,
                "tokens_per_s": batch_tokens / elapsed,
                **{f"loss_{rank}": float(v) for rank, v in zip(RANKS, per_rank, strict=True)},
            }
            history.append(record)
            if on_metrics:
                on_metrics(record, step + 1)
            done = step + 1
            due = done % config.checkpoint_every_steps == 0 or (
                time.monotonic() - last_save >= config.checkpoint_every_minutes * 60
            )
            if due or done == config.steps:
                sync.save(done, state)
                last_save = time.monotonic()
            if stop_after_step is not None and done >= stop_after_step:
                break
    finally:
        sync.close()
    wall = time.perf_counter() - started
    final = jax.tree.map(np.asarray, state["trainable"])
    per_step = timed_s / timed_steps if timed_steps else first_step_s
    return TrainResult(
        lora=final["lora"],
        head=final["head"],
        vocab=vocab,
        config=config,
        run_key=key,
        steps=int(np.asarray(state["step"])),
        resumed_from_step=resumed_step,
        resumed_from=resumed_from,
        history=history,
        train_seconds=wall,
        first_step_seconds=first_step_s,
        sequences_per_s=batch_size / per_step if per_step else 0.0,
        tokens_per_s=(real_tokens / max(len(history), 1)) / per_step if per_step else 0.0,
        parameters=parameters,
        last_loss=float(np.asarray(state["loss"])),
        checkpoints={
            "local_dir": str(sync.local_dir),
            "store_prefix": sync.store.url(sync.prefix) if sync.store else None,
            "saves": len(sync.save_seconds),
            "max_save_s": round(max(sync.save_seconds, default=0.0), 4),
            "uploaded_steps": sync.uploaded,
            "upload_errors": sync.upload_errors,
        },
    )


# --- the adapter artefact ----------------------------------------------------------------------


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


def adapter_dir(model_id: str, version: str) -> str:
    return f"adapters/{model_id}/{version}"


def latest_pointer(model_id: str) -> str:
    return f"adapters/{model_id}/latest.json"


def save_adapter(store: Store, adapter: Adapter, split: Split | None = None) -> dict[str, Any]:
    """Write weights, split, then `adapter.json`, then the `latest.json` pointer; returns the doc.

    The version hashes the weights and everything that defines the adapter, so re-saving the
    same adapter rewrites the same folder.
    """
    from safetensors.numpy import save as save_tensors

    blob = save_tensors(adapter.tensors(), metadata={"format": ADAPTER_FORMAT})
    sha = hashlib.sha256(blob).hexdigest()
    doc = adapter.describe(sha, len(blob))
    # `extra` (timings, provenance) is recorded but does not define the adapter
    defining = {k: v for k, v in doc.items() if k != "extra"}
    version = hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:12]
    doc["version"] = version
    adapter.version = version
    folder = adapter_dir(adapter.base_model_id, version)
    store.write_bytes(f"{folder}/adapter.safetensors", blob)
    if split is not None:
        store.write_bytes(f"{folder}/split.json", json.dumps(split.to_json()).encode())
        doc["split"] = {"file": "split.json", **split.counts(), "seed": split.seed}
    store.write_bytes(f"{folder}/adapter.json", json.dumps(doc, indent=1, sort_keys=True).encode())
    store.write_bytes(
        latest_pointer(adapter.base_model_id),
        json.dumps({"version": version, "path": folder}).encode(),
    )
    doc["path"] = folder
    doc["url"] = store.url(folder)
    return doc


def load_adapter(store: Store, folder: str) -> tuple[Adapter, dict[str, Any]]:
    """The adapter in `folder` (checked against its recorded sha256) and its `adapter.json`."""
    from safetensors.numpy import load as load_tensors

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


def load_latest_adapter(store: Store, model_id: str) -> tuple[Adapter, dict[str, Any]]:
    try:
        pointer = json.loads(store.read_bytes(latest_pointer(model_id)))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no adapter for model {model_id} under {store.url('adapters')}: "
            "materialise lora_adapter first"
        ) from None
    return load_adapter(store, pointer["path"])


def read_split(store: Store, folder: str) -> Split:
    return Split.from_json(json.loads(store.read_bytes(f"{folder}/split.json")))


# --- inference ---------------------------------------------------------------------------------


@dataclass
class ClassifierPrediction:
    labels: list[Lineage]  # after abstention (a rank below an abstained one is abstained too)
    raw_labels: list[Lineage]  # argmax at every rank
    confidence: np.ndarray  # float [N, 7]: probability of the argmax


class TaxonomyPredictor:
    """An adapter applied onto its base model: the base weights are checked by hash."""

    def __init__(
        self,
        model: LoadedModel,
        adapter: Adapter,
        accelerator: Accelerator | None = None,
        threshold: float = 0.5,
    ):
        if model.weights_hash != adapter.base_weights_hash:
            raise ValueError(
                f"adapter {adapter.version or '(unsaved)'} was trained on {adapter.base_model_id} "
                f"weights {adapter.base_weights_hash[:12]}, but the loaded base model "
                f"{model.model_id} has weights {model.weights_hash[:12]}"
            )
        self.model = model
        self.adapter = adapter
        self.threshold = threshold
        self.accelerator = accelerator or Accelerator.discover()
        config = adapter.config
        enc_config = config.lora.apply_to(model.config)
        encoder = NucleotideTransformer(enc_config, dtype=self.accelerator.dtype)
        head = TaxonomyHead(adapter.vocab.sizes)
        pad_id = model.tokenizer.pad_id
        lora_mod.check_matches(model.config, config.lora, adapter.lora)
        self._params = self.accelerator.replicate(
            {"base": model.params, "lora": adapter.lora, "head": adapter.head}
        )

        def forward(params, ids_b):
            mask = ids_b != pad_id
            hidden = encoder.apply({"params": params["base"], "lora": params["lora"]}, ids_b, mask)
            logits = head.apply({"params": params["head"]}, mean_pool(hidden, mask))
            return [jax.nn.softmax(lg, axis=-1) for lg in logits]

        acc = self.accelerator
        self._forward = jax.jit(
            forward, in_shardings=(acc.replicated, acc.batch_sharding), out_shardings=acc.replicated
        )

    def probabilities(self, sequences: Sequence[str]) -> list[np.ndarray]:
        """Per rank [N, C]: window probabilities averaged with token-count weights.

        An adapter trained on `start` windows sees only each sequence's first window here too.
        """
        config = self.adapter.config
        tokenizer = self.model.tokenizer
        windows, owner = [], []
        for row, tokens in enumerate(tokenizer.encode_batch(list(sequences))):
            if config.window == "random":
                windows_of = split_windows(tokens, config.crop_tokens)
            else:  # the training window itself (`crop` without a generator takes the start)
                windows_of = [crop(tokens, config.crop_tokens, None)]
            for window in windows_of:
                windows.append(window)
                owner.append(row)
        devices = self.accelerator.device_count
        batch = -(-config.eval_batch_size // devices) * devices
        sizes = [max(1, n) for n in self.adapter.vocab.sizes]
        window_probs = [np.zeros((len(windows), n), np.float32) for n in sizes]
        for start in range(0, len(windows), batch):
            chunk = windows[start : start + batch]
            ids = np.full((batch, config.crop_tokens), tokenizer.pad_id, np.int32)
            for row, window in enumerate(chunk):
                ids[row, : len(window)] = window
            outs = self._forward(self._params, self.accelerator.shard_batch(ids))
            for r, out in enumerate(outs):
                window_probs[r][start : start + len(chunk)] = np.asarray(out)[: len(chunk)]
        owner_arr = np.asarray(owner, np.int64)
        weight = np.array([len(w) for w in windows], np.float32)
        totals = np.bincount(owner_arr, weights=weight, minlength=len(sequences))
        result = []
        for probs in window_probs:
            acc = np.zeros((len(sequences), probs.shape[1]), np.float32)
            np.add.at(acc, owner_arr, probs * weight[:, None])
            result.append(acc / np.maximum(totals, 1e-9)[:, None])
        return result

    def predict(self, sequences: Sequence[str]) -> ClassifierPrediction:
        probs = self.probabilities(sequences)
        vocab = self.adapter.vocab
        confidence = np.zeros((len(sequences), len(RANKS)), np.float32)
        raw: list[list[str | None]] = [[] for _ in sequences]
        for r, rank in enumerate(RANKS):
            labels = vocab.labels[rank]
            best = probs[r].argmax(axis=1)
            confidence[:, r] = probs[r].max(axis=1) if labels else 0.0
            for n in range(len(sequences)):
                raw[n].append(labels[best[n]] if labels else None)
        called = []
        for n in range(len(sequences)):
            out: list[str | None] = []
            stopped = False
            for r in range(len(RANKS)):
                stopped = stopped or raw[n][r] is None or confidence[n, r] < self.threshold
                out.append(None if stopped else raw[n][r])
            called.append(tuple(out))
        return ClassifierPrediction(called, [tuple(x) for x in raw], confidence)


def loader_config(doc: dict[str, Any]) -> NTConfig:
    """The base encoder config an adapter document was trained on (for checks and tooling)."""
    cfg = dict(doc["base_model"]["config"])
    cfg["lora_targets"] = tuple(cfg.get("lora_targets", ()))
    return NTConfig(**cfg)
