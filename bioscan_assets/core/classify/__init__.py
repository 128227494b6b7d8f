"""Classify: taxonomy classifiers that need no training loop: RDP-style 8-mer naive Bayes and
kNN votes over reference rows of the vector index.

Imports index and the layers below it; never tuning.
"""
