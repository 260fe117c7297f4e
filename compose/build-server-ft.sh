#!/usr/bin/env bash
# Build fileserver-lab/server-ft: the server image on a free-threaded CPython (what the scenario
# key `python: freethreaded` runs in compose and Kubernetes), with no network inside `docker build`:
#   1. the interpreter of .venv-ft (`make venv-ft`: built once into .cache/python-ft, or the
#      FT_PYTHON you gave it), packed without its tests, headers and static library;
#   2. the server's wheels for it, downloaded on the host by that interpreter (kept between runs);
#   3. both, with server/, wire/ and the requirements, in a build context of their own
#      (.cache/server-ft-context, removed afterwards), then server/Dockerfile with
#      SERVER_PYTHON=freethreaded; the default image's context and layers never carry them.
# The interpreter runs on the base image's C library and shared libraries (OpenSSL, zlib, libffi):
# use a base as new as the machine that built it (Debian bookworm here: the offline base image).
# Usage: compose/build-server-ft.sh   (env BASE_IMAGE, IMAGE_TAG, VENV_FT)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV_FT=${VENV_FT:-.venv-ft}
IMAGE=fileserver-lab/server-ft:${IMAGE_TAG:-latest}
CONTEXT=.cache/server-ft-context
WHEELS=.cache/server-ft-wheels
python=$VENV_FT/bin/python

say() { echo "build-server-ft: $*" >&2; }
die() { say "error: $*"; exit 1; }

[ -x "$python" ] || die "$python does not exist: run \`make venv-ft\` first"
"$python" -c 'import sys, sysconfig; sysconfig.get_config_var("Py_GIL_DISABLED") == 1 or sys.exit(1)' \
    || die "$python is not a free-threaded build: run \`make venv-ft\` again"
prefix=$("$python" -c 'import sys; print(sys.base_prefix)')
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# the base: BASE_IMAGE, else python:3.12-slim if present, else the offline Debian base
if [ -z "${BASE_IMAGE:-}" ]; then
    for candidate in python:3.12-slim fileserver-lab/base:bookworm; do
        if docker image inspect "$candidate" >/dev/null 2>&1; then BASE_IMAGE=$candidate; break; fi
    done
fi
[ -n "${BASE_IMAGE:-}" ] || die "no base image: run \`make images-offline\` first (or set BASE_IMAGE)"
say "base image $BASE_IMAGE, interpreter $prefix (Python ${version}t)"

rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/compose" "$CONTEXT/wheels" "$WHEELS"
tar -c --exclude=__pycache__ server wire | tar -x -C "$CONTEXT"
cp compose/requirements-server.txt "$CONTEXT/compose/"

# 1. the interpreter, stripped of what a server never loads
stage=$(mktemp -d)
trap 'rm -rf "$stage" "$CONTEXT"' EXIT
cp -a "$prefix/." "$stage/"
rm -rf "$stage/include" "$stage/share" "$stage"/lib/*.a "$stage"/lib/pkgconfig \
    "$stage/lib/python${version}t/"{test,idlelib,tkinter,turtledemo} \
    "$stage/lib/python${version}t"/config-*/*.a
strip --strip-unneeded "$stage/bin/python${version}t" \
    "$stage/lib/python${version}t/lib-dynload/"*.so 2>/dev/null || true
tar -czf "$CONTEXT/wheels/python-ft.tar.gz" -C "$stage" .

# 2. the wheels, downloaded again only when the requirements or the interpreter change
stamp="$WHEELS/.stamp-$(cat compose/requirements-server.txt "$python" 2>/dev/null | sha256sum | cut -c1-16)-${version}t"
if [ ! -f "$stamp" ]; then
    say "downloading the server's wheels for Python ${version}t into $WHEELS"
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    "$python" -m pip download --quiet --only-binary=:all: --dest "$WHEELS" \
        -r compose/requirements-server.txt || die "the wheels could not be downloaded"
    touch "$stamp"
fi
cp "$WHEELS"/*.whl "$CONTEXT/wheels/"

# 3. the image
docker build --quiet -f "$CONTEXT/server/Dockerfile" -t "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg SERVER_PYTHON=freethreaded \
    --build-arg PIP_INSTALL_ARGS="--no-index --find-links /wheels" "$CONTEXT" >/dev/null \
    || die "docker build failed"

# the server's modules must not switch the GIL back on when they load
docker run --rm "$IMAGE" python -c 'import json, server.__main__
from server.stats import interpreter_info
info = interpreter_info()
print(json.dumps(info))
assert info["free_threaded"] and not info["gil_enabled"], "the GIL is on"' >&2 \
    || die "$IMAGE does not run the server free-threaded"
say "built $IMAGE"
