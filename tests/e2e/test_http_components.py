"""HTTP components (`wasi:http/proxy`) through ctr: served by the wasmtime CLI that the worker runs in
the container's network namespace, on 0.0.0.0:8080 or the port of the `wasmvisor.io/http-port`
annotation. The client runs in that namespace (tests/e2e/netns_http.py, by nsenter).

The guest (tests/guests/http_echo/app.py, built with componentize-py): GET /hello, GET /slow?ms=N,
GET /count (its instance's request count: 1 when every request has an instance of its own), POST /echo.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.containerd import PrivateContainerd
from tests.e2e.ctr import Ctr, ForegroundRun
from tests.e2e.netns_http import finish, requests_in_netns, start_in_netns
from tests.e2e.test_components import python_component_image

HELLO = ("GET", "/hello", "")
READY_TIMEOUT = 180.0
"""The first start compiles the component (~12 s here, more on a loaded machine); later ones load it."""


@pytest.fixture(scope="module")
def http_image(ctr: Ctr, tmp_path_factory: pytest.TempPathFactory) -> str:
    return python_component_image(ctr, tmp_path_factory, "http_echo", "wasi:http/proxy@0.2.12")


@contextmanager
def serving(ctr: Ctr, ref: str, container_id: str, port: int = 8080, flags: tuple[str, ...] = (),
            probe: tuple[str, str, str] = HELLO) -> Iterator[tuple[ForegroundRun, int]]:
    """A running HTTP container and its pid, once it answers `probe` (GET /hello); killed afterwards."""
    run = ctr.start_container(ref, container_id, flags=flags)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            task = ctr.tasks().get(container_id)
            if task is not None and task.status == "RUNNING":
                if requests_in_netns(task.pid, port, [probe])[0][0] == 200:
                    break
            if time.monotonic() > deadline or run.process.poll() is not None:
                raise AssertionError(f"not serving on port {port}: {run.stdout} {run.stderr}")
            time.sleep(0.2)
        yield run, task.pid
    finally:
        if container_id in ctr.tasks():
            ctr.kill(container_id, "SIGKILL")
        run.kill()


def test_get_and_post_are_answered_while_another_request_runs(ctr: Ctr, http_image: str,
                                                              container_id: str) -> None:
    with serving(ctr, http_image, container_id) as (_, pid):
        slow = start_in_netns(pid, 8080, [("GET", "/slow?ms=20000", "")])
        try:
            answers = requests_in_netns(pid, 8080, [HELLO, ("POST", "/echo", "a body\n" * 1000)])
            still_running = slow.poll() is None
        finally:
            slow.kill()

    assert answers == [(200, "hello from a component\n"), (200, "a body\n" * 1000)]
    assert still_running, "the slow request ended before the others were answered"


def test_100_parallel_requests_each_get_a_fresh_instance(ctr: Ctr, http_image: str, container_id: str) -> None:
    with serving(ctr, http_image, container_id) as (_, pid):
        answers = requests_in_netns(pid, 8080, [("GET", "/count", "")] * 100)

    assert answers == [(200, "1\n")] * 100


def test_port_annotation_moves_the_server(ctr: Ctr, http_image: str, container_id: str) -> None:
    with serving(ctr, http_image, container_id, port=9090,
                 flags=("--annotation", "wasmvisor.io/http-port=9090")) as (_, pid):
        on_default = requests_in_netns(pid, 8080, [HELLO])[0]
        on_9090 = requests_in_netns(pid, 9090, [HELLO])[0]

    assert on_9090 == (200, "hello from a component\n")
    assert on_default[0] == 0, on_default


def test_sigterm_lets_the_request_in_flight_finish_then_exits_143(ctr: Ctr, http_image: str,
                                                                  container_id: str) -> None:
    with serving(ctr, http_image, container_id) as (run, pid):
        slow = start_in_netns(pid, 8080, [("GET", "/slow?ms=1500", "")])
        time.sleep(0.5)  # let the request reach the guest (a request not yet accepted would be refused)
        assert ctr.kill(container_id, "SIGTERM").returncode == 0
        code = run.wait(timeout=60).returncode
        answers = finish(slow)

    assert code == 143
    assert answers == [(200, "slept 1500 ms\n")]


def test_the_log_says_the_wasmtime_cli_serves_it(containerd: PrivateContainerd, ctr: Ctr, http_image: str,
                                                  container_id: str) -> None:
    offset = containerd.log_size()
    with serving(ctr, http_image, container_id):
        pass

    said = re.compile(r"engine wasmtime CLI .*/http_echo\.wasm is a wasi:http/incoming-handler")
    assert said.search(containerd.log_text(offset)), containerd.log_text(offset)[-3000:]




def test_an_outgoing_request_reaches_a_server_in_the_container(ctr: Ctr, http_image: str,
                                                               container_id: str) -> None:
    # The handler's outgoing GET goes to the container's own server (the only one its netns can reach).
    with serving(ctr, http_image, container_id) as (_, pid):
        answers = requests_in_netns(pid, 8080, [("GET", "/fetch?port=8080", "")])

    assert answers == [(200, "200 hello from a component\n")]


def test_a_wasi_0_3_http_handler_is_served(ctr: Ctr, tmp_path_factory: pytest.TempPathFactory,
                                           container_id: str) -> None:
    # tests/guests/http_p3: exports wasi:http/handler@0.3.0 (componentize-py, wasi:http/service@0.3.0).
    ref = python_component_image(ctr, tmp_path_factory, "http_p3", "wasi:http/service@0.3.0")
    with serving(ctr, ref, container_id, probe=("GET", "/abc", "")) as (_, pid):
        answers = requests_in_netns(pid, 8080, [("GET", "/abc", ""), ("GET", "/xyz", "")])

    assert answers == [(200, "hello from WASI 0.3 HTTP: /abc\n"), (200, "hello from WASI 0.3 HTTP: /xyz\n")]


def test_the_worker_and_its_wasmtime_cli_hold_no_capability_and_no_new_privs(ctr: Ctr, http_image: str,
                                                                             container_id: str) -> None:
    """A guest the CLI runs is confined without the filter (docs/internals.md, "Confinement")."""
    with serving(ctr, http_image, container_id) as (_, pid):
        children = [int(c) for tid in os.listdir(f"/proc/{pid}/task")
                    for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        assert len(children) == 1, children  # the wasmtime CLI
        for proc in (pid, children[0]):
            for tid in os.listdir(f"/proc/{proc}/task"):
                text = Path(f"/proc/{proc}/task/{tid}/status").read_text()
                fields = {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
                caps = {key: fields[key] for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
                assert caps == dict.fromkeys(caps, "0000000000000000"), (proc, fields["Name"], caps)
                assert fields["NoNewPrivs"] == "1", (proc, fields["Name"])
