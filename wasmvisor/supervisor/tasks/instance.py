"""Instance: one container's guest as the supervisor drives it (as runwasi's Instance trait).

`Instance` is the public contract (new/start/kill/delete/wait). The task registry is handed an
`InstanceFactory`: an Instance class's `new`, bound to what that class needs. `WorkerInstance`
implements the contract with a worker process that the zygote's launcher forks (daemon.py binds
it): it is the only reader of that worker's pipe, and the one place where the worker's end
becomes an `Exit`, which `wait` returns.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from wasmvisor import errors
from wasmvisor.ipc import messages
from wasmvisor.refs import load_class
from wasmvisor.supervisor.tasks.console import Console

OnForked = Callable[[int], Awaitable[None]]
"""Awaited with the pid of a container's new process before it is configured (it joins its cgroup there)."""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from wasmvisor.ipc.worker_handle import WorkerHandle
    from wasmvisor.ipc.zygote import WorkerLauncher

log = logging.getLogger(__name__)

DEFAULT_ENGINE = "wasmvisor.engines.wasmtime_engine:WasmtimeEngine"
EXIT_GRACE_SECONDS = 5.0
"""How long a worker may take to end after closing its pipe before it is SIGKILLed."""


@dataclass(frozen=True)
class Exit:
    """How a task ended: its pid, exit status (128+N for signal N) and time (ns since the epoch)."""

    pid: int
    status: int
    at_ns: int
    reason: str = ""
    """Why, when the worker said (a trap's message: Exited.note); empty for a plain exit."""


@dataclass(frozen=True)
class InstanceConfig:
    namespace: str
    bundle: str
    rootfs: str
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    engine: str = DEFAULT_ENGINE
    log_level: str = "info"
    pod: str = ""
    wasm_layers: tuple[messages.LayerFile, ...] = ()
    """The image's wasm layers, written to the bundle (wasmvisor.supervisor.containerd.wasm_layers)."""


@dataclass(frozen=True)
class TaskIO:
    """A process's stdio as containerd's Create or Exec gives it (FIFOs, files or `file://` URIs)."""

    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


class Instance(abc.ABC):
    """One container's guest. `new` prepares it (Create); `start` runs it."""

    id: str
    pid: int
    """The container process's host pid."""

    @property
    def relay_pid(self) -> int | None:
        """A process of the instance outside the container (a relay) that `kill --all` must spare."""
        return None

    @classmethod
    @abc.abstractmethod
    async def new(cls, id: str, cfg: InstanceConfig, on_forked: OnForked | None = None) -> Instance:
        """Prepare the container; raise a ShimError naming the problem when it cannot run.
        `on_forked(pid)` puts the guest's process in the task's cgroup as soon as it exists, before the
        container process does (WorkerInstance overlaps it with the worker's first steps); done before
        `new` returns."""

    @abc.abstractmethod
    async def start(self) -> int:
        """Run the guest; return its pid."""

    @abc.abstractmethod
    def kill(self, signo: int) -> None:
        """Send `signo` to the guest."""

    @abc.abstractmethod
    async def delete(self) -> None:
        """Release what the instance holds; a guest that never started is ended first (so
        `wait` returns)."""

    @abc.abstractmethod
    async def wait(self) -> Exit:
        """Block until the guest has ended (whether started or not); return how."""

    async def exec(self, exec_id: str, process: Mapping[str, Any], stdio: TaskIO,
                   on_forked: OnForked | None = None) -> Instance:
        """Prepare the exec process `exec_id` (an OCI `process`) in this running container, as an
        Instance of its own that `start` runs (Task API Exec); optional."""
        raise errors.Unimplemented(f"exec {exec_id!r} in task {self.id}: {type(self).__name__} has no exec")

    def resize_pty(self, width: int, height: int) -> None:
        """Set the window size of the process's terminal (ResizePty)."""
        raise errors.InvalidArgument(f"resizepty {self.id}: the process has no terminal")


InstanceFactory = Callable[[str, InstanceConfig, OnForked | None], Awaitable[Instance]]
"""`(id, cfg, on_forked)` -> a new Instance: an Instance class's `new` (runwasi's `Instance::new`),
bound to what it needs, e.g. `functools.partial(WorkerInstance.new, launcher=launcher)`."""


