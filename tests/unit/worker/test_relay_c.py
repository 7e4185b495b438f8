"""The pid-namespace relay in C (wasmvisor/worker/relay.c, built by scripts/setup.sh): the worker
execs it after the fork, and falls back to the Python relay when the binary is absent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wasmvisor.worker.namespaces import RELAY_BINARY

RELAY_SCRIPT = """
import os, signal, sys, time
from pathlib import Path
from wasmvisor.worker import namespaces
if sys.argv[1] == "python":
    namespaces.RELAY_BINARY = Path("/nonexistent/wasmvisor-relay")
pid = namespaces.fork_container_process("wasmvisor-init ns/test", ())
signal.pthread_sigmask(signal.SIG_SETMASK, set())
got = []
signal.signal(signal.SIGUSR1, lambda sig, frame: got.append(sig))
signal.signal(signal.SIGCONT, lambda sig, frame: print("cont", flush=True))
print(pid, flush=True)
mode = sys.argv[2]
if mode == "exit":
    time.sleep(0.2)
    os._exit(int(sys.argv[3]))
while not got:
    time.sleep(0.01)
print("usr1", flush=True)
time.sleep(60)
os._exit(0)
"""


def start(kind: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", RELAY_SCRIPT, kind, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    return proc, child


TITLE = b"wasmvisor-init ns/test"


def wait_for_exe(pid: int, exe: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = os.readlink(f"/proc/{pid}/exe")
        if seen == exe:
            break
        time.sleep(0.01)
    return seen


def test_setup_built_the_c_relay() -> None:
    # CI runs scripts/setup.sh: without the binary every relay would cost a Python process.
    assert os.access(RELAY_BINARY, os.X_OK), f"{RELAY_BINARY} missing: run scripts/setup.sh"


def test_the_relay_is_the_c_program_with_the_title_as_argv0() -> None:
    proc, child = start("c", "sleep")
    try:
        assert wait_for_exe(proc.pid, str(RELAY_BINARY)) == str(RELAY_BINARY)
        # `ps` shows the title alone: the relay blanks the arguments it read (child pid, alive fd, signals).
        deadline = time.monotonic() + 5
        while (cmdline := Path(f"/proc/{proc.pid}/cmdline").read_bytes()).rstrip(b"\0") != TITLE:
            assert time.monotonic() < deadline, cmdline
            time.sleep(0.01)
        assert str(child).encode() not in cmdline
        # The alive pipe's write end stays open in the relay (the child watches it for EOF).
        fds = [int(fd) for fd in os.listdir(f"/proc/{proc.pid}/fd")]
        assert any(os.readlink(f"/proc/{proc.pid}/fd/{fd}").startswith("pipe:") for fd in fds if fd > 2)
        # Signals are forwarded (SIGUSR1, and SIGCONT, which the Python relay forwarded too).
        os.kill(proc.pid, signal.SIGUSR1)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "usr1\n"
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.stdout.readline() == "cont\n"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("kind", ["c", "python"])
def test_the_relay_exits_with_the_exit_code_of_the_container_process(kind: str) -> None:
    proc, _ = start(kind, "exit", "9")
    assert proc.wait(10) == 9


def test_without_the_binary_the_python_relay_forwards_and_ends_like_the_child() -> None:
    proc, _ = start("python", "sleep")
    try:
        assert os.readlink(f"/proc/{proc.pid}/exe") != str(RELAY_BINARY)
        assert Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0] == b"wasmvisor-init ns/test"
        os.kill(proc.pid, signal.SIGUSR1)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "usr1\n"
        os.kill(proc.pid, signal.SIGHUP)
        assert proc.wait(10) == -signal.SIGHUP
    finally:
        proc.kill()
        proc.wait()


def test_kill_9_of_the_c_relay_kills_the_container_process() -> None:
    proc, child = start("c", "sleep")
    assert wait_for_exe(proc.pid, str(RELAY_BINARY)) == str(RELAY_BINARY)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not Path(f"/proc/{child}").exists()
