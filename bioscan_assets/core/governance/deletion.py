"""One unit of retention work, and the check every unit passes before it is planned or applied.

The check is the last line of defence: whatever a planner computed, a deletion outside its
own target, inside the protected set, of LanceDB files or of a tombstone is refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bioscan_assets.core import layout
from bioscan_assets.core.governance.partition_state import TOMBSTONE
from bioscan_assets.core.governance.policy import Policies


class ProtectedPathError(RuntimeError):
    """A deletion reached a path retention must never delete."""


@dataclass(frozen=True)
class Deletion:
    """One unit of work: everything it lists goes, in `files` order, or the run stops there.

    `root` is "storage" (the output store) or "home" ($BIOSCAN_HOME). `guard` is the sha256
    of the manifest the decision was based on; it is checked again just before deleting, so a
    partition re-materialised since the plan is left alone.
    """

    policy: str
    root: str
    target: str
    files: tuple[str, ...]
    bytes: int
    reason: str
    asset: str | None = None
    partition_key: str | None = None
    model_id: str | None = None
    tombstone: str | None = None
    guard: str | None = None
    versions: tuple[int, ...] = ()
    tag_actions: tuple[tuple[str, str, int], ...] = ()
    cutoff: str | None = None
    details: tuple[tuple[str, Any], ...] = ()

    def lines(self) -> list[str]:
        """What this deletion removes, one line per file or version (the dry-run listing)."""
        out = [f"{self.root}:{rel}" for rel in self.files]
        out += [f"{self.root}:{self.target}@version={v}" for v in self.versions]
        return out

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["files"] = list(self.files)
        doc["versions"] = list(self.versions)
        doc["tag_actions"] = [list(t) for t in self.tag_actions]
        doc["details"] = dict(self.details)
        return doc


def format_plan(plan: list[Deletion]) -> list[str]:
    """Every file and table version a plan deletes, in the order it deletes them."""
    return [line for item in plan for line in item.lines()]


def check_deletion(item: Deletion, policies: Policies) -> None:
    """Refuse a deletion outside its target or inside the protected set."""
    if item.root not in ("storage", "home"):
        raise ProtectedPathError(f"unknown root {item.root!r}")
    target = item.target.strip("/")
    if ".." in target.split("/") or not target:
        raise ProtectedPathError(f"target {item.target!r} is not a plain relative path")
    for rel in [target, *item.files]:
        if item.root == "storage" and any(
            rel == p.rstrip("/") or rel.startswith(p) for p in policies.protected
        ):
            raise ProtectedPathError(f"retention may not delete protected path {rel!r}")
    for rel in item.files:
        if not rel.startswith(target + "/") or ".." in rel.split("/"):
            raise ProtectedPathError(f"{rel!r} lies outside the deletion's target {target!r}")
        if item.root == "storage" and rel.startswith(layout.lancedb_root() + "/"):
            raise ProtectedPathError(f"{rel!r}: LanceDB files are only removed through LanceDB")
        if rel.rsplit("/", 1)[-1] == TOMBSTONE:
            raise ProtectedPathError(f"{rel!r}: a tombstone is the record of an expiry")
    if item.versions and item.policy != "lancedb":
        raise ProtectedPathError("only the lancedb policy removes table versions")
