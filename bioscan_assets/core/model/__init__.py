"""Model: the Nucleotide Transformer v1 encoder in Flax, its 6-mer tokenizer, presets, Hugging
Face checkpoints (every layout the Hub uses, from a directory, `gs://` or the Hub; streamed in,
converted, inspected) and LoRA parameters.

Imports only the shared core modules (storage for `gs://` checkpoints); no JAX device logic.
"""
