"""A wasm guest sees exactly its container: its volumes, /dev, its hostname, its own pid namespace,
and nothing of the host outside its root. Bad mounts and namespaces fail `ctr run` naming the entry
and leave nothing behind. (Issue 3, part 1: namespaces and root.)

The guest is tests/guests/fs_probe.c: each argument is an action (`ls:/data`, `cat:FILE`,
`read:FILE:N`, `write:FILE`, `exists:PATH`) and prints one line.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.containerd import PrivateContainerd
from tests.e2e.ctr import Ctr
from tests.e2e.host import mounts_under, process_titles, processes_titled
from wasmvisor.image import FileSpec, build_oci_tar

PROBE = "docker.io/wasmvisor-test/fs-probe:latest"
HELLO = "docker.io/wasmvisor-test/root-hello:latest"
SECRET = f"host secret {secrets.token_hex(4)}"
BUSYBOX = "/bin/busybox"


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host folder outside every container: a secret file, and a volume to bind-mount."""
    base = tmp_path_factory.mktemp("container-root")
    (base / "secret.txt").write_text(SECRET + "\n")
    volume = base / "volume"
    volume.mkdir()
    (volume / "a.txt").write_text("from the volume\n")
    (volume / "b.txt").write_text("bee\n")
    (base / "escape-target").mkdir()
    return base


