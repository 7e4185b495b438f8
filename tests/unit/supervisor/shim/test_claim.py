"""The group claim: `start`'s hand-encoded ttrpc call reads as a real Request, the answers decode to
their status codes, and `ask` tells a granting, refusing, silent, foreign or missing supervisor apart."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from tests.unit.supervisor.shim.fake_group import FakeGroup
from wasmvisor.errors import Code
from wasmvisor.proto import ttrpc_pb2
from wasmvisor.supervisor.lifetime import Lifetime
from wasmvisor.supervisor.rpc.ttrpc import (
    HEADER,
    MSG_REQUEST,
    MSG_RESPONSE,
    encode_frame,
    encode_ok_response,
    encode_status_response,
)
from wasmvisor.supervisor.rpc.ttrpc_server import TtrpcServer
from wasmvisor.supervisor.shim import claim


@pytest.fixture
def path() -> Iterator[str]:
    """A socket path short enough for sun_path (pytest's tmp_path is not); nothing there yet."""
    top = tempfile.mkdtemp(prefix="wv-", dir="/tmp")
    yield str(Path(top) / "group")
    shutil.rmtree(top)


def test_the_request_is_a_ttrpc_request_for_group_claim_with_the_task_id() -> None:
    frame = claim.encode_request("task-7", timeout=1.5)
    length, stream_id, kind, flags = HEADER.unpack(frame[:HEADER.size])
    assert (length, stream_id, kind, flags) == (len(frame) - HEADER.size, 1, MSG_REQUEST, 0)
    request = ttrpc_pb2.Request.FromString(frame[HEADER.size:])  # type: ignore[attr-defined]
    assert (request.service, request.method) == ("wasmvisor.v1.Group", "Claim")
    assert StringValue.FromString(request.payload).value == "task-7"
    assert request.timeout_nano == 1_500_000_000


def test_a_long_task_id_takes_multi_byte_lengths() -> None:
    task_id = "x" * 300
    request = ttrpc_pb2.Request.FromString(claim.encode_request(task_id)[HEADER.size:])  # type: ignore[attr-defined]
    assert StringValue.FromString(request.payload).value == task_id


@pytest.mark.parametrize(("frame", "code"), [
    (encode_ok_response(1, b""), 0),
    (encode_ok_response(1, b"\x0a\x02hi"), 0),
    (encode_frame(1, MSG_RESPONSE, b""), 0),
    (encode_status_response(1, Code.FAILED_PRECONDITION, "ending"), 9),
    (encode_status_response(1, Code.UNIMPLEMENTED, "service wasmvisor.v1.Group"), 12),
])
def test_answers_decode_to_their_status_code(frame: bytes, code: int) -> None:
    assert claim.decode_response(frame) == code


@pytest.mark.parametrize("frame", [
    encode_ok_response(3, b""),  # another stream
    encode_frame(1, MSG_REQUEST, b""),  # not a response
    encode_ok_response(1, b"")[:-1],  # shorter than its header says
    encode_frame(1, MSG_RESPONSE, b"\x0a\x05\x08"),  # status cut short
    encode_frame(1, MSG_RESPONSE, b"\x0f"),  # wire type 7
    b"hello from",
])
def test_frames_that_are_not_the_answer_are_refused(frame: bytes) -> None:
    with pytest.raises(ValueError):
        claim.decode_response(frame)


@pytest.mark.parametrize(("code", "answer"), [
    (Code.OK, claim.GRANTED),
    (Code.FAILED_PRECONDITION, claim.REFUSED),
    (Code.UNIMPLEMENTED, claim.OTHER),  # an older wasmvisor: no Group service
])
def test_ask_reports_what_the_supervisor_answered(path: str, code: Code, answer: str) -> None:
    with FakeGroup(path, code) as group:
        assert claim.ask(path, "t1") == answer
    assert group.claims == [("wasmvisor.v1.Group", "Claim", "t1")]


def test_ask_reports_a_server_of_another_protocol_as_garbled(path: str) -> None:
    with FakeGroup(path, reply=b"HTTP/1.1 400 Bad Request\r\n\r\n"):
        assert claim.ask(path, "t1") == claim.GARBLED


def test_ask_reports_a_server_that_never_answers_as_silent(path: str) -> None:
    with FakeGroup(path, silent=True):
        assert claim.ask(path, "t1", timeout=0.2) == claim.SILENT


def test_ask_reports_no_file_and_a_stale_file_as_absent(path: str) -> None:
    assert claim.ask(path, "t1") == claim.ABSENT
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays; nobody listens
    assert claim.ask(path, "t1") == claim.ABSENT


class ServedGroup:
    """The real Group service of a Lifetime, on the real ttrpc server, in a loop thread."""

    def __init__(self, path: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ended = threading.Event()
        # release does nothing here, so that the refusal itself can be seen on the same path
        self.lifetime = Lifetime(lambda: 0, release=lambda: None, end=self.ended.set,
                                 call_later=lambda delay, callback: self.loop.call_later(delay, callback))
        self.server = TtrpcServer([claim.service(self.lifetime.claim, self.lifetime.released, "ns/group")])
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen()
        asyncio.run_coroutine_threadsafe(self.server.start(listener), self.loop).result(10)

    def call(self, fn):  # type: ignore[no-untyped-def]
        async def run():  # type: ignore[no-untyped-def]
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_the_group_service_grants_claims_until_the_supervisor_ends(path: str) -> None:
    group = ServedGroup(path)
    try:
        assert claim.ask(path, "t1") == claim.GRANTED
        assert group.call(lambda: group.lifetime.claims) == ["t1"]
        assert claim.ask(path, "") == claim.OTHER  # INVALID_ARGUMENT: no task id
        group.call(group.lifetime.end)
        assert group.ended.is_set()
        assert claim.ask(path, "t2") == claim.REFUSED
    finally:
        group.close()


def test_release_settles_the_claim_and_an_idle_supervisor_then_ends(path: str) -> None:
    group = ServedGroup(path)
    group.lifetime.linger = 0.0
    try:
        assert claim.ask(path, "t1") == claim.GRANTED
        assert claim.ask(path, "t1", method=claim.RELEASE) == claim.GRANTED
        assert group.call(lambda: group.lifetime.claims) == []
        assert group.ended.wait(10)
    finally:
        group.close()
