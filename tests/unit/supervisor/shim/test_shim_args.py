"""ShimArgs behaves as the frozen record the rest of the shim expects (it is not a dataclass, for speed)."""

from __future__ import annotations

import copy
import pickle

import pytest

from wasmvisor.supervisor.shim.cliargs import ShimArgs, parse_args


def test_defaults_and_keywords() -> None:
    args = ShimArgs(namespace="ns", id="t1", action="start")
    assert (args.namespace, args.id, args.action, args.address, args.socket_fd, args.ignored) == \
        ("ns", "t1", "start", "", None, ())
    assert args.debug is False


def test_replace_makes_a_changed_copy_and_leaves_the_original() -> None:
    args = parse_args(["-namespace", "ns", "-id", "t1", "start"])
    changed = args.replace(action="serve", socket_fd=3)
    assert (changed.action, changed.socket_fd, changed.namespace) == ("serve", 3, "ns")
    assert (args.action, args.socket_fd) == ("start", None)
    with pytest.raises(TypeError, match="no field"):
        args.replace(nonsense=1)


def test_immutable() -> None:
    args = ShimArgs(namespace="ns")
    with pytest.raises(AttributeError, match="immutable"):
        args.namespace = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del args.namespace


def test_equality_hash_and_repr() -> None:
    a = ShimArgs(namespace="ns", id="t1", ignored=("-x",))
    b = ShimArgs(namespace="ns", id="t1", ignored=("-x",))
    assert a == b and hash(a) == hash(b)
    assert a != ShimArgs(namespace="ns", id="t2")
    assert a != object()
    assert repr(a).startswith("ShimArgs(namespace='ns', address='', ")


def test_copies_and_pickles_are_equal() -> None:
    args = parse_args(["-namespace", "ns", "-id", "t1", "-debug", "-x", "start"])
    assert copy.copy(args) == args
    assert copy.deepcopy(args) == args
    assert pickle.loads(pickle.dumps(args)) == args
