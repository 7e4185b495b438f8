"""ChildReaper: the one place the supervisor reaps. Each status goes to whoever watches its pid; one
nobody watches is logged, and kept a moment for a watch that comes late.

Each scenario runs in an interpreter of its own: `waitpid(-1)` in the test process would take the
children of other tests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PRELUDE = """
import asyncio, logging, os, signal, sys, time
from wasmvisor.linux import reaper as r

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="log: %(message)s")


def child(code):
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    return pid


def until(check):
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)
"""


def run(scenario: str) -> list[str]:
    """The lines `scenario` prints (after PRELUDE), in a fresh interpreter."""
    code = PRELUDE + textwrap.dedent(scenario)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_watched_child_s_returncode_goes_to_its_watcher_and_nothing_is_logged() -> None:
    assert run("""
        reaper = r.ChildReaper()
        pid = child(3)
        got = []
        reaper.watch(pid, got.append)
        until(lambda: reaper.exited(pid))
        reaper.reap()
        killed = child(0)
        os.kill(killed, signal.SIGKILL)  # before or after its exit: a signal after is lost
        reaper.watch(killed, got.append)
        until(lambda: reaper.exited(killed))
        reaper.reap()
        print(got[0], got[1] in (0, -9), os.path.exists(f"/proc/{pid}"))
    """) == ["3 True False"]


def test_exited_looks_without_collecting() -> None:
    assert run("""
        reaper = r.ChildReaper()
        pid = child(0)
        reaper.watch(pid, lambda code: None)
        until(lambda: reaper.exited(pid))
        print(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0])  # still a zombie
        reaper.reap()
        print(os.path.exists(f"/proc/{pid}"), reaper.exited(pid))
    """) == ["Z", "False True"]


def test_an_unknown_child_is_logged_and_its_status_kept_for_a_late_watch() -> None:
    lines = run("""
        now = [0.0]
        reaper = r.ChildReaper(clock=lambda: now[0])
        early, stranger = child(5), child(6)
        until(lambda: reaper.exited(early) and reaper.exited(stranger))
        reaper.reap()
        got = []
        reaper.watch(early, got.append)  # reaped before the watch: handed over at once
        now[0] += r.UNCLAIMED_SECONDS + 1
        reaper.watch(stranger, got.append)  # too late: its status was dropped
        print("got", got, early, stranger)
    """)
    got = lines[-1].split()
    early, stranger = got[-2], got[-1]
    assert lines[-1].startswith("got [5] ")
    assert sorted(lines[:-1]) == sorted([
        f"log: reaped process {early}, which no one here waits for: returncode 5",
        f"log: reaped process {stranger}, which no one here waits for: returncode 6",
    ])


def test_on_an_event_loop_sigchld_has_the_loop_reap() -> None:
    assert run("""
        async def main():
            reaper = r.ChildReaper()
            loop = asyncio.get_running_loop()
            before = child(1)
            until(lambda: reaper.exited(before))
            reaper.attach(loop)  # reaps what ended before, then on every SIGCHLD
            print("before gone:", not os.path.exists(f"/proc/{before}"))
            ended = loop.create_future()
            pid = child(0)
            reaper.watch(pid, ended.set_result)  # the loop reaps: the watcher runs on it
            print("returncode", await asyncio.wait_for(ended, 30))

        asyncio.run(main())
    """)[-2:] == ["before gone: True", "returncode 0"]


def test_unwatch_forgets_only_its_own_watcher() -> None:
    lines = run("""
        reaper = r.ChildReaper()
        first, second = [], []
        gone, reused = child(1), child(2)
        reaper.watch(gone, first.append)
        reaper.unwatch(gone, first.append)  # its status came some other way
        reaper.watch(reused, first.append)
        reaper.watch(reused, second.append)  # the pid's new owner
        reaper.unwatch(reused, first.append)  # the old owner's late unwatch leaves the new one
        until(lambda: reaper.exited(gone) and reaper.exited(reused))
        reaper.reap()
        print(first, second, gone)
    """)
    assert lines[-1].startswith("[] [2] ")
    assert lines[:-1] == [f"log: reaped process {lines[-1].split()[-1]}, which no one here waits for: returncode 1"]
