"""A WASI 0.3 HTTP handler (componentize-py, world wasi:http/service@0.3.0): every request is answered
`hello from WASI 0.3 HTTP` and the request's path."""

import wit_world
from componentize_py_async_support import spawn
from componentize_py_async_support.streams import ByteStreamWriter
from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.wasi_http_types import Fields, Request, Response


async def send(stream: ByteStreamWriter, data: bytes) -> None:
    with stream:
        while data:
            data = data[await stream.write(data):]


class Handler(exports.Handler):
    async def handle(self, request: Request) -> Response:
        body = f"hello from WASI 0.3 HTTP: {request.get_path_with_query()}\n".encode()
        writer, reader = wit_world.byte_stream()
        spawn(send(writer, body))
        _, trailers = wit_world.result_option_wasi_http_types_fields_wasi_http_types_error_code_future(
            lambda: Ok(None))
        response, _ = Response.new(Fields.from_list([("content-type", b"text/plain")]), reader, trailers)
        return response
