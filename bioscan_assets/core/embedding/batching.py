"""Token batches: sorted by length, packed to a token budget, few distinct shapes.

Each distinct (batch, length) shape costs one XLA compilation, so lengths round up to a
geometric ladder of buckets and batch sizes to powers of two (times the device count).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


def bucket_ladder(max_tokens: int, multiple: int = 2, ratio: float = 1.1) -> list[int]:
    """Bucket lengths from `multiple` up to `max_tokens`, each ~`ratio` x the last."""
    edges: list[int] = []
    edge = float(multiple)
    while True:
        value = min(max_tokens, int(-(-edge // multiple) * multiple))
        if not edges or value > edges[-1]:
            edges.append(value)
        if value >= max_tokens:
            return edges
        edge = max(edge * ratio, edge + multiple)


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _rows_at_least(n: int) -> int:
    """Smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... >= n: few shapes, at most 1/3 padding."""
    pow2 = _pow2_at_least(n)
    three_quarters = pow2 // 4 * 3
    return three_quarters if three_quarters >= n else pow2


def _rows_at_most(n: int) -> int:
    """Largest of 1, 2, 3, 4, 6, 8, 12, ... <= n (n >= 1)."""
    pow2 = 1 << (n.bit_length() - 1)
    return pow2 + pow2 // 2 if pow2 >= 2 and pow2 + pow2 // 2 <= n else pow2


def split_rows(n: int) -> list[int]:
    """Padded batch sizes for a last `n` rows that do not fill a batch, from the same ladder.

    One batch when padding it costs at most 1/8 of its rows (or two rows); otherwise the largest
    ladder size that fits goes first and the rest is split again (106 rows -> 96 + 12, not 128). This matters
    when only the distinct sequences of a sample are embedded: small sets are the rule.
    """
    out = []
    while n > 0:
        padded = _rows_at_least(n)
        if (padded - n) * 8 <= n or padded - n <= 2:
            out.append(padded)
            break
        take = _rows_at_most(n)
        out.append(take)
        n -= take
    return out


@dataclass
class Batch:
    ids: np.ndarray  # int32 [B, T], padded
    rows: np.ndarray  # index into the token list for each real row; -1 for padding rows
    real_tokens: int

    @property
    def computed_tokens(self) -> int:
        return int(self.ids.size)


def pack_batches(
    token_lists: list[np.ndarray],
    *,
    pad_id: int,
    max_tokens: int,
    token_budget: int,
    device_count: int = 1,
    length_multiple: int = 2,
) -> Iterator[Batch]:
    """Sort by length, group by bucket, pack each bucket up to `token_budget` tokens per batch."""
    if not token_lists:
        return
    ladder = np.array(bucket_ladder(max_tokens, length_multiple))
    lengths = np.array([len(t) for t in token_lists])
    if lengths.max() > max_tokens:
        raise ValueError(f"a token list of {lengths.max()} exceeds max_tokens={max_tokens}")
    buckets = ladder[np.searchsorted(ladder, lengths)]
    order = np.lexsort((np.arange(len(lengths)), lengths))
    for width in np.unique(buckets[order]):
        members = order[buckets[order] == width]
        full = max(device_count, token_budget // int(width) // device_count * device_count)
        full = _pow2_at_least(full // device_count) * device_count
        if full * width > token_budget and full > device_count:
            full //= 2
        whole = len(members) // full * full
        sizes = [full] * (whole // full)
        if len(members) > whole:  # the rest, per device, in ladder sizes with little padding
            rest = -(-(len(members) - whole) // device_count)
            sizes += [min(n * device_count, full) for n in split_rows(rest)]
        start = 0
        for rows in sizes:
            chunk = members[start : start + rows]
            start += len(chunk)
            ids = np.full((rows, int(width)), pad_id, dtype=np.int32)
            index = np.full(rows, -1, dtype=np.int64)
            for slot, member in enumerate(chunk):
                tokens = token_lists[member]
                ids[slot, : len(tokens)] = tokens
                index[slot] = member
            yield Batch(ids, index, int(lengths[chunk].sum()))


def split_windows(tokens: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Cut a token list longer than the model allows into windows, each starting with `<cls>`.

    Cutting tokens rather than bases keeps every window within `max_tokens` whatever the Ns.
    """
    if len(tokens) <= max_tokens:
        return [tokens]
    body = tokens[1:]
    step = max_tokens - 1
    return [np.concatenate((tokens[:1], body[i : i + step])) for i in range(0, len(body), step)]
