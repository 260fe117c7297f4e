#!/usr/bin/env bash
# Build the images with no registry and no network inside `docker build`:
#   1. a local base image (Debian bookworm, minbase + python3) unless BASE_IMAGE exists
#      locally or can be pulled;
#   2. a wheelhouse in ./wheels, downloaded on the host (kept between runs);
#   3. `docker-compose build` (or `docker compose build`) from those two.
# Usage: compose/build-offline.sh   (from anywhere; env BASE_IMAGE to choose the base)
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-python:3.12-slim}
LOCAL_BASE=fileserver-lab/base:bookworm
PYTHON=${PYTHON:-python3}

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "base image: $BASE_IMAGE"
else
    BASE_IMAGE=$LOCAL_BASE
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        echo "no registry: building $BASE_IMAGE with mmdebstrap (about 20 s)"
        tarball=$(mktemp --suffix=.tar)
        trap 'rm -f "$tarball"' EXIT
        mmdebstrap --quiet --variant=minbase \
            --include=python3,python3-venv,ca-certificates bookworm "$tarball"
        docker import "$tarball" "$BASE_IMAGE" >/dev/null
    fi
    echo "base image: $BASE_IMAGE (local)"
fi

# The wheels must suit the base image's Python; ask it, then download for that version.
image_python=$(docker run --rm "$BASE_IMAGE" python3 -c \
    'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
stamp="wheels/.stamp-py$image_python-$(cat compose/requirements-*.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "downloading wheels for Python $image_python into ./wheels"
    rm -rf wheels && mkdir -p wheels
    "$PYTHON" -m pip download --quiet --dest wheels --only-binary=:all: \
        --python-version "$image_python" --platform manylinux2014_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        --platform linux_x86_64 \
        -r compose/requirements-server.txt -r compose/requirements-locust.txt
    touch "$stamp"
fi

if docker compose version >/dev/null 2>&1; then compose="docker compose"; else compose="docker-compose"; fi
BASE_IMAGE=$BASE_IMAGE PIP_INSTALL_ARGS="--no-index --find-links /wheels" \
    $compose -f compose/docker-compose.yml build
