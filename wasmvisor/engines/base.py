"""The Engine contract (as runwasi's `Engine` trait) and the RuntimeContext an engine runs from.

An engine knows nothing of containerd: it gets a RuntimeContext (args, env, entrypoint, wasm
layers, platform) whose paths are already those the guest sees, and the stdio it should use, and
returns the guest's exit code.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from wasmvisor.engines.workload import WorkloadOptions

WASM_MAGIC = b"\0asm"


@dataclass(frozen=True)
class WasmLayer:
    """One wasm layer of an OCI Wasm image: its media type and bytes."""

    media_type: str
    data: bytes


@dataclass(frozen=True)
class Platform:
    os: str = "wasip1"
    architecture: str = "wasm"
    variant: str = ""


@dataclass(frozen=True)
class Entrypoint:
    """What to run: `source` is the module's path in the container (`args[0]` without `#func`),
    `host_path` the same file seen from the worker, `func` the export to call."""

    name: str
    source: str
    host_path: str
    func: str = "_start"


@dataclass(frozen=True)
class Stdio:
    """File descriptors the guest uses for stdin/stdout/stderr; -1 means none (/dev/null)."""

    stdin: int = -1
    stdout: int = -1
    stderr: int = -1


@dataclass(frozen=True)
class RuntimeContext:
    """Everything an engine needs to run one container's guest."""

    args: Sequence[str]
    envs: Sequence[str]
    cwd: str
    entrypoint: Entrypoint
    root: str
    """The container's root as the process running the guest sees it, preopened to the guest as
    `/`: the worker passes `/`, since it runs the guest after pivot_root into that root."""
    wasm_layers: Sequence[WasmLayer] = field(default_factory=tuple)
    platform: Platform = field(default_factory=Platform)
    memory_limit: int | None = None
    options: WorkloadOptions = field(default_factory=WorkloadOptions)
    """What the container's annotations chose: preopens, limits, engine settings (engines/workload.py)."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    """The spec's annotations (an engine may read its settings there, e.g. an HTTP port)."""


class GuestError(Exception):
    """The guest cannot be prepared or run; the message names the module and the reason."""


TRAP_EXIT_CODE = 137
"""The exit code of a guest that trapped (128 + SIGKILL, as runwasi reports it)."""


class ExitCode(int):
    """An exit code that also says why the guest ended: `reason` is "exit" (it returned or
    called proc_exit) or "trap". Engines may return a plain int; it means "exit"."""

    reason: str

    def __new__(cls, code: int, reason: str = "exit") -> ExitCode:
        self = super().__new__(cls, code)
        self.reason = reason
        return self


PreparedGuest = Callable[[Stdio], int]
"""A guest ready to run: call it with the stdio to use; it returns the exit code. It may set an attribute
`instantiated_ns` (time.time_ns() once instantiated) for the worker's trace phases."""


class ProgramGuest(abc.ABC):
    """A guest run by a program of its own that the worker starts (the wasmtime CLI), not in the
    worker's process. That program is not in the container's root (its libraries are not either), so
    the worker does not pivot_root for it: it stays in the container's namespaces and cgroup, and the
    guest sees the container root only through the program's preopen of `root` as `/`."""

    @abc.abstractmethod
    def at_root(self, root: str) -> ProgramGuest:
        """The same guest with the container root given by its path in the worker (not `/`)."""

    @abc.abstractmethod
    def __call__(self, stdio: Stdio) -> int:
        """Start the program, wait for its end, return the guest's exit code."""

    @abc.abstractmethod
    def stop(self, sig: int) -> None:
        """The container got `sig`: end the program (gracefully, within bounds, for SIGTERM/SIGINT);
        returns once it has ended. Called from another thread than `__call__`'s."""


class Engine(abc.ABC):
    """A way to run a container's entrypoint (runwasi's `Engine` trait).

    Only `name` and `run_wasi` are required; `can_handle` (the wasm header check), `prepare`,
    `supported_layer_types`, `can_precompile` and `precompile` have defaults to override."""

    name: str = "engine"

    supported_layer_types: tuple[str, ...] = ()
    """OCI layer media types this engine runs directly (none by default)."""

    def can_handle(self, ctx: RuntimeContext) -> None:
        """Raise GuestError with a message naming the file when this engine cannot run `ctx`.

        The default accepts a container with wasm layers (their media types were checked against
        the engine's already) and otherwise an entrypoint file that starts with the `\\0asm` header."""
        if ctx.wasm_layers:
            return
        head = read_head(ctx.entrypoint.host_path, ctx.entrypoint.source)
        if not head.startswith(WASM_MAGIC):
            raise not_wasm(ctx.entrypoint.source, head)

    def prepare(self, ctx: RuntimeContext) -> PreparedGuest:
        """Do the slow work (load, validate, link) now, at Create; return what Start calls.

        The default defers everything to `run_wasi`."""
        return lambda stdio: self.run_wasi(ctx, stdio)

    @abc.abstractmethod
    def run_wasi(self, ctx: RuntimeContext, stdio: Stdio) -> int:
        """Run the guest to its end and return its exit code."""

    def can_precompile(self) -> str | None:
        """A fingerprint of the engine's code-changing settings when it can precompile, else None."""
        return None

    def precompile(self, layers: Sequence[WasmLayer]) -> list[bytes | None]:
        """The compiled form of each layer (None where a layer needs no compiling)."""
        return [None for _ in layers]


def read_head(host_path: str, source: str) -> bytes:
    """The first 8 bytes of the module at `host_path`; GuestError naming `source` when it cannot be read."""
    try:
        with open(host_path, "rb") as f:
            return f.read(8)
    except (FileNotFoundError, NotADirectoryError):
        raise GuestError(f"module {source}: no such file in the container image") from None
    except IsADirectoryError:
        raise GuestError(f"module {source}: is a directory") from None
    except OSError as exc:
        raise GuestError(f"module {source}: cannot read: {exc.strerror}") from None


def not_wasm(source: str, head: bytes) -> GuestError:
    """The error for a module `source` whose first bytes `head` are not the wasm header."""
    shown = head[:4].hex() if head else "nothing: the file is empty"
    return GuestError(f"module {source}: not a wasm file (starts with {shown})")


def guest_env(envs: Sequence[str], cwd: str) -> list[tuple[str, str]]:
    """`KEY=value` strings as pairs, plus PWD=cwd when cwd is not `/` and PWD is unset."""
    pairs = [(k, v) for k, _, v in (e.partition("=") for e in envs)]
    if cwd not in ("", "/") and not any(k == "PWD" for k, _ in pairs):
        pairs.append(("PWD", cwd))
    return pairs
