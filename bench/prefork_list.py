"""A bare course-style LIST server: pre-forked processes, each in a blocking accept loop.

The reference for process mode's own per-connection costs: what a process pool
of the same size answers with no stats, timeouts, admission control or log.
Same reply as the real server; anything but LIST gets an error reply.  Run:
``python -m bench.prefork_list --port P --storage DIR [--pool N]``;
SIGTERM/SIGINT stop it and its workers.
"""

import multiprocessing
import signal
import socket

from bench.threadpool_list import run_pool_server, serve


def work(listener: socket.socket, root: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        conn, _ = listener.accept()
        serve(conn, root)


def main(port: int, root: str, pool: int) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=work, args=(listener, root), daemon=True)
               for _ in range(pool)]
    for worker in workers:
        worker.start()
    stopped = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: stopped.append(signum))
    print("ready", flush=True)
    while not stopped:
        signal.pause()
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(5)


if __name__ == "__main__":
    run_pool_server(main)
