"""Workers forked from a real zygote, for bundles made here (no containerd, no mounts).

Each test drives WorkerHandle the way the supervisor does: spawn (Configure) -> Ready ->
StartGuest -> Started -> Exited, and the zygote's returncode from wait_exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import threading
import time
import types
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import wasmtime

from wasmvisor.ipc.messages import Configure, Exited, Failed, Ready, Started, StartGuest
from wasmvisor.ipc.worker_handle import ZYGOTE_LOST, WorkerHandle
from wasmvisor.ipc.zygote import WorkerLauncher

T = TypeVar("T")
NS = "testns"

WASI = """
 (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
 (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
 (memory (export "memory") 1)
 (func $write (param $fd i32) (param $ptr i32) (param $len i32)
   (i32.store (i32.const 0) (local.get $ptr)) (i32.store (i32.const 4) (local.get $len))
   (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
 (func $sleep (param $ns i64)
   ;; one relative clock subscription (monotonic) at 256, events at 512
   (i32.store8 (i32.const 264) (i32.const 0)) (i32.store (i32.const 272) (i32.const 1))
   (i64.store (i32.const 280) (local.get $ns))
   (drop (call $poll (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 600))))
 (data (i32.const 64) "hello from the guest\\n")
"""


def wat(start: str) -> str:
    return f'(module {WASI} (func (export "_start") {start}))'


HELLO = wat("(call $write (i32.const 1) (i32.const 64) (i32.const 21))")
EXIT_3 = wat("(call $write (i32.const 1) (i32.const 64) (i32.const 21)) (call $proc_exit (i32.const 3))")
TRAP = wat("(unreachable)")
SLEEP = wat("(call $write (i32.const 1) (i32.const 64) (i32.const 21)) (call $sleep (i64.const 60000000000))")
CAT = wat("""(local $n i32)
   (loop $more
     (i32.store (i32.const 16) (i32.const 1024)) (i32.store (i32.const 20) (i32.const 4096))
     (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
     (local.set $n (i32.load (i32.const 24)))
     (if (i32.gt_u (local.get $n) (i32.const 0))
       (then (call $write (i32.const 1) (i32.const 1024) (local.get $n)) (br $more))))""")


def run(coro: Awaitable[T], timeout: float = 30) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture(scope="module")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("log") / "workers.log"


@pytest.fixture(scope="module")
def launcher(worker_log: Path) -> Iterator[WorkerLauncher]:
    """One zygote for the module; its fd 2 (so every worker's log) is `worker_log`."""
    launcher = WorkerLauncher()
    with redirected_stderr(worker_log):
        launcher.warm_up()
    yield launcher
    launcher.close()


class redirected_stderr:
    """fd 2 points at `path` while the zygote is spawned (it inherits fd 2)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.saved = os.dup(2)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)

    def __exit__(self, *exc: object) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)


class Bundle:
    """An OCI bundle: config.json, a rootfs with the module, and an stdout to read."""

    counter = 0

    def __init__(self, tmp: Path, module: str | bytes, args: tuple[str, ...] = ("/app.wasm",),
                 stdout: str = "file", stdin: str = "", **process: Any) -> None:
        Bundle.counter += 1
        self.id = f"task{Bundle.counter}"
        self.dir = tmp / self.id
        self.rootfs = self.dir / "rootfs"
        self.rootfs.mkdir(parents=True)
        data = bytes(wasmtime.wat2wasm(module)) if isinstance(module, str) else module
        (self.rootfs / "app.wasm").write_bytes(data)
        doc = {"ociVersion": "1.0.2", "process": {"args": list(args), "cwd": "/", **process},
               "root": {"path": "rootfs"}}
        (self.dir / "config.json").write_text(json.dumps(doc))
        self.stdout = self.dir / "stdout"
        self.read_fd = -1
        if stdout == "fifo":
            os.mkfifo(self.stdout)
            self.read_fd = os.open(self.stdout, os.O_RDONLY | os.O_NONBLOCK)
        elif stdout == "file":
            self.stdout.touch()
        self.stdin = stdin

    def configure(self, **overrides: Any) -> Configure:
        fields: dict[str, Any] = dict(namespace=NS, id=self.id, bundle=str(self.dir), rootfs=str(self.rootfs),
                                      stdout=str(self.stdout), stdin=self.stdin)
        fields.update(overrides)
        return Configure(**fields)

    def output(self) -> str:
        if self.read_fd < 0:
            return self.stdout.read_text()
        chunks = []
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode()


async def start(launcher: WorkerLauncher, bundle: Bundle, **overrides: Any) -> WorkerHandle:
    handle = await launcher.spawn(bundle.configure(**overrides))
    ready = await handle.receive()
    assert isinstance(ready, Ready) and ready.pid == handle.pid
    assert {"configure", "container", "seal"} <= ready.phases.keys()  # measured for the trace spans
    await handle.send(StartGuest())
    started = await handle.receive()
    assert isinstance(started, Started) and started.pid == handle.pid
    return handle


async def run_to_end(launcher: WorkerLauncher, bundle: Bundle) -> tuple[Exited, int]:
    handle = await start(launcher, bundle)
    try:
        exited = await handle.receive()
        assert isinstance(exited, Exited)
        with pytest.raises(EOFError):
            await handle.receive()
        return exited, await handle.wait_exit()
    finally:
        handle.close()


def test_hello_prints_to_the_stdout_fifo_and_exits_0(launcher: WorkerLauncher, tmp_path: Path) -> None:
    bundle = Bundle(tmp_path, HELLO, stdout="fifo")
    before = time.time_ns()
    exited, code = run(run_to_end(launcher, bundle))
    assert (exited.code, code) == (0, 0)
    assert before < exited.at_ns <= time.time_ns()
    assert bundle.output() == "hello from the guest\n"


def test_exit_3_is_reported_and_is_the_worker_exit_code(launcher: WorkerLauncher, tmp_path: Path) -> None:
    bundle = Bundle(tmp_path, EXIT_3)
    exited, code = run(run_to_end(launcher, bundle))
    assert (exited.code, code) == (3, 3)
    assert bundle.output() == "hello from the guest\n"


def test_a_trap_exits_137_as_an_exited_message(launcher: WorkerLauncher, tmp_path: Path,
                                              worker_log: Path) -> None:
    bundle = Bundle(tmp_path, TRAP)
    exited, code = run(run_to_end(launcher, bundle))
    assert (exited.code, code) == (137, 137)
    # The worker's log FIFO is closed while its guest runs: the reason travels in Exited for the supervisor.
    assert exited.note.startswith("guest /app.wasm trapped: ")
    assert "wasm `unreachable` instruction executed" in exited.note
    assert not [ln for ln in worker_log.read_text().splitlines() if f"instance={bundle.id} " in ln]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGKILL, -9), (signal.SIGTERM, -15), (signal.SIGINT, -2)])
def test_a_signal_ends_a_sleeping_guest_without_an_exited_message(
    launcher: WorkerLauncher, tmp_path: Path, sig: int, code: int
) -> None:
    bundle = Bundle(tmp_path, SLEEP, stdout="fifo")

    async def scenario() -> int:
        handle = await start(launcher, bundle)
        await asyncio.sleep(0.1)
        assert bundle.output() == "hello from the guest\n"  # the guest is in its sleep now
        handle.kill(sig)
        with pytest.raises(EOFError):
            await handle.receive()
        try:
            return await handle.wait_exit()
        finally:
            handle.close()

    assert run(scenario()) == code


def test_two_workers_at_once_end_their_own_ways(launcher: WorkerLauncher, tmp_path: Path) -> None:
    sleeper, quick = Bundle(tmp_path, SLEEP), Bundle(tmp_path, EXIT_3)

    async def scenario() -> tuple[int, int, Exited]:
        a, b = await asyncio.gather(start(launcher, sleeper), start(launcher, quick))
        assert a.pid != b.pid
        exited = await b.receive()
        assert isinstance(exited, Exited)
        a.kill(signal.SIGKILL)
        codes = await asyncio.gather(a.wait_exit(), b.wait_exit())
        a.close()
        b.close()
        return codes[0], codes[1], exited

    killed, three, exited = run(scenario())
    assert (killed, three, exited.code) == (-9, 3, 3)


def test_stdin_fifo_reaches_the_guest(launcher: WorkerLauncher, tmp_path: Path) -> None:
    stdin = tmp_path / "stdin"
    os.mkfifo(stdin)
    writer = os.open(stdin, os.O_RDWR | os.O_NONBLOCK)  # as ctr holds the write end
    bundle = Bundle(tmp_path, CAT, stdin=str(stdin))

    async def scenario() -> tuple[Exited | None, int]:
        handle = await launcher.spawn(bundle.configure())
        assert isinstance(await handle.receive(), Ready)
        os.write(writer, b"typed in\n")
        os.close(writer)  # the worker has its read end open: the guest sees the data, then EOF
        await handle.send(StartGuest())
        assert isinstance(await handle.receive(), Started)
        exited = await handle.receive()
        assert isinstance(exited, Exited)
        code = await handle.wait_exit()
        handle.close()
        return exited, code

    assert run(scenario())[1] == 0
    assert bundle.output() == "typed in\n"


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        # (Not an ELF: since the native executor, an ELF entrypoint runs as a native program.)
        (lambda b: (b.rootfs / "app.wasm").write_bytes(b"PK\x03\x04\x14\x00\x00\x00"), "INVALID_ARGUMENT",
         "module /app.wasm: not a wasm file (starts with 504b0304)"),
        (lambda b: (b.rootfs / "app.wasm").unlink(), "INVALID_ARGUMENT",
         "module /app.wasm: no such file in the container image"),
        (lambda b: (b.dir / "config.json").unlink(), "INVALID_ARGUMENT", "config.json: missing"),
        (lambda b: b.stdout.unlink(), "NOT_FOUND", "no such file or FIFO"),
    ],
    ids=["not-wasm", "no-module", "no-config", "no-stdout"],
)
def test_create_failures_answer_failed_and_exit_1(
    launcher: WorkerLauncher, tmp_path: Path, make: Any, code: str, message: str
) -> None:
    bundle = Bundle(tmp_path, HELLO)
    make(bundle)

    async def scenario() -> tuple[Any, int]:
        handle = await launcher.spawn(bundle.configure())
        failed = await handle.receive()
        status = await handle.wait_exit()
        handle.close()
        return failed, status

    failed, status = run(scenario())
    assert isinstance(failed, Failed)
    assert (failed.code, status) == (code, 1)
    assert message in failed.message


def test_unknown_engine_is_an_internal_failure(launcher: WorkerLauncher, tmp_path: Path) -> None:
    bundle = Bundle(tmp_path, HELLO)

    async def scenario() -> Any:
        handle = await launcher.spawn(bundle.configure(engine="nowhere.engine:Missing"))
        try:
            return await handle.receive()
        finally:
            handle.close()

    failed = run(scenario())
    assert isinstance(failed, Failed) and failed.code == "INTERNAL"
    assert "engine 'nowhere.engine:Missing': cannot load" in failed.message


def test_closing_the_pipe_before_start_ends_the_worker_quietly(launcher: WorkerLauncher, tmp_path: Path) -> None:
    bundle = Bundle(tmp_path, SLEEP)

    async def scenario() -> int:
        handle = await launcher.spawn(bundle.configure())
        assert isinstance(await handle.receive(), Ready)
        handle._channel.close()  # as a supervisor that deletes a created task
        return await handle.wait_exit()

    assert run(scenario()) == 0
    assert bundle.output() == ""


def test_ps_shows_worker_and_zygote_by_role(launcher: WorkerLauncher, tmp_path: Path) -> None:
    bundle = Bundle(tmp_path, SLEEP)

    async def scenario() -> tuple[str, str]:
        handle = await launcher.spawn(bundle.configure())
        assert isinstance(await handle.receive(), Ready)
        worker = Path(f"/proc/{handle.pid}/cmdline").read_bytes()
        assert launcher.zygote_pid is not None
        zygote = Path(f"/proc/{launcher.zygote_pid}/cmdline").read_bytes()
        handle.kill(signal.SIGKILL)
        await handle.wait_exit()
        handle.close()
        return worker.rstrip(b"\0").decode(), zygote.rstrip(b"\0").decode()

    worker, zygote = run(scenario())
    assert worker == f"wasmvisor-worker {NS}/{bundle.id}"
    assert zygote == "wasmvisor-zygote"


def test_the_zygote_never_compiles(launcher: WorkerLauncher, tmp_path: Path) -> None:
    """wasmtime's compile thread pool would show as extra threads; forked children of a
    process that has one hang at their first compile."""
    for _ in range(3):
        assert run(run_to_end(launcher, Bundle(tmp_path, EXIT_3)))[1] == 3
    status = Path(f"/proc/{launcher.zygote_pid}/status").read_text()
    assert "Threads:\t1\n" in status


def test_workers_do_not_rerun_the_supervisor_main_module(
    launcher: WorkerLauncher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "main-ran"
    script = tmp_path / "containerd-shim-fake-v1"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    assert run(run_to_end(launcher, Bundle(tmp_path, EXIT_3)))[1] == 3
    assert not marker.exists()


def test_the_zygote_ignores_group_signals(launcher: WorkerLauncher, tmp_path: Path) -> None:
    assert launcher.zygote_pid is not None
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        os.kill(launcher.zygote_pid, sig)
    time.sleep(0.05)
    assert run(run_to_end(launcher, Bundle(tmp_path, EXIT_3)))[1] == 3


def test_warm_up_from_a_short_lived_thread_keeps_the_zygote(tmp_path: Path) -> None:
    """PDEATHSIG follows the spawning thread: the launcher spawns from its own thread."""
    launcher = WorkerLauncher()
    try:
        thread = threading.Thread(target=launcher.warm_up)
        thread.start()
        thread.join()
        time.sleep(0.1)
        assert launcher.zygote_pid is not None
        os.kill(launcher.zygote_pid, 0)
        assert run(run_to_end(launcher, Bundle(tmp_path, EXIT_3)))[1] == 3
    finally:
        launcher.close()


def test_a_worker_outlives_its_zygote(tmp_path: Path) -> None:
    """As a runc container outlives its shim: the worker keeps running; wait_exit says 255."""
    launcher = WorkerLauncher()
    bundle = Bundle(tmp_path, SLEEP)

    async def scenario() -> tuple[int, int]:
        handle = await start(launcher, bundle)
        zygote = launcher.zygote_pid
        assert zygote is not None
        await asyncio.get_running_loop().run_in_executor(None, launcher.close)
        with pytest.raises(ProcessLookupError):
            os.kill(zygote, 0)
        code = await handle.wait_exit()
        os.kill(handle.pid, 0)  # still running
        handle.kill(signal.SIGKILL)
        pid = handle.pid
        handle.close()
        return code, pid

    code, pid = run(scenario())
    assert code == ZYGOTE_LOST
    for _ in range(100):
        if not running(pid):
            break
        time.sleep(0.01)
    else:
        pytest.fail(f"worker {pid} still running after SIGKILL")


def running(pid: int) -> bool:
    """Whether `pid` runs: an orphan is reparented to PID 1 (or a subreaper) and may stay a
    zombie for a while."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone; or reaped between open() and read() (ESRCH)
        return False


def test_spawn_latency(launcher: WorkerLauncher, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Measured: spawn() call -> Ready, and StartGuest -> Started, over 20 runs."""
    to_ready: list[float] = []
    to_started: list[float] = []
    to_return: list[float] = []

    async def once(bundle: Bundle) -> None:
        began = time.perf_counter()
        handle = await launcher.spawn(bundle.configure())
        to_return.append(time.perf_counter() - began)
        assert isinstance(await handle.receive(), Ready)
        to_ready.append(time.perf_counter() - began)
        began = time.perf_counter()
        await handle.send(StartGuest())
        assert isinstance(await handle.receive(), Started)
        to_started.append(time.perf_counter() - began)
        assert isinstance(await handle.receive(), Exited)
        assert await handle.wait_exit() == 3
        handle.close()

    for _ in range(20):
        run(once(Bundle(tmp_path, EXIT_3)))

    def show(name: str, values: list[float]) -> str:
        ms = sorted(v * 1000 for v in values)
        return f"{name}: min {ms[0]:.1f} / median {statistics.median(ms):.1f} / max {ms[-1]:.1f} ms"

    with capsys.disabled():
        print()
        for name, values in (("spawn() returns", to_return), ("spawn() -> Ready", to_ready),
                             ("StartGuest -> Started", to_started)):
            print(show(name, values))
    assert statistics.median(to_ready) < 0.5


def test_a_dead_zygote_is_replaced_at_the_next_spawn(tmp_path: Path) -> None:
    launcher = WorkerLauncher()
    try:
        launcher.warm_up()
        first = launcher.zygote_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        time.sleep(0.05)
        assert run(run_to_end(launcher, Bundle(tmp_path, EXIT_3)))[1] == 3
        assert launcher.zygote_pid not in (None, first)
    finally:
        launcher.close()


SUPERVISOR = """
import asyncio, os, signal, sys
from wasmvisor.ipc.zygote import WorkerLauncher
from wasmvisor.ipc.messages import Configure, StartGuest

async def main():
    launcher = WorkerLauncher()
    launcher.warm_up()
    handle = await launcher.spawn(Configure(namespace="ns", id="orphan", bundle=sys.argv[1], rootfs=sys.argv[2]))
    await handle.receive()
    await handle.send(StartGuest())
    await handle.receive()
    print(launcher.zygote_pid, handle.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_the_zygote_dies_with_the_supervisor_and_the_worker_does_not(tmp_path: Path) -> None:
    import subprocess

    bundle = Bundle(tmp_path, SLEEP, stdout="none")
    log = tmp_path / "supervisor.log"  # a file: the orphaned worker keeps logging to it
    with log.open("w") as stderr:
        proc = subprocess.run([sys.executable, "-c", SUPERVISOR, str(bundle.dir), str(bundle.rootfs)],
                              stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=30)
    assert proc.returncode == -signal.SIGKILL, log.read_text()
    zygote, worker = map(int, proc.stdout.split())
    try:
        for _ in range(100):
            if not running(zygote):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the zygote outlived its supervisor")
        os.kill(worker, 0)
        for _ in range(100):  # a worker exec'ing the runner (worker/runner_exec.py) has no command line for a moment
            if Path(f"/proc/{worker}/cmdline").read_bytes():
                break
            time.sleep(0.01)
        assert Path(f"/proc/{worker}/cmdline").read_bytes().startswith(b"wasmvisor-worker ns/orphan")
    finally:
        os.kill(worker, signal.SIGKILL)



def test_the_zygote_freezes_its_heap_so_workers_share_it() -> None:
    """gc.freeze() after the preload: the collector in a worker never copies the zygote's pages."""
    launcher = WorkerLauncher(entry="tests.unit.ipc.freeze_probe")
    try:
        launcher.warm_up()

        async def frozen_count() -> int:
            handle = await launcher.spawn(Configure(namespace="t", id="freeze", bundle="/", rootfs="/"))
            try:
                msg = await handle.receive()
                assert isinstance(msg, Ready)
                return msg.pid
            finally:
                handle.close()

        assert run(frozen_count()) > 10_000
    finally:
        launcher.close()
