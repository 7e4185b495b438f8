"""containerd 2.x with its own tracing on (the OTLP variables in its environment, which its shims inherit):
wasmvisor's spans join containerd's traces through the ttrpc `traceparent`, received by our own OTLP
receiver on 127.0.0.1. 1.6 and 1.7 send no trace context: these tests run on the 2.x lines only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ImageTarball, shim_dir
from tests.e2e.containerd import PrivateContainerd, private_containerd
from tests.e2e.ctr import Ctr
from tests.e2e.test_wasm_layers import variant
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from wasmvisor.image import Layer
from wasmvisor.image_layouts import build_wasm_image

TASK = "containerd.task.v2.Task"
OURS = "wasmvisor-shim"


@pytest.fixture(scope="module")
def traced(
    containerd: PrivateContainerd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Ctr, OtlpReceiver]]:
    """A private containerd exporting its traces to our receiver (and so do its shims), with a module
    cache of its own."""
    if not containerd.line.startswith("2."):
        pytest.skip(f"containerd {containerd.line} passes no trace context to its shims")
    cache = tmp_path_factory.mktemp("traced-cache")
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
               "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_TRACES_SAMPLER": "always_on",
               "WASMVISOR_CACHE_DIR": str(cache)}
        with private_containerd(shim_dirs=[shim_dir()], binaries=containerd.binaries, line=containerd.line,
                                extra_env=env) as instance:
            ctr = Ctr(instance, "wvtrace")
            yield ctr, receiver
            ctr.remove_all()


class TaskSpans:
    """The spans received for one task, once all of `names` are in."""

    def __init__(self, receiver: OtlpReceiver, names: set[str], task_id: str) -> None:
        self.spans = receiver.wait_for(names)
        self.task_id = task_id

    def one(self, name: str, service: str = OURS) -> ReceivedSpan:
        """The span `name` of `service` for the task (spans without a task id count for every task)."""
        found = [s for s in self.spans[name] if s.resource.get("service.name") == service
                 and s.attributes.get("wasmvisor.task.id", self.task_id) == self.task_id]
        assert found, f"no span {name} of {service}"
        return found[-1]


def test_the_shims_spans_join_containerds_trace(
    traced: tuple[Ctr, OtlpReceiver], images: dict[str, ImageTarball], new_container_id: Callable[[str], str],
) -> None:
    ctr, receiver = traced
    ctr.import_image(images["hello"].tar)
    task_id = new_container_id("")
    done = ctr.run_container(images["hello"].ref, task_id)
    assert done.returncode == 0, done.output

    one = TaskSpans(receiver, {f"{TASK}/Create", f"{TASK}/Start", "worker/fork", "worker/run"}, task_id).one
    for method in ("Create", "Start"):
        ours, theirs = one(f"{TASK}/{method}"), one(f"{TASK}/{method}", "containerd")  # its ttrpc client span
        assert (ours.trace_id, ours.parent_id) == (theirs.trace_id, theirs.span_id), method
        assert ours.attributes["wasmvisor.namespace"] == "wvtrace"
    assert one("worker/fork").parent_id == one(f"{TASK}/Create").span_id
    assert one("worker/run").parent_id == one(f"{TASK}/Start").span_id


def test_a_wasm_layer_read_and_its_precompile_upload_are_spans_under_create(
    traced: tuple[Ctr, OtlpReceiver], guest_wasm: dict[str, Path], tmp_path: Path,
    new_container_id: Callable[[str], str],
) -> None:
    ctr, receiver = traced
    task_id = new_container_id("")
    module = variant(guest_wasm["hello"].read_bytes(), task_id)  # a digest no run has precompiled yet
    ref = f"docker.io/wasmvisor-test/traced-{task_id}:latest"
    build_wasm_image(tmp_path / "layer.tar", ref, module, layout="wasm-layer", module_name="hello.wasm")
    ctr.import_image(tmp_path / "layer.tar")
    done = ctr.run_container(ref, task_id)
    assert done.returncode == 0, done.output

    one = TaskSpans(receiver, {"containerd/read-wasm-layer", "containerd/upload-precompiled"}, task_id).one
    create, digest = one(f"{TASK}/Create"), Layer.wasm(module).digest
    assert create.attributes["wasmvisor.module.digest"] == digest
    read = one("containerd/read-wasm-layer")
    assert (read.parent_id, read.attributes["wasmvisor.module.digest"]) == (create.span_id, digest)
    upload = [s for s in receiver.spans if s.name == "containerd/upload-precompiled"
              and s.attributes.get("wasmvisor.module.digest") == digest]
    assert [s.parent_id for s in upload] == [create.span_id]
