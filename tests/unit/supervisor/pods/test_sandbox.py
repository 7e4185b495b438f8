"""The pod sandbox's state machine (pods/sandbox.py): CREATED -> READY -> STOPPED, one exit for every Wait."""

from __future__ import annotations

import pytest

from wasmvisor.errors import FailedPrecondition
from wasmvisor.supervisor.pods.config import PodConfig
from wasmvisor.supervisor.pods.namespaces import PodNamespaces
from wasmvisor.supervisor.pods.sandbox import Pod


def _pod() -> Pod:
    return Pod(id="sb", bundle="/b", config=PodConfig(), namespaces=PodNamespaces())


def test_a_started_pod_is_ready_then_stopped_once() -> None:
    pod = _pod()
    assert pod.state == "SANDBOX_NOTREADY"
    pod.start()
    assert pod.state == "SANDBOX_READY" and not pod.stopped.is_set()
    pod.stop()
    first = pod.exited_at_ns
    assert pod.state == "SANDBOX_NOTREADY" and pod.stopped.is_set() and first
    pod.stop()  # a second Stop changes nothing
    assert pod.exited_at_ns == first


def test_a_stopped_pod_cannot_start_again() -> None:
    pod = _pod()
    pod.stop()
    with pytest.raises(FailedPrecondition, match="sandbox sb: invalid state transition: STOPPED => READY"):
        pod.start()
