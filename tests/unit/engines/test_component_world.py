"""The component's world read from its binary, and the route (engine) chosen from it."""

from __future__ import annotations

import pytest
import wasmtime

from wasmvisor.engines.component_world import ComponentFormatError, Route, World, read_world

RUN = """(core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (type $r (result))
  (func $run (result $r) (canon lift (core func $i "run")))
  (instance $cli (export "run" (func $run)))"""


def world_of(body: str) -> World:
    return read_world(bytes(wasmtime.wat2wasm(f"(component {body})")))


def test_a_command_exports_run_and_its_imports_are_listed() -> None:
    world = world_of('(import "wasi:cli/environment@0.2.3" (instance)) (import "wasi:io/streams@0.2.3" (instance))'
                     f'{RUN} (export "wasi:cli/run@0.2.3" (instance $cli))')

    assert world == World(("wasi:cli/environment@0.2.3", "wasi:io/streams@0.2.3"), ("wasi:cli/run@0.2.3",))
    assert world.route is Route.COMMAND


def test_an_http_handler_export_is_served_by_the_cli() -> None:
    world = world_of(f'{RUN} (export "wasi:http/incoming-handler@0.2.0" (instance $cli))')

    assert world.route is Route.HTTP
    assert not world.wasi_p3


def test_a_wasi_0_3_import_makes_a_p3_command() -> None:
    world = world_of(f'(import "wasi:cli/exit@0.3.0" (instance)) {RUN} (export "wasi:cli/run@0.3.0" (instance $cli))')

    assert (world.route, world.wasi_p3) == (Route.COMMAND_P3, True)


def test_imports_of_every_kind_are_read_past() -> None:
    world = world_of('(import "f" (func)) (import "t" (type (sub resource))) (import "c" (component))'
                     '(import "m" (core module)) (import "last" (instance))')

    assert world.imports == ("f", "t", "c", "m", "last")


@pytest.mark.parametrize(("data", "message"), [
    (b"\0asm\x01\0\0\0", "not a component"),
    (b"\0asm\x0d\0\x01\0\x0a\x05\x01\x00\x09", "unexpected end"),
])
def test_bad_bytes_are_a_format_error(data: bytes, message: str) -> None:
    with pytest.raises(ComponentFormatError, match=message):
        read_world(data)
