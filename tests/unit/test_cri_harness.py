"""The pure parts of the CRI test harness (tests/cri): CRI log lines, the node's containerd config
values for 1.x and 2.x, and the exit code of a streamed exec's final status."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cri.logs import CriLogError, LogLine, messages, parse_log
from tests.cri.node import PAUSE_REF, SHIM_SANDBOXER_HANDLER, CriNodeError, cri_config
from tests.cri.streaming import ExecResult, StreamError

LOG = (
    b"2026-12-06T04:11:10.1Z stdout F hello\n"
    b"2026-12-06T04:11:10.2Z stdout P abc\n"
    b"2026-12-06T04:11:10.3Z stderr F oops\n"
    b"2026-12-06T04:11:10.4Z stdout F def\n"
    b"2026-12-06T04:11:10.5Z stdout F \n"
    b"2026-12-06T04:11:10.6Z stdout F still being writ"
)


def test_log_lines_join_partial_pieces_per_stream_and_leave_out_an_unfinished_line() -> None:
    lines = parse_log(LOG)
    assert [(line.stream, line.partial) for line in lines][:3] == [
        ("stdout", False),
        ("stdout", True),
        ("stderr", False),
    ]
    assert messages(lines) == [b"hello", b"oops", b"abcdef", b""]
    assert messages(lines, "stdout") == [b"hello", b"abcdef", b""]


@pytest.mark.parametrize("raw", [b"no fields", b"2026-12-06T04:11:10Z stdin F x", b"2026-12-06T04:11:10Z stdout X x"])
def test_a_line_that_is_not_a_cri_log_line_is_an_error_that_quotes_it(raw: bytes) -> None:
    with pytest.raises(CriLogError, match="not a CRI log line"):
        LogLine.parse(raw)


def test_config_version_2_for_1x_names_the_cri_plugin_tables() -> None:
    values = cri_config(1, cni_bin=Path("/b"), cni_conf=Path("/c"))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    assert values[(cri, "sandbox_image")] == PAUSE_REF
    assert values[(cri, "restrict_oom_score_adj")] is True
    assert values[(f"{cri}.cni", "bin_dir")] == "/b"
    assert values[(f"{cri}.containerd.runtimes.wasmvisor", "runtime_type")] == "io.containerd.wasmvisor.v1"
    assert values[(f"{cri}.containerd.runtimes.runc", "runtime_type")] == "io.containerd.runc.v2"


def test_config_version_3_for_2x_sets_the_sandboxer_of_both_handlers() -> None:
    values = cri_config(2, cni_bin=Path("/b"), cni_conf=Path("/c"), sandboxer="shim")
    runtime = 'plugins."io.containerd.cri.v1.runtime"'
    assert values[('plugins."io.containerd.cri.v1.images".pinned_images', "sandbox")] == PAUSE_REF
    assert values[(f"{runtime}.cni", "bin_dirs")] == ["/b"]
    for handler in ("wasmvisor", "runc"):
        assert values[(f"{runtime}.containerd.runtimes.{handler}", "sandboxer")] == "shim"


def test_2x_also_has_a_wasmvisor_handler_with_the_shim_sandboxer() -> None:
    values = cri_config(2, cni_bin=Path("/b"), cni_conf=Path("/c"))
    table = f'plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{SHIM_SANDBOXER_HANDLER}'
    assert (values[(table, "runtime_type")], values[(table, "sandboxer")]) == ("io.containerd.wasmvisor.v1", "shim")
    assert values[('plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmvisor', "sandboxer")] == "podsandbox"


@pytest.mark.parametrize(("major", "sandboxer"), [(1, "shim"), (2, "vm")])
def test_a_sandboxer_the_line_cannot_use_is_refused(major: int, sandboxer: str) -> None:
    with pytest.raises(CriNodeError, match=f"sandboxer '{sandboxer}'"):
        cri_config(major, cni_bin=Path("/b"), cni_conf=Path("/c"), sandboxer=sandboxer)


def test_a_streamed_exec_status_gives_its_exit_code_or_raises_its_failure() -> None:
    assert ExecResult(status={"status": "Success"}).exit_code == 0
    nonzero = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "4"}]},
    }
    assert ExecResult(status=nonzero).exit_code == 4
    with pytest.raises(StreamError, match="not a wasm module"):
        _ = ExecResult(status={"status": "Failure", "message": "exec /bin/sh: not a wasm module"}).exit_code
