"""Ingest throughput and peak memory: `sequence_shards` vs bare pysam vs Biopython.

    .venv/bin/python tests/benchmarks/bench_ingest.py            # defaults: a few minutes
    .venv/bin/python tests/benchmarks/bench_ingest.py --help

Generates synthetic inputs under --workdir (default /tmp/bioscan-bench; reused when present):
a long-read FASTA (ONT-like log-normal read lengths, median ~8 kb, 80-column lines) of
--long-mbases, and a short-read gzipped FASTQ (2x150 bp style R1, Illumina-like qualities)
of --short-mbases; plus a copy of each 10x smaller for the memory comparison.

Every measurement runs in a fresh subprocess, so ru_maxrss is that method's own peak:
  ours      the sequence_shards core (`shards.write_shards`: read from the raw copy, normalise,
            QC, ids, Parquet parts, manifest); the raw copy is made first and not timed,
            one-time imports and a tiny warm-up run are excluded from the time
  pysam     bare `pysam.FastxFile` iteration, touching name, sequence (and quality)
  biopython `Bio.SeqIO.parse` over the same file (gzip.open for .gz), touching id and sequence
Goals (issue #2): ours >= 0.3x bare pysam, faster than SeqIO, peak RSS < 1 GiB and flat
between the two sizes. Wall-clock Mb/s is what counts; CPU seconds (all threads) are printed
too, since they are steadier on a shared machine. Not part of the test suite; run it on an
otherwise idle machine (`--repeat 3` keeps the best of three).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


# --- inputs ----------------------------------------------------------------------------------


def _write_long_fasta(path: Path, mbases: float, seed: int = 0, wrap: int = 80) -> None:
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGT", dtype=np.uint8)
    target = int(mbases * 1e6)
    done = index = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        while done < target:
            length = int(min(max(rng.lognormal(np.log(8000), 0.7), 500), 200_000))
            seq = alphabet[rng.integers(0, 4, size=length)]
            # sprinkle a few N runs, as basecallers leave
            if rng.random() < 0.2:
                start = int(rng.integers(0, length))
                seq[start : start + 20] = ord("N")
            raw = seq.tobytes()
            lines = [raw[i : i + wrap] for i in range(0, length, wrap)] if wrap else [raw]
            out.write(b">read%d runid=bench ch=%d\n" % (index, index % 512))
            out.write(b"\n".join(lines) + b"\n")
            done += length
            index += 1
    tmp.rename(path)


def _write_short_fastq_gz(path: Path, mbases: float, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGT", dtype=np.uint8)
    n = int(mbases * 1e6 / 150)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=4) as out:
        for start in range(0, n, 20_000):
            k = min(20_000, n - start)
            seqs = alphabet[rng.integers(0, 4, size=(k, 150))]
            # qualities fall along the read, as on Illumina instruments
            qual = rng.normal(36, 3, size=(k, 150)) - np.linspace(0, 8, 150)
            qual = (np.clip(qual, 2, 41) + 33).astype(np.uint8)
            chunk = [
                b"@BENCH:1:FC:1:%d:%d:%d 1:N:0:ACGT\n%s\n+\n%s\n"
                % (start + i, i % 30000, i, seqs[i].tobytes(), qual[i].tobytes())
                for i in range(k)
            ]
            out.write(b"".join(chunk))
    tmp.rename(path)


def make_inputs(workdir: Path, long_mbases: float, short_mbases: float) -> dict[str, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    files = {
        "long": workdir / f"long_{long_mbases:g}Mb.fasta",
        "long_small": workdir / f"long_{long_mbases / 10:g}Mb.fasta",
        "short": workdir / f"short_{short_mbases:g}Mb_R1.fastq.gz",
        "short_small": workdir / f"short_{short_mbases / 10:g}Mb_R1.fastq.gz",
    }
    makers = {
        "long": lambda p: _write_long_fasta(p, long_mbases),
        "long_small": lambda p: _write_long_fasta(p, long_mbases / 10, seed=5),
        "short": lambda p: _write_short_fastq_gz(p, short_mbases),
        "short_small": lambda p: _write_short_fastq_gz(p, short_mbases / 10, seed=6),
    }
    for key, path in files.items():
        if not path.exists():
            started = time.perf_counter()
            makers[key](path)
            print(
                f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) "
                f"in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    return files


# --- children (one measurement each) ----------------------------------------------------------


def _child_pysam(path: Path) -> dict:
    import pysam

    cpu = time.process_time()
    started = time.perf_counter()
    records = bases = 0
    with pysam.FastxFile(str(path)) as handle:
        for record in handle:
            record.name  # noqa: B018 - touch what a reader needs
            bases += len(record.sequence)
            record.quality  # noqa: B018
            records += 1
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "records": records,
        "bases": bases,
    }


def _child_biopython(path: Path) -> dict:
    from Bio import SeqIO

    fmt = "fastq" if ".fastq" in path.name or ".fq" in path.name else "fasta"
    opener = gzip.open if path.name.endswith(".gz") else open
    cpu = time.process_time()
    started = time.perf_counter()
    records = bases = 0
    with opener(path, "rt") as handle:
        for record in SeqIO.parse(handle, fmt):
            record.id  # noqa: B018
            bases += len(str(record.seq))
            records += 1
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "records": records,
        "bases": bases,
    }


def _ingest_setup(path: Path, root: Path, sample: str):
    """A lab drop holding `path`, validated and copied to raw/ (not timed)."""
    from bioscan_assets.core.ingest.raw import copy_drop
    from bioscan_assets.core.ingest.validation import validate_drop
    from bioscan_assets.core.storage import Store

    folder = root / "landing" / "bench" / sample
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if not target.exists():
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
    from bioscan_assets.core.storage import sha256_stream

    with open(target, "rb") as handle:
        sha, _ = sha256_stream(handle)
    manifest = json.dumps(
        {
            "tenant": "bench",
            "sample_id": sample,
            "depth_m": 10.0,
            "latitude": 1.0,
            "longitude": 2.0,
            "files": [{"path": path.name, "sha256": sha}],
        }
    ).encode()
    (folder / "sample.json").write_bytes(manifest)
    landing, store = Store(str(root / "landing")), Store(str(root / "storage"))
    drop = validate_drop(landing, "bench", sample, verify_checksums=False, manifest=manifest)
    started = time.perf_counter()
    raw = copy_drop(landing, store, drop, manifest)
    return store, drop, raw, time.perf_counter() - started


def _child_ours(path: Path, work: Path, config: dict) -> dict:
    from bioscan_assets.core.ingest.shard_config import ShardConfig
    from bioscan_assets.core.ingest.shard_writer import write_shards

    root = work / "ours"
    shutil.rmtree(root / "storage", ignore_errors=True)
    # warm-up: one-time lazy imports (pyarrow pulls in pandas on first use) are not ingest
    tiny = work / "warmup.fasta"
    tiny.write_bytes(b">w1\n" + b"ACGT" * 100 + b"\n")
    store, drop, raw, _ = _ingest_setup(tiny, root, "warmup")
    write_shards(store, drop, raw, ShardConfig(**config))

    store, drop, raw, raw_seconds = _ingest_setup(path, root, "S1")
    cpu = time.process_time()
    started = time.perf_counter()
    manifest = write_shards(store, drop, raw, ShardConfig(**config))
    seconds = time.perf_counter() - started
    out_bytes = sum(f["bytes"] for f in manifest["files"])
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "records": manifest["records_read"],
        "bases": manifest["bases_read"],
        "rows": manifest["rows"],
        "parts": len(manifest["files"]),
        "parquet_mb": out_bytes / 1e6,
        "raw_copy_seconds": raw_seconds,
    }


def child_main(method: str, path: Path, work: Path, config: dict) -> None:
    if method == "pysam":
        result = _child_pysam(path)
    elif method == "biopython":
        result = _child_biopython(path)
    else:
        result = _child_ours(path, work, config)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def run_child(method: str, path: Path, work: Path, config: dict) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--child-file",
        str(path),
        "--workdir",
        str(work),
        "--config",
        json.dumps(config),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{method} on {path.name} failed:\n{done.stdout}\n{done.stderr}")


# --- driver ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bioscan-bench"))
    parser.add_argument("--long-mbases", type=float, default=300.0)
    parser.add_argument("--short-mbases", type=float, default=100.0)
    parser.add_argument(
        "--methods", default="ours,pysam,biopython", help="comma-separated subset to run"
    )
    parser.add_argument(
        "--config",
        default="{}",
        help='ShardConfig overrides as JSON, e.g. \'{"compression": "snappy"}\'',
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the best is kept")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = json.loads(args.config)
    if args.child:
        child_main(args.child, args.child_file, args.workdir, config)
        return 0

    files = make_inputs(args.workdir, args.long_mbases, args.short_mbases)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    results: dict[str, dict[str, dict]] = {}
    for key in ("long", "short", "long_small", "short_small"):
        for method in methods:
            if key.endswith("_small") and method != "ours" and method != "pysam":
                continue
            best = None
            for _ in range(args.repeat):
                got = run_child(method, files[key], args.workdir, config)
                if best is None or got["seconds"] < best["seconds"]:
                    best = got | {"max_rss_mb": max(got["max_rss_mb"], (best or got)["max_rss_mb"])}
            assert best is not None
            best["mbases_per_s"] = best["bases"] / 1e6 / best["seconds"]
            results.setdefault(key, {})[method] = best
            print(
                f"{key:12s} {method:10s} {best['bases'] / 1e6:8.1f} Mb "
                f"{best['seconds']:7.2f} s {best['mbases_per_s']:8.1f} Mb/s "
                f"(CPU {best['cpu_seconds']:6.2f} s) peak RSS {best['max_rss_mb']:6.0f} MB",
                flush=True,
            )

    print("\nsummary")
    for key in ("long", "short"):
        row = results.get(key, {})
        if "ours" in row and "pysam" in row:
            ratio = row["ours"]["mbases_per_s"] / row["pysam"]["mbases_per_s"]
            line = f"  {key}: ours/pysam = {ratio:.2f}x"
            if "biopython" in row:
                line += (
                    f", ours/SeqIO = "
                    f"{row['ours']['mbases_per_s'] / row['biopython']['mbases_per_s']:.2f}x"
                )
            print(line)
        small = results.get(f"{key}_small", {}).get("ours")
        if small and "ours" in row:
            print(
                f"  {key}: ours peak RSS {small['max_rss_mb']:.0f} MB at "
                f"{small['bases'] / 1e6:.0f} Mb vs {row['ours']['max_rss_mb']:.0f} MB at "
                f"{row['ours']['bases'] / 1e6:.0f} Mb"
            )
    if args.json:
        args.json.write_text(json.dumps({"config": config, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