@pytest.fixture(scope="module")
def probe_images(
    ctr: Ctr, guest_wasm: dict[str, Path], host_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = tmp_path_factory.mktemp("container-root-images")
    probe: dict[str, bytes | FileSpec] = {
        "/fs_probe.wasm": guest_wasm["fs_probe"].read_bytes(),
        "/etc/motd": b"inside the image\n",
        # Symlinks that point out of the root if followed on the host.
        "/escape-abs": FileSpec.link(str(host_dir / "secret.txt")),
        "/escape-rel": FileSpec.link("../../../../../../.." + str(host_dir / "secret.txt")),
        "/escape-dir": FileSpec.link(str(host_dir / "escape-target")),
    }
    build_oci_tar(out / "probe.tar", PROBE, probe, entrypoint=["/fs_probe.wasm"])
    build_oci_tar(out / "hello.tar", HELLO, {"/hello.wasm": guest_wasm["hello"].read_bytes()},
                  entrypoint=["/hello.wasm"])
    ctr.import_image(out / "probe.tar")
    ctr.import_image(out / "hello.tar")


def probe(ctr: Ctr, container_id: str, *actions: str, flags: tuple[str, ...] = ()) -> dict[str, str]:
    """Run the probe with `actions`; its lines by action (`ls /data` -> `a.txt b.txt`)."""
    result = ctr.run_container(PROBE, container_id, "/fs_probe.wasm", *actions, flags=list(flags))
    assert result.returncode == 0, result.output
    lines = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(": ")
        lines[key] = value
    return lines


def nothing_left(containerd: PrivateContainerd, ctr: Ctr, container_id: str) -> list[object]:
    """Processes of the container and mounts under its bundle still there (empty when clean)."""
    title = f"{ctr.namespace}/{container_id}"
    left: list[object] = []
    for role in ("wasmvisor-worker", "wasmvisor-init"):
        left += processes_titled(f"{role} {title}")
    left += mounts_under(containerd.bundle_dir(ctr.namespace, container_id))
    return left


def eventually_nothing_left(containerd: PrivateContainerd, ctr: Ctr, container_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (left := nothing_left(containerd, ctr, container_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"left behind: {left}"


# --- volumes ----------------------------------------------------------------------------------


def test_guest_lists_and_reads_a_read_only_volume_and_cannot_write_it(
    containerd: PrivateContainerd, ctr: Ctr, probe_images: None, host_dir: Path, container_id: str
) -> None:
    volume = host_dir / "volume"
    mount = f"type=bind,src={volume},dst=/data,options=rbind:ro"
    seen = probe(ctr, container_id, "ls:/data", "cat:/data/a.txt", "write:/data/new.txt", flags=("--mount", mount))

    assert seen["ls /data"] == "a.txt b.txt"
    assert seen["cat /data/a.txt"] == "from the volume|"
    assert seen["write /data/new.txt"].startswith("error"), seen
    assert not (volume / "new.txt").exists()
    eventually_nothing_left(containerd, ctr, container_id)


def test_guest_writes_a_read_write_volume_and_the_host_sees_it(
    ctr: Ctr, probe_images: None, host_dir: Path, container_id: str
) -> None:
    volume = host_dir / "volume"
    mount = f"type=bind,src={volume},dst=/mnt/rw,options=rbind:rw"
    try:
        seen = probe(ctr, container_id, "write:/mnt/rw/written.txt", flags=("--mount", mount))
        assert seen["write /mnt/rw/written.txt"] == "ok"
        assert (volume / "written.txt").read_text() == "x"
    finally:
        (volume / "written.txt").unlink(missing_ok=True)


def test_a_single_file_is_bind_mounted_as_a_file(
    ctr: Ctr, probe_images: None, host_dir: Path, container_id: str
) -> None:
    mount = f"type=bind,src={host_dir / 'volume' / 'b.txt'},dst=/etc/hosts,options=rbind:ro"
    seen = probe(ctr, container_id, "cat:/etc/hosts", flags=("--mount", mount))
    assert seen["cat /etc/hosts"] == "bee|"


# --- /dev, /proc, hostname ----------------------------------------------------------------------


def test_guest_opens_dev_null_zero_and_urandom(ctr: Ctr, probe_images: None, container_id: str) -> None:
    seen = probe(ctr, container_id, "ls:/dev", "read:/dev/zero:16", "read:/dev/urandom:64", "read:/dev/null:10",
                 "write:/dev/null")

    assert set(seen["ls /dev"].split()) >= {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm",
                                            "mqueue", "fd", "stdin", "stdout", "stderr", "ptmx"}, seen
    assert seen["read /dev/zero"] == "16 bytes, 16 zero"
    assert seen["read /dev/urandom"].startswith("64 bytes, "), seen
    assert int(seen["read /dev/urandom"].split(", ")[1].split()[0]) < 16, seen
    assert seen["read /dev/null"] == "0 bytes, 0 zero"
    assert seen["write /dev/null"] == "ok"


def test_wasm_guest_sees_empty_proc_and_sys(ctr: Ctr, probe_images: None, container_id: str) -> None:
    # The spec mounts them, but a wasm guest's view has neither (worker/confine.py); its folders stay.
    result = ctr.run_container(PROBE, container_id, "/fs_probe.wasm", "ls:/proc", "ls:/sys", "exists:/proc/self")
    assert result.stdout.splitlines() == ["ls /proc:", "ls /sys:", "exists /proc/self: no (No such file or directory)"]


def test_guest_is_pid_1_of_its_own_pid_namespace(ctr: Ctr, container_id: str, sleeping: tuple[int, int]) -> None:
    _, worker = sleeping
    nspids = next(line for line in Path(f"/proc/{worker}/status").read_text().splitlines() if line.startswith("NSpid:"))
    assert nspids.split()[1:] == [str(worker), "1"]
    assert os.readlink(f"/proc/{worker}/ns/pid") != os.readlink("/proc/self/ns/pid")
    ctr.kill(container_id, "SIGTERM")


def test_guest_sees_the_hostname_of_the_spec(ctr: Ctr, tmp_path: Path, container_id: str) -> None:
    # ctr has no --hostname: give it a whole spec (`--config`; the root is then the spec's root.path).
    root = tmp_path / "root"
    root.mkdir()
    # A native guest: a wasm one has no way to read its hostname (WASI has none, /proc is hidden).
    (root / "busybox").write_bytes(Path(BUSYBOX).read_bytes())
    (root / "busybox").chmod(0o755)
    spec = {
        "ociVersion": "1.0.2",
        "hostname": "probe-box",
        "process": {"args": ["/busybox", "sh", "-c", "hostname; ls /"], "cwd": "/",
                    "env": ["PATH=/"]},
        "root": {"path": str(root), "readonly": True},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "uts"}, {"type": "mount"}, {"type": "ipc"}]},
    }
    config = tmp_path / "spec.json"
    config.write_text(json.dumps(spec))
    argv = [a for a in ctr.run_args("", container_id, flags=["--config", str(config)]) if a]
    result = ctr.run(*argv)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["probe-box", "busybox", "proc"], "root.readonly: /proc was made, nothing else"
    assert os.uname().nodename != "probe-box"


# --- nothing of the host ------------------------------------------------------------------------


def test_guest_cannot_reach_host_files_outside_its_root(
    ctr: Ctr, probe_images: None, host_dir: Path, container_id: str
) -> None:
    secret = str(host_dir / "secret.txt")
    result = ctr.run_container(
        PROBE, container_id, "/fs_probe.wasm", f"cat:{secret}", f"cat:/../../..{secret}", f"cat:../../..{secret}",
        "cat:/escape-abs", "cat:/escape-rel", "ls:/", "cat:/etc/motd", "exists:/etc/shadow",
    )
    assert result.returncode == 0, result.output
    assert SECRET not in result.output
    lines = dict(line.partition(": ")[::2] for line in result.stdout.splitlines())
    assert lines["cat /etc/motd"] == "inside the image|"
    assert lines["exists /etc/shadow"].startswith("no"), "the host's /etc/shadow"
    assert all(lines[f"cat {p}"].startswith("error") for p in (secret, "/escape-abs", "/escape-rel")), lines
    assert "work" not in lines["ls /"].split() and "tmp" not in lines["ls /"].split(), lines["ls /"]


def test_a_mount_through_a_symlink_lands_inside_the_root(
    containerd: PrivateContainerd, ctr: Ctr, probe_images: None, host_dir: Path, container_id: str
) -> None:
    # /escape-dir in the image points at a host folder: the volume must land at that path *inside*
    # the container's root, never on the host's folder.
    mount = f"type=bind,src={host_dir / 'volume'},dst=/escape-dir/vol,options=rbind:ro"
    target_in_root = host_dir / "escape-target"
    seen = probe(ctr, container_id, f"ls:{target_in_root}/vol", flags=("--mount", mount))

    assert seen[f"ls {target_in_root}/vol"] == "a.txt b.txt"
    assert list(target_in_root.iterdir()) == [], "nothing made on the host"
    eventually_nothing_left(containerd, ctr, container_id)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ("type=nosuchfs,src=none,dst=/x", "/x: unknown filesystem type 'nosuchfs'"),
        ("type=bind,src=/nope-wasmvisor,dst=/data,options=rbind", "/data: bind source /nope-wasmvisor: no such file"),
    ],
    ids=["unknown-type", "missing-bind-source"],
)
def test_a_bad_mount_fails_ctr_run_naming_the_entry_and_leaves_nothing(
    containerd: PrivateContainerd, ctr: Ctr, probe_images: None, container_id: str, mount: str, message: str
) -> None:
    result = ctr.run_container(PROBE, container_id, "/fs_probe.wasm", "ls:/", flags=["--mount", mount])

    assert result.returncode != 0
    assert "mounts[7] " + message in result.stderr, result.output  # after ctr's 7 default mounts
    eventually_nothing_left(containerd, ctr, container_id)


