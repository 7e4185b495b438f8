#!/usr/bin/env bash
# The project's test command: set up (idempotent), then run the whole suite. Extra arguments go to pytest.
# Exits with pytest's status; "no tests collected" (pytest's 5) counts as a failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO/scripts/setup.sh"
cd "$REPO"
# Lint and type-check the package first (style.md: ruff and mypy run in CI).
.venv/bin/ruff check wasmvisor tests scripts examples
.venv/bin/mypy wasmvisor
# The e2e suite runs once per containerd line (1.6 system, 1.7 and 2.1 fetched by setup.sh).
export WASMVISOR_CONTAINERD="${WASMVISOR_CONTAINERD:-all}"
status=0
.venv/bin/python -m pytest -q tests "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "test: error: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
