"""Environment defaults of the embedded deployment (DESIGN.md, "Environment")."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import EnvVar


def bioscan_home() -> str:
    return str(Path(os.environ.get("BIOSCAN_HOME", ".bioscan")).absolute())


def default_landing() -> str:
    return os.environ.get("BIOSCAN_LANDING") or f"{bioscan_home()}/landing"


def default_storage() -> str:
    return os.environ.get("BIOSCAN_STORAGE") or f"{bioscan_home()}/storage"


def env_or(name: str, default: str) -> EnvVar | str:
    """`EnvVar(name)` when the variable is set (resolved at run time), else the default."""
    return EnvVar(name) if os.environ.get(name) else default
