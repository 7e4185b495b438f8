"""The worker enters the container's namespaces: joins those the spec gives by path (setns),
unshares new ones, and for a pid namespace forks once, since only children enter it.

After that fork the worker is two processes:
- the relay (`wasmvisor-init NS/ID`, the zygote's child, the pid the supervisor signals): it forwards
  the signals it gets to the container process and exits as that process did (exit n -> n;
  killed by signal s -> killed by s). Right after the fork it execs the static C relay
  (relay.c, ~50 KB a container instead of a Python process's ~3.75 MB); the Python `relay` is the
  fallback when that binary was not built;
- the container process (keeps `wasmvisor-worker NS/ID`): it goes on with the whole setup and the
  pipe to the supervisor. It dies with the relay (PR_SET_PDEATHSIG=SIGKILL), so `kill -9` of the
  relay ends the container.

A container process that is PID 1 of its namespace never gets a signal whose disposition is SIG_DFL
(the kernel drops it), except SIGKILL; but a *blocked* signal is queued. So the guest signals stay
blocked in every thread and `InitSignals` takes them with sigwait on a thread of its own.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import select
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NoReturn

from setproctitle import setproctitle

from wasmvisor.errors import Internal, InvalidArgument, NotFound, ShimError
from wasmvisor.linux import netdev, syscalls
from wasmvisor.linux.fork import quiet_fork, run_child
from wasmvisor.worker.spec_linux import CLONE_NEWNET, CLONE_NEWNS, Namespace

log = logging.getLogger(__name__)

TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
"""Signals whose default action ends a process: the worker leaves them at SIG_DFL (worker/main.py)."""
RELAYED_SIGNALS = (*TERMINATING_SIGNALS, signal.SIGALRM, signal.SIGCONT, signal.SIGWINCH)
"""What the relay forwards to the container process (SIGKILL and SIGSTOP cannot be caught)."""
HARMLESS_SIGNALS = (signal.SIGCONT, signal.SIGWINCH)
"""Ignored by default: the container's PID 1 takes them and carries on."""
DROP_WAIT_SECONDS = 2.0
"""How long the worker waits for its init thread to drop its capabilities (it takes microseconds)."""


def enter_namespaces(namespaces: Sequence[Namespace]) -> None:
    """Join the namespaces given by path, then unshare the new ones (a new pid namespace only
    takes effect for children: see `fork_container_process`). Every path is opened before the
    first setns, so that joining a mount namespace cannot change what a later path names."""
    joins: list[tuple[Namespace, int]] = []
    try:
        for ns in namespaces:
            if ns.path:
                joins.append((ns, _open_namespace(ns)))
        # The mount namespace last: after it, paths resolve in the joined namespace.
        for ns, fd in sorted(joins, key=lambda j: j[0].flag == CLONE_NEWNS):
            try:
                syscalls.setns(fd, ns.flag)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    raise InvalidArgument(f"{ns.name}: not a {ns.type} namespace") from None
                raise InvalidArgument(f"{ns.name}: cannot join: {os.strerror(exc.errno or 0)}") from None
    finally:
        for _, fd in joins:
            os.close(fd)
    flags = 0
    for ns in namespaces:
        if not ns.path:
            flags |= ns.flag
    if flags:
        try:
            syscalls.unshare(flags)
        except OSError as exc:
            names = ", ".join(ns.type for ns in namespaces if not ns.path)
            raise InvalidArgument(f"cannot create namespaces ({names}): {os.strerror(exc.errno or 0)}") from None
        if flags & CLONE_NEWNET:
            # As runc does: a new network namespace has only a loopback, and it starts down; a
            # server in the container (an HTTP component) is reached on it by an in-namespace client.
            netdev.set_up("lo")


def _open_namespace(ns: Namespace) -> int:
    try:
        return os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"{ns.name}: no such namespace file") from None
    except OSError as exc:
        raise InvalidArgument(f"{ns.name}: cannot open: {exc.strerror}") from None


