"""A real supervisor started through the shim's own `start` action, driven over ttrpc.

No containerd here: a stand-in events server records what the supervisor publishes, and the
tests call the Task API directly. This is where the state machine and error codes are pinned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import wasmtime

from tests.e2e.host import is_alive, kill_pids, process_titles, process_tree
from tests.guests.build import GUESTS_DIR
from wasmvisor.proto.containerd.services.events.ttrpc.v1 import events_pb2 as forward_pb2
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb
from wasmvisor.supervisor.rpc.service import service_from_descriptor
from wasmvisor.supervisor.rpc.ttrpc_client import TtrpcClient
from wasmvisor.supervisor.rpc.ttrpc_server import TtrpcServer

SHIM = Path(sys.executable).parent / "containerd-shim-wasmvisor-v1"
TASK = "containerd.task.v2.Task"
SHUTDOWN_GRACE_SECONDS = 3.0
"""How long close() waits for a supervisor to exit after Shutdown before it kills its tree."""


class EventsRecorder:
    """containerd's Events/Forward, recording every envelope."""

    def __init__(self) -> None:
        self.envelopes: list[forward_pb2.Envelope] = []

    async def Forward(self, req: forward_pb2.ForwardRequest, call: object) -> object:
        from google.protobuf.empty_pb2 import Empty

        self.envelopes.append(req.envelope)
        return Empty()

    def topics(self, container_id: str) -> list[str]:
        from wasmvisor.proto.containerd.events import task_pb2 as ev

        out = []
        for env in self.envelopes:
            name = env.event.type_url.rsplit("/", 1)[-1].split(".")[-1]
            msg = getattr(ev, name)()
            msg.ParseFromString(env.event.value)
            if msg.container_id == container_id:
                out.append(env.topic)
        return out


class Harness:
    """One private socket dir, one events server on its own loop thread, bundles on demand."""

    def __init__(self, base: Path, events: EventsRecorder | None = None) -> None:
        self.base = base
        self.sockets = base / "s"
        self.sockets.mkdir()
        self.events = events if events is not None else EventsRecorder()
        self.events_sock = str(base / "events.sock")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        descriptor = forward_pb2.DESCRIPTOR.services_by_name["Events"]
        service = service_from_descriptor("containerd.services.events.ttrpc.v1.Events", descriptor, self.events)
        self.server = TtrpcServer([service])
        self.run(self._serve_events())
        self.addresses: list[str] = []
        self.started: dict[str, list[str]] = {}
        """Address -> the ids of the tasks `start` was run for there: close() sends each its Shutdown,
        which settles its claim, as containerd does after a task."""
        self.clients: list[TtrpcClient] = []

    async def _cancel_rest(self) -> None:
        me = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not me]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    async def _serve_events(self) -> None:
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.events_sock)
        sock.listen(64)
        self._events_task = asyncio.get_running_loop().create_task(self.server.serve(sock))

    def run(self, coro, timeout: float = 30):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run_later(self, coro):  # type: ignore[no-untyped-def]
        """Run `coro` on the harness's loop without waiting: a concurrent.futures.Future of its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def bundle(self, task_id: str, files: dict[str, bytes], args: list[str], *,
               annotations: dict[str, str] | None = None, env: list[str] | None = None) -> Path:
        bundle = self.base / "bundles" / task_id
        rootfs = bundle / "rootfs"
        rootfs.mkdir(parents=True)
        for name, data in files.items():
            path = rootfs / name.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        spec = {
            "ociVersion": "1.0.2",
            "process": {"args": args, "env": env or ["PATH=/"], "cwd": "/", "terminal": False},
            "root": {"path": "rootfs"},
            "annotations": annotations or {},
        }
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    def start_shim(self, bundle: Path, task_id: str, namespace: str = "itest",
                   env_extra: dict[str, str] | None = None) -> str:
        address = self.start_answer(bundle, task_id, namespace, env_extra)
        assert address.startswith("unix://"), address
        return address

    def start_answer(self, bundle: Path, task_id: str, namespace: str = "itest",
                     env_extra: dict[str, str] | None = None, stdin: bytes = b"") -> str:
        """Run `start` as containerd does (with `stdin`): its whole answer, plain or JSON. The address in
        it is recorded, so that close() shuts the supervisor down."""
        env = dict(os.environ, TTRPC_ADDRESS=self.events_sock, WASMVISOR_SOCKET_DIR=str(self.sockets),
                   **(env_extra or {}))
        out = subprocess.run(
            [str(SHIM), "-namespace", namespace, "-address", str(self.base / "containerd.sock"),
             "-publish-binary", "/bin/false", "-id", task_id, "start"],
            cwd=bundle, env=env, capture_output=True, timeout=30, input=stdin,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        answer = out.stdout.decode()
        address = json.loads(answer)["address"] if answer.startswith("{") else answer
        self.addresses.append(address)
        self.started.setdefault(address, []).append(task_id)
        return answer

    def client(self, address: str) -> TtrpcClient:
        client = self.run(TtrpcClient.connect(address))
        self.clients.append(client)
        return client

    def call(self, client: TtrpcClient, method: str, request, response_type, timeout: float = 20):  # type: ignore[no-untyped-def]
        md = {"containerd-namespace-ttrpc": "itest"}
        return self.run(client.call(TASK, method, request, response_type, metadata=md), timeout=timeout)

    def templates(self) -> list[int]:
        """Live supervisor templates (supervisor/shim/template_server.py) that this harness's starts launched."""
        return [pid for pid, title in process_titles().items()
                if title.startswith("wasmvisor-template ") and f" {self.sockets}/" in title and is_alive(pid)]

    def close(self) -> None:
        """Shut every supervisor down; one that still holds tasks (a failed test, a benchmark's
        sandbox) is killed with its zygote and workers, so nothing outlives the harness."""
        supervisors: list[int] = []
        for address in set(self.addresses):
            try:
                c = self.client(address)
                supervisors.append(self.call(c, "Connect", pb.ConnectRequest(), pb.ConnectResponse).shim_pid)
                for task_id in dict.fromkeys(self.started[address]):
                    self.run(c.call(TASK, "Shutdown", pb.ShutdownRequest(id=task_id), _empty()), timeout=5)
            except Exception:
                pass
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while any(is_alive(pid) for pid in supervisors) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in supervisors:
            if is_alive(pid):
                kill_pids(process_tree(pid))
        kill_pids(self.templates())
        for client in self.clients:
            self.run(client.close(), timeout=5)
        self.run(self.server.close())
        self.run(self._cancel_rest(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def ended(pid: int, socket_path: str, within: float = 10.0) -> bool:
    """Whether the supervisor `pid` has exited and its socket file is gone, waiting up to `within` seconds."""
    deadline = time.monotonic() + within
    while (is_alive(pid) or os.path.exists(socket_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not is_alive(pid) and not os.path.exists(socket_path)


def _empty():  # type: ignore[no-untyped-def]
    from google.protobuf.empty_pb2 import Empty

    return Empty


def wat(text: str) -> bytes:
    return wasmtime.wat2wasm(text)


HELLO = wat("""
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
""")

SLEEPER = wat((GUESTS_DIR / "sleep.wat").read_text())
"""Prints "sleeping" and sleeps for good (tests/guests/sleep.wat)."""


EXIT_WITH = """
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const {code}))))
"""


@contextlib.contextmanager
def running_harness(prefix: str, events: EventsRecorder | None = None) -> Iterator[Harness]:
    """A Harness in a fresh folder under /tmp, closed and removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    h = Harness(base, events)
    try:
        yield h
    finally:
        h.close()
        time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)
