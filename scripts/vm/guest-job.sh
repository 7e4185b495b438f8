#!/bin/bash
# Inside the VM (installed as /usr/local/sbin/wasmvisor-vm-job by scripts/vm/image.sh, run once at boot by
# wasmvisor-vm-job.service when the kernel command line says wasmvisor.job=1): mount the host's shared
# folder, run its job.sh with the output both on the serial console and in output.log, leave the exit
# status in `status`, and power off.
mkdir -p /mnt/share
# The virtio device may not be probed yet when this unit starts ("9pnet_virtio: no channels available
# for device share" on a fast boot): wait for udev, then try for up to a minute.
udevadm settle --timeout=60 || true
mounted=0
for _ in $(seq 60); do
    if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /mnt/share 2>/dev/null; then
        mounted=1
        break
    fi
    sleep 1
done
if [ "$mounted" -ne 1 ]; then
    echo "wasmvisor-vm: cannot mount the shared folder (9p tag 'share') after 60 s"
    systemctl poweroff --no-block
    exit 1
fi
cd /mnt/share || exit 1
bash ./job.sh 2>&1 | tee output.log
echo "${PIPESTATUS[0]}" >status
sync
systemctl poweroff --no-block
