"""The shim binary's `-info` as containerd 2.x runs it: options (or nothing) on stdin, a serialized
RuntimeInfo on stdout and exit 0; options it cannot take fail it with one line on stderr."""

from __future__ import annotations

import json
import subprocess
import sys

from google.protobuf.any_pb2 import Any as AnyPb

from wasmvisor.proto.containerd.types import introspection_pb2 as pb

SHIM = [sys.executable, "-m", "wasmvisor.supervisor.shim.main"]


def test_info_with_nothing_on_stdin_prints_a_runtime_info_with_the_workers_features() -> None:
    done = subprocess.run([*SHIM, "-info"], stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    answer = pb.RuntimeInfo.FromString(done.stdout)
    assert answer.name == "io.containerd.wasmvisor.v1"
    assert "pid" in json.loads(answer.features.value)["linux"]["namespaces"]
    assert done.stderr == b""


def test_info_with_another_runtimes_options_exits_1_with_one_line() -> None:
    options = AnyPb(type_url="containerd.runhcs.v1.Options").SerializeToString()
    done = subprocess.run([*SHIM, "-info"], input=options, capture_output=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stdout == b""
    assert done.stderr.decode().count("\n") == 1
    assert "containerd.runhcs.v1.Options" in done.stderr.decode()
