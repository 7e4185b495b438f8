"""The `start` action: find or launch the supervisor for this task's group and print its address.

containerd runs `start` in the bundle directory and reads its stdout and stderr together as the
address, so on success we print `unix:///run/containerd/s/<sha256>` (or, when configured and on
containerd 2.x, the JSON bootstrap of version 3: see bootstrap.py) and nothing else. The listening
socket is bound here, in the start process, and handed to the daemon as fd 3: connections that
containerd opens right after we exit wait in the backlog until the daemon accepts them. A gRPC
daemon binds the path itself (grpcio cannot adopt a socket), so `start` waits until it serves.

A running supervisor is reused only with its promise to stay for this task: a claim answered over
its socket (claim.py, lifetime.py). One that is ending refuses, having removed its socket file
already, and `start` launches a new supervisor on the same address.

Fast path: when the group's supervisor already runs and grants the claim (and no bootstrap other
than the plain address is asked for), `start` is one small exchange on the socket and one or two
small file writes, and this module loads only modules that cost nothing (`os`, `_socket`, the
built-in sha256), not even `socket`, `hashlib`, `json` (unless config.json carries the pod
annotation), `enum` or `typing`. Everything else (locking, binding, spawning, the bootstrap choice,
errors) is imported on the slow path that launches a supervisor. Measured with `python -X importtime`
and a live socket: see tests/unit/supervisor/shim/test_start_fast_path.py, which keeps it that way.
"""

from __future__ import annotations

import _socket
import os
import sys
import time

from wasmvisor.linux.files import write_atomic
from wasmvisor.supervisor.shim import bootstrap_params, claim
from wasmvisor.supervisor.shim.cliargs import ShimArgs, to_argv
from wasmvisor.supervisor.shim.fastload import loads, sha256

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds here
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import BinaryIO, TextIO

SOCKET_DIR_ENV = "WASMVISOR_SOCKET_DIR"
"""Overrides the socket directory (tests; hosts whose /run is elsewhere)."""
DEFAULT_SOCKET_DIR = "/run/containerd/s"
MAX_SOCKET_PATH = 106
"""Bytes. sun_path holds 108; containerd's runc shim refuses more than 106, and so do we."""
GROUP_ANNOTATION = "io.kubernetes.cri.sandbox-id"
ADDRESS_FILE = "address"
STATE_FILE_MODE = 0o600
LISTEN_FD = 3
RACE_DEADLINE = 2.0
"""Seconds to keep retrying when another process holds the socket path but does not answer."""
CLAIM_ATTEMPTS = 3
"""Claims sent before a server that closes without answering is judged by `is_serving` alone."""
GRPC_BIND_DEADLINE = 15.0
"""Seconds `start` waits for a gRPC supervisor to bind its socket (grpcio cannot adopt our fd)."""
PROTOCOL_ENV = "WASMVISOR_PROTOCOL"
"""bootstrap.PROTOCOL_ENV, restated so that the fast path need not import bootstrap (unset: plain)."""
PLAIN_SCHEME = "unix://"
"""bootstrap.PLAIN answers `unix://<path>`."""


class Started:
    """What `run` did: the address printed, and the daemon's pid if it launched one."""

    __slots__ = ("address", "daemon_pid")

    def __init__(self, address: str, daemon_pid: int | None) -> None:
        self.address = address
        self.daemon_pid = daemon_pid

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Started):
            return NotImplemented
        return (self.address, self.daemon_pid) == (other.address, other.daemon_pid)

    def __repr__(self) -> str:
        return f"Started(address={self.address!r}, daemon_pid={self.daemon_pid!r})"


def group_of(bundle: str, task_id: str) -> str:
    """The group key: the CRI pod sandbox id from config.json's annotations, else the task id.

    A missing or malformed config.json is not an error here (sandbox bundles on containerd 2.x have
    none); the task simply gets its own supervisor. When the annotation's name is not in the file at
    all, nothing is parsed (JSON encoders, Go's included, never escape ASCII letters).
    """
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            raw = f.read()
    except OSError:
        return task_id
    if GROUP_ANNOTATION.encode() not in raw:
        return task_id
    try:
        spec = loads(raw)
    except ValueError:
        return task_id
    annotations = spec.get("annotations") if isinstance(spec, dict) else None
    if isinstance(annotations, dict):
        group = annotations.get(GROUP_ANNOTATION)
        if isinstance(group, str) and group:
            return group
    return task_id


SANDBOX_BUNDLES = "io.containerd.sandbox.controller.v1.shim"
"""The folder of containerd 2.x's shim sandboxer under its state dir: `<state>/<this>/<ns>/<sandbox id>`."""


