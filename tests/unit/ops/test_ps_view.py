"""How `wasmvisor ps` prints: groups under their template, one aligned line per task."""

from __future__ import annotations

from typing import Any

from wasmvisor.ops import ps_view


def snap(**group: Any) -> dict[str, Any]:
    base = {
        "name": "default/web", "socket": "/run/containerd/s/ab", "status": "ok", "error": "", "template": 10,
        "engine": "wasmtime", "supervisor": {"pid": 11, "pss_bytes": 10 * 1024 * 1024},
        "zygote": {"pid": 12, "pss_bytes": 3 * 1024 * 1024 // 2}, "tasks": [],
    }
    base.update(group)
    return {"socket_dir": "/run/containerd/s", "templates": [{"pid": 10, "title": "wasmvisor-template -address A"}],
            "groups": [base]}


def test_a_running_task_and_a_stopped_one_under_their_group_and_template() -> None:
    tasks = [
        {"id": "web", "state": "running", "pid": 13, "engine": "wasmtime", "module": "/app.wasm",
         "digest": "sha256:" + "ab" * 32, "exit_status": None, "uptime_seconds": 754, "cpu_seconds": 1.5,
         "pss_bytes": 2048},
        {"id": "job", "state": "stopped", "pid": 14, "engine": "native", "module": "sh", "digest": "",
         "exit_status": 137, "uptime_seconds": None, "cpu_seconds": None, "pss_bytes": None},
    ]

    lines = ps_view.render(snap(tasks=tasks))

    assert lines[0] == "TEMPLATE 10  wasmvisor-template -address A"
    assert lines[1] == "  GROUP default/web  supervisor 11 PSS 10.0M  zygote 12 PSS 1.5M"
    assert lines[2].split() == list(ps_view.COLUMNS)
    assert lines[3].split() == ["default/web", "running", "13", "wasmtime", "/app.wasm", "sha256:abababababab",
                                "-", "12m34s", "1.50s", "2.0K"]
    assert lines[4].split() == ["default/job", "stopped", "14", "native", "sh", "-", "137", "-", "-", "-"]
    assert lines[3].index("running") == lines[4].index("stopped")


def test_an_unresponsive_supervisor_says_so_on_its_group_line() -> None:
    lines = ps_view.render(snap(status="unresponsive", error="no answer within 1 s", template=None, zygote=None))

    assert lines == ["NO TEMPLATE (started by `start` itself)",
                     "  GROUP default/web  supervisor 11 PSS 10.0M  UNRESPONSIVE: no answer within 1 s"]


def test_no_supervisor_at_all_is_one_line() -> None:
    assert ps_view.render({"socket_dir": "/x", "templates": [], "groups": []}) == [
        "no wasmvisor supervisor listens in /x"]


def test_durations_and_sizes() -> None:
    assert [ps_view.duration(s) for s in (5, 61, 3 * 3600 + 420, 2 * 86400 + 4 * 3600)] == [
        "5s", "1m01s", "3h07m", "2d04h"]
    assert [ps_view.size(b) for b in (512, 1536, 5 * 2**30, None)] == ["512B", "1.5K", "5.0G", "-"]
