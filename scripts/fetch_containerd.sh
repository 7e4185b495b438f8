#!/usr/bin/env bash
# Fetch the containerd builds the e2e suite runs against besides the system's 1.6 (apt, bookworm):
# 1.7.24 from suite trixie and 2.1.9 from suite sid, unpacked with `dpkg -x` into
# <repo>/_work/containerd/<version>/ (binaries in .../usr/bin). The machine's apt setup is never
# touched: apt gets a private sources list and private state/cache dirs under _work/containerd/apt,
# and the archive URI and keyring are read from the machine's own /etc/apt/sources.list.d/*.sources
# (no host is hard-coded). Idempotent: a version already unpacked costs one `test -x`.
# Usage: fetch_containerd.sh [VERSION...]   (default: all of them). Prints each bin dir.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${WASMVISOR_CONTAINERD_DIR:-$REPO/_work/containerd}"
declare -A SUITE_OF=([1.7.24]=trixie [2.1.9]=sid)

say() { echo "fetch_containerd: $*" >&2; }
die() { echo "fetch_containerd: error: $*" >&2; exit 1; }

# shellcheck source=apt_archive.sh
source "$REPO/scripts/apt_archive.sh"

fetch_one() {
    local version="$1" suite="${SUITE_OF[$1]:-}"
    [[ -n "$suite" ]] || die "unknown version $version (known: ${!SUITE_OF[*]})"
    local target="$DEST/$version"
    if [[ -x "$target/usr/bin/containerd" && -x "$target/usr/bin/ctr" ]]; then
        echo "$target/usr/bin"
        return
    fi
    local source uri key
    source="$(apt_archive)"
    [[ -n "$source" ]] || die "no Debian archive URI found in /etc/apt/sources.list.d/*.sources"
    read -r uri key <<<"$source"
    local apt="$DEST/apt/$suite"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
    echo "deb ${key:+[signed-by=$key] }$uri $suite main" >"$apt/sources.list"
    local opts=(
        -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
        -o "Dir::Cache::Archives=$apt/cache/archives" -o APT::Get::List-Cleanup=0
    )
    say "downloading containerd $version from $uri $suite"
    apt-get -q "${opts[@]}" update >"$apt/update.log" 2>&1 \
        || { tail -n 20 "$apt/update.log" >&2; die "apt-get update of $suite failed"; }
    # Debian versions carry suffixes (1.7.24~ds1-6+deb13u1, 2.1.9+ds1-5): pick the one of this upstream version.
    local debian_version
    debian_version="$(apt-cache "${opts[@]}" madison containerd \
        | awk -v v="$version" 'index($3, v) == 1 && substr($3, length(v) + 1, 1) ~ /[~+-]/ { print $3; exit }')"
    [[ -n "$debian_version" ]] || die "suite $suite has no containerd $version (apt-cache madison containerd)"
    (cd "$apt/debs" && apt-get -q "${opts[@]}" download "containerd=$debian_version") >"$apt/download.log" 2>&1 \
        || { tail -n 20 "$apt/download.log" >&2; die "apt-get download containerd=$debian_version failed"; }
    local deb
    deb="$(ls "$apt/debs"/containerd_"${version}"*.deb 2>/dev/null | head -n 1)"
    [[ -n "$deb" ]] || die "no containerd_${version}*.deb in $apt/debs"
    rm -rf "$target.partial"
    dpkg -x "$deb" "$target.partial"
    [[ -x "$target.partial/usr/bin/containerd" ]] || die "$deb has no usr/bin/containerd"
    rm -rf "$target"
    mv "$target.partial" "$target"
    rm -rf "$apt/lists" "$apt/cache"  # ~150 MB of package lists each, not needed once unpacked
    "$target/usr/bin/containerd" --version >&2
    echo "$target/usr/bin"
}

versions=("$@")
((${#versions[@]})) || versions=(1.7.24 2.1.9)
for version in "${versions[@]}"; do
    fetch_one "$version"
done