def is_sandbox_bundle(bundle: str) -> bool:
    """Whether `bundle` is a pod sandbox of containerd 2.x's shim sandboxer (protocol reference, 1.7)."""
    return os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(bundle)))) == SANDBOX_BUNDLES


def socket_dir() -> str:
    return os.environ.get(SOCKET_DIR_ENV) or DEFAULT_SOCKET_DIR


def _go_join(*parts: str) -> str:
    """Go's filepath.Join: join the non-empty parts with "/" and clean the result."""
    joined = os.path.normpath("/".join(p for p in parts if p))
    if joined.startswith("//") and not joined.startswith("///"):
        joined = joined[1:]  # POSIX normpath keeps a leading "//"; Go's Clean does not
    return joined


def socket_path(address: str, namespace: str, group: str, directory: str | None = None) -> str:
    """`<dir>/<hex sha256 of join(address, namespace, group)>`, as containerd's runc shim names it.

    Raises InvalidArgument when the path is longer than a unix socket allows.
    """
    digest = sha256(_go_join(address, namespace, group).encode()).hexdigest()
    path = os.path.join(directory or socket_dir(), digest)
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        from wasmvisor.errors import InvalidArgument

        raise InvalidArgument(
            f"socket path {path} is {size} bytes, longer than the {MAX_SOCKET_PATH} a unix socket allows "
            f"(set {SOCKET_DIR_ENV} to a shorter directory)"
        )
    return path


def shim_command() -> list[str]:
    """The command that runs this shim binary again (the daemon is a re-exec of it).

    A console script or a custom shim's script: `python /abs/path/of/script`. Under `python -m mod`,
    argv[0] is the module's file, which must not be run as a script (its directory would shadow
    packages), so it is `python -m mod`. A frozen binary (PyInstaller) is its own interpreter.
    """
    if getattr(sys, "frozen", False):
        return [sys.executable]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return [sys.executable, "-m", spec.name]
    return [sys.executable, os.path.abspath(sys.argv[0])]


def daemon_command(args: ShimArgs, *, bundle: str, group: str, socket: str,
                   launcher: Sequence[str] | None = None) -> list[str]:
    """The daemon's argv: the shim re-executed with the `serve` action and the listening socket as fd 3."""
    serve_args = args.replace(bundle=bundle, group=group, socket=socket,
                              socket_fd=None if args.protocol == "grpc" else LISTEN_FD, action="serve")
    return [*(launcher if launcher is not None else shim_command()), *to_argv(serve_args), "serve"]


