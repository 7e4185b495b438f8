"""The worker: one forked process per container; prepares the guest at Create, runs it at Start.

Lifecycle on the pipe to the supervisor (wasmvisor.ipc.messages): read `Configure`, load the
spec, build the container (namespaces, mounts: wasmvisor.worker.container; with a pid namespace the
worker forks and the rest happens in the child), load the engine and the module, open the stdio,
pivot_root, answer `Ready` (or `Failed` and exit 1); wait for `StartGuest` (EOF instead: exit 0
quietly); answer `Started`, run the guest (or exec a native program), answer `Exited` and exit with
the guest's code. A worker killed by a signal cannot answer: the zygote's returncode tells the
supervisor.

Fork discipline: `run` is entered in a child of the zygote and never returns; whatever happens
it ends in `os._exit`. Log lines go to the fd 2 the worker inherited (the supervisor's log, i.e.
containerd's log FIFO), in containerd's `key=value` format, never to the guest's stdio.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import NoReturn

from setproctitle import setproctitle

from wasmvisor import logs
from wasmvisor.engines.base import Entrypoint, PreparedGuest, ProgramGuest, RuntimeContext
from wasmvisor.engines.workload import PREOPENS, WorkloadOptions, parse_workload
from wasmvisor.errors import Internal, InvalidArgument, ShimError
from wasmvisor.ipc import messages
from wasmvisor.ipc.channel import Channel
from wasmvisor.ipc.messages import Configure, Exited, Failed, Ready
from wasmvisor.linux import syscalls
from wasmvisor.linux.fork import close_fds_except, run_child
from wasmvisor.spec import Spec, load_spec, parse_entrypoint, resolve_in_root
from wasmvisor.worker import confine
from wasmvisor.worker.cgroup_wait import wait_for_cgroup
from wasmvisor.worker.container import Container
from wasmvisor.worker.exec_process import serve_exec
from wasmvisor.worker.guest_filter import guest_filter
from wasmvisor.worker.guest_run import exception_line, failure_of, load_engine, no_wasm_terminal, serve_start
from wasmvisor.worker.namespaces import TERMINATING_SIGNALS
from wasmvisor.worker.native import find_native, prepare_seccomp
from wasmvisor.worker.runner_exec import RUNNER_BINARY, RunnerLaunch, runner_launch, runner_present, runner_unusable
from wasmvisor.worker.stdio import install_stdio, open_stdio

__all__ = ["check_sizes", "detach_from_zygote", "failure_of", "load_engine", "open_stdio", "run",
           "runtime_context", "serve"]

log = logging.getLogger("wasmvisor.worker")

GUEST_SIGNALS = TERMINATING_SIGNALS
"""Left at SIG_DFL in the worker: while the guest runs in native code no Python handler could
run anyway, so these end the worker as they would end a native container process (143, 130...)."""

MAX_ARG_STRLEN = 128 * 1024
ARG_MAX = 2 * 1024 * 1024


# The worker's log handler, made once in the zygote (this module is in its preload): a worker that made
# its own would run logging's Formatter and Handler set-up, writing to ~0.1 MB of pages it shares
# with the zygote (Python 3.11 writes to the code objects it runs). A worker gives it its fd and fields.
_LOG_FORMATTER = logs.LogrusFormatter()
_LOG_HANDLER = logs.FdHandler(-1)
_LOG_HANDLER.setFormatter(_LOG_FORMATTER)


def run(sock_fd: int) -> NoReturn:
    """The worker's entry (called in the forked child); `sock_fd` is its end of the pipe. Nothing
    escapes into the zygote's loop: it ends the process."""
    run_child(lambda: serve(sock_fd), on_error=lambda exc: log.error("worker failed: %s", exception_line(exc)))


