"""containerd 2.x asks the shim for its RuntimeInfo (`-info`) and shows it through the introspection API:
`ctr plugins inspect-runtime --runtime io.containerd.wasmvisor.v1` (containerd 1.6 and 1.7 have neither).
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.containerd import PrivateContainerd
from tests.e2e.ctr import Ctr

pytestmark = pytest.mark.e2e

RUNTIME = "io.containerd.wasmvisor.v1"


@pytest.fixture
def ctr(containerd: PrivateContainerd) -> Ctr:
    if not containerd.line.startswith("2."):
        pytest.skip(f"containerd {containerd.line} has no runtime introspection (`-info` is a 2.x request)")
    return containerd.ctr("default")


def test_inspect_runtime_shows_wasmvisors_name_version_and_features(ctr: Ctr) -> None:
    proc = ctr.run("plugins", "inspect-runtime", "--runtime", RUNTIME, check=True)
    info = json.loads(proc.stdout)
    assert info["Name"] == RUNTIME
    assert info["Version"]["Version"] == "0.1.0"
    assert info["Options"] is None
    linux = info["Features"]["linux"]
    assert "pid" in linux["namespaces"] and "user" not in linux["namespaces"]
    assert linux["mountExtensions"]["idmap"]["enabled"] is False
    assert "rbind" in info["Features"]["mountOptions"]


def test_inspect_runtime_echoes_the_runtime_options_it_was_given(ctr: Ctr) -> None:
    proc = ctr.run("plugins", "inspect-runtime", "--runtime", RUNTIME, "--runtime-config-path", "/etc/wasmvisor.toml",
                   check=True)
    assert json.loads(proc.stdout)["Options"]["config_path"] == "/etc/wasmvisor.toml"
