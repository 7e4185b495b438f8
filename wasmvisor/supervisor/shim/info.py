"""The shim's `-info`: the `containerd.types.RuntimeInfo` that containerd 2.x reads from a shim's stdout.

containerd (core/runtime/v2 TaskManager.PluginInfo) runs `<shim> -info` with the runtime options, a
serialized `google.protobuf.Any` or nothing, on stdin, for the introspection API's PluginInfo (`ctr
plugins inspect-runtime`) and to validate a spec with idmapped mounts. Answered as runc's shim answers
it (cmd/containerd-shim-runc-v2/manager Info): the runtime's name, version and revision, the options
echoed back when their type is one wasmvisor takes (another type is an error, as in runc's), and the OCI
features document as a JSON Any, which the worker prints (worker/features.py) as `runc features` prints
runc's. When that fails the features are left out and the rest is still answered, as runc's shim does.
"""

from __future__ import annotations

import logging
import subprocess
import sys

from google.protobuf.any_pb2 import Any as AnyPb

from wasmvisor.errors import InvalidArgument
from wasmvisor.proto.containerd.types import introspection_pb2 as pb
from wasmvisor.supervisor.tasks import runtime_options
from wasmvisor.version import VERSION, revision

log = logging.getLogger(__name__)

FEATURES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/features/Features"
"""The type URL containerd registers for the runtime-spec's features.Features (a JSON value)."""
FEATURES_COMMAND = (sys.executable, "-I", "-m", "wasmvisor.worker.features")
FEATURES_TIMEOUT = 30.0


def runtime_name(name: str) -> str:
    """`wasmvisor` -> `io.containerd.wasmvisor.v1`, the runtime name the binary answers to."""
    return f"io.containerd.{name}.v1"


def read_options(data: bytes) -> AnyPb | None:
    """The runtime options from `-info`'s stdin: None when there are none; an Any of a type wasmvisor does
    not take is an InvalidArgument naming the type."""
    if not data:
        return None
    options = AnyPb()
    try:
        options.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise InvalidArgument(f"runtime options on stdin: not a protobuf Any ({exc})") from exc
    if not options.type_url and not options.value:
        return None
    runtime_options.check(options.type_url, "stdin")
    return options


def features_json() -> bytes | None:
    """The worker's OCI features document, or None (logged) when it cannot be had."""
    try:
        done = subprocess.run(FEATURES_COMMAND, capture_output=True, timeout=FEATURES_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("runtime features: %s failed: %s", " ".join(FEATURES_COMMAND), exc)
        return None
    if done.returncode != 0:
        log.warning("runtime features: %s exited %d: %s", " ".join(FEATURES_COMMAND), done.returncode,
                    done.stderr.decode(errors="replace").strip())
        return None
    return done.stdout


def runtime_info(name: str, stdin: bytes, features: bytes | None) -> pb.RuntimeInfo:
    """The RuntimeInfo of the runtime `name` for the options in `stdin`, with `features` (JSON) if given."""
    info = pb.RuntimeInfo(name=runtime_name(name), version=pb.RuntimeVersion(version=VERSION, revision=revision()))
    options = read_options(stdin)
    if options is not None:
        info.options.CopyFrom(options)
    if features is not None:
        info.features.CopyFrom(AnyPb(type_url=FEATURES_TYPE_URL, value=features))
    return info


def run(name: str) -> int:
    """`-info`: read the options on stdin, write the serialized RuntimeInfo on stdout."""
    stdin = sys.stdin.buffer.read()
    read_options(stdin)  # a bad stdin fails before the features are asked for
    data = runtime_info(name, stdin, features_json()).SerializeToString()
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0
