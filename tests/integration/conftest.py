"""Fixtures of the supervisor integration tests (see harness.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.harness import Harness, running_harness


@pytest.fixture
def harness() -> Iterator[Harness]:
    if os.geteuid() != 0:
        pytest.skip("the supervisor mounts and signals as root; run the suite as root (CI does)")
    with running_harness("wv-it-") as h:
        yield h
