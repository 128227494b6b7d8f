"""Environment defaults of the embedded deployment (DESIGN.md, "Environment").

Plain Python on purpose: the `bioscan` command line reads these and must not import Dagster
(`bioscan --help` would pay for it). `bioscan_resources.env.env_or` turns them into resource
config.
"""

from __future__ import annotations

import os
from pathlib import Path


def bioscan_home() -> str:
    return str(Path(os.environ.get("BIOSCAN_HOME", ".bioscan")).absolute())


def default_landing() -> str:
    return os.environ.get("BIOSCAN_LANDING") or f"{bioscan_home()}/landing"


def default_storage() -> str:
    return os.environ.get("BIOSCAN_STORAGE") or f"{bioscan_home()}/storage"
