"""`bioscan model`: get a published checkpoint in place, convert it, and say what one is."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

DESCRIPTION = """\
Nucleotide Transformer checkpoints: Hugging Face layout (config.json, vocab.txt and weights in
one file or shards, safetensors or PyTorch .bin) in a local directory, a gs:// prefix or on the
Hugging Face Hub (org/name[@revision]). Preset names of published models resolve to their Hub
repositories: nt-2.5b-multi-species, nt-500m-human-ref, nt-500m-1000g.

  pull     Hub -> a local directory or gs:// mirror, every file checked against the hash the
           Hub published for it (for air-gapped sites: pull where there is network, copy the
           directory, set BIOSCAN_MODEL to it)
  convert  any layout -> sharded safetensors (PyTorch .bin needs torch; the result does not);
           same weights, same weights hash, so existing embeddings stay valid
  inspect  architecture, layers, hidden size, parameters, dtype, weights hash, matching preset
"""

EPILOG = """\
examples:
  bioscan model pull nt-2.5b-multi-species --to /models/nt-2.5b
  bioscan model pull InstaDeepAI/nucleotide-transformer-500m-human-ref@main \\
      --to gs://my-bucket/models/nt-500m-human-ref
  bioscan model convert /models/nt-2.5b /models/nt-2.5b-safetensors --shard-size 2GB
  bioscan model inspect /models/nt-2.5b-safetensors --format json
  bioscan model inspect nt-2.5b-multi-species --no-hash

