"""The `wasmvisor` command for people: `version`, `image build`, `ps` and `doctor` (wasmvisor/ops/).

Each subcommand registers itself in `build_parser` with a handler taking the parsed namespace and
returning the exit status. Bad input ends in one line on stderr and a non-zero status.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from wasmvisor.version import NAME, version_text

WASM_MAGIC = b"\0asm"
DEFAULT_ADDRESS = "/run/containerd/containerd.sock"


class CommandError(Exception):
    """A user-facing failure: its message is the one line printed on stderr."""


def _version(_: argparse.Namespace) -> int:
    sys.stdout.write(version_text(NAME))
    return 0


def _image_build(args: argparse.Namespace) -> int:
    from wasmvisor.image_layouts import build_wasm_image  # tarfile and friends: only for this command

    try:
        with open(args.wasm, "rb") as f:
            module = f.read()
    except OSError as exc:
        raise CommandError(f"{args.wasm}: {exc.strerror}") from None
    if not module.startswith(WASM_MAGIC):
        shown = module[:4].hex() if module else "nothing: the file is empty"
        raise CommandError(f"{args.wasm}: not a wasm module (starts with {shown})")
    out = args.output or f"{os.path.splitext(os.path.basename(args.wasm))[0]}.tar"
    try:
        digest = build_wasm_image(out, args.name, module, layout=args.layout,
                                  module_name=os.path.basename(args.wasm), env=args.env or None)
    except OSError as exc:
        raise CommandError(f"{out}: {exc.strerror}") from None
    print(f"{args.name} {digest} ({args.layout}) -> {out}")
    if args.do_import:
        _ctr_import(out, args.address, args.namespace)
        print(f"imported {args.name} into namespace {args.namespace}")
    return 0


def _ctr_import(tar: str, address: str, namespace: str) -> None:
    ctr = shutil.which("ctr")
    if ctr is None:
        raise CommandError("--import: ctr not found on PATH")
    # Wasm images match no host platform: without --all-platforms ctr filters them out.
    argv = [ctr, "--address", address, "-n", namespace, "images", "import", "--all-platforms", tar]
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").splitlines()
        raise CommandError(f"ctr images import: {lines[-1]}")


def _ps(args: argparse.Namespace) -> int:
    import json
    import time

    from wasmvisor.ops.ps import snapshot
    from wasmvisor.ops.ps_view import render

    if os.geteuid() != 0:
        raise CommandError("ps: run it as root (the supervisors' sockets and /proc entries are root's)")
    if args.timeout <= 0 or args.interval <= 0:  # the command line first: it is wrong on any node
        raise CommandError("ps: --timeout and --interval must be positive")
    if not os.path.isdir(args.socket_dir):
        raise CommandError(f"ps: socket folder {args.socket_dir}: not a directory")
    try:
        while True:
            snap = snapshot(args.socket_dir, args.timeout, args.namespace)
            if args.json:
                text = json.dumps(snap, indent=None if args.watch else 2) + "\n"
            else:
                # In place: home the cursor and clear the screen before each refresh.
                text = ("\x1b[H\x1b[2J" if args.watch else "") + "\n".join(render(snap)) + "\n"
            sys.stdout.write(text)
            sys.stdout.flush()
            if not args.watch:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def _doctor(args: argparse.Namespace) -> int:
    from wasmvisor.ops.doctor import examine, render

    findings = examine(args.address, args.config, args.cri_handler)
    sys.stdout.write("\n".join(render(findings)) + "\n")
    return 0 if all(f.ok for f in findings) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wasmvisor", description="Run WebAssembly programs as containers.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    version = commands.add_parser("version", help="print the version and the git revision")
    version.set_defaults(handler=_version)

    image = commands.add_parser("image", help="build wasm images")
    image_commands = image.add_subparsers(dest="image_command", metavar="COMMAND", required=True)
    build = image_commands.add_parser("build", help="build an OCI image tarball from a .wasm file (and import it)")
    build.add_argument("--wasm", required=True, help="the WASI module or component to run")
    build.add_argument("--name", required=True, help="image reference, e.g. docker.io/library/app:1")
    build.add_argument("--layout", choices=("rootfs", "wasm-layer", "component-layer", "wasm-artifact", "spin"),
                       default="rootfs",
                       help="rootfs: the file in a tar layer (any containerd); the others (containerd >= 1.6.25/"
                            "1.7.7/2.0) hold it as a layer: wasm-layer application/wasm; component-layer runwasi's "
                            "component layer; wasm-artifact the CNCF wasm artifact; spin Spin's content layer")
    build.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment of the image (repeatable)")
    build.add_argument("-o", "--output", help="the tarball to write (default: <module name>.tar)")
    build.add_argument("--import", dest="do_import", action="store_true", help="import it with `ctr images import`")
    build.add_argument("--address", default=DEFAULT_ADDRESS, help=f"containerd's socket (default {DEFAULT_ADDRESS})")
    build.add_argument("--namespace", default="default", help="containerd namespace to import into")
    build.set_defaults(handler=_image_build)

    from wasmvisor.supervisor.shim.start import socket_dir  # cheap: what `start` loads

    ps = commands.add_parser("ps", help="list the tasks of every wasmvisor supervisor on this node (root)")
    ps.add_argument("-n", "--namespace", default="", help="only the groups of this containerd namespace")
    ps.add_argument("--json", action="store_true", help="print the listing as JSON")
    ps.add_argument("--watch", action="store_true", help="refresh the listing in place until interrupted")
    ps.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes with --watch")
    ps.add_argument("--timeout", type=float, default=1.0,
                    help="seconds to wait for each supervisor before showing it as unresponsive")
    ps.add_argument("--socket-dir", default=socket_dir(),
                    help="the supervisors' socket folder (default: $WASMVISOR_SOCKET_DIR or /run/containerd/s)")
    ps.set_defaults(handler=_ps)

    doctor = commands.add_parser("doctor", help="check this node's containerd, config, shim, cgroups, cache, kernel")
    doctor.add_argument("--address", default=DEFAULT_ADDRESS, help=f"containerd's socket (default {DEFAULT_ADDRESS})")
    doctor.add_argument("--config", help="containerd's config file (default: the one on its command line, else "
                                         "/etc/containerd/config.toml)")
    doctor.add_argument("--handler", dest="cri_handler", default="",
                        help="the CRI runtime handler name that must point at wasmvisor")
    doctor.set_defaults(handler=_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script `wasmvisor`."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except CommandError as exc:
        sys.stderr.write(f"wasmvisor: {exc}\n")
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
