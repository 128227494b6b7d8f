"""The streaming reader on real files written with gzip, bgzip and pysam, good and bad."""

from __future__ import annotations

import http.server
import itertools
import os
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from bioscan_assets.core.errors import DropError
from bioscan_assets.core.ingest import readers
from tests.ingest_data import (
    Read,
    fasta_text,
    fastq_text,
    random_reads,
    write_aligned_cram,
    write_bytes,
    write_reference,
    write_unaligned_bam,
)


def read_all(path: Path, fmt: str, **kwargs) -> tuple[list[str], list[str], list[str] | None]:
    names: list[str] = []
    seqs: list[str] = []
    quals: list[str] | None = []
    for batch in readers.iter_read_batches(path, fmt, name=path.name, **kwargs):
        offsets = np.concatenate([[0], np.cumsum(batch.lengths)])
        text = batch.sequences.decode()
        names += batch.names
        seqs += [text[a:b] for a, b in itertools.pairwise(offsets)]
        if batch.qualities is None:
            quals = None
        else:
            q_off = np.concatenate([[0], np.cumsum(batch.quality_lengths)])
            q_text = batch.qualities.decode()
            assert quals is not None
            quals += [q_text[a:b] for a, b in itertools.pairwise(q_off)]
    return names, seqs, quals


@pytest.mark.parametrize("compression", [None, "gzip", "bgzip"])
def test_fasta_every_compression(tmp_path, compression):
    reads = random_reads(300, seed=1, length=(1, 400), alphabet="ACGTacgtNRY-")
    path = write_bytes(tmp_path / "r.fasta.gz", fasta_text(reads), compression=compression)
    names, seqs, quals = read_all(path, "fasta", batch_records=70)
    assert names == [r.name for r in reads]
    assert seqs == [r.seq for r in reads]
    assert quals is None


@pytest.mark.parametrize("compression", [None, "gzip", "bgzip"])
def test_fastq_every_compression(tmp_path, compression):
    reads = random_reads(1000, seed=2, length=(150, 150))
    path = write_bytes(tmp_path / "r_R1.fastq.gz", fastq_text(reads), compression=compression)
    names, seqs, quals = read_all(path, "fastq", batch_records=300)
    assert names == [r.name for r in reads]
    assert seqs == [r.seq for r in reads]
    assert quals == [r.qual for r in reads]


def test_batches_are_bounded_and_numbered(tmp_path):
    reads = random_reads(1000, seed=3, length=(100, 100))
    path = write_bytes(tmp_path / "r.fq", fastq_text(reads))
    batches = list(readers.iter_read_batches(path, "fastq", name="r.fq", batch_bases=25_000))
    assert all(len(b.sequences) <= 25_000 + 100 for b in batches)  # at most one read over
    assert [b.first_record for b in batches] == list(
        np.cumsum([1] + [len(b) for b in batches[:-1]])
    )
    assert readers.count_records(path, "fastq", name="r.fq") == (1000, 100_000)


def test_long_reads_keep_batches_small(tmp_path):
    reads = random_reads(20, seed=8, length=(20_000, 60_000), quality=False)
    path = write_bytes(tmp_path / "long.fa", fasta_text(reads, wrap=80))
    batches = list(readers.iter_read_batches(path, "fasta", name="long.fa", batch_bases=50_000))
    assert all(len(b.sequences) < 50_000 + 60_000 for b in batches)
    assert sum(len(b) for b in batches) == 20


def test_unaligned_bam_flags_orientation_and_secondary(tmp_path):
    reads = [
        Read("p1", "ACGTAC", "IIIIII", 77),  # paired, unmapped, read 1
        Read("p1", "GGGTTT", "ABCDEF", 141),  # read 2
        Read("rev", "AACCGT", "ABCDEF", 4 | 16),  # stored reverse-complemented
        Read("sec", "ACGT", "IIII", 4 | 256),  # secondary: skipped
        Read("noq", "ACGTN", None, 4),
    ]
    path = write_unaligned_bam(tmp_path / "u.bam", reads)
    batches = list(readers.iter_read_batches(path, "bam", name="u.bam"))
    assert sum(b.skipped for b in batches) == 1
    names, seqs, quals = read_all(path, "bam")
    assert names == ["p1", "p1", "rev", "noq"]
    assert seqs == ["ACGTAC", "GGGTTT", "ACGGTT", "ACGTN"]
    assert quals == ["IIIIII", "ABCDEF", "FEDCBA", ""]
    flags = np.concatenate([b.flags for b in batches]).tolist()
    assert flags == [77, 141, 20, 4]


