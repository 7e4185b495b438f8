"""containerd 2.3's start-up handshake on `start`'s stdin, and the JSON answer it accepts.

containerd 1.6 to 2.2 write the runtime options (one serialized `google.protobuf.Any`, or nothing) on
`start`'s stdin. containerd 2.3 writes a `containerd.runtime.bootstrap.v1.BootstrapParams` instead
(binary protobuf, whatever its .proto comment says), with the options inside as an Extension (protocol
reference, section 1.4). A legacy Any also parses as BootstrapParams (its type URL lands in
instance_id, its value in namespace), so the two are told apart as containerd's own Go library does:
the bytes are BootstrapParams only when instance_id and namespace equal `-id` and `-namespace`.

Decoded by hand (wire.py): `start` loads no protobuf runtime. The answer to a 2.3 containerd is the
JSON bootstrap, which every 2.x accepts (2.3 tries its protobuf BootstrapResult first, then JSON).
"""

from __future__ import annotations

from wasmvisor.supervisor.shim import wire

EXTENSIONS_FIELD = 8
SOCKET_DIR_FIELD = 9


class Params:
    """What containerd 2.3 sent: the strings of BootstrapParams and the runtime options Any, if any."""

    __slots__ = ("instance_id", "namespace", "log_level", "containerd_version", "ttrpc_address", "grpc_address",
                 "binary", "options_type_url", "options_value", "socket_dir")

    def __init__(self, fields: list[tuple[int, int | bytes]]) -> None:
        strings = {number: value.decode() for number, value in fields
                   if isinstance(value, bytes) and number in (1, 2, 4, 5, 6, 7, SOCKET_DIR_FIELD)}
        self.instance_id = strings.get(1, "")
        self.namespace = strings.get(2, "")
        level = next((v for n, v in reversed(fields) if n == 3 and isinstance(v, int)), 0)
        self.log_level = level - (1 << 64) if level >= 1 << 63 else level  # negative levels are 10-byte varints
        self.containerd_version = strings.get(4, "")
        self.ttrpc_address = strings.get(5, "")
        self.grpc_address = strings.get(6, "")
        self.binary = strings.get(7, "")
        self.socket_dir = strings.get(SOCKET_DIR_FIELD, "")
        self.options_type_url = ""
        self.options_value = b""
        for number, extension in fields:
            if number != EXTENSIONS_FIELD or not isinstance(extension, bytes):
                continue
            value = wire.last_fields(extension).get(1, b"")  # Extension.value, an Any
            if isinstance(value, bytes) and not self.options_type_url:
                any_fields = wire.last_fields(value)
                url, data = any_fields.get(1, b""), any_fields.get(2, b"")
                if isinstance(url, bytes) and isinstance(data, bytes):
                    self.options_type_url, self.options_value = url.decode(), data


def parse(stdin: bytes, task_id: str, namespace: str) -> Params | None:
    """The BootstrapParams of containerd 2.3+ in `stdin`, or None for a legacy stdin (empty, or the
    runtime options Any of 1.6-2.2, or anything that does not parse)."""
    if not stdin:
        return None
    try:
        params = Params(wire.read_fields(stdin))
    except (ValueError, UnicodeDecodeError):
        return None
    if params.instance_id != task_id or params.namespace != namespace:
        return None
    return params


def _json_string(text: str) -> str:
    """`text` as a JSON string (json.dumps without importing json: the answer holds a socket path)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def json_answer(version: int, address: str, protocol: str) -> str:
    """The JSON bootstrap containerd 1.7+ reads from `start`: `{"version":N,"address":"…","protocol":"…"}`."""
    return f'{{"version": {version}, "address": {_json_string(address)}, "protocol": {_json_string(protocol)}}}'
