"""The package's layers point one way (README "Layout", each package's docstring): read from the source,
every `import` of a wasmvisor module (at any depth, those under `if TYPE_CHECKING:` included) must be
allowed by the table below, and no module may reach itself through imports (no circles).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "wasmvisor"

BOTTOM = (
    "wasmvisor.errors", "wasmvisor.spec", "wasmvisor.cgroups", "wasmvisor.linux", "wasmvisor.logs", "wasmvisor.version",
    "wasmvisor.refs", "wasmvisor.tracing",
)
"""Import only each other (and `proto`, where said)."""

ALLOWED: dict[str, tuple[str, ...]] = {
    # area (longest prefix wins): the areas it may import besides itself
    "wasmvisor.errors": (),
    "wasmvisor.version": (),
    "wasmvisor.logs": (),
    "wasmvisor.refs": ("wasmvisor.errors",),
    "wasmvisor.tracing": (),
    "wasmvisor.linux": ("wasmvisor.errors",),
    "wasmvisor.spec": ("wasmvisor.errors",),
    "wasmvisor.cgroups": ("wasmvisor.errors", "wasmvisor.linux", "wasmvisor.proto.cgroups"),
    "wasmvisor.proto": ("wasmvisor.proto",),
    "wasmvisor.image": BOTTOM,
    "wasmvisor.image_layouts": (*BOTTOM, "wasmvisor.image"),
    "wasmvisor.cli": (
        *BOTTOM, "wasmvisor.image", "wasmvisor.image_layouts", "wasmvisor.ops", "wasmvisor.supervisor.shim.start",
    ),
    # The operator's commands: the client half of the Admin service, and where the module cache lives.
    "wasmvisor.ops": (
        *BOTTOM, "wasmvisor.supervisor.admin", "wasmvisor.engines.module_cache",
        # the lookup of the wasmtime CLI the workers make (no wasmtime import)
        "wasmvisor.engines.wasmtime_cli", "wasmvisor.engines.base", "wasmvisor.engines.component_world",
    ),
    "wasmvisor.engines": BOTTOM,
    "wasmvisor.ipc": BOTTOM,
    "wasmvisor.worker": (*BOTTOM, "wasmvisor.ipc", "wasmvisor.engines"),
    "wasmvisor.supervisor.rpc": ("wasmvisor.errors", "wasmvisor.proto.ttrpc_pb2"),
    "wasmvisor.supervisor.containerd": (
        *BOTTOM, "wasmvisor.proto", "wasmvisor.ipc.messages",
        # what the supervisor knows of engines: their catalog and the compiled-module cache, never an engine
        "wasmvisor.engines.catalog", "wasmvisor.engines.module_cache",
    ),
    # The containerd client comes in as an argument (registry.LayerReader), never by import.
    "wasmvisor.supervisor.tasks": (*BOTTOM, "wasmvisor.proto", "wasmvisor.ipc", "wasmvisor.supervisor.rpc"),
    # The pod sandbox (shim sandboxer) stops and removes the pod's tasks through the registry.
    "wasmvisor.supervisor.pods": (*BOTTOM, "wasmvisor.proto", "wasmvisor.supervisor.rpc", "wasmvisor.supervisor.tasks"),
    "wasmvisor.supervisor.shim": (
        *BOTTOM, "wasmvisor.proto", "wasmvisor.ipc", "wasmvisor.supervisor",
        # entry_script reads the package's location from the root package
        "wasmvisor",
    ),
    "wasmvisor.supervisor": (*BOTTOM, "wasmvisor.proto", "wasmvisor.ipc", "wasmvisor.supervisor"),
    # The public API: names resolved lazily from every layer.
    "wasmvisor": ("wasmvisor",),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module a dotted name refers to: itself, or the longest module prefix (a name from a module)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(tree: ast.AST, module: str) -> Iterator[tuple[int, str]]:
    """(line, imported wasmvisor module) for every import in `tree`, at any depth."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "wasmvisor":
                    yield node.lineno, _resolve(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    package = package.rsplit(".", 1)[0]
                base = f"{package}.{base}"
            if base.split(".")[0] != "wasmvisor":
                continue
            for alias in node.names:
                yield node.lineno, _resolve(f"{base}.{alias.name}")
        yield from _imports(node, module)


def _graph() -> dict[str, set[tuple[int, str]]]:
    return {name: set(_imports(ast.parse(path.read_text()), name)) for name, path in MODULES.items()}


GRAPH = _graph()


def _area(module: str) -> str:
    return max((area for area in ALLOWED if module == area or module.startswith(area + ".")), key=len)


def _within(module: str, areas: tuple[str, ...]) -> bool:
    return any(module == area or module.startswith(area + ".") for area in areas)


def test_every_module_belongs_to_an_area() -> None:
    assert all(_area(m) for m in MODULES)
    assert "wasmvisor.supervisor.tasks.registry" in MODULES and "wasmvisor.linux.syscalls" in MODULES


def _violations(module: str) -> list[str]:
    area = _area(module)
    allowed = (area, *ALLOWED[area])
    return sorted(f"line {line}: {target} (area {_area(target)})" for line, target in GRAPH[module]
                  if not _within(target, allowed))


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("wasmvisor.proto")))
def test_imports_follow_the_layers(module: str) -> None:
    area = _area(module)
    wrong = _violations(module)
    allowed = ", ".join((area, *ALLOWED[area]))
    assert not wrong, f"{module} ({area}) may import only {allowed}; it imports " + "; ".join(wrong)


@pytest.mark.parametrize(("module", "target"), [
    ("wasmvisor.worker.main", "wasmvisor.supervisor.tasks.registry"),
    ("wasmvisor.supervisor.rpc.ttrpc_server", "wasmvisor.supervisor.tasks.service"),
    ("wasmvisor.supervisor.tasks.registry", "wasmvisor.engines.wasmtime_engine"),
    ("wasmvisor.engines.base", "wasmvisor.proto.containerd.types.mount_pb2"),
    ("wasmvisor.linux.syscalls", "wasmvisor.spec"),
])
def test_the_rules_refuse_an_import_against_the_layers(module: str, target: str) -> None:
    GRAPH[module].add((0, target))
    try:
        assert _violations(module) == [f"line 0: {target} (area {_area(target)})"]
    finally:
        GRAPH[module].discard((0, target))


def test_the_daemon_is_wired_from_the_shim_binary_alone() -> None:
    importers = sorted(m for m, targets in GRAPH.items() if any(t == "wasmvisor.supervisor.daemon" for _, t in targets))
    assert importers == ["wasmvisor.supervisor.shim.main"]


def _circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    edges = {m: sorted({t for _, t in targets if t != m and t in MODULES}) for m, targets in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circles() -> None:
    assert _circles() == []


def test_the_circle_finder_finds_a_circle() -> None:
    GRAPH["wasmvisor.errors"].add((0, "wasmvisor.spec"))
    try:
        assert ["wasmvisor.errors", "wasmvisor.spec"] in _circles()
    finally:
        GRAPH["wasmvisor.errors"].discard((0, "wasmvisor.spec"))


@pytest.mark.parametrize("package", sorted(m for m, p in MODULES.items()
                                           if p.name == "__init__.py" and not m.startswith("wasmvisor.proto")))
def test_each_package_says_what_it_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    assert "import" in doc.lower(), f"{package}: its docstring should say what it may import"
