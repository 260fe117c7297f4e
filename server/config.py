"""Server settings, each declared once: flag, FS_* variable, type, default, check, help.

``load_config(argv, environ)`` builds an argparse parser and an environment
reader from the one ``SETTINGS`` table; flags win over variables, variables
over defaults.  A bad value raises ``ConfigError`` naming the setting and
the value; ``python -m server`` turns it into exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

import wire

__all__ = ["ServerConfig", "ConfigError", "SETTINGS", "load_config", "MODES", "MIN_POOL",
           "MAX_POOL"]

# The concurrency models by FS_MODE name (server.pools.MODES maps each to its
# class) and the pool sizes the server accepts; scenarios and bench import them.
MODES = ("thread", "process")
MIN_POOL, MAX_POOL = 1, 1024


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class ServerConfig:
    mode: str = "thread"
    pool: int = 5
    host: str = "0.0.0.0"
    port: int = wire.DEFAULT_PORT
    storage_dir: str = "./files"
    metrics_port: int = wire.DEFAULT_METRICS_PORT
    metrics_host: str = "127.0.0.1"
    max_upload_bytes: int = wire.DEFAULT_MAX_UPLOAD_BYTES
    max_line_bytes: int = wire.DEFAULT_MAX_LINE_BYTES
    timeout: float = 60.0
    request_timeout: float = 10.0
    min_rate: int = 1024
    max_connections: int = 1000
    grace_seconds: float = 10.0
    log_level: str = "INFO"
    stats_interval: float = 10.0
    backlog: int = 1024
    acceptors: int = 0


@dataclass(frozen=True)
class Setting:
    field: str
    flags: tuple[str, ...]
    env: str
    parse: Callable[[str], Any]
    help: str


def _choice(*allowed: str):
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value
    return parse


def _int_in(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError("must be an integer") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value
    return parse


def _seconds(minimum: float):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number of seconds") from None
        if not value >= minimum or value == float("inf"):
            raise ValueError(f"must be a finite number >= {minimum}")
        return value
    return parse


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _log_level(text: str) -> str:
    value = text.strip().upper()
    if not isinstance(logging.getLevelName(value), int):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return value


SETTINGS = (
    Setting("mode", ("--mode",), "FS_MODE", _choice(*MODES),
            "concurrency model: thread (ThreadPoolExecutor) or process (pre-forked workers)"),
    Setting("pool", ("--pool",), "FS_POOL", _int_in(MIN_POOL, MAX_POOL),
            "number of worker threads or processes"),
    Setting("host", ("--ip", "--host"), "FS_HOST", _nonempty, "address to listen on"),
    Setting("port", ("--port",), "FS_PORT", _int_in(0, 65535),
            "protocol port (0 picks a free one)"),
    Setting("storage_dir", ("--storage",), "FS_STORAGE_DIR", _nonempty,
            "folder holding the served files (created if missing)"),
    Setting("metrics_port", ("--metrics-port",), "FS_METRICS_PORT", _int_in(0, 65535),
            "HTTP port for /metrics, /stats, /healthz, /readyz (0 disables)"),
    Setting("metrics_host", ("--metrics-host",), "FS_METRICS_HOST", _nonempty,
            "address the metrics port listens on (0.0.0.0 for probes and scrapers "
            "from other hosts; /stats shows client addresses)"),
    Setting("max_upload_bytes", ("--max-upload-bytes",), "FS_MAX_UPLOAD_BYTES",
            _int_in(0, 2 ** 62), "largest accepted upload, in decoded bytes"),
    Setting("max_line_bytes", ("--max-line-bytes",), "FS_MAX_LINE_BYTES",
            _int_in(64, 1024 ** 2), "longest accepted non-upload request line"),
    Setting("timeout", ("--timeout",), "FS_TIMEOUT", _seconds(0.1),
            "seconds a connection may stay silent before it is closed"),
    Setting("request_timeout", ("--request-timeout",), "FS_REQUEST_TIMEOUT", _seconds(0.1),
            "seconds a request line may take to arrive, from its first byte"),
    Setting("min_rate", ("--min-rate",), "FS_MIN_RATE", _int_in(0, 2 ** 40),
            "bytes/s an upload body or a GET reply must average once it has run "
            "FS_REQUEST_TIMEOUT seconds (0: no minimum)"),
    Setting("max_connections", ("--max-connections",), "FS_MAX_CONNECTIONS",
            _int_in(1, 1_000_000),
            "connections the server holds open at once (served, waiting for a request "
            "or parked); beyond it new ones wait in the listen backlog"),
    Setting("grace_seconds", ("--grace",), "FS_GRACE_SECONDS", _seconds(0),
            "seconds in-flight requests get to finish on SIGTERM/SIGINT"),
    Setting("log_level", ("--log-level",), "FS_LOG_LEVEL", _log_level,
            "DEBUG, INFO, WARNING or ERROR"),
    Setting("stats_interval", ("--stats-interval",), "FS_STATS_INTERVAL", _seconds(0),
            "seconds between stats log lines (0 disables them)"),
    Setting("backlog", ("--backlog",), "FS_BACKLOG", _int_in(1, 65535),
            "listen() backlog: connections the kernel queues while all workers are busy"),
    Setting("acceptors", ("--acceptors",), "FS_ACCEPTORS", _int_in(0, MAX_POOL),
            "most idle workers that wait for new connections at a time, one while "
            "that keeps up (0: one per CPU the server may run on; the pool size or "
            "more: every idle worker)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="File server for the course protocol (LIST, GET, UPLOAD, DELETE).",
        epilog="Every flag has an FS_* environment variable; flags win.")
    defaults = ServerConfig()
    for setting in SETTINGS:
        parser.add_argument(
            *setting.flags, dest=setting.field, metavar=setting.env, default=None,
            help=f"{setting.help} [env {setting.env}, default {getattr(defaults, setting.field)}]")
    return parser


def _parse_value(setting: Setting, raw: str, source: str):
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"invalid {source}={raw!r}: {exc}") from None


def load_config(argv: list[str] | None = None, environ: dict | None = None) -> ServerConfig:
    environ = {} if environ is None else environ
    args = build_parser().parse_args(argv)
    values = {}
    for setting in SETTINGS:
        flag_value = getattr(args, setting.field)
        if flag_value is not None:
            values[setting.field] = _parse_value(setting, flag_value, setting.flags[0])
        elif setting.env in environ:
            values[setting.field] = _parse_value(setting, environ[setting.env], setting.env)
    return dataclasses.replace(ServerConfig(), **values)
