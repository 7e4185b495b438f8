"""The transport-neutral shape of an RPC service: a name and a table of unary methods.

The Task service is written once against this; the ttrpc server and the gRPC server serve
any `Service` without knowing what it does. A handler is `async def handler(request, call)` that
returns the response message or raises a `wasmvisor.errors.ShimError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass


@dataclass(frozen=True)
class Call:
    """What a handler may know about the call besides its request."""

    service: str
    method: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    deadline: float | None = None
    """Absolute time.monotonic() deadline, if the caller sent one."""

    @property
    def namespace(self) -> str:
        return self.metadata.get("containerd-namespace-ttrpc") or self.metadata.get("containerd-namespace", "")


Handler = Callable[[Any, Call], Awaitable[Message]]


@dataclass(frozen=True)
class Method:
    name: str
    request_type: type[Message]
    response_type: type[Message]
    handler: Handler


@dataclass(frozen=True)
class Service:
    name: str
    methods: Mapping[str, Method]


def service_from_descriptor(name: str, descriptor: ServiceDescriptor, impl: object) -> Service:
    """A Service named `name` whose methods are those of `descriptor`, served by `impl`.

    `impl` has one coroutine method per RPC, named as in the .proto (`Create`, `Wait`, ...).
    The same `impl` can be served under several names (containerd.task.v2.Task and v3.Task)."""
    methods: dict[str, Method] = {}
    for m in descriptor.methods:
        handler = getattr(impl, m.name, None)
        if handler is None:
            raise TypeError(f"{type(impl).__name__} has no handler for {descriptor.full_name}/{m.name}")
        methods[m.name] = Method(
            name=m.name,
            request_type=GetMessageClass(m.input_type),
            response_type=GetMessageClass(m.output_type),
            handler=handler,
        )
    return Service(name=name, methods=methods)
