#!/usr/bin/env bash
# Make a Docker engine available on a bare CI machine, and stop it afterwards.
#   .ci/docker-engine.sh start   # install (apt, as root) and start dockerd if `docker info` fails
#   .ci/docker-engine.sh stop    # stop the dockerd this script started (by pid), nothing else
set -euo pipefail
# kept in this checkout, so another checkout's `stop` never stops the engine this one started
STATE_DIR="$(cd "$(dirname "$0")" && pwd)"
PIDFILE=$STATE_DIR/.dockerd.pid
LOGFILE=$STATE_DIR/.dockerd.log

start() {
    if docker info >/dev/null 2>&1; then
        echo "docker engine already running"
        return
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1 \
            || ! command -v mmdebstrap >/dev/null 2>&1; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
            echo "no docker engine and no way to install one (needs root and apt)" >&2
            return 1
        fi
        echo "installing docker.io docker-compose mmdebstrap..."
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose mmdebstrap >/dev/null
    fi
    echo "starting dockerd (log: $LOGFILE)"
    nohup dockerd >"$LOGFILE" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && { echo "docker engine up"; return; }
        sleep 1
    done
    echo "dockerd did not come up; its log:" >&2
    tail -20 "$LOGFILE" >&2
    return 1
}

stop() {
    [ -f "$PIDFILE" ] || return 0
    pid=$(cat "$PIDFILE")
    rm -f "$PIDFILE"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 1
    done
    kill -9 "$pid" 2>/dev/null || true
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
