"""Version information of wasmvisor (the shim's `-v`, `wasmvisor version`, ConnectResponse)."""

from __future__ import annotations

import subprocess
from pathlib import Path

NAME = "wasmvisor"
VERSION = "0.1.0"


def revision() -> str:
    """The git revision the package was installed from, or "unknown"."""
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=2, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def version_text(binary: str = NAME) -> str:
    """The human-readable lines printed by `-v` and `wasmvisor version`."""
    return f"{binary}:\n  Version: {VERSION}\n  Revision: {revision()}\n"
