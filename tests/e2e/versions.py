"""The containerd lines the e2e suite runs against, and where each one's binaries come from.

1.6 is the system's (apt, bookworm, /usr/bin); 1.7 and 2.1 are the trixie and sid .debs that
scripts/fetch_containerd.sh unpacks under <repo>/_work/containerd/. `WASMVISOR_CONTAINERD` picks the
lines (`1.6`, `2.1`, `1.7,2.1`, `all`; default 1.6, CI sets `all`); `WASMVISOR_CONTAINERD_BIN_DIR`
overrides all of that with one build of your own.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.containerd import BIN_DIR_ENV, ContainerdBinaries

REPO = Path(__file__).resolve().parents[2]
SELECT_ENV = "WASMVISOR_CONTAINERD"
FETCH_SCRIPT = REPO / "scripts" / "fetch_containerd.sh"


@dataclass(frozen=True)
class ContainerdLine:
    """One containerd release line under test: `name` as in test ids (`1.7`), `version` as fetched."""

    name: str
    version: str
    fetched: bool
    """True when scripts/fetch_containerd.sh provides it (else it is the system's /usr/bin)."""

    def bin_dir(self) -> Path:
        if not self.fetched:
            return Path("/usr/bin")
        return REPO / "_work" / "containerd" / self.version / "usr" / "bin"

    def binaries(self) -> ContainerdBinaries:
        """This line's binaries, fetching them first when they are not there yet (idempotent)."""
        if self.fetched and not (self.bin_dir() / "containerd").exists():
            subprocess.run(["bash", str(FETCH_SCRIPT), self.version], check=True, stdout=subprocess.DEVNULL)
        return ContainerdBinaries(self.bin_dir())


LINES = {
    "1.6": ContainerdLine("1.6", "1.6.20", fetched=False),
    "1.7": ContainerdLine("1.7", "1.7.24", fetched=True),
    "2.1": ContainerdLine("2.1", "2.1.9", fetched=True),
}
CUSTOM = "custom"


def selected_lines(env: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """The line names chosen by the environment, in release order (`custom` for a bin dir override)."""
    if env.get(BIN_DIR_ENV):
        return [CUSTOM]
    raw = env.get(SELECT_ENV, "").strip() or "1.6"
    if raw == "all":
        return list(LINES)
    names = [part.strip() for part in raw.replace(" ", ",").split(",") if part.strip()]
    unknown = [n for n in names if n not in LINES]
    if unknown:
        known = ", ".join([*LINES, "all"])
        raise ValueError(f"{SELECT_ENV}={raw}: unknown containerd line(s) {', '.join(unknown)} (known: {known})")
    return [n for n in LINES if n in names]


def binaries_for(name: str) -> ContainerdBinaries:
    return ContainerdBinaries.from_env() if name == CUSTOM else LINES[name].binaries()
