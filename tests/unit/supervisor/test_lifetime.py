"""When a supervisor ends: tasks and claims keep it, Shutdown with neither starts the linger, and ending
refuses claims and gives the socket file up before the supervisor stops. Timers run on a fake clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from wasmvisor.supervisor.lifetime import Lifetime


class FakeTimers:
    """call_later on a clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pending: list[tuple[float, int, Callable[[], None]]] = []
        self._order = 0

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self._order += 1
        self.pending.append((self.now + delay, self._order, callback))

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while True:
            due = sorted(p for p in self.pending if p[0] <= until)
            if not due:
                break
            self.pending.remove(due[0])
            self.now = due[0][0]
            due[0][2]()
        self.now = until


class Group:
    """A Lifetime with a task count to set and a record of what it did."""

    def __init__(self, tasks: int = 0) -> None:
        self.tasks = tasks
        self.timers = FakeTimers()
        self.did: list[str] = []
        self.lifetime = Lifetime(lambda: self.tasks, release=lambda: self.did.append("release"),
                                 end=lambda: self.did.append("end"), call_later=self.timers.call_later,
                                 linger=1.0, claim_seconds=30.0)


@pytest.fixture
def group() -> Group:
    return Group()


def test_shutdown_with_no_task_ends_after_the_linger_releasing_the_socket_first(group: Group) -> None:
    group.lifetime.shutdown("t1")
    group.timers.advance(0.9)
    assert group.did == []
    group.timers.advance(0.2)
    assert group.did == ["release", "end"]
    assert group.lifetime.ending


def test_shutdown_while_tasks_remain_is_ignored(group: Group) -> None:
    group.tasks = 1
    group.lifetime.shutdown("t1")
    group.timers.advance(60)
    assert group.did == []


def test_a_claim_during_the_linger_keeps_the_supervisor_until_its_tasks_shutdown(group: Group) -> None:
    group.lifetime.shutdown("t1")
    group.timers.advance(0.5)
    assert group.lifetime.claim("t2")
    group.timers.advance(5)  # past the linger: the claim holds it
    assert group.did == []
    group.lifetime.arrived("t2")  # t2's Create
    group.tasks = 1
    assert group.lifetime.claims == []
    group.timers.advance(5)
    group.tasks = 0  # t2's Delete
    group.lifetime.shutdown("t2")
    assert group.lifetime.claims == []
    group.timers.advance(1.1)
    assert group.did == ["release", "end"]


def test_the_linger_counts_from_the_last_shutdown_not_the_first(group: Group) -> None:
    """`ctr run --rm` in a loop: a linger started by an earlier run never ends a later run's supervisor."""
    group.lifetime.shutdown("run1")
    for n in range(2, 20):
        group.timers.advance(0.3)
        assert group.lifetime.claim(f"run{n}")
        group.lifetime.arrived(f"run{n}")
        group.tasks = 1
        group.timers.advance(0.05)
        group.tasks = 0
        group.lifetime.shutdown(f"run{n}")
        assert group.did == []
    group.timers.advance(1.1)
    assert group.did == ["release", "end"]


def test_an_ending_supervisor_refuses_claims(group: Group) -> None:
    group.lifetime.shutdown("t1")
    group.timers.advance(1.1)
    assert not group.lifetime.claim("t2")
    assert group.lifetime.claims == []


def test_a_claim_whose_task_never_comes_expires_and_the_idle_supervisor_ends(group: Group) -> None:
    """The supervisor launched for a task whose Create never arrives (its `start` claimed it)."""
    assert group.lifetime.claim("t1")
    group.timers.advance(29)
    assert group.did == []
    group.timers.advance(1.0)  # the claim expires, then the linger runs
    assert group.did == []
    group.timers.advance(1.1)
    assert group.did == ["release", "end"]


def test_an_expired_claim_leaves_a_supervisor_with_tasks_alone(group: Group) -> None:
    group.tasks = 2
    group.lifetime.claim("t1")
    group.timers.advance(120)
    assert group.lifetime.claims == [] and group.did == []


def test_claiming_an_id_again_renews_its_claim(group: Group) -> None:
    group.lifetime.claim("t1")
    group.timers.advance(20)
    group.lifetime.claim("t1")
    group.timers.advance(20)  # the first claim's deadline has passed, the second's has not
    assert group.lifetime.claims == ["t1"]
    group.timers.advance(12)
    assert group.lifetime.claims == [] and group.did == ["release", "end"]


def test_another_tasks_shutdown_leaves_a_claim_in_place(group: Group) -> None:
    group.lifetime.claim("t2")
    group.lifetime.shutdown("t1")
    group.timers.advance(5)
    assert group.lifetime.claims == ["t2"] and group.did == []


def test_end_is_idempotent_and_a_later_shutdown_does_nothing(group: Group) -> None:
    group.lifetime.claim("t1")
    group.lifetime.end()  # SIGTERM
    group.lifetime.end()
    group.lifetime.shutdown("t1")
    group.timers.advance(60)
    assert group.did == ["release", "end"]


def test_a_pods_containers_without_shutdown_do_not_hold_the_supervisor_after_the_pod(group: Group) -> None:
    """containerd 2.x skips Shutdown after a container of a CRI sandbox: their claims were settled by
    their Create, so the sandbox's own Shutdown ends the supervisor after the linger."""
    group.lifetime.claim("sandbox")
    group.lifetime.arrived("sandbox")
    group.tasks = 1
    for container in ("app", "sidecar"):
        assert group.lifetime.claim(container)
        group.lifetime.arrived(container)
        group.tasks += 1
    group.timers.advance(5)
    group.tasks = 0  # both containers deleted (no Shutdown), then the sandbox
    group.lifetime.shutdown("sandbox")
    group.timers.advance(1.1)
    assert group.did == ["release", "end"]


def test_a_create_without_a_claim_settles_nothing_else(group: Group) -> None:
    group.lifetime.claim("t2")
    group.lifetime.arrived("t1")  # containerd 2.x connects for a pod's container without `start`
    assert group.lifetime.claims == ["t2"]
