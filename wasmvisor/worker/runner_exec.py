"""The worker's half of the compiled runner (runner.c): at Create, before the container is sealed,
it keeps what the runner needs from the node (the node's root and dynamic loader as fds, the
compiled module's fd, the guest filter as a memfd); at Start it execs the runner in place of
running the guest in Python, so that none of the Python worker's memory stays for the guest's life.

After pivot_root the node's files have no path in the container, and the container's image has no
C library. The kept root fd does: the detached old root stays alive while an fd references it. At
Start the worker makes it its cwd and execveat()s the node's loader (the runner's PT_INTERP) through
its fd, with `--library-path` and the runner given relative to that cwd; the runner chdir()s to the
container's root as soon as it has loaded wasmtime and the module.

Which guests go this way is engines/wasmtime_runner.py `runner_refusal`; anything that fails here
before the exec leaves the guest to the Python worker (logged).
"""

from __future__ import annotations

import functools
import logging
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from setproctitle import getproctitle

from wasmvisor.engines.base import PreparedGuest
from wasmvisor.engines.wasmtime_runner import RunnerJob, plan_bytes, runner_refusal, wasmtime_library
from wasmvisor.linux import syscalls
from wasmvisor.worker.guest_filter import guest_filter

log = logging.getLogger("wasmvisor.worker")

RUNNER_BINARY = Path(__file__).with_name("_bin") / "wasmvisor-runner"
"""runner.c, built by scripts/setup.sh (and setup.py for a wheel)."""
PT_INTERP = 3


def runner_present() -> bool:
    return os.access(RUNNER_BINARY, os.X_OK)


@functools.cache
def runner_unusable() -> str | None:
    """Why this node's runner cannot run guests (None: it can), found once per zygote: the zygote says
    it once (a warning), each container's route then says it at debug level."""
    if not runner_present():
        return f"{RUNNER_BINARY} is not built"
    try:
        loader_command()
    except (OSError, ValueError) as exc:
        return str(exc)
    return None


