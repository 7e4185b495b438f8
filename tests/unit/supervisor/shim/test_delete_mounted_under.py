"""`delete` imports the mounts module only when something is mounted under the bundle's rootfs, and protobuf
only when a task is left (init.pid)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wasmvisor.supervisor.shim import delete


def _mountinfo(tmp_path: Path, *points: str) -> str:
    path = tmp_path / "mountinfo"
    path.write_text("".join(f"{20 + i} 1 0:{i} / {p} rw,relatime - tmpfs tmpfs rw\n" for i, p in enumerate(points)))
    return str(path)


def test_a_mount_at_or_below_the_path_counts(tmp_path: Path) -> None:
    rootfs = tmp_path / "b" / "rootfs"
    rootfs.mkdir(parents=True)
    assert delete.mounted_under(str(rootfs), _mountinfo(tmp_path, "/", str(rootfs)))
    assert delete.mounted_under(str(rootfs), _mountinfo(tmp_path, "/", f"{rootfs}/proc"))


def test_a_sibling_with_the_same_prefix_does_not(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    assert not delete.mounted_under(str(rootfs), _mountinfo(tmp_path, "/", f"{rootfs}2", str(tmp_path)))


def test_escaped_names_match(tmp_path: Path) -> None:
    rootfs = tmp_path / "a b\\c" / "rootfs"
    rootfs.mkdir(parents=True)
    escaped = str(rootfs).replace("\\", "\\134").replace(" ", "\\040")
    assert delete.mounted_under(str(rootfs), _mountinfo(tmp_path, "/", escaped))


def test_unreadable_mountinfo_means_look_anyway(tmp_path: Path) -> None:
    assert delete.mounted_under(str(tmp_path), str(tmp_path / "absent"))


def test_delete_with_nothing_mounted_does_not_import_mounts(tmp_path: Path) -> None:
    code = (
        "import io, sys\n"
        "from wasmvisor.supervisor.shim import delete\n"
        "from wasmvisor.supervisor.shim.cliargs import ShimArgs\n"
        f"delete.run(ShimArgs(namespace='ns', id='t1', bundle={str(tmp_path)!r}, action='delete'),"
        " stdout=io.BytesIO(), stderr=io.StringIO())\n"
        "print('wasmvisor.supervisor.tasks.mounts' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_delete_of_a_deleted_task_imports_no_protobuf(tmp_path: Path) -> None:
    code = (
        "import io, sys\n"
        "from wasmvisor.supervisor.shim import delete\n"
        "from wasmvisor.supervisor.shim.cliargs import ShimArgs\n"
        "out = io.BytesIO()\n"
        f"delete.run(ShimArgs(namespace='ns', id='t1', bundle={str(tmp_path)!r}, action='delete'),"
        " stdout=out, stderr=io.StringIO())\n"
        "print(repr(out.getvalue()), any(m.startswith('google.protobuf') for m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "b'' False", done.stderr
