#!/usr/bin/env bash
# Boot the trixie node of scripts/vm/image.sh (built on first use, then reused) under qemu's software
# emulation (TCG: a KVM guest hangs here), with cgroup v2 only, systemd as init and no network device,
# and run one command in it against this checkout: the checkout's wheel is installed into the image's
# venv (offline) and its tracked files are copied to /root/src, the command's working directory.
# The command's output streams on the serial console (this script's stdout) and its exit status is this
# script's. The disk is opened with snapshot=on: every boot starts from the same image.
# Usage: scripts/vm/run.sh [COMMAND...]   (default: a smoke check: versions, cgroup mode, init)
# Environment: WASMVISOR_VM_TIMEOUT (seconds, default 3600), WASMVISOR_VM_MEMORY (MiB, default 4096).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VM_DIR="${WASMVISOR_VM_DIR:-$REPO/_work/vm}"
TIMEOUT="${WASMVISOR_VM_TIMEOUT:-3600}"
MEMORY="${WASMVISOR_VM_MEMORY:-4096}"

say() { echo "vm: $*" >&2; }
die() { echo "vm: error: $*" >&2; exit 1; }

image="$(bash "$REPO/scripts/vm/image.sh")" || die "building the image failed"
kernel="${image%.img}.vmlinuz"
initrd="${image%.img}.initrd"

share="$(mktemp -d "$VM_DIR/share.XXXXXX")"
[[ -n "${WASMVISOR_VM_KEEP:-}" ]] || trap 'rm -rf "$share"' EXIT
say "building the wheel of $REPO"
"$REPO/.venv/bin/python" -m build --no-isolation --wheel --outdir "$share/dist" "$REPO" >"$share/build.log" 2>&1 \
    || { tail -n 20 "$share/build.log" >&2; die "python -m build failed"; }
rm -rf "$REPO/build"
# Tracked and new files; never the host's caches or venv (a worktree may hold them as symlinks).
git -C "$REPO" ls-files -z --cached --others --exclude-standard | grep -zvE '^(_work|\.venv)(/|$)' \
    | tar -C "$REPO" --null -T - -cf "$share/src.tar"

# jco (npm, under _work/tools/npm: scripts/component_tools.sh) builds the component tests' guests; the image
# has node but no npm registry, so the host's copy is shared read-only when there is one.
jco_dir="$REPO/_work/tools/npm"
jco_share=()
if [[ -x "$jco_dir/node_modules/.bin/jco" ]]; then
    jco_share=(-virtfs "local,path=$(readlink -f "$jco_dir"),mount_tag=jco,security_model=none,readonly=on,id=jco")
fi

if (($#)); then
    printf -v command '%q ' "$@"
else
    command='uname -r; python3 --version; containerd --version; runc --version | head -n 1; '
    command+='stat -f -c "cgroup fs: %T" /sys/fs/cgroup; ps -p 1 -o comm=; '
    command+='containerd-shim-wasmvisor-v1 -v'
fi
cat >"$share/job.sh" <<JOB
set -e
: >/mnt/share/started  # the boot got this far (a VM that ends without it is booted again by ci.sh)
# A node has a resolv.conf even without a network (CRI copies it into every pod); the image has none.
[ -e /etc/resolv.conf ] || : >/etc/resolv.conf
export PATH=/opt/wasmvisor/venv/bin:\$PATH
/opt/wasmvisor/venv/bin/pip install -q --disable-pip-version-check --no-deps --no-index --force-reinstall /mnt/share/dist/*.whl
# As setup.sh does for a clone: the Python shim runs \`python -I -S\` (entry_script.py), on 3.13 here.
for script in /opt/wasmvisor/venv/bin/containerd-shim-wasmvisor-v1-python /opt/wasmvisor/venv/bin/containerd-shim-wasmvisor-v1; do
    [ "\$(head -c 2 "\$script")" != "#!" ] || (cd / && python3 -m wasmvisor.supervisor.shim.entry_script "\$script")
done
mkdir -p /root/src && tar -C /root/src -xf /mnt/share/src.tar && cd /root/src
# Tests import the package from here: give it the C relay the wheel was built with (setup.sh's part).
installed="\$(cd / && python3 -c 'import os, wasmvisor; print(os.path.dirname(wasmvisor.__file__))')"
cp -a "\$installed/worker/_bin" wasmvisor/worker/
if mkdir -p /mnt/jco && mount -t 9p -o trans=virtio,version=9p2000.L,ro jco /mnt/jco 2>/dev/null; then
    mkdir -p _work/tools && ln -sfn /mnt/jco _work/tools/npm
fi
ln -sfn /opt/wasmvisor/venv .venv
export WASMVISOR_CONTAINERD_BIN_DIR=/usr/bin
set +e
$command
JOB

say "booting (TCG, ${MEMORY} MiB, timeout ${TIMEOUT}s)"
set +e
# -cpu max: the default qemu64 model lacks instructions (SSE4, POPCNT) that wasmtime's compiled code and
# today's wheels use: guests died of SIGILL (exit 132) with it.
timeout --foreground "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m "$MEMORY" -nographic -no-reboot \
    -kernel "$kernel" -initrd "$initrd" \
    -append "root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0 systemd.mask=serial-getty@ttyS0.service wasmvisor.job=1 panic=-1" \
    -drive "file=$image,format=raw,if=virtio,snapshot=on" \
    -virtfs "local,path=$share,mount_tag=share,security_model=none,id=share" \
    "${jco_share[@]}" \
    -nic none </dev/null
qemu_status=$?
set -e
if [[ ! -s "$share/status" ]]; then
    # A kernel panic while booting under TCG (seen: `Oops: int3` in sched_clock_cpu) reboots at once
    # (panic=-1), which -no-reboot turns into qemu's exit: status 75 (EX_TEMPFAIL) says "boot again" (ci.sh does, once).
    [[ -s "$share/started" ]] || { say "error: the VM ended (qemu status $qemu_status) before the job began"; exit 75; }
    die "the VM ended (qemu status $qemu_status) without the job's exit status"
fi
exit "$(cat "$share/status")"
