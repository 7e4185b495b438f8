#!/usr/bin/env python3
"""Soak one supervisor: N create/start/wait/delete cycles straight over ttrpc (no containerd), every
fifth a sleeping guest killed with a signal instead of a quick one, and compare what the supervisor
holds before and after: open fds, mounts (each task's rootfs is a bind mount), processes in its
tree, zombies. Prints the counts. (The harness's specs have no `linux` section, so no cgroup is made:
nothing to count there.)

    .venv/bin/python scripts/soak.py [CYCLES]        (default 1000; root needed)

Exit status 0 when every count is back to its starting value, 1 otherwise. The supervisor is driven
through tests/integration/harness.py; tests/integration/test_soak_script.py runs a short soak in CI.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.host import mounts_under, process_tree  # noqa: E402
from tests.integration.harness import HELLO, Harness  # noqa: E402
from tests.integration.test_faults import SLEEPER  # noqa: E402
from wasmvisor.proto.containerd.task.v2 import shim_pb2 as pb  # noqa: E402
from wasmvisor.proto.containerd.types import mount_pb2  # noqa: E402

KILL_EVERY = 5
KILL_SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class Counts:
    fds: int
    mounts: int
    processes: int
    zombies: int

    def line(self) -> str:
        return f"fds {self.fds}, mounts {self.mounts}, processes {self.processes}, zombies {self.zombies}"


def counts(supervisor: int, under: Path) -> Counts:
    """What `supervisor` holds; mounts are those under `under` (the soak's bundles) alone, so that
    the rest of the host mounting and unmounting meanwhile does not count."""
    tree = process_tree(supervisor)
    zombies = 0
    for pid in tree:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        zombies += state == "Z"
    return Counts(
        fds=len(list(Path(f"/proc/{supervisor}/fd").iterdir())),
        mounts=len(mounts_under(under)),
        processes=len(tree),
        zombies=zombies,
    )


def settle(supervisor: int, under: Path, want: Counts | None = None, timeout: float = 5.0) -> Counts:
    """The counts once they equal `want` or `timeout` passed (exits are reaped asynchronously)."""
    deadline = time.monotonic() + timeout
    now = counts(supervisor, under)
    while want is not None and now != want and time.monotonic() < deadline:
        time.sleep(0.05)
        now = counts(supervisor, under)
    return now


def cycle(h: Harness, client, n: int) -> int:  # type: ignore[no-untyped-def]
    """One task's life; returns its exit status."""
    task_id = f"soak-{n}"
    killed = n % KILL_EVERY == KILL_EVERY - 1
    files, args = ({"s.wasm": SLEEPER}, ["/s.wasm"]) if killed else ({"hello.wasm": HELLO}, ["/hello.wasm"])
    # The image goes in as containerd's would: a layer dir bind-mounted read-only on the rootfs.
    layer = h.bundle(f"{task_id}-layer", files, args)
    bundle = h.bundle(task_id, {}, args, annotations={"io.kubernetes.cri.sandbox-id": "soak"})
    rootfs = [mount_pb2.Mount(type="bind", source=str(layer / "rootfs"), options=["rbind", "ro"])]
    h.call(client, "Create", pb.CreateTaskRequest(id=task_id, bundle=str(bundle), rootfs=rootfs),
           pb.CreateTaskResponse)
    if not mounts_under(bundle / "rootfs"):
        raise AssertionError(f"{task_id}: rootfs not mounted after Create")
    h.call(client, "Start", pb.StartRequest(id=task_id), pb.StartResponse)
    if killed:
        sig = KILL_SIGNALS[(n // KILL_EVERY) % len(KILL_SIGNALS)]
        h.call(client, "Kill", pb.KillRequest(id=task_id, signal=sig), _empty())
    status = int(h.call(client, "Wait", pb.WaitRequest(id=task_id), pb.WaitResponse).exit_status)
    h.call(client, "Delete", pb.DeleteRequest(id=task_id), pb.DeleteResponse)
    shutil.rmtree(bundle)  # fails on a rootfs left mounted
    shutil.rmtree(layer)
    want = 128 + sig if killed else 0
    if status != want:
        raise AssertionError(f"{task_id}: exit status {status}, want {want}")
    return status


def soak(h: Harness, cycles: int) -> tuple[Counts, Counts, float]:
    """Run the soak on a new supervisor of harness `h`; returns (before, after, seconds)."""
    first = h.bundle("soak-warm", {"hello.wasm": HELLO}, ["/hello.wasm"],
                     annotations={"io.kubernetes.cri.sandbox-id": "soak"})
    client = h.client(h.start_shim(first, "soak-warm"))
    supervisor = int(h.call(client, "Connect", pb.ConnectRequest(id=""), pb.ConnectResponse).shim_pid)
    cycle(h, client, -1)  # warm: the zygote and the first connection exist before counting
    before = settle(supervisor, h.base)
    began = time.monotonic()
    for n in range(cycles):
        cycle(h, client, n)
    seconds = time.monotonic() - began
    after = settle(supervisor, h.base, before)
    return before, after, seconds


def _empty():  # type: ignore[no-untyped-def]
    from google.protobuf.empty_pb2 import Empty

    return Empty


def main(argv: list[str]) -> int:
    cycles = int(argv[0]) if argv else 1000
    base = Path(tempfile.mkdtemp(prefix="wv-soak-", dir="/tmp"))
    h = Harness(base)
    try:
        before, after, seconds = soak(h, cycles)
    finally:
        h.close()
        shutil.rmtree(base, ignore_errors=True)
    print(f"soak: {cycles} cycles in {seconds:.1f} s ({cycles / seconds:.1f}/s), "
          f"one in {KILL_EVERY} killed by signal")
    print(f"before: {before.line()}")
    print(f"after:  {after.line()}")
    print("soak: counts back to their start" if after == before else "soak: LEAK")
    return 0 if after == before else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
