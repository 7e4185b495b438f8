"""systemd's manager over D-Bus: start a transient scope or slice and wait for its job, set its properties,
stop it, reset its failed state. What runc's systemd cgroup driver asks of systemd, and no more.

The client is jeepney (pure Python, blocking I/O), imported here only: a node without the systemd driver
never loads it. One short-lived connection to the system bus per call sequence; systemd sends the
JobRemoved signal of a job to the client that queued it, so no Subscribe is needed. Errors are ShimErrors
naming the unit and carrying systemd's own message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from wasmvisor.errors import FailedPrecondition, Internal, InvalidArgument, ShimError

SYSTEMD_RUN_DIR = "/run/systemd/system"
"""Exists when systemd is the host's init (sd_booted(3))."""
SYSTEM_BUS_SOCKET = "/run/dbus/system_bus_socket"
JOB_TIMEOUT_SECONDS = 30.0
"""How long a start or stop job may take; runc waits 30 s as well."""
JOB_POLL_SECONDS = 1.0
"""How long to wait for the JobRemoved signal before looking at the job itself."""
UNIT_INFINITY = 2**64 - 1
"""systemd's `infinity` for limits given as a `t` (uint64)."""

Property = tuple[str, tuple[str, Any]]
"""A unit property as StartTransientUnit takes it: (name, (D-Bus signature, value))."""


def systemd_runs_host() -> bool:
    return os.path.isdir(SYSTEMD_RUN_DIR)


def _error(unit: str, action: str, name: str, message: str) -> ShimError:
    """systemd's error reply as a ShimError: INVALID_ARGUMENT for a refused property, else INTERNAL."""
    text = f"systemd unit {unit}: {action}: {message} ({name})"
    if name in ("org.freedesktop.DBus.Error.InvalidArgs", "org.freedesktop.DBus.Error.PropertyReadOnly"):
        return InvalidArgument(text)
    if name in ("org.freedesktop.systemd1.UnitExists",):
        return FailedPrecondition(text)
    return Internal(text)


