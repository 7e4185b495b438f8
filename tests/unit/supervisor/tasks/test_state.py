import pytest

from wasmvisor.errors import FailedPrecondition, NotFound
from wasmvisor.supervisor.tasks.state import Status, TaskState


def test_a_task_goes_created_starting_running_stopped_deleting():
    s = TaskState()
    s.start()
    s.started()
    s.stop()
    s.delete()
    assert s.status is Status.DELETING


def test_a_created_task_can_be_deleted_without_starting():
    s = TaskState()
    s.delete()
    assert s.status is Status.DELETING


def test_a_running_task_cannot_be_deleted():
    s = TaskState()
    s.start()
    s.started()
    with pytest.raises(FailedPrecondition, match="invalid state transition: RUNNING => DELETING"):
        s.delete()


def test_start_twice_is_refused():
    s = TaskState()
    s.start()
    with pytest.raises(FailedPrecondition, match="STARTING => STARTING"):
        s.start()


def test_a_stopped_task_cannot_start_again():
    s = TaskState()
    s.stop()
    with pytest.raises(FailedPrecondition, match="STOPPED => STARTING"):
        s.start()


def test_kill_of_a_stopped_task_is_not_found_like_runc():
    s = TaskState()
    s.check_killable()
    s.stop()
    with pytest.raises(NotFound, match="process already finished"):
        s.check_killable()


def test_a_delete_that_failed_after_the_guest_ended_goes_back_to_stopped_and_can_be_retried():
    s = TaskState()
    s.delete()
    s.delete_failed(ended=True)
    assert s.status is Status.STOPPED
    s.delete()
    assert s.status is Status.DELETING


def test_a_delete_that_failed_before_the_guest_ended_goes_back_to_created():
    s = TaskState()
    s.delete()
    s.delete_failed(ended=False)
    assert s.status is Status.CREATED


def test_only_a_deleting_task_can_fail_its_delete():
    s = TaskState()
    with pytest.raises(FailedPrecondition, match="CREATED => STOPPED"):
        s.delete_failed(ended=True)
