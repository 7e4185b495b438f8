"""CI runs a short soak of scripts/soak.py: fds, mounts, processes and zombies of one supervisor
come back to their starting counts after many task lives (some ended by signals)."""

from __future__ import annotations

from tests.integration.harness import Harness
from tests.scripts import load_script


def test_fifty_cycles_leave_fds_mounts_processes_and_zombies_as_they_were(harness: Harness) -> None:
    before, after, _ = load_script("soak").soak(harness, cycles=50)
    assert after == before
    assert before.zombies == 0
