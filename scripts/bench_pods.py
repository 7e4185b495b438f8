#!/usr/bin/env python3
"""bench_pods: pods through containerd's CRI plugin, wasmvisor against runc on the same containerd, in
one run (tests/cri: a kubelet-like client and a private CRI node). On 2.x a third handler,
`wasmvisor-shim`, runs wasmvisor with `sandboxer = "shim"`: the supervisor is the pod, no pause container.

- pod start: RunPodSandbox, ImageStatus, CreateContainer, StartContainer, until ContainerStatus says
  RUNNING, for `--pods` pods of each handler, runs interleaved (each pod removed before the next), after
  one warm-up pod each: median and p95. A wasmvisor pod runs the pause container and a sleeping wasm
  guest (a wasmvisor-shim pod the guest alone); a runc pod the pause container and a busybox `sleep`.
- node memory: the PSS of every process the pods add (the runc shims and what they run; wasmvisor's
  template, supervisors, zygotes, relays and workers) with 1, 10 and 50 single-container pods of each
  handler (containerd's own growth is not counted).

Ratios are against runc (targets: pod start <= 0.8, memory per pod <= 1.0; with the shim sandboxer pod
start <= 0.5, and fewer processes per pod than with a pause container).

    sudo .venv/bin/python scripts/bench_pods.py --pods 30 --memory-counts 1,10,50
    sudo .venv/bin/python scripts/bench_pods.py --line 2.1    # adds wasmvisor-shim
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchlib import IMAGES, build_images, percentile, preamble, pss_kib, table

from tests.cri.client import ContainerSpec, CriClient, Pod, PodSpec
from tests.cri.node import SHIM_SANDBOXER_HANDLER, CriNode, cri_node
from tests.e2e.conftest import shim_dir
from tests.e2e.host import process_titles, process_tree
from tests.e2e.versions import LINES, binaries_for
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri_api

BASE_HANDLERS = ("wasmvisor", "runc")


def handlers_of(line: str) -> tuple[str, ...]:
    """The handlers measured on a containerd line: the shim sandboxer's too on 2.x."""
    return (*BASE_HANDLERS, SHIM_SANDBOXER_HANDLER) if binaries_for(line).major() >= 2 else BASE_HANDLERS


def container_for(handler: str, refs: dict[str, str]) -> ContainerSpec:
    if handler.startswith("wasmvisor"):
        return ContainerSpec("app", refs["sleep"])
    return ContainerSpec("app", refs["busybox"], command=["/bin/sleep", "3600"])


def start_pod(client: CriClient, handler: str, name: str, refs: dict[str, str]) -> tuple[Pod, float]:
    """A pod of one sleeping container, and the seconds from RunPodSandbox to its container RUNNING."""
    began = time.perf_counter()
    pod = client.run_pod(PodSpec(name, handler=handler))
    container_id = client.run_container(pod, container_for(handler, refs))
    while client.container_status(container_id).state != cri_api.CONTAINER_RUNNING:
        time.sleep(0.001)
    return pod, time.perf_counter() - began


def handler_shims(node: CriNode, handler: str) -> list[int]:
    """The shim processes of one handler on this node: runc's shims, or wasmvisor's template and
    supervisors."""
    titles = process_titles()
    if handler.startswith("wasmvisor"):
        return [pid for pid in node.shim_pids() if titles.get(pid, "").startswith("wasmvisor-")]
    return [pid for pid in node.shim_pids() if titles.get(pid, "").split(" ")[0].endswith("containerd-shim-runc-v2")]


def pod_processes(node: CriNode, handler: str) -> set[int]:
    """One handler's shims on this node and everything below them."""
    pids: set[int] = set()
    for shim in handler_shims(node, handler):
        pids.update(process_tree(shim))
    return pids


