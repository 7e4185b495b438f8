"""Each containerd line speaks to the shim the way `start` told it to: 1.6 and 1.7 ttrpc with
containerd.task.v2.Task (plain address), 2.1 ttrpc with containerd.task.v3.Task (JSON bootstrap
version 3, WASMVISOR_PROTOCOL=ttrpc-v3).

containerd 2.1.x cannot drive a gRPC shim: it creates its client with grpc.NewClient (state Idle until
the first call) and a goroutine that treats "not Ready" followed by Idle as a closed connection, so it
logs "shim disconnected" right after "connecting to shim", runs the shim's `delete` and fails the
Create (core/runtime/v2/shim.go, grpcDialContext); a race, which 5 runs of 8 lost. So on 2.1.x
WASMVISOR_PROTOCOL=grpc is answered with ttrpc and bootstrap version 3 (the same Task v3 API) and one
warning naming the bug in the task's log: runs then succeed every time.
tests/integration/test_grpc_transport.py proves wasmvisor's gRPC side without containerd.

Each combination gets its own private containerd (the protocol is chosen by the environment containerd
passes to its shims), so this module does not use the session's `containerd` fixture and runs once
per combination whose containerd line WASMVISOR_CONTAINERD selects.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import SESSION_TOKEN, ImageTarball, shim_dir
from tests.e2e.containerd import PrivateContainerd, private_containerd
from tests.e2e.ctr import Ctr
from tests.e2e.versions import binaries_for, selected_lines

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Combination:
    line: str
    protocol_env: str
    service: str
    transport: str

    @property
    def id(self) -> str:
        return f"{self.line}-{self.protocol_env or 'plain'}-{self.transport}-{self.service.split('.')[2]}"


GRPC_ON_2_1 = Combination("2.1", "grpc", "containerd.task.v3.Task", "ttrpc")
"""Asked for gRPC, served over ttrpc: containerd 2.1.x drops gRPC shims (module docstring)."""
COMBINATIONS = [
    Combination("1.6", "", "containerd.task.v2.Task", "ttrpc"),
    Combination("1.7", "", "containerd.task.v2.Task", "ttrpc"),
    Combination("2.1", "ttrpc-v3", "containerd.task.v3.Task", "ttrpc"),
    GRPC_ON_2_1,
]


@dataclass
class Setup:
    combination: Combination
    containerd: PrivateContainerd
    ctr: Ctr
    images: dict[str, str]


@pytest.fixture(scope="module", params=COMBINATIONS, ids=lambda c: c.id)
def setup(request: pytest.FixtureRequest, images: dict[str, ImageTarball]) -> Iterator[Setup]:
    combination: Combination = request.param
    if combination.line not in selected_lines():
        pytest.skip(f"containerd {combination.line} is not selected (WASMVISOR_CONTAINERD)")
    if os.geteuid() != 0:
        pytest.skip("e2e tests need root")
    env = {"WASMVISOR_PROTOCOL": combination.protocol_env}
    keep = os.environ.get("WASMVISOR_KEEP_CONTAINERD") == "1"
    binaries = binaries_for(combination.line)
    with private_containerd(
        shim_dirs=[shim_dir()], binaries=binaries, line=combination.line, extra_env=env, keep=keep
    ) as instance:
        client = instance.ctr(f"wv{SESSION_TOKEN}-proto-{combination.line.replace('.', '')}{combination.transport}")
        refs = {}
        for name in ("hello", "exit42"):
            client.import_image(images[name].tar)
            refs[name] = images[name].ref
        yield Setup(combination, instance, client, refs)
        client.remove_all()


def _eventually(check: Callable[[], str], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (problem := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not problem, problem


def _assert_served_as(setup: Setup, container_id: str, offset: int) -> None:
    """The supervisor's own log lines (pod=<id>) name the transport and the Task service it served."""
    want_serving = f"over {setup.combination.transport} "
    want_call = f"{setup.combination.transport}: {setup.combination.service}/Create"

    def missing() -> str:
        lines = [line for line in setup.containerd.log_text(offset).splitlines() if f"pod={container_id}" in line]
        found_serving = any(want_serving in line for line in lines)
        found_call = any(want_call in line for line in lines)
        if found_serving and found_call:
            return ""
        tail = "\n".join(lines[-20:])
        return f"want {want_serving!r} and {want_call!r} in the shim lines of {setup.containerd.log_path}:\n{tail}"

    _eventually(missing)


@pytest.mark.parametrize(
    ("name", "returncode", "stdout"),
    [("hello", 0, "hello from wasmvisor\n"), ("exit42", 42, "")],
    ids=["hello", "exit42"],
)
def test_guest_output_and_exit_code_reach_ctr_over_the_chosen_protocol(
    setup: Setup, name: str, returncode: int, stdout: str
) -> None:
    container_id = f"{name}-{setup.combination.id}"
    offset = setup.containerd.log_size()

    result = setup.ctr.run_container(setup.images[name], container_id)

    assert (result.returncode, result.stdout, result.stderr) == (returncode, stdout, ""), result.output
    _assert_served_as(setup, container_id, offset)


def test_bootstrap_json_on_2x_records_the_protocol(setup: Setup) -> None:
    """containerd 2.x writes what it understood from `start` into the bundle's bootstrap.json."""
    if not setup.combination.line.startswith("2."):
        pytest.skip("bootstrap.json is written by containerd 2.x only")
    container_id = f"boot-{setup.combination.id}"

    # Detached and without --rm, the task (and so its bundle) stays until the module's cleanup.
    created = setup.ctr.run(*setup.ctr.run_args(setup.images["hello"], container_id, rm=False, flags=["-d"]))

    assert created.returncode == 0, created.stderr
    bundle = setup.containerd.bundle_dir(setup.ctr.namespace, container_id)
    bootstrap = json.loads((bundle / "bootstrap.json").read_text())
    assert (bootstrap.get("version"), bootstrap.get("protocol")) == (3, setup.combination.transport), bootstrap


def test_grpc_on_2_1_runs_every_time_over_ttrpc_v3_with_one_warning_naming_the_bug(setup: Setup) -> None:
    if setup.combination != GRPC_ON_2_1:
        pytest.skip("only WASMVISOR_PROTOCOL=grpc on containerd 2.1 is answered with ttrpc instead")
    offset = setup.containerd.log_size()
    ids = [f"grpc21-{n}" for n in range(8)]
    for container_id in ids:
        result = setup.ctr.run_container(setup.images["hello"], container_id)
        assert (result.returncode, result.stdout, result.stderr) == (0, "hello from wasmvisor\n", ""), result.output

    log = setup.containerd.log_text(offset)
    for container_id in ids:
        warnings = [line for line in log.splitlines() if "level=warning" in line
                    and f"instance={container_id}" in line and "WASMVISOR_PROTOCOL=grpc" in line]
        assert len(warnings) == 1, log
        assert "containerd 2.1.9: serving ttrpc (Task v3) instead" in warnings[0]
        assert "still idle gRPC connection for a closed one" in warnings[0]
