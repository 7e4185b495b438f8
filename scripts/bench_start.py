#!/usr/bin/env python3
"""bench_start: wall time of `ctr run --rm` of a hello wasm image under wasmvisor (module cache warm,
and cold: its cache entry deleted before each run) against a busybox `/bin/true` image under runc, through
the same private containerd, runs interleaved. Each of those runs starts a new supervisor (no pod
group); a fourth case runs hello in a pod group whose supervisor already runs (a sleeping guest
holds it up, as a pod's sandbox container would): the per-container cost alone. Two more cases run
a large module (LARGE_FUNCTIONS functions, ~550 KB of wasm) warm and cold: what the node's
compiled-module cache saves where compiling costs something.

    sudo .venv/bin/python scripts/bench_start.py --runs 20
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchlib import (
    IMAGES,
    POD_ANNOTATION,
    RUNC_RUNTIME,
    STATS_HEADER,
    WASMVISOR_RUNTIME,
    bench_containerd,
    forget_compiled,
    stats_row,
    table,
)

POD_FLAGS = ["--annotation", f"{POD_ANNOTATION}=startpod"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each case (default 20)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"runc /bin/true": [], "wasmvisor hello, cache warm": [],
                                     "wasmvisor hello, cache cold": [], "wasmvisor hello, running pod": [],
                                     "wasmvisor large module, cache warm": [], "wasmvisor large module, cache cold": []}
    with bench_containerd() as (_, ctr, cache):

        def run(case: str, n: int) -> float:
            name = "large" if "large" in case else "hello"
            if "cold" in case:
                forget_compiled(cache, name)  # that module's entry only: the other warm case stays warm
            cid = f"start{n + 1}-{cases.index(case)}"
            if case.startswith("runc"):
                argv = ctr.run_args(IMAGES["busybox"], cid, "/bin/true", runtime=RUNC_RUNTIME)
            else:
                flags = POD_FLAGS if "pod" in case else []
                argv = ctr.run_args(IMAGES[name], cid, runtime=WASMVISOR_RUNTIME, flags=flags)
            started = time.perf_counter()
            proc = ctr.run(*argv)
            took = time.perf_counter() - started
            if proc.returncode != 0:
                raise SystemExit(f"{case}: ctr run failed ({proc.returncode}): {proc.stderr.strip()}")
            return took

        cases = list(times)
        run("wasmvisor hello, cache warm", -1)  # fills the cache and the page cache
        run("wasmvisor large module, cache warm", -1)
        run("runc /bin/true", -1)
        ctr.run(*ctr.run_args(IMAGES["sleep"], "startsandbox", runtime=WASMVISOR_RUNTIME, rm=False,
                              flags=["-d", *POD_FLAGS]), check=True)
        for n in range(args.runs):
            k = n % len(cases)
            for case in cases[k:] + cases[:k]:  # rotate the order: no case always goes first
                times[case].append(run(case, n))
    print(table(STATS_HEADER, [stats_row(case, ts) for case, ts in times.items()]))
    runc = statistics.median(times["runc /bin/true"])
    warm = statistics.median(times["wasmvisor hello, cache warm"]) / runc
    cold = statistics.median(times["wasmvisor hello, cache cold"]) / runc
    pod = statistics.median(times["wasmvisor hello, running pod"]) / runc
    large_warm = statistics.median(times["wasmvisor large module, cache warm"])
    large_cold = statistics.median(times["wasmvisor large module, cache cold"])
    print(f"ratio (median wasmvisor / runc): warm {warm:.2f}x (target <= 0.8), cold {cold:.2f}x (target <= 1.2), "
          f"in a running pod {pod:.2f}x; large module warm {large_warm / runc:.2f}x, cold {large_cold / runc:.2f}x "
          f"(the cache saves {1000 * (large_cold - large_warm):.0f} ms a start)")


if __name__ == "__main__":
    main()
