"""What one worker spends per connection: server CPU per one-shot LIST connection.

``python -m bench.connection_cost [--connections 4000] [--rounds 5] [--tree DIR]``
runs, in this process, one ``server.workerloop.WorkerLoop`` (the loop every
worker runs, thread or process) on a listener of 127.0.0.1, logging its
access lines at INFO to /dev/null, while a client process opens
``--connections`` connections one after the other, each sending one LIST and
reading the reply.  Beside it, in alternate rounds, a bare course-style
server (``bench.threadpool_list.serve``: blocking accept, recv, reply) serves
the same client.  It prints this process's user and system CPU per connection
for both, each round and the medians: the server's own per-connection work,
without pools, scheduling or other clients in the way (``make bench``
measures those).

``--tree DIR`` imports ``server`` and ``wire`` from DIR (an older checkout,
say) for a before/after comparison; run the two one after the other, as
this machine's speed drifts.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile

CLIENT = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
for _ in range(count):
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"LIST\\r\\n\\r\\n")
        reply = b""
        while not reply.endswith(b"\\r\\n\\r\\n"):
            data = sock.recv(65536)
            if not data:
                sys.exit("connection closed before the whole reply")
            reply += data
"""
FILES = 20                      # as make bench's LIST storage


def _listener() -> socket.socket:
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    return listener


def _serve(count: int, storage: str, bare: bool) -> tuple[float, float]:
    """(user, system) CPU microseconds of this process per connection."""
    from server.config import ServerConfig
    from server.handler import ConnectionHandler
    try:
        from server.pools import prepare_listener
    except ImportError:                 # a --tree from before ff1c894
        def prepare_listener(listener):
            listener.setblocking(False)
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    from server.stats import WorkerTable
    from server.workerloop import ConnectionRoom, WorkerLoop

    from bench.threadpool_list import serve

    with _listener() as listener:
        port = listener.getsockname()[1]
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(count)])
        try:
            before = resource.getrusage(resource.RUSAGE_SELF)
            if bare:
                for _ in range(count):
                    conn, _address = listener.accept()
                    serve(conn, storage)
            else:
                prepare_listener(listener)       # as a pool prepares it
                slot = WorkerTable(1).slot(0)
                handler = ConnectionHandler(_storage(storage), ServerConfig())
                with ConnectionRoom(1000) as room:
                    WorkerLoop(listener, handler, slot, lambda: slot["connections"] >= count,
                               room).run()
            after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            if client.wait(60) != 0:
                raise SystemExit(f"the client failed (status {client.returncode})")
    return (1e6 * (after.ru_utime - before.ru_utime) / count,
            1e6 * (after.ru_stime - before.ru_stime) / count)


def _storage(root: str):
    from server.storage import Storage
    return Storage(root)


@contextlib.contextmanager
def _access_lines_logged():
    """The server's access line at INFO, through its batching handler, to /dev/null;
    the root logger as it was afterwards."""
    from server.logbuffer import BatchingStreamHandler
    root = logging.getLogger()
    level = root.level
    with open(os.devnull, "w") as sink:
        handler = BatchingStreamHandler(sink)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s - %(threadName)s - %(levelname)s - %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
            handler.close()             # its flusher thread ends


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.connection_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", help="import server and wire from this checkout")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.rounds < 1:
        parser.error("--connections and --rounds must be at least 1")
    if args.tree:
        if not os.path.isdir(os.path.join(args.tree, "server")):
            parser.error(f"--tree {args.tree}: no server package there")
        sys.path.insert(0, os.path.abspath(args.tree))
    figures: dict[str, list[tuple[float, float]]] = {"server": [], "bare": []}
    with _access_lines_logged(), \
            tempfile.TemporaryDirectory(prefix="fs-connection-cost-") as storage:
        for index in range(FILES):
            with open(os.path.join(storage, f"file-{index:02d}.txt"), "wb") as out:
                out.write(b"x" * (100 + index))
        for round_index in range(args.rounds):
            for name in ("server", "bare"):
                user, system = _serve(args.connections, storage, bare=name == "bare")
                figures[name].append((user, system))
                print(f"round {round_index + 1}: {name:6} user {user:6.1f} µs  "
                      f"system {system:6.1f} µs  per connection", flush=True)
    for name, rounds in figures.items():
        totals = [user + system for user, system in rounds]
        print(f"{name:6} median {statistics.median(totals):6.1f} µs per connection "
              f"(user {statistics.median(u for u, _ in rounds):.1f}, system "
              f"{statistics.median(s for _, s in rounds):.1f}; rounds "
              f"{min(totals):.0f}-{max(totals):.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
