"""The worker's container setup, each piece in a throwaway Python process: the pid-namespace relay
(signals forwarded, exit status passed on, the container dies with it) and the root filesystem built
in a private mount namespace (needs root; nothing may remain mounted on the host)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.host import mounts_under

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")

RELAY_SCRIPT = """
import os, signal, sys, time
from wasmvisor.worker.namespaces import fork_container_process
pid = fork_container_process("wasmvisor-init test", ())
# The container process: not PID 1 here (no pid namespace), so a plain process with its signals back.
signal.pthread_sigmask(signal.SIG_SETMASK, set())
print(pid, flush=True)
mode = sys.argv[1]
if mode == "exit":
    os._exit(int(sys.argv[2]))
time.sleep(60)
os._exit(0)
"""


def start_relay(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", RELAY_SCRIPT, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    return proc, child


def test_the_relay_exits_with_the_container_process_exit_code() -> None:
    proc, _ = start_relay("exit", "7")
    assert proc.wait(10) == 7


def test_the_relay_forwards_sigterm_and_dies_of_it_as_the_container_process_did() -> None:
    proc, child = start_relay("sleep")
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == -signal.SIGTERM
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split(")")[1][:3]


def test_kill_9_of_the_relay_kills_the_container_process() -> None:
    proc, child = start_relay("sleep")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not Path(f"/proc/{child}").exists()


PID1_SCRIPT = """
import os, sys, time
from wasmvisor.linux import syscalls
from wasmvisor.worker.namespaces import InitSignals, fork_container_process
syscalls.unshare(0x20000000)  # CLONE_NEWPID: for the children
fork_container_process("wasmvisor-init test", ())
assert InitSignals.needed(), os.getpid()
InitSignals(lambda sig: print(f"signal {sig}", flush=True)).start()
print("pid 1", flush=True)
time.sleep(60)
"""


@needs_root
def test_pid_1_of_a_new_pid_namespace_ends_on_sigterm_sent_to_its_relay_with_143() -> None:
    # PID 1 ignores signals left at SIG_DFL; blocked ones are queued and InitSignals takes them.
    proc = subprocess.Popen([sys.executable, "-c", PID1_SCRIPT], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "pid 1\n"
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 128 + signal.SIGTERM
    assert proc.stdout.read() == f"signal {int(signal.SIGTERM)}\n"


PARK_SCRIPT = """
import os, signal, sys, time
from wasmvisor.worker.namespaces import InitSignals
def ending(sig):
    print(f"signal {sig}", flush=True)
    time.sleep(1.5 if sys.argv[1] == "queued-first" else 0)  # still ending when the park is asked
signals = InitSignals(ending)
signals.start()
if sys.argv[1] == "queued-first":
    os.kill(os.getpid(), signal.SIGTERM)  # taken before the park: the thread ends the process
    time.sleep(0.5)
    print("parked" if signals.park() else "ending", flush=True)
    time.sleep(60)
print("parked" if signals.park() else "ending", flush=True)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.5)
print("pending" if signal.SIGTERM in signal.sigpending() else "taken", flush=True)
signals.unpark()
time.sleep(60)
"""


@pytest.mark.parametrize("case", ["queued-first", "after-park"])
def test_a_parked_init_thread_leaves_signals_queued_and_one_it_took_first_refuses_the_park(case: str) -> None:
    # The compiled runner's exec (worker/main.py _runner_start) parks PID 1's signal thread first:
    # a SIGTERM sent meanwhile must stay queued (it outlives the exec); one the thread took already
    # must end the process instead of the exec.
    proc = subprocess.run([sys.executable, "-c", PARK_SCRIPT, case], capture_output=True, text=True,
                          timeout=30)
    term = int(signal.SIGTERM)
    if case == "queued-first":
        assert proc.stdout == f"signal {term}\nending\n"
    else:
        assert proc.stdout == f"parked\npending\nsignal {term}\n"
    assert proc.returncode == 128 + signal.SIGTERM


ROOTFS_SCRIPT = """
import json, os, sys
from wasmvisor.errors import ShimError
from wasmvisor.worker.spec_linux import container_layout
from wasmvisor.linux import syscalls
from wasmvisor.worker.rootfs import build_rootfs, enter_root
root, spec = sys.argv[1], json.loads(sys.argv[2])
syscalls.unshare(0x00020000)  # CLONE_NEWNS
try:
    build_rootfs(root, container_layout(spec))
except ShimError as exc:
    print(json.dumps({"error": exc.message}))
    sys.exit(0)
enter_root(root)
seen = {}
for path in sys.argv[3:]:
    try:
        seen[path] = sorted(os.listdir(path)) if os.path.isdir(path) else open(path).read()
    except OSError as exc:
        seen[path] = f"error {exc.strerror}"
for where in ("/data", "/"):
    try:
        open(os.path.join(where, "new.txt"), "w")
        seen[f"write {where}"] = "ok"
    except OSError as exc:
        seen[f"write {where}"] = exc.strerror
print(json.dumps(seen))
"""


def build_and_look(tmp_path: Path, spec: dict[str, object], *paths: str) -> dict[str, object]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    out = subprocess.run([sys.executable, "-c", ROOTFS_SCRIPT, str(root), json.dumps(spec), *paths],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert mounts_under(tmp_path) == [], "nothing stays mounted on the host"
    result: dict[str, object] = json.loads(out.stdout)
    return result


@needs_root
def test_mounts_devices_and_a_read_only_volume_in_the_new_root(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "a.txt").write_text("A")
    (tmp_path / "hosts").write_text("127.0.0.1 box\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)  # a mount through it must stay inside the root
    spec = {"mounts": [
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/data", "type": "bind", "source": str(volume), "options": ["rbind", "ro"]},
        {"destination": "/etc/hosts", "type": "bind", "source": str(tmp_path / "hosts"), "options": ["bind"]},
        {"destination": "/escape/inside", "type": "tmpfs", "source": "tmpfs"},
    ], "linux": {"maskedPaths": ["/proc/keys"], "readonlyPaths": ["/proc/sys"]}}

    seen = build_and_look(tmp_path, spec, "/data", "/etc/hosts", "/dev", "/proc/keys")

    assert seen["/data"] == ["a.txt"]
    assert seen["write /data"] == "Read-only file system"
    assert seen["/etc/hosts"] == "127.0.0.1 box\n"
    assert {"null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "stdout", "stderr"} <= set(
        seen["/dev"])  # type: ignore[arg-type]
    assert seen["/proc/keys"] == ""
    assert seen["write /"] == "ok"
    assert not (tmp_path / "inside").exists(), "the symlinked destination was resolved on the host"
    assert (root / str(tmp_path).lstrip("/") / "inside").is_dir()


@needs_root
@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ({"type": "nosuchfs", "source": "x"}, "mounts[0] /data: unknown filesystem type 'nosuchfs'"),
        ({"type": "bind", "source": "/nope-wasmvisor"}, "mounts[0] /data: bind source /nope-wasmvisor: no such file"),
    ],
)
def test_a_bad_mount_is_named_and_nothing_stays_mounted(tmp_path: Path, mount: dict[str, str], message: str) -> None:
    seen = build_and_look(tmp_path, {"mounts": [{"destination": "/data", **mount}]})
    assert seen == {"error": message}


@needs_root
def test_a_read_only_root(tmp_path: Path) -> None:
    seen = build_and_look(tmp_path, {"root": {"path": "rootfs", "readonly": True}})
    assert seen["write /"] == "Read-only file system"