environment: HF_HOME / HF_HUB_CACHE (Hub cache), HF_HUB_OFFLINE=1 (use the cache only),
HF_TOKEN (or `hf auth login`). Then: BIOSCAN_MODEL=/models/nt-2.5b-safetensors.
exit status: 0 done; 1 the checkpoint could not be fetched, read or written (the message
names the file and tensor); 2 bad usage.
"""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9}


def _size(text: str) -> int:
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 2GB, 500MB or 1000000")
    unit = (match[2] or "").upper()
    base = 1024 if "I" in unit else 1000
    scale = base ** "BKMG".index(unit[0]) if unit and unit[0] in "KMG" else 1
    size = int(float(match[1]) * scale)
    if size < 1:
        raise argparse.ArgumentTypeError("the shard size must be positive")
    return size


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "model",
        help="pull, convert and inspect Nucleotide Transformer checkpoints",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    pull = actions.add_parser(
        "pull",
        help="Hub -> local directory or gs:// mirror, hashes checked",
        description="Download a checkpoint from the Hugging Face Hub (only the files one "
        "weights layout needs) into the Hub cache, check every file against the hash the Hub "
        "published (sha256 for LFS files, git blob sha1 for small ones), then copy it to --to, "
        "config.json last. Offline (HF_HUB_OFFLINE=1) it copies from the cache.",
        epilog="example: bioscan model pull nt-2.5b-multi-species --to /models/nt-2.5b",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pull.add_argument("spec", metavar="MODEL", help="preset name or Hub id org/name[@revision]")
    pull.add_argument("--to", required=True, metavar="DEST", help="directory or gs:// prefix")
    pull.set_defaults(handler=_pull)

    convert = actions.add_parser(
        "convert",
        help="any layout -> sharded safetensors",
        description="Rewrite a checkpoint (directory, gs:// or Hub id; any layout) as "
        "safetensors shards + model.safetensors.index.json in DEST, tensor by tensor. Names, "
        "dtypes and bytes are kept, so the weights hash does not change. Nothing is left in "
        "DEST if it fails.",
        epilog="example: bioscan model convert /models/nt-2.5b /models/nt-2.5b-st",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("source", metavar="SRC", help="checkpoint dir, gs:// prefix or Hub id")
    convert.add_argument("destination", metavar="DEST", help="a new or empty local directory")
    convert.add_argument(
        "--shard-size",
        type=_size,
        default="2GB",
        help="largest shard, e.g. 2GB (default), 500MB, 4GiB",
    )
    convert.set_defaults(handler=_convert)

    inspect = actions.add_parser(
        "inspect",
        help="architecture, size, dtype, weights hash, matching preset",
        description="Describe a preset or checkpoint without running it. The weights hash is "
        "the one embeddings are filed under (computed one tensor at a time).",
        epilog="example: bioscan model inspect /models/nt-2.5b --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument("spec", metavar="MODEL", help="preset, directory, gs:// or Hub id")
    inspect.add_argument("--no-hash", action="store_true", help="skip reading every weight")
    inspect.set_defaults(handler=_inspect)

    for sub in (pull, convert, inspect):
        sub.add_argument(
            "--format", choices=("text", "json"), default="text", help="output (default text)"
        )


def _fail(message: str) -> int:
    print(f"bioscan model: error: {message}", file=sys.stderr)
    return 1


def _emit(args: argparse.Namespace, doc: dict[str, Any], lines: list[str]) -> int:
    print(json.dumps(doc, indent=1, sort_keys=True) if args.format == "json" else "\n".join(lines))
    return 0


def _pull(args: argparse.Namespace) -> int:
    # jax and the Hub client are heavy: imported only when a model action runs
    from bioscan_assets.core.model import hub
    from bioscan_assets.core.model.presets import PUBLISHED

    spec = args.spec.strip()
    ref = hub.parse_ref(PUBLISHED[spec].spec if spec in PUBLISHED else spec)
    if ref is None:
        return _fail(
            f"{spec!r} is neither a published preset ({', '.join(PUBLISHED)}) nor a Hub id"
        )
    try:
        report = hub.pull(ref, args.to)
    except (ValueError, OSError) as error:
        return _fail(str(error))
    lines = [f"{ref.repo_id} at commit {report['commit']} -> {report['destination']}"]
    lines += [
        f"  {name:<40} {entry['size']:>14,} bytes  {entry['verified']}"
        for name, entry in report["files"].items()
    ]
    lines.append(f"use it with: BIOSCAN_MODEL={report['destination']}")
    return _emit(args, report, lines)


def _convert(args: argparse.Namespace) -> int:
    from bioscan_assets.core.model.convert import convert_checkpoint

    try:
        report = convert_checkpoint(args.source, args.destination, args.shard_size)
    except (ValueError, OSError) as error:
        return _fail(str(error))
    lines = [
        f"{report['source']} ({report['from']['format']}, {len(report['from']['files'])} "
        f"file(s)) -> {report['destination']}",
        f"  {report['tensors']} tensors, {report['bytes']:,} bytes in "
        f"{len(report['to']['files'])} safetensors file(s)",
    ]
    return _emit(args, report, lines)


def _inspect(args: argparse.Namespace) -> int:
    from bioscan_assets.core.model.describe import inspect_model

    try:
        doc = inspect_model(args.spec, with_hash=not args.no_hash)
    except (ValueError, OSError) as error:
        return _fail(str(error))
    lines = [
        f"{doc['spec']}: {doc['architecture']}",
        f"  source           {doc['source']}",
        f"  layers           {doc['layers']}",
        f"  hidden size      {doc['hidden_size']} ({doc['heads']} heads, "
        f"FFN {doc['intermediate_size']})",
        f"  parameters       {doc['parameters']:,}",
        f"  stored dtype     {', '.join(doc['stored_dtypes'])}",
        f"  weights hash     {doc['weights_hash'] or '(not computed)'}",
        f"  pretrained       {doc['pretrained']}",
        f"  preset           {doc['preset'] or '-'} "
        f"(same shape: {', '.join(doc['same_shape_as']) or 'none'})",
    ]
    if "layout" in doc:
        layout = doc["layout"]
        lines.append(
            f"  layout           {layout['format']}, {len(layout['files'])} file(s), "
            f"{doc['bytes']:,} bytes of encoder weights"
        )
    if doc.get("hub"):
        lines.append(f"  hub              {doc['hub']}")
    return _emit(args, doc, lines)
