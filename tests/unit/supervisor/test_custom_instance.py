"""A shim's own Instance class ("module:Class", shim_main's `instance`): the supervisor loads it, drives it
with the same registry, events and exit bookkeeping as its workers, and starts no zygote for it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wasmvisor import errors
from wasmvisor.supervisor.daemon import instance_factory
from wasmvisor.supervisor.shim.template_server import PRELOAD, preload
from wasmvisor.supervisor.tasks.instance import Instance, instance_class
from wasmvisor.supervisor.tasks.registry import TaskRegistry

from .tasks.fakes import FakeInstance, NoLayerReader, RecordingPublisher, create_opts, run, write_bundle

FAKE = "tests.unit.supervisor.tasks.fakes:FakeInstance"


class HalfInstance(Instance):
    """Leaves kill, delete and wait unwritten."""

    @classmethod
    async def new(cls, id: str, cfg: object, on_forked: object = None) -> HalfInstance:  # type: ignore[override]
        raise NotImplementedError

    async def start(self) -> int:
        return 0


def test_instance_class_loads_an_instance_named_module_colon_class() -> None:
    assert instance_class(FAKE) is FakeInstance
    with pytest.raises(errors.Internal, match="want module:Class"):
        instance_class("tests.unit.supervisor.tasks.fakes")
    with pytest.raises(errors.Internal, match="not an Instance"):
        instance_class("tests.unit.supervisor.tasks.fakes:RecordingPublisher")
    with pytest.raises(errors.Internal, match="cannot load"):
        instance_class("no_such_module_here:Thing")
    with pytest.raises(errors.Internal, match="HalfInstance does not implement delete, kill, wait"):
        instance_class(f"{__name__}:HalfInstance")


def test_the_worker_factory_needs_a_zygote_and_a_custom_one_does_not() -> None:
    assert instance_factory(FAKE, None) == FakeInstance.new
    with pytest.raises(errors.Internal, match="no zygote"):
        instance_factory(None, None)


def test_the_registry_drives_a_custom_instance_through_the_whole_lifecycle(tmp_path: Path) -> None:
    events = RecordingPublisher()
    registry = TaskRegistry("ns", "pod", new_instance=instance_factory(FAKE, None), events=events,
                            layers=NoLayerReader(), engine="unused:Engine", log_level="debug")

    async def scenario() -> tuple[int, int]:
        task = await registry.create("t1", create_opts(write_bundle(tmp_path / "b")))
        await registry.start(task)
        await registry.kill(task, signal.SIGTERM)
        exit = await registry.wait(task)
        deleted = await registry.delete("t1")
        return exit.status, deleted.status

    assert run(scenario()) == (143, 143)
    assert events.topics("t1") == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]


def test_the_template_preloads_the_instance_module_instead_of_the_zygote() -> None:
    assert preload("x.engine:E", FAKE) == [*PRELOAD, "tests.unit.supervisor.tasks.fakes"]
    assert "wasmtime" in preload("wasmvisor.engines.wasmtime_engine:WasmtimeEngine")


def test_a_supervisor_with_its_own_instance_starts_no_zygote(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from wasmvisor.supervisor.shim.cliargs import parse_args
        from wasmvisor.supervisor import daemon_setup
        from wasmvisor.supervisor.config import Config

        args = parse_args(["-namespace", "ns", "-address", "/x", "-id", "own1", "serve"])
        prepared = daemon_setup.prepare(args, Config(), "x.engine:E", instance={FAKE!r})
        print(prepared.launcher, prepared.group, "wasmtime" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "own1", "False"]
