"""`ctr run --rm` repeated back to back with one container id, as hyperfine, scripts and
`nerdctl run --rm --name` do: every run reaches the guest, and no supervisor is left afterwards.

Each run's `start` finds the previous run's supervisor in its linger after Shutdown. It may reuse it
only with that supervisor's promise to stay (a claim answered over its socket); a supervisor that has
decided to end refuses, and `start` launches a new one on the same address. Without that, runs failed
with `ttrpc: closed`, `dial unix ...: no such file or directory` or `connection refused`, and idle
supervisors with their zygotes were left behind for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.e2e.ctr import Ctr
from tests.e2e.host import is_alive, process_titles, process_tree

ImageRef = Callable[[str], str]

RUNS = 300
HELLO = "hello from wasmvisor\n"
LEFT_TIMEOUT = 10.0
"""Seconds the last supervisor has to end after the last run: its linger is 1 s."""


def _supervisors(namespace: str) -> list[int]:
    return sorted(pid for pid, title in process_titles().items()
                  if title.startswith(f"wasmvisor-shim {namespace}/") and is_alive(pid))


def _run_back_to_back(ctr: Ctr, ref: str, ids: list[str], runs: int) -> tuple[list[str], set[int]]:
    """`runs` foreground `ctr run --rm`, cycling through `ids`: the failures (one line each) and every
    process of the namespace's supervisors seen along the way (supervisors, zygotes)."""
    failures: list[str] = []
    seen: set[int] = set()
    for n in range(runs):
        container_id = ids[n % len(ids)]
        result = ctr.run_container(ref, container_id)
        if (result.returncode, result.stdout) != (0, HELLO):
            failures.append(f"run {n} ({container_id}): exit {result.returncode}: {' '.join(result.output.split())}")
        if n % 25 == 0 or n == runs - 1:
            for pid in _supervisors(ctr.namespace):
                seen.update(process_tree(pid))
    return failures, seen


def _left_after(namespace: str, pids: set[int], timeout: float = LEFT_TIMEOUT) -> list[str]:
    """Poll until no supervisor of `namespace` and none of `pids` runs: what is still there at the end."""
    deadline = time.monotonic() + timeout
    while True:
        titles = process_titles()
        left = sorted(f"{pid} {titles[pid]}" for pid in set(_supervisors(namespace)) | pids
                      if pid in titles and titles[pid].startswith("wasmvisor-") and is_alive(pid))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _check(ctr: Ctr, ref: str, ids: list[str]) -> None:
    failures, seen = _run_back_to_back(ctr, ref, ids, RUNS)
    left = _left_after(ctr.namespace, seen)
    assert (failures, left) == ([], []), (
        f"{len(failures)} of {RUNS} runs failed:\n" + "\n".join(failures[:20])
        + f"\nstill running {LEFT_TIMEOUT:.0f} s after the last run: {left}"
    )


def test_300_back_to_back_runs_of_one_id_all_print_hello_and_leave_no_supervisor(
    ctr: Ctr, image: ImageRef, new_container_id: Callable[[str], str],
) -> None:
    _check(ctr, image("hello"), [new_container_id("same")])


def test_300_back_to_back_runs_of_two_interleaved_ids_all_print_hello_and_leave_no_supervisor(
    ctr: Ctr, image: ImageRef, new_container_id: Callable[[str], str],
) -> None:
    _check(ctr, image("hello"), [new_container_id("a"), new_container_id("b")])
