"""Embedding: the accelerator mesh, token-budget batching, the pooled forward pass and its
windowing, the executor, the hash store (one vector per distinct sequence per tenant and model
weights), the resumable run that fills it and writes `embeddings/`, and the JAX-free reader of
committed embeddings.

Imports model, ingest (shard reader) and the shared core.
"""
