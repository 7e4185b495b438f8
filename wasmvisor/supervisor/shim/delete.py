"""The `delete` action: clean up after a supervisor that died, then report the task as killed.

containerd runs it when its connection to the supervisor broke or after its own restart when the
supervisor cannot be reached. It must not need the supervisor: it kills the task's process if one is
left (found through `<bundle>/init.pid`, which records its pid and start time, wasmvisor/linux/
pid_record.py: a recycled pid is never killed, and a native program found by its pid even after it
exec'd another; a file with a pid alone, from an older wasmvisor, is checked by the worker's process
title instead), unmounts `<bundle>/rootfs`, and writes one serialized `DeleteResponse` (exit status 137) to
stdout. Problems are warnings on stderr, which containerd logs; the exit status stays 0, because a
failing delete leaves the bundle behind for good.

containerd also runs it after every task whose connection closes normally (1.6: the ttrpc client's
on-close callback, after Delete and Shutdown), on the path of each `ctr run --rm`. Then the supervisor
has deleted the task already (and removed init.pid), containerd no longer holds it and reads no field of
the answer (cleanupAfterDeadShim returns before publishing when the task is gone), so the answer is the
empty message: all defaults, which is how protobuf encodes it. That spares the protobuf runtime, ~35 ms of
this action's ~85 ms. Whenever init.pid is still there, the full answer is built with protobuf.
The same holds for the rest: the mounts module loads only when something is mounted under the rootfs,
the cgroups package only when a folder of the task's cgroup may be left (leftover_cgroup.py), and
`site` (the entry script runs `python -I -S`) only for protobuf or the cgroups package. The usual
delete thus imports little beyond `os`, and takes ~15 ms, as `start` does.

Whatever was left, `delete` also tells the group's supervisor, if one still listens, that containerd
gave the task up (`release_group_claim`): a supervisor that `start` launched for a group whose first
call failed (containerd 2.1's shim sandboxer against a shim without the Sandbox service) holds only
that task's claim, and ends once it is settled instead of staying until the claim expires.
"""

from __future__ import annotations

import os
import sys
import time

from wasmvisor.linux import mountinfo, pid_record
from wasmvisor.supervisor.shim import claim, leftover_cgroup
from wasmvisor.supervisor.shim.cliargs import ShimArgs
from wasmvisor.supervisor.shim.entry_script import load_site

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing (~15 ms) and signal (enum, ~8 ms) stay unloaded
if TYPE_CHECKING:
    from typing import BinaryIO, TextIO

PID_FILE = "init.pid"
"""Written by the supervisor in each task's bundle: the task's process as a pid record (pid_record.py)."""
WORKER_TITLE = "wasmvisor-worker"
SIGKILL = 9
"""signal.SIGKILL on Linux, without importing `signal`."""
KILLED_STATUS = 128 + SIGKILL


def worker_title(namespace: str, task_id: str) -> str:
    """The process title a task's worker carries (`wasmvisor-worker NS/ID`)."""
    return f"{WORKER_TITLE} {namespace}/{task_id}"


def process_title(pid: int) -> str | None:
    """The first word-run of /proc/PID/cmdline (a setproctitle title), or None if pid is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").rstrip()


def _gone(pid: int) -> bool:
    """Whether pid no longer runs (absent, or a zombie waiting for a parent that is not us)."""
    return pid_record.start_time(pid) is None


def kill_worker(pid: int, title: str, timeout: float = 1.0, start: int | None = None) -> bool:
    """SIGKILL `pid` if it is still the process that started at `start` (when known; else if its
    title is `title`), and wait up to `timeout` for it to die. True if killed."""
    if start is not None:
        if not pid_record.is_running(pid, start):
            return False
    else:
        current = process_title(pid)
        if current is None or not (current == title or current.startswith(title + " ")):
            return False
    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        return False
    give_up = time.monotonic() + timeout
    while not _gone(pid) and time.monotonic() < give_up:
        time.sleep(0.005)
    return True


def mounted_under(path: str, table: str = mountinfo.MOUNTINFO) -> bool:
    """Whether anything is mounted at `path` or below it, from the mountinfo file `table` (True when it
    cannot be read).

    The cheap check that spares `delete` the mounts module when there is nothing to unmount.
    """
    try:
        points = mountinfo.mount_points(table)
    except OSError:
        return True
    return bool(mountinfo.points_under(os.path.realpath(path), points))


RELEASE_TIMEOUT = 1.0
"""Seconds `delete` waits for the supervisor's answer to Release (it answers in well under a millisecond)."""


