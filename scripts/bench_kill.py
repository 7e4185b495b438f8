#!/usr/bin/env python3
"""bench_kill: time from the Kill request (SIGKILL, or SIGTERM) to the TaskExit event, straight to one
supervisor over ttrpc with a stand-in events server (tests/integration/harness.py): the clock
starts just before the Kill call is sent and stops when the events server receives TaskExit.

    sudo .venv/bin/python scripts/bench_kill.py --runs 50
"""

from __future__ import annotations

import argparse
import time

from benchlib import STATS_HEADER, percentile, preamble, shim_harness, stats_row, table
from google.protobuf.empty_pb2 import Empty

from tests.integration.harness import SLEEPER
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb

POD = {"io.kubernetes.cri.sandbox-id": "killpod"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="kills of each signal (default 50)")
    args = parser.parse_args()
    preamble("bench_kill")
    times: dict[str, list[float]] = {"SIGKILL": [], "SIGTERM": []}
    with shim_harness() as h:
        client = None
        for n in range(args.runs * 2):
            name, signo = ("SIGKILL", 9) if n % 2 == 0 else ("SIGTERM", 15)
            tid = f"kill{n}"
            bundle = h.bundle(tid, {"sleep.wasm": SLEEPER}, ["/sleep.wasm"], annotations=POD)
            if client is None:
                client = h.client(h.start_shim(bundle, tid))
            h.call(client, "Create", pb.CreateTaskRequest(id=tid, bundle=str(bundle)), pb.CreateTaskResponse)
            h.call(client, "Start", pb.StartRequest(id=tid), pb.StartResponse)
            time.sleep(0.02)  # the guest is in its sleep
            started = time.perf_counter()
            h.call(client, "Kill", pb.KillRequest(id=tid, signal=signo), Empty)
            times[name].append(h.events.wait_exit(tid) - started)
            h.call(client, "Delete", pb.DeleteRequest(id=tid), pb.DeleteResponse)
    print(table(STATS_HEADER, [stats_row(f"Kill {name} -> TaskExit", ts) for name, ts in times.items()]))
    worst = max(percentile(ts, 99) for ts in times.values()) * 1000
    print(f"p99 Kill -> TaskExit {worst:.1f} ms (lower is better, target <= 10 ms; no runc counterpart: runc's "
          "shim is not driven straight here)")


if __name__ == "__main__":
    main()
