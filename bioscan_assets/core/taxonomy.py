"""QIIME 2 `taxonomy.tsv` labels (DESIGN.md, "Lab drop"): parsing and rank splitting.

The file is small next to the reads (one line per reference sequence), so it is parsed whole
into a dict. Errors name the file and the line, and never quote more than the offending id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

from bioscan_assets.core.errors import DropError

RANKS: tuple[str, ...] = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
# Greengenes-style prefixes, position by position; SILVA/GTDB write d__ (domain) for kingdom.
RANK_PREFIXES: tuple[str, ...] = ("k", "p", "c", "o", "f", "g", "s")
_ALTERNATE_PREFIXES = {0: ("d",)}
HEADER = ("Feature ID", "Taxon")
_MAX_SHOWN = 60


def _show(text: str) -> str:
    return repr(text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "...")


def _strip_prefix(rank: str, position: int) -> tuple[str, str | None]:
    """(value, prefix found) for one `;`-separated rank, e.g. ' p__Firmicutes' -> ('Firmicutes', 'p')."""
    rank = rank.strip()
    head, sep, rest = rank.partition("__")
    if sep and len(head) == 1 and head.isalpha():
        return rest.strip(), head.lower()
    return rank, None


def _problem(taxon: str) -> str | None:
    """Why `taxon` is not a valid Taxon value, or None."""
    parts = taxon.split(";")
    if len(parts) > len(RANKS):
        return f"has {len(parts)} ';'-separated ranks; at most {len(RANKS)} are allowed ({', '.join(RANKS)})"
    for position, part in enumerate(parts):
        _value, prefix = _strip_prefix(part, position)
        allowed = (RANK_PREFIXES[position], *_ALTERNATE_PREFIXES.get(position, ()))
        if prefix is not None and prefix not in allowed:
            return (
                f"rank {position + 1} ({RANKS[position]}) carries prefix '{prefix}__', "
                f"expected '{RANK_PREFIXES[position]}__'"
            )
    return None


def split_taxon(taxon: str | None) -> tuple[str | None, ...]:
    """Seven ranks, kingdom to species, prefixes removed; empty or missing ranks are None."""
    out: list[str | None] = [None] * len(RANKS)
    if not taxon:
        return tuple(out)
    for position, part in enumerate(taxon.split(";")[: len(RANKS)]):
        value, _prefix = _strip_prefix(part, position)
        out[position] = value or None
    return tuple(out)


def format_taxon(ranks: Iterable[str | None]) -> str:
    """Canonical Greengenes form `k__A; p__B; ...` (all seven prefixes, empty ranks kept empty)."""
    values = list(ranks)
    if len(values) > len(RANKS):
        raise ValueError(f"at most {len(RANKS)} ranks, got {len(values)}")
    values += [None] * (len(RANKS) - len(values))
    return "; ".join(f"{p}__{v or ''}" for p, v in zip(RANK_PREFIXES, values, strict=True))


def taxon_at_rank(taxon: str | None, rank: str) -> str | None:
    """The label at one rank (e.g. 'genus'), or None when unknown."""
    return split_taxon(taxon)[RANKS.index(rank)]


def parse_taxonomy(data: bytes, *, name: str) -> dict[str, str]:
    """`Feature ID -> Taxon` (Taxon trimmed, as written) from the bytes of a taxonomy.tsv.

    Extra columns (QIIME's `Confidence`) are allowed and ignored; blank lines and `#` comment
    lines (QIIME's `#q2:types`) are skipped. `name` is the file name used in errors.
    """
    if not data.strip():
        raise DropError(name, "taxonomy file is empty; expected a 'Feature ID<TAB>Taxon' header")
    if b"\x00" in data[:65536]:
        raise DropError(
            f"{name} line 1", "binary data where a tab-separated text file was expected"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DropError(f"{name} line {line}", "not UTF-8 text") from None
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    header_seen = False
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.rstrip("\r")
        if not line.strip():
            continue
        if line.startswith("#"):  # comments and QIIME's `#q2:types` directive
            continue
        where = f"{name} line {number}"
        columns = line.split("\t")
        if not header_seen:
            got = tuple(c.strip() for c in columns[:2])
            if got != HEADER:
                raise DropError(
                    where,
                    f"header must be 'Feature ID<TAB>Taxon', got {_show(line)}",
                )
            header_seen = True
            continue
        if len(columns) < 2:
            raise DropError(where, "expected 'Feature ID<TAB>Taxon' (no tab found)")
        feature_id, taxon = columns[0].strip(), columns[1].strip()
        if not feature_id:
            raise DropError(f"{where} field Feature ID", "is empty")
        if any(ord(ch) < 32 for ch in feature_id) or any(
            ord(ch) < 32 and ch != "\t" for ch in taxon
        ):
            raise DropError(where, "contains control characters")
        problem = _problem(taxon)
        if problem:
            raise DropError(f"{where} field Taxon", problem)
        if feature_id in out:
            raise DropError(
                f"{where} field Feature ID",
                f"{_show(feature_id)} already appears on line {first_line[feature_id]}",
            )
        out[feature_id] = taxon
        first_line[feature_id] = number
    if not header_seen:
        raise DropError(name, "taxonomy file has no header line")
    return out


def read_taxonomy(stream: BinaryIO, *, name: str, max_bytes: int = 1 << 30) -> dict[str, str]:
    """`parse_taxonomy` on an open binary stream, refusing files beyond `max_bytes`."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DropError(name, f"taxonomy file is larger than {max_bytes} bytes")
    return parse_taxonomy(data, name=name)
