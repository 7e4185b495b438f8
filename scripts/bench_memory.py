#!/usr/bin/env python3
"""bench_memory: PSS (from /proc/PID/smaps_rollup) of the supervisor, the zygote, the workers and their
relays (ctr's default spec asks for a pid namespace: one `wasmvisor-init` per container) with
1, 10 and 100 sleeping wasm guests in one pod group (`ctr run -d --annotation
io.kubernetes.cri.sandbox-id=POD`, which ctr 1.6 puts into the OCI annotations the shim groups by),
and the marginal cost per container; then what one more pod group (a second supervisor, zygote and
worker beside the first group, sharing the node's template) adds to the node; runc's shim + container
for one busybox `sleep` for scale.

    sudo .venv/bin/python scripts/bench_memory.py --counts 1,10,100
"""

from __future__ import annotations

import argparse
import time

from benchlib import (
    IMAGES,
    POD_ANNOTATION,
    RUNC_RUNTIME,
    WASMVISOR_RUNTIME,
    bench_containerd,
    preamble,
    pss_kib,
    ratio,
    smaps_profile,
    table,
)

from tests.e2e.host import process_titles, process_tree


def settled_titles(reads: int = 3) -> dict[int, str]:
    """process_titles, read a few times and merged: in one run on a loaded machine a pod's supervisor was
    missing from one read and present in the next (its profile was empty and one more group came out
    negative), and a process left out vanishes from the sums."""
    titles: dict[int, str] = {}
    for _ in range(reads):
        for pid, title in process_titles().items():
            if title or pid not in titles:
                titles[pid] = title
    return titles


def wasmvisor_pss(namespace: str, pod: str, address: str) -> tuple[int, int, int, int, int, int]:
    """(template, supervisor, zygote, workers summed, relays summed, worker count) in KiB. A relay
    (`wasmvisor-init`) is the worker's parent outside a pid namespace the spec asks for. The template
    (`wasmvisor-template`, one per containerd, shared by every group) is counted with the first group."""
    titles = settled_titles()
    sup = [p for p, t in titles.items() if t.startswith(f"wasmvisor-shim {namespace}/{pod}")]
    if len(sup) != 1:
        raise SystemExit(f"want one supervisor for {namespace}/{pod}, found {sup}")
    templates = [p for p, t in titles.items() if t.startswith(f"wasmvisor-template -address {address} ")]
    tree = process_tree(sup[0])
    zygote = [p for p in tree if titles.get(p, "").startswith("wasmvisor-zygote")]
    workers = [p for p in tree if titles.get(p, "").startswith("wasmvisor-worker")]
    relays = [p for p in tree if titles.get(p, "").startswith("wasmvisor-init")]
    return (sum(map(pss_kib, templates)), pss_kib(sup[0]), sum(map(pss_kib, zygote)), sum(map(pss_kib, workers)),
            sum(map(pss_kib, relays)), len(workers))


def pod_profile(namespace: str, pod: str, address: str) -> str:
    """smaps_profile of the template, the supervisor, the zygote, the first and the last worker and relay."""
    titles = settled_titles()
    templates = [p for p, t in titles.items() if t.startswith(f"wasmvisor-template -address {address} ")]
    sup = [p for p, t in titles.items() if t.startswith(f"wasmvisor-shim {namespace}/{pod}")]
    tree = process_tree(sup[0]) if sup else []
    picked = [("template", templates[:1]), ("supervisor", sup[:1]),
              ("zygote", [p for p in tree if titles.get(p, "").startswith("wasmvisor-zygote")][:1])]
    workers = sorted(p for p in tree if titles.get(p, "").startswith("wasmvisor-worker"))
    relays = sorted(p for p in tree if titles.get(p, "").startswith("wasmvisor-init"))
    picked += [("first worker", workers[:1]), ("last worker", workers[-1:]), ("last relay", relays[-1:])]
    return "\n".join(smaps_profile(name, pids[0]) for name, pids in picked if pids)


