"""WASI 0.2 components through the wasmtime engine, on components written in the component model's
text format (no tool needed): the `wasi:cli/run` export and its ok/err, `path#name`, traps, the memory
limit, missing imports named at Create, and the compiled-component cache.

Command components built from C (stdout, args, env, files) run in the e2e tests, which have the tools.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from wasmvisor.engines.base import Entrypoint, GuestError, RuntimeContext, Stdio, WasmLayer
from wasmvisor.engines.catalog import MODULE_LAYER
from wasmvisor.engines.wasmtime_engine import WasmtimeEngine


def component(core_body: str, exports: str, imports: str = "") -> bytes:
    """A component around one core module `$m` (instance `$i`); `exports` lifts its functions."""
    return bytes(wasmtime.wat2wasm(f"""(component {imports}
      (core module $m (memory (export "memory") 1) {core_body})
      (core instance $i (instantiate $m))
      (type $r (result))
      {exports})"""))


def run_returning(code: int, extra_core: str = "", extra_exports: str = "") -> bytes:
    """A command component whose `wasi:cli/run@0.2.3` returns ok (code 0) or err."""
    return component(
        f'(func (export "run") (result i32) i32.const {code}) {extra_core}',
        f"""(func $run (result $r) (canon lift (core func $i "run")))
            (instance $cli (export "run" (func $run)))
            (export "wasi:cli/run@0.2.3" (instance $cli)) {extra_exports}""",
    )


GREET_AND_BOOM = run_returning(
    1,
    '(func (export "boom") unreachable) (func (export "fine")) (func (export "add") (param i32) (result i32) '
    "local.get 0)",
    """(func (export "boom") (canon lift (core func $i "boom")))
       (func (export "fine") (canon lift (core func $i "fine")))
       (func (export "add") (param "x" u32) (result u32) (canon lift (core func $i "add")))""",
)

GROW = component(
    '(func (export "run") (result i32) (i32.eq (memory.grow (i32.const 100)) (i32.const -1)))',
    """(func $run (result $r) (canon lift (core func $i "run")))
       (instance $cli (export "run" (func $run)))
       (export "wasi:cli/run@0.2.0" (instance $cli))""",
)

KEYVALUE = component(
    '(func (export "run") (result i32) i32.const 0)',
    """(func $run (result $r) (canon lift (core func $i "run")))
       (instance $cli (export "run" (func $run)))
       (export "wasi:cli/run@0.2.0" (instance $cli))""",
    imports='(import "wasi:keyvalue/store@0.2.0-draft" (instance (export "get" (func (param "k" string)))))',
)


class Root:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.engine = WasmtimeEngine(parallel_compilation=False)

    def ctx(self, wasm: bytes, func: str = "_start", memory_limit: int | None = None,
            layer: bool = False) -> RuntimeContext:
        (self.root / "app.wasm").write_bytes(wasm)
        return RuntimeContext(
            args=("/app.wasm",), envs=(), cwd="/",
            entrypoint=Entrypoint("app", "/app.wasm", str(self.root / "app.wasm"), func), root=str(self.root),
            memory_limit=memory_limit, wasm_layers=(WasmLayer(MODULE_LAYER, wasm),) if layer else (),
        )

    def run(self, wasm: bytes, **kwargs: object) -> int:
        return self.engine.prepare(self.ctx(wasm, **kwargs))(Stdio())  # type: ignore[arg-type]


@pytest.fixture
def root(tmp_path: Path) -> Root:
    folder = tmp_path / "root"
    folder.mkdir()
    return Root(folder)


def test_run_returning_ok_exits_0_and_err_exits_1(root: Root) -> None:
    assert (root.run(run_returning(0)), root.run(run_returning(1))) == (0, 1)


def test_a_component_in_an_application_wasm_layer_runs_as_a_component(root: Root) -> None:
    assert root.run(run_returning(1), layer=True) == 1


def test_hash_name_calls_that_export_instead_of_run(root: Root) -> None:
    # `run` returns err (1); `fine` returns nothing (0); `boom` traps (137).
    assert [root.run(GREET_AND_BOOM, func=f) for f in ("_start", "fine", "boom")] == [1, 0, 137]


def test_trap_reason_is_trap(root: Root) -> None:
    assert getattr(root.run(GREET_AND_BOOM, func="boom"), "reason", None) == "trap"


def test_memory_limit_of_the_spec_stops_memory_growth(root: Root) -> None:
    assert root.run(GROW) == 0
    assert root.run(GROW, memory_limit=2 * 65536) == 1


@pytest.mark.parametrize(("func", "message"), [
    ("nope", "component /app.wasm: no exported function 'nope' (exported functions: add, boom, fine)"),
    ("add", "component /app.wasm: function 'add' takes 1 parameters; an entrypoint takes none"),
    ("wasi:cli/run@0.2.3", "component /app.wasm: export 'wasi:cli/run@0.2.3' is not a function"),
])
def test_bad_entrypoint_functions_are_named_at_create(root: Root, func: str, message: str) -> None:
    with pytest.raises(GuestError) as err:
        root.engine.prepare(root.ctx(GREET_AND_BOOM, func=func))
    assert str(err.value) == message


def test_an_import_the_engine_lacks_is_named_at_create(root: Root) -> None:
    with pytest.raises(GuestError) as err:
        root.engine.prepare(root.ctx(KEYVALUE))
    assert str(err.value).startswith("component /app.wasm: unknown import wasi:keyvalue/store@0.2.0-draft; ")


def test_invalid_component_is_named(root: Root) -> None:
    with pytest.raises(GuestError) as err:
        root.engine.prepare(root.ctx(b"\0asm\x0d\0\x01\0\xff\xff"))
    assert str(err.value).startswith("component /app.wasm: invalid component: ")
    assert "\n" not in str(err.value)


def test_compiled_component_is_cached_and_loaded_by_another_engine(root: Root, private_module_cache: Path) -> None:
    assert root.run(run_returning(1)) == 1
    entries = sorted(p.suffix for p in private_module_cache.iterdir() if not p.name.endswith(".lock"))
    assert entries == [".cwasm", ".meta"]
    assert b"component" in next(private_module_cache.glob("*.meta")).read_bytes()
    assert WasmtimeEngine(parallel_compilation=False).prepare(root.ctx(run_returning(1)))(Stdio()) == 1
