"""`module:Class` references: how a shim names its Engine and its Instance class, as text that
survives the re-execution of the shim binary (the daemon, the template) and the fork of a worker."""

from __future__ import annotations

import importlib

from wasmvisor.errors import Internal


def load_class(ref: str, base: type, kind: str) -> type:
    """The subclass of `base` named `ref` ("module:Class"); Internal naming the `kind` and `ref` when
    it cannot be imported or is not such a class."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise Internal(f"{kind} {ref!r}: want module:Class")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise Internal(f"{kind} {ref!r}: cannot load: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise Internal(f"{kind} {ref!r}: not an {base.__name__}")
    return cls
