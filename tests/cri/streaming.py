"""A client of the CRI streaming server (the URL that CRI's Exec answers), as `kubectl exec` reaches it
through the kubelet: a WebSocket with the `v4.channel.k8s.io` subprotocol, written on the standard
library alone.

Every binary message starts with its channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the exec's final
status (a JSON metav1.Status), 4 terminal resize. The server sends the status, then closes.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import urllib.parse
from dataclasses import dataclass, field

PROTOCOL = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, STATUS, RESIZE = range(5)
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class StreamError(RuntimeError):
    """The streaming server refused the exec or broke the protocol; the message says how."""


@dataclass
class ExecResult:
    """What a streamed exec wrote and how it ended."""

    stdout: bytes = b""
    stderr: bytes = b""
    status: dict[str, object] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 on Success; the ExitCode cause of a NonZeroExitCode failure; else the failure is raised."""
        if self.status.get("status") == "Success":
            return 0
        details = self.status.get("details")
        if self.status.get("reason") == "NonZeroExitCode" and isinstance(details, dict):
            for cause in details.get("causes", []):
                if cause.get("reason") == "ExitCode":
                    return int(cause["message"])
        raise StreamError(f"exec failed: {self.status.get('message') or self.status}")


class WebSocket:
    """One client WebSocket connection: masked frames out, unmasked frames in, pings answered."""

    def __init__(self, url: str, protocol: str = PROTOCOL, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise StreamError(f"streaming URL {url}: expected http://HOST:PORT/...")
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = self._read_until(b"\r\n\r\n").decode(errors="replace")
        if not head.startswith("HTTP/1.1 101"):
            raise StreamError(f"streaming URL {url}: no WebSocket upgrade: {head.splitlines()[0] if head else 'EOF'}")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise StreamError("streaming server closed the connection during the handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def receive(self) -> bytes | None:
        """The next whole data message, None once the server closed."""
        message = b""
        while True:
            try:
                first, second = self._read_exact(2)
            except EOFError:
                return None
            opcode, size = first & 0x0F, second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", self._read_exact(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", self._read_exact(8))
            mask = self._read_exact(4) if second & 0x80 else b""
            payload = self._read_exact(size)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == OP_CLOSE:
                return None
            if opcode == OP_PING:
                self.send(payload, OP_PONG)
                continue
            if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                message += payload
                if first & 0x80:
                    return message

    def close(self) -> None:
        try:
            self.send(b"", OP_CLOSE)
        except OSError:
            pass
        self.sock.close()


def stream_exec(url: str, stdin: bytes | None = None, timeout: float = 30.0) -> ExecResult:
    """Run the exec behind `url`: send `stdin` (when the exec asked for stdin), collect stdout, stderr
    and the final status until the server closes."""
    ws = WebSocket(url, timeout=timeout)
    result = ExecResult()
    try:
        if stdin:
            ws.send(bytes([STDIN]) + stdin)
        while (message := ws.receive()) is not None:
            if not message:
                continue
            channel, data = message[0], message[1:]
            if channel == STDOUT:
                result.stdout += data
            elif channel == STDERR:
                result.stderr += data
            elif channel == STATUS and data:
                result.status = json.loads(data)
    finally:
        ws.close()
    if not result.status:
        raise StreamError(f"streaming server closed without the exec's status (stdout {result.stdout[:200]!r})")
    return result
