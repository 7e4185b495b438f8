"""A private containerd with its CRI plugin on, as a Kubernetes node would run it, for tests and benchmarks.

`cri_node(line)` starts one (tests/e2e/containerd.py does the process) with:
- config version 2 on 1.x (`io.containerd.grpc.v1.cri`) or 3 on 2.x (`io.containerd.cri.v1.runtime` and
  `.images`), the handlers `wasmvisor` and `runc`, and on 2.x the `sandboxer` asked for on `wasmvisor`
  (`podsandbox` by default; `shim` for the sandbox API's tests: `cri_node(binaries, ..., sandboxer="shim")`
  in a fixture of their own); `runc` keeps `podsandbox`; on 2.x also `wasmvisor-shim`, wasmvisor with
  `sandboxer = "shim"` whatever the node's sandboxer;
- `restrict_oom_score_adj = true`: this machine refuses to lower oom_score_adj, which the pause
  container asks for (-998);
- a pause image from pause.c (gcc -static), imported into `k8s.io` as the sandbox image;
- CNI: Debian's `loopback` plugin, then cni_eth0.sh, which gives the pod an `eth0` on 127.0.0.0/8
  (CRI wants an eth0 in the result; the tests may use no other address);
- pod cgroups under `/<cgroup_root>/` (cgroupfs driver), removed with the node; or, with the systemd driver
  (`cgroup_driver="systemd"`, by default where systemd is PID 1 on cgroup v2: tests/e2e/host.py), the
  kubelet's `kubepods-<qos>-pod<uid>.slice` parents and `SystemdCgroup = true` in both handlers' options.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.cri.client import CriClient, CriError, poll
from tests.e2e import host
from tests.e2e.containerd import ContainerdBinaries, PrivateContainerd
from tests.e2e.ctr import Ctr
from tests.e2e.host import kill_pids, process_titles, process_tree, processes_titled, remove_empty_cgroups
from wasmvisor.image import FileSpec, build_oci_tar, host_architecture

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CRI_NAMESPACE = "k8s.io"
PAUSE_REF = "docker.io/wasmvisor-test/pause:latest"
CNI_PLUGIN = "wasmvisor-test-eth0"
SYSTEM_CNI_DIR = Path("/usr/lib/cni")
HANDLERS = {"wasmvisor": "io.containerd.wasmvisor.v1", "runc": "io.containerd.runc.v2"}
SANDBOXERS = ("podsandbox", "shim")
SHIM_SANDBOXER_HANDLER = "wasmvisor-shim"
"""On 2.x, a handler of wasmvisor with `sandboxer = "shim"` whatever the node's sandboxer (bench_pods
compares it with the pause-container pods of the other handlers on one containerd)."""


class CriNodeError(RuntimeError):
    """The CRI node could not be set up; the message says what is missing."""


def build_pause(cache: Path) -> Path:
    """pause.c compiled statically (cached by its source's hash)."""
    source = HERE / "pause.c"
    out = cache / f"pause-{hashlib.sha256(source.read_bytes()).hexdigest()[:16]}"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        proc = subprocess.run(["gcc", "-O2", "-static", "-o", str(tmp), str(source)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise CriNodeError(f"gcc -static {source} failed:\n{proc.stderr}")
        tmp.replace(out)
    return out


def build_pause_image(out: Path, cache: Path) -> Path:
    """An OCI tarball of the pause image (one static binary, entrypoint /pause), host platform."""
    pause = build_pause(cache).read_bytes()
    build_oci_tar(
        out,
        PAUSE_REF,
        {"/pause": FileSpec.executable(pause)},
        entrypoint=["/pause"],
        os="linux",
        architecture=host_architecture(),
    )
    return out


def install_cni(base: Path) -> tuple[Path, Path]:
    """A CNI bin dir (loopback from Debian's plugins, our eth0 plugin) and a conf dir with one conflist."""
    loopback = SYSTEM_CNI_DIR / "loopback"
    if not os.access(loopback, os.X_OK):
        raise CriNodeError(f"{loopback} not found: install Debian's containernetworking-plugins (scripts/setup.sh)")
    bin_dir, conf_dir = base / "cni-bin", base / "cni-conf"
    bin_dir.mkdir(parents=True)
    conf_dir.mkdir(parents=True)
    (bin_dir / "loopback").symlink_to(loopback)
    shutil.copy(HERE / "cni_eth0.sh", bin_dir / CNI_PLUGIN)
    (bin_dir / CNI_PLUGIN).chmod(0o755)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "wasmvisor-test",
        "plugins": [{"type": "loopback"}, {"type": CNI_PLUGIN}],
    }
    (conf_dir / "10-wasmvisor-test.conflist").write_text(json.dumps(conflist, indent=2))
    return bin_dir, conf_dir


def cri_config(
    major: int, *, cni_bin: Path, cni_conf: Path, sandboxer: str = "podsandbox", systemd_cgroup: bool = False
) -> dict[tuple[str, str], object]:
    """config.toml values that turn a default config into the test node's (version 2 or 3 by `major`)."""
    if sandboxer not in SANDBOXERS:
        raise CriNodeError(f"sandboxer {sandboxer!r}: expected one of {', '.join(SANDBOXERS)}")
    if major < 2:
        if sandboxer != "podsandbox":
            raise CriNodeError(f"sandboxer {sandboxer!r} needs containerd 2.x (1.x runs pause containers only)")
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        values: dict[tuple[str, str], object] = {
            (cri, "sandbox_image"): PAUSE_REF,
            (cri, "restrict_oom_score_adj"): True,
            (cri, "disable_apparmor"): True,
            (f"{cri}.cni", "bin_dir"): str(cni_bin),
            (f"{cri}.cni", "conf_dir"): str(cni_conf),
        }
        runtimes = f"{cri}.containerd.runtimes"
        for name, runtime_type in HANDLERS.items():
            values[(f"{runtimes}.{name}", "runtime_type")] = runtime_type
            if systemd_cgroup:
                values[(f"{runtimes}.{name}.options", "SystemdCgroup")] = True
        return values
    runtime = 'plugins."io.containerd.cri.v1.runtime"'
    values = {
        ('plugins."io.containerd.cri.v1.images".pinned_images', "sandbox"): PAUSE_REF,
        (runtime, "restrict_oom_score_adj"): True,
        (runtime, "disable_apparmor"): True,
        (f"{runtime}.cni", "bin_dirs"): [str(cni_bin)],
        (f"{runtime}.cni", "conf_dir"): str(cni_conf),
    }
    for name, runtime_type in HANDLERS.items():
        values[(f"{runtime}.containerd.runtimes.{name}", "runtime_type")] = runtime_type
        # runc stays the baseline: its shim serves no sandbox API either.
        values[(f"{runtime}.containerd.runtimes.{name}", "sandboxer")] = (
            sandboxer if name == "wasmvisor" else "podsandbox"
        )
    shim_handler = f"{runtime}.containerd.runtimes.{SHIM_SANDBOXER_HANDLER}"
    values[(shim_handler, "runtime_type")] = HANDLERS["wasmvisor"]
    values[(shim_handler, "sandboxer")] = "shim"
    if systemd_cgroup:
        for name in (*HANDLERS, SHIM_SANDBOXER_HANDLER):
            values[(f"{runtime}.containerd.runtimes.{name}.options", "SystemdCgroup")] = True
    return values


@dataclass
class CriNode:
    """A running CRI node: its containerd, a kubelet-like client, `ctr -n k8s.io`, where pods' files go."""

    containerd: PrivateContainerd
    client: CriClient
    ctr: Ctr
    sandboxer: str

    def import_image(self, tar: str | os.PathLike[str], ref: str) -> str:
        """Import an image tarball into `k8s.io` and return `ref` once CRI sees it: CRI's image store
        follows containerd's image events, asynchronously on 2.x."""
        self.ctr.import_image(tar)
        poll(lambda: self.client.image_status(ref), lambda image: image is not None, 30, f"CRI to see {ref}")
        return ref

    def shim_pids(self) -> list[int]:
        """Shims of this containerd: runc's by their argv, wasmvisor's supervisors and template by the
        ttrpc address containerd gave them in their environment (their titles do not name it)."""
        marker = f"TTRPC_ADDRESS={self.containerd.ttrpc_address}".encode()
        pids = []
        for pid, title in process_titles().items():
            if pid == os.getpid():
                continue
            if f"-address {self.containerd.address} " in title + " ":
                pids.append(pid)
                continue
            if title.startswith("wasmvisor-"):
                with contextlib.suppress(OSError):
                    if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                        pids.append(pid)
        return sorted(pids)

    @staticmethod
    def supervisors(pod_id: str) -> list[int]:
        """The wasmvisor supervisor(s) of a pod (one while the pod lives)."""
        return processes_titled(f"wasmvisor-shim {CRI_NAMESPACE}/{pod_id}")

    def wait_supervisor_gone(self, pod_id: str, timeout: float = 15.0) -> None:
        """Wait for a removed pod's supervisor to end: it lingers a second after containerd's Shutdown
        in case another task of the group comes."""
        poll(lambda: self.supervisors(pod_id), lambda pids: not pids, timeout, f"supervisor of pod {pod_id} to end")

    def restart_containerd(self) -> None:
        """Stop containerd alone (its shims and pods keep running) and start it again on the same dirs."""
        proc = self.containerd.process
        assert proc is not None, "containerd is not running"
        proc.terminate()
        proc.wait(30)
        self.containerd.process = None
        self.containerd.start()
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until CRI serves: containerd answers `ctr version` before CRI has recovered its pods
        (until then every CRI call fails with `server is not initialized yet`)."""

        def serving() -> str:
            try:
                self.client.list_pods()
            except CriError as err:
                return str(err)
            return ""

        poll(serving, lambda error: not error, timeout, "CRI to serve")


@contextlib.contextmanager
def cri_node(
    binaries: ContainerdBinaries,
    *,
    shim_dirs: Sequence[str | os.PathLike[str]],
    line: str = "",
    sandboxer: str = "podsandbox",
    cache: Path | None = None,
    log_level: str = "debug",
    keep: bool = False,
    cgroup_driver: str = "",
) -> Iterator[CriNode]:
    """A started CRI node under a fresh /tmp/wvcri-* dir; pods, shims, cgroups and files gone at exit.
    `cgroup_driver` (cgroupfs or systemd) is the host's (tests/e2e/host.py) unless given."""
    cgroup_driver = cgroup_driver or host.cgroup_driver()
    base = Path(tempfile.mkdtemp(prefix="wvcri-", dir="/tmp"))
    cgroup_root = f"wvcri-{base.name.removeprefix('wvcri-')}"
    cni_bin, cni_conf = install_cni(base)
    instance = PrivateContainerd(
        base / "c",
        binaries=binaries,
        shim_dirs=shim_dirs,
        line=line,
        log_level=log_level,
        cri_config=cri_config(binaries.major(), cni_bin=cni_bin, cni_conf=cni_conf, sandboxer=sandboxer,
                              systemd_cgroup=cgroup_driver == "systemd"),
    )
    node: CriNode | None = None
    try:
        instance.start()
        ctr = Ctr(instance, CRI_NAMESPACE)  # not instance.ctr(): its teardown would match any CRI node's shims
        client = CriClient(instance.address, files=base / "kubelet", cgroup_root=cgroup_root,
                           cgroup_driver=cgroup_driver)
        node = CriNode(instance, client, ctr, sandboxer)
        node.wait_ready()
        node.import_image(build_pause_image(base / "pause.tar", cache or REPO / "_work" / "guests"), PAUSE_REF)
        yield node
    finally:
        if node is not None:
            with contextlib.suppress(Exception):
                node.client.remove_all_pods()
            node.client.close()
            leftover = node.shim_pids()
        else:
            leftover = []
        instance.stop()
        for pid in leftover:
            kill_pids(process_tree(pid))
        remove_empty_cgroups(cgroup_root)
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
