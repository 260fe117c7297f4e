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


class PeriodicSampler:
    """Calls ``sample_once(out)`` every ``interval`` s in a thread until stopped,
    appending to ``path``: also at once if ``sample_at_start``, and once more when
    stopped if ``final_sample``."""

    sample_at_start = False
    final_sample = False

    def __init__(self, path: Path, interval: float, name: str):
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = time.monotonic()

    def start(self):
        self._started = time.monotonic()
        self.begin()
        self._thread.start()
        return self

    def begin(self) -> None:
        """Called once before the thread starts."""

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def elapsed(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def sample_once(self, out) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            if self.sample_at_start:
                self._sample(out)
            while not self._stop.wait(self.interval):
                self._sample(out)
            if self.final_sample:
                self._sample(out)

    def _sample(self, out) -> None:
        self.sample_once(out)
        out.flush()


class StatsSampler(PeriodicSampler):
    """Polls ``url`` every ``interval`` seconds, and once more when stopped (the
    totals at the end of the run)."""

    sample_at_start = True
    final_sample = True

    def __init__(self, url: str, path: Path, interval: float = SAMPLE_SECONDS,
                 fetch: Callable[[str], dict] = fetch_json):
        super().__init__(path, interval, "stats-sampler")
        self.url = url
        self.fetch = fetch
        self.latest: dict | None = None
        self.samples = 0
        self.errors = 0

    def sample_once(self, out) -> None:
        elapsed = self.elapsed()
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


def read_records(path: Path, key: str) -> list[dict] | None:
    """The lines of a sampler's ``.jsonl`` that hold a mapping under ``key``;
    None when there is no file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue            # a line cut short by a crash
        if isinstance(record, dict) and isinstance(record.get(key), dict):
            records.append(record)
    return records


def read_samples(path: Path) -> list[dict]:
    """The good samples of a ``server-stats.jsonl``, each ``{"t", "stats"}``."""
    return read_records(path, "stats") or []
