"""`ctr --address SOCK -n NAMESPACE ...` for end-to-end tests: run containers (foreground, detached,
with input, on a terminal), list tasks, kill, record `ctr events`. Written against ctr 1.6's commands
and output formats."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.e2e.containerd import PrivateContainerd

WASMVISOR_RUNTIME = "io.containerd.wasmvisor.v1"
RUNC_RUNTIME = "io.containerd.runc.v2"


class CtrError(RuntimeError):
    """A ctr command that had to succeed failed; the message carries its output."""


@dataclass
class RunResult:
    """What a `ctr run` printed and returned."""

    returncode: int
    stdout: str
    stderr: str

    def __iter__(self) -> Iterator[Any]:
        return iter((self.returncode, self.stdout, self.stderr))

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass(frozen=True)
class TaskInfo:
    id: str
    pid: int
    status: str


_EVENT_LINE = re.compile(r"^(?P<time>.+?) (?P<namespace>\S+) (?P<topic>/\S+)(?: (?P<payload>.*))?$")


@dataclass(frozen=True)
class Event:
    """One line of `ctr events`: `<time> <namespace> <topic> <json>`."""

    namespace: str
    topic: str
    payload: dict[str, Any]
    line: str

    @classmethod
    def parse(cls, line: str) -> Event | None:
        match = _EVENT_LINE.match(line.strip())
        if not match:
            return None
        try:
            payload = json.loads(match.group("payload") or "{}")
        except json.JSONDecodeError:
            payload = {}
        return cls(match.group("namespace"), match.group("topic"), payload, line)


@dataclass
class EventRecorder:
    """A running `ctr events`, collecting lines of one namespace from a reader thread."""

    process: subprocess.Popen[str]
    namespace: str
    lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        def pump() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                with self._lock:
                    self.lines.append(line.rstrip("\n"))

        self._thread = threading.Thread(target=pump, daemon=True)
        self._thread.start()

    def events(self, container_id: str | None = None) -> list[Event]:
        with self._lock:
            lines = list(self.lines)
        parsed = [e for e in (Event.parse(line) for line in lines) if e and e.namespace == self.namespace]
        if container_id is None:
            return parsed
        return [e for e in parsed if container_id in (e.payload.get("container_id"), e.payload.get("id"))]

    def topics(self, container_id: str | None = None) -> list[str]:
        return [e.topic for e in self.events(container_id)]

    def wait_for(self, topic: str, container_id: str | None = None, timeout: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events(container_id):
                if event.topic == topic:
                    return event
            time.sleep(0.02)
        raise AssertionError(f"no {topic} event for {container_id} within {timeout}s; saw {self.topics()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._thread is not None:
            self._thread.join(5)


class ForegroundRun:
    """A `ctr run` still running in the foreground; its stdout and stderr are read by threads."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._out: list[str] = []
        self._err: list[str] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._pump, args=(process.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(process.stderr, self._err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: Any, sink: list[str]) -> None:
        while True:
            chunk = stream.read1(4096)
            if not chunk:
                return
            with self._lock:
                sink.append(chunk.decode(errors="replace"))

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self._out)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._err)

    def wait_for_stdout(self, text: str, timeout: float = 10.0) -> None:
        """Return once `text` was printed; fail (with what was printed) if ctr ends or time runs out."""
        deadline = time.monotonic() + timeout
        while text not in self.stdout:
            if self.process.poll() is not None:
                for thread in self._threads:
                    thread.join(2)
                if text in self.stdout:
                    return
                raise AssertionError(
                    f"ctr run ended ({self.process.returncode}) before printing {text!r}: "
                    f"stdout={self.stdout!r} stderr={self.stderr!r}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{text!r} not printed within {timeout}s: stdout={self.stdout!r} stderr={self.stderr!r}"
                )
            time.sleep(0.02)

    def wait(self, timeout: float = 30.0) -> RunResult:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        for thread in self._threads:
            thread.join(5)
        return RunResult(self.process.returncode, self.stdout, self.stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Ctr:
    """`ctr --address SOCK -n NAMESPACE ...` against one private containerd."""

    def __init__(self, containerd: PrivateContainerd, namespace: str) -> None:
        self.containerd = containerd
        self.namespace = namespace
        self.imported: set[str] = set()

    @property
    def prefix(self) -> list[str]:
        return [str(self.containerd.binaries.ctr), "--address", self.containerd.address, "-n", self.namespace]

    def run(
        self, *args: str, input: str | None = None, timeout: float = 60.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.prefix, *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=self.containerd.environment(),
        )
        if check and proc.returncode != 0:
            raise CtrError(
                f"ctr {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc

    def popen(self, *args: str, text: bool = True, **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        if text:
            kwargs.update(text=True, errors="replace")
        return subprocess.Popen([*self.prefix, *args], env=self.containerd.environment(), **kwargs)

    # images

    def import_image(self, tar: str | os.PathLike[str]) -> None:
        """`ctr images import --all-platforms TAR` (wasm images match no host platform), once per tar."""
        key = os.fspath(tar)
        if key in self.imported:
            return
        self.run("images", "import", "--all-platforms", key, check=True, timeout=120)
        self.imported.add(key)

    # containers

    def run_args(
        self,
        image: str,
        container_id: str,
        *args: str,
        runtime: str = WASMVISOR_RUNTIME,
        rm: bool = True,
        flags: Sequence[str] = (),
    ) -> list[str]:
        """The argv (after the ctr prefix) of `ctr run`; stdio FIFOs go under the private base dir."""
        self.containerd.containers.add((self.namespace, container_id))
        opts = ["--runtime", runtime, "--fifo-dir", str(self.containerd.fifo_dir)]
        if rm:
            opts.append("--rm")
        return ["run", *opts, *flags, image, container_id, *args]

    def run_container(
        self,
        image: str,
        container_id: str,
        *args: str,
        runtime: str = WASMVISOR_RUNTIME,
        rm: bool = True,
        flags: Sequence[str] = (),
        input: str | None = None,
        timeout: float = 30.0,
    ) -> RunResult:
        """`ctr run [--rm] --runtime RUNTIME FLAGS IMAGE ID ARGS...`: (returncode, stdout, stderr)."""
        argv = self.run_args(image, container_id, *args, runtime=runtime, rm=rm, flags=flags)
        if input is None:
            proc = self.run(*argv, timeout=timeout)
            return RunResult(proc.returncode, proc.stdout, proc.stderr)
        return self._run_with_input(argv, container_id, input, timeout)

    def _run_with_input(self, argv: list[str], container_id: str, input: str, timeout: float) -> RunResult:
        # ctr 1.6 turns EOF on its stdin into CloseIO only once the task exists; an EOF read before
        # that is lost and the guest waits for more input forever. So: write the input, keep the pipe
        # open until the task runs (or ctr gave up), then close it.
        proc = self.popen(*argv, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        deadline = time.monotonic() + timeout
        try:
            proc.stdin.write(input)
            proc.stdin.flush()
            while proc.poll() is None and time.monotonic() < deadline:
                task = self.tasks().get(container_id)
                if task is not None and task.status in ("RUNNING", "STOPPED"):
                    break
                time.sleep(0.02)
        except BrokenPipeError:
            pass
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            proc.stdin = None  # communicate() must not touch the closed pipe
        try:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise
        return RunResult(proc.returncode, stdout, stderr)

    def run_container_tty(
        self,
        image: str,
        container_id: str,
        *args: str,
        runtime: str = WASMVISOR_RUNTIME,
        rm: bool = True,
        flags: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> RunResult:
        """`ctr run --tty ...` with ctr on a pseudo-terminal (ctr refuses --tty when its stdin is not a
        console). Everything ctr printed comes back as `stdout` (a terminal merges the streams)."""
        master, slave = pty.openpty()
        argv = self.run_args(image, container_id, *args, runtime=runtime, rm=rm, flags=["--tty", *flags])
        try:
            proc = self.popen(*argv, text=False, stdin=slave, stdout=slave, stderr=slave)
        finally:
            os.close(slave)
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    try:
                        data = os.read(master, 4096)
                    except OSError:  # EIO: every slave end is closed
                        break
                    if not data:
                        break
                    chunks.append(data)
                elif proc.poll() is not None:
                    break
            try:
                proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
        finally:
            os.close(master)
        return RunResult(proc.returncode, b"".join(chunks).decode(errors="replace"), "")

    def start_container(
        self,
        image: str,
        container_id: str,
        *args: str,
        runtime: str = WASMVISOR_RUNTIME,
        rm: bool = True,
        flags: Sequence[str] = (),
    ) -> ForegroundRun:
        """`ctr run` in the foreground, not waited for: wait for its output, signal its task, then wait."""
        argv = self.run_args(image, container_id, *args, runtime=runtime, rm=rm, flags=flags)
        return ForegroundRun(self.popen(*argv, text=False))

    def tasks(self) -> dict[str, TaskInfo]:
        """`ctr task ls`: id -> TaskInfo(pid, status) (status RUNNING, STOPPED, CREATED, ...)."""
        proc = self.run("task", "ls", check=True, timeout=30)
        found = {}
        for line in proc.stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3:
                found[parts[0]] = TaskInfo(parts[0], int(parts[1]), parts[2])
        return found

    task_ls = tasks

    def containers(self) -> list[str]:
        return self.run("containers", "ls", "-q", check=True, timeout=30).stdout.split()

    def wait_for_task_status(self, container_id: str, status: str, timeout: float = 10.0) -> TaskInfo:
        deadline = time.monotonic() + timeout
        seen: TaskInfo | None = None
        while time.monotonic() < deadline:
            seen = self.tasks().get(container_id)
            if seen is not None and seen.status == status:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"task {container_id} not {status} within {timeout}s (last seen: {seen})")

    def kill(self, container_id: str, sig: str = "SIGTERM") -> subprocess.CompletedProcess[str]:
        return self.run("task", "kill", "-s", sig, container_id, timeout=30)

    def remove(self, container_id: str) -> None:
        """Best effort: kill and delete the task, delete the container and its snapshot."""
        tasks = self.tasks() if self.run("task", "ls", timeout=30).returncode == 0 else {}
        if container_id in tasks:
            if tasks[container_id].status != "STOPPED":
                self.run("task", "kill", "-s", "SIGKILL", container_id, timeout=30)
            self.run("task", "rm", "-f", container_id, timeout=30)
        self.run("containers", "rm", container_id, timeout=30)

    def remove_all(self) -> None:
        """Best effort: remove every task, container and image of this namespace, then the namespace."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            for container_id in self.containers() if self.run("c", "ls").returncode == 0 else []:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.remove(container_id)
            images = self.run("images", "ls", "-q", timeout=30).stdout.split()
            if images:
                self.run("images", "rm", *images, timeout=60)
            # Snapshots and content go by asynchronous garbage collection: retry for a moment.
            deadline = time.monotonic() + 5
            while self.run("namespaces", "rm", self.namespace, timeout=30).returncode != 0:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        self.imported.clear()

    def _sync_events(self, recorder: EventRecorder, timeout: float = 10.0) -> None:
        """Return once `ctr events` is subscribed: it subscribes asynchronously, so label the
        namespace (a /namespaces/update event) until the recorder has seen one."""
        self.run("namespaces", "create", self.namespace, timeout=30)  # fails when it exists: fine
        deadline = time.monotonic() + timeout
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            self.run("namespaces", "label", self.namespace, f"wasmvisor.test/sync={attempt}", check=True)
            settle = time.monotonic() + 0.5
            while time.monotonic() < settle:
                if "/namespaces/update" in recorder.topics():
                    return
                time.sleep(0.01)
        raise CtrError(f"ctr events saw no event within {timeout}s")

    @contextlib.contextmanager
    def events(self) -> Iterator[EventRecorder]:
        """Record `ctr events` of this namespace while the block runs (started before it begins)."""
        proc = subprocess.Popen(
            [
                str(self.containerd.binaries.ctr),
                "--address",
                self.containerd.address,
                "events",
                f"namespace=={self.namespace}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=self.containerd.environment(),
        )
        recorder = EventRecorder(proc, self.namespace)
        recorder.start()
        try:
            self._sync_events(recorder)
            yield recorder
        finally:
            recorder.stop()
