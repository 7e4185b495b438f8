"""WASMVISOR_CONTAINERD picks the containerd lines the e2e suite runs against (tests/e2e/versions.py)."""

from __future__ import annotations

import pytest

from tests.e2e.versions import CUSTOM, selected_lines


def test_default_is_the_system_containerd_1_6() -> None:
    assert selected_lines({}) == ["1.6"]


def test_all_and_lists_select_lines_in_release_order() -> None:
    assert selected_lines({"WASMVISOR_CONTAINERD": "all"}) == ["1.6", "1.7", "2.1"]
    assert selected_lines({"WASMVISOR_CONTAINERD": "2.1,1.7"}) == ["1.7", "2.1"]


def test_a_bin_dir_override_replaces_the_selection() -> None:
    env = {"WASMVISOR_CONTAINERD": "all", "WASMVISOR_CONTAINERD_BIN_DIR": "/opt/containerd/bin"}
    assert selected_lines(env) == [CUSTOM]


def test_an_unknown_line_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: 1.6, 1.7, 2.1, all"):
        selected_lines({"WASMVISOR_CONTAINERD": "1.5"})
