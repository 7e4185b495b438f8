"""EventPublisher: task events to containerd, in order, through ttrpc Events/Forward on $TTRPC_ADDRESS.

`publish` only appends to one FIFO queue (the event's timestamp is taken then); one task drains it,
so events leave in the order the state changes happened (create < start < exit < delete). A failed
Forward is retried with growing delays, reconnecting when the connection dropped; an event that
still fails is dropped with an error log. Past MAX_QUEUE queued events the oldest one that is not
a TaskExit is dropped (exits are kept). Publishing is never fatal to the supervisor.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from google.protobuf import any_pb2, empty_pb2, timestamp_pb2
from google.protobuf.message import Message

from wasmvisor.errors import Code, RpcError
from wasmvisor.proto.containerd.services.events.ttrpc.v1 import events_pb2 as forward_pb2
from wasmvisor.supervisor.rpc.ttrpc_client import TtrpcClient

logger = logging.getLogger(__name__)

EVENTS_SERVICE = "containerd.services.events.ttrpc.v1.Events"
NAMESPACE_KEY = "containerd-namespace-ttrpc"
RETRY_DELAYS = (0.1, 0.2, 0.4, 0.8, 1.6)
"""Pause before each retry; one attempt plus len(RETRY_DELAYS) retries per event."""
CALL_TIMEOUT = 5.0
"""Per attempt, as the Go publisher."""
MAX_QUEUE = 2048
"""Events queued past this drop the oldest one that is not an exit; exits are never dropped."""
EXIT_TOPIC = "/tasks/exit"

Connector = Callable[[str], Awaitable[TtrpcClient]]


@dataclass(frozen=True, slots=True)
class _Event:
    topic: str
    type_url: str
    value: bytes
    timestamp_ns: int
    container_id: str


class EventPublisher:
    """One ordered queue of events and the task that forwards them to containerd."""

    def __init__(
        self,
        ttrpc_address: str,
        namespace: str,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        call_timeout: float = CALL_TIMEOUT,
        max_queue: int = MAX_QUEUE,
        connect: Connector = TtrpcClient.connect,
    ) -> None:
        self.address = ttrpc_address
        self.namespace = namespace
        self._retry_delays = tuple(retry_delays)
        self._call_timeout = call_timeout
        self._max_queue = max_queue
        self._connect = connect
        self._metadata = {NAMESPACE_KEY: namespace}
        self._queue: collections.deque[_Event] = collections.deque()
        self._in_flight = False
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._client: TtrpcClient | None = None
        self._closing = False
        self._warned_no_address = False

    @property
    def pending(self) -> int:
        """Events queued or being sent."""
        return len(self._queue) + self._in_flight

    def publish(self, topic: str, event: Message) -> None:
        """Queue `event` under `topic`, stamped now. Never blocks, never raises for delivery problems.

        Call it from the event loop's thread."""
        container_id = str(getattr(event, "container_id", ""))
        if not self.address:
            if not self._warned_no_address:
                self._warned_no_address = True
                logger.warning("TTRPC_ADDRESS is empty: task events are not published")
            return
        if self._closing:
            logger.error("event %s (container %s) published after close: dropped", topic, container_id)
            return
        new = _Event(topic, event.DESCRIPTOR.full_name, event.SerializeToString(), time.time_ns(), container_id)
        if len(self._queue) >= self._max_queue:
            old = self._drop_oldest_but_exits(new)
            if old is not None:
                logger.error(
                    "event queue full (%d): dropping oldest event %s (container %s)",
                    self._max_queue,
                    old.topic,
                    old.container_id,
                )
                if old is new:
                    return
        self._queue.append(new)
        self._idle.clear()
        self._wakeup.set()

    def _drop_oldest_but_exits(self, new: _Event) -> _Event | None:
        """Remove the oldest queued event that is not a TaskExit (a task's end must reach
        containerd, or its Wait never returns there); `new` itself when every queued event is an
        exit and it is not one; None when all are exits (the queue then grows past its bound)."""
        for index, old in enumerate(self._queue):
            if old.topic != EXIT_TOPIC:
                del self._queue[index]
                return old
        return new if new.topic != EXIT_TOPIC else None

    async def start(self) -> None:
        """Start the task that drains the queue (events published before are kept)."""
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="event-publisher")

    async def flush(self) -> None:
        """Wait until every event published so far was delivered or dropped (needs start())."""
        await self._idle.wait()

    async def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within `timeout` seconds, then stop and disconnect."""
        self._closing = True
        if self._queue and self._task is None:
            await self.start()
        if self._task is not None:
            try:
                await asyncio.wait_for(self.flush(), timeout)
            except TimeoutError:
                logger.error("event publisher closed with %d undelivered event(s)", self.pending)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._queue.clear()
        self._in_flight = False
        self._idle.set()
        await self._disconnect()

    async def _drain(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            event = self._queue.popleft()
            self._in_flight = True
            try:
                await self._deliver(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop the events that follow
                logger.exception("event %s (container %s) dropped", event.topic, event.container_id)
            finally:
                self._in_flight = False

    async def _deliver(self, event: _Event) -> None:
        seconds, nanos = divmod(event.timestamp_ns, 1_000_000_000)
        request = forward_pb2.ForwardRequest(  # type: ignore[attr-defined]
            envelope=forward_pb2.Envelope(  # type: ignore[attr-defined]
                timestamp=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos),
                namespace=self.namespace,
                topic=event.topic,
                event=any_pb2.Any(type_url=event.type_url, value=event.value),
            )
        )
        attempts = 1 + len(self._retry_delays)
        for attempt in range(attempts):
            try:
                client = await self._connected()
                await client.call(
                    EVENTS_SERVICE,
                    "Forward",
                    request,
                    empty_pb2.Empty,
                    timeout=self._call_timeout,
                    metadata=self._metadata,
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if isinstance(e, RpcError) and e.code == Code.INVALID_ARGUMENT:
                    # containerd rejected the envelope itself (bad topic/namespace): retrying is futile.
                    logger.error("event %s (container %s) rejected: %s", event.topic, event.container_id, e)
                    return
                if self._client is not None and self._client.closed:
                    await self._disconnect()
                if attempt + 1 == attempts:
                    logger.error(
                        "event %s (container %s) dropped after %d attempts: %s",
                        event.topic,
                        event.container_id,
                        attempts,
                        e,
                    )
                    return
                delay = self._retry_delays[attempt]
                logger.warning(
                    "event %s (container %s) not delivered (attempt %d/%d): %s; retrying in %.1f s",
                    event.topic,
                    event.container_id,
                    attempt + 1,
                    attempts,
                    e,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _connected(self) -> TtrpcClient:
        if self._client is None or self._client.closed:
            self._client = await self._connect(self.address)
        return self._client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