def measure_start(node: CriNode, refs: dict[str, str], pods: int, handlers: tuple[str, ...]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {h: [] for h in handlers}
    for handler in handlers:  # warm-up: images unpacked, the module compiled into the cache
        pod, _ = start_pod(node.client, handler, f"warm-{handler}", refs)
        node.client.remove_pod(pod)
    for i in range(pods):
        order = handlers if i % 2 == 0 else handlers[::-1]
        for handler in order:
            pod, seconds = start_pod(node.client, handler, f"start-{handler}-{i}", refs)
            times[handler].append(seconds)
            node.client.remove_pod(pod)
    return times


def measure_memory(node: CriNode, refs: dict[str, str], counts: list[int],
                   handlers: tuple[str, ...]) -> dict[str, dict[int, tuple[int, int]]]:
    """(KiB, processes) of the pods' processes per handler and pod count (pods of one handler at a time)."""
    results: dict[str, dict[int, tuple[int, int]]] = {h: {} for h in handlers}
    for handler in handlers:
        _wait_pods_gone(node)  # removed pods' supervisors linger a second
        running: list[Pod] = []
        for target in counts:
            while len(running) < target:
                pod, _ = start_pod(node.client, handler, f"mem-{handler}-{len(running)}", refs)
                running.append(pod)
            time.sleep(1.0)  # let the last guests settle into their sleep
            pids = pod_processes(node, handler)
            results[handler][target] = (sum(pss_kib(pid) for pid in pids), len(pids))
        for pod in running:
            node.client.remove_pod(pod)
    return results


def _wait_pods_gone(node: CriNode, timeout: float = 30.0) -> None:
    """Until no supervisor or runc shim of a removed pod runs (the node's template may stay)."""
    deadline = time.monotonic() + timeout
    titles = process_titles
    while time.monotonic() < deadline:
        left = [p for p in node.shim_pids() if not titles().get(p, "").startswith("wasmvisor-template")]
        if not left:
            return
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=30, help="pods of each handler timed (default 30)")
    parser.add_argument("--memory-counts", default="1,10,50", help="pod counts for memory (default 1,10,50)")
    parser.add_argument("--line", default="1.6", choices=sorted(LINES), help="containerd line (default 1.6)")
    args = parser.parse_args()
    handlers = handlers_of(args.line)
    counts = sorted(int(c) for c in args.memory_counts.split(",") if c)
    if os.geteuid() != 0:
        raise SystemExit("bench_pods starts a private containerd: run it as root")
    preamble("bench_pods")
    with tempfile.TemporaryDirectory(prefix="wvb-pods-") as tmp:
        os.environ["WASMVISOR_CACHE_DIR"] = str(Path(tmp) / "module-cache")  # the shims inherit it
        tars = {tar.stem: tar for tar in build_images(Path(tmp) / "images")}
        with cri_node(binaries_for(args.line), shim_dirs=[shim_dir()], line=args.line, log_level="info") as node:
            refs = {name: node.import_image(tars[name], IMAGES[name]) for name in ("sleep", "busybox")}
            times = measure_start(node, refs, args.pods, handlers)
            memory = measure_memory(node, refs, counts, handlers)
    rows = []
    for handler in handlers:
        ms = [s * 1000 for s in times[handler]]
        rows.append([handler, str(len(ms)), f"{statistics.median(ms):.1f}", f"{percentile(ms, 95):.1f}"])
    for handler in handlers[:1] + handlers[2:]:
        ratio = [statistics.median(times[handler]) / statistics.median(times["runc"]),
                 percentile(times[handler], 95) / percentile(times["runc"], 95)]
        rows.append([f"{handler}/runc", "", f"{ratio[0]:.2f}x", f"{ratio[1]:.2f}x"])
    print(f"pod start (RunPodSandbox to container RUNNING), containerd {args.line}:")
    print(table(["handler", "pods", "median ms", "p95 ms"], rows))
    mem_rows = []
    for count in counts:
        rc = memory["runc"][count][0]
        for handler in handlers:
            kib, processes = memory[handler][count]
            mem_rows.append([str(count), handler, f"{kib / 1024:.1f}", f"{kib / 1024 / count:.2f}", str(processes),
                             f"{kib / max(1, rc):.2f}x"])
    print("node memory (PSS of the processes the pods add, and how many they are):")
    print(table(["pods", "handler", "MB", "MB/pod", "processes", "against runc"], mem_rows))


if __name__ == "__main__":
    main()
