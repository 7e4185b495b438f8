import pytest

from wasmvisor.errors import FailedPrecondition
from wasmvisor.supervisor.tasks.state import Status, TaskState


def running() -> TaskState:
    s = TaskState()
    s.start()
    s.started()
    return s


def test_a_running_task_pauses_and_resumes():
    s = running()
    s.pause()
    assert s.status is Status.PAUSED and s.paused and s.alive
    s.resume()
    assert s.status is Status.RUNNING and not s.paused


def test_only_a_running_task_can_pause():
    s = TaskState()
    with pytest.raises(FailedPrecondition, match="invalid state transition: CREATED => PAUSED"):
        s.pause()
    s = running()
    s.pause()
    with pytest.raises(FailedPrecondition, match="PAUSED => PAUSED"):
        s.pause()


def test_resume_of_a_task_not_paused_is_refused():
    with pytest.raises(FailedPrecondition, match="RUNNING => RUNNING"):
        running().resume()


def test_a_paused_task_cannot_be_deleted_like_runc():
    s = running()
    s.pause()
    with pytest.raises(FailedPrecondition, match="invalid state transition: PAUSED => DELETING"):
        s.delete()


def test_a_paused_task_that_is_killed_stops_and_can_be_deleted():
    s = running()
    s.pause()
    s.check_killable()
    s.stop()
    s.delete()
    assert s.status is Status.DELETING
