"""The shim's command line, as containerd 1.6-2.x writes it and as Go's flag package would read it."""

from __future__ import annotations

import pytest

from wasmvisor.supervisor.shim.cliargs import ShimArgs, UsageError, parse_args, to_argv

START = ["-namespace", "default", "-address", "/run/containerd/containerd.sock",
         "-publish-binary", "/usr/bin/containerd", "-id", "hello", "start"]


def test_containerd_start_command_line_is_understood() -> None:
    args = parse_args(START)
    assert args == ShimArgs(namespace="default", address="/run/containerd/containerd.sock",
                            publish_binary="/usr/bin/containerd", id="hello", action="start")


def test_containerd_delete_command_line_with_bundle_and_debug() -> None:
    args = parse_args(["-namespace", "k8s.io", "-address", "/a.sock", "-publish-binary", "/c", "-id", "x",
                       "-bundle", "/run/b/x", "-debug", "delete"])
    assert (args.action, args.bundle, args.debug, args.namespace) == ("delete", "/run/b/x", True, "k8s.io")


@pytest.mark.parametrize("argv", [
    ["-id", "x", "-namespace", "ns", "start"],
    ["--id", "x", "--namespace", "ns", "start"],
    ["-id=x", "-namespace=ns", "start"],
    ["--id=x", "--namespace=ns", "start"],
])
def test_every_flag_form_gives_the_same_result(argv: list[str]) -> None:
    args = parse_args(argv)
    assert (args.id, args.namespace, args.action) == ("x", "ns", "start")


def test_value_containing_equals_sign_is_kept_whole() -> None:
    assert parse_args(["-id=a=b", "-namespace", "ns", "start"]).id == "a=b"


@pytest.mark.parametrize(("flag", "expected"), [
    ("-debug", True), ("--debug", True), ("-debug=true", True), ("-debug=1", True),
    ("-debug=false", False), ("-debug=F", False),
])
def test_bool_flags_alone_or_with_a_value(flag: str, expected: bool) -> None:
    assert parse_args([flag, "-id", "x", "-namespace", "ns", "start"]).debug is expected


def test_bad_bool_value_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="invalid boolean value 'maybe' for flag -debug"):
        parse_args(["-debug=maybe", "-id", "x", "-namespace", "ns", "start"])


@pytest.mark.parametrize("flag", ["-v", "-version", "--version"])
def test_version_needs_no_action(flag: str) -> None:
    args = parse_args([flag])
    assert args.version and args.action == ""


def test_info_needs_no_action() -> None:
    assert parse_args(["-info"]).info


def test_internal_serve_flags() -> None:
    args = parse_args(["-namespace", "ns", "-id", "t", "-group", "pod", "-socket", "/s/abc",
                       "-socket-fd", "3", "serve"])
    assert (args.group, args.socket, args.socket_fd, args.action) == ("pod", "/s/abc", 3, "serve")


def test_socket_fd_must_be_an_integer() -> None:
    with pytest.raises(UsageError, match="not an integer"):
        parse_args(["-socket-fd", "three", "-namespace", "ns", "-id", "t", "serve"])


def test_flag_missing_its_value_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="flag needs an argument: -id"):
        parse_args(["-namespace", "ns", "-id"])


def test_next_word_is_the_value_even_if_it_starts_with_a_dash_like_go() -> None:
    args = parse_args(["-id", "-weird", "-namespace", "ns", "start"])
    assert args.id == "-weird"


def test_no_action_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no action given"):
        parse_args(["-namespace", "ns", "-id", "x"])


def test_unknown_action_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown action 'publish'"):
        parse_args(["-namespace", "ns", "-id", "x", "publish"])


@pytest.mark.parametrize("missing", ["-namespace", "-id"])
def test_actions_need_namespace_and_id(missing: str) -> None:
    argv = ["-namespace", "ns", "-id", "x"]
    i = argv.index(missing)
    del argv[i:i + 2]
    with pytest.raises(UsageError, match=f"start: {missing} is required"):
        parse_args([*argv, "start"])


def test_unknown_flags_are_ignored_and_recorded() -> None:
    args = parse_args(["-namespace", "ns", "-future-flag", "value", "-id", "x", "-newbool", "-other=1",
                       "start"])
    assert args.action == "start" and args.id == "x"
    assert args.ignored == ("-future-flag", "value", "-newbool", "-other=1")


def test_unknown_flag_before_the_action_does_not_swallow_it() -> None:
    args = parse_args(["-namespace", "ns", "-id", "x", "-newbool", "delete"])
    assert args.action == "delete" and args.ignored == ("-newbool",)


def test_double_dash_ends_flags_and_extra_words_are_recorded() -> None:
    args = parse_args(["-namespace", "ns", "-id", "x", "--", "start", "-debug"])
    assert args.action == "start" and not args.debug and args.ignored == ("-debug",)


def test_to_argv_round_trips() -> None:
    args = ShimArgs(namespace="ns", address="/a", publish_binary="/c", id="x", bundle="/b", group="g",
                    socket="/s", socket_fd=3, debug=True, action="serve")
    assert parse_args([*to_argv(args), "serve"]) == args
