"""Resource config from the environment, resolved where the run happens."""

from __future__ import annotations

import os

from dagster import EnvVar


def env_or(name: str, default: str) -> EnvVar | str:
    """`EnvVar(name)` when the variable is set (resolved at run time), else the default."""
    return EnvVar(name) if os.environ.get(name) else default