def release_group_claim(args: ShimArgs, bundle: str) -> str:
    """Tell the supervisor of this task's group, if one listens, that containerd gave `args.id` up.

    The supervisor settles that task's claim as a Shutdown would (lifetime.py): one that holds no other
    task or claim lingers, then ends and removes its socket. One that still serves other tasks of the
    group stays. Returns the answer (claim.GRANTED when the supervisor took it; claim.ABSENT when none
    listens, the usual case after a supervisor died). The socket is found as `start` found it.
    """
    from wasmvisor.supervisor.shim.start import PROTOCOL_ENV, group_of, socket_path

    path = socket_path(args.address or os.environ.get("GRPC_ADDRESS", ""),
                       args.namespace or os.environ.get("NAMESPACE", ""), group_of(bundle, args.id))
    answer = claim.ask(path, args.id, RELEASE_TIMEOUT, claim.RELEASE)
    if answer == claim.GARBLED and os.environ.get(PROTOCOL_ENV, "").strip().lower() == "grpc":
        answer = claim.ask_grpc(path, args.id, RELEASE_TIMEOUT, claim.RELEASE)
    return answer


DELETED_TASK_RESPONSE = b""
"""The serialized DeleteResponse with every field at its default (the encoding of an empty message):
the answer for a task the supervisor deleted already, whose response containerd never reads."""


def delete_response(pid: int) -> bytes:
    """A serialized containerd.task.v2.DeleteResponse: pid, exit status 137, exited now."""
    load_site()  # protobuf lives in site-packages, which the entry script's `python -S` left out
    from wasmvisor.proto.containerd.task.v2 import shim_pb2  # protobuf only on this path

    response = shim_pb2.DeleteResponse(pid=pid, exit_status=KILLED_STATUS)
    response.exited_at.FromNanoseconds(time.time_ns())
    data: bytes = response.SerializeToString()
    return data


def run(args: ShimArgs, *, stdout: BinaryIO | None = None, stderr: TextIO | None = None) -> int:
    """The `delete` action. Always writes the response; returns the exit code (0)."""
    err = stderr if stderr is not None else sys.stderr

    def warn(message: str) -> None:
        err.write(f"wasmvisor delete {args.namespace}/{args.id}: warning: {message}\n")

    bundle = args.bundle or os.getcwd()
    # The supervisor removes init.pid when it deletes the task (before answering Delete), and writes
    # it only once Create succeeds: without it, containerd holds no task for this id.
    task_left = os.path.lexists(os.path.join(bundle, PID_FILE))
    pid, start = pid_record.read(os.path.join(bundle, PID_FILE)) or (0, None)
    if pid:
        try:
            kill_worker(pid, worker_title(args.namespace, args.id), start=start)
        except OSError as exc:
            warn(f"kill worker {pid}: {exc.strerror or exc}")
    try:
        rootfs = os.path.join(bundle, "rootfs")
        if mounted_under(rootfs):  # usually not: the supervisor unmounts at Delete
            from wasmvisor.supervisor.tasks import mounts  # ~20 ms of imports (ctypes, dataclasses)

            mounts.unmount_all(rootfs)
    except Exception as exc:  # report it, and still answer containerd
        warn(f"unmount {os.path.join(bundle, 'rootfs')}: {exc}")
    try:
        # Usually the supervisor removed the cgroup at Delete, or the spec had no linux section.
        if leftover_cgroup.may_exist(bundle, args.namespace, args.id):
            load_site()  # wasmvisor.cgroups reads config.json with orjson
            from wasmvisor import cgroups  # ~30 ms of imports

            cgroups.remove_for_bundle(bundle, args.namespace, args.id)
    except Exception as exc:
        warn(f"remove cgroup: {exc}")
    try:
        release_group_claim(args, bundle)
    except Exception as exc:  # the answer to containerd matters more than the supervisor's linger
        warn(f"tell the group's supervisor: {exc}")
    err.flush()
    out = stdout if stdout is not None else sys.stdout.buffer
    out.write(delete_response(pid) if task_left else DELETED_TASK_RESPONSE)
    out.flush()
    return 0
