"""Ingest: the lab-drop contract, validation and the sensor's scan, content-addressed raw copies,
the readers of every sequence format (pysam), and the Parquet shard writer and reader.

Owns `raw/` and `shards/` under storage. Imports only the shared core modules.
"""
