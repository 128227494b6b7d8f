"""Errors shared by every sub-system; each names the file and the field or line at fault."""

from __future__ import annotations


class DropError(ValueError):
    """A drop that breaks the contract. `location` names the file and the field or line."""

    def __init__(self, location: str, reason: str):
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason
