"""The task registry in-process: fake instances, a recording publisher, no process, no containerd."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from pathlib import Path
from typing import Any

import pytest

from wasmvisor import errors
from wasmvisor.cgroups import migration
from wasmvisor.supervisor.tasks import mounts
from wasmvisor.supervisor.tasks import registry as registry_module
from wasmvisor.supervisor.tasks.instance import worker_pid_file
from wasmvisor.supervisor.tasks.registry import TaskRegistry
from wasmvisor.supervisor.tasks.state import Status
from wasmvisor.supervisor.tasks.task import CreateOpts, Task

from .fakes import (
    FakeCgroup,
    FakeInstance,
    FakeInstances,
    RecordingPublisher,
    create_opts,
    new_registry,
    run,
    turns,
    write_bundle,
)

LIFECYCLE = ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]


@pytest.fixture
def instances() -> FakeInstances:
    return FakeInstances()


@pytest.fixture
def events() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def registry(instances: FakeInstances, events: RecordingPublisher) -> TaskRegistry:
    return new_registry(instances, events)


@pytest.fixture
def opts(tmp_path: Path) -> CreateOpts:
    return create_opts(write_bundle(tmp_path / "bundle"))


@pytest.fixture
def cgroups(monkeypatch: pytest.MonkeyPatch) -> list[FakeCgroup]:
    """Every task whose spec has a linux section gets a FakeCgroup (listed here)."""
    made: list[FakeCgroup] = []

    def create(task_id: str, namespace: str, spec_raw: Any, on_oom: Any) -> FakeCgroup | None:
        if not spec_raw or "linux" not in spec_raw:
            return None
        made.append(FakeCgroup(on_oom))
        return made[-1]

    monkeypatch.setattr(registry_module.TaskCgroup, "create", create)
    monkeypatch.setattr(migration, "prime", lambda: None)
    return made


def test_a_task_goes_created_running_stopped_deleted_with_its_events_in_order(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, opts: CreateOpts
) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)
        assert task.state.status is Status.CREATED
        assert await registry.start(task) == task.pid
        assert task.state.status is Status.RUNNING
        instances.made["t"].end(3)
        exit = await registry.wait(task)
        assert (exit.pid, exit.status) == (task.pid, 3)
        assert task.state.status is Status.STOPPED
        assert await registry.delete("t") == exit
        assert registry.tasks() == [] and len(registry) == 0

    run(scenario())
    assert events.topics("t") == LIFECYCLE


def test_create_writes_the_worker_pid_file_and_delete_removes_it(registry: TaskRegistry, opts: CreateOpts) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)
        assert Path(worker_pid_file(opts.bundle)).read_text() == str(task.pid)
        await registry.delete("t")
        assert not Path(worker_pid_file(opts.bundle)).exists()

    run(scenario())


def test_a_worker_dead_before_registration_has_its_exit_after_task_create(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, opts: CreateOpts
) -> None:
    instances.dead_on_arrival = 1

    async def scenario() -> None:
        task = await registry.create("t", opts)
        assert (await registry.wait(task)).status == 1
        assert task.state.status is Status.STOPPED
        await registry.delete("t")

    run(scenario())
    assert events.topics("t") == ["/tasks/create", "/tasks/exit", "/tasks/delete"]


async def end_during_start(registry: TaskRegistry, task: Task, inst: FakeInstance, status: int) -> asyncio.Task[int]:
    """Call Start, and end the guest while Start is in flight (it answers on `inst.release_start()`)."""
    inst.hold_start = True
    start = asyncio.ensure_future(registry.start(task))
    await turns()
    inst.end(status)
    await turns()
    return start


def test_an_exit_while_start_is_in_flight_is_published_after_task_start(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, opts: CreateOpts
) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)
        start = await end_during_start(registry, task, instances.made["t"], 0)  # it ran and ended at once
        assert events.topics("t") == ["/tasks/create"], "the exit waits for Start"
        assert task.state.status is Status.STARTING and task.exit is None
        instances.made["t"].release_start()
        assert await start == task.pid
        assert (await registry.wait(task)).status == 0
        assert task.state.status is Status.STOPPED

    run(scenario())
    assert events.topics("t") == ["/tasks/create", "/tasks/start", "/tasks/exit"]


def test_a_start_that_fails_because_the_guest_ended_publishes_its_exit_and_no_start(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, opts: CreateOpts
) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)
        instances.made["t"].start_error = errors.FailedPrecondition("task t exited with status 1 while starting")
        start = await end_during_start(registry, task, instances.made["t"], 1)
        instances.made["t"].release_start()
        with pytest.raises(errors.FailedPrecondition, match="while starting"):
            await start
        assert (await registry.wait(task)).status == 1
        assert task.state.status is Status.STOPPED

    run(scenario())
    assert events.topics("t") == ["/tasks/create", "/tasks/exit"]


def test_an_unexpected_start_failure_is_internal(registry: TaskRegistry, instances: FakeInstances,
                                                 opts: CreateOpts) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)

        async def broken() -> int:
            raise OSError("pipe closed")

        instances.made["t"].start = broken  # type: ignore[method-assign]
        with pytest.raises(errors.Internal, match="start of task t failed: pipe closed"):
            await registry.start(task)

    run(scenario())


def test_wait_answers_only_once_the_exit_is_recorded_and_published(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, opts: CreateOpts
) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)
        await registry.start(task)
        waiters = [asyncio.ensure_future(registry.wait(task)) for _ in range(2)]
        await turns()
        assert not any(w.done() for w in waiters)
        instances.made["t"].kill(signal.SIGTERM)
        for waiter in waiters:
            assert (await waiter).status == 128 + signal.SIGTERM
            assert task.state.status is Status.STOPPED
            assert events.topics("t")[-1] == "/tasks/exit"

    run(scenario())


def test_a_cancelled_wait_leaves_the_others_waiting(registry: TaskRegistry, instances: FakeInstances,
                                                    opts: CreateOpts) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)
        gone = asyncio.ensure_future(registry.wait(task))
        stays = asyncio.ensure_future(registry.wait(task))
        await turns()
        gone.cancel()  # a client that hung up
        await turns()
        instances.made["t"].end(0)
        assert (await stays).status == 0

    run(scenario())


def test_a_second_create_of_an_id_is_already_exists_even_while_the_first_is_in_flight(
    registry: TaskRegistry, opts: CreateOpts
) -> None:
    async def scenario() -> None:
        first = asyncio.ensure_future(registry.create("t", opts))
        await asyncio.sleep(0)  # the first Create has reserved its id
        with pytest.raises(errors.AlreadyExists, match="task t: already exists"):
            await registry.create("t", opts)
        await first
        with pytest.raises(errors.AlreadyExists, match="task t: already exists"):
            await registry.create("t", opts)

    run(scenario())


def test_an_unknown_task_is_not_found(registry: TaskRegistry) -> None:
    with pytest.raises(errors.NotFound, match="task nope: not found"):
        registry.get("nope")

    async def scenario() -> None:
        with pytest.raises(errors.NotFound, match="task nope: not found"):
            await registry.delete("nope")

    run(scenario())


def test_an_instance_that_cannot_be_made_leaves_nothing_behind(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, opts: CreateOpts
) -> None:
    instances.error = errors.InvalidArgument("module /app.wasm: not a wasm file")

    async def scenario() -> None:
        with pytest.raises(errors.InvalidArgument, match="not a wasm file"):
            await registry.create("t", opts)

    run(scenario())
    assert len(registry) == 0 and events.events == []
    assert not Path(worker_pid_file(opts.bundle)).exists()


def test_start_twice_and_delete_of_a_running_task_are_invalid_transitions(
    registry: TaskRegistry, opts: CreateOpts
) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)
        await registry.start(task)
        with pytest.raises(errors.FailedPrecondition, match="invalid state transition: RUNNING => STARTING"):
            await registry.start(task)
        with pytest.raises(errors.FailedPrecondition, match="invalid state transition: RUNNING => DELETING"):
            await registry.delete("t")

    run(scenario())


def test_a_created_task_deleted_without_start_ends_its_instance_without_a_task_exit(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, opts: CreateOpts
) -> None:
    async def scenario() -> None:
        await registry.create("t", opts)
        exit = await registry.delete("t")
        assert exit.status == 128 + signal.SIGKILL
        assert instances.made["t"].deletes == 1

    run(scenario())
    assert events.topics("t") == ["/tasks/create", "/tasks/delete"]


def test_kill_signals_the_instance_and_its_exit_follows(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, opts: CreateOpts
) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)
        await registry.start(task)
        await registry.kill(task, signal.SIGUSR1)
        assert task.state.status is Status.RUNNING
        await registry.kill(task, signal.SIGKILL)
        assert (await registry.wait(task)).status == 128 + signal.SIGKILL
        assert instances.made["t"].signals == [signal.SIGUSR1, signal.SIGKILL]
        with pytest.raises(errors.NotFound, match="process already finished"):
            await registry.kill(task, signal.SIGKILL)

    run(scenario())
    assert events.topics("t") == ["/tasks/create", "/tasks/start", "/tasks/exit"]


@pytest.mark.parametrize("signo", [0, -1, signal.NSIG])
def test_kill_with_an_invalid_signal_is_invalid_argument(registry: TaskRegistry, opts: CreateOpts,
                                                         signo: int) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)
        with pytest.raises(errors.InvalidArgument, match=f"kill t: invalid signal {signo}"):
            await registry.kill(task, signo)

    run(scenario())


def test_pause_resume_and_update_need_a_cgroup(registry: TaskRegistry, opts: CreateOpts) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)
        await registry.start(task)
        with pytest.raises(errors.Unimplemented, match="pause t: the task has no cgroup"):
            await registry.pause(task)
        with pytest.raises(errors.Unimplemented, match="resume t: the task has no cgroup"):
            await registry.resume(task)
        with pytest.raises(errors.Unimplemented, match="update t: the task has no cgroup"):
            registry.update(task, None)
        assert task.state.status is Status.RUNNING

    run(scenario())


def test_pause_and_resume_freeze_and_thaw_the_cgroup(
    registry: TaskRegistry, events: RecordingPublisher, cgroups: list[FakeCgroup], tmp_path: Path
) -> None:
    opts = create_opts(write_bundle(tmp_path / "b", linux=True))

    async def scenario() -> None:
        task = await registry.create("t", opts)
        [cgroup] = cgroups
        assert cgroup.added == [task.pid], "the worker joined its cgroup as soon as it was forked"
        with pytest.raises(errors.FailedPrecondition, match="CREATED => PAUSED"):
            await registry.pause(task)
        await registry.start(task)
        with pytest.raises(errors.FailedPrecondition, match="RUNNING => RUNNING"):
            await registry.resume(task)
        await registry.pause(task)
        assert task.state.status is Status.PAUSED and cgroup.frozen
        await registry.resume(task)
        assert task.state.status is Status.RUNNING and not cgroup.frozen
        await registry.pause(task)
        await registry.kill(task, signal.SIGKILL)  # a frozen cgroup holds SIGKILL: thawed after it
        await registry.wait(task)
        await turns()
        assert not cgroup.frozen
        assert task.state.status is Status.STOPPED
        await registry.delete("t")
        assert cgroup.closed == 1

    run(scenario())
    assert events.topics("t") == ["/tasks/create", "/tasks/start", "/tasks/paused", "/tasks/resumed",
                                  "/tasks/paused", "/tasks/exit", "/tasks/delete"]


def test_an_oom_kill_is_published_before_the_exit_it_caused(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, cgroups: list[FakeCgroup],
    tmp_path: Path,
) -> None:
    opts = create_opts(write_bundle(tmp_path / "b", linux=True))

    async def scenario() -> None:
        task = await registry.create("t", opts)
        await registry.start(task)
        cgroups[0].oom_kill()  # the kernel's notification has not come yet
        instances.made["t"].end(128 + signal.SIGKILL)
        await registry.wait(task)

    run(scenario())
    assert events.topics("t") == ["/tasks/create", "/tasks/start", "/tasks/oom", "/tasks/exit"]


def test_tasks_and_pids_show_only_what_is_alive(registry: TaskRegistry, instances: FakeInstances,
                                                tmp_path: Path) -> None:
    async def scenario() -> None:
        a = await registry.create("a", create_opts(write_bundle(tmp_path / "a")))
        b = await registry.create("b", create_opts(write_bundle(tmp_path / "b")))
        assert registry.pids(a) == [a.pid]
        instances.made["b"].end(0)
        await registry.wait(b)
        assert registry.pids(b) == []
        assert registry.tasks() == [a, b]
        assert registry.tasks(all=False) == [a]
        assert len(registry) == 2

    run(scenario())


@pytest.fixture
def flaky_unmount(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Rootfs mounts that do nothing, and an unmount that fails the first time (then succeeds)."""
    unmounted: list[str] = []

    def unmount_all(target: str) -> None:
        unmounted.append(target)
        if len(unmounted) == 1:
            raise errors.Internal(f"unmount {target}: Device or resource busy")

    monkeypatch.setattr(mounts, "mount_all", lambda specs, target: None)
    monkeypatch.setattr(mounts, "unmount_all", unmount_all)
    return unmounted


def with_rootfs(opts: CreateOpts) -> CreateOpts:
    return dataclasses.replace(opts, rootfs=[mounts.MountSpec(type="bind", source="/x", target="", options=())])


@pytest.mark.parametrize("started", [True, False], ids=["stopped", "created"])
def test_a_delete_that_fails_can_be_retried_and_the_registry_empties(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, opts: CreateOpts,
    flaky_unmount: list[str], started: bool,
) -> None:
    async def scenario() -> None:
        task = await registry.create("t", with_rootfs(opts))
        if started:
            await registry.start(task)
            instances.made["t"].end(0)
            await registry.wait(task)
        with pytest.raises(errors.Internal, match="Device or resource busy"):
            await registry.delete("t")
        assert task.state.status is Status.STOPPED, "the worker is gone: the task has stopped"
        assert len(registry) == 1
        exit = await registry.delete("t")
        assert exit == task.exit
        assert len(registry) == 0 and flaky_unmount == [task.rootfs, task.rootfs]

    run(scenario())
    if started:
        assert events.topics("t") == LIFECYCLE
    else:
        assert events.topics("t") == ["/tasks/create", "/tasks/delete"]


def test_a_delete_that_fails_before_the_guest_ended_leaves_the_task_created(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, opts: CreateOpts
) -> None:
    async def scenario() -> None:
        task = await registry.create("t", opts)
        inst = instances.made["t"]

        async def refuse() -> None:
            raise OSError("cannot close the worker's pipe")

        inst.delete = refuse  # type: ignore[method-assign]
        with pytest.raises(OSError, match="cannot close"):
            await registry.delete("t")
        assert task.state.status is Status.CREATED
        assert await registry.start(task) == task.pid

    run(scenario())
    assert events.topics("t") == ["/tasks/create", "/tasks/start"]


