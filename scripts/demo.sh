#!/usr/bin/env bash
# Demo: set up, start a private containerd, build a wasm "hello" image, run it through wasmvisor with
# `ctr run --rm --runtime io.containerd.wasmvisor.v1`, print its output, stop containerd, clean up.
# Run as root. The system containerd is never used. Exits with ctr's status.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup.sh"
cd "$REPO"
exec .venv/bin/python - <<'PY'
import shlex
import sys
from pathlib import Path

from tests.e2e.containerd import WASMVISOR_RUNTIME, private_containerd
from tests.guests.build import build
from wasmvisor.image import build_oci_tar

REF = "docker.io/wasmvisor/hello:latest"
NAMESPACE = "wasmvisor-demo"

with private_containerd(shim_dirs=[Path(".venv/bin").resolve()]) as containerd:
    print(f"demo: private containerd {containerd.binaries.version()} at {containerd.address}")
    image_tar = containerd.base / "hello.tar"
    wasm = build("hello", Path("_work/guests"))
    build_oci_tar(image_tar, REF, {"/hello.wasm": wasm.read_bytes()}, entrypoint=["/hello.wasm"])
    ctr = containerd.ctr(NAMESPACE)
    ctr.import_image(image_tar)
    print(f"demo: built and imported {REF} (entrypoint /hello.wasm)")
    argv = ctr.run_args(REF, "hello", runtime=WASMVISOR_RUNTIME)
    shown = [a for a in argv if not a.startswith("--fifo-dir") and a != str(containerd.fifo_dir)]
    print(f"$ ctr -n {NAMESPACE} " + shlex.join(shown))
    result = ctr.run_container(REF, "hello")
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        print(f"demo: ctr exited with {result.returncode}; containerd's log ends with:", file=sys.stderr)
        print(containerd.log_tail(20), file=sys.stderr)
    ctr.remove_all()
print("demo: containerd stopped, temporary files removed")
sys.exit(result.returncode)
PY
