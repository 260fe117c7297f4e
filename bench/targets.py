"""What ``make bench`` checks (``bench.report.evaluate_targets``), in one place.

No imports: the server tests that hold the same targets (the memory one in
``tests/server/test_transfer_memory.py``) also run on the free-threaded
interpreter, which lacks what the rest of the bench imports.
"""

# LIST at the top level over the asyncio baseline's
LIST_RATIO_TARGETS = {"thread": 0.6, "process": 0.9}
# a 100 MB transfer at 1 client over loopback TCP bulk throughput of the same moment
TRANSFER_RATIO_TARGETS = {"GET": 0.25, "UPLOAD": 0.20}
# RSS increase of the server during 5 GETs + 5 UPLOADs of 100 MB at once
MEMORY_TARGET_BYTES = 64 * 2 ** 20
# free-threaded thread mode, LIST at the top level: over the same binary with
# PYTHON_GIL=1, and over the process mode of the lab's own interpreter
FT_OVER_GIL_TARGET = 1.5
FT_OVER_PROCESS_TARGET = 1.0
