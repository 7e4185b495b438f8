"""`start`'s side of the node's supervisor template (template.py): find it, or launch it, and ask it
for a new group's supervisor.

Only the slow path of `start` (no live supervisor for the group) comes here, under the socket
directory's lock, so two `start`s never launch two templates. The template's socket is named by a
hash of containerd's address, the shim's command and a stamp of the wasmvisor code on disk, so a
template never serves another containerd, another shim built on wasmvisor, or code older than the
files (an upgraded or edited install gets a new template; the old one exits when idle).

Every failure returns None, and `start` spawns the supervisor as a new interpreter instead: the
template only ever makes a start faster, never fails one.
"""

from __future__ import annotations

import _socket
import os
import sys

from wasmvisor.supervisor.shim.template_protocol import encode_request

TYPE_CHECKING = False  # `start` imports this module: no typing
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

TEMPLATE_ENV = "WASMVISOR_TEMPLATE"
"""`0` (in containerd's environment): never use a template; every new group spawns its supervisor."""
PREFIX = "wasmvisor-template-"
REPLY_TIMEOUT = 30.0
"""Seconds to wait for the template's answer: a template just launched answers after its preload
(~0.3 s here; longer on a loaded node)."""


def enabled(environ: Mapping[str, str]) -> bool:
    return environ.get(TEMPLATE_ENV, "1") not in ("0", "false", "no", "off")


def code_stamp(root: str) -> str:
    """Changes whenever a module of the package folder `root` is edited, added or removed."""
    newest = count = 0
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith((".py", ".so")):
                try:
                    newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime_ns)
                except OSError:
                    continue
                count += 1
    return f"{newest}.{count}"


def template_path(directory: str, address: str, command: Sequence[str], stamp: str) -> str:
    """`<directory>/wasmvisor-template-<32 hex>`: one template per containerd, shim command and code."""
    from wasmvisor.supervisor.shim.fastload import sha256

    key = "\0".join([address, *command, stamp]).encode()
    return os.path.join(directory, PREFIX + sha256(key).hexdigest()[:32])


def connect(path: str) -> _socket.socket | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def request(sock: _socket.socket, argv: Sequence[str], env: Mapping[str, str], cwd: str,
            listen_fd: int | None, timeout: float = REPLY_TIMEOUT) -> int:
    """Send one request and return the new supervisor's pid. OSError or ValueError on any failure.

    The answer is one line: `pid N`, or `error MESSAGE`."""
    data = encode_request(argv, env, cwd)
    sock.settimeout(timeout)
    ancillary = []
    if listen_fd is not None:
        ancillary = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, listen_fd.to_bytes(4, sys.byteorder))]
    sent = sock.sendmsg([data], ancillary)
    if sent < len(data):
        sock.sendall(data[sent:])
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ValueError("the template closed the connection without an answer")
        reply += chunk
    word, _, rest = reply.strip().partition(b" ")
    if word == b"pid" and rest.isdigit() and int(rest) > 0:
        return int(rest)
    if word == b"error":
        raise ValueError(f"the template refused: {rest.decode(errors='replace')}")
    raise ValueError(f"the template answered {reply[:200]!r}")


def launch_supervisor(*, directory: str, address: str, command: Sequence[str], serve_argv: Sequence[str],
                      listen_fd: int | None, package_root: str,
                      spawn: Callable[[Sequence[str], int | None], int],
                      bind: Callable[[str], object]) -> int | None:
    """Have the template fork the supervisor that `command + serve_argv` would start; its pid, or None.

    Launches the template first when none serves (`bind(path)` binds its socket, `spawn(argv, fd)`
    starts it detached with that socket as fd 3); the request then waits in the socket's backlog
    until the template has done its preload.
    """
    if not enabled(os.environ):
        return None
    try:
        path = template_path(directory, address, command, code_stamp(package_root))
        sock = connect(path)
        if sock is None:
            listener = bind(path)
            if listener is not None:
                try:
                    # `start`'s parent is containerd: the template serves it and ends with it.
                    spawn([*command, "-address", address, "-socket", path, "-socket-fd", "3",
                           "-containerd-pid", str(os.getppid()), "template"],
                          listener.fileno())  # type: ignore[attr-defined]
                finally:
                    listener.close()  # type: ignore[attr-defined]
            sock = connect(path)
            if sock is None:
                return None
        try:
            return request(sock, serve_argv, os.environ, os.getcwd(), listen_fd)
        finally:
            sock.close()
    except (OSError, ValueError):
        return None
