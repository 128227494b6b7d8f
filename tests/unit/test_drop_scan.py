"""The sensor's scanning logic without Dagster: budgets, state, cursor, quarantine bookkeeping."""

from __future__ import annotations

import json

import pytest

from bioscan_assets.core.ingest import scan as drop_scan
from bioscan_assets.core.ingest.scan import ScanState, load_state, save_state, scan_landing
from bioscan_assets.core.layout import quarantine_record
from bioscan_assets.core.storage import Store
from tests.helpers import fasta_bytes, write_drop, write_manifest_json


@pytest.fixture
def stores(tmp_path) -> tuple[Store, Store]:
    return Store(str(tmp_path / "landing")), Store(str(tmp_path / "storage"))


def test_time_budget_stops_a_tick_and_the_rest_follows(stores):
    landing, output = stores
    for i in range(10):
        write_drop(landing, "acme-lab", f"S{i:02d}", seed=i)
    ticks = iter(range(1000))  # a clock that advances one second per reading

    result = scan_landing(
        landing, output, ScanState(), time_budget_s=3.5, clock=lambda: next(ticks)
    )
    assert 1 <= result.processed <= 3
    assert result.pending == 10 - result.processed
    done = [a.drop.sample_id for a in result.accepted]
    assert done == [f"S{i:02d}" for i in range(result.processed)], "in path order"

    again = scan_landing(landing, output, result.state)
    assert [a.drop.sample_id for a in again.accepted] == [f"S{i:02d}" for i in range(len(done), 10)]
    assert again.pending == 0
    assert scan_landing(landing, output, again.state).accepted == []


def test_drop_budget(stores):
    landing, output = stores
    for i in range(7):
        write_drop(landing, "acme-lab", f"S{i}", seed=i)
    state, seen = ScanState(), []
    for _ in range(4):
        result = scan_landing(landing, output, state, max_drops=2)
        seen += [a.drop.partition_key for a in result.accepted]
        state = result.state
    assert seen == [f"acme-lab/S{i}" for i in range(7)]


def test_deleted_drop_leaves_the_state_and_is_seen_again_when_back(stores):
    landing, output = stores
    write_drop(landing, "acme-lab", "S1")
    state = scan_landing(landing, output, ScanState()).state
    raw = landing.read_bytes("acme-lab/S1/sample.json")
    landing.delete("acme-lab/S1/sample.json")
    state = scan_landing(landing, output, state).state
    assert state.entries == {}
    write_manifest_json(landing, "acme-lab", "S1", raw)
    again = scan_landing(landing, output, state)
    assert [a.drop.manifest_sha256 for a in again.accepted] == [
        drop_scan.hashlib.sha256(raw).hexdigest()
    ]


def test_large_drops_defer_checksums(stores):
    landing, output = stores
    write_drop(landing, "acme-lab", "S1")
    landing.write_bytes("acme-lab/S1/reads_0.fasta", fasta_bytes(seed=9))  # wrong sha256
    result = scan_landing(landing, output, ScanState(), checksum_max_bytes=10)
    assert [a.checksums_verified for a in result.accepted] == [False]
    result = scan_landing(landing, output, ScanState(), checksum_max_bytes=None)
    assert result.accepted == [] and len(result.quarantined) == 1


def test_stale_quarantine_record_is_released_without_state(stores):
    landing, output = stores
    write_drop(landing, "acme-lab", "S1")
    output.write_bytes(quarantine_record("acme-lab", "S1"), b'{"status": "quarantined"}')
    result = scan_landing(landing, output, ScanState())
    assert [a.released for a in result.accepted] == [True]
    assert not output.exists(quarantine_record("acme-lab", "S1"))


def test_state_round_trip_and_cursor(stores):
    landing, output = stores
    for i in range(3):
        write_drop(landing, "acme-lab", f"S{i}", seed=i)
    write_drop(landing, "acme-lab", "BAD", manifest={"tenant": "acme-lab"})
    result = scan_landing(landing, output, ScanState())
    digest = save_state(output, result.state, None)
    cursor = drop_scan.make_cursor(digest, result)
    assert json.loads(cursor) == {"v": 1, "state": digest, "drops": 4, "pending": 0}
    loaded, warning = load_state(output, cursor)
    assert warning is None
    assert loaded.entries == result.state.entries
    assert {e.status for e in loaded.entries.values()} == {drop_scan.OK, drop_scan.QUARANTINED}

    # A new state replaces the old file but keeps the previous one (uncommitted cursor).
    write_drop(landing, "acme-lab", "S9", seed=9)
    second = scan_landing(landing, output, loaded)
    digest2 = save_state(output, second.state, cursor)
    cursor2 = drop_scan.make_cursor(digest2, second)
    write_drop(landing, "acme-lab", "S8", seed=8)
    third = scan_landing(landing, output, second.state)
    digest3 = save_state(output, third.state, cursor2)
    names = sorted(output.list_files(drop_scan.STATE_DIR))
    assert names == sorted(f"{drop_scan.STATE_DIR}/{d}.json.gz" for d in (digest2, digest3))


@pytest.mark.parametrize(
    ("cursor", "warns"),
    [(None, False), ("", False), ("not json", True), ('{"v":1,"state":"0123abcd"}', True)],
)
def test_load_state_falls_back_to_empty(stores, cursor, warns):
    _, output = stores
    state, warning = load_state(output, cursor)
    assert state.entries == {}
    assert (warning is not None) == warns


def test_state_of_ten_thousand_drops_stays_small():
    state = ScanState(
        {
            f"tenant-{i % 20:02d}/SAMPLE-{i:06d}": drop_scan.Entry(
                drop_scan._short(f"{i}:{i * 7}"), f"{i:016x}", drop_scan.OK
            )
            for i in range(10_000)
        }
    )
    data = state.to_bytes()
    assert ScanState.from_bytes(data).entries == state.entries
    assert len(data) < 400_000


class FlakyStore(Store):
    """A landing area whose storage fails once on one drop (a network error cannot be staged)."""

    def __init__(self, root: str, failing: str):
        super().__init__(root)
        self.failing = failing

    def read_bytes(self, rel: str) -> bytes:
        if rel.startswith(self.failing):
            self.failing = "\0"  # only once
            raise ConnectionResetError("connection reset by peer")
        return super().read_bytes(rel)


def test_storage_errors_are_retried_not_quarantined(stores):
    landing, output = stores
    for i in range(3):
        write_drop(landing, "acme-lab", f"S{i}", seed=i)
    flaky = FlakyStore(landing.root, "acme-lab/S1/")
    first = scan_landing(flaky, output, ScanState())
    assert [a.drop.sample_id for a in first.accepted] == ["S0", "S2"], "others are not blocked"
    assert first.errors == ["acme-lab/S1: ConnectionResetError: connection reset by peer"]
    assert output.list_files("quarantine") == []
    second = scan_landing(flaky, output, first.state)
    assert [a.drop.sample_id for a in second.accepted] == ["S1"]
