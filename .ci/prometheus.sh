#!/usr/bin/env bash
# Debian's prometheus and promtool for the Prometheus test, without installing the package:
# `apt-get install prometheus` would pull node-exporter and more and start a service, so the
# .deb is downloaded and unpacked (`dpkg -x`) into a cache folder.  Prints the two paths as
#   FS_PROMETHEUS=/.../prometheus
#   FS_PROMTOOL=/.../promtool
# for `eval "$(.ci/prometheus.sh)"`; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${PROMETHEUS_CACHE:-$PWD/.cache/prometheus}
BIN=$CACHE/root/usr/bin

if [ ! -x "$BIN/prometheus" ] || [ ! -x "$BIN/promtool" ]; then
    command -v apt-get >/dev/null 2>&1 || { echo "apt-get is needed to fetch prometheus" >&2; exit 1; }
    mkdir -p "$CACHE"
    rm -rf "$CACHE/root" "$CACHE"/prometheus_*.deb
    # apt-get download writes into the current folder; an empty package index needs an update
    if ! (cd "$CACHE" && apt-get download -qq prometheus >&2 2>/dev/null); then
        echo "updating the package index..." >&2
        apt-get update -qq >&2
        (cd "$CACHE" && apt-get download -qq prometheus >&2)
    fi
    dpkg -x "$CACHE"/prometheus_*.deb "$CACHE/root"
fi
"$BIN/prometheus" --version 2>&1 | head -1 >&2
printf 'FS_PROMETHEUS=%q\nFS_PROMTOOL=%q\n' "$BIN/prometheus" "$BIN/promtool"