def fork_container_process(relay_title: str, close_in_relay: Iterable[int]) -> int:
    """Fork the container process (it enters the pid namespace asked for before). In the child,
    returns its pid as the host sees it; the parent becomes the relay and never returns.

    The relayed signals (and SIGCHLD) are blocked before the fork: the relay takes them with
    sigwaitinfo, and the child keeps the guest's ones blocked (see `InitSignals`)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {*RELAYED_SIGNALS, signal.SIGCHLD})
    alive_r, alive_w = os.pipe()
    child = quiet_fork()
    if child == 0:
        os.close(alive_w)
        try:
            syscalls.set_parent_death_signal(signal.SIGKILL)
            if select.select([alive_r], [], [], 0)[0]:  # EOF: the relay died before the prctl
                os._exit(128 + signal.SIGKILL)
        finally:
            os.close(alive_r)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        # /proc is still the host's here: its `self` is our pid there.
        return int(os.readlink("/proc/self"))

    def become_relay() -> NoReturn:
        os.close(alive_r)
        for fd in close_in_relay:
            os.close(fd)
        exec_c_relay(relay_title, child, alive_w)
        setproctitle(relay_title)
        relay(child)

    def relay_failed(exc: BaseException) -> None:
        log.error("relay of container process %d failed: %s", child, exc)
        try:
            os.kill(child, signal.SIGKILL)
        except OSError:
            pass

    run_child(become_relay, on_error=relay_failed)


RELAY_BINARY = Path(__file__).with_name("_bin") / "wasmvisor-relay"
"""The relay in C (relay.c, built by scripts/setup.sh): ~50 KB a container instead of a Python process."""


def exec_c_relay(title: str, child: int, alive_w: int) -> None:
    """Become the C relay (same pid, same blocked and pending signals); returns only when it is
    absent (a pip install without scripts/setup.sh) or cannot run, for the Python `relay` then."""
    if not os.access(RELAY_BINARY, os.X_OK):
        log.debug("no %s: the relay stays in Python", RELAY_BINARY)
        return
    os.set_inheritable(alive_w, True)  # the child takes EOF on it for the relay's death
    try:
        os.execv(RELAY_BINARY, [title, str(child), str(alive_w), *(str(int(sig)) for sig in RELAYED_SIGNALS)])
    except OSError as exc:
        log.debug("cannot exec %s (%s): the relay stays in Python", RELAY_BINARY, exc)


def relay(child: int) -> NoReturn:
    """Forward signals to `child` until it ends, then end the same way."""
    waited = {*RELAYED_SIGNALS, signal.SIGCHLD}
    while True:
        info = signal.sigwaitinfo(waited)
        if info.si_signo == signal.SIGCHLD:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid == child:
                end_like(status)
            continue
        try:
            os.kill(child, info.si_signo)
        except ProcessLookupError:
            pass


def end_like(status: int) -> NoReturn:
    """Exit with the wait `status` of another process: its exit code, or death by its signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the container dumped (or not) already
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # their disposition cannot be set (EINVAL)
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


class InitSignals:
    """For a container process that is PID 1 of its pid namespace: the guest signals stay
    blocked (so the kernel queues them) and a thread takes them; `on_signal(sig)` ends the
    process (it must not return). SIGCONT and SIGWINCH are taken and ignored."""

    def __init__(self, on_signal: Callable[[int], object]) -> None:
        self.on_signal = on_signal
        self.thread = threading.Thread(target=self._wait, name="wasmvisor-init-signals", daemon=True)
        self._step: Callable[[], None] | None = None
        self._step_error: str | None = None
        self._step_done = threading.Event()
        self._lock = threading.Lock()
        self._park_asked = False
        self._ending = False  # the thread took a signal that ends the process
        self._answered = threading.Event()  # to `park`: parked, or ending
        self._resume = threading.Event()

    @staticmethod
    def needed() -> bool:
        """Whether this process is PID 1 of its pid namespace."""
        return os.getpid() == 1

    def start(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, set(RELAYED_SIGNALS))
        self.thread.start()

    def run_on_thread(self, step: Callable[[], None]) -> None:
        """Have the thread run `step` (a capability change of its own: they are per thread) and wait
        until it has; Internal naming the failure when it could not."""
        self._step, self._step_error = step, None
        self._step_done.clear()
        signal.pthread_kill(self.thread.ident or 0, signal.SIGWINCH)
        if not self._step_done.wait(DROP_WAIT_SECONDS):
            raise Internal("the init thread did not change its capabilities")
        if self._step_error:
            raise Internal(f"the init thread: {self._step_error}")

    def park(self) -> bool:
        """Stop taking signals until `unpark`: the guest signals stay queued in the kernel, and a
        queued signal outlives an exec (the compiled runner takes it). True once the thread waits;
        False when it took an ending signal already (it is ending the process: do not exec)."""
        with self._lock:
            if self._ending:
                return False
            self._park_asked = True
            self._answered.clear()
        signal.pthread_kill(self.thread.ident or 0, signal.SIGWINCH)
        if not self._answered.wait(DROP_WAIT_SECONDS):
            raise Internal("the init thread did not stop taking signals")
        with self._lock:
            return not self._ending

    def unpark(self) -> None:
        """Take signals again (the exec `park` was for did not happen)."""
        with self._lock:
            self._park_asked = False
        self._resume.set()

    def _wait(self) -> None:
        while True:
            sig = signal.sigwait(set(RELAYED_SIGNALS))
            step, self._step = self._step, None
            if step is not None:
                try:
                    step()
                except ShimError as exc:
                    self._step_error = exc.message
                self._step_done.set()
            with self._lock:
                self._ending = sig not in HARMLESS_SIGNALS
                park = self._park_asked
                if park or self._ending:
                    self._answered.set()
            if park and not self._ending:
                self._resume.wait()
                self._resume.clear()
                continue
            if sig in HARMLESS_SIGNALS:
                continue
            log.debug("PID 1 got signal %d: ending", sig)
            self.on_signal(sig)
            os._exit(128 + sig)
