"""OCI runtime spec (a bundle's config.json) to typed values, and guest paths to host paths.

Pure functions only: nothing here starts a process or changes the filesystem. Errors are
`InvalidArgument` with a message that names the file (or path) and the problem.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from wasmvisor.errors import InvalidArgument

SANDBOX_ID_ANNOTATION = "io.kubernetes.cri.sandbox-id"
DEFAULT_FUNC = "_start"
MAX_SYMLINKS = 40
"""As Linux's limit on symlinks followed in one lookup (ELOOP)."""


@dataclass(frozen=True)
class Spec:
    """The parts of config.json the shim uses; `raw` keeps the whole document for the rest."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    """`KEY=value` strings, in spec order."""
    cwd: str
    terminal: bool
    annotations: Mapping[str, str]
    root_path: str
    """Absolute host path of the container's root (spec `root.path`, relative to the bundle)."""
    hostname: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def memory_limit(self) -> int | None:
        """`linux.resources.memory.limit` in bytes, or None when absent or not positive."""
        linux = self.raw.get("linux")
        resources = linux.get("resources") if isinstance(linux, dict) else None
        memory = resources.get("memory") if isinstance(resources, dict) else None
        limit = memory.get("limit") if isinstance(memory, dict) else None
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            return limit
        return None


def load_spec(bundle: str) -> Spec:
    """Read and check `bundle/config.json`."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: missing") from None
    except OSError as exc:
        raise InvalidArgument(f"{path}: cannot read: {exc.strerror}") from None
    return parse_spec(data, bundle, name=path)


def parse_spec(data: bytes, bundle: str, name: str = "config.json") -> Spec:
    """The Spec in `data` (config.json's bytes); relative paths are taken from `bundle`."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidArgument(f"{name}: not valid JSON {_json_error_position(data)}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{name}: not a JSON object")

    process = doc.get("process")
    if not isinstance(process, dict):
        raise InvalidArgument(f"{name}: process is missing")
    args = process.get("args")
    if args is None or args == []:
        raise InvalidArgument(f"{name}: process.args is empty")
    if not _is_str_list(args):
        raise InvalidArgument(f"{name}: process.args must be a list of strings")
    env = process.get("env") or []
    if not _is_str_list(env):
        raise InvalidArgument(f"{name}: process.env must be a list of strings")
    for i, entry in enumerate(env):
        if "=" not in entry:
            raise InvalidArgument(f"{name}: process.env[{i}] {entry!r} is not KEY=value")
    cwd = process.get("cwd") or "/"
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise InvalidArgument(f"{name}: process.cwd {cwd!r} is not an absolute path")
    terminal = process.get("terminal", False)
    if not isinstance(terminal, bool):
        raise InvalidArgument(f"{name}: process.terminal must be true or false")

    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidArgument(f"{name}: annotations must map strings to strings")

    root = doc.get("root") or {}
    root_path = root.get("path", "rootfs") if isinstance(root, dict) else None
    if not isinstance(root_path, str) or not root_path:
        raise InvalidArgument(f"{name}: root.path must be a non-empty string")
    hostname = doc.get("hostname") or ""
    if not isinstance(hostname, str):
        raise InvalidArgument(f"{name}: hostname must be a string")

    return Spec(
        args=tuple(args),
        env=tuple(env),
        cwd=posixpath.normpath(cwd),
        terminal=terminal,
        annotations=annotations,
        root_path=os.path.normpath(os.path.join(os.path.abspath(bundle), root_path)),
        hostname=hostname,
        raw=doc,
    )


def group_of(annotations: Mapping[str, str], task_id: str) -> str:
    """The group (one supervisor each) a task belongs to: its pod's sandbox id, else itself."""
    return annotations.get(SANDBOX_ID_ANNOTATION) or task_id


def parse_entrypoint(args0: str) -> tuple[str, str]:
    """`path#func` -> (path, func); without `#`, func is `_start`. Splits at the last `#`."""
    path, sep, func = args0.rpartition("#")
    if not sep:
        path, func = args0, DEFAULT_FUNC
    if not path:
        raise InvalidArgument(f"entrypoint {args0!r}: empty module path")
    if not func:
        raise InvalidArgument(f"entrypoint {args0!r}: empty function name after '#'")
    return path, func


def resolve_in_root(root: str, path: str, cwd: str = "/") -> str:
    """The host path of guest `path` in the container whose root is the host dir `root`.

    A relative `path` is taken from `cwd`. A `..` in `path` itself that would climb above the
    root is an error (the spec asks for something outside the container). Symlinks met on the
    way are followed inside the root: an absolute target starts again at the root, and `..`
    in a target stops at the root, as the kernel does for a process whose root is `root`.
    The result need not exist; it never names anything outside `root`.
    """
    if not path:
        raise InvalidArgument("empty path")
    guest = path if path.startswith("/") else posixpath.join(cwd or "/", path)
    depth = 0
    for part in guest.split("/"):
        if part == "..":
            if depth == 0:
                raise InvalidArgument(f"path {path!r} escapes the container root")
            depth -= 1
        elif part not in ("", "."):
            depth += 1

    root = os.path.abspath(root)
    pending = _components(guest)
    pending.reverse()
    resolved: list[str] = []
    followed = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        host = os.path.join(root, *resolved, part)
        try:
            mode = os.lstat(host).st_mode
        except OSError:  # missing (or not a directory): the rest is taken as written
            resolved.append(part)
            continue
        if not stat.S_ISLNK(mode):
            resolved.append(part)
            continue
        followed += 1
        if followed > MAX_SYMLINKS:
            raise InvalidArgument(f"path {path!r}: too many levels of symbolic links")
        target = os.readlink(host)
        if target.startswith("/"):
            resolved = []
        pending.extend(reversed(_components(target)))
    return os.path.join(root, *resolved)


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _json_error_position(data: bytes) -> str:
    """`at line L: <reason>` from the standard parser, whose messages carry the position."""
    try:
        json.loads(data)
    except json.JSONDecodeError as exc:
        return f"at line {exc.lineno}: {exc.msg} (column {exc.colno})"
    except (UnicodeDecodeError, ValueError) as exc:
        return f"({exc})"
    return "(rejected by orjson)"
