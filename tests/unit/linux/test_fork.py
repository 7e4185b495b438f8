"""The fork plumbing: run_child, the one epilogue of a forked child (it always exits, with the status
its body gives); quiet_fork, a fork without Python's at-fork hooks for the single-threaded zygote and
worker (os.fork elsewhere); and close_fds_except, which a forked worker uses to drop what it inherited."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from wasmvisor.linux.fork import QUIET_FORK_CHECKED, close_fds_except, quiet_fork

REPO = Path(__file__).resolve().parents[3]


def _in_child(body: object) -> bytes:
    """Run `body()` (returning bytes) in a quiet_fork child; its bytes come back through a pipe."""
    r, w = os.pipe()
    pid = quiet_fork()
    if pid == 0:
        try:
            os.write(w, body())  # type: ignore[operator]
        finally:
            os._exit(0)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 4096):
            chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks)


PROGRAM = """
import os
from wasmvisor.linux.fork import quiet_fork
r, w = os.pipe()
calls = []
os.register_at_fork(before=lambda: calls.append("before"), after_in_parent=lambda: calls.append("parent"),
                    after_in_child=lambda: os.write(w, b"child hook ran"))
pid = quiet_fork()
if pid == 0:
    os._exit(0)
os.close(w)
_, status = os.waitpid(pid, 0)
print(pid != os.getpid(), os.waitstatus_to_exitcode(status), calls, os.read(r, 100))
"""


def test_on_cpython_3_11_no_at_fork_hook_runs_and_on_any_other_python_each_does() -> None:
    # In an interpreter of its own: an at-fork hook cannot be unregistered from this one. quiet_fork
    # skips what 3.11's os.fork does (read for 3.11 only); on another version (CI's VM runs 3.13) it
    # must be os.fork itself, hooks and all.
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True,
                         cwd=REPO)
    if sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11):
        assert QUIET_FORK_CHECKED
        assert out.stdout.strip() == "True 0 [] b''"
    else:
        assert not QUIET_FORK_CHECKED
        assert out.stdout.strip() == "True 0 ['before', 'parent'] b'child hook ran'"


def test_the_child_does_not_repeat_its_parents_random_sequence() -> None:
    random.seed(1234)
    state = random.getstate()
    child = _in_child(lambda: repr(random.random()).encode())
    random.setstate(state)
    assert child != repr(random.random()).encode()


THREADS_PROGRAM = """
import threading
from wasmvisor.linux.fork import single_threaded
alone = single_threaded()
stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
print(alone, single_threaded())
stop.set()
thread.join()
"""


def test_single_threaded_sees_a_second_thread() -> None:
    # In an interpreter of its own, which has one thread until the program starts another (this
    # process may have more, and a thread started in a quiet_fork child of a threaded process could
    # meet a lock another thread held at the fork).
    out = subprocess.run([sys.executable, "-c", THREADS_PROGRAM], capture_output=True, text=True, check=True,
                         cwd=REPO)
    assert out.stdout.strip() == "True False"


def test_close_fds_except_keeps_the_standard_fds_and_those_asked_for() -> None:
    def is_open(fd: int) -> bool:
        try:
            os.fstat(fd)
        except OSError:
            return False
        return True

    r, w = os.pipe()
    pid = quiet_fork()
    if pid == 0:
        try:
            fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(6)]
            close_fds_except((fds[1], w, fds[4], 2))
            report = {"fds": fds, "open": [fd for fd in (0, 1, 2, r, *fds) if is_open(fd)]}
            os.write(w, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        report = json.loads(os.read(r, 65536))
    finally:
        os.close(r)
    os.waitpid(pid, 0)
    fds = report["fds"]
    assert sorted(report["open"]) == sorted([0, 1, 2, fds[1], fds[4]])  # r, inherited, is closed too


EPILOGUE = """
import sys
from wasmvisor.linux.fork import run_child
def body():
{body}
run_child(body{on_error})
print("returned into the caller")
"""


@pytest.mark.parametrize(("body", "status", "stderr"), [
    ("return 3", 3, ""),
    ("return 256 + 5", 5, ""),
    ("raise ValueError('boom')", 70, "ValueError: boom"),
    ("raise KeyboardInterrupt", 70, "KeyboardInterrupt"),
    ("sys.exit(4)", 4, ""),
    ("sys.exit()", 0, ""),
    ("sys.exit('bye')", 1, "bye"),
])
def test_run_child_exits_with_the_status_of_its_body_and_never_returns(body: str, status: int, stderr: str) -> None:
    program = EPILOGUE.format(body=f"    {body}", on_error="")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert (done.returncode, done.stdout) == (status, "")
    assert done.stderr.strip().endswith(stderr), done.stderr


def test_run_child_hands_an_exception_to_on_error_instead_of_printing_it() -> None:
    program = EPILOGUE.format(body="    raise ValueError('boom')",
                              on_error=", on_error=lambda exc: print('on_error', repr(exc), flush=True)")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert (done.returncode, done.stdout, done.stderr) == (70, "on_error ValueError('boom')\n", "")


FALLBACK_PROGRAM = """
import os, sys, threading
from wasmvisor.linux import fork
r, w = os.pipe()
os.register_at_fork(after_in_child=lambda: os.write(w, b"hook"))
if sys.argv[1] == "threads":
    threading.Thread(target=threading.Event().wait, daemon=True).start()
else:
    fork.QUIET_FORK_CHECKED = False  # as on an interpreter other than CPython 3.11
pid = fork.quiet_fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
os.close(w)
print(os.read(r, 100).decode())
"""


@pytest.mark.parametrize("case", ["threads", "another-interpreter"])
def test_quiet_fork_is_os_fork_with_a_second_thread_or_another_interpreter(case: str) -> None:
    out = subprocess.run([sys.executable, "-c", FALLBACK_PROGRAM, case], capture_output=True, text=True,
                         check=True, timeout=60, cwd=REPO)
    assert out.stdout.strip() == "hook"
