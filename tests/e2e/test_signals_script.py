"""CI runs scripts/signals.py's checks on the session's containerd (the script also runs alone)."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.containerd import PrivateContainerd
from tests.e2e.ctr import Ctr
from tests.scripts import load_script


def test_signal_script_passes_every_signal_and_pod_check(
    containerd: PrivateContainerd, ctr: Ctr, image: Callable[[str], str]
) -> None:
    script = load_script("signals")
    results = script.check_all(ctr, image("sleep"), prefix="sigs", state_dir=containerd.state)
    failed = [r.line() for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    assert len(results) == len(script.SIGNALS) + 1 + 4