class SystemdManager:
    """One connection to org.freedesktop.systemd1 on the system bus."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @classmethod
    @contextmanager
    def connect(cls, unit: str) -> Iterator[SystemdManager]:
        from jeepney.io.blocking import DBusConnection, prep_socket

        try:
            sock = prep_socket(SYSTEM_BUS_SOCKET, timeout=5.0)
            conn = DBusConnection(sock)
        except (OSError, TimeoutError) as exc:
            raise Internal(f"systemd unit {unit}: cannot reach the D-Bus system bus at {SYSTEM_BUS_SOCKET}: "
                           f"{exc} (the systemd cgroup driver needs dbus running)") from None
        try:
            yield cls(conn)
        finally:
            conn.close()

    def _call(self, unit: str, action: str, method: str, signature: str, args: tuple[Any, ...],
              path: str = "/org/freedesktop/systemd1",
              interface: str = "org.freedesktop.systemd1.Manager") -> tuple[Any, ...]:
        from jeepney import DBusAddress, MessageType, new_method_call
        from jeepney.low_level import HeaderFields

        address = DBusAddress(path, bus_name="org.freedesktop.systemd1", interface=interface)
        try:
            reply = self._conn.send_and_get_reply(new_method_call(address, method, signature, args),
                                                  timeout=JOB_TIMEOUT_SECONDS)
        except (OSError, TimeoutError) as exc:
            raise Internal(f"systemd unit {unit}: {action}: no answer on D-Bus: {exc}") from None
        if reply.header.message_type == MessageType.error:
            name = reply.header.fields.get(HeaderFields.error_name, "")
            message = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise _error(unit, action, name, message)
        return tuple(reply.body)

    def _run_job(self, unit: str, action: str, method: str, signature: str, args: tuple[Any, ...]) -> str:
        """Queue a job with `method` and wait for its JobRemoved signal; its result ("done" is success)."""
        from jeepney import MatchRule
        from jeepney.bus_messages import message_bus

        # No sender in the rule: the signal carries systemd's unique name (":1.2"), which jeepney's local
        # filter would compare with the well-known one and never match.
        rule = MatchRule(type="signal", interface="org.freedesktop.systemd1.Manager", member="JobRemoved",
                         path="/org/freedesktop/systemd1")
        self._conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=JOB_TIMEOUT_SECONDS)
        with self._conn.filter(rule, bufsize=64) as queue:
            (job,) = self._call(unit, action, method, signature, args)
            give_up = time.monotonic() + JOB_TIMEOUT_SECONDS
            while True:
                try:
                    signal = self._conn.recv_until_filtered(queue, timeout=JOB_POLL_SECONDS)
                except TimeoutError:
                    # A signal that never comes (a bus that dropped it) must not hang Create: a job
                    # that is gone has finished, and the caller checks the unit's state instead.
                    if not self._job_exists(unit, job):
                        return ""
                    if time.monotonic() >= give_up:
                        raise Internal(f"systemd unit {unit}: {action}: job {job} did not finish within "
                                       f"{JOB_TIMEOUT_SECONDS:.0f} s") from None
                    continue
                _id, path, _unit, result = signal.body
                if path == job:
                    return str(result)

    def _job_exists(self, unit: str, job: str) -> bool:
        try:
            self._call(unit, "get job state", "Get", "ss", ("org.freedesktop.systemd1.Job", "State"),
                       path=job, interface="org.freedesktop.DBus.Properties")
        except ShimError:
            return False  # UnknownObject: the job is done
        return True

    def start_transient(self, unit: str, properties: Sequence[Property]) -> None:
        """StartTransientUnit(unit, "replace", properties) and wait for it to be up."""
        result = self._run_job(unit, "start", "StartTransientUnit", "ssa(sv)a(sa(sv))",
                               (unit, "replace", list(properties), []))
        if result == "" and self.active_state(unit) == "active":
            return
        if result != "done":
            raise Internal(f"systemd unit {unit}: start: job ended with result {result!r} "
                           f"(see journalctl -u {unit})")

    def stop(self, unit: str) -> None:
        """StopUnit and wait; a unit systemd does not know (any more) is fine."""
        try:
            self._run_job(unit, "stop", "StopUnit", "ss", (unit, "replace"))
        except ShimError as exc:
            if "NoSuchUnit" not in exc.message:
                raise

    def reset_failed(self, unit: str) -> None:
        """ResetFailedUnit; a unit that is not failed or not loaded is fine."""
        try:
            self._call(unit, "reset-failed", "ResetFailedUnit", "s", (unit,))
        except ShimError as exc:
            if "NoSuchUnit" not in exc.message and "not failed" not in exc.message:
                raise

    def set_properties(self, unit: str, properties: Sequence[Property]) -> None:
        """SetUnitProperties(unit, runtime=true, properties): what `systemctl set-property --runtime` does."""
        if properties:
            self._call(unit, "set properties", "SetUnitProperties", "sba(sv)", (unit, True, list(properties)))

    def active_state(self, unit: str) -> str:
        """The unit's ActiveState ("active", "failed", ...), "" when systemd has no such unit loaded."""
        return self._unit_property(unit, "org.freedesktop.systemd1.Unit", "ActiveState")

    def scope_result(self, unit: str) -> str:
        """A scope's Result ("success", "oom-kill", ...), "" when systemd has no such unit loaded."""
        return self._unit_property(unit, "org.freedesktop.systemd1.Scope", "Result")

    def _unit_property(self, unit: str, interface: str, name: str) -> str:
        try:
            (path,) = self._call(unit, "get unit", "GetUnit", "s", (unit,))
        except ShimError as exc:
            if "NoSuchUnit" in exc.message:
                return ""
            raise
        (value,) = self._call(unit, f"get {name}", "Get", "ss", (interface, name),
                              path=path, interface="org.freedesktop.DBus.Properties")
        return str(value[1])
