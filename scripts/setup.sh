#!/usr/bin/env bash
# Install what wasmvisor needs on a fresh Debian 12 machine and create <repo>/.venv with wasmvisor in it.
# Run as root. Idempotent and quiet: a second run only checks (dpkg status, a stamp of pyproject.toml).
# It never starts the system containerd: tests and the demo run a private one.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
STAMP="$VENV/.wasmvisor-setup-stamp"
PACKAGES=(containerd runc clang lld wasi-libc libclang-rt-dev-wasm32 busybox-static wabt python3 python3-venv
    containernetworking-plugins nodejs wrk)
LOG="$(mktemp /tmp/wasmvisor-setup.XXXXXX.log)"

say() { echo "setup: $*"; }
die() {
    echo "setup: error: $*" >&2
    if [[ -s "$LOG" ]]; then
        echo "setup: last lines of $LOG:" >&2
        tail -n 25 "$LOG" >&2
    fi
    exit 1
}
quiet() { "$@" >>"$LOG" 2>&1; }

[[ "$(id -u)" -eq 0 ]] || die "run as root (apt-get installs packages; the tests mount filesystems)"

# --- Debian packages ---------------------------------------------------------------------------
# No pipe into `grep -q`: it stops reading at the match, and under pipefail the writer's SIGPIPE (dpkg -s
# writes a long package in several chunks) made an installed package look missing now and then.
installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }
missing=()
for package in "${PACKAGES[@]}"; do
    installed "$package" || missing+=("$package")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "apt-get not found: this script is for Debian 12 (bookworm)"
    say "installing ${missing[*]}"
    # Keep apt from starting services (the system containerd) during the install; only our own file.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    trap '[[ $own_policy -eq 1 ]] && rm -f "$policy"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    quiet apt-get update -q || die "apt-get update failed"
    quiet apt-get install -y -q "${missing[@]}" || die "apt-get install ${missing[*]} failed"
    if ((own_policy)); then rm -f "$policy"; fi
    trap - EXIT
    for package in "${missing[@]}"; do
        installed "$package" || die "package $package is still not installed"
    done
fi

# --- containerd 1.7 and 2.1 for the e2e version matrix (private folder under _work/; apt untouched) ---
quiet bash "$REPO/scripts/fetch_containerd.sh" || die "scripts/fetch_containerd.sh failed"

# --- Python ------------------------------------------------------------------------------------
PYTHON="$(command -v python3)" || die "python3 not found on PATH"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); wasmvisor needs >= 3.11"

if [[ -x "$VENV/bin/python" ]] && ! "$VENV/bin/python" -c pass 2>/dev/null; then
    say "$VENV is broken (its interpreter does not run): recreating it"
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV"
    quiet "$PYTHON" -m venv "$VENV" || die "python3 -m venv $VENV failed (is python3-venv installed?)"
fi

# Editable in setuptools' "compat" mode: a plain path in a .pth file, where the default mode installs an
# import hook that costs every interpreter ~15 ms in `site` (pathlib, importlib.util, re); the supervisor,
# the zygote and most `delete`s each start one. The stamp names the mode, so older venvs are reinstalled.
# The stamp also covers setup.py and front.c: the install compiles the shim's front (setup.py).
want="$(cat "$REPO/pyproject.toml" "$REPO/setup.py" "$REPO/wasmvisor/supervisor/shim/front.c" | sha256sum | cut -d' ' -f1) editable_mode=compat"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want" != "$have" || ! -x "$VENV/bin/containerd-shim-wasmvisor-v1" \
      || ! -x "$VENV/bin/containerd-shim-wasmvisor-v1-python" ]]; then
    say "installing wasmvisor (editable, with test extras) into $VENV"
    rm -rf "$REPO/build/front"  # the install compiles the shim's front afresh (setup.py)
    if ! quiet "$VENV/bin/pip" install --disable-pip-version-check -q -e "$REPO[test]" \
            --config-settings editable_mode=compat; then
        # A setuptools without the compat mode: the default editable install works, only slower.
        say "this setuptools refused editable_mode=compat: installing with the default editable mode"
        quiet "$VENV/bin/pip" install --disable-pip-version-check -q -e "$REPO[test]" \
            || die "pip install -e '.[test]' failed"
    fi
    [[ -x "$VENV/bin/containerd-shim-wasmvisor-v1" ]] \
        || die "pip did not install the shim binary containerd-shim-wasmvisor-v1"
    echo "$want" >"$STAMP"
fi

# The shim binary containerd runs is the compiled front (setup.py), which execs the Python shim
# `containerd-shim-wasmvisor-v1-python` for what it does not answer itself; without a compiler it is that
# Python shim. Each Python shim, pip's console script, is replaced (same name, same place) by one that
# runs `python -I -S`, skipping `site` and the editable install's import hook (~25 ms a task); see
# wasmvisor/supervisor/shim/entry_script.py. Rewritten only when its text changes.
for script in "$VENV/bin/containerd-shim-wasmvisor-v1-python" "$VENV/bin/containerd-shim-wasmvisor-v1"; do
    [[ "$(head -c 2 "$script" 2>/dev/null)" == "#!" ]] || continue  # the compiled front
    quiet "$VENV/bin/python" -m wasmvisor.supervisor.shim.entry_script "$script" \
        || die "cannot write the shim's entry script $script"
done
# Byte-code now, as a non-editable pip install would: a shim started with PYTHONDONTWRITEBYTECODE in
# containerd's environment would otherwise compile wasmvisor's modules from source every time (~50 ms).
quiet "$VENV/bin/python" -m compileall -q "$REPO/wasmvisor" || die "python -m compileall wasmvisor failed"

# The pid-namespace relay in C (a static binary: ~50 KB a container where a Python relay costs ~3.75 MB);
# the worker falls back to a Python relay without it. Rebuilt when relay.c is newer.
RELAY_SRC="$REPO/wasmvisor/worker/relay.c"
RELAY_BIN="$REPO/wasmvisor/worker/_bin/wasmvisor-relay"
if [[ ! -x "$RELAY_BIN" || "$RELAY_SRC" -nt "$RELAY_BIN" ]]; then
    mkdir -p "$(dirname "$RELAY_BIN")"
    quiet clang -O2 -static -Wall -o "$RELAY_BIN.tmp" "$RELAY_SRC" || die "cannot build $RELAY_BIN"
    mv -f "$RELAY_BIN.tmp" "$RELAY_BIN"
fi

# The compiled runner of plain WASI modules (dynamic: it dlopens wasmtime-py's C library); without it,
# the worker runs every guest in Python. Rebuilt when runner.c is newer.
RUNNER_SRC="$REPO/wasmvisor/worker/runner.c"
RUNNER_BIN="$REPO/wasmvisor/worker/_bin/wasmvisor-runner"
if [[ ! -x "$RUNNER_BIN" || "$RUNNER_SRC" -nt "$RUNNER_BIN" ]]; then
    mkdir -p "$(dirname "$RUNNER_BIN")"
    quiet clang -O2 -Wall -o "$RUNNER_BIN.tmp" "$RUNNER_SRC" -ldl || die "cannot build $RUNNER_BIN"
    mv -f "$RUNNER_BIN.tmp" "$RUNNER_BIN"
fi

# Component tooling for the tests (jco from npm; the wasmtime CLI's execute bit).
quiet bash "$REPO/scripts/component_tools.sh" || die "scripts/component_tools.sh failed"

rm -f "$LOG"
say "ready ($VENV)"
