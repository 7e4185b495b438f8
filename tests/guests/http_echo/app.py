"""A wasi:http/proxy test guest (componentize-py): `GET /hello` answers "hello from a component",
`GET /slow?ms=N` answers after N milliseconds of the monotonic clock, `POST /echo` answers with the
request's body, `GET /fetch?port=N` answers with what an outgoing `GET 127.0.0.1:N/hello` got (status and
body); anything else is 404. Each request runs in a fresh instance, so `/count` is always 1."""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import monotonic_clock, outgoing_handler
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Get,
    Method_Post,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    ResponseOutparam,
    Scheme_Http,
)

CALLS = 0


def read_body(request: IncomingRequest) -> bytes:
    return read_all(request.consume())


def read_all(body: IncomingBody) -> bytes:
    stream = body.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(16384))
        except Err as err:
            if isinstance(err.value, StreamError_Closed):
                break
            raise
    stream.__exit__(None, None, None)
    body.__exit__(None, None, None)
    return b"".join(chunks)


def fetch(port: int) -> bytes:
    request = OutgoingRequest(Fields())
    request.set_scheme(Scheme_Http())
    request.set_authority(f"127.0.0.1:{port}")
    request.set_path_with_query("/hello")
    future = outgoing_handler.handle(request, None)
    future.subscribe().block()
    outcome = future.get()
    if outcome is None:
        return b"no response\n"
    if isinstance(outcome, Err) or isinstance(outcome.value, Err):
        return f"failed: {outcome}\n".encode()
    response = outcome.value.value
    return f"{response.status()} ".encode() + read_all(response.consume())


def respond(response_out: ResponseOutparam, status: int, data: bytes) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    stream = body.write()
    for at in range(0, len(data), 4096):
        stream.blocking_write_and_flush(data[at:at + 4096])
    stream.__exit__(None, None, None)
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        global CALLS
        CALLS += 1
        method = request.method()
        path, _, query = (request.path_with_query() or "/").partition("?")
        if isinstance(method, Method_Get) and path == "/hello":
            respond(response_out, 200, b"hello from a component\n")
        elif isinstance(method, Method_Get) and path == "/slow":
            ms = int(query.removeprefix("ms=") or "0")
            monotonic_clock.subscribe_duration(ms * 1_000_000).block()
            respond(response_out, 200, f"slept {ms} ms\n".encode())
        elif isinstance(method, Method_Get) and path == "/count":
            respond(response_out, 200, f"{CALLS}\n".encode())
        elif isinstance(method, Method_Get) and path == "/fetch":
            respond(response_out, 200, fetch(int(query.removeprefix("port=") or "8080")))
        elif isinstance(method, Method_Post) and path == "/echo":
            respond(response_out, 200, read_body(request))
        else:
            respond(response_out, 404, b"not found\n")
