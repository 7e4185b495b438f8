#!/usr/bin/env python3
"""Signal semantics of wasmvisor as containerd 1.6 reports them, checked through `ctr`.

For SIGTERM, SIGINT, SIGHUP, SIGKILL, SIGUSR1 and `ctr task kill --all`: a sleeping guest ends
with exit status 128+N in its /tasks/exit event, `ps` shows its worker before and none after;
the time from the kill command to the exit event is printed (never judged). Then twenty guests
of one pod group (one supervisor) are killed one by one with different signals: each must end
with its own status while the others keep running.

Standalone it starts its own private containerd (root needed): `.venv/bin/python scripts/signals.py`.
tests/e2e/test_signals_script.py runs `check_all` on the test session's containerd.
Exit status: 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.ctr import Ctr, EventRecorder  # noqa: E402
from tests.e2e.host import processes_titled  # noqa: E402

SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGKILL", "SIGUSR1")
POD_SIZE = 20
POD_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGALRM")
SANDBOX_ANNOTATION = "io.kubernetes.cri.sandbox-id"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name:<28} {self.detail}"


def _worker(ctr: Ctr, container_id: str) -> list[int]:
    return processes_titled(f"wasmvisor-worker {ctr.namespace}/{container_id}")


def _until(check: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def _run_sleeper(ctr: Ctr, image: str, container_id: str, labels: dict[str, str] | None = None) -> int:
    flags = ["--detach", "--null-io"]
    for key, value in (labels or {}).items():
        flags += ["--label", f"{key}={value}"]
    started = ctr.run_container(image, container_id, rm=False, flags=flags)
    if started.returncode != 0:
        raise RuntimeError(f"ctr run {container_id} failed: {started.output.strip()}")
    return ctr.wait_for_task_status(container_id, "RUNNING").pid


def _remove(ctr: Ctr, container_id: str) -> None:
    ctr.run("task", "rm", "-f", container_id, timeout=30)
    ctr.run("containers", "rm", container_id, timeout=30)


def _kill_and_time(ctr: Ctr, events: EventRecorder, container_id: str, sig: str, all: bool) -> tuple[int, float]:
    """Send `sig`; return the exit status of the /tasks/exit event and the seconds it took to come."""
    began = time.monotonic()
    kill = ctr.run("task", "kill", *(["--all"] if all else []), "-s", sig, container_id, timeout=30)
    if kill.returncode != 0:
        raise RuntimeError(f"ctr task kill {sig} {container_id}: {kill.stderr.strip()}")
    event = events.wait_for("/tasks/exit", container_id, timeout=20)
    return int(event.payload.get("exit_status", 0)), time.monotonic() - began


def check_signals(ctr: Ctr, image: str, prefix: str) -> Iterator[Check]:
    """One sleeping guest per signal, and one for `ctr task kill --all` (SIGTERM by default)."""
    cases = [(sig, sig, False) for sig in SIGNALS] + [("kill --all", "SIGTERM", True)]
    for n, (name, sig, all) in enumerate(cases):
        container_id = f"{prefix}-{sig.lower()}{'-all' if all else ''}-{n}"
        want = 128 + signal.Signals[sig].value
        try:
            pid = _run_sleeper(ctr, image, container_id)
            before = _worker(ctr, container_id)
            with ctr.events() as events:
                status, took = _kill_and_time(ctr, events, container_id, sig, all)
            after_gone = _until(lambda cid=container_id: not _worker(ctr, cid))
            ok = status == want and before == [pid] and after_gone
            after = "none" if after_gone else str(_worker(ctr, container_id))
            yield Check(name, ok, f"status {status} (want {want}); kill->exit {took * 1000:.0f} ms; "
                                  f"workers before {before} after {after}")
        except Exception as exc:  # one case's failure is reported, the others still run
            yield Check(name, False, str(exc))
        finally:
            _remove(ctr, container_id)


def check_pod(ctr: Ctr, image: str, prefix: str, state_dir: Path | None = None) -> Iterator[Check]:
    """Twenty guests in one pod group, killed one by one, each with its own signal."""
    pod = f"{prefix}-pod"
    ids = [f"{prefix}-pod-{i:02d}" for i in range(POD_SIZE)]
    try:
        for container_id in ids:
            _run_sleeper(ctr, image, container_id, {SANDBOX_ANNOTATION: pod})
        supervisors = processes_titled(f"wasmvisor-shim {ctr.namespace}/{pod}")
        yield Check("pod: one supervisor", len(supervisors) == 1,
                    f"{len(supervisors)} supervisor(s) for {POD_SIZE} guests")
        if state_dir is not None:
            # ctr 1.6 copies --label into the OCI spec's annotations: that is how the group is found.
            config = (state_dir / "io.containerd.runtime.v2.task" / ctr.namespace / ids[0] / "config.json")
            text = config.read_text() if config.exists() else ""
            yield Check("pod: label is an annotation", f'"{SANDBOX_ANNOTATION}":"{pod}"' in text.replace(" ", ""),
                        str(config))
        wrong: list[str] = []
        took: list[float] = []
        with ctr.events() as events:
            for i, container_id in enumerate(ids):
                sig = POD_SIGNALS[i % len(POD_SIGNALS)]
                status, seconds = _kill_and_time(ctr, events, container_id, sig, False)
                took.append(seconds)
                want = 128 + signal.Signals[sig].value
                if status != want:
                    wrong.append(f"{container_id}: {sig} gave {status}, want {want}")
                tasks = ctr.tasks()
                still = [t for t in ids[i + 1:] if tasks.get(t) is None or tasks[t].status != "RUNNING"]
                if still:
                    wrong.append(f"after killing {container_id}: not running: {still}")
        yield Check("pod: each its own status", not wrong,
                    "; ".join(wrong) or f"{POD_SIZE} exits; kill->exit median "
                                        f"{sorted(took)[len(took) // 2] * 1000:.0f} ms, max {max(took) * 1000:.0f} ms")
        gone = _until(lambda: not processes_titled(f"wasmvisor-worker {ctr.namespace}/{prefix}-pod-"))
        yield Check("pod: no worker left", gone, "")
    except Exception as exc:
        yield Check("pod", False, str(exc))
    finally:
        for container_id in ids:
            _remove(ctr, container_id)


def check_all(ctr: Ctr, image: str, prefix: str = "sig", state_dir: Path | None = None) -> list[Check]:
    results = []
    for check in [*check_signals(ctr, image, prefix), *check_pod(ctr, image, prefix, state_dir)]:
        print(check.line(), flush=True)
        results.append(check)
    return results


def main() -> int:
    from tests.e2e.conftest import shim_dir
    from tests.e2e.containerd import private_containerd
    from tests.guests.build import build_all
    from wasmvisor.image import build_oci_tar

    wasm = build_all(REPO / "_work" / "guests")["sleep"]
    ref = "docker.io/wasmvisor-test/sleep:latest"
    with tempfile.TemporaryDirectory(prefix="wv-signals-") as tmp, \
            private_containerd(shim_dirs=[shim_dir()]) as containerd:
        tar = Path(tmp) / "sleep.tar"
        build_oci_tar(tar, ref, {"/sleep.wasm": wasm.read_bytes()}, entrypoint=["/sleep.wasm"])
        ctr = containerd.ctr("wv-signals")
        try:
            ctr.import_image(tar)
            results = check_all(ctr, ref, state_dir=containerd.state)
        finally:
            ctr.remove_all()
    failed = [r for r in results if not r.ok]
    print(f"signals: {len(results) - len(failed)}/{len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
