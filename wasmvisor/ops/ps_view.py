"""How `wasmvisor ps` prints a snapshot (ps.py makes it): per template, per group, one line per task.

Pure: data in, lines out (tests/unit/ops/test_ps_view.py).
"""

from __future__ import annotations

from typing import Any

COLUMNS = ("TASK", "STATE", "PID", "ENGINE", "MODULE", "DIGEST", "EXIT", "UPTIME", "CPU", "PSS")
DIGEST_CHARS = 12
"""Hex digits of a module digest shown (all of them with --json)."""


def size(value: int | None) -> str:
    """Bytes as `12.3M` (powers of 1024), `-` when unknown."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "K", "M", "G"):
        if amount < 1024 or unit == "G":
            return f"{amount:.0f}{unit}" if unit == "B" else f"{amount:.1f}{unit}"
        amount /= 1024
    return "-"  # not reached


def duration(seconds: float | None) -> str:
    """`45s`, `12m03s`, `3h07m`, `2d04h`; `-` when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def cpu(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}s"


def short_digest(digest: str) -> str:
    algorithm, _, hex_digits = digest.partition(":")
    return f"{algorithm}:{hex_digits[:DIGEST_CHARS]}" if hex_digits else (digest or "-")


def task_row(namespace: str, task: dict[str, Any]) -> tuple[str, ...]:
    stopped = task.get("exit_status") is not None
    return (
        f"{namespace}/{task['id']}",
        task.get("state", "?"),
        str(task.get("pid") or "-"),
        task.get("engine") or "-",
        task.get("module") or "-",
        short_digest(task.get("digest", "")),
        str(task["exit_status"]) if stopped else "-",
        "-" if stopped else duration(task.get("uptime_seconds")),
        cpu(task.get("cpu_seconds")),
        size(task.get("pss_bytes")),
    )


def _process(label: str, proc: dict[str, Any] | None) -> str:
    if not proc:
        return ""
    return f"  {label} {proc['pid']} PSS {size(proc.get('pss_bytes'))}"


def group_header(group: dict[str, Any]) -> str:
    line = f"GROUP {group['name']}" + _process("supervisor", group["supervisor"]) + _process("zygote", group["zygote"])
    if group["status"] != "ok":
        line += f"  {group['status'].upper()}: {group['error']}"
    return line


def render(snap: dict[str, Any]) -> list[str]:
    """The lines `ps` prints for `snap`."""
    groups = snap["groups"]
    if not groups:
        return [f"no wasmvisor supervisor listens in {snap['socket_dir']}"]
    templates = [t for t in snap["templates"] if any(g["template"] == t["pid"] for g in groups)]
    sections: list[tuple[str, list[dict[str, Any]]]] = []
    for template in templates:
        mine = [g for g in groups if g["template"] == template["pid"]]
        sections.append((f"TEMPLATE {template['pid']}  {template['title']}", mine))
    orphans = [g for g in groups if g["template"] is None]
    if orphans:
        sections.append(("NO TEMPLATE (started by `start` itself)", orphans))
    lines: list[str] = []
    for title, members in sections:
        lines.append(title)
        for group in members:
            lines.append("  " + group_header(group))
            namespace = group["name"].split("/", 1)[0]
            rows = [COLUMNS] + [task_row(namespace, t) for t in group["tasks"]]
            if len(rows) == 1:
                continue
            widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
            for row in rows:
                lines.append("    " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return lines
