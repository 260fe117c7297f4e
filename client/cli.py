"""The command-line client: ``python -m client [options] COMMAND``.

    python -m client list
    python -m client get NAME [-o PATH | -o -]
    python -m client upload PATH [--name NAME]
    python -m client delete NAME

Transfers stream in constant memory through ``FileClient`` and show a tqdm
progress bar on stderr (only when stderr is a terminal, and not with
``--no-progress``), then one stats line on stderr.  Exit status: 0 on
success, 1 on any error (reported as exactly one line on stderr, never a
traceback), 2 for a usage error (as argparse does), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import stat
import sys
import time
from typing import Callable, Iterator, Mapping, Sequence

from tqdm import tqdm

from .filesclient import DEFAULT_PORT, FileClient, FileClientError, parse_address

__all__ = ["main", "build_parser", "resolve_address", "PROG"]

PROG = "python -m client"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 30.0
ENV_HOST = "FS_CLIENT_HOST"
ENV_PORT = "FS_CLIENT_PORT"
STDOUT = "-"

EPILOG = f"""\
environment:
  {ENV_HOST}  default for --host (H, H:P or tcp://H:P); default {DEFAULT_HOST}
  {ENV_PORT}  default for --port; default {DEFAULT_PORT}
  A port given in the host wins over {ENV_PORT}; --port wins over a port in
  {ENV_HOST}; --host H:P and a different --port together are an error.

exit status:
  0 success, 1 any error (one line on stderr), 2 usage error, 130 interrupted

examples:
  {PROG} --host tcp://127.0.0.1:6665 list
  {PROG} get big.bin -o /tmp/big.bin
  {PROG} get notes.txt -o - | less
  {PROG} upload ./report.pdf --name report-v2.pdf
  {PROG} delete report-v2.pdf
"""


class CliError(Exception):
    """A local problem (a file that cannot be read or written, a bad path)."""


# --------------------------------------------------------------------------
# arguments

def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not a number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not in 1..65535")
    return port


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: must be > 0 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Client of the course file server (LIST, GET, UPLOAD, DELETE).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", metavar="H",
                        help=f"server as H, H:P or tcp://H:P (env {ENV_HOST}; "
                             f"default {DEFAULT_HOST})")
    parser.add_argument("--port", metavar="P", type=_port,
                        help=f"server port (env {ENV_PORT}; default {DEFAULT_PORT})")
    parser.add_argument("--timeout", metavar="S", type=_timeout, default=DEFAULT_TIMEOUT,
                        help="limit in seconds for the connect and for each send or "
                             "receive, not for a whole transfer (default %(default)g)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (there is none anyway when stderr is not "
                             "a terminal)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub = commands.add_parser("list", help="print the server's file names, one per line",
                              description="Print the server's file names, one per line.")
    sub.set_defaults(run=run_list)

    sub = commands.add_parser("get", help="download a file",
                              description="Download NAME, streaming it to PATH.")
    sub.add_argument("name", metavar="NAME", help="file name on the server")
    sub.add_argument("-o", "--output", metavar="PATH",
                     help="where to write it: a file, a directory (NAME inside it) or '-' "
                          "for stdout (default: ./NAME); the file appears only once "
                          "complete")
    sub.set_defaults(run=run_get)

    sub = commands.add_parser("upload", help="upload a file",
                              description="Upload the local file PATH.")
    sub.add_argument("path", metavar="PATH", help="local file to send")
    sub.add_argument("--name", metavar="NAME",
                     help="file name on the server (default: PATH's basename)")
    sub.set_defaults(run=run_upload)

    sub = commands.add_parser("delete", help="delete a file",
                              description="Delete NAME on the server.")
    sub.add_argument("name", metavar="NAME", help="file name on the server")
    sub.set_defaults(run=run_delete)
    return parser


def resolve_address(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    environ: Mapping[str, str]) -> tuple[str, int]:
    """(host, port) from --host/--port, then the environment, then the defaults."""
    env_port = None
    if environ.get(ENV_PORT):
        try:
            env_port = _port(environ[ENV_PORT])
        except argparse.ArgumentTypeError as exc:
            parser.error(f"{ENV_PORT}: {exc}")
    host_text = args.host or environ.get(ENV_HOST) or DEFAULT_HOST
    try:
        host, port = parse_address(host_text, args.port or env_port or DEFAULT_PORT)
    except ValueError as exc:
        parser.error(f"{'argument --host' if args.host else ENV_HOST}: {exc}")
    if args.port is not None and port != args.port:
        if args.host:
            parser.error(f"--host {args.host!r} names port {port} but --port is {args.port}")
        port = args.port            # the command line beats a port in FS_CLIENT_HOST
    return host, port


# --------------------------------------------------------------------------
# progress and stats

@contextlib.contextmanager
def progress_bar(args: argparse.Namespace, name: str,
                 total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr; yields the callback that advances it.

    ``disable=None`` lets tqdm turn itself off when stderr is not a TTY.
    A bar interrupted by an error is cleared, so the error line stands alone.
    """
    bar = tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
               file=sys.stderr, disable=True if args.no_progress else None,
               dynamic_ncols=True)
    try:
        yield bar.update
    except BaseException:
        bar.leave = False
        raise
    finally:
        bar.close()


