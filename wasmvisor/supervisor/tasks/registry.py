"""The task registry, in the shape of containerd's own runtime interface (PlatformRuntime).

`create`, `get`, `tasks` and `delete` manage Tasks; each Task holds its Instance and its state
machine. The registry is handed what it drives (as runwasi's `Local<Instance, EventSender>`): an
InstanceFactory (an Instance class's `new`), a Publisher of the task events and a LayerReader
(containerd's API, for OCI wasm layers); daemon.py builds them. It publishes the task events, and
each task's exit watcher (one asyncio task that awaits `instance.wait()`) is the one path by
which an exit becomes state, TaskExit and Wait replies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Mapping
from typing import Any, Protocol

from wasmvisor import errors, logs
from wasmvisor.cgroups import migration
from wasmvisor.ipc.messages import LayerFile
from wasmvisor.linux import pid_record
from wasmvisor.linux.files import write_atomic
from wasmvisor.spec import Spec
from wasmvisor.supervisor.tasks import events as task_events
from wasmvisor.supervisor.tasks import mounts, termination
from wasmvisor.supervisor.tasks.cgroup import TaskCgroup
from wasmvisor.supervisor.tasks.execs import ExecProcess, TaskExecs
from wasmvisor.supervisor.tasks.instance import (
    Exit,
    Instance,
    InstanceConfig,
    InstanceFactory,
    TaskIO,
    worker_pid_file,
)
from wasmvisor.supervisor.tasks.task import CreateOpts, Task

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """Where task events go (tasks.publisher.EventPublisher): queued in order, never blocking."""

    def publish(self, topic: str, event: Any) -> None: ...


class Layers(Protocol):
    """A container's OCI wasm layers (containerd.wasm_layers.WasmLayers)."""

    @property
    def files(self) -> tuple[LayerFile, ...]: ...

    def after_ready(self) -> None:
        """The worker is ready: store what it compiled, in the background."""


class LayerReader(Protocol):
    """Reads a container's wasm layers from containerd (containerd.wasm_layers.WasmLayerReader)."""

    async def for_container(self, task_id: str, bundle: str, rootfs: str, spec: Spec | None) -> Layers: ...


