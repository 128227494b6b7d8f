"""Evaluation: per-rank metrics with abstention, seen and unseen labels apart, and the report
that compares the LoRA adapter with the kNN and naive Bayes baselines.

Imports tuning, classify and everything below them.
"""
