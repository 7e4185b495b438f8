#!/usr/bin/env python3
"""bench_http: an HTTP component (tests/guests/http_echo, GET /hello) served two ways, measured with wrk:
  container  under wasmvisor through a private containerd (the worker's wasmtime CLI `serve` in the
             container's network namespace; wrk runs in that namespace by nsenter);
  direct     `wasmtime serve` of the same compiled component on the host's loopback.
Requests/s and p50/p95/p99 latency at each connection count, and the container's memory (PSS of the
worker and the CLI).

    sudo .venv/bin/python scripts/bench_http.py --seconds 5 --connections 1,10,50 [--direct-cgroup]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from benchlib import REPO, WASMVISOR_RUNTIME, bench_containerd, pss_kib, table

from tests.e2e.netns_http import requests_in_netns
from tests.guests.components import build_python_component
from wasmvisor.engines.component_world import Route
from wasmvisor.engines.wasmtime_cli import find_cli
from wasmvisor.image import build_oci_tar

REF = "docker.io/wasmvisor-bench/http-echo:latest"
PORT = 8080
DIRECT_PORT = 18089
REPORT = """done = function(summary, latency, requests)
  local s = summary.duration / 1000000
  io.write(string.format("RESULT rps=%.1f p50=%.3f p95=%.3f p99=%.3f errors=%d\\n", summary.requests / s,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
    + summary.errors.timeout))
end
"""


def wrk(prefix: Sequence[str], url: str, connections: int, seconds: int, script: Path) -> dict[str, float]:
    argv = [*prefix, "wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    found = re.search(r"RESULT (.*)", out)
    if not found:
        raise SystemExit(f"wrk printed no result: {out}")
    return {k: float(v) for k, v in (item.split("=") for item in found.group(1).split())}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


@contextlib.contextmanager
def own_cpu_cgroup(pid: int) -> Iterator[None]:
    """`pid` in a cpu cgroup of its own (v1 here), as a container's processes are: on a busy machine a
    cgroup gets one share for all its threads, where processes of the root cgroup get one each."""
    folder = Path(f"/sys/fs/cgroup/cpu/wvbench-direct-{os.getpid()}")
    try:
        folder.mkdir()
        (folder / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        print(f"bench_http: direct server stays in its cgroup ({exc})")
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            (folder.parent / "cgroup.procs").write_text(str(pid))
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def direct_server(cli: str, wasm: Path, folder: Path, cgroup: bool) -> Iterator[None]:
    cwasm = folder / "http.cwasm"
    subprocess.run([cli, "compile", "-o", str(cwasm), str(wasm)], check=True)
    proc = subprocess.Popen([cli, "serve", "--addr", f"127.0.0.1:{DIRECT_PORT}", "-Scli=y", "--allow-precompiled",
                             str(cwasm)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack = contextlib.ExitStack()
    if cgroup:
        stack.enter_context(own_cpu_cgroup(proc.pid))
    try:
        wait_until(lambda: requests_in_netns(os.getpid(), DIRECT_PORT, [("GET", "/hello", "")])[0][0] == 200,
                   "the direct server")
        yield
    finally:
        proc.terminate()
        proc.wait()
        stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="wrk's duration at each connection count")
    parser.add_argument("--connections", default="1,10,50", help="comma list of connection counts")
    parser.add_argument("--direct-cgroup", action="store_true",
                        help="run the direct server in a cpu cgroup of its own, as the container's are")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    wasm = build_python_component("http_echo", "wasi:http/proxy@0.2.12", REPO / "_work" / "guests")
    cli = find_cli("/http_echo.wasm", Route.HTTP)
    rows = []
    with tempfile.TemporaryDirectory(prefix="wvbh-") as tmp:
        folder = Path(tmp)
        script = folder / "report.lua"
        script.write_text(REPORT)
        results: dict[str, dict[int, dict[str, float]]] = {"direct": {}, "container": {}}
        with direct_server(cli, wasm, folder, args.direct_cgroup):
            wrk([], f"http://127.0.0.1:{DIRECT_PORT}/hello", 10, 2, script)  # warm-up, not counted
            for c in counts:
                results["direct"][c] = wrk([], f"http://127.0.0.1:{DIRECT_PORT}/hello", c, args.seconds, script)
        memory = 0
        with bench_containerd(f"wvbenchhttp{os.getpid()}") as (_, ctr, _cache):
            tar = folder / "http.tar"
            build_oci_tar(tar, REF, {"/http_echo.wasm": wasm.read_bytes()}, entrypoint=["/http_echo.wasm"])
            ctr.import_image(tar)
            ctr.run(*ctr.run_args(REF, "http-bench", runtime=WASMVISOR_RUNTIME, rm=False, flags=["-d"]), check=True)
            pid = ctr.tasks()["http-bench"].pid
            wait_until(lambda: requests_in_netns(pid, PORT, [("GET", "/hello", "")])[0][0] == 200, "the container")
            nsenter = ["nsenter", f"--net=/proc/{pid}/ns/net"]
            wrk(nsenter, f"http://127.0.0.1:{PORT}/hello", 10, 2, script)  # warm-up, not counted
            for c in counts:
                results["container"][c] = wrk(nsenter, f"http://127.0.0.1:{PORT}/hello", c, args.seconds, script)
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            memory = pss_kib(pid) + sum(pss_kib(int(child)) for child in children)
            ctr.kill("http-bench", "SIGKILL")
    for c in counts:
        d, w = results["direct"][c], results["container"][c]
        rows.append([str(c), f"{d['rps']:.0f}", f"{w['rps']:.0f}", f"{w['rps'] / d['rps']:.2f}",
                     f"{d['p50']:.2f}/{d['p95']:.2f}/{d['p99']:.2f}", f"{w['p50']:.2f}/{w['p95']:.2f}/{w['p99']:.2f}",
                     f"{w['p95'] / d['p95']:.2f}", f"{int(d['errors'])}/{int(w['errors'])}"])
    print(table(["conns", "direct rps", "container rps", "ratio", "direct p50/95/99 ms",
                 "container p50/95/99 ms", "p95 ratio", "errors d/c"], rows))
    print(f"container memory (PSS of worker + wasmtime CLI): {memory / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
