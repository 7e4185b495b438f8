#!/usr/bin/env python3
"""bench_stress: N short tasks, P at a time, through containerd's own gRPC API, as runwasi's stress test
measures: each task is Containers.Create, Tasks.Create, Tasks.Start, Tasks.Wait, Tasks.Delete and
Containers.Delete from one client process (no `ctr` per task). runc runs busybox `/bin/true`, wasmvisor
runs hello, on the same private containerd in one run, in two groupings:

  pod      every task carries the pod annotation (io.kubernetes.cri.sandbox-id) of one pod whose
           sandbox (a sleeping task of the same runtime) runs throughout: one shim for all the tasks;
  task     no annotation: each task gets a shim of its own (a new group), as `ctr run` does.

Both runtimes get the same spec (ctr's default, with the task's args and cgroup path) and a read-only
bind mount of a prepared root filesystem as the task's rootfs, with no stdio: what differs is the
runtime. Reports tasks/s and the p50/p99 time of one task, per runtime, grouping and P.

    sudo .venv/bin/python scripts/bench_stress.py --tasks 1000 --parallel 4,16
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from benchlib import (
    MODULES,
    POD_ANNOTATION,
    RUNC_RUNTIME,
    WASMVISOR_RUNTIME,
    bench_containerd,
    percentile,
    preamble,
    ratio,
    table,
)
from google.protobuf.any_pb2 import Any as AnyMessage

from wasmvisor.proto.containerd.services.containers.v1 import containers_pb2 as cpb
from wasmvisor.proto.containerd.services.containers.v1 import containers_pb2_grpc as cgrpc
from wasmvisor.proto.containerd.services.tasks.v1 import tasks_pb2 as tpb
from wasmvisor.proto.containerd.services.tasks.v1 import tasks_pb2_grpc as tgrpc
from wasmvisor.proto.containerd.types import mount_pb2

NAMESPACE = f"wvstress{os.getpid()}"  # this run's own: see benchlib.bench_containerd
SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
SIGKILL = 9
ROOTFS_DIRS = ("proc", "dev", "sys", "run", "tmp", "etc")
"""Mount points the default spec needs, made beforehand: the rootfs is mounted read-only."""
RUNTIMES = {"runc": RUNC_RUNTIME, "wasmvisor": WASMVISOR_RUNTIME}


class Client:
    """containerd's Containers and Tasks services on one channel, in one namespace."""

    def __init__(self, address: str, base_spec: dict[str, Any], rootfs: dict[str, Path]) -> None:
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.containers = cgrpc.ContainersStub(self.channel)
        self.tasks = tgrpc.TasksStub(self.channel)
        self.metadata = (("containerd-namespace", NAMESPACE),)
        self.base_spec = base_spec
        self.rootfs = rootfs

    def close(self) -> None:
        self.channel.close()

    def spec(self, cid: str, args: list[str], pod: str | None) -> bytes:
        spec = json.loads(json.dumps(self.base_spec))
        spec["process"]["args"] = args
        spec["process"]["terminal"] = False
        spec["root"] = {"path": "rootfs", "readonly": True}
        spec["linux"]["cgroupsPath"] = f"/{NAMESPACE}/{cid}"
        if pod:
            spec["annotations"] = {POD_ANNOTATION: pod}
        return json.dumps(spec).encode()

    def create(self, runtime: str, cid: str, args: list[str], pod: str | None) -> None:
        container = cpb.Container(id=cid, runtime=cpb.Container.Runtime(name=RUNTIMES[runtime]),
                                  spec=AnyMessage(type_url=SPEC_TYPE, value=self.spec(cid, args, pod)))
        self.containers.Create(cpb.CreateContainerRequest(container=container), metadata=self.metadata)
        mount = mount_pb2.Mount(type="bind", source=str(self.rootfs[runtime]), options=["rbind", "ro"])
        try:
            self.tasks.Create(tpb.CreateTaskRequest(container_id=cid, rootfs=[mount]), metadata=self.metadata)
        except grpc.RpcError:
            self.containers.Delete(cpb.DeleteContainerRequest(id=cid), metadata=self.metadata)
            raise

    def run_to_end(self, runtime: str, cid: str, args: list[str], pod: str | None) -> int:
        """One whole task: create, start, wait, delete; its exit status."""
        self.create(runtime, cid, args, pod)
        try:
            self.tasks.Start(tpb.StartRequest(container_id=cid), metadata=self.metadata)
            status = self.tasks.Wait(tpb.WaitRequest(container_id=cid), metadata=self.metadata).exit_status
        finally:
            self.remove(cid)
        return status

    def remove(self, cid: str) -> None:
        self.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid), metadata=self.metadata)
        self.containers.Delete(cpb.DeleteContainerRequest(id=cid), metadata=self.metadata)

    @contextmanager
    def sandbox(self, runtime: str, pod: str) -> Iterator[None]:
        """A long-running task of `runtime` in `pod`, as a pod's sandbox container holds its shim up."""
        cid = f"{pod}-sandbox"
        args = ["/bin/sleep", "100000"] if runtime == "runc" else ["/sleep.wasm"]
        self.create(runtime, cid, args, pod)
        try:
            self.tasks.Start(tpb.StartRequest(container_id=cid), metadata=self.metadata)
            yield
        finally:
            self.tasks.Kill(tpb.KillRequest(container_id=cid, signal=SIGKILL), metadata=self.metadata)
            self.tasks.Wait(tpb.WaitRequest(container_id=cid), metadata=self.metadata)
            self.remove(cid)


