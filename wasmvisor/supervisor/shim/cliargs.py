"""The shim binary's command line, parsed the way Go's `flag` package reads it (pure).

containerd runs `containerd-shim-wasmvisor-v1 -namespace NS -address SOCK -publish-binary BIN -id ID
[-bundle DIR] [-debug] ACTION`. We accept `-flag value`, `--flag value` and `-flag=value`, bool flags
alone or as `-flag=true|false`, and `--` to end the flags. Unknown flags are not an error (Go's would be):
newer containerd releases may add flags, and a shim that refuses to start is worse than one that ignores
a hint. They are recorded in `ShimArgs.ignored` so the caller can log them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `start` imports this module, and typing costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Sequence

ACTIONS = frozenset({"start", "delete", "serve", "template"})
"""Actions of the shim binary. `serve` and `template` are internal: `start` runs the binary with them
(template.py: the node's supervisor template, which needs only -address and -socket)."""

_STRING_FLAGS = {
    "namespace": "namespace",
    "address": "address",
    "publish-binary": "publish_binary",
    "id": "id",
    "bundle": "bundle",
    "socket": "socket",
    "group": "group",
    "protocol": "protocol",
}
_INT_FLAGS = {"socket-fd": "socket_fd", "containerd-pid": "containerd_pid"}
_BOOL_FLAGS = {"debug": "debug", "v": "version", "version": "version", "info": "info"}
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class UsageError(Exception):
    """The command line cannot be understood; the message is one line for stderr."""


class ShimArgs:
    """What the shim binary was asked to do. Immutable; `replace` makes a changed copy.

    A plain class rather than a dataclass: `dataclasses` pulls in `inspect` (~25 ms without `site`),
    more than the rest of the `start` fast path costs (see start.py).
    """

    __slots__ = ("namespace", "address", "publish_binary", "id", "bundle", "debug", "action", "version", "info",
                 "socket_fd", "socket", "group", "protocol", "containerd_pid", "ignored")

    namespace: str
    address: str
    """containerd's gRPC socket (`-address`); part of the socket-name hash."""
    publish_binary: str
    id: str
    bundle: str
    """`-bundle`; empty means the working directory (always the case for `start`)."""
    debug: bool
    action: str
    """`start`, `delete`, `serve`, `template`, or "" when only `-v`/`-info` was asked for."""
    version: bool
    info: bool
    socket_fd: int | None
    """Internal (serve): the inherited listening socket's fd."""
    socket: str
    """Internal (serve): the path that socket is bound to, for removing it at exit."""
    group: str
    """Internal (serve): the group key (pod sandbox id, else the first task's id)."""
    protocol: str
    """Internal (serve): `grpc` to serve gRPC (binding `socket` itself); else ttrpc on `socket_fd`."""
    containerd_pid: int
    """Internal (template): the pid of the containerd that ran `start` (0: unknown); the template
    exits when it is gone."""
    ignored: tuple[str, ...]
    """Unknown flags and extra words, as given, in order."""

    def __init__(self, *, namespace: str = "", address: str = "", publish_binary: str = "", id: str = "",
                 bundle: str = "", debug: bool = False, action: str = "", version: bool = False, info: bool = False,
                 socket_fd: int | None = None, socket: str = "", group: str = "", protocol: str = "",
                 containerd_pid: int = 0, ignored: tuple[str, ...] = ()) -> None:
        values = locals()
        for name in self.__slots__:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ShimArgs is immutable: cannot set {name!r} (use replace)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ShimArgs is immutable: cannot delete {name!r}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def replace(self, **changes: object) -> ShimArgs:
        """A copy with `changes` applied (as `dataclasses.replace`)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"ShimArgs has no field(s) {', '.join(sorted(unknown))}")
        values.update(changes)
        return ShimArgs(**values)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"ShimArgs({fields})"

    def __reduce__(self) -> tuple[object, tuple[tuple[object, ...]]]:
        # copy and pickle would restore the slots with setattr, which an immutable object refuses.
        return _shim_args_from_values, (self._values(),)


def _shim_args_from_values(values: tuple[object, ...]) -> ShimArgs:
    return ShimArgs(**dict(zip(ShimArgs.__slots__, values, strict=True)))  # type: ignore[arg-type]


def _parse_bool(name: str, text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"invalid boolean value {text!r} for flag -{name}")


def _looks_like_value(word: str) -> bool:
    """Whether the word after an unknown flag is probably that flag's value."""
    return not word.startswith("-") and word not in ACTIONS


def parse_args(argv: Sequence[str]) -> ShimArgs:
    """Parse the arguments after the program name. Raises UsageError on input that makes no sense."""
    values: dict[str, object] = {}
    ignored: list[str] = []
    action = ""
    words = list(argv)
    i = 0
    flags_done = False
    while i < len(words):
        word = words[i]
        i += 1
        if flags_done or not word.startswith("-") or word == "-":
            if action:
                ignored.append(word)
            else:
                action = word
            continue
        if word == "--":
            flags_done = True
            continue
        name = word[2:] if word.startswith("--") else word[1:]
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if not name or name.startswith("-"):
            raise UsageError(f"bad flag syntax: {word}")
        if name in _BOOL_FLAGS:
            values[_BOOL_FLAGS[name]] = True if value is None else _parse_bool(name, value)
            continue
        if name in _STRING_FLAGS or name in _INT_FLAGS:
            if value is None:
                # Go's flag takes the next word as the value even when it starts with "-".
                if i >= len(words):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = words[i]
                i += 1
            if name in _INT_FLAGS:
                try:
                    values[_INT_FLAGS[name]] = int(value)
                except ValueError:
                    raise UsageError(f"invalid value {value!r} for flag -{name}: not an integer") from None
            else:
                values[_STRING_FLAGS[name]] = value
            continue
        ignored.append(word)
        if value is None and i < len(words) and _looks_like_value(words[i]):
            ignored.append(words[i])
            i += 1

    args = ShimArgs(action=action, ignored=tuple(ignored), **values)  # type: ignore[arg-type]
    if args.version or args.info:
        return args
    if not action:
        raise UsageError("no action given (expected one of: start, delete)")
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r} (expected one of: start, delete)")
    if action == "template":
        return args
    if not args.namespace:
        raise UsageError(f"{action}: -namespace is required")
    if not args.id:
        raise UsageError(f"{action}: -id is required")
    return args


def to_argv(args: ShimArgs) -> list[str]:
    """The flags that reproduce `args` (without the action): used to build the daemon's command line."""
    out = [
        "-namespace", args.namespace,
        "-address", args.address,
        "-publish-binary", args.publish_binary,
        "-id", args.id,
    ]
    if args.bundle:
        out += ["-bundle", args.bundle]
    if args.group:
        out += ["-group", args.group]
    if args.socket:
        out += ["-socket", args.socket]
    if args.socket_fd is not None:
        out += ["-socket-fd", str(args.socket_fd)]
    if args.protocol:
        out += ["-protocol", args.protocol]
    if args.debug:
        out.append("-debug")
    return out
