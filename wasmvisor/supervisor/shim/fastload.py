"""What the shim binary's fast paths (`start`, `delete`) need from heavier modules, without importing them.

`start` and `delete` run for every task under `python -I -S`, where each import shows in containerd's
latency: `json` imports `re` (~7-10 ms), `hashlib` loads OpenSSL (~5 ms). This module gives them
`loads` (JSON through the C scanner that `json` itself uses) and `sha256` (the built-in one) at the cost
of `_json` and `_sha256` alone. It imports nothing at module top but those two.
"""

from __future__ import annotations

try:  # the built-in sha256: `hashlib` costs ~5 ms (OpenSSL), more than a whole fast path
    from _sha256 import sha256  # Python 3.11
except ImportError:  # pragma: no cover - 3.12 renamed it; builds without built-in hashes
    try:
        from _sha2 import sha256  # type: ignore[import-not-found, no-redef]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment]

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs milliseconds on these paths
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["loads", "sha256"]

_WHITESPACE = " \t\n\r"


class _ScannerContext:
    """What CPython's C JSON scanner reads from a JSONDecoder: the defaults of `json.loads`."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # float() reads NaN, Infinity and -Infinity as json.loads does
    memo: dict[str, str] = {}


def _c_scanner() -> Callable[[str, int], tuple[Any, int]] | None:
    try:
        from _json import make_scanner  # CPython's; json.scanner imports it the same way
    except ImportError:  # pragma: no cover - an interpreter without the C accelerator
        return None
    context: Any = _ScannerContext()  # typeshed wants a JSONDecoder; the scanner reads only these attributes
    scanner: Callable[[str, int], tuple[Any, int]] = make_scanner(context)
    return scanner


def loads(data: bytes) -> Any:
    """JSON `data` (UTF-8) as `json.loads` reads it, without importing `json`.

    ValueError (UnicodeDecodeError included) for anything that is not one JSON document.
    """
    text = data.decode("utf-8")
    scan = _c_scanner()
    if scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"invalid JSON at offset {exc.value}") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"extra data after the JSON document at offset {end}")
    return value