def make_rootfs(base: Path) -> dict[str, Path]:
    """A busybox root for runc and a root holding hello.wasm and sleep.wasm for wasmvisor."""
    roots = {"runc": base / "runc-rootfs", "wasmvisor": base / "wasm-rootfs"}
    for root in roots.values():
        for name in ROOTFS_DIRS:
            (root / name).mkdir(parents=True, exist_ok=True)
    busybox = shutil.which("busybox") or "/bin/busybox"
    (roots["runc"] / "bin").mkdir()
    shutil.copy(busybox, roots["runc"] / "bin" / "busybox")
    for applet in ("true", "sleep", "sh"):
        (roots["runc"] / "bin" / applet).symlink_to("busybox")
    for name in ("hello", "sleep"):
        (roots["wasmvisor"] / f"{name}.wasm").write_bytes(MODULES[name])
    return roots


def default_spec(ctr: Path) -> dict[str, Any]:
    """ctr's default OCI spec (what `ctr run` gives a container) for this containerd release."""
    done = subprocess.run([str(ctr), "oci", "spec"], capture_output=True, text=True, check=True)
    spec: dict[str, Any] = json.loads(done.stdout)
    return spec


class Measured:
    """Per-task seconds and the wall time of one batch."""

    def __init__(self, seconds: list[float], wall: float) -> None:
        self.seconds = seconds
        self.wall = wall

    @property
    def rate(self) -> float:
        return len(self.seconds) / self.wall

    def ms(self, p: float) -> float:
        return 1000 * (statistics.median(self.seconds) if p == 50 else percentile(self.seconds, p))


def batch(count: int, parallel: int, one: Callable[[int], None]) -> Measured:
    seconds: list[float] = []
    lock = threading.Lock()

    def timed(i: int) -> None:
        started = time.perf_counter()
        one(i)
        took = time.perf_counter() - started
        with lock:
            seconds.append(took)

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(timed, range(count)))
    return Measured(seconds, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per runtime, grouping and P (1000)")
    parser.add_argument("--parallel", default="4,16", help="tasks at a time, comma-separated (4,16)")
    parser.add_argument("--groupings", default="pod,task", help="pod, task or both (pod,task)")
    args = parser.parse_args()
    parallels = [int(p) for p in args.parallel.split(",")]
    groupings = args.groupings.split(",")
    preamble("bench_stress")
    results: dict[tuple[str, str, int], Measured] = {}
    ids = itertools.count()
    with bench_containerd(NAMESPACE) as (instance, _ctr, _cache), tempfile.TemporaryDirectory(prefix="wvs-") as tmp:
        client = Client(instance.address, default_spec(instance.binaries.ctr), make_rootfs(Path(tmp)))
        try:
            order = ["runc", "wasmvisor"]
            for grouping, parallel in itertools.product(groupings, parallels):
                for runtime in order:
                    pod = f"stress-{runtime}-{grouping}-{parallel}" if grouping == "pod" else None
                    argv = ["/bin/true"] if runtime == "runc" else ["/hello.wasm"]

                    def one(_: int, runtime: str = runtime, pod: str | None = pod, argv: list[str] = argv) -> None:
                        cid = f"s{next(ids)}"
                        status = client.run_to_end(runtime, cid, argv, pod)
                        if status != 0:
                            raise SystemExit(f"{runtime} task {cid} exited {status}")

                    with client.sandbox(runtime, pod) if pod else _nothing():
                        one(0)  # warm: the shim (in a pod), the page cache, the module cache
                        results[(grouping, runtime, parallel)] = batch(args.tasks, parallel, one)
                    print(f"  {grouping:4} P={parallel:<3} {runtime:9} "
                          f"{results[(grouping, runtime, parallel)].rate:7.1f} tasks/s", flush=True)
                order.reverse()  # neither runtime always goes first
        finally:
            client.close()
    rows = [[grouping, runtime, str(parallel), str(len(m.seconds)), f"{m.rate:.1f}", f"{m.ms(50):.1f}",
             f"{m.ms(99):.1f}"] for (grouping, runtime, parallel), m in results.items()]
    print(table(["grouping", "runtime", "P", "tasks", "tasks/s", "p50 ms", "p99 ms"], rows))
    targets = {"pod": ">= 2", "task": ">= 1.5"}
    for grouping, parallel in itertools.product(groupings, parallels):
        wasm, runc = results[(grouping, "wasmvisor", parallel)], results[(grouping, "runc", parallel)]
        what = "one pod" if grouping == "pod" else "a group per task"
        print(ratio(f"tasks/s, {what}, P={parallel}", wasm.rate, runc.rate, lower_is_better=False,
                    target=targets[grouping]))
        print(ratio(f"p50 per task, {what}, P={parallel}", wasm.ms(50), runc.ms(50), lower_is_better=True))


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
