"""Writes the Python shim's fast entry script, which replaces pip's console script of the same name:
`containerd-shim-wasmvisor-v1-python`, which the compiled front (front.c) execs for what it does not
answer itself, and `containerd-shim-wasmvisor-v1` where no front was built.

containerd runs `containerd-shim-wasmvisor-v1 ... start` for every task, and with the group's supervisor
already running `start` is a connect() and a file write (start.py). What is left is the interpreter's own
start-up, and there pip's console script pays for `site`: in an editable venv the import hook that
setuptools installs costs ~25 ms (pathlib, importlib.util, re), and with PYTHONDONTWRITEBYTECODE set,
wasmvisor's modules are compiled from source on every run. The generated script runs Python with
`-I -S` instead: no `site`, no PYTHON* variables, no script folder on sys.path; it appends the folder that
holds the wasmvisor package to sys.path (the standard library keeps precedence) and calls the same
`main`. `start` needs nothing else, nor does `delete` unless it finds work left (it calls `load_site`
before importing protobuf or orjson); every other action runs `site` itself first (`load_site`), and
the daemon is re-executed as `python SCRIPT ... serve`, an ordinary interpreter.

Run `python -m wasmvisor.supervisor.shim.entry_script PATH` (scripts/setup.sh does, after pip install). pip's
own console script stays a working fallback: pip cannot give a console script interpreter flags. The
front reads this script's `#!` interpreter and `sys.path.append` line: they name the node's template.
"""

from __future__ import annotations

import os
import sys

from wasmvisor.linux.files import write_atomic

FLAGS = "-IS"
"""One word: Linux passes everything after the interpreter in a `#!` line as a single argument."""
MARKER = "# wasmvisor fast entry script"


def load_site() -> None:
    """Run `site` now if the interpreter skipped it (`python -S`, as the generated script does).

    `start` does without the venv's site-packages, and so does the usual `delete`; whatever needs a
    package installed there (protobuf, orjson, wasmtime) calls this first.
    """
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()


def import_asyncio_without_ssl() -> None:
    """Import asyncio while `import ssl` fails, so that asyncio takes TLS as unavailable (its modules keep
    `ssl = None`), then let `ssl` be imported normally again by whoever needs it.

    The supervisor and the node's template never speak TLS (ttrpc and containerd's gRPC API are plain
    unix sockets), and asyncio's unconditional `import ssl` costs ~4.5 MB of memory (the ssl module and
    the libssl it loads) in the template, and through it in every supervisor, zygote and worker of the
    node. No-op when asyncio or ssl is loaded already."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # `import ssl` raises ImportError meanwhile
    try:
        import asyncio  # noqa: F401
    finally:
        if sys.modules.get("ssl", 0) is None:
            del sys.modules["ssl"]


def package_root() -> str:
    """The folder that holds the `wasmvisor` package (site-packages, or the repository when editable)."""
    import wasmvisor

    return os.path.dirname(os.path.dirname(os.path.abspath(wasmvisor.__file__)))


def script_text(python: str, root: str, module: str = "wasmvisor.supervisor.shim.main", function: str = "main") -> str:
    """The script's text: `python` runs it with FLAGS, `root` holds the package named by `module`."""
    if any(c.isspace() for c in python):
        raise ValueError(f"interpreter path {python!r} has white space: it cannot go in a #! line")
    return (
        f"#!{python} {FLAGS}\n"
        f"{MARKER} (python -m wasmvisor.supervisor.shim.entry_script): pip's console script, minus `site`.\n"
        "import sys\n"
        f"sys.path.append({root!r})\n"
        f"from {module} import {function}\n"
        f"{function}()\n"
    )


def write(path: str, text: str) -> bool:
    """Write `text` to `path` (mode 0755) through a temporary file; False when it was already there."""
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    write_atomic(path, text.encode("utf-8"), 0o755)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m wasmvisor.supervisor.shim.entry_script PATH\n")
        return 2
    write(args[0], script_text(sys.executable, package_root()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
