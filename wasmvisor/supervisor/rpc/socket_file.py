"""The file of a listening unix socket, removed by its server only while it is still that server's.

A path like `/run/containerd/s/<hash>` outlives the servers that listen on it: once a server has
removed its file, a newer one may bind the same path. Unlinking by path alone at exit would then
take the newer server's address away (its clients would get ENOENT), so the file is recognised by
its inode number and change time as they were when this server listened on it (the number alone is
not enough: ext4 hands a freed inode number to the next file at once).
"""

from __future__ import annotations

import os


class SocketFile:
    """`path`, as bound by this server: `remove()` unlinks it unless another server's file took its place."""

    __slots__ = ("path", "_identity")

    def __init__(self, path: str) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None
        self.mark()

    def mark(self) -> None:
        """Remember the file now at `path` as this server's (call once the server has bound it)."""
        self._identity = _identity(self.path)

    def remove(self) -> bool:
        """Unlink `path` if it is still the file this server listened on; True if it did. Idempotent."""
        identity, self._identity = self._identity, None
        if identity is None or _identity(self.path) != identity:
            return False
        try:
            os.unlink(self.path)
        except OSError:
            return False
        return True


def _identity(path: str) -> tuple[int, int] | None:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_ctime_ns
