#!/usr/bin/env bash
# CI's second job (.ci/run calls it after scripts/test.sh): the tests of scripts/vm/ci_tests.txt on a
# cgroup v2 node under systemd with Python 3.13 (scripts/vm/run.sh: one boot of the trixie VM, the image
# built first when its key has none). A machine that cannot run the VM (not x86_64, not root, no qemu
# and none to install, too little disk or memory) gets one line saying why and status 0; otherwise the
# status is pytest's in the VM (or run.sh's when the VM itself failed).
# Environment: as run.sh (WASMVISOR_VM_DIR, WASMVISOR_VM_TIMEOUT, WASMVISOR_VM_MEMORY).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VM_DIR="${WASMVISOR_VM_DIR:-$REPO/_work/vm}"
MEMORY="${WASMVISOR_VM_MEMORY:-4096}"
TESTS_FILE="$REPO/scripts/vm/ci_tests.txt"
NEED_DISK_GIB=12  # the debootstrap tree and the packed image (~2 GB each) with room to spare
HOST_PACKAGES=(qemu-system-x86 debootstrap e2fsprogs)

say() { echo "vm-ci: $*"; }
skip() { say "skipped: $*"; exit 0; }

# --- can this machine run it? ------------------------------------------------------------------------
[[ "$(uname -m)" == x86_64 ]] || skip "the VM is x86_64 and this machine is $(uname -m)"
[[ "$(id -u)" -eq 0 ]] || skip "not root (the image is built with debootstrap and chroot)"
missing=()
for package in "${HOST_PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" == "install ok installed" ]] \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || skip "${missing[*]} not installed and no apt-get to install them"
    candidate="$(apt-cache policy "${missing[@]}" 2>/dev/null | grep -c 'Candidate: (none)' || true)"
    [[ "$candidate" -eq 0 ]] || skip "apt has no candidate for one of ${missing[*]}"
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
        || skip "apt-get install ${missing[*]} failed"
fi
mkdir -p "$VM_DIR"
free_gib=$(($(df -Pk "$VM_DIR" | awk 'NR == 2 { print $4 }') / 1024 / 1024))
((free_gib >= NEED_DISK_GIB)) || skip "${free_gib} GiB free under $VM_DIR, ${NEED_DISK_GIB} needed"
available_mib=$(($(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo) / 1024))
((available_mib >= MEMORY + 1024)) || skip "${available_mib} MiB of memory available, $((MEMORY + 1024)) needed"

bash "$REPO/scripts/setup.sh"  # idempotent: CI ran it already (scripts/test.sh); by hand it may not have run

# --- the test list -----------------------------------------------------------------------------------
tests=()
while read -r line; do
    line="${line%%#*}"
    line="${line%"${line##*[![:space:]]}"}"
    [[ -n "$line" ]] && tests+=("$line")
done <"$TESTS_FILE"
((${#tests[@]})) || { say "error: $TESTS_FILE names no test"; exit 1; }

# --- image, then one boot ----------------------------------------------------------------------------
export WASMVISOR_VM_DIR="$VM_DIR"
started=$SECONDS
image="$(bash "$REPO/scripts/vm/image.sh")" || { say "error: building the image failed"; exit 1; }
say "image $(basename "$image") ready in $((SECONDS - started)) s"
booted=$SECONDS
# A bound on the boot and the tests (~10-18 min here): a VM that hangs must not eat CI's time.
export WASMVISOR_VM_TIMEOUT="${WASMVISOR_VM_TIMEOUT:-1800}"
for attempt in 1 2; do
    status=0
    bash "$REPO/scripts/vm/run.sh" python -m pytest -q -rfE -p no:cacheprovider "${tests[@]}" || status=$?
    # 75: the VM ended before the job began (a kernel panic while booting under TCG): boot once more.
    [[ $status -eq 75 && $attempt -eq 1 ]] || break
    say "the VM ended before the job began: booting again"
done
say "VM job: ${#tests[@]} test paths in $((SECONDS - booted)) s (boot included), exit $status;" \
    "$((SECONDS - started)) s in all"
exit "$status"
