"""Taxonomy calls and profiles per sample: which references a tenant may use, the calls of every
shard row, their Parquet + QIIME 2 `taxonomy.tsv` layout, the per-rank profile and the cohort view.

Owns `taxonomy/`, `profiles/` and `reports/cohort/` under storage. Reads shards through
`core.manifests`; classifies with `core.classify`.
"""