def test_a_create_that_fails_at_its_last_step_releases_the_worker_mounts_and_cgroup(
    registry: TaskRegistry, instances: FakeInstances, events: RecordingPublisher, cgroups: list[FakeCgroup],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    unmounted: list[str] = []
    monkeypatch.setattr(mounts, "mount_all", lambda specs, target: None)
    monkeypatch.setattr(mounts, "unmount_all", unmounted.append)
    opts = with_rootfs(create_opts(write_bundle(tmp_path / "b", linux=True)))
    Path(worker_pid_file(opts.bundle)).mkdir()  # init.pid cannot be written (a folder is in its place)

    async def scenario() -> None:
        with pytest.raises(IsADirectoryError):
            await registry.create("t", opts)

    run(scenario())
    inst = instances.made["t"]
    assert inst.deletes == 1 and inst.exit is not None, "the worker was ended, not leaked"
    assert unmounted == [str(tmp_path / "b" / "rootfs")]
    assert cgroups[0].destroyed == 1
    assert len(registry) == 0 and events.events == []


def test_a_failed_create_reports_its_own_error_when_its_clean_up_fails_too(
    registry: TaskRegistry, instances: FakeInstances, monkeypatch: pytest.MonkeyPatch, opts: CreateOpts,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unmount_all(target: str) -> None:
        raise errors.Internal(f"unmount {target}: still mounted after 64 passes")

    monkeypatch.setattr(mounts, "mount_all", lambda specs, target: None)
    monkeypatch.setattr(mounts, "unmount_all", unmount_all)
    instances.error = errors.InvalidArgument("module /app.wasm: not a wasm file")

    async def scenario() -> None:
        with pytest.raises(errors.InvalidArgument, match="not a wasm file"):
            await registry.create("t", with_rootfs(opts))

    run(scenario())
    assert "create t failed, and its rootfs stays mounted: unmount" in caplog.text
    assert len(registry) == 0
