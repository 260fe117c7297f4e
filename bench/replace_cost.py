"""What an UPLOAD that replaces a file costs, beside one that creates it.

``python -m bench.replace_cost [--size-mb 100] [--rounds 4] [--mode thread]
[--storage DIR]`` starts one server (pool 2) on a storage folder.  Each
round uploads ``--size-mb`` MB twice, in an order that alternates from one
round to the next: under a name that already holds a file of that size
(``replace``), and under a free name (``create``; that file is removed right
after its upload, untimed).  It prints MB/s and the server's CPU per upload
for each, and the medians.

On ext4 (mounted with the default ``auto_da_alloc``) a rename over an
existing file starts the new file's writeback inside the rename, so inside
the request; a replace also frees the old file's pages there.  The server
keeps this (the writeback is what keeps a crash from leaving an empty file
where the old one was); ``make bench`` avoids it, so that every upload it
measures creates its file.  ``--storage`` picks the folder (and so the file
system); the default is a new folder under the system's temporary directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from server.config import MODES

from .plan import MB
from .proto import BlockFile, Client
from .servers import RealServer, cpu_seconds

KINDS = ("replace", "create")


def upload_rounds(server, storage: str, size: int, rounds: int) -> dict[str, list[dict]]:
    """``rounds`` of each kind, alternated; each: {"mb_per_s", "server_cpu_s"}."""
    source = BlockFile(size)
    client = Client(server.address, timeout=120.0)
    client.upload("kept.bin", source)                      # the file that is replaced
    figures: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for round_index in range(rounds):
        for kind in (KINDS if round_index % 2 == 0 else KINDS[::-1]):
            name = "kept.bin" if kind == "replace" else f"new-{round_index}.bin"
            cpu_before = cpu_seconds(server.pids())
            started = time.perf_counter()
            client.upload(name, source)
            seconds = time.perf_counter() - started
            cpu = cpu_seconds(server.pids()) - cpu_before
            if kind == "create":
                os.unlink(os.path.join(storage, name))
            figures[kind].append({"mb_per_s": size / MB / seconds, "server_cpu_s": cpu})
            print(f"round {round_index + 1}: {kind:7} {size / MB / seconds:7.0f} MB/s  "
                  f"server CPU {cpu:.2f} s", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replace_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--mode", default="thread", choices=MODES)
    parser.add_argument("--storage", help="storage folder (must not exist or be empty)")
    args = parser.parse_args(argv)
    if args.size_mb < 1 or args.rounds < 1:
        parser.error("--size-mb and --rounds must be at least 1")
    with tempfile.TemporaryDirectory(prefix="fs-replace-cost-") as work:
        storage = args.storage or os.path.join(work, "storage")
        if os.path.exists(storage) and not os.path.isdir(storage):
            parser.error(f"--storage {storage}: not a folder")
        os.makedirs(storage, exist_ok=True)
        if os.listdir(storage):
            parser.error(f"--storage {storage}: the folder is not empty")
        server = RealServer(args.mode, 2, storage, os.path.join(work, "server.log"))
        server.start()
        try:
            figures = upload_rounds(server, storage, args.size_mb * MB, args.rounds)
        finally:
            server.stop()
            for name in os.listdir(storage):
                os.unlink(os.path.join(storage, name))
    for kind, rounds in figures.items():
        print(f"{kind:7} median {statistics.median(r['mb_per_s'] for r in rounds):7.0f} MB/s "
              f"(rounds {min(r['mb_per_s'] for r in rounds):.0f}-"
              f"{max(r['mb_per_s'] for r in rounds):.0f}), server CPU "
              f"{statistics.median(r['server_cpu_s'] for r in rounds):.2f} s per upload")
    return 0


if __name__ == "__main__":
    sys.exit(main())
