"""Fixtures of the supervisor integration tests (see harness.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Harness


@pytest.fixture
def harness() -> Iterator[Harness]:
    if os.geteuid() != 0:
        pytest.skip("the supervisor mounts and signals as root; run the suite as root (CI does)")
    base = Path(tempfile.mkdtemp(prefix="wv-it-", dir="/tmp"))
    h = Harness(base)
    try:
        yield h
    finally:
        h.close()
        time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)
