"""`wasmvisor ps`: every task of every supervisor on the node, found by the supervisors' sockets.

A supervisor is a process titled `wasmvisor-shim NS/GROUP` that listens on a socket of the socket
folder; /proc tells which process holds which listening socket (so a stopped supervisor is found too,
and runc's shims in the same folder are left alone). Each is asked over its Admin service, all at once,
each with the same short deadline: one that does not answer in time is shown as `unresponsive`, with its
workers as /proc shows them. CPU time, uptime and PSS come from /proc, so they are there for a supervisor
that cannot answer as well.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

from wasmvisor.errors import Code, DeadlineExceeded, RpcError, ShimError
from wasmvisor.linux import procfs
from wasmvisor.supervisor import admin

SHIM_TITLE = "wasmvisor-shim "
TEMPLATE_TITLE = "wasmvisor-template"
ZYGOTE_TITLE = "wasmvisor-zygote"
WORKER_TITLE = "wasmvisor-worker "
RELAY_TITLE = "wasmvisor-init "
UNKNOWN = "unknown"
"""The state of a task whose supervisor did not answer."""
UNRESPONSIVE = "unresponsive"
ANSWERED = "ok"
FAILED = "error"


@dataclass
class Supervisor:
    """One supervisor as found on the node, and what it answered."""

    pid: int
    socket: str
    name: str
    """`NS/GROUP`, from its title."""
    template: int | None = None
    """The pid of the template that forked it, if one did."""
    zygote: int | None = None
    status: str = ""
    error: str = ""
    answer: dict[str, Any] = field(default_factory=dict)


def find_supervisors(socket_dir: str) -> tuple[list[Supervisor], dict[int, str]]:
    """The supervisors listening in `socket_dir`, and the templates (pid -> title) found on the way."""
    titles = {pid: t for pid in procfs.pids() if (t := procfs.title(pid)) and t.startswith("wasmvisor-")}
    templates = {pid: t for pid, t in titles.items() if t.startswith(TEMPLATE_TITLE)}
    listening = procfs.unix_sockets()
    folder = os.path.realpath(socket_dir)
    found = []
    for pid, title in sorted(titles.items()):
        if not title.startswith(SHIM_TITLE):
            continue
        paths = sorted(p for inode in procfs.socket_inodes(pid) if (p := listening.get(inode))
                       and os.path.dirname(p) == folder)
        if not paths:
            continue  # a supervisor of another socket folder (or of an abstract address)
        info = procfs.stat(pid)
        parent = info.ppid if info else 0
        zygotes = [c for c in procfs.children(pid) if (procfs.title(c) or "").startswith(ZYGOTE_TITLE)]
        found.append(Supervisor(pid=pid, socket=paths[0], name=title[len(SHIM_TITLE):].strip(),
                                template=parent if parent in templates else None,
                                zygote=zygotes[0] if zygotes else None))
    return found, templates


async def ask_all(supervisors: list[Supervisor], timeout: float) -> None:
    """Ask every supervisor at once; each ends with its status set."""

    async def one(sup: Supervisor) -> None:
        try:
            sup.answer = await admin.ask(sup.socket, timeout)
            sup.status = ANSWERED
        except DeadlineExceeded:
            sup.status, sup.error = UNRESPONSIVE, f"no answer within {timeout:g} s"
        except RpcError as exc:
            older = exc.code == Code.UNIMPLEMENTED
            sup.status, sup.error = FAILED, f"no {admin.SERVICE} (an older wasmvisor)" if older else exc.message
        except ShimError as exc:
            sup.status, sup.error = FAILED, exc.message
        except ValueError as exc:  # not JSON: not ours after all
            sup.status, sup.error = FAILED, f"unreadable answer: {exc}"

    await asyncio.gather(*(one(s) for s in supervisors))


def _usage(pid: int | None, boot: int, now: float) -> dict[str, Any]:
    """CPU seconds, uptime seconds and PSS bytes of `pid`, each None when /proc does not say."""
    info = procfs.stat(pid) if pid else None
    return {
        "cpu_seconds": round(info.cpu_seconds, 2) if info else None,
        "uptime_seconds": round(now - boot - info.started_ticks / procfs.CLOCK_TICKS, 1) if info else None,
        "pss_bytes": procfs.pss(pid) if pid and info else None,
    }


def workers_of(zygote: int | None) -> list[dict[str, Any]]:
    """The tasks of a supervisor that did not answer, as /proc shows them: the zygote's children by title
    (a relay's child is the container process). Their state is not known."""
    found = []
    for child in procfs.children(zygote) if zygote else []:
        title = procfs.title(child) or ""
        for prefix in (WORKER_TITLE, RELAY_TITLE):
            if title.startswith(prefix):
                pid = child
                if prefix == RELAY_TITLE:
                    pid = next(iter(procfs.children(child)), child)
                found.append({"id": title[len(prefix):].strip().partition("/")[2], "state": UNKNOWN, "pid": pid,
                              "engine": "", "module": "", "digest": "", "exit_status": None})
    return found


def snapshot(socket_dir: str, timeout: float, namespace: str = "") -> dict[str, Any]:
    """Everything `ps` shows (of the groups of `namespace`, when given), as data (`--json` prints it)."""
    supervisors, templates = find_supervisors(socket_dir)
    if namespace:
        supervisors = [s for s in supervisors if s.name.startswith(f"{namespace}/")]
    asyncio.run(ask_all(supervisors, timeout))
    boot, now = procfs.boot_time(), time.time()
    groups = []
    for sup in supervisors:
        tasks = []
        for task in sup.answer.get("tasks", []) if sup.status == ANSWERED else workers_of(sup.zygote):
            alive = task.get("exit_status") is None
            tasks.append({**task, **_usage(task.get("pid") if alive else None, boot, now)})
        groups.append({
            "name": sup.name,
            "socket": sup.socket,
            "status": sup.status,
            "error": sup.error,
            "template": sup.template,
            "engine": sup.answer.get("engine", ""),
            "supervisor": {"pid": sup.pid, **_usage(sup.pid, boot, now)},
            "zygote": {"pid": sup.zygote, **_usage(sup.zygote, boot, now)} if sup.zygote else None,
            "tasks": tasks,
        })
    return {
        "socket_dir": socket_dir,
        "templates": [{"pid": pid, "title": title} for pid, title in sorted(templates.items())],
        "groups": groups,
    }
