"""Novelty: clusters of a tenant's reads that no reference explains.

Rows whose calls abstain at a rank (genus by default) and that lie farther from every reference
than the tenant's references lie from each other are clustered (HDBSCAN) in the model's
embedding space, or in k-mer space when the model is not pretrained; each cluster is described
(reads, samples, dates, medoid, nearest reference, agreed rank), given an id that survives
rebuilds, drawn on a 2-D map and written under `novelty/tenant=<t>/` with a manifest last.

Owns `novelty/` under storage. Reads calls and the tenant's references through `core.calls`,
shards and embeddings through `core.manifests` / `core.embedding.reader`, sample dates through
`core.ingest.raw`; never imports Dagster.
"""
