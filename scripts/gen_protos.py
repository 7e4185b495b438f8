#!/usr/bin/env python3
"""Regenerate the protobuf and gRPC modules under wasmvisor/proto from the .proto files there.

Usage: python scripts/gen_protos.py [--out DIR]
With --out the code is written below DIR instead of the repository (the staleness test uses this).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "wasmvisor" / "proto"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    rel = [str(p.relative_to(REPO)) for p in proto_files()]
    args = [
        "protoc",
        f"-I{REPO}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *rel,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("gen_protos: protoc failed")
    # Every folder that holds generated code is a regular package.
    for folder in {(out / r).parent for r in rel}:
        while folder != out and folder.is_relative_to(out / "wasmvisor" / "proto"):
            init = folder / "__init__.py"
            if not init.exists():
                init.write_text("")
            folder = folder.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO)
    ns = parser.parse_args()
    ns.out.mkdir(parents=True, exist_ok=True)
    generate(ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
