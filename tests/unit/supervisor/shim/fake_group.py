"""A stand-in for a group's running supervisor in `start`'s tests: it listens on the group's socket and
answers each claim (wasmvisor.v1.Group/Claim) with the status it is told, reading the request with
the real protobuf messages and answering with the transport's own frame encoders."""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from google.protobuf.empty_pb2 import Empty
from google.protobuf.wrappers_pb2 import StringValue

from wasmvisor.errors import Code
from wasmvisor.proto import ttrpc_pb2
from wasmvisor.supervisor.rpc.ttrpc import HEADER, MSG_REQUEST, encode_ok_response, encode_status_response


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed early")
        data += chunk
    return data


class FakeGroup:
    """Listens on `path` (in a thread) and answers claims with `code`; records (service, method, task id).

    `reply`: raw bytes sent instead of a ttrpc answer (a server of another protocol); `None` with
    `silent`: accept and never answer."""

    def __init__(self, path: str, code: Code = Code.OK, *, reply: bytes | None = None, silent: bool = False) -> None:
        self.path = path
        self.code = code
        self.reply = reply
        self.silent = silent
        self.claims: list[tuple[str, str, str]] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def __enter__(self) -> FakeGroup:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.listener.close()
        for conn in self._held:
            conn.close()

    @property
    def task_ids(self) -> list[str]:
        return [task_id for _, _, task_id in self.claims]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                self._answer(conn)
            except OSError:
                conn.close()

    def _answer(self, conn: socket.socket) -> None:
        if self.silent:
            self._held.append(conn)  # kept open, never answered
            return
        with conn:
            length, stream_id, kind, _ = HEADER.unpack(_read_exactly(conn, HEADER.size))
            request = ttrpc_pb2.Request.FromString(_read_exactly(conn, length))  # type: ignore[attr-defined]
            assert kind == MSG_REQUEST
            self.claims.append((request.service, request.method, StringValue.FromString(request.payload).value))
            if self.reply is not None:
                conn.sendall(self.reply)
            elif self.code == Code.OK:
                conn.sendall(encode_ok_response(stream_id, Empty().SerializeToString()))
            else:
                conn.sendall(encode_status_response(stream_id, self.code, "told to"))