def test_an_unknown_namespace_path_fails_ctr_run_with_a_clear_message(
    containerd: PrivateContainerd, ctr: Ctr, probe_images: None, container_id: str
) -> None:
    result = ctr.run_container(PROBE, container_id, "/fs_probe.wasm", "ls:/",
                               flags=["--with-ns", "network:/proc/999999/ns/net"])

    assert result.returncode != 0
    assert "network /proc/999999/ns/net: no such namespace file" in result.stderr, result.output
    eventually_nothing_left(containerd, ctr, container_id)


def test_a_joined_network_namespace_is_used(ctr: Ctr, image: Callable[[str], str], container_id: str) -> None:
    # The host's own network namespace, by path: the guest's process is in it.
    run = ctr.start_container(image("sleep"), container_id, flags=["--with-ns", f"network:/proc/{os.getpid()}/ns/net"])
    try:
        run.wait_for_stdout("sleeping\n", timeout=20)
        (worker,) = processes_titled(f"wasmvisor-worker {ctr.namespace}/{container_id}")
        assert os.readlink(f"/proc/{worker}/ns/net") == os.readlink("/proc/self/ns/net")
        assert os.readlink(f"/proc/{worker}/ns/uts") != os.readlink("/proc/self/ns/uts")
        ctr.kill(container_id, "SIGKILL")
    finally:
        run.kill()


