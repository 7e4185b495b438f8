"""The worker's OCI features document (what `-info` hands containerd, as `runc features` does runc's)."""

from __future__ import annotations

import json
import subprocess
import sys

from wasmvisor.worker.features import features


def test_it_claims_only_what_the_worker_sets_up() -> None:
    doc = features()
    linux = doc["linux"]
    assert set(linux["namespaces"]) == {"mount", "uts", "ipc", "network", "pid", "cgroup"}
    assert doc["hooks"] == []
    assert linux["mountExtensions"]["idmap"]["enabled"] is False
    assert {"ro", "rbind", "rprivate", "rro"} <= set(doc["mountOptions"])
    assert "CAP_SYS_ADMIN" in linux["capabilities"]


def test_the_module_prints_it_as_json() -> None:
    out = subprocess.run([sys.executable, "-m", "wasmvisor.worker.features"], capture_output=True, check=True)
    assert json.loads(out.stdout) == features()
