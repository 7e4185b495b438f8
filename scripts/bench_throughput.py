#!/usr/bin/env python3
"""bench_throughput: N short tasks (hello), P at a time, in one pod group, measured two ways:
  containerd  `ctr run --rm --annotation io.kubernetes.cri.sandbox-id=POD` of hello under wasmvisor
              against `ctr run --rm` of busybox /bin/true under runc, same private containerd,
              the two modes alternating in batches;
  shim        straight to one supervisor over ttrpc (Create, Start, Wait, Delete) with a stand-in
              events server, as runwasi's stress test does (bundles made before the clock starts).

    sudo .venv/bin/python scripts/bench_throughput.py --tasks 200 --parallel 4 --shim-tasks 1000
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from benchlib import (
    IMAGES,
    POD_ANNOTATION,
    RUNC_RUNTIME,
    WASMVISOR_RUNTIME,
    bench_containerd,
    preamble,
    ratio,
    shim_harness,
    table,
)

from tests.integration.harness import HELLO, SLEEPER
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb


def timed(count: int, parallel: int, one: Callable[[int], None]) -> float:
    """Tasks per second running `one(i)` for i in range(count), `parallel` at a time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - started)


def through_containerd(tasks: int, parallel: int, batches: int) -> dict[str, float]:
    ids = itertools.count()
    done = {"runc": 0.0, "wasmvisor": 0.0}
    with bench_containerd() as (instance, ctr, _cache):

        def one(runtime: str) -> Callable[[int], None]:
            def run(_: int) -> None:
                cid = f"tp{next(ids)}"
                if runtime == "runc":
                    argv = ctr.run_args(IMAGES["busybox"], cid, "/bin/true", runtime=RUNC_RUNTIME)
                else:
                    argv = ctr.run_args(IMAGES["hello"], cid, runtime=WASMVISOR_RUNTIME,
                                        flags=["--annotation", f"{POD_ANNOTATION}=tppod"])
                proc = ctr.run(*argv)
                if proc.returncode != 0:
                    raise SystemExit(f"{runtime}: ctr run failed: {proc.stderr.strip()}\n"
                                     f"containerd's log, last lines:\n{instance.log_tail(30)}")
            return run

        # A long-lived guest holds the pod's supervisor up, as a pod's sandbox container would: without
        # it containerd's Shutdown after each Delete may end the supervisor while the next task's
        # `start` is reusing it ("ttrpc: closed"; see the report on issue 5).
        ctr.run(*ctr.run_args(IMAGES["sleep"], "tpsandbox", runtime=WASMVISOR_RUNTIME, rm=False,
                              flags=["-d", "--annotation", f"{POD_ANNOTATION}=tppod"]), check=True)
        one("wasmvisor")(0)  # warm: the zygote and the module cache
        per_batch = max(1, tasks // batches)
        for b in range(batches):
            for runtime in ("runc", "wasmvisor") if b % 2 == 0 else ("wasmvisor", "runc"):
                rate = timed(per_batch, parallel, one(runtime))
                done[runtime] += per_batch / rate  # seconds spent
    return {k: per_batch * batches / v for k, v in done.items()}


def straight_to_shim(tasks: int, parallel: int) -> float:
    pod = {"io.kubernetes.cri.sandbox-id": "tpshim"}
    with shim_harness() as h:
        bundles = [h.bundle(f"t{i}", {"hello.wasm": HELLO}, ["/hello.wasm"], annotations=pod) for i in range(tasks + 1)]
        address = h.start_shim(bundles[0], "t0")
        clients = [h.client(address) for _ in range(parallel)]
        sandbox = h.bundle("sandbox", {"sleep.wasm": SLEEPER}, ["/sleep.wasm"], annotations=pod)
        h.call(clients[0], "Create", pb.CreateTaskRequest(id="sandbox", bundle=str(sandbox)), pb.CreateTaskResponse)
        h.call(clients[0], "Start", pb.StartRequest(id="sandbox"), pb.StartResponse)

        def one(i: int) -> None:
            c, tid = clients[i % parallel], f"t{i}"
            h.call(c, "Create", pb.CreateTaskRequest(id=tid, bundle=str(bundles[i])), pb.CreateTaskResponse)
            h.call(c, "Start", pb.StartRequest(id=tid), pb.StartResponse)
            h.call(c, "Wait", pb.WaitRequest(id=tid), pb.WaitResponse)
            h.call(c, "Delete", pb.DeleteRequest(id=tid), pb.DeleteResponse)

        one(0)  # warm
        return timed(tasks, parallel, lambda i: one(i + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200, help="tasks per runtime through containerd (200)")
    parser.add_argument("--parallel", type=int, default=4, help="tasks at a time (4)")
    parser.add_argument("--batches", type=int, default=4, help="alternating batches through containerd (4)")
    parser.add_argument("--shim-tasks", type=int, default=1000, help="tasks straight to the shim (1000)")
    args = parser.parse_args()
    preamble("bench_throughput")
    rates = through_containerd(args.tasks, args.parallel, args.batches)
    shim = straight_to_shim(args.shim_tasks, args.parallel)
    rows = [["containerd, runc /bin/true", str(args.tasks), str(args.parallel), f"{rates['runc']:.1f}"],
            ["containerd, wasmvisor hello (pod)", str(args.tasks), str(args.parallel), f"{rates['wasmvisor']:.1f}"],
            ["straight to the shim, hello", str(args.shim_tasks), str(args.parallel), f"{shim:.1f}"]]
    print(table(["mode", "tasks", "parallel", "tasks/s"], rows))
    print(ratio("ctr run --rm tasks/s in one pod", rates["wasmvisor"], rates["runc"], lower_is_better=False,
                target=">= 2"))
    print(f"straight to the shim: {shim:.0f} tasks/s (higher is better, target >= 400; no runc counterpart)")


if __name__ == "__main__":
    main()
