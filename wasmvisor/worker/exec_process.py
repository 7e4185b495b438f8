"""An exec process (Task API Exec) as its worker builds it: it joins the namespaces of a running
container's process (setns, as runc exec does), forks once into its pid namespace (the worker
stays outside as the relay, as for the container itself), prepares a native program or a wasm
module found through that process's root (`/proc/PID/root`), joins the mount namespace last,
takes the exec's identity (user, groups, capabilities, no_new_privs, rlimits) and answers `Ready`;
then `StartGuest` runs it (wasmvisor.worker.guest_run), the container's seccomp filter loaded last.

A wasm container's execs are wasm modules only: anything else is refused, naming what was asked.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

from setproctitle import setproctitle

from wasmvisor.engines.base import Entrypoint, GuestError, PreparedGuest, ProgramGuest, RuntimeContext
from wasmvisor.engines.workload import WorkloadOptions, parse_workload
from wasmvisor.errors import InvalidArgument, NotFound
from wasmvisor.ipc.channel import Channel
from wasmvisor.ipc.messages import Configure, Failed, Ready
from wasmvisor.linux import syscalls
from wasmvisor.linux.clone_flags import CLONE_FS
from wasmvisor.spec import load_spec, parse_entrypoint, resolve_in_root
from wasmvisor.worker import confine, identity
from wasmvisor.worker.cgroup_wait import wait_for_cgroup
from wasmvisor.worker.container import warn_unapplied_security_labels
from wasmvisor.worker.guest_run import failure_of, load_engine, no_wasm_terminal, serve_start
from wasmvisor.worker.namespaces import enter_namespaces, fork_container_process
from wasmvisor.worker.native import find_native, prepare_seccomp
from wasmvisor.worker.spec_linux import CLONE_NEWNS, CLONE_NEWPID, Namespace, parse_namespaces
from wasmvisor.worker.stdio import install_stdio, open_stdio

log = logging.getLogger(__name__)

NAMESPACE_FILES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
                   "user": "user", "cgroup": "cgroup", "time": "time"}
"""OCI namespace type -> its file under /proc/PID/ns."""


@dataclasses.dataclass(frozen=True)
class ExecProcess:
    """The OCI `process` of an Exec request, checked."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    raw: Mapping[str, Any]


def parse_process(process: Mapping[str, Any] | None, what: str) -> ExecProcess:
    """The exec's args, env and cwd from its OCI process object; InvalidArgument naming `what`."""
    if not isinstance(process, Mapping):
        raise InvalidArgument(f"{what}: the process spec is missing")
    args, env = process.get("args"), process.get("env") or []
    if not args or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise InvalidArgument(f"{what}: process.args must be a non-empty list of strings")
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise InvalidArgument(f"{what}: process.env must be a list of strings")
    cwd = process.get("cwd") or "/"
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise InvalidArgument(f"{what}: process.cwd {cwd!r} is not an absolute path")
    return ExecProcess(tuple(args), tuple(env), cwd, process)