# --- processes ----------------------------------------------------------------------------------


@pytest.fixture
def sleeping(ctr: Ctr, image: Callable[[str], str], container_id: str) -> Iterator[tuple[int, int]]:
    """A sleeping guest: (relay pid, container process pid)."""
    run = ctr.start_container(image("sleep"), container_id)
    try:
        run.wait_for_stdout("sleeping\n", timeout=20)
        title = f"{ctr.namespace}/{container_id}"
        relays, workers = processes_titled(f"wasmvisor-init {title}"), processes_titled(f"wasmvisor-worker {title}")
        assert len(relays) == 1 and len(workers) == 1, (relays, workers)
        yield relays[0], workers[0]
        assert run.wait(timeout=20).returncode in (137, 143)
    finally:
        run.kill()


def test_task_pid_is_the_container_process_and_its_relay_is_its_parent(
    ctr: Ctr, container_id: str, sleeping: tuple[int, int]
) -> None:
    relay, worker = sleeping
    assert ctr.tasks()[container_id].pid == worker
    ppid = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert ppid == relay
    ctr.kill(container_id, "SIGTERM")


def test_kill_9_of_the_relay_ends_the_container(
    containerd: PrivateContainerd, ctr: Ctr, container_id: str, sleeping: tuple[int, int]
) -> None:
    relay, worker = sleeping
    os.kill(relay, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while worker in process_titles() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker not in processes_titled(f"wasmvisor-worker {ctr.namespace}/{container_id}")


# --- cost ---------------------------------------------------------------------------------------


def test_ctr_run_rm_time_with_the_container_setup(
    ctr: Ctr, probe_images: None, container_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Measured: `ctr run --rm` of a hello guest (the default spec: pid, ipc, uts, mount, network
    namespaces, 7 mounts, /dev, masked and read-only paths)."""
    times = []
    for i in range(8):
        began = time.perf_counter()
        result = ctr.run_container(HELLO, f"{container_id}-{i}")
        times.append((time.perf_counter() - began) * 1000)
        assert (result.returncode, result.stdout) == (0, "hello from wasmvisor\n"), result.output
    times.sort()
    with capsys.disabled():
        print(f"\nctr run --rm hello: min {times[0]:.0f} / median {statistics.median(times):.0f} / "
              f"max {times[-1]:.0f} ms")


# --- signals go to the container process ---------------------------------------------------------


def _process_state(pid: int) -> str:
    """The one-letter state of /proc/PID/stat (`T` when stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def test_sigstop_and_sigcont_stop_and_continue_the_container_process_not_its_relay(
    ctr: Ctr, container_id: str, sleeping: tuple[int, int]
) -> None:
    relay, worker = sleeping
    assert ctr.kill(container_id, "SIGSTOP").returncode == 0
    assert _eventually(lambda: _process_state(worker) == "T"), _process_state(worker)
    assert _process_state(relay) != "T", "the relay must not be the one stopped"
    assert ctr.kill(container_id, "SIGCONT").returncode == 0
    assert _eventually(lambda: _process_state(worker) != "T"), _process_state(worker)
    ctr.kill(container_id, "SIGTERM")  # the fixture checks it ends with 143


# --- kernel settings ------------------------------------------------------------------------------


def run_with_spec(ctr: Ctr, guest_wasm: dict[str, Path], tmp_path: Path, container_id: str, args: list[str],
                  process: dict[str, object], linux: dict[str, object]) -> tuple[int, str, str]:
    """`ctr run --config` of `args` (the probe or busybox) with a whole spec of our own (ctr has no --sysctl)."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "fs_probe.wasm").write_bytes(guest_wasm["fs_probe"].read_bytes())
    (root / "busybox").write_bytes(Path(BUSYBOX).read_bytes())
    (root / "busybox").chmod(0o755)
    spec = {
        "ociVersion": "1.0.2",
        "process": {"args": args, "cwd": "/", "env": ["PATH=/"], **process},
        "root": {"path": str(root)},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "uts", "mount", "ipc", "network")], **linux},
    }
    config = tmp_path / "spec.json"
    config.write_text(json.dumps(spec))
    argv = [a for a in ctr.run_args("", container_id, flags=["--config", str(config)]) if a]
    result = ctr.run(*argv)
    return result.returncode, result.stdout, result.stderr


def test_spec_sysctl_and_oom_score_adj_are_set_in_the_container_only(
    ctr: Ctr, guest_wasm: dict[str, Path], tmp_path: Path, container_id: str
) -> None:
    host_shmmax = Path("/proc/sys/kernel/shmmax").read_text()
    code, out, err = run_with_spec(
        ctr, guest_wasm, tmp_path, container_id,
        # busybox: a wasm guest cannot read /proc (worker/confine.py); the worker sets both the same way.
        ["/busybox", "cat", "/proc/sys/kernel/shmmax", "/proc/sys/net/ipv4/ip_forward", "/proc/self/oom_score_adj"],
        process={"oomScoreAdj": 321},
        linux={"sysctl": {"kernel.shmmax": "123456789", "net.ipv4.ip_forward": "1"}},
    )

    assert code == 0, out + err
    assert out.splitlines() == ["123456789", "1", "321"], out
    assert Path("/proc/sys/kernel/shmmax").read_text() == host_shmmax, "the host's own value is untouched"


def test_a_sysctl_outside_the_containers_namespaces_fails_ctr_run_naming_it(
    ctr: Ctr, guest_wasm: dict[str, Path], tmp_path: Path, container_id: str
) -> None:
    code, out, err = run_with_spec(ctr, guest_wasm, tmp_path, container_id, ["/fs_probe.wasm", "ls:/"], process={},
                                   linux={"sysctl": {"vm.swappiness": "10"}})

    assert code != 0
    assert "linux.sysctl vm.swappiness: not in a separate kernel namespace" in err, out + err


def test_an_rbind_ro_volume_is_read_only_in_its_submounts_too(
    containerd: PrivateContainerd, ctr: Ctr, probe_images: None, tmp_path: Path, container_id: str
) -> None:
    volume = tmp_path / "nested"
    (volume / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(volume / "sub")], check=True)
    try:
        mount = f"type=bind,src={volume},dst=/data,options=rbind:ro"
        seen = probe(ctr, container_id, "write:/data/top.txt", "write:/data/sub/below.txt", "ls:/data/sub",
                     flags=("--mount", mount))
        assert seen["write /data/top.txt"].startswith("error"), seen
        assert seen["write /data/sub/below.txt"].startswith("error"), seen  # wasmtime: EROFS as "I/O error"
        assert not (volume / "sub" / "below.txt").exists()
        eventually_nothing_left(containerd, ctr, container_id)
    finally:
        subprocess.run(["umount", "-l", str(volume / "sub")], check=False)
