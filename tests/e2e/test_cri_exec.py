"""ExecSync through CRI, as exec probes and `kubectl exec` without a terminal use it: into a native
container (under wasmvisor and, as the baseline, runc) and into a wasm container (a wasm module of the
container's root), its output and exit code, its timeout, and a refused non-wasm exec; streaming Exec (what
`kubectl exec` uses) through containerd's streaming server, with stdin, and on a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.cri.client import ContainerSpec, CriClient, CriError, Pod, PodSpec, pod_running, poll
from tests.cri.node import CriNode
from tests.cri.streaming import StreamError, stream_exec
from tests.e2e.host import processes_titled
from wasmvisor.image import build_oci_tar
from wasmvisor.proto.cri.runtime.v1 import api_pb2 as cri_api

ImageRef = Callable[[str], str]
EXEC_WASM_REF = "docker.io/wasmvisor-test/cri-exec-wasm:latest"


@pytest.fixture(scope="module")
def exec_wasm_image(cri: CriNode, guest_wasm: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A wasm image that sleeps, with more modules in its root to exec."""
    tar = tmp_path_factory.mktemp("cri-exec") / "wasm.tar"
    files: dict[str, bytes] = {f"/{name}.wasm": guest_wasm[name].read_bytes() for name in ("sleep", "hello", "exit42")}
    build_oci_tar(tar, EXEC_WASM_REF, files, entrypoint=["/sleep.wasm"])  # type: ignore[arg-type]
    return cri.import_image(tar, EXEC_WASM_REF)


def running(client: CriClient, pod: Pod, spec: ContainerSpec) -> str:
    container_id = client.run_container(pod, spec)
    client.wait_container(container_id, cri_api.CONTAINER_RUNNING)
    return container_id


@pytest.fixture(params=["wasmvisor", "runc"])
def native_container(request: pytest.FixtureRequest, cri: CriNode, cri_image: ImageRef) -> Iterator[str]:
    """A running busybox container (`sleep 600`) in a pod of the handler given."""
    with pod_running(cri.client, PodSpec(f"exec-native-{request.param}", handler=request.param)) as pod:
        yield running(cri.client, pod, ContainerSpec("sidecar", cri_image("busybox"), command=["/bin/sleep", "600"]))


@pytest.fixture
def wasm_container(cri: CriNode, exec_wasm_image: str) -> Iterator[str]:
    with pod_running(cri.client, PodSpec("exec-wasm")) as pod:
        yield running(cri.client, pod, ContainerSpec("app", exec_wasm_image))


def test_exec_sync_into_a_native_container_gives_output_and_exit_code(cri: CriNode, native_container: str) -> None:
    reply = cri.client.exec_sync(native_container, ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30)
    assert (reply.stdout, reply.stderr, reply.exit_code) == (b"out\n", b"err\n", 3)
    assert cri.client.container_status(native_container).state == cri_api.CONTAINER_RUNNING


def test_exec_sync_past_its_timeout_fails_and_leaves_the_container_running(cri: CriNode, native_container: str) -> None:
    with pytest.raises(CriError) as failure:
        cri.client.exec_sync(native_container, ["/bin/sleep", "61"], timeout=1)
    assert failure.value.code == grpc.StatusCode.DEADLINE_EXCEEDED, failure.value
    assert "timeout 1s exceeded" in failure.value.details, failure.value
    # CRI kills the exec at its timeout.
    poll(lambda: processes_titled("/bin/sleep 61"), lambda pids: not pids, 10, "the timed-out exec to end")
    assert cri.client.container_status(native_container).state == cri_api.CONTAINER_RUNNING


def test_exec_sync_runs_a_wasm_module_of_the_container_root(cri: CriNode, wasm_container: str) -> None:
    reply = cri.client.exec_sync(wasm_container, ["/hello.wasm"], timeout=30)
    assert (reply.stdout, reply.exit_code) == (b"hello from wasmvisor\n", 0)
    assert cri.client.exec_sync(wasm_container, ["/exit42.wasm"], timeout=30).exit_code == 42
    assert cri.client.container_status(wasm_container).state == cri_api.CONTAINER_RUNNING


def test_exec_sync_of_a_wasm_module_past_its_timeout_fails(cri: CriNode, wasm_container: str) -> None:
    with pytest.raises(CriError) as failure:
        cri.client.exec_sync(wasm_container, ["/sleep.wasm"], timeout=1)
    assert failure.value.code == grpc.StatusCode.DEADLINE_EXCEEDED, failure.value
    assert "timeout 1s exceeded" in failure.value.details, failure.value
    assert cri.client.container_status(wasm_container).state == cri_api.CONTAINER_RUNNING


def test_exec_sync_of_a_shell_in_a_wasm_container_is_refused_with_what_was_asked(
    cri: CriNode, wasm_container: str
) -> None:
    with pytest.raises(CriError) as failure:
        cri.client.exec_sync(wasm_container, ["/bin/sh", "-c", "true"], timeout=30)
    assert "/bin/sh" in failure.value.details and "not a wasm module" in failure.value.details, failure.value


SHELL_READS_A_LINE = ["/bin/sh", "-c", "read line; echo got $line; echo to stderr >&2; exit 4"]


def test_streaming_exec_with_stdin_into_a_native_container(cri: CriNode, native_container: str) -> None:
    url = cri.client.exec_url(native_container, SHELL_READS_A_LINE, stdin=True)
    result = stream_exec(url, stdin=b"hi\n")
    assert (result.stdout, result.stderr, result.exit_code) == (b"got hi\n", b"to stderr\n", 4)


def test_streaming_exec_of_a_wasm_module(cri: CriNode, wasm_container: str) -> None:
    result = stream_exec(cri.client.exec_url(wasm_container, ["/exit42.wasm"]))
    assert result.exit_code == 42
    assert stream_exec(cri.client.exec_url(wasm_container, ["/hello.wasm"])).stdout == b"hello from wasmvisor\n"


def test_streaming_exec_on_a_terminal_into_a_native_container(cri: CriNode, native_container: str) -> None:
    url = cri.client.exec_url(native_container, SHELL_READS_A_LINE, tty=True, stdin=True)
    result = stream_exec(url, stdin=b"hi\n")
    # One stream: the terminal's, with its echo of the input and CRLF line ends.
    assert result.exit_code == 4
    assert b"got hi\r\n" in result.stdout and b"to stderr\r\n" in result.stdout, result
    assert result.stderr == b""


def test_streaming_exec_of_a_wasm_module_on_a_terminal_is_refused_by_name(cri: CriNode, wasm_container: str) -> None:
    result = stream_exec(cri.client.exec_url(wasm_container, ["/hello.wasm"], tty=True))
    with pytest.raises(StreamError) as failure:
        _ = result.exit_code
    assert "/hello.wasm is a wasm module, and a wasm guest cannot have a tty" in str(failure.value)
    assert cri.client.container_status(wasm_container).state == cri_api.CONTAINER_RUNNING
