"""Settings a shim built on wasmvisor passes to `shim_main` (as runwasi's `Config`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    no_setup_logger: bool = False
    """Leave logging alone (the embedding program configures it)."""
    default_log_level: str = "info"
    """Log level when containerd does not pass -debug."""
