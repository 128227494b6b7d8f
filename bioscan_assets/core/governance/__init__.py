"""Governance: run manifests and provenance, cost estimates, and retention (policies, planners,
audited deletion) that expires intermediates and never final outputs.

The top core layer: it may import every other sub-system, none imports it. Inside, from the
bottom up: `policy` (config/retention.yaml), `listing` (folders, write times) -> `prices` ->
`provenance` (run manifests) -> `costs`; `partition_state` (tombstones) -> `lineage` and
`deletion` (a unit of work and its safety check) -> `planners/` (one per kind of data) and
`apply` (with `audit`, the log); `record` writes a run manifest and clears the tombstone it
supersedes; `outputs` says where the newest reports and the sample profiles are.
"""
