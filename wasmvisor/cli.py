"""The `wasmvisor` command for people: `wasmvisor version` (later: `wasmvisor image build`, ...).

Each subcommand registers itself in `build_parser` with a handler taking the parsed namespace and
returning the exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wasmvisor.version import NAME, version_text


def _version(_: argparse.Namespace) -> int:
    sys.stdout.write(version_text(NAME))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wasmvisor", description="Run WebAssembly programs as containers.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    version = commands.add_parser("version", help="print the version and the git revision")
    version.set_defaults(handler=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script `wasmvisor`."""
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
