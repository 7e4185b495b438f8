"""What `start` answers containerd: a plain `unix://` address, or the JSON bootstrap of version 3.

The protocol is chosen by `WASMVISOR_PROTOCOL` in the shim's environment (containerd passes its own
environment on; containerd 2.x also adds the `env` list of `[plugins."io.containerd.shim.v1.manager"]`):

- `ttrpc` (default): plain address, Task API `containerd.task.v2.Task` over ttrpc, on every line.
- `ttrpc-v3`: on containerd 2.x, `{"version":3,"address":"unix://…","protocol":"ttrpc"}`, so that
  containerd calls `containerd.task.v3.Task` over ttrpc.
- `grpc`: on containerd 2.x, `{"version":3,"address":"/plain/path","protocol":"grpc"}`; the supervisor
  serves `containerd.task.v3.Task` over gRPC.

A sandbox (containerd 2.x's shim sandboxer: the bundle lies under
`io.containerd.sandbox.controller.v1.shim`) is always answered with version 3 over ttrpc, unless gRPC is
asked for: containerd then runs no `start` for the pod's containers and reuses this supervisor (protocol
reference, 1.9 and 5.1). A containerd 2.3 that sent BootstrapParams on stdin (bootstrap_params.py) is
answered in JSON even for version 2.

JSON goes only to a containerd that accepts version 3: 1.6 reads any answer as a socket path and 1.7
rejects version 3. 1.6 sets none of GRPC_ADDRESS/NAMESPACE/MAX_SHIM_VERSION, so it is recognised
without running anything; otherwise `<publish-binary> --version` tells 1.7 from 2.x (the answer is
cached per binary, keyed by its path, size and mtime). When the line cannot accept the request, the
answer falls back to the plain address (ttrpc, Task v2), which every line understands. `grpc` on
containerd 2.1.x is answered with `ttrpc-v3` and one warning in the task's log (`avoid_known_bugs`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from wasmvisor.errors import InvalidArgument
from wasmvisor.linux.files import write_atomic
from wasmvisor.supervisor.shim.bootstrap_params import json_answer

PROTOCOL_ENV = "WASMVISOR_PROTOCOL"
PROTOCOLS = ("ttrpc", "ttrpc-v3", "grpc")
VERSION_CACHE_PREFIX = ".wasmvisor-containerd-version-"
VERSION_TIMEOUT = 5.0
"""Seconds to wait for `<publish-binary> --version`."""
_VERSION_RE = re.compile(r"\s[v]?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Bootstrap:
    """How the supervisor serves (`protocol`: ttrpc or grpc) and which bootstrap version it announces."""

    protocol: str = "ttrpc"
    version: int = 2
    """2: the plain address (containerd calls containerd.task.v2.Task); 3: JSON version 3 (task.v3)."""
    json_form: bool = False
    """Version 2 in JSON too (containerd 2.3, which asked with BootstrapParams)."""

    def answer(self, path: str) -> str:
        """The text `start` prints for a supervisor listening on the unix socket `path`."""
        if self.version == 2 and not self.json_form:
            return "unix://" + path
        # containerd dials a gRPC address as a raw path; a ttrpc address keeps its unix:// scheme.
        address = path if self.protocol == "grpc" else "unix://" + path
        return json_answer(self.version, address, self.protocol)


PLAIN = Bootstrap()


def requested_protocol(env: Mapping[str, str]) -> str:
    value = env.get(PROTOCOL_ENV, "").strip().lower() or "ttrpc"
    if value not in PROTOCOLS:
        raise InvalidArgument(f"{PROTOCOL_ENV}={value}: not one of {', '.join(PROTOCOLS)}")
    return value


def choose(requested: str, containerd_major: int | None, *, json_form: bool = False) -> Bootstrap:
    """The bootstrap for `requested` on a containerd of that major version (None: unknown); `json_form`
    when containerd 2.3 asked (BootstrapParams), so that version 2 is answered in JSON as well."""
    if requested == "ttrpc" or containerd_major is None or containerd_major < 2:
        return Bootstrap(json_form=json_form)
    return Bootstrap(protocol="grpc" if requested == "grpc" else "ttrpc", version=3, json_form=json_form)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """`containerd github.com/containerd/containerd/v2 2.1.9+unknown ` -> (2, 1, 9)."""
    match = _VERSION_RE.search(" " + text)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def is_containerd_1_6(env: Mapping[str, str]) -> bool:
    """containerd 1.6 sets none of the variables 1.7 added (protocol reference 1.3)."""
    return not any(env.get(k) for k in ("GRPC_ADDRESS", "NAMESPACE", "MAX_SHIM_VERSION"))


def containerd_version(env: Mapping[str, str], publish_binary: str, cache_dir: str) -> tuple[int, int, int] | None:
    """containerd's version, or None when it cannot be told ((1, 6, 0) for any 1.6: told by its
    environment, without running anything)."""
    if is_containerd_1_6(env):
        return (1, 6, 0)
    if not publish_binary:
        return None
    return _cached_version(publish_binary, cache_dir)


GRPC_DROPPED = ((2, 1, 0), (2, 2, 0))
"""containerd versions (from, before) that drop gRPC shims: 2.1.x. Its connection watcher takes a new
gRPC client connection that is still idle for a closed one and cleans up after a "disconnected"
shim in the middle of Create (seen with 2.1.9: 5 runs of 8 failed, each differently). The version
comes from `<publish-binary> --version`, which names the patch release, so the rule is exact; when
the version cannot be told the answer is the plain address anyway (`choose`)."""
GRPC_BUG = ("containerd 2.1.x drops gRPC shims right after connecting (its connection watcher takes a "
            "new, still idle gRPC connection for a closed one)")


def avoid_known_bugs(requested: str, version: tuple[int, int, int] | None) -> tuple[str, str | None]:
    """The protocol to ask `choose` for on this containerd, and the warning to log when it is not
    `requested`: gRPC on 2.1.x becomes ttrpc with bootstrap version 3 (the same Task v3 API)."""
    if requested == "grpc" and version is not None and GRPC_DROPPED[0] <= version < GRPC_DROPPED[1]:
        found = ".".join(map(str, version))
        return "ttrpc-v3", (f"{PROTOCOL_ENV}=grpc on containerd {found}: serving ttrpc (Task v3) instead: "
                            f"{GRPC_BUG}; 2.2 and later get gRPC")
    return requested, None


def _cached_version(binary: str, cache_dir: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(binary)
    except OSError:
        return None
    key = hashlib.sha256(f"{os.path.abspath(binary)}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:24]
    cache = os.path.join(cache_dir, VERSION_CACHE_PREFIX + key)
    try:
        with open(cache) as f:
            cached = parse_version(f.read())
        if cached:
            return cached
    except OSError:
        pass
    import subprocess  # here: a plain-address `start` never needs it

    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT, stdin=subprocess.DEVNULL
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    version = parse_version(out)
    if version:
        try:
            write_atomic(cache, " {}.{}.{}\n".format(*version).encode(), 0o600)
        except OSError:
            pass
    return version
