"""A bare course-style LIST server: an accept loop feeding a ThreadPoolExecutor.

The reference for thread mode's own per-connection costs: what a thread pool
of the same size answers with no stats, timeouts, admission control or log.
Same reply as the real server; anything but LIST gets an error reply.  Run:
``python -m bench.threadpool_list --port P --storage DIR [--pool N]``;
SIGTERM/SIGINT stop it.
"""

import argparse
import signal
import socket
from concurrent.futures import ThreadPoolExecutor

from bench.asyncio_list import TERMINATOR, answer


def serve(conn: socket.socket, root: str) -> None:
    with conn:
        buffer = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buffer += data
            while (end := buffer.find(TERMINATOR)) >= 0:
                line, buffer = buffer[:end], buffer[end + 4:]
                conn.sendall(answer(line, root))
            if len(buffer) > 4096:
                return


def main(port: int, root: str, pool: int) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)

    def stop(signum, frame):
        raise KeyboardInterrupt
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    print("ready", flush=True)
    with listener, ThreadPoolExecutor(max_workers=pool) as executor:
        try:
            while True:
                conn, _ = listener.accept()
                executor.submit(serve, conn, root)
        except KeyboardInterrupt:
            pass


def run_pool_server(main) -> None:
    """The command line of a bare pool server: ``main(port, storage, pool)``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--pool", type=int, default=50)
    args = parser.parse_args()
    main(args.port, args.storage, args.pool)


if __name__ == "__main__":
    run_pool_server(main)
