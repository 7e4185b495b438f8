"""The container process's identity and privileges from the spec's `process` (STUB: being written)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def apply_identity(process: Mapping[str, Any]) -> None:
    """Apply `process.rlimits`, `umask`, `user` (additionalGids, gid, uid), `capabilities` and
    `noNewPrivileges` to the calling process. Called once, after pivot_root. STUB: no-op."""
