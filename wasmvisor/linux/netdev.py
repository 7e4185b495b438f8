"""Network devices by ioctl: bring an interface up (a new network namespace's loopback starts down)."""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = "16sH22x"
"""struct ifreq on Linux: the name (IFNAMSIZ 16), then a 24-byte union whose first field is the flags."""


def set_up(name: str) -> bool:
    """Set `name` up; True when it was down. Raises OSError (ENODEV: no such interface)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(_IFREQ, name.encode(), 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
        if flags & IFF_UP:
            return False
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack(_IFREQ, name.encode(), flags | IFF_UP))
        return True
