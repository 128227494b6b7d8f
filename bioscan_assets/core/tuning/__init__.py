"""Tuning: LoRA + seven-rank head training on labelled reference samples, its checkpoints,
the adapter artefact and the predictor that loads it.

labels (per-rank vocabularies) · split (held-out genera) · reference_data (labelled shard rows) ·
config (TrainConfig, run key) · batches (token windows) · checkpoints (Orbax + store mirror) ·
loop (head, loss, train_classifier) · adapter (the artefact) · predictor (inference) ·
run (what `lora_adapter` does, end to end).

Imports embedding, model, ingest and the shared core; never classify.
"""
