"""Compiling in a short-lived child: the parent gets the module or the compiler's error, and starts no thread."""

from __future__ import annotations

import os
import threading

import pytest
import wasmtime

from wasmvisor.engines.compile_child import CompileError, compile_in_child

HELLO = '(module (func (export "_start")))'


def test_the_module_compiled_in_the_child_loads_in_the_parent_which_starts_no_thread() -> None:
    engine = wasmtime.Engine()
    threads = threading.active_count(), len(os.listdir("/proc/self/task"))
    serialized = compile_in_child(lambda wasm: bytes(wasmtime.Module(engine, wasm.decode()).serialize()),
                                  HELLO.encode())
    module = wasmtime.Module.deserialize(engine, serialized)
    assert [e.name for e in module.exports] == ["_start"]
    assert (threading.active_count(), len(os.listdir("/proc/self/task"))) == threads


def test_a_compile_error_comes_back_with_its_text() -> None:
    engine = wasmtime.Engine()
    with pytest.raises(CompileError, match="expected"):
        compile_in_child(lambda wasm: bytes(wasmtime.Module(engine, wasm.decode()).serialize()), b"(module (func")


def test_a_child_that_dies_is_an_error_naming_its_status() -> None:
    with pytest.raises(CompileError, match="ended with status -9 and no module"):
        compile_in_child(lambda wasm: os.kill(os.getpid(), 9) or b"", b"")
