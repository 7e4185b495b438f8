"""clone(2)'s namespace flags (linux/sched.h), for unshare and setns: the worker's container set-up and
the supervisor's pod namespaces."""

from __future__ import annotations

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
CLONE_FS = 0x00000200
"""Not a namespace: unshared, the calling thread stops sharing its root and cwd with the others (setns
into a mount namespace needs that)."""