def serve(sock_fd: int) -> int:
    """The worker's whole life after fork; returns its exit code."""
    # Phase times for the supervisor's trace spans: a clock read each, nothing else (no OTel here).
    begun = time.time_ns()
    detach_from_zygote(keep=(sock_fd,))
    log_fd = _LOG_HANDLER.fd = os.dup(2)
    root = logging.getLogger()
    root.handlers[:] = [_LOG_HANDLER]  # the level stays the supervisor's until Configure says
    channel = Channel(socket.socket(fileno=sock_fd))

    first = channel.receive()
    if first is None:
        return 0
    if not isinstance(first, Configure):
        raise messages.ProtocolError(f"first message is {first.kind!r}, want 'configure'")
    config = first
    setproctitle(f"wasmvisor-worker {config.namespace}/{config.id}")
    _LOG_FORMATTER.fields = {"instance": config.id, "namespace": config.namespace}
    if config.pod:
        _LOG_FORMATTER.fields["pod"] = config.pod
    level = logs.LEVELS.get(config.log_level.lower(), logging.INFO)
    if root.level != level:
        root.setLevel(level)  # which visits every logger of the process, touching its shared page
    if config.exec_id:
        _LOG_FORMATTER.fields["exec"] = config.exec_id
        return serve_exec(config, channel, sock_fd, log_fd)
    log.debug("configure: bundle=%s rootfs=%s engine=%s", config.bundle, config.rootfs, config.engine)
    configured = time.time_ns()
    phases = {"configure": [begun, configured]}

    guest: PreparedGuest | None = None  # read by the PID-1 signal thread (_end_on_signal)
    runner: RunnerLaunch | None = None  # the compiled runner execs in place of the guest's Python run
    time_limit: float | None = None
    try:
        spec = load_spec(config.bundle)
        box = Container.enter(
            spec, config.bundle, config.rootfs or spec.root_path,
            relay_title=f"wasmvisor-init {config.namespace}/{config.id}", close_in_relay=(sock_fd,),
            on_signal=lambda sig: _end_on_signal(channel, guest, sig),
            before_container=lambda: wait_for_cgroup(channel, config),
        )  # with a pid namespace, from here on this is the container process (forked)
        box.build()
        phases["container"] = [configured, time.time_ns()]
        native = find_native(box.root, spec.args[0], spec.env, spec.cwd)
        seccomp = (spec.raw.get("linux") or {}).get("seccomp")
        if native is not None:
            prepare_seccomp(seccomp)  # a bad profile fails Create
        else:
            ctx = runtime_context(config, spec)
            engine = load_engine(config.engine)
            engine.can_handle(ctx)
            loading = time.time_ns()
            guest = engine.prepare(dataclasses.replace(ctx, root="/"))  # the guest runs after pivot_root
            if isinstance(guest, ProgramGuest):
                guest = guest.at_root(box.root)  # a program of the node runs it: no pivot_root
            else:
                guest_filter()  # compiled by the zygote already; a host without libseccomp fails here
                runner = runner_launch(guest, sock_fd, box.guest_signal_mask())
            time_limit = ctx.options.time_limit_s
            phases["module"] = [loading, time.time_ns()]
        sealing = time.time_ns()
        install_stdio(open_stdio(config), log_fd)
        process = spec.raw.get("process") or {}
        if guest is not None:  # the wasm guest's confinement: its steps and their order in worker/confine.py
            confine.hide_system_mounts(box.root)
            process = confine.confined_process(process)
            confine.before_seal(box)
        box.seal(process, pivot=not isinstance(guest, ProgramGuest))
        if guest is not None:
            confine.after_seal(box)
        phases["seal"] = [sealing, time.time_ns()]
    except Exception as exc:
        status, message = failure_of(exc)
        log.error("create failed: %s", message)
        channel.send(Failed(code=status, message=message))
        return 1
    channel.send(Ready(pid=box.pid, phases=phases))
    log.debug("ready: %s (%s)", spec.args[0], native or "wasm")
    at_start = None if guest is None else confine.at_start(
        channel, log_fd, time_limit, spec.args[0], seccomp_filter=not isinstance(guest, ProgramGuest))
    return serve_start(channel, box.pid, native, guest, (spec.args, spec.env, spec.cwd), seccomp,
                       box.guest_signal_mask(), at_start, runner=None if runner is None else _runner_start(runner, box))


def _runner_start(runner: RunnerLaunch, box: Container) -> Callable[[int], None]:
    """The runner's exec, with PID 1's signal thread parked first: a signal that comes meanwhile stays
    queued through the exec and reaches the runner's handlers; one the thread took already ends the
    process here, without the exec. An exec that fails (OSError) hands the signals back."""
    def start(started_ns: int) -> None:
        signals = box.init_signals
        if signals is not None and not signals.park():
            while True:  # the signal thread is ending this process (Exited, then _exit)
                signal.pause()
        try:
            runner.run(started_ns)
        except OSError:
            if signals is not None:
                signals.unpark()
            raise
    return start