def elf_interpreter(path: str) -> str:
    """The PT_INTERP of the 64-bit little-endian ELF file `path` (its dynamic loader)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        for i in range(phnum):
            kind, _, offset, _, _, size = struct.unpack_from("<IIQQQQ", table, i * phentsize)
            if kind == PT_INTERP:
                f.seek(offset)
                return f.read(size).rstrip(b"\0").decode()
    raise ValueError(f"{path}: no PT_INTERP (a static binary?)")


def library_dirs(maps: Iterable[str]) -> list[str]:
    """The folders of the shared libraries in `maps` (lines of /proc/self/maps), relative to `/` (pure)."""
    dirs: dict[str, None] = {}
    for line in maps:
        fields = line.split(None, 5)
        path = fields[5].strip() if len(fields) == 6 else ""
        name = os.path.basename(path)
        if path.startswith("/") and (name.endswith(".so") or ".so." in name):
            dirs[os.path.dirname(path).lstrip("/") or "."] = None
    return list(dirs)


def check_reachable(path: str, mode: int = 0o004) -> None:
    """ValueError unless every user may reach `path` (x on each folder) and has `mode` on it: the guest's
    uid execs the runner and loads the libraries, and a loader that cannot ends the task with 127 and no
    word on the channel, where the Python route would have run the guest."""
    parts = os.path.realpath(path).split("/")[1:]
    for i in range(len(parts)):
        at = "/" + "/".join(parts[: i + 1])
        need = mode if i == len(parts) - 1 else 0o001
        if os.stat(at).st_mode & need != need:
            raise ValueError(f"{at} is not {'readable' if need != 0o001 else 'searchable'} by every user")


@functools.cache
def loader_command() -> tuple[str, list[str]]:
    """The loader's host path and its arguments up to the runner's own (the folders of every library this
    process has loaded once wasmtime's library is: those of the C library and of wasmtime's own needs,
    libgcc_s...). Once per zygote (worker/main.py zygote_preload)."""
    wasmtime_library()
    with open("/proc/self/maps") as f:
        dirs = library_dirs(f)
    interp = elf_interpreter(str(RUNNER_BINARY))
    check_reachable(str(RUNNER_BINARY), 0o005)
    check_reachable(interp, 0o005)
    check_reachable(wasmtime_library())
    return interp, ["--inhibit-cache", "--library-path", ":".join(dirs), str(RUNNER_BINARY).lstrip("/")]


def runner_launch(guest: PreparedGuest, channel_fd: int, signals: Iterable[int]) -> RunnerLaunch | None:
    """The runner's launch for `guest`, its fds open (call before seal), or None when the Python worker
    runs it (engines/wasmtime_runner.py `runner_refusal`, or an fd that cannot be opened). Logs the route."""
    job: RunnerJob | None = getattr(guest, "runner_job", None)
    why = runner_refusal(job, runner_present(), os.environ) or runner_unusable()
    source = job.source if job is not None else "guest"
    if why is not None:
        log.debug("guest %s: route python (%s)", source, why)
        return None
    assert job is not None
    launch = RunnerLaunch(job, channel_fd, signals)
    try:
        launch.prepare()
    except (OSError, ValueError) as exc:
        launch.close()
        log.warning("guest %s: route python (cannot prepare the runner: %s)", source, exc)
        return None
    log.debug("guest %s: route runner (%s)", source, RUNNER_BINARY.name)
    return launch


class RunnerLaunch:
    """The fds the runner needs, opened before the container is sealed (`prepare`), and the exec (`run`)."""

    def __init__(self, job: RunnerJob, channel_fd: int, signals: Iterable[int]) -> None:
        self.job = job
        self.channel_fd = channel_fd
        self.signals = tuple(int(s) for s in signals)
        self._fds: list[int] = []

    def prepare(self) -> None:
        """Open the node's root, the loader, the module and the filter (call before seal)."""
        assert self.job.module_file is not None
        interp, self._argv = loader_command()
        self._root = self._keep(os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        self._loader = self._keep(os.open(interp, os.O_PATH | os.O_CLOEXEC))
        self._module = self._keep(os.open(self.job.module_file, os.O_RDONLY), inherited=True)
        compiled = guest_filter()
        self._filter = self._keep(os.memfd_create("wasmvisor-guest-filter", 0), inherited=True)
        os.write(self._filter, compiled.program)
        os.lseek(self._filter, 0, os.SEEK_SET)
        self._filter_flags = compiled.flags
        self._lib = wasmtime_library().lstrip("/")
        self._module_path = self.job.module_file.lstrip("/")
        plan_bytes(self.job, [])  # ValueError now, for an arg or variable it cannot carry

    def _keep(self, fd: int, inherited: bool = False) -> int:
        self._fds.append(fd)
        os.set_inheritable(fd, inherited)
        return fd

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def run(self, started_ns: int) -> NoReturn:
        """Exec the runner (never returns); OSError when the exec fails, with this process unchanged but
        for its cwd (back at `/`)."""
        title = getproctitle()  # the loader's argv[0]: the runner keeps it as the process's title
        loader_args = [title, *self._argv]
        prefix = sum(len(os.fsencode(a)) + 1 for a in loader_args[:-1])
        fields = [("title", title), ("argv-prefix", str(prefix)), ("lib", self._lib),
                  ("module", self._module_path), ("module-fd", str(self._module)),
                  ("channel", str(self.channel_fd)), ("filter-fd", str(self._filter)),
                  ("filter-flags", str(self._filter_flags)), ("started", str(started_ns)),
                  *(("signal", str(s)) for s in self.signals)]
        plan = self._keep(os.memfd_create("wasmvisor-runner-plan", 0), inherited=True)
        os.write(plan, plan_bytes(self.job, fields))
        os.lseek(plan, 0, os.SEEK_SET)
        os.set_inheritable(self.channel_fd, True)
        os.fchdir(self._root)
        try:
            syscalls.execveat(self._loader, [*loader_args, "--plan", str(plan)], [])
        except OSError:
            os.chdir("/")
            os.set_inheritable(self.channel_fd, False)
            raise
        raise AssertionError("execveat returned")
