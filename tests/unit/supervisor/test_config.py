"""Config: the settings a custom shim passes to shim_main, immutable and compared by value."""

from __future__ import annotations

import pytest

from wasmvisor.supervisor.config import Config


def test_defaults_keywords_and_positions() -> None:
    assert (Config().no_setup_logger, Config().default_log_level) == (False, "info")
    assert Config(True, "debug") == Config(no_setup_logger=True, default_log_level="debug")
    assert Config() != Config(default_log_level="warn")
    assert hash(Config()) == hash(Config(False, "info"))
    assert repr(Config()) == "Config(no_setup_logger=False, default_log_level='info')"


def test_a_config_cannot_be_changed() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.default_log_level = "debug"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        del config.no_setup_logger
