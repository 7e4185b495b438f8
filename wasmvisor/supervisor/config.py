"""Settings a shim built on wasmvisor passes to `shim_main` (as runwasi's `Config`)."""

from __future__ import annotations


class Config:
    """Immutable settings of a shim binary.

    A plain class rather than a frozen dataclass: the supervisor builds one before it starts the zygote,
    and `dataclasses` (inspect, ast, dis: ~8 ms) would delay that start for every new group.
    """

    __slots__ = ("no_setup_logger", "default_log_level")

    no_setup_logger: bool
    """Leave logging alone (the embedding program configures it)."""
    default_log_level: str
    """Log level when containerd does not pass -debug."""

    def __init__(self, no_setup_logger: bool = False, default_log_level: str = "info") -> None:
        object.__setattr__(self, "no_setup_logger", no_setup_logger)
        object.__setattr__(self, "default_log_level", default_log_level)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Config is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Config is immutable: cannot delete {name!r}")

    def _values(self) -> tuple[bool, str]:
        return (self.no_setup_logger, self.default_log_level)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"Config(no_setup_logger={self.no_setup_logger!r}, default_log_level={self.default_log_level!r})"
