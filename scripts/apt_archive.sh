# Sourced by scripts that fetch Debian packages from another suite (fetch_containerd.sh, vm/image.sh).
# apt_archive prints "URI KEYRING" of the first deb822 stanza of the machine's own sources whose Suites
# name the Debian release itself (not -security/-updates), so no archive host is hard-coded anywhere.
apt_archive() {
    local file
    for file in /etc/apt/sources.list.d/*.sources; do
        [[ -r "$file" ]] || continue
        awk '
            function flush() { if (uri != "" && main) { print uri, key; found = 1; exit } uri = ""; key = ""; main = 0 }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            tolower($1) == "uris:" { uri = $2 }
            tolower($1) == "signed-by:" { key = $2 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i !~ /-/) main = 1 }
            END { if (!found) flush() }
        ' "$file" | head -n 1
    done | head -n 1
}