def _end_on_signal(channel: Channel, guest: PreparedGuest | None, sig: int) -> None:
    """PID 1 of the container got `sig` (its signal thread calls this, then exits 128 + sig): a
    guest run by a program of its own ends that first (an HTTP server drains its requests)."""
    if isinstance(guest, ProgramGuest):
        guest.stop(sig)
    channel.send(Exited(code=128 + sig, at_ns=time.time_ns()))




def zygote_preload() -> None:
    """Compile the guest's seccomp filter once, in the zygote, for every worker it forks (without
    libseccomp it stays uncompiled: each wasm Create then fails naming the library), and find the
    compiled runner's loader and library folders."""
    try:
        guest_filter()
    except ShimError as exc:
        log.warning("wasm guests cannot be confined: %s", exc.message)
    why = runner_unusable()  # the runner's loader and library folders, for every worker
    if why is not None and runner_present():
        log.warning("wasm runner %s unusable (guests run in Python): %s", RUNNER_BINARY, why)


def detach_from_zygote(keep: tuple[int, ...]) -> None:
    """Undo what the worker inherited from the zygote: its signal dispositions, its parent-death
    signal, its session, and every fd but 0, 1, 2 and `keep` (the log pipe's duplicates, the
    supervisor's sockets of a forked zygote: none of them is the container's business)."""
    for sig in GUEST_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # Cleared by fork already; said again because a container must outlive its shim (as with
    # runc): containerd's `delete` action cleans up what a dead shim left running.
    syscalls.set_parent_death_signal(0)
    try:
        os.setsid()  # group signals aimed at the supervisor's group do not reach the guest
    except PermissionError:
        pass
    setproctitle("wasmvisor-worker")
    close_fds_except(keep)


def check_sizes(spec: Spec) -> None:
    """Refuse args/env a native process could not get either: Linux's limits (one string at most
    MAX_ARG_STRLEN, all of them together at most ARG_MAX with the default 8 MiB stack)."""
    for name, values in (("args", spec.args), ("env", spec.env)):
        for i, value in enumerate(values):
            size = len(value.encode())
            if size >= MAX_ARG_STRLEN:
                raise InvalidArgument(f"process.{name}[{i}] is {size} bytes: over the {MAX_ARG_STRLEN}-byte "
                                      "limit of one argument or variable")
    total = sum(len(v.encode()) + 1 for v in (*spec.args, *spec.env))
    if total > ARG_MAX:
        raise InvalidArgument(f"process.args and process.env are {total} bytes together: over the {ARG_MAX}-byte "
                              f"limit ({len(spec.args)} args, {len(spec.env)} env entries)")


def runtime_context(config: Configure, spec: Spec) -> RuntimeContext:
    """What the engine runs: the entrypoint `args[0]` (`path#func`) resolved in the rootfs, or,
    for an OCI Wasm image, the wasm layers the supervisor wrote to the bundle (then `args[0]`
    only names the module and the function)."""
    from wasmvisor.engines.base import WasmLayer  # here, not at the top: serve() is edited apart

    check_sizes(spec)
    if config.terminal:
        raise InvalidArgument(no_wasm_terminal(spec.args[0]))
    path, func = parse_entrypoint(spec.args[0])
    root = config.rootfs or spec.root_path
    host_path = resolve_in_root(root, path, spec.cwd)
    name = os.path.splitext(os.path.basename(path))[0]
    layers = []
    for layer in config.wasm_layers:
        try:
            with open(layer.path, "rb") as f:
                layers.append(WasmLayer(media_type=layer.media_type, data=f.read()))
        except OSError as exc:
            raise Internal(f"wasm layer {layer.digest}: cannot read {layer.path}: {exc.strerror}") from None
    if layers:
        log.debug("module %s from %d wasm layer(s): %s", path, len(layers),
                  ", ".join(f"{x.digest} ({x.media_type})" for x in config.wasm_layers))
    options = parse_workload(spec.annotations)
    check_preopens(root, options)
    return RuntimeContext(
        args=spec.args,
        envs=spec.env,
        cwd=spec.cwd,
        entrypoint=Entrypoint(name=name, source=path, host_path=host_path, func=func),
        root=root,
        wasm_layers=tuple(layers),
        memory_limit=spec.memory_limit,
        options=options,
        annotations=spec.annotations,
    )


def check_preopens(root: str, options: WorkloadOptions) -> None:
    """Each preopen an annotation names must be a folder of the container (`root`, a host path)."""
    for preopen in options.preopens or ():
        if not os.path.isdir(resolve_in_root(root, preopen.container_path)):
            raise InvalidArgument(f"annotation {PREOPENS}: {preopen.container_path} is not a folder of the container")
