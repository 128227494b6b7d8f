"""Training checkpoints: per run keep the newest committed steps, delete the older ones."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from bioscan_assets.core.governance.deletion import Deletion
from bioscan_assets.core.governance.listing import modified_at
from bioscan_assets.core.storage import Store

# `_COMMITTED`: core.tuning.checkpoints' marker of a step copied to storage (named here, not
# imported: that module loads JAX); the others are Orbax's.
_COMMIT_MARKERS = ("_COMMITTED", "_CHECKPOINT_METADATA", "commit_success.txt")


def plan_checkpoints(
    root_store: Store, root_name: str, prefix: str, settings: Mapping[str, Any], now: datetime
) -> list[Deletion]:
    """Training checkpoints: `<prefix>/.../<run>/<step>/` folders, a step being an all-digit
    folder holding a commit marker (`_COMMITTED` in storage, Orbax's `_CHECKPOINT_METADATA`
    locally). Per run the newest `keep_last` committed steps stay (the final checkpoint is the
    newest step); older steps go, marker first, so an interrupted deletion leaves a step without
    marker, which is finished next time. Runs written to within `idle_hours` are left alone: a
    training may be rotating its own checkpoints.
    """
    prefix = prefix.strip("/")
    keep_last = max(int(settings["keep_last"]), 1)
    keep_names = set(settings.get("keep_names") or [])
    idle = timedelta(hours=float(settings.get("idle_hours", 24)))
    sizes = root_store.list_sizes(prefix)
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for rel in sizes:
        parts = rel.split("/")
        if len(parts) >= 3 and parts[-1] in _COMMIT_MARKERS and parts[-2].isdigit():
            runs.setdefault("/".join(parts[:-2]), {})
    for rel, size in sizes.items():
        for run, steps in runs.items():
            if not rel.startswith(run + "/"):
                continue
            name, _, rest = rel[len(run) + 1 :].partition("/")
            if name.isdigit() and rest and name not in keep_names:
                entry = steps.setdefault(int(name), {"folder": f"{run}/{name}", "files": {}})
                entry["files"][rel] = size
                if rest in _COMMIT_MARKERS:
                    entry["marker"] = rel
    out = []
    for run, steps in sorted(runs.items()):
        committed = sorted(step for step, entry in steps.items() if entry.get("marker"))
        if not committed:
            continue
        newest = steps[committed[-1]]
        touched = modified_at(root_store, newest["marker"])
        if touched is None or now - touched < idle:
            continue
        kept = committed[-keep_last:]
        for step in sorted(steps):
            entry = steps[step]
            if step in kept or step > committed[-1]:
                continue  # kept, or a newer step still being written
            files = sorted(entry["files"])
            marker = entry.get("marker")
            ordered = ([marker] if marker else []) + [r for r in files if r != marker]
            why = (
                f"step {step} of {run}: the newest {keep_last} committed step(s) {kept} are kept"
                if marker
                else f"step {step} of {run} has no commit marker (an interrupted save or "
                "deletion) and a newer step is committed"
            )
            out.append(
                Deletion(
                    policy="checkpoints",
                    root=root_name,
                    target=entry["folder"],
                    files=tuple(ordered),
                    bytes=sum(entry["files"].values()),
                    reason=why,
                    asset="lora_adapter",
                    details=(("step", step), ("kept_steps", kept)),
                )
            )
    return out
