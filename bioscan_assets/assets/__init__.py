"""Thin software-defined assets and checks: read config and resources, call core, return
`MaterializeResult` with metadata. Keys and owners live in `keys`, provenance glue in `provenance`.
"""
