"""The worker waits for the supervisor's `Joined` (its cgroup) only when its Configure asks it to."""

from __future__ import annotations

import socket

import pytest

from wasmvisor.errors import FailedPrecondition
from wasmvisor.ipc import messages
from wasmvisor.ipc.channel import Channel
from wasmvisor.worker.cgroup_wait import wait_before_namespaces, wait_for_cgroup
from wasmvisor.worker.spec_linux import parse_namespaces


def configure(await_join: bool) -> messages.Configure:
    return messages.Configure(namespace="ns", id="t", bundle="/b", rootfs="/b/rootfs", await_join=await_join)


def test_joined_lets_the_worker_go_on_and_the_next_message_is_still_there() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(messages.encode(messages.Joined()) + messages.encode(messages.StartGuest()))
        channel = Channel(theirs)
        wait_for_cgroup(channel, configure(True))
        assert channel.receive() == messages.StartGuest()


def test_a_worker_not_asked_to_wait_reads_nothing() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(messages.encode(messages.StartGuest()))
        channel = Channel(theirs)
        wait_for_cgroup(channel, configure(False))
        assert channel.receive() == messages.StartGuest()


def test_the_supervisor_closing_the_pipe_first_is_a_clear_error() -> None:
    ours, theirs = socket.socketpair()
    with theirs:
        ours.close()
        with pytest.raises(FailedPrecondition, match="task t: the supervisor closed the pipe before the worker was in"):
            wait_for_cgroup(Channel(theirs), configure(True))


def test_another_message_first_breaks_the_protocol() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(messages.encode(messages.StartGuest()))
        with pytest.raises(messages.ProtocolError, match="message 'start' before 'joined'"):
            wait_for_cgroup(Channel(theirs), configure(True))


def test_a_new_cgroup_namespace_is_made_only_once_the_worker_is_in_its_cgroup() -> None:
    # Its root is the cgroup its creator is in: that must be the task's, as runc orders it.
    with_cgroup_ns = {"linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "cgroup"}]}}
    without = {"linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}]}}
    assert wait_before_namespaces(parse_namespaces(with_cgroup_ns)) is True
    assert wait_before_namespaces(parse_namespaces(without)) is False
