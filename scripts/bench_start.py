#!/usr/bin/env python3
"""bench_start: wall time of `ctr run --rm` of a hello wasm image under wasmvisor (module cache warm,
and cold: its cache entry deleted before each run) against a busybox `/bin/true` image under runc, through
the same private containerd, runs interleaved. Each of those runs starts a new supervisor (no pod
group); a fourth case runs hello in a pod group whose supervisor already runs (a sleeping guest
holds it up, as a pod's sandbox container would): the per-container cost alone. Two more cases run
a large module (LARGE_FUNCTIONS functions, ~550 KB of wasm) warm and cold: what the node's
compiled-module cache saves where compiling costs something. Every case runs in two orders: interleaved
(cases take turns, so each start finds a quiet node) and back to back (each case's runs in a row, so each
start competes with the end of the group before it: its linger, exit and containerd's `delete`).
With --python-shim, two more cases run hello with the Python shim as the binary (no compiled front).

    sudo .venv/bin/python scripts/bench_start.py --runs 20
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

from benchlib import (
    IMAGES,
    POD_ANNOTATION,
    RUNC_RUNTIME,
    STATS_HEADER,
    WASMVISOR_RUNTIME,
    bench_containerd,
    cpu_seconds_with_children,
    forget_compiled,
    preamble,
    ratio,
    shim_dir,
    stats_row,
    table,
)

POD_FLAGS = ["--annotation", f"{POD_ANNOTATION}=startpod"]
PYTHON_SHIM = "containerd-shim-wasmvisor-v1-python"
PYTHON_SHIM_CASE = "wasmvisor hello, Python shim"


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {case: statistics.median(ts) for case, ts in times.items() if ts}


def ratio_lines(order: str, times: dict[str, list[float]]) -> list[str]:
    m = medians(times)
    runc = m["runc /bin/true"]
    lines = [ratio(f"{order}, ctr run --rm median, hello warm cache", m["wasmvisor hello, cache warm"], runc,
                   lower_is_better=True, target="<= 0.8"),
             ratio(f"{order}, ctr run --rm median, hello cold cache", m["wasmvisor hello, cache cold"], runc,
                   lower_is_better=True, target="<= 1.0"),
             ratio(f"{order}, ctr run --rm median, hello in a running pod", m["wasmvisor hello, running pod"], runc,
                   lower_is_better=True, target="<= 0.6")]
    if f"{PYTHON_SHIM_CASE}, cache warm" in m:
        lines += [ratio(f"{order}, hello warm cache, Python shim alone", m[f"{PYTHON_SHIM_CASE}, cache warm"], runc,
                        lower_is_better=True),
                  ratio(f"{order}, hello in a running pod, Python shim alone", m[f"{PYTHON_SHIM_CASE}, running pod"],
                        runc, lower_is_better=True)]
    if "wasmvisor large module, cache warm" in m:
        large_warm, large_cold = m["wasmvisor large module, cache warm"], m["wasmvisor large module, cache cold"]
        lines += [ratio(f"{order}, large module warm cache", large_warm, runc, lower_is_better=True),
                  ratio(f"{order}, large module cold cache", large_cold, runc, lower_is_better=True)
                  + f"; the cache saves {1000 * (large_cold - large_warm):.0f} ms a start"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each case in each order (default 20)")
    parser.add_argument("--order", choices=("interleaved", "back-to-back", "both"), default="both",
                        help="interleaved cases, each case's runs back to back, or both (default)")
    parser.add_argument("--python-shim", action="store_true",
                        help="add hello warm and in a running pod run by the Python shim alone (no compiled front)")
    args = parser.parse_args()
    preamble("bench_start")
    cases = ["runc /bin/true", "wasmvisor hello, cache warm", "wasmvisor hello, cache cold",
             "wasmvisor hello, running pod", "wasmvisor large module, cache warm",
             "wasmvisor large module, cache cold"]
    if args.python_shim:
        cases += [f"{PYTHON_SHIM_CASE}, cache warm", f"{PYTHON_SHIM_CASE}, running pod"]
    orders = ["interleaved", "back-to-back"] if args.order == "both" else [args.order]
    results: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, list[float]] = {case: [] for case in cases}
    with bench_containerd() as (instance, ctr, cache):
        assert instance.process is not None
        containerd_pid = instance.process.pid
        ids = itertools.count(1)

        def run(case: str) -> float:
            name = "large" if "large" in case else "hello"
            if "cold" in case:
                forget_compiled(cache, name)  # that module's entry only: the other warm case stays warm
            cid = f"start{next(ids)}"  # a fresh id each run, as a new group would have
            if case.startswith("runc"):
                argv = ctr.run_args(IMAGES["busybox"], cid, "/bin/true", runtime=RUNC_RUNTIME)
            else:
                flags = POD_FLAGS if "pod" in case else []
                # containerd runs an absolute runtime path as the shim binary itself: the Python shim
                runtime = str(shim_dir() / PYTHON_SHIM) if case.startswith(PYTHON_SHIM_CASE) else WASMVISOR_RUNTIME
                argv = ctr.run_args(IMAGES[name], cid, runtime=runtime, flags=flags)
            cpu_before = cpu_seconds_with_children(containerd_pid)
            started = time.perf_counter()
            proc = ctr.run(*argv)
            took = time.perf_counter() - started
            cpu[case].append(cpu_seconds_with_children(containerd_pid) - cpu_before)
            if proc.returncode != 0:
                raise SystemExit(f"{case}: ctr run failed ({proc.returncode}): {proc.stderr.strip()}\n"
                                 f"containerd's log, last lines:\n{instance.log_tail(30)}")
            return took

        run("wasmvisor hello, cache warm")  # fills the cache and the page cache
        run("wasmvisor large module, cache warm")
        run("runc /bin/true")
        if args.python_shim:
            run(f"{PYTHON_SHIM_CASE}, cache warm")  # its own template (the shim command names it)
        ctr.run(*ctr.run_args(IMAGES["sleep"], "startsandbox", runtime=WASMVISOR_RUNTIME, rm=False,
                              flags=["-d", *POD_FLAGS]), check=True)
        for order in orders:
            times: dict[str, list[float]] = {case: [] for case in cases}
            if order == "interleaved":
                # Each start finds a quiet node: the previous case's group has had another case's time to end.
                for n in range(args.runs):
                    k = n % len(cases)
                    for case in cases[k:] + cases[:k]:  # rotate the order: no case always goes first
                        times[case].append(run(case))
            else:
                # As a busy node (or hyperfine) sees it: each start competes with the previous group's end
                # (its linger, exit and containerd's `delete`) for the same cores.
                for case in cases:
                    times[case] = [run(case) for _ in range(args.runs)]
            results[order] = times
    for order, times in results.items():
        print(f"\n{order}:")
        print(table(STATS_HEADER, [stats_row(case, ts) for case, ts in times.items()]))
    print("\nCPU of containerd and the shim binaries it ran and waited for (start, delete) per run, all orders:")
    print("  " + "; ".join(f"{case} {1000 * statistics.mean(ts):.1f} ms" for case, ts in cpu.items() if ts))
    print()
    for order, times in results.items():
        print("\n".join(ratio_lines(order, times)))


if __name__ == "__main__":
    main()
