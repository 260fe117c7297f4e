"""Sample the server's ``/stats`` during a run into ``server-stats.jsonl``.

One JSON object per line: ``{"t": seconds since the sampler started, "stats":
<the /stats body>}``, or ``{"t": ..., "error": "..."}`` when a poll fails (the
server starting, restarting, or a port-forward dropping).  The latest good
sample feeds the progress line.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

SAMPLE_SECONDS = 2.0


def fetch_json(url: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class StatsSampler:
    """Polls ``url`` every ``interval`` seconds in a thread until stopped."""

    def __init__(self, url: str, path: Path, interval: float = SAMPLE_SECONDS,
                 fetch: Callable[[str], dict] = fetch_json):
        self.url = url
        self.path = path
        self.interval = interval
        self.fetch = fetch
        self.latest: dict | None = None
        self.samples = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stats-sampler", daemon=True)
        self._started = time.monotonic()

    def start(self) -> StatsSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)

    def __enter__(self) -> StatsSampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def sample_once(self, out) -> None:
        elapsed = round(time.monotonic() - self._started, 3)
        try:
            stats = self.fetch(self.url)
        except (OSError, ValueError) as error:
            self.errors += 1
            reason = getattr(error, "reason", None) or error
            out.write(json.dumps({"t": elapsed, "error": str(reason)}) + "\n")
            return
        self.latest = stats
        self.samples += 1
        out.write(json.dumps({"t": elapsed, "stats": stats}, separators=(",", ":")) + "\n")

    def _run(self) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            while True:
                self.sample_once(out)
                out.flush()
                if self._stop.wait(self.interval):
                    self.sample_once(out)      # the totals at the end of the run
                    break


def read_samples(path: Path) -> list[dict]:
    """The good samples of a ``server-stats.jsonl``, each ``{"t", "stats"}``."""
    samples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return samples
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue            # a line cut short by a crash
        if isinstance(record, dict) and isinstance(record.get("stats"), dict):
            samples.append(record)
    return samples