class TaskRegistry:
    """All tasks of one supervisor (one pod group), by id."""

    def __init__(self, namespace: str, group: str, *, new_instance: InstanceFactory, events: Publisher,
                 layers: LayerReader, engine: str, log_level: str) -> None:
        self.namespace = namespace
        self.group = group
        self.new_instance = new_instance
        self.events = events
        self.layers = layers
        self.engine = engine
        self.log_level = log_level
        self._tasks: dict[str, Task] = {}
        self._reserved: set[str] = set()
        self._execs: dict[str, TaskExecs] = {}
        """Each task's exec processes."""
        self._pending: set[asyncio.Task[Any]] = set()

    def get(self, task_id: str) -> Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise errors.NotFound(f"task {task_id}: not found")
        return task

    def tasks(self, all: bool = True) -> list[Task]:
        return [t for t in self._tasks.values() if all or t.state.alive]

    def __len__(self) -> int:
        return len(self._tasks) + len(self._reserved)

    async def create(self, task_id: str, opts: CreateOpts) -> Task:
        if task_id in self._tasks or task_id in self._reserved:
            raise errors.AlreadyExists(f"task {task_id}: already exists")
        self._reserved.add(task_id)
        try:
            task = await self._create(task_id, opts)
        except errors.ShimError as exc:
            termination.write_reason(opts.spec.raw if opts.spec else None, f"create failed: {exc.message}", task_id)
            raise
        finally:
            self._reserved.discard(task_id)
        self._tasks[task_id] = task
        self._execs[task_id] = TaskExecs(task_id, self.events)
        self.events.publish("/tasks/create", task_events.create(task))
        # Watched from now on only: a worker that died before its task was registered has its
        # TaskExit after the TaskCreate.
        self._background(self._watch_exit(task), f"exit watch of {task_id}")
        return task

    async def _create(self, task_id: str, opts: CreateOpts) -> Task:
        """Everything Create makes, as one clean-up scope: when any step fails (up to the pid file),
        the worker is ended and the mounts and the cgroup are removed before the error is raised."""
        rootfs = os.path.join(opts.bundle, "rootfs")
        cgroup: TaskCgroup | None = None
        mounted = False
        instance: Instance | None = None
        try:
            # Before the worker exists, so that a cgroupsPath that cannot be made fails Create early;
            # the worker joins it as soon as it is forked, before it loads anything.
            # Off the loop, as the mounts below: cgroupfs writes wait on the kernel's cgroup mutex and
            # a mount on its filesystem, while Kill, Wait and State of other tasks must answer.
            cgroup = await asyncio.to_thread(
                TaskCgroup.create, task_id, self.namespace, opts.spec.raw if opts.spec else None,
                on_oom=lambda: self.events.publish("/tasks/oom", task_events.oom(task_id)))
            if cgroup is not None:
                cgroup.watch_oom()  # on the loop: its reader is the loop's
                # Made, not joined yet: the kernel's wait for that join now overlaps the rootfs mount
                # and the fork (migration.py). Not sooner: the no-op join holds the cgroup mutex that
                # the mkdir above needs.
                migration.prime()
            if opts.rootfs:
                await asyncio.to_thread(mounts.mount_all, opts.rootfs, rootfs)  # all or nothing
                mounted = True
            layers = await self.layers.for_container(task_id, opts.bundle, rootfs, opts.spec)
            cfg = InstanceConfig(
                # No rootfs mounts (`ctr run --config`): the spec's root.path is the root, as for runc.
                namespace=self.namespace, bundle=opts.bundle, rootfs=rootfs if opts.rootfs else "",
                stdin=opts.io.stdin, stdout=opts.io.stdout, stderr=opts.io.stderr,
                terminal=opts.io.terminal, engine=self.engine, log_level=self.log_level, pod=self.group,
                wasm_layers=layers.files,
            )
            instance = await self.new_instance(task_id, cfg, cgroup.add if cgroup else None)
            _write_pid_file(opts.bundle, instance.pid)
            layers.after_ready()  # stores the compiled form of new wasm layers, in the background
            return Task(id=task_id, opts=opts, rootfs=rootfs, instance=instance, cgroup=cgroup)
        except BaseException:
            await _undo_create(task_id, instance, cgroup, rootfs if mounted else "")
            raise

    async def start(self, task: Task) -> int:
        task.state.start()
        task.start_returned.clear()
        try:
            pid = await task.instance.start()
            task.state.started()
            self.events.publish("/tasks/start", task_events.start(task))
            return pid
        except errors.ShimError:
            raise
        except Exception as exc:
            raise errors.Internal(f"start of task {task.id} failed: {exc}") from exc
        finally:
            task.start_returned.set()

    async def _watch_exit(self, task: Task) -> None:
        """The task's one exit path (runwasi's task_start): its instance's end becomes state,
        TaskExit and the answer to every Wait."""
        exit = await task.instance.wait()
        # An exit while Start is in flight waits for Start, so that TaskStart goes first (as
        # runc's shim holds early exits back until Start has returned).
        await task.start_returned.wait()
        self._record_exit(task, exit)

    def _record_exit(self, task: Task, exit: Exit) -> None:
        task.exit = exit
        try:
            if task.state.alive:  # else Delete ended it: TaskDelete reports the exit
                task.state.stop()
                if task.cgroup is not None:
                    task.cgroup.check_oom()  # TaskOOM goes before the TaskExit of the kill it caused
                log.info("task %s exited with status %d", task.id, exit.status,
                         extra={logs.FIELDS_ATTR: {"instance": task.id}})
                self._write_termination_message(task, exit)  # before TaskExit: readers may look at once
                self.events.publish("/tasks/exit", task_events.exit(task, exit))
            execs = self._execs.get(task.id)
            if execs:  # as runc's shim kills what is left of a container whose init exited
                self._background(execs.end_all(), f"ending the execs of {task.id}")
        finally:
            task.exited.set()

    async def exec(self, task: Task, exec_id: str, process: Mapping[str, Any], stdio: TaskIO) -> ExecProcess:
        """Exec: a new process in the running task's container, in its cgroup."""
        task.state.check_running(f"exec {exec_id!r} in task {task.id}")
        on_forked = task.cgroup.add if task.cgroup else None
        execs = self.execs_of(task)
        proc = await execs.add(exec_id, task.instance, process, stdio, on_forked)
        if not task.state.alive:  # the task ended while its exec was being prepared
            self._background(execs.end_all(), f"ending the execs of {task.id}")
        return proc

    def execs_of(self, task: Task) -> TaskExecs:
        return self._execs[task.id]

    def _write_termination_message(self, task: Task, exit: Exit) -> None:
        spec = task.opts.spec
        try:
            oom = task.cgroup is not None and task.cgroup.oom_killed
            reason = termination.exit_reason(exit.status, exit.reason, oom, spec.memory_limit if spec else None)
            termination.write_reason(spec.raw if spec else None, reason, task.id)
        except Exception as exc:  # never in the way of the exit itself
            log.warning("task %s: no termination message: %s", task.id, exc)

    async def wait(self, task: Task) -> Exit:
        """How the task ended, once its exit is recorded (after its TaskExit)."""
        await task.exited.wait()
        assert task.exit is not None
        return task.exit

    async def kill(self, task: Task, signo: int, all: bool = False) -> None:
        task.state.check_killable()
        if not 0 < signo < signal.NSIG:
            raise errors.InvalidArgument(f"kill {task.id}: invalid signal {signo}")
        if all and task.cgroup is not None:
            await self._kill_all(task, task.cgroup, signo)
        else:
            task.instance.kill(signo)
        if signo == signal.SIGKILL and task.state.paused and task.cgroup is not None:
            # A frozen v1 cgroup holds even SIGKILL until thawed; runc thaws after sending it too.
            self._background(task.cgroup.thaw(), f"thaw {task.id} after SIGKILL")

    async def _kill_all(self, task: Task, cgroup: TaskCgroup, signo: int) -> None:
        """`Kill` with all: every process of the task's cgroup, as runc's `kill --all`, with the
        cgroup frozen meanwhile so that all get the signal at once (else a shell whose child died
        first could exit 0 before its own SIGKILL lands). The relay is left out: it would forward
        the signal a second time."""
        freezing = not task.state.paused
        if freezing:
            try:
                await cgroup.freeze()
            except Exception as exc:
                log.warning("kill --all %s: cannot freeze its cgroup (%s): signalling unfrozen", task.id, exc,
                            extra={logs.FIELDS_ATTR: {"instance": task.id}})
        try:
            try:
                pids = cgroup.pids()
            except OSError as exc:
                log.warning("kill --all %s: cannot list its cgroup (%s): signalling the container process only",
                            task.id, exc.strerror, extra={logs.FIELDS_ATTR: {"instance": task.id}})
                pids = []
            others = [pid for pid in pids if pid not in (task.instance.relay_pid, task.pid)]
            log.debug("kill --all %s: signal %d to %d and %s", task.id, signo, task.pid, others)
            for pid in others:
                try:
                    os.kill(pid, signo)
                except ProcessLookupError:
                    pass
            task.instance.kill(signo)  # through its pidfd
        finally:
            if freezing:  # also after a failed freeze: it may have stopped half-way
                await cgroup.thaw()

    def _cgroup(self, task: Task, action: str) -> TaskCgroup:
        if task.cgroup is None:
            raise errors.Unimplemented(f"{action} {task.id}: the task has no cgroup (its spec has no linux section)")
        return task.cgroup

    async def pause(self, task: Task) -> None:
        cgroup = self._cgroup(task, "pause")
        task.state.pause()
        try:
            await cgroup.freeze()
        except BaseException:
            if task.state.paused:
                task.state.resume()
            raise
        self.events.publish("/tasks/paused", task_events.paused(task))

    async def resume(self, task: Task) -> None:
        cgroup = self._cgroup(task, "resume")
        if not task.state.paused:
            task.state.resume()  # raises: invalid state transition
        await cgroup.thaw()
        if task.state.paused:
            task.state.resume()
        self.events.publish("/tasks/resumed", task_events.resumed(task))

    def update(self, task: Task, resources: Any) -> None:
        cgroup = self._cgroup(task, "update")
        if not task.state.alive:
            raise errors.FailedPrecondition(f"update {task.id}: the task has stopped")
        cgroup.update(resources)

    def pids(self, task: Task) -> list[int]:
        """Every process of the task's cgroup; the worker alone when there is no cgroup."""
        if not task.state.alive:
            return []
        if task.cgroup is not None:
            try:
                found = task.cgroup.pids()
            except OSError:
                found = []
            if found:
                return found
        return [task.pid]

    def _background(self, coro: Any, what: str) -> None:
        def done(t: asyncio.Task[Any]) -> None:
            self._pending.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed: %s", what, t.exception())

        t = asyncio.get_running_loop().create_task(coro)
        self._pending.add(t)
        t.add_done_callback(done)

    async def delete(self, task_id: str) -> Exit:
        task = self.get(task_id)
        task.state.delete()
        try:
            exit = await self._release(task)
        except BaseException:
            # Not DELETING for ever: a retry can finish the job (and the registry empty).
            task.state.delete_failed(ended=task.exit is not None)
            raise
        del self._tasks[task_id]
        self._execs.pop(task_id, None)
        self.events.publish("/tasks/delete", task_events.delete(task, exit))
        return exit

    async def _release(self, task: Task) -> Exit:
        """End the instance (if it never started) and release all the task holds; each step can
        be done again when a previous Delete failed part-way."""
        await task.instance.delete()
        exit = await self.wait(task)
        await self.execs_of(task).end_all()
        if task.opts.rootfs:
            await asyncio.to_thread(mounts.unmount_all, task.rootfs)
        if task.cgroup is not None:
            await task.cgroup.close()
        try:
            os.unlink(worker_pid_file(task.opts.bundle))
        except FileNotFoundError:
            pass
        return exit


def _write_pid_file(bundle: str, pid: int) -> None:
    # Pid and start time: `delete` finds the process by them, whatever program it has exec'd since.
    write_atomic(worker_pid_file(bundle), pid_record.encode(pid), 0o600)  # root's alone


async def _undo_create(task_id: str, instance: Instance | None, cgroup: TaskCgroup | None, mounted: str) -> None:
    """Release what a Create that failed had made: end its instance, remove its cgroup (and what is
    left in it), unmount `mounted`. What cannot be released is logged, not raised (the Create's own
    error is the one to report)."""
    if instance is not None:
        try:
            await instance.delete()
        except Exception as exc:
            log.warning("create %s failed, and ending its worker failed too: %s", task_id, exc)
    if cgroup is not None:
        try:
            cgroup.destroy()
        except errors.ShimError as exc:
            log.warning("create %s failed, and its cgroup stays: %s", task_id, exc)
    if mounted:
        try:
            mounts.unmount_all(mounted)
        except errors.ShimError as exc:
            log.warning("create %s failed, and its rootfs stays mounted: %s", task_id, exc)
