"""What an operator sees of a supervisor's tasks (`wasmvisor ps`): each task as plain JSON-ready data.

Read from the registry on demand, never kept: state, pid, engine, module path and digest, exit. A module
read from the rootfs is hashed here once per task (in a thread: a large module must not hold the loop),
so that Create pays nothing for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from typing import Any

from wasmvisor.errors import ShimError
from wasmvisor.spec import parse_entrypoint, resolve_in_root
from wasmvisor.supervisor.tasks.registry import TaskRegistry
from wasmvisor.supervisor.tasks.state import Status
from wasmvisor.supervisor.tasks.task import Task

NATIVE = "native"
"""The engine shown for a native program exec'd by its worker (a pause container, a busybox sidecar)."""

_CHUNK = 1 << 20


def engine_name(ref: str) -> str:
    """`wasmvisor.engines.wasmtime_engine:WasmtimeEngine` -> `wasmtime`; other refs: their class name."""
    name = ref.rpartition(":")[2] or ref
    return name[: -len("Engine")].lower() if name.endswith("Engine") and len(name) > 6 else name


def module_of(task: Task) -> tuple[str, str]:
    """(module path as the spec names it, host path to hash or "") of `task`."""
    spec = task.opts.spec
    if spec is None or not spec.args:
        return "", ""
    try:
        path, _ = parse_entrypoint(spec.args[0])
        root = task.rootfs if task.opts.rootfs else spec.root_path
        return path, resolve_in_root(root, path, spec.cwd)
    except ShimError:
        return spec.args[0], ""


def layer_digest(task: Task) -> str:
    """The digest of the task's wasm layer (an OCI Wasm image), "" when its module is a rootfs file."""
    cfg = getattr(task.instance, "cfg", None)
    layers = getattr(cfg, "wasm_layers", ())
    return str(layers[0].digest) if layers else ""


def file_digest(path: str) -> str:
    """`sha256:<hex>` of the file at `path`, "" when it cannot be read (a rootfs already unmounted)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return ""
    return f"sha256:{digest.hexdigest()}"


class TaskDescriber:
    """Describes the tasks of one registry; remembers each module's digest by task id."""

    def __init__(self, registry: TaskRegistry) -> None:
        self.registry = registry
        self._digests: dict[str, str] = {}

    async def digest(self, task: Task, host_path: str) -> str:
        known = self._digests.get(task.id)
        if known is None:
            known = layer_digest(task)
            if not known and host_path and task.state.status is not Status.DELETING:  # its rootfs is going
                known = await asyncio.get_running_loop().run_in_executor(None, file_digest, host_path)
            if known:
                self._digests[task.id] = known
        return known or ""

    async def describe(self) -> dict[str, Any]:
        """The supervisor and its tasks, as `wasmvisor ps` reads them."""
        tasks = self.registry.tasks()
        for gone in set(self._digests) - {t.id for t in tasks}:
            del self._digests[gone]
        out = []
        for task in tasks:
            module, host_path = module_of(task)
            execs = getattr(task.instance, "execs", False)
            out.append({
                "id": task.id,
                "state": task.state.status.value,
                "pid": task.pid,
                "engine": NATIVE if execs else engine_name(self.registry.engine),
                "module": module,
                "digest": "" if execs else await self.digest(task, host_path),
                "exit_status": task.exit.status if task.exit else None,
                "exited_at_ns": task.exit.at_ns if task.exit else None,
                "bundle": task.opts.bundle,
            })
        return {
            "namespace": self.registry.namespace,
            "group": self.registry.group,
            "pid": os.getpid(),
            "engine": engine_name(self.registry.engine),
            # Whether this supervisor exports traces: OpenTelemetry is imported only when configured.
            "opentelemetry_loaded": "opentelemetry" in sys.modules,
            "tasks": out,
        }