def container_namespaces(doc: Mapping[str, Any], target_pid: int, own: str = "/proc/self/ns") -> list[Namespace]:
    """The namespaces of the container's process `target_pid` to join: one per type the spec
    gives the container (linux.namespaces, plus the mount, uts and ipc ones always made), found
    under /proc/PID/ns; those this process shares already are left out (joining one's own user
    namespace is an error)."""
    joins = []
    for ns in parse_namespaces(doc):
        name = NAMESPACE_FILES[ns.type]
        path = f"/proc/{target_pid}/ns/{name}"
        if _same_file(path, f"{own}/{name}"):
            continue
        joins.append(Namespace(ns.type, ns.flag, path))
    return joins


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise InvalidArgument(f"namespace {a}: {exc.strerror}") from None
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def serve_exec(config: Configure, channel: Channel, sock_fd: int, log_fd: int) -> int:
    """The exec worker's life after `Configure`; returns its exit code."""
    what = f"exec {config.exec_id!r} in task {config.id}"
    setproctitle(f"wasmvisor-exec {config.namespace}/{config.id}/{config.exec_id}")
    try:
        proc = parse_process(config.exec_process, what)
        spec = load_spec(config.bundle)
        host_root = f"/proc/{config.exec_target_pid}/root"
        if not os.path.exists(host_root):
            raise NotFound(f"{what}: the container's process {config.exec_target_pid} is gone")
        native = find_native(host_root, proc.args[0], proc.env, proc.cwd)
        if native is not None and config.exec_in_wasm:
            raise InvalidArgument(f"exec {proc.args[0]} in wasm container {config.id}: not a wasm module")
        if config.terminal and native is None:
            raise InvalidArgument(no_wasm_terminal(proc.args[0]))
        namespaces = container_namespaces(spec.raw, config.exec_target_pid)
        enter_namespaces([ns for ns in namespaces if ns.flag != CLONE_NEWNS])
        wait_for_cgroup(channel, config)  # before the exec's process exists
        pid = os.getpid()
        if any(ns.flag == CLONE_NEWPID for ns in namespaces):
            # Only children enter a pid namespace: this worker stays outside as the relay.
            pid = fork_container_process(f"wasmvisor-init {config.namespace}/{config.id}/{config.exec_id}",
                                         close_in_relay=(sock_fd,))
        seccomp = (spec.raw.get("linux") or {}).get("seccomp")
        guest: PreparedGuest | None = None
        options = WorkloadOptions()
        if native is not None:
            prepare_seccomp(seccomp)
        else:
            options = parse_workload(spec.annotations)
            guest = _prepare_wasm(config, proc, host_root, spec.memory_limit, options)
        install_stdio(open_stdio(config), log_fd)
        mount = [ns for ns in namespaces if ns.flag == CLONE_NEWNS]
        if mount:
            # wasmtime's compile threads share this thread's root and cwd, and setns refuses a
            # mount namespace to a process whose fs is shared: this thread takes its own first.
            syscalls.unshare(CLONE_FS)
            enter_namespaces(mount)  # root and cwd become the container's root
        else:
            os.chroot(host_root)
        warn_unapplied_security_labels(proc.raw)
        # A wasm exec is confined as its container's guest is (worker/confine.py): the container's
        # mount namespace already hides /proc and /sys; no capability, no_new_privs; the filter at start.
        identity.apply_identity(proc.raw if guest is None else confine.confined_process(proc.raw))
    except Exception as exc:
        status, message = failure_of(exc)
        log.error("exec failed: %s", message)
        channel.send(Failed(code=status, message=message))
        return 1
    channel.send(Ready(pid=pid))
    log.debug("exec ready: %s (%s)", proc.args[0], native or "wasm")
    at_start = None if guest is None else confine.at_start(
        channel, log_fd, options.time_limit_s, proc.args[0], seccomp_filter=not isinstance(guest, ProgramGuest))
    return serve_start(channel, pid, native, guest, (proc.args, proc.env, proc.cwd), seccomp, set(), at_start)


def _prepare_wasm(config: Configure, proc: ExecProcess, host_root: str, memory_limit: int | None,
                  options: WorkloadOptions) -> PreparedGuest:
    """Load and compile the exec's module (`path` or `path#func` in the container's root), before
    the mount namespace is joined: the module cache is the host's."""
    path, func = parse_entrypoint(proc.args[0])
    kind = "wasm container" if config.exec_in_wasm else "container"
    try:
        host_path = resolve_in_root(host_root, path, proc.cwd)
    except InvalidArgument as exc:
        raise InvalidArgument(f"exec {proc.args[0]} in {kind} {config.id}: {exc}") from None
    ctx = RuntimeContext(
        args=proc.args, envs=proc.env, cwd=proc.cwd,
        entrypoint=Entrypoint(name=os.path.splitext(os.path.basename(path))[0], source=path,
                              host_path=host_path, func=func),
        root=host_root, memory_limit=memory_limit, options=options,
    )
    engine = load_engine(config.engine)
    try:
        engine.can_handle(ctx)
    except (GuestError, NotFound, InvalidArgument) as exc:
        reason = "not a wasm module" if config.exec_in_wasm else "not an executable or a wasm module"
        raise InvalidArgument(f"exec {proc.args[0]} in {kind} {config.id}: {reason} ({exc})") from None
    return engine.prepare(dataclasses.replace(ctx, root="/"))

