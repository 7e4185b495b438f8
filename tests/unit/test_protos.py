"""The generated protobuf code is what scripts/gen_protos.py makes from the .proto files today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--out", str(tmp_path)], check=True)
    fresh = _generated(tmp_path)
    committed = _generated(REPO)
    assert fresh == committed, "run scripts/gen_protos.py: the set of generated files changed"
    stale = [str(rel) for rel in fresh if (tmp_path / rel).read_bytes() != (REPO / rel).read_bytes()]
    assert not stale, f"run scripts/gen_protos.py: stale generated code in {stale}"


def _generated(root: Path) -> list[Path]:
    folder = root / "wasmvisor" / "proto"
    return sorted(p.relative_to(root) for p in folder.rglob("*") if p.suffix in (".py", ".pyi"))


def test_task_service_has_all_17_methods_under_v2_and_v3() -> None:
    from wasmvisor.proto.containerd.task.v2 import shim_pb2 as v2
    from wasmvisor.proto.containerd.task.v3 import shim_pb2 as v3

    names = {m.name for m in v2.DESCRIPTOR.services_by_name["Task"].methods}
    assert len(names) == 17
    assert names == {m.name for m in v3.DESCRIPTOR.services_by_name["Task"].methods}
    assert v2.DESCRIPTOR.services_by_name["Task"].full_name == "containerd.task.v2.Task"
    assert v3.DESCRIPTOR.services_by_name["Task"].full_name == "containerd.task.v3.Task"


def test_event_type_urls_are_the_bare_names_containerd_1_6_decodes() -> None:
    from wasmvisor.proto.containerd.events import task_pb2 as ev

    assert ev.TaskExit.DESCRIPTOR.full_name == "containerd.events.TaskExit"
    assert ev.TaskOOM.DESCRIPTOR.full_name == "containerd.events.TaskOOM"
