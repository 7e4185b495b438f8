"""Shared parts of the benchmark scripts: a private containerd (tests/e2e/containerd.py), the images,
statistics and the table printer. Benchmarks run as root, like the e2e tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.conftest import shim_dir  # noqa: E402
from tests.e2e.containerd import RUNC_RUNTIME, WASMVISOR_RUNTIME, PrivateContainerd  # noqa: E402
from tests.e2e.ctr import Ctr  # noqa: E402
from tests.guests.build import build_all  # noqa: E402
from wasmvisor.image import build_busybox_image, build_oci_tar  # noqa: E402

__all__ = ["RUNC_RUNTIME", "WASMVISOR_RUNTIME", "Ctr", "bench_containerd", "preamble", "pss_kib", "ratio",
           "shim_dir", "smaps_profile", "stats_row", "table"]

POD_ANNOTATION = "io.kubernetes.cri.sandbox-id"
IMAGES = {
    "hello": "docker.io/wasmvisor-bench/hello:latest",
    "sleep": "docker.io/wasmvisor-bench/sleep:latest",
    "busybox": "docker.io/wasmvisor-bench/busybox:latest",
    "large": "docker.io/wasmvisor-bench/large:latest",
}
LARGE_FUNCTIONS = 5000
"""Functions of the large module (~550 KB of wasm, ~0.25 s to compile on this 2-core VM)."""


@contextlib.contextmanager
def bench_containerd(namespace: str = "") -> Iterator[tuple[PrivateContainerd, Ctr, Path]]:
    """A private containerd (log level info: debug lines would cost time) with the bench images
    imported; yields it, a Ctr and the module cache folder its shims use (empty at the start).

    The namespace is this run's own by default (`wvbench<pid>`): the cgroup paths (`/<namespace>/<id>`)
    and the supervisors' titles are node-wide, and a private containerd's stop kills the supervisors and
    removes the empty cgroup folders of its namespaces, which would break a benchmark running beside it."""
    namespace = namespace or f"wvbench{os.getpid()}"
    if os.geteuid() != 0:
        sys.exit("benchmarks start a private containerd: run them as root")
    base = Path(tempfile.mkdtemp(prefix="wvb-", dir="/tmp"))
    cache = base / "module-cache"
    os.environ["WASMVISOR_CACHE_DIR"] = str(cache)  # containerd passes its env on to the shims
    instance = PrivateContainerd(base / "c", shim_dirs=[shim_dir()], log_level="info")
    try:
        instance.start()
        ctr = instance.ctr(namespace)
        for tar in build_images(base / "images"):
            ctr.import_image(tar)
        yield instance, ctr, cache
    finally:
        with contextlib.suppress(Exception):
            instance.ctr(namespace).remove_all()
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)


MODULES: dict[str, bytes] = {}
"""The wasm module of each wasm bench image (by IMAGES key), filled by build_images."""


def build_images(out: Path) -> list[Path]:
    import wasmtime  # here: only the bench's own process needs it

    out.mkdir(parents=True, exist_ok=True)
    guests = build_all(Path(os.environ.get("WASMVISOR_GUEST_CACHE", REPO / "_work" / "guests")))
    MODULES.update(hello=guests["hello"].read_bytes(), sleep=guests["sleep"].read_bytes(),
                   large=bytes(wasmtime.wat2wasm(large_module_wat(LARGE_FUNCTIONS))))
    tars = []
    for name in ("hello", "sleep", "large"):
        tar = out / f"{name}.tar"
        build_oci_tar(tar, IMAGES[name], {f"/{name}.wasm": MODULES[name]}, entrypoint=[f"/{name}.wasm"])
        tars.append(tar)
    busybox = out / "busybox.tar"
    build_busybox_image(busybox, IMAGES["busybox"])
    tars.append(busybox)
    return tars


def forget_compiled(cache: Path, name: str) -> None:
    """Delete the module cache's entry for the bench image `name` (the next start compiles it)."""
    from wasmvisor.engines.catalog import wasmtime_fingerprint
    from wasmvisor.engines.module_cache import ModuleCache

    entry: ModuleCache[object] = ModuleCache(cache, wasmtime_fingerprint())
    for path in entry.paths(entry.key(MODULES[name])):
        path.unlink(missing_ok=True)


