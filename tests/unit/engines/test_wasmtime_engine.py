"""The wasmtime engine, run in the test process on modules written in WAT (and one C guest).

The engine is made with parallel_compilation=False here: a process that compiled with
wasmtime's thread pool cannot fork a child that compiles, and other tests in this session fork.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from wasmvisor.engines.base import Entrypoint, ExitCode, GuestError, RuntimeContext, Stdio, WasmLayer
from wasmvisor.engines.wasmtime_engine import MODULE_LAYER, WasmtimeEngine, guest_env, one_line

IMPORTS = """
 (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
 (memory (export "memory") 1)
 ;; write(fd, ptr, len): iovec at 0, nwritten at 8
 (func $write (param $fd i32) (param $ptr i32) (param $len i32)
   (i32.store (i32.const 0) (local.get $ptr)) (i32.store (i32.const 4) (local.get $len))
   (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
"""


def module(body: str) -> str:
    return f"(module {IMPORTS} {body})"


HELLO = module("""
 (data (i32.const 64) "hello, world\\n")
 (func (export "_start") (call $write (i32.const 1) (i32.const 64) (i32.const 13)))""")

EXIT_42 = module("""(func (export "_start") (call $proc_exit (i32.const 42)))""")

GREET = module("""
 (data (i32.const 64) "greetings\\n")
 (func (export "_start") (call $proc_exit (i32.const 9)))
 (func (export "greet") (call $write (i32.const 1) (i32.const 64) (i32.const 10)))""")

TRAP = module("""
 (data (i32.const 64) "before\\n")
 (func $boom (unreachable))
 (func (export "_start") (call $write (i32.const 2) (i32.const 64) (i32.const 7)) (call $boom))""")


def sized_strings(sizes_get: str, get: str) -> str:
    """A module that prints the WASI args (or environ) one per line."""
    return f"""(module
 (import "wasi_snapshot_preview1" "{sizes_get}" (func $sizes (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "{get}" (func $get (param i32 i32) (result i32)))
 {IMPORTS.split('(import "wasi_snapshot_preview1" "fd_read"')[0].split(";;")[0]}
 (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
 (memory (export "memory") 1)
 (func (export "_start") (local $i i32) (local $n i32)
   (drop (call $sizes (i32.const 16) (i32.const 20)))
   (drop (call $get (i32.const 1024) (i32.const 4096)))
   (local.set $n (i32.load (i32.const 20)))
   (block $done (loop $next
     (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
     (if (i32.eqz (i32.load8_u (i32.add (i32.const 4096) (local.get $i))))
       (then (i32.store8 (i32.add (i32.const 4096) (local.get $i)) (i32.const 10))))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br $next)))
   (i32.store (i32.const 0) (i32.const 4096)) (i32.store (i32.const 4) (local.get $n))
   (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


ARGS = sized_strings("args_sizes_get", "args_get")
ENVIRON = sized_strings("environ_sizes_get", "environ_get")

CAT = module("""
 ;; copy stdin to stdout: iovec for reads at 16 (buffer 4096 bytes at 1024), nread at 24
 (func (export "_start") (local $n i32)
   (loop $more
     (i32.store (i32.const 16) (i32.const 1024)) (i32.store (i32.const 20) (i32.const 4096))
     (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
     (local.set $n (i32.load (i32.const 24)))
     (if (i32.gt_u (local.get $n) (i32.const 0))
       (then (call $write (i32.const 1) (i32.const 1024) (local.get $n)) (br $more)))))""")

READ_FILE = f"""(module
 (import "wasi_snapshot_preview1" "path_open"
   (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
 {IMPORTS}
 (data (i32.const 64) "etc/motd")
 (func (export "_start") (local $err i32)
   ;; fd 3 is the first preopen: the container root, "/"
   (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 8)
     (i32.const 0) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 32)))
   (if (local.get $err) (then (call $proc_exit (i32.add (i32.const 100) (local.get $err)))))
   (i32.store (i32.const 16) (i32.const 1024)) (i32.store (i32.const 20) (i32.const 4096))
   (drop (call $fd_read (i32.load (i32.const 32)) (i32.const 16) (i32.const 1) (i32.const 24)))
   (call $write (i32.const 1) (i32.const 1024) (i32.load (i32.const 24)))))"""

GROW = module("""
 (func (export "_start")
   (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then (call $proc_exit (i32.const 12)))))""")

C_CWD = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char buf[256];
    printf("cwd=%s PWD=%s\n", getcwd(buf, sizeof buf), getenv("PWD") ? getenv("PWD") : "-");
    if (argc > 1 && chdir(getenv("PWD")) != 0) { perror("chdir"); return 2; }
    FILE *f = fopen("data.txt", "r");
    if (!f) { perror("data.txt"); return 1; }
    fgets(buf, sizeof buf, f);
    printf("data.txt: %s", buf);
    return 0;
}
"""


class Guest:
    """A container root with one module in it, and its run's stdout/stderr."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self.engine = WasmtimeEngine(parallel_compilation=False)

    def ctx(self, source: str, args: tuple[str, ...] = (), envs: tuple[str, ...] = (), cwd: str = "/",
            func: str = "_start", **extra: object) -> RuntimeContext:
        host = str(self.root / source.lstrip("/"))
        return RuntimeContext(args=(source if func == "_start" else f"{source}#{func}", *args), envs=envs,
                              cwd=cwd, entrypoint=Entrypoint("app", source, host, func),
                              root=str(self.root), **extra)  # type: ignore[arg-type]

    def put(self, source: str, wat: str, binary: bool = True) -> None:
        path = self.root / source.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(wasmtime.wat2wasm(wat)) if binary else wat.encode())

    def run(self, ctx: RuntimeContext, stdin: bytes = b"") -> tuple[int, str, str]:
        files = {name: self.tmp / f"{name}.txt" for name in ("in", "out", "err")}
        files["in"].write_bytes(stdin)
        fds = [os.open(files["in"], os.O_RDONLY)] + [os.open(files[n], os.O_WRONLY | os.O_CREAT) for n in
                                                     ("out", "err")]
        try:
            code = self.engine.prepare(ctx)(Stdio(*fds))
        finally:
            for fd in fds:
                os.close(fd)
        return code, files["out"].read_text(), files["err"].read_text()


@pytest.fixture
def guest(tmp_path: Path) -> Guest:
    (tmp_path / "rootfs").mkdir()
    return Guest(tmp_path / "rootfs", tmp_path)


def test_hello_world_prints_exactly_its_output_and_exits_0(guest: Guest) -> None:
    guest.put("/app.wasm", HELLO)
    code, out, err = guest.run(guest.ctx("/app.wasm"))
    assert (code, out, err) == (0, "hello, world\n", "")
    assert isinstance(code, ExitCode) and code.reason == "exit"


def test_proc_exit_42_is_exit_code_42(guest: Guest) -> None:
    guest.put("/app.wasm", EXIT_42)
    assert guest.run(guest.ctx("/app.wasm"))[0] == 42


def test_hash_func_calls_that_export_instead_of_start(guest: Guest) -> None:
    guest.put("/app.wasm", GREET)
    assert guest.run(guest.ctx("/app.wasm", func="greet")) == (0, "greetings\n", "")
    assert guest.run(guest.ctx("/app.wasm"))[0] == 9


def test_a_trap_is_exit_137_with_reason_trap_and_one_log_line(
    guest: Guest, caplog: pytest.LogCaptureFixture
) -> None:
    guest.put("/app.wasm", TRAP)
    code, out, err = guest.run(guest.ctx("/app.wasm"))
    assert (code, err) == (137, "before\n")
    assert isinstance(code, ExitCode) and code.reason == "trap"
    [record] = [r for r in caplog.records if "trapped" in r.getMessage()]
    assert "\n" not in record.getMessage()
    assert "wasm `unreachable` instruction executed" in record.getMessage()


def test_args_reach_the_guest_with_argv0_the_module_path(guest: Guest) -> None:
    guest.put("/bin/echo.wasm", ARGS)
    code, out, _ = guest.run(guest.ctx("/bin/echo.wasm", args=("one", "two words", "")))
    assert (code, out) == (0, "/bin/echo.wasm\none\ntwo words\n\n")


def test_hash_func_is_not_part_of_argv0(guest: Guest) -> None:
    guest.put("/echo.wasm", ARGS.replace('(export "_start")', '(export "main")'))
    assert guest.run(guest.ctx("/echo.wasm", args=("x",), func="main"))[1] == "/echo.wasm\nx\n"


def test_env_reaches_the_guest(guest: Guest) -> None:
    guest.put("/env.wasm", ENVIRON)
    code, out, _ = guest.run(guest.ctx("/env.wasm", envs=("A=1", "B=x=y", "EMPTY=")))
    assert (code, out) == (0, "A=1\nB=x=y\nEMPTY=\n")


def test_a_file_in_the_root_is_readable_at_its_absolute_path(guest: Guest) -> None:
    (guest.root / "etc").mkdir()
    (guest.root / "etc" / "motd").write_text("welcome\n")
    guest.put("/app.wasm", READ_FILE)
    assert guest.run(guest.ctx("/app.wasm")) == (0, "welcome\n", "")


def test_stdin_is_copied_to_stdout(guest: Guest) -> None:
    guest.put("/cat.wasm", CAT)
    data = b"line 1\nline 2\n" * 1000
    assert guest.run(guest.ctx("/cat.wasm"), stdin=data) == (0, data.decode(), "")


def test_a_wat_text_file_runs_too(guest: Guest) -> None:
    guest.put("/hello.wat", HELLO, binary=False)
    assert guest.run(guest.ctx("/hello.wat")) == (0, "hello, world\n", "")


def test_a_module_layer_runs_instead_of_a_file(guest: Guest) -> None:
    layer = WasmLayer(MODULE_LAYER, bytes(wasmtime.wat2wasm(HELLO)))
    assert guest.run(guest.ctx("/not-in-the-image.wasm", wasm_layers=(layer,)))[1] == "hello, world\n"


def test_memory_limit_makes_memory_grow_fail(guest: Guest) -> None:
    guest.put("/grow.wasm", GROW)
    assert guest.run(guest.ctx("/grow.wasm"))[0] == 0
    assert guest.run(guest.ctx("/grow.wasm", memory_limit=2 * 65536))[0] == 12


def test_no_stdio_means_empty_stdin_and_discarded_output(guest: Guest) -> None:
    guest.put("/app.wasm", HELLO)
    assert guest.engine.prepare(guest.ctx("/app.wasm"))(Stdio()) == 0


ErrorCase = tuple[str, Callable[[Guest], object], str]
ERRORS: list[ErrorCase] = [
    ("missing", lambda g: None, "module /app.wasm: no such file in the container image"),
    ("elf", lambda g: (g.root / "app.wasm").write_bytes(b"\x7fELF\x02\x01\x01"),
     "module /app.wasm: not a wasm file (starts with 7f454c46)"),
    ("empty", lambda g: (g.root / "app.wasm").write_bytes(b""),
     "module /app.wasm: not a wasm file (starts with nothing: the file is empty)"),
    ("directory", lambda g: (g.root / "app.wasm").mkdir(), "module /app.wasm: is a directory"),
    ("malformed", lambda g: (g.root / "app.wasm").write_bytes(b"\0asm\x01\0\0\0\xff\xff"),
     "module /app.wasm: invalid wasm: failed to parse WebAssembly module: malformed section id"),
    ("component", lambda g: (g.root / "app.wasm").write_bytes(b"\0asm\x0d\0\x01\0"),
     "component /app.wasm: exports no wasi:cli/run@0.2.x run function (exports: none)"),
    ("missing import", lambda g: g.put("/app.wasm", '(module (import "env" "other" (func)) '
     '(import "env" "host_magic" (func)) (func (export "_start")))'),
     "module /app.wasm: unknown import env::other (and 1 more); this engine provides WASI preview 1"),
    ("wrong import type", lambda g: g.put("/app.wasm",
     '(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i64))) (func (export "_start")))'),
     "module /app.wasm: cannot link: incompatible import type for `wasi_snapshot_preview1::proc_exit`"),
    ("missing export", lambda g: g.put("/app.wasm", GREET.replace('(export "greet")', "")),
     "module /app.wasm: no exported function 'greet' (exported functions: _start)"),
    ("export not a function", lambda g: g.put("/app.wasm", GREET.replace('(export "greet")', "")
     .replace('(memory (export "memory") 1)', '(memory (export "greet") 1)')),
     "module /app.wasm: export 'greet' is not a function"),
    ("export with params", lambda g: g.put("/app.wasm", '(module (func (export "greet") (param i32)))'),
     "module /app.wasm: function 'greet' takes 1 parameters; an entrypoint takes none"),
]


@pytest.mark.parametrize(("case", "make", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_unrunnable_modules_are_guest_errors_naming_the_module(
    guest: Guest, case: str, make: Callable[[Guest], object], message: str
) -> None:
    make(guest)
    with pytest.raises(GuestError) as err:
        guest.engine.prepare(guest.ctx("/app.wasm", func="greet" if "export" in case else "_start"))
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_can_handle_checks_only_the_file(guest: Guest) -> None:
    guest.put("/app.wasm", HELLO)
    guest.engine.can_handle(guest.ctx("/app.wasm"))
    with pytest.raises(GuestError, match="no such file"):
        guest.engine.can_handle(guest.ctx("/other.wasm"))


def test_guest_env_adds_pwd_only_for_another_cwd() -> None:
    assert guest_env(["A=1"], "/") == [("A", "1")]
    assert guest_env(["A=1"], "/app") == [("A", "1"), ("PWD", "/app")]
    assert guest_env(["PWD=/x"], "/app") == [("PWD", "/x")]


def test_one_line_keeps_the_causes() -> None:
    msg = "failed to parse WebAssembly module\n\nCaused by:\n    malformed section id (at offset 0x8)\n"
    assert one_line(msg) == "failed to parse WebAssembly module: malformed section id (at offset 0x8)"
    trap = ("error while executing at wasm backtrace:\n    0:     0x40 - <unknown>!boom\n\n"
            "Caused by:\n    0: memory fault at wasm address 0x10\n    1: wasm trap: out of bounds\n")
    assert one_line(trap) == "memory fault at wasm address 0x10: wasm trap: out of bounds (at 0x40 - <unknown>!boom)"


@pytest.fixture(scope="module")
def cwd_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed")
    src = tmp_path_factory.mktemp("c") / "cwd.c"
    src.write_text(C_CWD)
    out = src.with_suffix(".wasm")
    subprocess.run([clang, "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-o", str(out), str(src)],
                   check=True, capture_output=True)
    return out


def test_c_guest_relative_paths_resolve_from_root_and_pwd_names_the_cwd(guest: Guest, cwd_wasm: Path) -> None:
    """wasi-libc starts every program in "/": a spec cwd shows as PWD, not as getcwd()."""
    shutil.copy(cwd_wasm, guest.root / "cwd.wasm")
    (guest.root / "app").mkdir()
    (guest.root / "data.txt").write_text("at the root\n")
    (guest.root / "app" / "data.txt").write_text("in /app\n")
    code, out, _ = guest.run(guest.ctx("/cwd.wasm", cwd="/app"))
    assert (code, out) == (0, "cwd=/ PWD=/app\ndata.txt: at the root\n")


def test_c_guest_that_chdirs_to_pwd_reads_relative_files_from_the_cwd(guest: Guest, cwd_wasm: Path) -> None:
    shutil.copy(cwd_wasm, guest.root / "cwd.wasm")
    (guest.root / "app").mkdir()
    (guest.root / "app" / "data.txt").write_text("in /app\n")
    code, out, _ = guest.run(guest.ctx("/cwd.wasm", args=("chdir",), cwd="/app"))
    assert (code, out) == (0, "cwd=/ PWD=/app\ndata.txt: in /app\n")


def test_c_guest_in_the_default_cwd_has_no_pwd(guest: Guest, cwd_wasm: Path) -> None:
    shutil.copy(cwd_wasm, guest.root / "cwd.wasm")
    (guest.root / "data.txt").write_text("at the root\n")
    assert guest.run(guest.ctx("/cwd.wasm")) == (0, "cwd=/ PWD=-\ndata.txt: at the root\n", "")
