"""``client.FileClient`` against a local server: GET and UPLOAD speed, client and server CPU.

``python -m bench.client_speed [--mode thread] [--size-mb 100] [--rounds 3]``
starts ``python -m server`` (``server.launcher.ServerProcess``) on free ports
of 127.0.0.1 with a temporary storage folder, then per round GETs a file
into a sink that keeps nothing (as the server's side of an upload writes
to a file and keeps nothing), GETs it as ``bytes``, and UPLOADs it from
memory.  For each transfer it prints
MB/s of file bytes over wall time, and MB per CPU second of the client (this
process) and of the server (all its processes): a client that does its part
as cheaply as the server does its own shows a client figure at least as high.

``--client-from DIR`` measures the ``client`` and ``wire`` packages found in
DIR instead (an older copy, say); the server is always this tree's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from server.launcher import ServerProcess

from .servers import cpu_seconds

MB = 1_000_000


def _import_client(directory: str | None):
    if directory:
        for name in list(sys.modules):      # the launcher imported this tree's wire
            if name.split(".")[0] in ("wire", "client"):
                del sys.modules[name]
        sys.path.insert(0, os.path.abspath(directory))
    import client
    return client


class Sink:
    """A binary file that keeps nothing."""

    def write(self, data) -> int:
        return len(data)


def measure(transfer, size: int, server: ServerProcess) -> dict:
    pids = server.pids()
    server_before, client_before = cpu_seconds(pids), time.process_time()
    started = time.perf_counter()
    transfer()
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    server_cpu = cpu_seconds(pids) - server_before
    return {"mb_per_s": size / wall / MB,
            "client_mb_per_cpu_s": size / client_cpu / MB if client_cpu else None,
            "server_mb_per_cpu_s": size / server_cpu / MB if server_cpu else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.client_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("thread", "process"), default="thread")
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client-from", metavar="DIR",
                        help="import client and wire from DIR (the server stays this tree's)")
    args = parser.parse_args(argv)
    if not 1 <= args.size_mb <= 1000 or not 1 <= args.rounds <= 10:
        parser.error("--size-mb takes 1..1000 and --rounds 1..10")
    client = _import_client(args.client_from)
    size = args.size_mb * MB
    data = os.urandom(size)
    with tempfile.TemporaryDirectory(prefix="fs-client-speed-") as root:
        storage = os.path.join(root, "files")
        os.makedirs(storage)
        with open(os.path.join(storage, "get.bin"), "wb") as out:
            out.write(data)
        server = ServerProcess(storage, args.mode, 2, log_path=os.path.join(root, "server.log"),
                               stats_interval=0, log_level="WARNING")
        server.start()
        try:
            files = client.FileClient(server.host, server.port, timeout=120)
            rows: dict[str, list[dict]] = {"GET": [], "GET bytes": [], "UPLOAD": []}

            def get():
                if files.get("get.bin", dest=Sink()) != size:
                    raise AssertionError("GET returned another size")

            def get_bytes():
                if len(files.get("get.bin")) != size:
                    raise AssertionError("GET returned another size")

            def upload():
                files.upload("up.bin", data)
            for _ in range(args.rounds):
                rows["GET"].append(measure(get, size, server))
                rows["GET bytes"].append(measure(get_bytes, size, server))
                rows["UPLOAD"].append(measure(upload, size, server))
        finally:
            server.stop()
    engine = getattr(getattr(sys.modules.get("wire"), "streaming", None), "BASE64_ENGINE", None)
    print(f"client from {os.path.dirname(client.__file__)}, base64 "
          f"{getattr(engine, 'name', 'binascii')}; server {args.mode}(2) of this tree; "
          f"{args.size_mb} MB, median of {args.rounds} rounds")
    for op, results in rows.items():
        parts = []
        for key, label in (("mb_per_s", "MB/s"), ("client_mb_per_cpu_s", "client MB/CPU-s"),
                           ("server_mb_per_cpu_s", "server MB/CPU-s")):
            values = [r[key] for r in results if r[key]]
            parts.append(f"{label} {statistics.median(values):7.0f} "
                         f"({', '.join(f'{v:.0f}' for v in values)})")
        print(f"  {op:<9}" + "   ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
