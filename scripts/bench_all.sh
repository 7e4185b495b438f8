#!/usr/bin/env bash
# Run every benchmark one after the other, as root, and keep their output: the figures of
# docs/benchmarks.md (and the README's pointers to them) are regenerated from this one command.
#
#   sudo bash scripts/bench_all.sh [OUTPUT]        # default OUTPUT: _work/bench/all-<UTC time>.txt
#   BENCH_QUICK=1 sudo bash scripts/bench_all.sh   # small counts: checks that each one runs (~5 min)
#
# Each script prints its commit and the machine's load before it starts, so a noisy run shows as such.
# They run one at a time: two benchmarks at once would measure each other.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$REPO/.venv/bin/python"
OUTPUT="${1:-$REPO/_work/bench/all-$(date -u +%Y%m%dT%H%M%SZ).txt}"
[[ "$(id -u)" -eq 0 ]] || { echo "bench_all: run as root (the benchmarks start a private containerd)" >&2; exit 1; }
[[ -x "$PYTHON" ]] || { echo "bench_all: $PYTHON not found: run scripts/setup.sh first" >&2; exit 1; }
mkdir -p "$(dirname "$OUTPUT")"

if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
    RUNS=(
        "bench_start.py --runs 3"
        "bench_throughput.py --tasks 40 --batches 2 --shim-tasks 100"
        "bench_stress.py --tasks 40 --parallel 4"
        "bench_memory.py --counts 1,5"
        "bench_kill.py --runs 10"
        "bench_pods.py --line 2.1 --pods 5 --memory-counts 1,5"
    )
else
    RUNS=(
        "bench_start.py --runs 20"
        "bench_throughput.py --tasks 200 --parallel 4 --shim-tasks 1000"
        "bench_stress.py --tasks 1000 --parallel 4,16"
        "bench_memory.py --counts 1,10,100"
        "bench_kill.py --runs 50"
        "bench_pods.py --line 2.1"
    )
fi

failed=()
for run in "${RUNS[@]}"; do
    read -r -a words <<<"$run"
    echo "=== scripts/$run" | tee -a "$OUTPUT"
    # One benchmark failing (a run that errs) does not stop the others; the status says it at the end.
    "$PYTHON" "$REPO/scripts/${words[0]}" "${words[@]:1}" 2>&1 | tee -a "$OUTPUT" || failed+=("${words[0]}")
    echo | tee -a "$OUTPUT"
done
echo "bench_all: output in $OUTPUT"
if ((${#failed[@]})); then
    echo "bench_all: failed: ${failed[*]}" >&2
    exit 1
fi
