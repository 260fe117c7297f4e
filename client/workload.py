"""The load a generator asks of the server: command weights and file sizes.

One definition shared by the Locust users (``locust/locustfile.py``) and the
scenario schema (``scenarios/schema.py``), so that a scenario's defaults are
the Locust defaults.  Sizes are binary: 1KB is 1024 bytes.
"""

from __future__ import annotations

import wire

__all__ = ["DEFAULT_WEIGHTS", "SIZE_UNITS", "parse_size", "size_label"]

# relative weight of each command, keyed by its lower-case name, in wire.COMMANDS order
DEFAULT_WEIGHTS = dict(zip((command.lower() for command in wire.COMMANDS), (1, 4, 2, 1)))
SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def parse_size(text: str) -> int:
    """``"100KB"``, ``"1.5mb"`` or ``"512"`` (bytes) -> bytes; ValueError names the text."""
    value = text.strip().upper()
    for unit in sorted(SIZE_UNITS, key=len, reverse=True):
        if value.endswith(unit):
            number = value[:-len(unit)].strip()
            break
    else:
        unit, number = "B", value
    try:
        size = int(float(number) * SIZE_UNITS[unit])
    except ValueError:
        raise ValueError(f"bad size {text!r}; use e.g. 512B, 100KB, 1MB") from None
    if size < 0:
        raise ValueError(f"bad size {text!r}: negative")
    return size


def size_label(size: int) -> str:
    """The shortest exact label: 1048576 -> ``"1MB"``, 1500 -> ``"1500B"``."""
    for unit in ("GB", "MB", "KB"):
        if size >= SIZE_UNITS[unit] and size % SIZE_UNITS[unit] == 0:
            return f"{size // SIZE_UNITS[unit]}{unit}"
    return f"{size}B"
