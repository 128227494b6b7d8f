"""Plain-Python core of bioscan: no Dagster, unit-testable alone.

One sub-package per sub-system, layered (enforced by import-linter, see pyproject.toml):
governance > novelty > evaluation | calls > tuning | classify > index > embedding >
model | ingest, all over the shared modules here: storage (one file API, local or gs://),
layout (every storage path), schema (Arrow schemas), taxonomy (QIIME 2 labels), manifests
(the reader of committed artefacts), file_lock and errors. A sub-package imports only from layers below its own.
"""