def large_module_wat(functions: int) -> str:
    """A WASI module with `functions` small looping functions that call one another (so the compiler
    has real work: what the compiled-module cache saves), whose `_start` runs a few of them and prints
    one line."""
    funcs = []
    for i in range(functions):
        funcs.append(f"""  (func $f{i} (param $x i32) (result i32) (local $i i32) (local $acc i32)
    (local.set $acc (local.get $x))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.const {8 + i % 5})))
      (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const {31 + i}))
                               (i32.xor (local.get $i) (i32.const {i}))))
      (local.set $acc (i32.rotl (local.get $acc) (i32.and (local.get $i) (i32.const 31))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (if (result i32) (i32.eqz (local.get $x)) (then (local.get $acc))
      (else (call $f{(i + 1) % functions} (i32.sub (local.get $x) (i32.const 1))))))""")
    body = "\n".join(funcs)
    return f"""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from a large module\\n")
{body}
  (func (export "_start")
    (drop (call $f0 (i32.const 3)))
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 26))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def cpu_seconds_with_children(pid: int) -> float:
    """CPU time of a process and of its children it has reaped (utime, stime, cutime, cstime). For
    containerd that includes each shim binary it ran and waited for (`start`, `delete`): a figure a busy
    machine skews far less than wall time."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def pss_kib(pid: int) -> int:
    """Proportional set size of a process, from /proc/PID/smaps_rollup (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def smaps_by_mapping(pid: int) -> dict[str, dict[str, int]]:
    """KiB per mapping of a process, from /proc/PID/smaps, summed by what is mapped: a file's name,
    `[heap]`, `[stack]`, or `[anon]` for anonymous memory (Python's arenas and wasmtime's allocations
    among it). Per mapping: Pss, Private_Dirty, Private_Clean, Shared_Dirty, Shared_Clean, Rss."""
    fields = ("Rss", "Pss", "Private_Dirty", "Private_Clean", "Shared_Dirty", "Shared_Clean")
    out: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 1)[0]
                if not head.endswith(":"):  # a mapping's header: address perms offset dev inode [path]
                    parts = line.split(None, 5)
                    path = parts[5].strip() if len(parts) > 5 else ""
                    name = path.rsplit("/", 1)[-1] if path.startswith("/") else (path or "[anon]")
                    current = out.setdefault(name, dict.fromkeys(fields, 0))
                elif current is not None and head[:-1] in fields:
                    current[head[:-1]] += int(line.split()[1])
    except OSError:
        pass
    return out


def smaps_profile(title: str, pid: int, top: int = 8) -> str:
    """The mappings of `pid` that hold most of its PSS, one line each (KiB -> MB)."""
    rows = sorted(smaps_by_mapping(pid).items(), key=lambda item: -item[1]["Pss"])
    total = sum(v["Pss"] for _, v in rows)
    lines = [f"{title} (pid {pid}): PSS {total / 1024:.2f} MB; by mapping "
             "(PSS / private dirty / shared dirty / shared clean, MB):"]
    for name, v in rows[:top]:
        lines.append(f"    {name[:40]:40} {v['Pss'] / 1024:6.2f} {v['Private_Dirty'] / 1024:6.2f} "
                     f"{v['Shared_Dirty'] / 1024:6.2f} {v['Shared_Clean'] / 1024:6.2f}")
    rest = sum(v["Pss"] for _, v in rows[top:])
    lines.append(f"    {'(the rest)':40} {rest / 1024:6.2f}")
    return "\n".join(lines)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def stats_row(name: str, seconds: Sequence[float]) -> list[str]:
    ms = [s * 1000 for s in seconds]
    return [name, str(len(ms)), f"{statistics.median(ms):.1f}", f"{percentile(ms, 95):.1f}",
            f"{percentile(ms, 99):.1f}", f"{min(ms):.1f}"]


STATS_HEADER = ["case", "runs", "median ms", "p95 ms", "p99 ms", "min ms"]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- what every benchmark prints: where and on what it ran, and its ratios ----------------------


def load_average() -> str:
    """The 1, 5 and 15 minute load averages and the core count: a busy machine skews every figure."""
    try:
        with open("/proc/loadavg") as f:
            one, five, fifteen = f.read().split()[:3]
    except (OSError, ValueError):
        return "load unknown"
    return f"load {one} {five} {fifteen} on {os.cpu_count()} cores"


def commit() -> str:
    """The commit the benchmark runs (short hash, `+dirty` with uncommitted changes), or `unknown`."""
    import subprocess

    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def preamble(name: str) -> None:
    """The first line of every benchmark's output: its name, the commit and the machine's load now."""
    print(f"{name}: commit {commit()}, {load_average()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)


def ratio(what: str, wasmvisor: float, runc: float, *, lower_is_better: bool, target: str = "") -> str:
    """One ratio line, always wasmvisor / runc, saying which way is better (times and memory: lower;
    rates: higher) and the target when there is one."""
    better = "lower is better" if lower_is_better else "higher is better"
    value = f"{wasmvisor / runc:.2f}x" if runc else "n/a (runc 0)"
    goal = f", target {target}" if target else ""
    return f"ratio wasmvisor/runc, {what}: {value} ({better}{goal})"


# --- straight to the shim (tests/integration/harness.py) ---------------------------------------


@contextlib.contextmanager
def shim_harness() -> Iterator[Any]:
    """A Harness (a stand-in events server; supervisors started through the shim's `start` action)
    whose events server stamps each TaskExit with time.perf_counter() in `exits[container_id]`."""
    import tests.integration.harness as harness_module
    from wasmvisor.proto.containerd.events import task_pb2 as ev

    if os.geteuid() != 0:
        sys.exit("the supervisor mounts and signals as root: run as root")

    class TimedRecorder(harness_module.EventsRecorder):
        def __init__(self) -> None:
            super().__init__()
            self.exits: dict[str, float] = {}
            self.exit_seen = threading.Condition()

        async def Forward(self, req: Any, call: object) -> object:
            at = time.perf_counter()
            if req.envelope.topic == "/tasks/exit":
                msg = ev.TaskExit()
                msg.ParseFromString(req.envelope.event.value)
                with self.exit_seen:
                    self.exits[msg.container_id] = at
                    self.exit_seen.notify_all()
            return await super().Forward(req, call)

        def wait_exit(self, container_id: str, timeout: float = 20) -> float:
            with self.exit_seen:
                if not self.exit_seen.wait_for(lambda: container_id in self.exits, timeout):
                    raise SystemExit(f"no TaskExit for {container_id} within {timeout}s")
                return self.exits[container_id]

    cache = tempfile.mkdtemp(prefix="wvb-cache-", dir="/tmp")
    os.environ.setdefault("WASMVISOR_CACHE_DIR", cache)
    try:
        with harness_module.running_harness("wvb-", TimedRecorder()) as h:
            yield h
    finally:
        shutil.rmtree(cache, ignore_errors=True)
