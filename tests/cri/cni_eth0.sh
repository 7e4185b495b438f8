#!/bin/sh
# A CNI plugin for the CRI tests, chained after `loopback`. CRI fails RunPodSandbox when the CNI result
# names no `eth0`, and the tests may use no address outside 127.0.0.0/8, so this gives the pod's network
# namespace a veth pair whose both ends stay inside it: `eth0` with 127.0.0.2/32 and its peer.
set -eu
conf="$(cat)"
version="$(printf '%s' "$conf" | tr -d '\n' | sed -n 's/.*"cniVersion"[^"]*"\([^"]*\)".*/\1/p')"
case "${CNI_COMMAND:-}" in
ADD)
    nsenter --net="$CNI_NETNS" ip link add "$CNI_IFNAME" type veth peer name wvpeer0 >&2
    nsenter --net="$CNI_NETNS" ip addr add 127.0.0.2/32 dev "$CNI_IFNAME" >&2
    nsenter --net="$CNI_NETNS" ip link set wvpeer0 up >&2
    nsenter --net="$CNI_NETNS" ip link set "$CNI_IFNAME" up >&2
    printf '{"cniVersion":"%s","interfaces":[{"name":"%s","sandbox":"%s"}],' "$version" "$CNI_IFNAME" "$CNI_NETNS"
    printf '"ips":[{"address":"127.0.0.2/32","interface":0}]}\n'
    ;;
DEL)
    # The namespace may be gone already: deleting in it is best effort.
    if [ -n "${CNI_NETNS:-}" ] && [ -e "$CNI_NETNS" ]; then
        nsenter --net="$CNI_NETNS" ip link del "$CNI_IFNAME" >/dev/null 2>&1 || true
    fi
    ;;
VERSION)
    printf '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}\n'
    ;;
*) ;;
esac