def test_cram_with_reference(tmp_path):
    ref = tmp_path / "ref" / "ref.fa"
    ref_seq = write_reference(ref)
    expected = write_aligned_cram(tmp_path / "a.cram", ref, ref_seq, 40)
    names, seqs, quals = read_all(tmp_path / "a.cram", "cram", reference=ref)
    assert names == [r.name for r in expected]
    assert seqs == [r.seq for r in expected]
    assert quals == [r.qual for r in expected]


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        self.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_cram_without_reference_fails_clearly_and_never_downloads(tmp_path, monkeypatch):
    ref = tmp_path / "ref" / "ref.fa"
    ref_seq = write_reference(ref)
    write_aligned_cram(tmp_path / "a.cram", ref, ref_seq, 10)
    for leftover in ref.parent.iterdir():  # the CRAM header names this path: make it vanish
        leftover.unlink()
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    # A user environment that *would* download references from a server.
    monkeypatch.setenv("REF_PATH", f"{url}/%s")
    monkeypatch.setenv("REF_CACHE", str(tmp_path / "cache" / "%s"))
    _Recorder.hits = []
    try:
        with pytest.raises(DropError) as err:
            readers.count_records(tmp_path / "a.cram", "cram", name="run1.cram")
    finally:
        server.shutdown()
    assert err.value.location == "run1.cram record 1"
    assert "reference" in err.value.reason and "never downloads" in err.value.reason
    assert _Recorder.hits == []
    assert os.environ["REF_PATH"] == f"{url}/%s"  # the user's setting is back afterwards


def test_truncated_gzip_names_file_and_line(tmp_path):
    reads = random_reads(3000, seed=4, length=(150, 150))
    data = write_bytes(tmp_path / "x", fastq_text(reads), compression="gzip").read_bytes()
    path = tmp_path / "run1_R1.fastq.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DropError) as err:
        readers.count_records(path, "fastq", name="run1_R1.fastq.gz")
    assert err.value.location.startswith("run1_R1.fastq.gz line ")
    assert "truncated" in err.value.reason
    line = int(err.value.location.rsplit(" ", 1)[1])
    assert 1000 < line < 12_000


@pytest.mark.parametrize(("qual_len", "compression"), [(140, None), (160, None), (149, "gzip")])
def test_fastq_quality_length_mismatch_names_line(tmp_path, qual_len, compression):
    reads = random_reads(50, seed=5, length=(150, 150))
    bad = reads[20]
    reads[20] = Read(bad.name, bad.seq, bad.qual[:qual_len] + "I" * max(0, qual_len - 150))
    path = write_bytes(tmp_path / "r.fq.gz", fastq_text(reads), compression=compression)
    with pytest.raises(DropError) as err:
        readers.count_records(path, "fastq", name="r.fq.gz")
    assert err.value.location == "r.fq.gz line 84"  # record 21's quality line
    assert f"quality has {qual_len} characters" in err.value.reason
    assert "150 bases" in err.value.reason


@pytest.mark.parametrize("fmt", ["fasta", "fastq"])
def test_binary_garbage(tmp_path, fmt):
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(DropError) as err:
        readers.count_records(path, fmt, name=path.name)
    assert err.value.location == f"{path.name} line 1"
    assert "binary data" in err.value.reason


def test_binary_garbage_in_the_middle(tmp_path):
    good = fastq_text(random_reads(2000, seed=6, length=(150, 150)))
    path = tmp_path / "x.fq"
    path.write_bytes(good[:200_000] + bytes(range(128, 256)) * 8 + good[200_000:])
    with pytest.raises(DropError) as err:
        readers.count_records(path, "fastq", name="x.fq")
    line = good[:200_000].count(b"\n") + 1
    assert err.value.location == f"x.fq line {line}"
    assert "binary data" in err.value.reason


def test_garbage_named_bam(tmp_path):
    path = tmp_path / "x.bam"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(DropError) as err:
        readers.count_records(path, "bam", name="x.bam")
    assert err.value.location == "x.bam"
    assert "not a readable BAM" in err.value.reason


@pytest.mark.parametrize(
    ("content", "compression", "reason"),
    [
        (b"", None, "file is empty (0 bytes)"),
        (b"", "gzip", "no sequence records"),
        (b"\n\n", None, "no sequence records"),
    ],
)
def test_empty_files_are_errors(tmp_path, content, compression, reason):
    path = write_bytes(tmp_path / "e.fasta.gz", content, compression=compression)
    with pytest.raises(DropError) as err:
        readers.count_records(path, "fasta", name="e.fasta.gz")
    assert err.value.location == "e.fasta.gz"
    assert reason in err.value.reason


def test_bam_without_reads_is_an_error(tmp_path):
    path = write_unaligned_bam(tmp_path / "e.bam", [])
    with pytest.raises(DropError, match="no sequence records"):
        readers.count_records(path, "bam", name="e.bam")


def test_fasta_records_in_a_fastq_file(tmp_path):
    path = write_bytes(tmp_path / "x.fastq", fasta_text(random_reads(3, quality=False)))
    with pytest.raises(DropError) as err:
        readers.count_records(path, "fastq", name="x.fastq")
    assert err.value.location == "x.fastq line 1"
    assert "'@'" in err.value.reason


def test_text_that_is_not_fasta(tmp_path):
    path = write_bytes(tmp_path / "notes.fa", b"\nthese are my notes\n")
    with pytest.raises(DropError) as err:
        readers.count_records(path, "fasta", name="notes.fa")
    assert err.value.location == "notes.fa line 2"