def stats_line(verb: str, name: str, size: int, seconds: float) -> str:
    rate = size / 1024 / max(seconds, 1e-9)
    return f"{verb} {name}: {size} bytes in {seconds:.2f} s ({rate:.1f} KB/s)"


def _report(verb: str, name: str, size: int, started: float) -> None:
    print(stats_line(verb, name, size, time.perf_counter() - started), file=sys.stderr)


# --------------------------------------------------------------------------
# commands

def run_list(client: FileClient, args: argparse.Namespace) -> None:
    names = client.list()
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    for name in names:
        sys.stdout.write(name + "\n")
    sys.stdout.flush()


def run_get(client: FileClient, args: argparse.Namespace) -> None:
    target = _get_target(args.name, args.output)
    started = time.perf_counter()
    with progress_bar(args, args.name) as advance:
        if target == STDOUT:
            if sys.stdout is None:
                raise CliError("standard output is closed")
            sys.stdout.flush()
            written = client.get(args.name, dest=sys.stdout.buffer, progress=advance)
            sys.stdout.buffer.flush()
        else:
            try:
                written = client.get(args.name, dest=target, progress=advance)
            except OSError as exc:
                raise CliError(f"cannot write {target!r}: {_reason(exc)}") from exc
    _report("got", args.name, written, started)


def _get_target(name: str, output: str | None) -> str:
    """The path to write NAME to, or STDOUT."""
    if output == STDOUT:
        return STDOUT
    if output is not None and not os.path.isdir(output):
        return output
    if not _is_plain_name(name):
        raise CliError(f"cannot save {name!r} under its own name: it is not a plain "
                       f"file name (use -o PATH)")
    return name if output is None else os.path.join(output, name)


def _is_plain_name(name: str) -> bool:
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    return name not in ("", ".", "..") and not any(sep in name for sep in separators)


def run_upload(client: FileClient, args: argparse.Namespace) -> None:
    try:
        source = open(args.path, "rb")
    except OSError as exc:
        raise CliError(f"cannot read {args.path!r}: {_reason(exc)}") from exc
    with source:
        status = os.fstat(source.fileno())
        size = status.st_size if stat.S_ISREG(status.st_mode) else None
        name = args.name if args.name is not None else os.path.basename(args.path)
        sent = 0

        def advance(count: int) -> None:
            nonlocal sent
            sent += count
            update(count)

        started = time.perf_counter()
        with progress_bar(args, name, total=size) as update:
            try:
                message = client.upload(name, source, progress=advance)
            except OSError as exc:
                raise CliError(f"cannot read {args.path!r}: {_reason(exc)}") from exc
    _report("sent", name, sent, started)
    print(message)


def run_delete(client: FileClient, args: argparse.Namespace) -> None:
    print(client.delete(args.name))


# --------------------------------------------------------------------------
# entry point

def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fail(message: str, status: int = 1) -> int:
    line = " ".join(str(message).split()) or "unknown error"
    print(f"{PROG}: error: {line}", file=sys.stderr)
    return status


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    host, port = resolve_address(parser, args, os.environ)
    client = FileClient(host, port, timeout=args.timeout)
    try:
        args.run(client, args)
    except (FileClientError, CliError) as exc:
        return _fail(getattr(exc, "message", None) or str(exc))
    except ValueError as exc:        # a name the protocol cannot carry
        return _fail(str(exc))
    except BrokenPipeError:
        _silence_stdout()
        return _fail("cannot write to standard output: broken pipe")
    except OSError as exc:
        return _fail(f"{exc.filename + ': ' if exc.filename else ''}{_reason(exc)}")
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    finally:
        client.close()
    return 0