def instance_class(ref: str) -> type[Instance]:
    """The shim's own Instance class named `ref` ("module:Class"); Internal when it cannot be
    loaded, is not an Instance or leaves a method of the contract unwritten."""
    cls: type[Instance] = load_class(ref, Instance, "instance")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise errors.Internal(f"instance {ref!r}: {cls.__name__} does not implement {', '.join(missing)}")
    return cls


class WorkerInstance(Instance):
    """An Instance backed by a worker process from the zygote, spoken to over a JSON pipe."""

    def __init__(self, id: str, cfg: InstanceConfig, handle: WorkerHandle) -> None:
        self.id = id
        self.cfg = cfg
        self.handle = handle
        self.pid = handle.pid
        loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[int] = loop.create_future()
        self._started: asyncio.Future[int] | None = None
        self._exit: Exit | None = None
        self._exited = asyncio.Event()
        self._reported: messages.Exited | None = None
        self._execs = False
        """The worker said it execs a native program: its pipe closes while that program runs."""
        self._container_pidfd = -1
        """A pidfd of the container process when it is not the worker itself (pid namespace)."""
        self._launcher: WorkerLauncher | None = None
        """Set by `new`: execs are forked by the same zygote."""
        self._console: Console | None = None
        """The process's terminal (`terminal: true`)."""
        self.phases: messages.Phases = {}
        """What the worker measured of its steps (Ready, Exited) and the fork before them: trace spans."""
        self._monitor = loop.create_task(self._watch(), name=f"worker-{id}")

    @classmethod
    async def new(cls, id: str, cfg: InstanceConfig, on_forked: OnForked | None = None, *,
                  launcher: WorkerLauncher | None = None) -> WorkerInstance:
        """A worker forked by `launcher` (required: daemon.py binds it), configured and Ready."""
        if launcher is None:
            raise errors.Internal(f"task {id}: a WorkerInstance needs the zygote's launcher")
        return await cls._launch(id, cfg, _configure(id, cfg), on_forked, launcher)

    @classmethod
    async def _launch(cls, id: str, cfg: InstanceConfig, configure: messages.Configure,
                      on_forked: OnForked | None, launcher: WorkerLauncher,
                      pts: str = "") -> WorkerInstance:
        console = Console(pts) if cfg.terminal else None
        asked = time.time_ns()
        try:
            if console is not None:
                configure = replace(configure, console=console.path)
            configure = replace(configure, await_join=on_forked is not None)
            handle = await launcher.spawn(configure)
        except BaseException:
            if console is not None:
                console.close()
            raise
        # The cgroup join overlaps the worker's first steps: its write may wait ~5-20 ms for the kernel
        # (wasmvisor/cgroups/migration.py); the worker waits for `Joined` only before its container
        # process exists.
        joining = asyncio.ensure_future(_join(handle, on_forked)) if on_forked is not None else None
        inst = cls(id, cfg, handle)
        inst._launcher = launcher
        inst._console = console
        try:
            await inst._ready_and_joined(joining)
            if console is not None:
                console.start(cfg.stdin, cfg.stdout, f"task {id}")
        except BaseException:
            inst.handle.kill(signal.SIGKILL)
            await inst._exited.wait()
            inst.handle.close()
            if joining is not None:
                await asyncio.wait([joining])  # its thread is done before the caller removes the cgroup
                if not joining.cancelled() and joining.exception() is not None:
                    # Raised already when the join failed first; else the worker failed or ended on its
                    # own first (its pid then gone: "No such process"), and its error is the one to report.
                    log.debug("task %s: cgroup join: %s", id, joining.exception())
            raise
        if "configure" in inst.phases:  # the fork: from our request to the worker's first instruction
            inst.phases["fork"] = [asked, inst.phases["configure"][0]]
        return inst

    async def _ready_and_joined(self, joining: asyncio.Future[None] | None) -> None:
        """Until the worker is Ready and in its cgroup; the join's error when it failed first (the
        worker, waiting for `Joined`, would wait for ever)."""
        if joining is not None:
            pending: list[asyncio.Future[Any]] = [joining, self._ready]
            await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            if joining.done() and not joining.cancelled() and joining.exception() is not None:
                await joining  # raises it
        await self._ready
        if joining is not None:
            await joining

    async def exec(self, exec_id: str, process: Mapping[str, Any], stdio: TaskIO,
                   on_forked: OnForked | None = None) -> WorkerInstance:
        """Another worker, in this container's namespaces and against its root (worker/exec_process.py)."""
        if self._launcher is None or self._exit is not None:
            raise errors.FailedPrecondition(f"exec {exec_id!r} in task {self.id}: the task is not running")
        cfg = replace(self.cfg, stdin=stdio.stdin, stdout=stdio.stdout, stderr=stdio.stderr, terminal=stdio.terminal,
                      wasm_layers=())
        configure = replace(_configure(self.id, cfg), exec_id=exec_id, exec_target_pid=self.pid,
                            exec_process=dict(process), exec_in_wasm=not self._execs)
        # The container's own devpts when it has one: its terminal is then /dev/pts/N in there.
        pts = f"/proc/{self.pid}/root/dev/pts"
        pts = pts if os.path.exists(f"{pts}/ptmx") else ""
        return await self._launch(f"{self.id} exec {exec_id}", cfg, configure, on_forked, self._launcher, pts)

    async def start(self) -> int:
        if self._exit is not None:
            raise errors.FailedPrecondition(f"task {self.id} has already exited")
        self._started = asyncio.get_running_loop().create_future()
        await self.handle.send(messages.StartGuest())
        return await self._started

    @property
    def execs(self) -> bool:
        """Whether the worker exec'd a native program (known once Start has answered)."""
        return self._execs

    @property
    def relay_pid(self) -> int | None:
        """The worker's pid when it stays outside the container's pid namespace as a relay."""
        return self.handle.pid if self.pid != self.handle.pid else None

    def kill(self, signo: int) -> None:
        """Signal the container process, as runc signals the container's init: with a pid
        namespace that is the relay's child (SIGSTOP then stops the container itself); the
        relay is signalled only when no pidfd of that child could be had."""
        if self._exit is not None:
            raise errors.NotFound(f"process already finished: task {self.id}: not found")
        if self._container_pidfd < 0:
            self.handle.kill(signo)
            return
        try:
            signal.pidfd_send_signal(self._container_pidfd, signo)
        except ProcessLookupError:
            pass  # it has just ended: its exit is on its way

    def _open_container_pidfd(self, pid: int) -> None:
        """A pidfd for the container process `pid`, child of the relay (checked after opening,
        so that the pidfd cannot name another process that reused the pid)."""
        try:
            fd = os.pidfd_open(pid)
        except OSError as exc:
            log.warning("no pidfd for container process %d of %s (%s): signals go to its relay",
                        pid, self.id, exc.strerror)
            return
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            ppid = -1
        if ppid != self.handle.pid:
            os.close(fd)
            log.warning("process %d is not the container process of %s (its parent is %d, not the relay %d)",
                        pid, self.id, ppid, self.handle.pid)
            return
        self._container_pidfd = fd

    def _close_container_pidfd(self) -> None:
        if self._container_pidfd >= 0:
            os.close(self._container_pidfd)
            self._container_pidfd = -1

    def resize_pty(self, width: int, height: int) -> None:
        if self._console is None or self._console.master < 0:
            super().resize_pty(width, height)
            return
        self._console.resize(width, height)

    async def delete(self) -> None:
        if self._exit is None:
            self.handle.kill(signal.SIGKILL)
            await self._exited.wait()
        self.handle.close()

    async def wait(self) -> Exit:
        await self._exited.wait()
        assert self._exit is not None
        return self._exit

    # The one reader of the worker's pipe. Messages are handled in order, so Start's answer is
    # always settled before the exit.
    async def _watch(self) -> None:
        try:
            while True:
                msg = await self.handle.receive()
                self._handle(msg)
        except EOFError:
            pass
        except messages.ProtocolError as exc:
            log.error("worker %d of %s broke the ipc protocol: %s; killing it", self.pid, self.id, exc)
            self.handle.kill(signal.SIGKILL)
        except Exception:
            log.exception("reading worker %d of %s failed; killing it", self.pid, self.id)
            self.handle.kill(signal.SIGKILL)
        returncode = await self._wait_exit()
        if self._console is not None:
            # Its output first (ctr waits for EOF on the stdout FIFO before it deletes the process).
            await self._console.drained()
            self._console.close()
        self._finish(returncode)

    async def _wait_exit(self) -> int:
        """The worker's returncode once it is gone. Its pipe has closed, so it is exiting: one
        that still runs after EXIT_GRACE_SECONDS (a stuck thread, a wedged flush) is killed; but
        a native program closed the pipe when it was exec'd, and runs for as long as it runs."""
        if self._execs:
            return await self.handle.wait_exit()
        try:
            return await asyncio.wait_for(self.handle.wait_exit(), EXIT_GRACE_SECONDS)
        except TimeoutError:
            log.warning("worker %d of %s still runs %.0f s after closing its pipe; killing it",
                        self.pid, self.id, EXIT_GRACE_SECONDS)
            self.handle.kill(signal.SIGKILL)
            return await self.handle.wait_exit()

    def _handle(self, msg: messages.Message) -> None:
        log.debug("worker %d of %s says %s", self.pid, self.id, msg)
        if isinstance(msg, messages.Ready):
            # The container process's host pid: the worker's own, or its child's when the worker
            # stays outside a pid namespace as a relay (signals sent to the handle reach it).
            if msg.pid > 0:
                self.pid = msg.pid
                if msg.pid != self.handle.pid and self._container_pidfd < 0:
                    self._open_container_pidfd(msg.pid)
            self.phases.update(msg.phases)
            _resolve(self._ready, msg.pid)
        elif isinstance(msg, messages.Started):
            self._execs = msg.execs
            if self._started is not None:
                _resolve(self._started, msg.pid)
        elif isinstance(msg, messages.Exited):
            self._reported = msg
            if msg.note:
                log.warning("worker %d of %s: %s", self.pid, self.id, msg.note)
            self.phases.update(msg.phases)
        elif isinstance(msg, messages.Failed):
            error = _error_from(msg)
            target = self._ready if not self._ready.done() else self._started
            if target is not None and not target.done():
                target.set_exception(error)
            else:
                log.error("worker %d of %s failed: %s", self.pid, self.id, msg.message)
        else:
            log.warning("worker %d of %s sent an unexpected %s message", self.pid, self.id, msg.kind)

    def _finish(self, returncode: int) -> None:
        reason = ""
        if self._reported is not None:
            status, at_ns, reason = self._reported.code & 0xFF, self._reported.at_ns, self._reported.note
        elif returncode < 0:
            status, at_ns = 128 - returncode, time.time_ns()
        else:
            status, at_ns = returncode & 0xFF, time.time_ns()
        self._exit = Exit(pid=self.pid, status=status, at_ns=at_ns, reason=reason)
        self._close_container_pidfd()  # the relay ends only once the container process has
        log.debug("worker %d of %s ended: returncode %d, exit status %d", self.pid, self.id, returncode, status)
        gone = errors.FailedPrecondition(f"worker of {self.id} exited with status {status} before it was ready")
        if not self._ready.done():
            self._ready.set_exception(gone)
        if self._started is not None and not self._started.done():
            self._started.set_exception(
                errors.FailedPrecondition(f"task {self.id} exited with status {status} while starting")
            )
        self._exited.set()


