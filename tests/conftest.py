"""Generic test configuration: markers. Fixtures live next to the tests that use them."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
E2E_DIR = TESTS / "e2e"
ORDER = ("unit", "integration", "e2e")
"""Suites in this order: the unit tests fork children from the pytest process itself (tests/unit/worker
/child.py), which they want without the threads that the integration and e2e tests leave behind (gRPC's):
a forked child that dropped a capability then died of glibc's abort in setuid once, after them."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives the shim through a real containerd (needs root)")
    # Run under `nohup` or as a background job of a script, pytest inherits SIGHUP or SIGINT ignored, and
    # so would every process the tests start (an ignored signal stays ignored across exec): tests that
    # send those signals would see them have no effect. The suite's processes start from the defaults.
    for sig in (signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/e2e is end to end: `-m "not e2e"` runs the fast suites alone.
    for item in items:
        if E2E_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=_suite_rank)  # stable: each suite keeps its own order


def _suite_rank(item: pytest.Item) -> int:
    parts = Path(str(item.path)).relative_to(TESTS).parts if TESTS in Path(str(item.path)).parents else ()
    return ORDER.index(parts[0]) if parts and parts[0] in ORDER else len(ORDER)
