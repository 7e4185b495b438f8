"""A command (ctr with --tty) run on a pseudo-terminal of the test's own, of a given window size:
read what it prints, type into it, resize it (then SIGWINCH to ctr, as a terminal emulator's
resize would send to its foreground process), wait for its end."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Sequence

from wasmvisor.linux.pty import set_window_size


class TerminalSession:
    def __init__(self, argv: Sequence[str], env: dict[str, str], cols: int = 80, rows: int = 24) -> None:
        self.master, slave = pty.openpty()
        set_window_size(self.master, cols, rows)
        try:
            self.process = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=env)
        finally:
            os.close(slave)
        self.output = b""

    @property
    def text(self) -> str:
        """What was printed so far, without carriage returns (each terminal on the way adds one)."""
        return self.output.decode(errors="replace").replace("\r", "")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 4096)
        except OSError:  # EIO: every slave end is closed
            return False
        self.output += data
        return bool(data)

    def read_until(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text:
            if time.monotonic() > deadline or not self._read(0.1) or (
                    self.process.poll() is not None and not self._read(0.1)):
                if text in self.text:
                    return
                raise AssertionError(f"{text!r} not printed (ctr {self.process.poll()}): {self.text!r}")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def resize(self, cols: int, rows: int) -> None:
        set_window_size(self.master, cols, rows)
        self.process.send_signal(signal.SIGWINCH)

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            if not self._read(0.1):
                break
        try:
            code = self.process.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        while self._read(0.05) and select.select([self.master], [], [], 0)[0]:
            pass
        os.close(self.master)
        return code