def spawn_daemon(command: Sequence[str], listen_fd: int | None) -> int:
    """Start `command` detached: new session, stdio on /dev/null, `listen_fd` (if any) as fd 3, same cwd and env.

    The daemon must not hold start's stdout/stderr: containerd reads them to EOF. Returns its pid
    (nobody waits for it: when `start` exits it is re-parented).
    """
    import signal

    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = []
    if listen_fd is not None:
        os.set_inheritable(listen_fd, True)  # for the fd == 3 case, where dup2 alone keeps FD_CLOEXEC
    if listen_fd is not None and listen_fd != LISTEN_FD:
        actions.append((os.POSIX_SPAWN_DUP2, listen_fd, LISTEN_FD))
    actions += [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    return os.posix_spawn(
        command[0], list(command), os.environ,
        file_actions=actions,
        setsid=True,
        setsigmask=(),
        # Python ignores these at startup and ignored signals survive exec.
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
    )


def _lock(directory: str) -> int:
    """Serialize starts that share a socket directory: flock on the directory itself.

    Returns the fd; closing it releases the lock. It is close-on-exec, so the daemon never holds it.
    """
    import fcntl

    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_serving(path: str, timeout: float = 1.0) -> bool:
    """Whether something accepts connections on the unix socket `path`."""
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    probe.settimeout(timeout)
    try:
        probe.connect(path)
    except TimeoutError:
        return True  # listening, with a full backlog: alive but busy
    except OSError:
        return False
    finally:
        probe.close()
    return True


def stays(path: str, task_id: str, protocol: str = "ttrpc") -> bool:
    """Whether `start` may answer with the supervisor listening on `path`: it granted the claim for
    `task_id`, or it serves without answering claims (an older wasmvisor; a full backlog), as
    every live supervisor was reused before claims. False: nothing listens there, or the supervisor
    refused because it is ending (its socket file is gone already), and a new one must be launched.
    """
    ask = claim.ask_grpc if protocol == "grpc" else claim.ask
    for _ in range(CLAIM_ATTEMPTS):
        answer = ask(path, task_id)
        if answer in (claim.GRANTED, claim.SILENT, claim.OTHER):
            return True
        if answer in (claim.REFUSED, claim.ABSENT):
            return False
        # GARBLED: perhaps a supervisor that closed its connections as it ended; its file is gone by
        # then, so the next attempt reaches the path's current owner, if any.
    return is_serving(path)  # a server of another protocol never answers a claim


def bind_unless_served(path: str, served: Callable[[str], bool] = is_serving,
                       deadline: float = RACE_DEADLINE) -> _socket.socket | None:
    """Bind and listen on `path`, or return None if `served(path)` says a live server there is to be used.

    A path that is not served is a stale socket of a dead server, or none: it is removed. A
    concurrent `start` that binds between our unlink and bind makes ours fail with EADDRINUSE; we
    then go round again and ask the server it launched.
    """
    import errno

    give_up = time.monotonic() + deadline
    while True:
        if served(path):
            return None
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            from wasmvisor.errors import InvalidArgument

            raise InvalidArgument(f"socket path {path} is a directory") from None
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        # Created 0600 from the start (the chmod below only restates it): no other user can
        # connect in the moment between bind and chmod. `start` is one short-lived thread.
        umask = os.umask(0o177)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            if time.monotonic() > give_up:
                from wasmvisor.errors import Unavailable

                raise Unavailable(f"socket {path} is in use but does not accept connections") from None
            time.sleep(0.01)
            continue
        finally:
            os.umask(umask)
        try:
            os.chmod(path, 0o600)
            sock.listen(128)
        except BaseException:
            sock.close()
            os.unlink(path)
            raise
        return sock


def wait_until_serving(path: str, pid: int, deadline: float = GRPC_BIND_DEADLINE) -> None:
    """Wait until the daemon `pid` accepts connections on `path`; Unavailable if it exits or times out."""
    from wasmvisor.errors import Unavailable

    give_up = time.monotonic() + deadline
    while not is_serving(path, timeout=0.5):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            raise Unavailable(f"the shim daemon exited (status {status:#x}) before serving on {path}")
        if time.monotonic() > give_up:
            raise Unavailable(f"the shim daemon did not serve on {path} within {deadline:.0f}s")
        time.sleep(0.005)


def read_options(stdin: BinaryIO) -> bytes:
    """The runtime-options bytes containerd wrote on stdin (empty when none, or stdin is a terminal)."""
    try:
        if os.isatty(stdin.fileno()):
            return b""
    except (OSError, ValueError):
        pass
    try:
        return stdin.read() or b""
    except (OSError, ValueError):
        return b""


def run(args: ShimArgs, *, stdin: BinaryIO | None = None, stdout: TextIO | None = None,
        launcher: Sequence[str] | None = None) -> Started:
    """The `start` action. The bundle is the working directory. Prints the address on `stdout`.

    `launcher` replaces the command that re-executes the shim (tests start a fake daemon with it).
    """
    bundle = os.getcwd()
    # containerd 1.7+ also passes these in the environment; they fill in missing flags.
    args = args.replace(
        address=args.address or os.environ.get("GRPC_ADDRESS", ""),
        namespace=args.namespace or os.environ.get("NAMESPACE", ""),
    )
    # containerd 1.6-2.2 write the runtime options (an Any) on stdin, containerd 2.3 its BootstrapParams
    # (bootstrap_params.py). No field of the options is used yet (the Task API's Create checks their
    # type), but stdin is read whole so that containerd's write never waits.
    params = bootstrap_params.parse(read_options(stdin if stdin is not None else sys.stdin.buffer),
                                    args.id, args.namespace)
    if params is not None:
        args = args.replace(address=args.address or params.grpc_address,
                            publish_binary=args.publish_binary or params.binary)
    group = group_of(bundle, args.id)
    directory = socket_dir()
    path = socket_path(args.address, args.namespace, group, directory)
    sandbox = is_sandbox_bundle(bundle)
    pid = None
    if not os.environ.get(PROTOCOL_ENV) and not sandbox and stays(path, args.id):
        # Fast path: the group's supervisor runs, has promised to stay for this task, and the answer
        # is the plain address (in JSON for 2.3). No lock is needed to reuse a server; only launching
        # one must be serialized.
        address = ttrpc_answer(path, sandbox=False, json_form=params is not None)
    else:
        address, pid = _reuse_or_launch(args, bundle=bundle, group=group, directory=directory, path=path,
                                        launcher=launcher, sandbox=sandbox, json_form=params is not None)
    # Mode 0600: what the shim keeps in a bundle is for containerd alone, which runs as root.
    write_atomic(os.path.join(bundle, ADDRESS_FILE), address.encode(), STATE_FILE_MODE)
    out = stdout if stdout is not None else sys.stdout
    out.write(address)
    out.flush()
    return Started(address=address, daemon_pid=pid)


def _reuse_or_launch(args: ShimArgs, *, bundle: str, group: str, directory: str, path: str,
                     launcher: Sequence[str] | None, sandbox: bool = False,
                     json_form: bool = False) -> tuple[str, int | None]:
    """Under the socket directory's lock: reuse the group's live supervisor (if it grants the claim) or launch one.

    `sandbox`: the bundle is a sandbox of containerd 2.x's shim sandboxer (answered with version 3);
    `json_form`: containerd 2.3 asked with BootstrapParams (answered in JSON). Returns the answer for
    containerd and the new daemon's pid (None when one was reused).
    """
    os.makedirs(directory, mode=0o700, exist_ok=True)
    protocol = "ttrpc"
    boot = None
    warning = None
    if os.environ.get(PROTOCOL_ENV):  # bootstrap (dataclasses, hashlib, json: ~15 ms) only when asked
        from wasmvisor.supervisor.shim import bootstrap

        requested = bootstrap.requested_protocol(os.environ)
        if sandbox and requested == "ttrpc":
            requested = "ttrpc-v3"  # the shim sandboxer reuses the supervisor for the pod's tasks only on v3
        if requested != "ttrpc" or json_form:
            # The shim sandboxer and BootstrapParams exist only on containerd 2.x: its version is asked only
            # for gRPC (2.1.x is served ttrpc instead) or to tell 1.x from 2.x.
            version = None
            if requested == "grpc" or not (sandbox or json_form):
                version = bootstrap.containerd_version(os.environ, args.publish_binary, directory)
                requested, warning = bootstrap.avoid_known_bugs(requested, version)
            major = 2 if sandbox or json_form else (version[0] if version else None)
            boot = bootstrap.choose(requested, major, json_form=json_form)
            protocol = boot.protocol
    pid = None
    lock = _lock(directory)
    try:
        sock = bind_unless_served(path, lambda p: stays(p, args.id, protocol))
        if sock is not None:
            if warning:  # once per supervisor, in the log containerd copies (never on start's stdout)
                from wasmvisor import logs

                logs.write_line(bundle, "warning", warning, instance=args.id, namespace=args.namespace)
            serve_args = args.replace(protocol=protocol if protocol == "grpc" else "")
            command = daemon_command(serve_args, bundle=bundle, group=group, socket=path, launcher=launcher)
            if protocol == "grpc":
                # grpcio binds the path itself: free it, and answer only once the daemon serves.
                sock.close()
                os.unlink(path)
            try:
                if launcher is None and protocol != "grpc":
                    pid = _from_template(args.address, directory, command, sock.fileno())
                if pid is None:
                    pid = spawn_daemon(command, sock.fileno() if protocol != "grpc" else None)
            except OSError as exc:
                if os.path.exists(path):
                    os.unlink(path)
                from wasmvisor.errors import Unavailable

                raise Unavailable(f"cannot run the shim daemon {command[0]}: {exc.strerror}") from exc
            finally:
                sock.close()
            if protocol == "grpc":
                wait_until_serving(path, pid)
    finally:
        os.close(lock)
    return (boot.answer(path) if boot is not None else ttrpc_answer(path, sandbox=sandbox, json_form=json_form)), pid


def ttrpc_answer(path: str, *, sandbox: bool, json_form: bool) -> str:
    """The answer for a ttrpc supervisor on `path` when WASMVISOR_PROTOCOL is unset, without importing
    bootstrap.py: JSON version 3 for a sandbox of the shim sandboxer, JSON version 2 for a containerd 2.3
    that sent BootstrapParams, else the plain address."""
    if sandbox or json_form:
        return bootstrap_params.json_answer(3 if sandbox else 2, PLAIN_SCHEME + path, "ttrpc")
    return PLAIN_SCHEME + path


def _from_template(address: str, directory: str, command: list[str], listen_fd: int) -> int | None:
    """The supervisor forked by the node's template (template_client.py), or None to spawn it."""
    import wasmvisor
    from wasmvisor.supervisor.shim import template_client

    prefix = shim_command()
    if command[:len(prefix)] != prefix:
        return None
    return template_client.launch_supervisor(
        directory=directory, address=address, command=prefix, serve_argv=command[len(prefix):],
        listen_fd=listen_fd, package_root=os.path.dirname(os.path.abspath(wasmvisor.__file__)),
        spawn=spawn_daemon, bind=bind_unless_served,
    )
