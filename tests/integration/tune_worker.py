"""Worker for test_tune_resume: trains the tiny preset on synthetic data, saves the result.

python -m tests.integration.tune_worker WORKDIR STORAGE OUT.npz [--steps N] [--step-delay S]
`--step-delay` sleeps after each step (in the metrics callback, outside the maths) so the
test can kill the process mid-training.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from flax.traverse_util import flatten_dict

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store
from bioscan_assets.core.tuning.config import TrainConfig
from bioscan_assets.core.tuning.loop import train_classifier
from bioscan_assets.core.tuning.split import make_split
from tests.synthetic_taxa import make_reference


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("storage")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--cache", default="")
    args = parser.parse_args()

    ids, seqs, lineages = make_reference(seed=11)
    split = make_split(ids, lineages, seed=0)
    index = {sid: i for i, sid in enumerate(ids)}
    train = [index[i] for i in split.train]
    config = TrainConfig(
        steps=args.steps,
        batch_size=8,
        crop_tokens=48,
        learning_rate=5e-3,
        checkpoint_every_steps=5,
        keep_checkpoints=2,
        seed=3,
    )

    def on_metrics(metrics: dict, step: int) -> None:
        print(json.dumps({"step": step, "loss": metrics["loss"]}), flush=True)
        time.sleep(args.step_delay)

    result = train_classifier(
        [seqs[i] for i in train],
        [lineages[i] for i in train],
        load_model("tiny"),
        config,
        workdir=args.workdir,
        ids=split.train,
        accelerator=Accelerator.discover(cache_dir=args.cache or None),
        store=Store(args.storage),
        say=lambda msg: print(msg, flush=True),
        on_metrics=on_metrics,
    )
    flat = {
        f"{part}/{'/'.join(key)}": np.asarray(value)
        for part, tree in (("lora", result.lora), ("head", result.head))
        for key, value in flatten_dict(tree).items()
    }
    np.savez(args.out, **flat)
    print(
        json.dumps(
            {
                "done": result.steps,
                "resumed_from": result.resumed_from,
                "resumed_from_step": result.resumed_from_step,
                "uploaded": result.checkpoints["uploaded_steps"],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
