"""`bioscan search`: nearest neighbours (and optional taxonomy calls) from a tenant's index."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Find the sequences nearest to a query in one tenant's vector index (cosine distance between
Nucleotide Transformer embeddings) and show their sample and taxonomy.

The query is one of:
  --sequence ACGT...     a DNA sequence, embedded with the index's model (slow on CPU: the
                         model runs here)
  --fasta FILE           every record of a FASTA/FASTQ file (.gz allowed), one result each
  --sequence-id ID       a sequence already in the index; its stored vector is the query
                         and it is left out of its own results

The index is built by the vector_index asset (one per tenant and model); this command only
reads it, and only the given tenant's. --assign adds a taxonomy call per rank: a
similarity-weighted vote of the neighbours, abstaining below --min-confidence. With --assign
the neighbours are searched only among labelled rows of reference samples the tenant may use
(its own reference samples, those of the tenant "shared", and --shared-reference): the
sample's own unlabelled reads never vote. The output names the classifier and the references.
"""

EPILOG = """\
examples:
  bioscan search --tenant acme-lab --sequence-id 7000004130710411 --sample REF-16S-001
  bioscan search --tenant acme-lab --sequence ACGTTGCA... --k 5 --assign
  bioscan search --tenant acme-lab --fasta queries.fasta --rank genus=Bacillus --json
  bioscan search --tenant acme-lab --sequence-id FIELD-2026-001:1:1/1 \\
      --query-sample FIELD-2026-001 --sample REF-16S-001 --k 20 --assign

environment: BIOSCAN_STORAGE (default $BIOSCAN_HOME/storage) and BIOSCAN_MODEL (default
demo) give the defaults of --storage and --model.
exit status: 0 results printed; 1 the query could not be answered (unknown tenant, no
index for the model, a sequence without valid bases, an unknown sequence id); 2 bad usage.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "search",
        help="nearest neighbours of a DNA sequence or an indexed sequence id",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tenant", required=True, help="tenant whose index to search (required)")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--sequence", metavar="DNA", help="query DNA sequence (A/C/G/T/U/N...)")
    query.add_argument("--sequence-id", metavar="ID", help="query by an indexed sequence's id")
    query.add_argument("--fasta", metavar="FILE", type=Path, help="FASTA/FASTQ file of queries")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument(
        "--sample",
        action="append",
        metavar="SAMPLE",
        help="only hits from this sample (repeatable); with --sequence-id, also where the id "
        "is looked up",
    )
    parser.add_argument(
        "--query-sample",
        metavar="SAMPLE",
        help="with --sequence-id: the sample the id belongs to, when it differs from --sample",
    )
    parser.add_argument(
        "--rank",
        action="append",
        metavar="RANK=NAME",
        help="only hits with this label at a rank, e.g. genus=Bacillus (repeatable; ranks: "
        "kingdom phylum class order family genus species)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model whose index to search: a preset name or checkpoint path (default "
        "$BIOSCAN_MODEL or demo)",
    )
    parser.add_argument(
        "--storage", default=None, help="storage root, a path or gs://bucket/prefix"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--assign", action="store_true", help="add a taxonomy call per rank")
    parser.add_argument(
        "--shared-reference",
        action="append",
        metavar="TENANT/SAMPLE",
        help="with --assign: also vote with this reference sample of another tenant that the "
        "deployment shares with everyone (repeatable; as taxonomy_calls' shared_reference_keys)",
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=0.51,
        help="with --assign: abstain at ranks below this confidence (default 0.51)",
    )
    parser.add_argument(
        "--exact", action="store_true", help="exhaustive search instead of the ANN index (slower)"
    )
    parser.set_defaults(handler=run)


NO_REFERENCE = "no reference available"


def _assignment_json(assignment: Any) -> dict:
    if assignment is NO_REFERENCE:
        return {"status": NO_REFERENCE}
    return assignment.as_dict()


def _fail(message: str) -> int:
    print(f"bioscan search: error: {message}", file=sys.stderr)
    return 1


def _parse_ranks(values: list[str] | None) -> dict[str, str]:
    from bioscan_assets.core.taxonomy import RANKS

    out: dict[str, str] = {}
    for value in values or []:
        rank, sep, name = value.partition("=")
        rank = rank.strip().lower()
        if not sep or not name.strip():
            raise ValueError(f"--rank {value!r}: expected RANK=NAME, e.g. genus=Bacillus")
        if rank not in RANKS:
            raise ValueError(f"--rank {value!r}: unknown rank; ranks are {', '.join(RANKS)}")
        out[rank] = name.strip()
    return out


def _read_queries(path: Path) -> list[tuple[str, str]]:
    import pysam

    if not path.is_file():
        raise ValueError(f"--fasta {path}: no such file")
    out = []
    try:
        with pysam.FastxFile(str(path)) as records:
            for number, record in enumerate(records, start=1):
                if not record.sequence:
                    raise ValueError(
                        f"--fasta {path} record {number} ({record.name}): empty sequence"
                    )
                out.append((record.name, record.sequence))
    except OSError as error:
        raise ValueError(f"--fasta {path}: not a readable FASTA/FASTQ file ({error})") from None
    if not out:
        raise ValueError(f"--fasta {path}: no records")
    return out


def _format_table(label: str, hits: list, assignment: Any) -> str:
    from bioscan_assets.core.taxonomy import RANKS

    lines = [f"query: {label}"]
    if not hits:
        lines.append("  no hits (check the filters)")
    else:
        rows = [("#", "distance", "sample", "sequence_id", "reads", "lowest rank", "taxonomy")]
        for n, hit in enumerate(hits, start=1):
            known = [(r, hit.ranks.get(r)) for r in RANKS if hit.ranks.get(r)]
            lowest = f"{known[-1][0]}: {known[-1][1]}" if known else "-"
            rows.append(
                (
                    str(n),
                    f"{hit.distance:.4f}",
                    hit.sample_id,
                    hit.sequence_id,
                    "-" if hit.reads is None else str(hit.reads),
                    lowest,
                    hit.taxonomy or "-",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(6)]
        for row in rows:
            lines.append(
                "  "
                + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:6]))
                + "  "
                + row[6]
            )
    if assignment is NO_REFERENCE:
        lines.append(f"  taxonomy call: {NO_REFERENCE} (no labelled reference sample to vote)")
    elif assignment is not None:
        lines.append("  taxonomy call (similarity-weighted vote of the reference hits):")
        for call in assignment.calls:
            label_text = call.label if call.label is not None else "(abstain)"
            lines.append(f"    {call.rank:<8} {label_text:<30} confidence {call.confidence:.2f}")
    return "\n".join(lines)


def _references(store: Any, args: argparse.Namespace, model_id: str) -> list[str]:
    """The indexed reference partitions the tenant may use, narrowed by --sample."""
    from bioscan_assets.core.calls.reference_vectors import indexed_reference_keys

    keys = indexed_reference_keys(store, args.tenant, model_id, args.shared_reference or [])
    if not args.sample:
        return keys
    wanted = set(args.sample)
    own = f"{args.tenant}/"

    def names(key: str) -> set[str]:  # an own sample by its id, any reference by its key
        return {key, key.removeprefix(own)} if key.startswith(own) else {key}

    chosen = [key for key in keys if names(key) & wanted]
    missing = sorted(wanted - set().union(*(names(key) for key in chosen)))
    if missing:
        raise ValueError(
            f"--assign votes only with reference samples; {', '.join(missing)} is not one the "
            f"tenant may use (references: {', '.join(keys) or 'none'})"
        )
    return chosen


def _classifier(args: argparse.Namespace, model_id: str, references: dict[str, int]) -> dict:
    return {
        "method": "knn",
        "description": f"similarity-weighted vote of the {args.k} nearest labelled reference "
        f"rows (cosine distance between {model_id} embeddings, forward strand as indexed), "
        f"abstaining below {args.min_confidence}; unlabelled reads never vote",
        "model_id": model_id,
        "k": args.k,
        "threshold": args.min_confidence,
        "references": references,
    }


def run(args: argparse.Namespace) -> int:
    from bioscan_assets.core.calls.reference_vectors import labelled_rows, search_references
    from bioscan_assets.core.classify.knn_vote import AssignConfig, assign
    from bioscan_assets.core.index import search as api
    from bioscan_assets.core.storage import Store
    from bioscan_assets.settings import default_storage

    try:
        filters = _parse_ranks(args.rank)
        if not 1 <= args.k <= api.MAX_K:
            raise ValueError(f"--k must be between 1 and {api.MAX_K}")
        if args.query_sample and not args.sequence_id:
            raise ValueError("--query-sample only goes with --sequence-id")
        config = AssignConfig(threshold=args.min_confidence) if args.assign else None
        store = Store(args.storage or default_storage())
        spec = args.model or os.environ.get("BIOSCAN_MODEL") or "demo"
        samples = args.sample or None
        queries: list[tuple[str, Any]] = []
        records: list[tuple[str, str]] = []
        if args.sequence is not None:
            records = [("--sequence", args.sequence)]
        elif args.fasta is not None:
            records = _read_queries(args.fasta)
        normalised = [api.normalise_query(seq, name=name) for name, seq in records]
        # the tenant first: a checkpoint path is only loaded once there is an index to search
        api.check_tenant_exists(store, args.tenant, spec)
        model_id = api.resolve_model_id(spec)
        table = api.open_index(store, args.tenant, model_id)
        references = _references(store, args, model_id) if config else []
        classifier = (
            _classifier(args, model_id, {k: labelled_rows(store, k, model_id) for k in references})
            if config
            else None
        )
        results = []
        if args.sequence_id is not None:
            scope = [args.query_sample] if args.query_sample else samples
            key, vector = api.lookup_vector(table, args.sequence_id, scope)
            queries.append(
                (f"sequence id {args.sequence_id} ({key.split('/', 1)[0]})", (vector, key))
            )
        else:
            vectors = api.embed_queries(table, normalised, model_id)
            for (name, seq), vector in zip(records, vectors, strict=True):
                label = name if args.fasta else api.describe_sequence(seq)
                queries.append((label, (vector, None)))
        for label, (vector, exclude) in queries:
            if config is not None:  # references only: labelled rows the tenant may use
                hits = search_references(
                    store,
                    args.tenant,
                    model_id,
                    vector,
                    references,
                    k=args.k,
                    filters=filters,
                    exclude_key=exclude,
                    exact=args.exact,
                )
                assignment = assign(hits, config) if references else NO_REFERENCE
            else:
                hits = api.search_vector(
                    table,
                    vector,
                    k=args.k,
                    filters=filters,
                    samples=samples,
                    exact=args.exact,
                    exclude_key=exclude,
                )
                assignment = None
            results.append((label, hits, assignment))
    except (ValueError, OSError) as error:
        return _fail(str(error))

    if args.json:
        doc = {
            "tenant": args.tenant,
            "model_id": model_id,
            "k": args.k,
            **({"classifier": classifier} if classifier else {}),
            "queries": [
                {
                    "query": label,
                    "hits": [hit.as_dict() for hit in hits],
                    **({"assignment": _assignment_json(assignment)} if assignment else {}),
                }
                for label, hits, assignment in results
            ],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(f"tenant {args.tenant}, model {model_id}, k={args.k}")
        if classifier:
            refs = classifier["references"]
            named = ", ".join(f"{k} ({n} labelled rows)" for k, n in refs.items()) or "none"
            print(f"classifier: kNN, {classifier['description']}")
            print(f"references: {named}")
        for label, hits, assignment in results:
            print(_format_table(label, hits, assignment))
    return 0
