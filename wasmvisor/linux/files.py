"""The one atomic file write: a temporary file beside the target, renamed over it.

Cheap to import (only `os`): `start` writes the bundle's address file with it.
"""

from __future__ import annotations

import os


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` (file mode exactly `mode`) so that readers see the old file or the
    whole new one, never a part: written to a new hidden name in the same folder, then renamed over
    `path`. The temporary file is removed when anything fails.

    No fsync: what is written this way is state under /run (tmpfs), a cache checked when read (the
    module cache, containerd's version) or a file setup writes again (the entry script), so a power
    cut costs at most a rewrite, where an fsync would add a disk flush to every cold compile."""
    target = os.fspath(path)
    folder, name = os.path.split(target)
    for attempt in range(100):
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{attempt}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(17, f"no free temporary name for {target}")  # 17: EEXIST (errno stays unloaded)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
        finally:
            os.close(fd)
        os.rename(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