def node_total_kib(namespace: str, address: str) -> int:
    """PSS of every wasmvisor process of this containerd: its template and each supervisor of `namespace`
    with its descendants (zygote, workers, relays)."""
    titles = settled_titles()
    pids = {p for p, t in titles.items() if t.startswith(f"wasmvisor-template -address {address} ")}
    for sup in (p for p, t in titles.items() if t.startswith(f"wasmvisor-shim {namespace}/")):
        pids.update(process_tree(sup))
    return sum(map(pss_kib, pids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,10,100", help="guest counts to measure at (default 1,10,100)")
    parser.add_argument("--no-profile", action="store_true",
                        help="skip the per-mapping profile of each process of the pod (smaps)")
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    preamble("bench_memory")
    rows = []
    pod = "benchpod"
    with bench_containerd() as (_, ctr, _cache):
        running = 0
        results: dict[int, int] = {}
        without_template: dict[int, int] = {}
        for target in counts:
            while running < target:
                running += 1
                argv = ctr.run_args(IMAGES["sleep"], f"mem{running}", runtime=WASMVISOR_RUNTIME, rm=False,
                                    flags=["-d", "--annotation", f"{POD_ANNOTATION}={pod}"])
                ctr.run(*argv, check=True)
            time.sleep(1)  # let the last guests settle into their sleep
            tpl, sup, zyg, workers, relays, n = wasmvisor_pss(ctr.namespace, pod, ctr.containerd.address)
            total = tpl + sup + zyg + workers + relays
            results[target] = total
            without_template[target] = total - tpl
            rows.append([str(target), str(n), f"{tpl / 1024:.1f}", f"{sup / 1024:.1f}", f"{zyg / 1024:.1f}",
                         f"{workers / 1024:.1f}", f"{relays / 1024:.1f}", f"{total / 1024:.1f}",
                         f"{total / 1024 / target:.2f}"])
        if not args.no_profile:
            profile = pod_profile(ctr.namespace, pod, ctr.containerd.address)
        before = node_total_kib(ctr.namespace, ctr.containerd.address)
        argv = ctr.run_args(IMAGES["sleep"], "mempod2", runtime=WASMVISOR_RUNTIME, rm=False,
                            flags=["-d", "--annotation", f"{POD_ANNOTATION}={pod}-2"])
        ctr.run(*argv, check=True)
        time.sleep(1)
        second_group = node_total_kib(ctr.namespace, ctr.containerd.address) - before
        argv = ctr.run_args(IMAGES["busybox"], "memrunc", "/bin/sleep", "1000", runtime=RUNC_RUNTIME, rm=False,
                            flags=["-d"])
        ctr.run(*argv, check=True)
        time.sleep(0.5)
        titles = settled_titles()
        runc_shim = [p for p, t in titles.items() if "containerd-shim-runc-v2" in t and ctr.containerd.address in t]
        runc_total = sum(pss_kib(p) for s in runc_shim for p in process_tree(s))
    print(table(["guests", "workers", "template MB", "supervisor MB", "zygote MB", "workers MB", "relays MB",
                 "total MB", "MB/guest"], rows))
    print(f"runc: shim + busybox sleep for one container: {runc_total / 1024:.1f} MB PSS")
    print(f"one more pod group (supervisor, zygote, worker; the template is shared): +{second_group / 1024:.1f} MB")
    if not args.no_profile:
        print(f"\nwhere the PSS goes with {counts[-1]} guests in the pod (the first and the last worker: the last one "
              "is what one more guest costs):")
        print(profile)
    first = results[counts[0]]
    marginal = (results[counts[-1]] - first) / max(1, counts[-1] - counts[0]) / 1024
    print(f"first container {first / 1024:.1f} MB with the node's template (target <= 30), "
          f"{without_template[counts[0]] / 1024:.1f} MB without it; marginal {marginal:.2f} MB per "
          f"additional guest (target <= 3)")
    print(ratio("PSS of the first container with the template's share / runc's shim + container", first,
                runc_total, lower_is_better=True))
    print(ratio("PSS of one more guest in a pod / runc's shim + container", marginal * 1024, runc_total,
                lower_is_better=True))
    print(ratio("PSS of one more pod group / runc's shim + container", second_group, runc_total,
                lower_is_better=True))


if __name__ == "__main__":
    main()
