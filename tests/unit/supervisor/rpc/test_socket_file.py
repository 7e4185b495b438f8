"""A server removes its socket file at the end, but never the file of a newer server on the same path."""

from __future__ import annotations

import socket
from pathlib import Path

from wasmvisor.supervisor.rpc.socket_file import SocketFile


def _bind(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    return sock


def test_remove_unlinks_the_servers_own_file_once(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with _bind(path):
        own = SocketFile(str(path))
        assert own.remove()
        assert not path.exists()
        assert not own.remove()


def test_remove_leaves_a_newer_servers_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with _bind(path):
        old = SocketFile(str(path))
    path.unlink()  # a `start` found the old server gone and bound the path again
    (tmp_path / "other").touch()  # (ext4 would give the new file the old inode number, often the same ctime tick)
    with _bind(path):
        assert not old.remove()
        assert path.exists()


def test_mark_adopts_a_file_bound_after_construction(tmp_path: Path) -> None:
    path = tmp_path / "s"
    later = SocketFile(str(path))  # a gRPC server binds the path itself, after this
    assert not later.remove()
    with _bind(path):
        later.mark()
        assert later.remove()
    assert not path.exists()


def test_no_path_is_never_removed() -> None:
    assert not SocketFile("").remove()
