"""Version information of wasmvisor (the shim's `-v`, `wasmvisor version`, ConnectResponse)."""

from __future__ import annotations

import os

NAME = "wasmvisor"
VERSION = "0.1.0"


def revision() -> str:
    """The git revision the package was installed from, or "unknown"."""
    import subprocess  # here, not at the top: `import wasmvisor` is on the shim's `start` path

    here = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    if not os.path.exists(os.path.join(here, ".git")):
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=2, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def version_text(binary: str = NAME) -> str:
    """The human-readable lines printed by `-v` and `wasmvisor version`."""
    return f"{binary}:\n  Version: {VERSION}\n  Revision: {revision()}\n"
