"""Small synthetic labelled 16S-like data for the tuning/evaluation tests (no /work/shared).

A tree of templates: each phylum has a random root sequence, each genus mutates it by
`genus_divergence`, each sequence mutates its genus template by `within_genus`. Genera are
thus separable by k-mers and by sequence models, and phyla more so.
"""

from __future__ import annotations

import numpy as np

from tests.helpers import random_dna


def _bases(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.frombuffer(random_dna(rng, n).encode(), dtype=np.uint8)


def _mutate(rng: np.random.Generator, seq: np.ndarray, rate: float) -> np.ndarray:
    out = seq.copy()
    hit = rng.random(out.size) < rate
    out[hit] = _bases(rng, int(hit.sum()))
    return out


def make_reference(
    seed: int = 0,
    phyla: int = 2,
    genera_per_phylum: int = 3,
    per_genus: int = 6,
    length: int = 420,
    genus_divergence: float = 0.2,
    within_genus: float = 0.02,
) -> tuple[list[str], list[str], list[tuple[str | None, ...]]]:
    """(ids, sequences, seven-rank lineages); species alternate between two per genus."""
    rng = np.random.default_rng(seed)
    ids, seqs, lineages = [], [], []
    for p in range(phyla):
        root = _bases(rng, length)
        for g in range(genera_per_phylum):
            template = _mutate(rng, root, genus_divergence)
            genus = f"Genus{p}x{g}"
            for i in range(per_genus):
                seq = _mutate(rng, template, within_genus)
                ids.append(f"seq-{p}-{g}-{i}")
                seqs.append(seq.tobytes().decode())
                lineages.append(
                    (
                        "Bacteria",
                        f"Phylum{p}",
                        f"Class{p}",
                        f"Order{p}",
                        f"Family{p}",
                        genus,
                        f"{genus} sp{i % 2}" if i % 3 else None,  # some species unknown
                    )
                )
    return ids, seqs, lineages


def taxonomy_tsv(ids: list[str], lineages: list[tuple[str | None, ...]]) -> dict[str, str]:
    """Feature ID -> QIIME Taxon string."""
    prefixes = "kpcofgs"
    return {
        sid: "; ".join(f"{p}__{v or ''}" for p, v in zip(prefixes, lin, strict=True))
        for sid, lin in zip(ids, lineages, strict=True)
    }
