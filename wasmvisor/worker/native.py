"""The native executor: ELF binaries and `#!` scripts run as the container's process (STUB: being written)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from wasmvisor.errors import Unimplemented


def find_native(root: str, args0: str, env: Sequence[str], cwd: str) -> str | None:
    """The container path of `args0` when it names an ELF binary or a `#!` script inside `root`
    (a bare name is looked up in the PATH of `env`), else None (then it is a wasm module).
    Called before pivot_root, with `root` the host path of the container's root. STUB: None."""
    return None


def exec_native(path: str, args: Sequence[str], env: Sequence[str], cwd: str,
                seccomp: Mapping[str, Any] | None) -> NoReturn:
    """Replace the calling process with the container's program: chdir(cwd), apply the spec's
    `linux.seccomp` (when not None), execve(path, args, env). Called after pivot_root and
    apply_identity, at Start. Raises ShimError subclasses with a clear message. STUB."""
    raise Unimplemented(f"{path}: the native executor is not written yet")
