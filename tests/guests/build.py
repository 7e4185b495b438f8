"""Build the test guests (tests/guests/*.wat and *.c) into .wasm files in a cache directory.

WAT goes through `wasmtime.wat2wasm`; C through clang's wasm32-wasi target against Debian's wasi-libc.
Each output is named after its source's hash (and the build command), so a rebuilt source gets a new
file and an unchanged one is reused. Binaries are never committed: they live only in the cache.

CLI: `python tests/guests/build.py CACHE_DIR [NAME ...]` prints `NAME=PATH` lines.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

GUESTS_DIR = Path(__file__).resolve().parent

CLANG_COMMAND = ("clang", "--target=wasm32-wasi", "--sysroot=/usr", "-O2")


class GuestBuildError(RuntimeError):
    """A guest source did not compile; the message holds the compiler's output."""


def sources() -> dict[str, Path]:
    """Every guest source by name (file stem)."""
    found: dict[str, Path] = {}
    for path in sorted(GUESTS_DIR.iterdir()):
        if path.suffix in (".wat", ".c"):
            if path.stem in found:
                raise GuestBuildError(f"two guest sources named {path.stem}: {found[path.stem]} and {path}")
            found[path.stem] = path
    return found


def _cache_key(source: Path) -> str:
    digest = hashlib.sha256()
    digest.update(" ".join(CLANG_COMMAND).encode() if source.suffix == ".c" else b"wat2wasm")
    digest.update(b"\0")
    digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def _compile(source: Path, out: Path) -> None:
    """Write the wasm of `source` to `out` (atomically: concurrent builders may race)."""
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{source.stem}-", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if source.suffix == ".wat":
            import wasmtime

            try:
                tmp.write_bytes(wasmtime.wat2wasm(source.read_text()))
            except Exception as exc:
                raise GuestBuildError(f"{source.name}: {exc}") from exc
        else:
            proc = subprocess.run([*CLANG_COMMAND, "-o", str(tmp), str(source)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise GuestBuildError(f"{source.name}: clang failed ({proc.returncode}):\n{proc.stderr}")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def build(name: str, cache_dir: str | os.PathLike[str]) -> Path:
    """The path of guest `name`'s wasm, compiling it when the cache has no build of this source."""
    try:
        source = sources()[name]
    except KeyError:
        raise GuestBuildError(f"no guest source named {name!r} in {GUESTS_DIR}") from None
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{name}-{_cache_key(source)}.wasm"
    if not out.exists():
        _compile(source, out)
    return out


def build_all(cache_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Every guest, built (or found in the cache): name -> path of its .wasm."""
    return {name: build(name, cache_dir) for name in sources()}


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: build.py CACHE_DIR [NAME ...]", file=sys.stderr)
        return 2
    cache_dir, names = argv[0], argv[1:]
    try:
        built = {name: build(name, cache_dir) for name in names} if names else build_all(cache_dir)
    except GuestBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in built.items():
        print(f"{name}={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
