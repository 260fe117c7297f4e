#!/usr/bin/env bash
# Build a free-threaded CPython (./configure --disable-gil) into .cache/python-ft/<version>/
# and print its interpreter's path on stdout (progress goes to stderr).
#
#   tools/build-python-ft.sh                 the default, 3.13: Debian trixie's python3.13 source
#   tools/build-python-ft.sh 3.13            any cached 3.13.x build, else Debian's python3.13
#   tools/build-python-ft.sh 3.14.0          a cached tarball, else Debian's (if it is that
#                                            version), else the upstream tarball from python.org
#   tools/build-python-ft.sh Python-3.14.0.tar.xz    a source tarball you already have
#
# A finished build is reused (the marker is <prefix>/.complete).  Debian's `.orig.tar.xz` is the
# upstream tarball, checksum-identical; it is fetched through a private apt configuration in a
# temporary folder (the machine's apt sources are not touched), from the mirror those name.
# Environment: PYTHON_FT_CACHE (default .cache/python-ft), DEBIAN_SUITE (trixie),
# DEBIAN_MIRROR (default: the machine's own Debian mirror).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${PYTHON_FT_CACHE:-$PWD/.cache/python-ft}
SUITE=${DEBIAN_SUITE:-trixie}
DEFAULT_VERSION=3.13
# pip needs ssl, _hashlib and zlib to install the wheels; the server needs ctypes
REQUIRED_MODULES="ssl _hashlib zlib _ctypes"

say() { echo "build-python-ft: $*" >&2; }
die() { say "error: $*"; exit 1; }

# step NAME LOGDIR COMMAND...: run COMMAND with its output in LOGDIR/NAME.log; on failure name
# the step and the log, and show the log's end.
step() {
    local name=$1 logs=$2; shift 2
    say "$name ... (log: $logs/$name.log)"
    if ! "$@" >"$logs/$name.log" 2>&1; then
        tail -n 25 "$logs/$name.log" >&2
        die "step '$name' failed; full log: $logs/$name.log"
    fi
}

# the PY_VERSION a source tarball declares (3.14.0+ for a development tree -> 3.14.0)
tarball_version() {
    { tar -xOf "$1" --wildcards '*/Include/patchlevel.h' 2>/dev/null || true; } \
        | sed -n 's/^#define[[:space:]]*PY_VERSION[[:space:]]*"\([0-9][0-9a-z.]*\).*"/\1/p'
}

interpreter() {   # the free-threaded binary of a finished prefix
    local minor
    minor=$(echo "$1" | cut -d. -f1-2)
    echo "$CACHE/$1/bin/python${minor}t"
}

cached_build() {  # a finished build of VERSION (X.Y.Z exactly, or the newest X.Y.z for X.Y)
    local want=$1 dir version
    for dir in $(ls -d "$CACHE"/[0-9]* 2>/dev/null | sort -rV); do
        version=$(basename "$dir")
        [ -f "$dir/.complete" ] || continue
        if [ "$version" = "$want" ] || [[ $want =~ ^[0-9]+\.[0-9]+$ && $version == "$want".* ]]; then
            echo "$version"
            return 0
        fi
    done
    return 1
}

debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local uri
    uri=$( { grep -hE '^\s*deb\s' /etc/apt/sources.list 2>/dev/null | awk '{for (i=2;i<=NF;i++) if ($i ~ /^https?:/) print $i}';
             grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'; } \
           | grep -E '/debian/?$' | head -n 1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# fetch_debian X.Y DESTDIR: Debian's python3.X source into DESTDIR; prints the .orig.tar.xz path
fetch_debian() {
    local minor=$1 dest=$2 apt_dir
    command -v apt-get >/dev/null || { say "no apt-get here: no Debian source"; return 1; }
    apt_dir=$(mktemp -d)
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts" "$apt_dir/dl"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) $SUITE main" \
        >"$apt_dir/sources.list"
    local apt=(apt-get -q -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
               -o "Dir::Etc::sourceparts=$apt_dir/parts" -o "Dir::State::Lists=$apt_dir/lists"
               -o "Dir::Cache=$apt_dir/cache" -o "Dir::State::status=/dev/null")
    [ "$(id -u)" = 0 ] && apt+=(-o APT::Sandbox::User=root)
    say "fetching Debian $SUITE's python$minor source from $(debian_mirror)"
    if ! "${apt[@]}" update >"$apt_dir/update.log" 2>&1; then
        tail -n 5 "$apt_dir/update.log" >&2; rm -rf "$apt_dir"; return 1
    fi
    if ! (cd "$apt_dir/dl" && "${apt[@]}" source --download-only "python$minor") \
            >"$apt_dir/source.log" 2>&1; then
        tail -n 3 "$apt_dir/source.log" >&2; rm -rf "$apt_dir"; return 1
    fi
    local orig
    orig=$(ls "$apt_dir"/dl/python"$minor"_*.orig.tar.xz 2>/dev/null | head -n 1)
    [ -n "$orig" ] || { rm -rf "$apt_dir"; return 1; }
    mv "$orig" "$dest/"
    echo "$dest/$(basename "$orig")"
    rm -rf "$apt_dir"
}

# fetch_upstream X.Y.Z DESTDIR: python.org's tarball; prints its path
fetch_upstream() {
    local version=$1 dest=$2 url
    url="https://www.python.org/ftp/python/${version%%[a-z]*}/Python-$version.tar.xz"
    say "fetching $url"
    curl -fsSL --connect-timeout 15 -o "$dest/Python-$version.tar.xz.part" "$url" || {
        rm -f "$dest/Python-$version.tar.xz.part"; return 1; }
    mv "$dest/Python-$version.tar.xz.part" "$dest/Python-$version.tar.xz"
    echo "$dest/Python-$version.tar.xz"
}

build() {   # build TARBALL VERSION
    local tarball=$1 version=$2 prefix=$CACHE/$2 logs=$CACHE/logs/$2 work=$CACHE/build-$2
    rm -rf "$prefix" "$work" "$logs"
    mkdir -p "$logs" "$work"
    local started=$SECONDS
    step extract "$logs" tar -xf "$tarball" -C "$work" --strip-components=1
    cd "$work"
    step configure "$logs" ./configure --disable-gil --prefix="$prefix" --without-ensurepip \
        --disable-test-modules
    step make "$logs" make -j"${PYTHON_FT_JOBS:-2}"
    step install "$logs" make install
    cd - >/dev/null
    local python
    python=$(interpreter "$version")
    [ -x "$python" ] || die "step 'install' left no $python; log: $logs/install.log"
    step check "$logs" "$python" -c "
import importlib, sys, sysconfig
assert sysconfig.get_config_var('Py_GIL_DISABLED') == 1, 'not a free-threaded build'
missing = []
for name in '$REQUIRED_MODULES'.split():
    try:
        importlib.import_module(name)
    except ImportError as error:
        missing.append(f'{name} ({error})')
assert not missing, 'modules not built (install the -dev packages, see README): ' + ', '.join(missing)
print(sys.version)"
    touch "$prefix/.complete"
    rm -rf "$work"
    say "built $version in $((SECONDS - started)) s: $python"
}

main() {
    local want=${1:-$DEFAULT_VERSION} tarball="" version
    mkdir -p "$CACHE/src"
    exec 9>"$CACHE/.lock"
    flock 9   # one build at a time per cache

    if [[ $want =~ ^[0-9]+\.[0-9]+(\.[0-9]+([ab]|rc)?[0-9]*)?$ ]]; then
        if version=$(cached_build "$want"); then
            say "cached: $version"
            interpreter "$version"
            return
        fi
        if [[ $want =~ ^[0-9]+\.[0-9]+\. ]]; then
            tarball=$(ls "$CACHE"/src/python*_"$want".orig.tar.xz "$CACHE/src/Python-$want.tar.xz" \
                      2>/dev/null | head -n 1 || true)
        fi
        if [ -z "$tarball" ]; then
            tarball=$(fetch_debian "$(echo "$want" | cut -d. -f1-2)" "$CACHE/src") || tarball=""
            if [ -n "$tarball" ] && [[ $want =~ ^[0-9]+\.[0-9]+\. ]] \
                    && [ "$(tarball_version "$tarball")" != "$want" ]; then
                say "Debian $SUITE has $(tarball_version "$tarball"), not $want"
                tarball=""
            fi
        fi
        if [ -z "$tarball" ] && [[ $want =~ ^[0-9]+\.[0-9]+\. ]]; then
            tarball=$(fetch_upstream "$want" "$CACHE/src") || tarball=""
        fi
        [ -n "$tarball" ] || die "no source for Python $want: not cached in $CACHE/src, not in Debian $SUITE$([[ $want =~ ^[0-9]+\.[0-9]+\. ]] && echo ', not downloadable from python.org'); pass a tarball path"
    else
        [ -f "$want" ] || die "no such tarball: $want (give a path to a CPython source tarball, or a version such as 3.13 or 3.14.0)"
        tarball=$(realpath "$want")
    fi

    version=$(tarball_version "$tarball")
    [ -n "$version" ] || die "$tarball is not a CPython source tarball (no Include/patchlevel.h with PY_VERSION)"
    if [ -f "$CACHE/$version/.complete" ]; then
        say "cached: $version"
    else
        say "building free-threaded CPython $version from $tarball"
        build "$tarball" "$version"
    fi
    interpreter "$version"
}

main "$@"
