"""The OCI runtime features document of what a worker sets up (runtime-spec features.md), as `runc
features` prints runc's: `python -m wasmvisor.worker.features` prints it as JSON.

The shim's `-info` (supervisor/shim/info.py) runs this module, as runc's shim runs `runc features`: the
supervisor may not import the worker, and the worker's own tables are what the document has to tell.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from wasmvisor.errors import Unimplemented
from wasmvisor.linux.mount_options import PROPAGATION_OPTIONS
from wasmvisor.worker import seccomp
from wasmvisor.worker.capabilities import CAPABILITIES
from wasmvisor.worker.spec_linux import NAMESPACE_FLAGS, SPEC_FLAG_OPTIONS, UNSUPPORTED_NAMESPACES

OCI_VERSION_MIN = "1.0.0"
OCI_VERSION_MAX = "1.2.1"
"""The range of spec versions claimed: 1.0 and later, up to the one containerd 2.1 writes."""


def features() -> dict[str, Any]:
    """The features document. No hooks are run (the spec's `hooks` are ignored); cgroups are written
    directly (v1 or v2), except that a systemd-form cgroupsPath on a cgroup v2 host run by systemd becomes
    a transient scope (wasmvisor/cgroups/systemd_unit.py); idmapped mounts, AppArmor, SELinux and Intel RDT are not
    set up, so containerd 2.x refuses a spec with idmapped mounts instead of having them ignored."""
    try:
        seccomp_on = bool(seccomp.library())
    except Unimplemented:  # no libseccomp on this host: the worker refuses a spec's seccomp profile
        seccomp_on = False
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": [],
        "mountOptions": sorted({*SPEC_FLAG_OPTIONS, *PROPAGATION_OPTIONS}),
        "linux": {
            "namespaces": [ns for ns in NAMESPACE_FLAGS if ns not in UNSUPPORTED_NAMESPACES],
            "capabilities": list(CAPABILITIES),
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False, "rdma": False},
            "seccomp": {
                "enabled": seccomp_on,
                "actions": sorted(seccomp.ACTIONS) if seccomp_on else [],
                "operators": sorted(seccomp.COMPARE_OPS) if seccomp_on else [],
                "knownFlags": sorted(seccomp.FLAGS),
                "supportedFlags": sorted(seccomp.FLAGS) if seccomp_on else [],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
    }


def main() -> int:
    sys.stdout.write(json.dumps(features(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
