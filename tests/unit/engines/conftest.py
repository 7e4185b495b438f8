"""Engine tests keep their compiled-module cache in a temporary folder, never the node's."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmvisor.engines.module_cache import CACHE_DIR_ENV


@pytest.fixture(autouse=True)
def private_module_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "module-cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(folder))
    return folder
