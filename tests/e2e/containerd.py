"""A private containerd for end-to-end tests.

`PrivateContainerd` starts containerd (from `$WASMVISOR_CONTAINERD_BIN_DIR`, default /usr/bin) with its
own root, state, sockets and opt dir under a short temporary base dir (unix socket paths must stay
under ~100 bytes), captures its stderr to a log file (shim log lines land there), and stops it by PID.
The system containerd and its socket are never touched. The shim binary directories given are put
first on containerd's PATH: that is how `io.containerd.wasmvisor.v1` resolves to
`containerd-shim-wasmvisor-v1`. `PrivateContainerd.ctr(namespace)` gives a `Ctr` (tests/e2e/ctr.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.ctr import RUNC_RUNTIME, WASMVISOR_RUNTIME, Ctr, RunResult
from tests.e2e.host import (
    kill_pids,
    mounts_under,
    process_titles,
    process_tree,
    remove_empty_cgroups,
    shim_socket_path,
    socket_is_live,
)

__all__ = ["RUNC_RUNTIME", "WASMVISOR_RUNTIME", "Ctr", "PrivateContainerd", "RunResult", "private_containerd"]

BIN_DIR_ENV = "WASMVISOR_CONTAINERD_BIN_DIR"

DISABLED_PLUGINS_1X = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)
CRI_PLUGINS = ("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime")
"""The plugins of containerd's CRI (1.x has only the first), off unless a test asks for CRI."""
DISABLED_PLUGINS_2X = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.cri.v1.images",
    "io.containerd.cri.v1.runtime",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.blockfile",
    "io.containerd.snapshotter.v1.erofs",
)


class ContainerdError(RuntimeError):
    """The private containerd could not be started or driven; the message carries its log's tail."""


@dataclass(frozen=True)
class ContainerdBinaries:
    """The containerd and ctr executables of the version under test (one place to switch versions)."""

    bin_dir: Path

    @classmethod
    def from_env(cls) -> ContainerdBinaries:
        return cls(Path(os.environ.get(BIN_DIR_ENV, "/usr/bin")))

    @property
    def containerd(self) -> Path:
        return self.bin_dir / "containerd"

    @property
    def ctr(self) -> Path:
        return self.bin_dir / "ctr"

    def missing(self) -> list[str]:
        return [str(p) for p in (self.containerd, self.ctr) if not os.access(p, os.X_OK)]

    def version(self) -> str:
        out = subprocess.run([str(self.containerd), "--version"], capture_output=True, text=True).stdout
        match = re.search(r"\s(v?\d+\.\d+\.\d+)", out)
        return match.group(1).lstrip("v") if match else out.strip()

    def major(self) -> int:
        """The major version (1 when it cannot be read: the 1.x config then)."""
        major = self.version().split(".", 1)[0]
        return int(major) if major.isdigit() else 1