async def _join(handle: WorkerHandle, on_forked: OnForked) -> None:
    """Put the worker in its cgroup (`on_forked` does the blocking part on a thread), then tell it."""
    began = time.monotonic()
    await on_forked(handle.pid)
    log.debug("worker %d in its cgroup %.1f ms after its Configure", handle.pid, (time.monotonic() - began) * 1000)
    try:
        await handle.send(messages.Joined())
    except (BrokenPipeError, ConnectionResetError):
        pass  # it has ended already: its own end says why


def _configure(id: str, cfg: InstanceConfig) -> messages.Configure:
    return messages.Configure(
        namespace=cfg.namespace, id=id, bundle=cfg.bundle, rootfs=cfg.rootfs, engine=cfg.engine,
        stdin=cfg.stdin, stdout=cfg.stdout, stderr=cfg.stderr, terminal=cfg.terminal,
        log_level=cfg.log_level, pod=cfg.pod, wasm_layers=cfg.wasm_layers,
    )


def _resolve(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)


def _error_from(msg: messages.Failed) -> errors.ShimError:
    cls: dict[str, type[errors.ShimError]] = {
        "INVALID_ARGUMENT": errors.InvalidArgument,
        "NOT_FOUND": errors.NotFound,
        "FAILED_PRECONDITION": errors.FailedPrecondition,
        "UNIMPLEMENTED": errors.Unimplemented,
        "RESOURCE_EXHAUSTED": errors.ResourceExhausted,
    }
    return cls.get(msg.code, errors.Internal)(msg.message)


def worker_pid_file(bundle: str) -> str:
    """Where the supervisor records a task's worker pid for the `delete` action."""
    return os.path.join(bundle, "init.pid")
