"""Index: the tenant's LanceDB vector index (tables, upserts, ANN, the one-writer lock) and
nearest-neighbour search over it.

Imports embedding (reader, and the encoder for sequence queries), model, ingest and the shared core.
"""
