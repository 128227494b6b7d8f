"""Local W&B runs under $BIOSCAN_HOME: synced runs past the age limit, or the oldest ones while
the folder is above its size cap. An offline run that was never synced is never deleted."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bioscan_assets.core.governance.deletion import Deletion
from bioscan_assets.core.governance.listing import modified_at
from bioscan_assets.core.governance.policy import days
from bioscan_assets.core.storage import Store

_RUN_FOLDER = re.compile(r"(offline-)?run-(\d{8}_\d{6})-[A-Za-z0-9]+")


def _run_started(home: Store, folder: str, name: str) -> datetime | None:
    match = _RUN_FOLDER.fullmatch(name)
    if match:
        # W&B names runs in the local time of the machine that ran them.
        return datetime.strptime(match.group(2), "%Y%m%d_%H%M%S").astimezone(UTC)
    return modified_at(home, folder)


def plan_wandb(home: Store, settings: Mapping[str, Any], now: datetime) -> list[Deletion]:
    """Whole run folders, oldest first, files before the `.wandb.synced` marker."""
    root = str(settings["path"]).strip("/")
    runs: dict[str, dict[str, int]] = {}
    for rel, size in home.list_sizes(root).items():
        parts = rel[len(root) + 1 :].split("/")
        for i, part in enumerate(parts[:-1]):
            if _RUN_FOLDER.fullmatch(part):
                runs.setdefault("/".join([root, *parts[: i + 1]]), {})[rel] = size
                break
    total = sum(sum(f.values()) for f in runs.values())
    candidates = []
    for folder, files in runs.items():
        name = folder.rsplit("/", 1)[-1]
        synced = not name.startswith("offline-") or any(r.endswith(".wandb.synced") for r in files)
        started = _run_started(home, folder, name)
        if not synced or started is None or now - started < days(settings.get("min_age_days", 1)):
            continue
        candidates.append((started, folder, files))
    out = []
    max_age, cap = settings.get("max_age_days"), settings.get("max_bytes")
    for started, folder, files in sorted(candidates):
        too_old = max_age is not None and now - started > days(max_age)
        too_big = cap is not None and total > int(cap)
        if not (too_old or too_big):
            continue
        total -= sum(files.values())
        markers = sorted(r for r in files if r.endswith(".wandb.synced"))
        rest = sorted(r for r in files if r not in markers)
        out.append(
            Deletion(
                policy="wandb",
                root="home",
                target=folder,
                files=tuple(rest + markers),  # the synced marker last
                bytes=sum(files.values()),
                reason=f"synced run from {started.isoformat(timespec='seconds')}: "
                + ("older than the limit" if too_old else f"local W&B runs above {cap} bytes"),
            )
        )
    return out
