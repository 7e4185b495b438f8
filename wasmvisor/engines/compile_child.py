"""Compiling a module in a short-lived child process, so that the process that runs the guest never starts
wasmtime's compile threads.

Why: a worker drops its capabilities before its guest runs, and capabilities are per thread: threads that
exist then (wasmtime's parallel compiler keeps two idle ones after a compile) would keep theirs
(worker/confine.py). A forked child compiles with the parent's Engine, which has compiled nothing yet and
so is safe to use after fork (see wasmtime_engine's docstring), sends the serialized module on a pipe and
exits; the parent loads it. Costs a fork (~2 ms) on a cache miss only, next to a compile of 20 ms or more.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from wasmvisor.linux.fork import run_child

OK, FAILED = b"\x00", b"\x01"


class CompileError(Exception):
    """The child could not compile the module: the message is the compiler's."""


def compile_in_child(compile: Callable[[bytes], bytes], wasm: bytes) -> bytes:
    """`compile(wasm)` run in a forked child: its result, or CompileError with its error's text."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        run_child(lambda: _compile_and_send(compile, wasm, write_fd), on_error=lambda exc: None)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        answer = reader.read()
    _, status = os.waitpid(pid, 0)
    if answer[:1] == OK:
        return answer[1:]
    if answer[:1] == FAILED:
        raise CompileError(answer[1:].decode("utf-8", "replace"))
    raise CompileError(f"the compiling process ended with status {os.waitstatus_to_exitcode(status)} and no module")


def _compile_and_send(compile: Callable[[bytes], bytes], wasm: bytes, fd: int) -> int:
    try:
        answer = OK + compile(wasm)
    except Exception as exc:  # any compiler error goes back to the parent, as text
        answer = FAILED + str(exc).encode("utf-8", "replace")
    with os.fdopen(fd, "wb") as writer:
        writer.write(answer)
    return 0
