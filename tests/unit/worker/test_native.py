"""The native executor: which entrypoints are native (find_native on a temp root) and what an
exec looks like from outside (exec_native of the host's static busybox in forked children)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.unit.worker.child import run_child
from wasmvisor.worker.identity import apply_identity
from wasmvisor.worker.native import (
    DEFAULT_PATH,
    exec_native,
    exit_code_of_exec_error,
    find_native,
    is_native_header,
    path_dirs,
)

BUSYBOX = "/bin/busybox"
needs_busybox = pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A container root: an ELF, a script, a wasm module, plain text, symlinks in and out."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "usr" / "bin").mkdir(parents=True)
    (rootfs / "app").mkdir()
    elf = rootfs / "bin" / "tool"
    elf.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 57)
    elf.chmod(0o755)
    (rootfs / "bin" / "alias").symlink_to("tool")
    script = rootfs / "usr" / "bin" / "run.sh"
    script.write_bytes(b"#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    (rootfs / "app" / "app.wasm").write_bytes(b"\0asm\x01\0\0\0")
    (rootfs / "app" / "notes.txt").write_bytes(b"just text\n")
    noexec = rootfs / "bin" / "noexec"
    noexec.write_bytes(b"\x7fELF")
    noexec.chmod(0o644)
    # Points at the host's busybox: inside the root it names /bin/busybox there, which is missing.
    (rootfs / "bin" / "escape").symlink_to(BUSYBOX)
    (rootfs / "bin" / "climb").symlink_to("../../../../../../bin/busybox")
    return rootfs


def test_elf_and_script_by_path_are_native(root: Path) -> None:
    assert find_native(str(root), "/bin/tool", [], "/") == "/bin/tool"
    assert find_native(str(root), "/usr/bin/run.sh", [], "/") == "/usr/bin/run.sh"
    assert find_native(str(root), "../bin/tool", [], "/app") == "/app/../bin/tool"


def test_symlink_is_followed_inside_the_root_and_the_given_path_kept(root: Path) -> None:
    # Kept as given: a multi-call binary (busybox) or a script's $0 sees the name the spec used.
    assert find_native(str(root), "/bin/alias", [], "/") == "/bin/alias"


def test_symlinks_pointing_out_of_the_root_do_not_reach_host_binaries(root: Path) -> None:
    assert find_native(str(root), "/bin/escape", [], "/") is None
    assert find_native(str(root), "/bin/climb", [], "/") is None
    assert find_native(str(root), "/../../bin/busybox", [], "/") is None


def test_wasm_text_and_missing_files_are_not_native(root: Path) -> None:
    assert find_native(str(root), "/app/app.wasm", [], "/") is None
    assert find_native(str(root), "app.wasm", [], "/app") is None
    assert find_native(str(root), "/app/notes.txt", [], "/") is None
    assert find_native(str(root), "/app/missing", [], "/") is None
    assert find_native(str(root), "/app", [], "/") is None


def test_wasm_function_entrypoint_is_wasm_at_once(root: Path) -> None:
    assert find_native(str(root), "/bin/tool#main", [], "/") is None
    assert find_native(str(root), "app.wasm#greet", [], "/app") is None


def test_bare_name_is_looked_up_in_the_specs_path(root: Path) -> None:
    assert find_native(str(root), "run.sh", ["PATH=/bin:/usr/bin"], "/") == "/usr/bin/run.sh"
    assert find_native(str(root), "tool", ["PATH=/usr/bin"], "/") is None
    assert find_native(str(root), "alias", ["A=1", "PATH=/bin"], "/") == "/bin/alias"


def test_bare_name_without_path_uses_the_default_path(root: Path) -> None:
    assert find_native(str(root), "run.sh", ["A=1"], "/") == "/usr/bin/run.sh"
    assert path_dirs([]) == DEFAULT_PATH.split(":")
    assert path_dirs(["PATH=/a::/b"]) == ["/a", ".", "/b"]


def test_path_lookup_skips_files_without_execute_permission(root: Path) -> None:
    assert find_native(str(root), "noexec", ["PATH=/bin"], "/") is None
    # By path it is native (the exec then fails with EACCES, as it would with runc).
    assert find_native(str(root), "/bin/noexec", [], "/") == "/bin/noexec"


def test_headers_and_exit_codes() -> None:
    assert is_native_header(b"\x7fELF")
    assert is_native_header(b"#!/b")
    assert not is_native_header(b"\0asm")
    assert not is_native_header(b"")
    assert exit_code_of_exec_error(2) == 127  # ENOENT
    assert exit_code_of_exec_error(13) == 126  # EACCES
    assert exit_code_of_exec_error(8) == 126  # ENOEXEC


# --- exec_native in forked children ------------------------------------------------------------------


@needs_busybox
def test_exec_busybox_true_and_false_exit_0_and_1() -> None:
    assert run_child(lambda: exec_native(BUSYBOX, ["true"], ["PATH=/bin"], "/", None))[0] == 0
    assert run_child(lambda: exec_native(BUSYBOX, ["false"], ["PATH=/bin"], "/", None))[0] == 1


@needs_busybox
def test_exec_passes_args_env_and_cwd(tmp_path: Path) -> None:
    code, out = run_child(lambda: exec_native(
        BUSYBOX, ["sh", "-c", 'echo "$1 $WV_X $(pwd)"', "sh", "arg one"], ["WV_X=from-env", "PATH=/bin"],
        str(tmp_path), None))
    assert (code, out.decode()) == (0, f"arg one from-env {tmp_path}\n")


@needs_busybox
def test_exec_gives_a_fresh_signal_state_and_no_worker_fds() -> None:
    import signal

    def body() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        os.open("/dev/null", os.O_RDONLY)  # inheritable fds above 2 must not reach the program
        fd = os.open("/dev/null", os.O_RDONLY)
        os.set_inheritable(fd, True)
        exec_native(BUSYBOX, ["sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status; ls /proc/self/fd"],
                    ["PATH=/bin"], "/", None)

    code, out = run_child(body)
    assert code == 0, out
    words = out.decode().split()
    blocked = int(words[words.index("SigBlk:") + 1], 16)
    ignored = int(words[words.index("SigIgn:") + 1], 16)
    fds = sorted(int(w) for w in words[words.index("SigIgn:") + 2:])
    assert blocked == 0
    assert not ignored & (1 << (signal.SIGTERM - 1)) and not ignored & (1 << (signal.SIGPIPE - 1))
    assert fds[:3] == [0, 1, 2] and len(fds) == 4  # and ls's own directory fd


def test_exec_of_a_missing_program_writes_to_stderr_and_exits_127() -> None:
    code, out = run_child(lambda: exec_native("/no/such/program", ["x"], [], "/", None))
    assert code == 127
    assert out.decode() == "wasmvisor: exec /no/such/program: No such file or directory\n"


def test_exec_of_a_non_executable_file_exits_126(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"\x7fELF")
    plain.chmod(0o644)
    noexec_format = tmp_path / "bad"
    noexec_format.write_bytes(b"\x7fELF" + b"\0" * 60)
    noexec_format.chmod(0o755)

    def body(path: Path) -> None:
        exec_native(str(path), ["x"], [], "/", None)  # even root needs one execute bit

    code, out = run_child(lambda: body(plain))
    assert (code, out.decode()) == (126, f"wasmvisor: exec {plain}: Permission denied\n")
    code, out = run_child(lambda: body(noexec_format))
    assert (code, out.decode()) == (126, f"wasmvisor: exec {noexec_format}: Exec format error\n")


def test_a_bad_cwd_is_raised_before_anything_is_loaded(tmp_path: Path) -> None:
    code, out = run_child(lambda: exec_native(BUSYBOX, ["true"], [], str(tmp_path / "missing"), None))
    assert code == 99
    assert f"InvalidArgument: process.cwd {tmp_path / 'missing'}: chdir: No such file or directory" in out.decode()


def test_a_nul_byte_in_args_is_invalid() -> None:
    code, out = run_child(lambda: exec_native(BUSYBOX, ["echo", "a\0b"], [], "/", None))
    assert code == 99
    assert "process.args[1]" in out.decode() and "NUL" in out.decode()


@needs_busybox
def test_script_with_shebang_runs_through_its_interpreter(tmp_path: Path) -> None:
    shutil.copy(BUSYBOX, tmp_path / "busybox")
    script = tmp_path / "hello.sh"
    script.write_text(f"#!{tmp_path}/busybox sh\necho script says $1\nexit 4\n")
    script.chmod(0o755)
    code, out = run_child(lambda: exec_native(str(script), ["hello.sh", "hi"], [], "/", None))
    assert (code, out.decode()) == (4, "script says hi\n")



def test_a_cwd_only_root_may_search_still_works_for_another_user(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    tmp_path.chmod(0o755)

    def body() -> None:
        apply_identity({"user": {"uid": 1000, "gid": 1000}, "capabilities": {}, "cwd": str(private)})
        exec_native(BUSYBOX, ["sh", "-c", "id -u; pwd"], [], str(private), None)

    code, out = run_child(body)
    assert (code, out.decode()) == (0, f"1000\n{private}\n")