# --- config.toml editing (containerd has no "set key" command; tomllib can only read) -------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def set_toml_values(text: str, values: Mapping[tuple[str, str], object]) -> str:
    """Set `key = value` in the named tables (`""` is the top level) of a TOML document, keeping the
    rest of the text as it is. Missing keys are added at the top of their table, missing tables at
    the end. Only for simple `key = value` lines such as those of `containerd config default`."""
    lines = text.splitlines()
    # Table names compare by their parts: 1.x writes plugins."x", 2.x (config version 3) plugins.'x'.
    canonical = {sect: ".".join(f'"{p}"' if "." in p else p for p in _split_table_name(sect)) for sect, _ in values}
    pending = {(canonical[sect], key): value for (sect, key), value in values.items()}
    section = ""
    header_at: dict[str, int] = {"": -1}
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]") and not stripped.startswith("[["):
            name = stripped[1:-1].strip()
            section = ".".join(f'"{p}"' if "." in p else p for p in _split_table_name(name))
            header_at[section] = i
            continue
        match = re.match(r"\s*([A-Za-z0-9_.\"-]+)\s*=", line)
        if match and (section, match.group(1)) in pending:
            indent = line[: len(line) - len(line.lstrip())]
            key = match.group(1)
            lines[i] = f"{indent}{key} = {_toml_value(pending.pop((section, key)))}"
    inserts: dict[int, list[str]] = {}
    appended: dict[str, list[str]] = {}
    for (sect, key), value in pending.items():
        entry = f"{key} = {_toml_value(value)}"
        if sect in header_at:
            inserts.setdefault(header_at[sect], []).append("  " + entry if sect else entry)
        else:
            appended.setdefault(sect, []).append("  " + entry)
    out: list[str] = list(inserts.get(-1, []))
    for i, line in enumerate(lines):
        out.append(line)
        out.extend(inserts.get(i, []))
    for sect, entries in appended.items():
        out.extend(["", f"[{sect}]", *entries])
    return "\n".join(out) + "\n"


def _toml_get(doc: dict[str, Any], section: str, key: str) -> object:
    table: Any = doc
    if section:
        for part in _split_table_name(section):
            table = table.get(part, {})
    return table.get(key)


def _split_table_name(name: str) -> list[str]:
    return [p.strip("\"'").strip() for p in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", name)] if name else []


# --- the private containerd --------------------------------------------------------------------


class PrivateContainerd:
    """One containerd process with everything under `base_dir` (except /run/containerd/{s,runc})."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        binaries: ContainerdBinaries | None = None,
        shim_dirs: Sequence[str | os.PathLike[str]] = (),
        log_level: str = "debug",
        line: str = "",
        extra_env: Mapping[str, str] | None = None,
        cri_config: Mapping[tuple[str, str], object] | None = None,
    ) -> None:
        self.base = Path(base_dir)
        self.cri_config = dict(cri_config) if cri_config is not None else None
        """With a mapping (config.toml values, as for set_toml_values), CRI is on and configured so
        (tests/cri/node.py builds it); None keeps CRI off."""
        self.extra_env = dict(extra_env or {})
        """Added to containerd's environment, so every shim it starts sees them too."""
        self.line = line
        """The release line under test (`1.6`, `1.7`, `2.1`; tests/e2e/versions.py), "" if unknown."""
        self.binaries = binaries or ContainerdBinaries.from_env()
        self.shim_dirs = [Path(d) for d in shim_dirs]
        self.log_level = log_level
        self.address = str(self.base / "c.sock")
        self.ttrpc_address = str(self.base / "c.sock.ttrpc")
        self.root = self.base / "root"
        self.state = self.base / "state"
        self.opt = self.base / "opt"
        self.fifo_dir = self.base / "fifo"
        self.config_path = self.base / "config.toml"
        self.log_path = self.base / "containerd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.namespaces: set[str] = set()
        self.containers: set[tuple[str, str]] = set()
        if len(self.ttrpc_address) >= 100:
            raise ContainerdError(f"base dir {self.base} is too long for unix socket paths")

    # The environment containerd (and so every shim it starts) runs with.
    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        path = [str(d) for d in self.shim_dirs] + [str(self.binaries.bin_dir)]
        path += ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        env["PATH"] = os.pathsep.join(dict.fromkeys(path))
        for leak in ("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "TTRPC_ADDRESS", "NOTIFY_SOCKET"):
            env.pop(leak, None)
        env.update(self.extra_env)
        return env

    def disabled_plugins(self) -> tuple[str, ...]:
        """CRI (unless `cri_config`: most tests drive containerd with ctr) and the snapshotters this
        machine cannot serve."""
        plugins = DISABLED_PLUGINS_2X if self.binaries.major() >= 2 else DISABLED_PLUGINS_1X
        if self.cri_config is not None:
            plugins = tuple(p for p in plugins if p not in CRI_PLUGINS)
        return plugins

    def write_config(self) -> Path:
        default = subprocess.run(
            [str(self.binaries.containerd), "config", "default"], capture_output=True, text=True, check=True
        ).stdout
        values: dict[tuple[str, str], object] = {
            ("", "root"): str(self.root),
            ("", "state"): str(self.state),
            ("", "disabled_plugins"): list(self.disabled_plugins()),
            ("grpc", "address"): self.address,
            ("ttrpc", "address"): self.ttrpc_address,
            ("debug", "level"): self.log_level,
            ('plugins."io.containerd.internal.v1.opt"', "path"): str(self.opt),
            **(self.cri_config or {}),
        }
        text = set_toml_values(default, values)
        doc = tomllib.loads(text)
        for (section, key), value in values.items():
            got = _toml_get(doc, section, key)
            if got != value:
                raise ContainerdError(f"config {self.config_path}: [{section}] {key} is {got!r}, not {value!r}")
        self.config_path.write_text(text)
        return self.config_path

    def start(self, timeout: float = 15.0) -> None:
        missing = self.binaries.missing()
        if missing:
            raise ContainerdError(f"containerd binaries not found: {', '.join(missing)}")
        for d in (self.root, self.state, self.opt, self.fifo_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.write_config()
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [str(self.binaries.containerd), "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.base,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ContainerdError(f"containerd exited with {self.process.returncode}:\n{self.log_tail()}")
            if os.path.exists(self.address):
                probe = subprocess.run(
                    [str(self.binaries.ctr), "--address", self.address, "version"],
                    capture_output=True,
                    text=True,
                    env=self.environment(),
                    timeout=timeout,
                )
                if probe.returncode == 0:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise ContainerdError(f"containerd did not answer within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.02)

    def ctr(self, namespace: str) -> Ctr:
        self.namespaces.add(namespace)
        return Ctr(self, namespace)

    def log_text(self, since: int = 0) -> str:
        """containerd's log (its stderr) from byte offset `since`."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def bundle_dir(self, namespace: str, container_id: str) -> Path:
        return self.state / "io.containerd.runtime.v2.task" / namespace / container_id

    def shim_socket(self, namespace: str, group: str) -> Path:
        return shim_socket_path(self.address, namespace, group)

    def leftover_shims(self) -> list[int]:
        """Shim processes started by this containerd that still run (runc shims by their argv,
        wasmvisor supervisors by their title)."""
        pids = []
        for pid, title in process_titles().items():
            if f"-address {self.address} " in title + " " or any(
                title.startswith(f"wasmvisor-shim {ns}/") for ns in self.namespaces
            ):
                pids.append(pid)
        return pids

    def stop(self, timeout: float = 10.0) -> None:
        """Stop containerd (SIGTERM, then SIGKILL), kill shims it left, remove what they left."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in self.leftover_shims():
            tree = process_tree(pid)
            kill_pids(tree)
        for point in sorted(mounts_under(self.base), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        for namespace, container_id in self.containers:
            sock = self.shim_socket(namespace, container_id)
            if sock.exists() and not socket_is_live(sock):
                sock.unlink(missing_ok=True)
        for namespace in self.namespaces:
            remove_empty_cgroups(namespace)
            # runc's state of our containers (ours alone: namespaces are unique per instance).
            shutil.rmtree(f"/run/containerd/runc/{namespace}", ignore_errors=True)


@contextlib.contextmanager
def private_containerd(
    *,
    shim_dirs: Sequence[str | os.PathLike[str]] = (),
    binaries: ContainerdBinaries | None = None,
    keep: bool = False,
    line: str = "",
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[PrivateContainerd]:
    """A started private containerd under a fresh /tmp/wvctr-XXXX dir; everything removed at exit
    (unless `keep`, for debugging)."""
    base = tempfile.mkdtemp(prefix="wvctr-", dir="/tmp")
    instance = PrivateContainerd(base, binaries=binaries, shim_dirs=shim_dirs, line=line, extra_env=extra_env)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
