"""EventPublisher against a fake containerd Events service served by our own ttrpc server."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from google.protobuf import empty_pb2

from wasmvisor.errors import InvalidArgument, Unavailable
from wasmvisor.proto.containerd.events import task_pb2 as events_pb2
from wasmvisor.proto.containerd.services.events.ttrpc.v1 import events_pb2 as forward_pb2
from wasmvisor.supervisor.rpc.service import Call, Method, Service
from wasmvisor.supervisor.rpc.ttrpc_server import TtrpcServer
from wasmvisor.supervisor.tasks.publisher import EVENTS_SERVICE, EventPublisher

T = TypeVar("T")
FAST = (0.01, 0.02, 0.04, 0.08, 0.16)


def run(coro: Awaitable[T]) -> T:
    leaked: list[dict[str, Any]] = []

    async def main() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: leaked.append(ctx))
        return await asyncio.wait_for(coro, 30)

    result = asyncio.run(main())
    assert not leaked, leaked
    return result


@pytest.fixture
def sock_path() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="wv-events-")
    yield os.path.join(folder, "containerd.sock.ttrpc")
    shutil.rmtree(folder, ignore_errors=True)


class FakeContainerd:
    """Records every Forward; `fail` decides, per call number, whether to raise instead."""

    def __init__(self, fail: Callable[[int, Any], Exception | None] = lambda n, req: None) -> None:
        self.received: list[tuple[Any, Call]] = []
        self.calls = 0
        self.fail = fail
        self.server: TtrpcServer | None = None

    async def forward(self, request: Any, call: Call) -> empty_pb2.Empty:
        self.calls += 1
        error = self.fail(self.calls, request)
        if error is not None:
            raise error
        self.received.append((request, call))
        return empty_pb2.Empty()

    async def start(self, path: str) -> None:
        method = Method("Forward", forward_pb2.ForwardRequest, empty_pb2.Empty, self.forward)
        self.server = TtrpcServer([Service(EVENTS_SERVICE, {"Forward": method})])
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        await self.server.start(sock)

    async def stop(self, path: str) -> None:
        assert self.server is not None
        await self.server.close()
        os.unlink(path)

    def exits(self) -> list[str]:
        return [events_pb2.TaskExit.FromString(r.envelope.event.value).container_id for r, _ in self.received]


def task_exit(container_id: str, status: int = 0) -> events_pb2.TaskExit:
    return events_pb2.TaskExit(container_id=container_id, id=container_id, pid=42, exit_status=status)


def test_hundred_events_arrive_in_order_with_bare_type_urls_namespace_and_timestamps(sock_path: str) -> None:
    fake = FakeContainerd()

    async def scenario() -> None:
        await fake.start(sock_path)
        publisher = EventPublisher(sock_path, "k8s.io", retry_delays=FAST)
        await publisher.start()
        before = time.time()
        publisher.publish("/tasks/create", events_pb2.TaskCreate(container_id="c0", pid=7))
        for i in range(99):
            publisher.publish("/tasks/exit", task_exit(f"c{i + 1}", i))
        await publisher.flush()
        after = time.time()
        await publisher.close(1)
        await fake.stop(sock_path)

        assert len(fake.received) == 100
        first, call = fake.received[0]
        assert first.envelope.topic == "/tasks/create"
        assert first.envelope.event.type_url == "containerd.events.TaskCreate"
        assert call.metadata["containerd-namespace-ttrpc"] == "k8s.io"
        assert call.deadline is not None and call.deadline - time.monotonic() <= 5
        stamps = []
        for i, (request, _) in enumerate(fake.received[1:], start=1):
            envelope = request.envelope
            assert envelope.namespace == "k8s.io"
            assert envelope.topic == "/tasks/exit"
            assert envelope.event.type_url == "containerd.events.TaskExit"
            event = events_pb2.TaskExit.FromString(envelope.event.value)
            assert (event.container_id, event.exit_status) == (f"c{i}", i - 1)
            stamps.append(envelope.timestamp.ToNanoseconds())
        assert stamps == sorted(stamps)
        assert before * 1e9 - 1e6 <= stamps[0] <= after * 1e9 + 1e6

    run(scenario())


def test_timestamp_is_taken_when_published_not_when_sent(sock_path: str) -> None:
    fake = FakeContainerd()

    async def scenario() -> None:
        await fake.start(sock_path)
        publisher = EventPublisher(sock_path, "default", retry_delays=FAST)
        published_at = time.time_ns()
        publisher.publish("/tasks/start", events_pb2.TaskStart(container_id="c", pid=1))
        await asyncio.sleep(0.2)
        await publisher.start()
        await publisher.flush()
        await publisher.close(1)
        await fake.stop(sock_path)
        stamp = fake.received[0][0].envelope.timestamp.ToNanoseconds()
        assert published_at <= stamp < published_at + 100_000_000

    run(scenario())


def test_failing_forwards_are_retried_and_order_is_kept(sock_path: str, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeContainerd(fail=lambda n, req: Unavailable("containerd busy") if n <= 3 else None)

    async def scenario() -> None:
        await fake.start(sock_path)
        publisher = EventPublisher(sock_path, "default", retry_delays=FAST)
        await publisher.start()
        for i in range(10):
            publisher.publish("/tasks/exit", task_exit(f"c{i}"))
        await publisher.flush()
        await publisher.close(1)
        await fake.stop(sock_path)

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert fake.exits() == [f"c{i}" for i in range(10)]
    assert fake.calls == 13
    retries = [r for r in caplog.records if r.levelno == logging.WARNING and "not delivered" in r.getMessage()]
    assert len(retries) == 3 and "c0" in retries[0].getMessage()


def test_event_still_failing_after_five_retries_is_dropped_and_the_next_goes_out(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(n: int, request: Any) -> Exception | None:
        event = events_pb2.TaskExit.FromString(request.envelope.event.value)
        return Unavailable("nope") if event.container_id == "doomed" else None

    fake = FakeContainerd(fail=fail)

    async def scenario() -> None:
        await fake.start(sock_path)
        publisher = EventPublisher(sock_path, "default", retry_delays=FAST)
        await publisher.start()
        publisher.publish("/tasks/exit", task_exit("doomed"))
        publisher.publish("/tasks/exit", task_exit("fine"))
        await publisher.flush()
        await publisher.close(1)
        await fake.stop(sock_path)

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert fake.exits() == ["fine"]
    assert fake.calls == 7  # 6 attempts for "doomed", 1 for "fine"
    (dropped,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "/tasks/exit" in dropped and "doomed" in dropped


def test_rejected_envelope_is_not_retried(sock_path: str, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeContainerd(fail=lambda n, req: InvalidArgument("bad topic") if n == 1 else None)

    async def scenario() -> None:
        await fake.start(sock_path)
        publisher = EventPublisher(sock_path, "default", retry_delays=FAST)
        await publisher.start()
        publisher.publish("/tasks/exit", task_exit("bad"))
        publisher.publish("/tasks/exit", task_exit("good"))
        await publisher.flush()
        await publisher.close(1)
        await fake.stop(sock_path)

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert fake.calls == 2 and fake.exits() == ["good"]


def test_publisher_reconnects_after_containerd_restarts(sock_path: str) -> None:
    first, second = FakeContainerd(), FakeContainerd()

    async def scenario() -> None:
        await first.start(sock_path)
        publisher = EventPublisher("unix://" + sock_path, "default", retry_delays=FAST)
        await publisher.start()
        publisher.publish("/tasks/exit", task_exit("before"))
        await publisher.flush()
        await first.stop(sock_path)
        publisher.publish("/tasks/exit", task_exit("during"))
        await asyncio.sleep(0.02)
        await second.start(sock_path)
        publisher.publish("/tasks/exit", task_exit("after"))
        await publisher.flush()
        await publisher.close(1)
        await second.stop(sock_path)

    run(scenario())
    assert first.exits() == ["before"]
    assert second.exits() == ["during", "after"]


def test_absent_containerd_never_raises_and_close_keeps_its_timeout(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> float:
        publisher = EventPublisher(sock_path, "default")  # real delays: 0.1 s .. 1.6 s
        await publisher.start()
        for i in range(20):
            publisher.publish("/tasks/exit", task_exit(f"c{i}"))
        started = time.monotonic()
        await publisher.close(0.5)
        publisher.publish("/tasks/exit", task_exit("late"))
        return time.monotonic() - started

    with caplog.at_level(logging.WARNING):
        elapsed = run(scenario())
    assert elapsed < 1.0
    assert any("undelivered" in r.getMessage() for r in caplog.records)


def delivered(fake: FakeContainerd) -> list[str]:
    """`topic container` of each event containerd got, in order."""
    out = []
    for r, _ in fake.received:
        event = events_pb2.TaskStart.FromString(r.envelope.event.value)  # container_id is field 1 of all
        out.append(f"{r.envelope.topic} {event.container_id}")
    return out


def overflow(sock_path: str, fake: FakeContainerd, events: list[tuple[str, Any]], max_queue: int) -> None:
    """Publish `events` before the publisher starts (so they all queue), then deliver them."""

    async def scenario() -> None:
        await fake.start(sock_path)
        publisher = EventPublisher(sock_path, "default", retry_delays=FAST, max_queue=max_queue)
        for topic, event in events:
            publisher.publish(topic, event)
        await publisher.start()
        await publisher.flush()
        await publisher.close(1)
        await fake.stop(sock_path)

    run(scenario())


def test_queue_overflow_drops_the_oldest_event_that_is_not_an_exit(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeContainerd()
    events = [("/tasks/exit", task_exit("c0")), ("/tasks/start", events_pb2.TaskStart(container_id="c1")),
              ("/tasks/start", events_pb2.TaskStart(container_id="c2")), ("/tasks/exit", task_exit("c3")),
              ("/tasks/delete", events_pb2.TaskDelete(container_id="c4"))]
    with caplog.at_level(logging.ERROR):
        overflow(sock_path, fake, events, max_queue=3)
    assert delivered(fake) == ["/tasks/exit c0", "/tasks/exit c3", "/tasks/delete c4"]
    dropped = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert dropped == ["event queue full (3): dropping oldest event /tasks/start (container c1)",
                       "event queue full (3): dropping oldest event /tasks/start (container c2)"]


def test_exit_events_are_never_dropped_even_past_the_bound(sock_path: str, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeContainerd()
    with caplog.at_level(logging.ERROR):
        overflow(sock_path, fake, [("/tasks/exit", task_exit(f"c{i}")) for i in range(5)], max_queue=3)
    assert fake.exits() == ["c0", "c1", "c2", "c3", "c4"]
    assert not [r for r in caplog.records if r.levelno == logging.ERROR]


def test_an_event_that_finds_the_queue_full_of_exits_is_the_one_dropped(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeContainerd()
    events = [("/tasks/exit", task_exit("c0")), ("/tasks/exit", task_exit("c1")),
              ("/tasks/oom", events_pb2.TaskOOM(container_id="c2")), ("/tasks/exit", task_exit("c2"))]
    with caplog.at_level(logging.ERROR):
        overflow(sock_path, fake, events, max_queue=2)
    assert delivered(fake) == ["/tasks/exit c0", "/tasks/exit c1", "/tasks/exit c2"]
    dropped = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert dropped == ["event queue full (2): dropping oldest event /tasks/oom (container c2)"]


def test_empty_ttrpc_address_drops_events_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        publisher = EventPublisher("", "default")
        await publisher.start()
        for i in range(3):
            publisher.publish("/tasks/exit", task_exit(f"c{i}"))
        await publisher.flush()
        await publisher.close(1)

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert [r.getMessage() for r in caplog.records] == ["TTRPC_ADDRESS is empty: task events are not published"]


def test_close_delivers_what_is_still_queued(sock_path: str) -> None:
    fake = FakeContainerd()

    async def scenario() -> None:
        await fake.start(sock_path)
        publisher = EventPublisher(sock_path, "default", retry_delays=FAST)
        await publisher.start()
        publisher.publish("/tasks/exit", task_exit("c"))
        publisher.publish("/tasks/delete", events_pb2.TaskDelete(container_id="c"))
        await publisher.close(2)
        await fake.stop(sock_path)

    run(scenario())
    assert [r.envelope.topic for r, _ in fake.received] == ["/tasks/exit", "/tasks/delete"]
