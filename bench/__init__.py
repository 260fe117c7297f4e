"""The project's load generator: ``python -m bench`` (or ``make bench``).

It starts the real server (``python -m server``) in thread mode and in
process mode (and in thread mode on a free-threaded CPython, below), on free
ports of 127.0.0.1 with temporary storage folders, and measures in one run:

* LIST ops/s and p50/p99 latency at 1, 10 and 50 concurrent clients, each
  client a separate process opening ONE CONNECTION PER REQUEST, next to a
  plain asyncio LIST server (``bench.asyncio_list``) measured with the same
  client as the "best plain Python" baseline, and each mode's bare
  course-style pool of the same size (``bench.threadpool_list``,
  ``bench.prefork_list``); all LIST servers run side by side and are
  measured in interleaved rounds (the median round counts);
* GET and UPLOAD of 10 MB and 100 MB files at 1 and 5 concurrent clients
  (streamed by the client in constant memory), in MB/s of file bytes and as
  a ratio to loopback TCP bulk throughput measured right before and right
  after each point (this machine's speed is not steady); the 100 MB points
  are measured in rounds, each with three transfers per client at 1 client
  and at 5 in turn: the median round counts, with the spread, and five clients
  are compared with one round by round; server CPU seconds per transfer;
* the peak RSS of all server processes (supervisor and workers), sampled
  every ~50 ms, in particular during 5 concurrent 100 MB GETs plus 5
  concurrent 100 MB UPLOADs;
* with a free-threaded CPython (``.venv-ft/bin/python``, ``make venv-ft``; or
  ``--ft-python PATH``), thread mode on it as well (``bench.plan``):
  ``thread-ft`` with the GIL off for LIST, the 100 MB transfers at one
  client and the memory phase, and ``thread-ft-gil``, the same binary with
  ``PYTHON_GIL=1``, for LIST at the top level; without one, a line says these
  points are skipped;
* the physical bounds of this machine: base64 encode/decode speed of one
  core (wire's engine, and binascii for reference), loopback TCP bulk
  throughput, and the file write into the storage folder (``bench.bounds``).

``python -m bench.wire_speed`` (wire's transfer paths in process, no
sockets), ``python -m bench.client_speed`` (``client.FileClient`` against
a local server), ``python -m bench.connection_cost`` (one worker loop's
CPU per LIST connection beside a bare server's) and ``python -m
bench.replace_cost`` (uploads that replace a file beside uploads that
create one) are short measurements of their own, not part of the run.
Every upload of the run creates its file (see ``bench.replace_cost``).

It prints a table, checks the targets and writes a JSON file
(``--out``; by default ``bench/results/bench-<time>.json``) and, beside it,
the LIST chart (``bench.chart``).  ``--quick``
makes a short run (about 2 minutes; the full run takes about 6).  Servers
run at their default log level (INFO) with stdout/stderr sent to a file, as
users run them.  Every point also records the CPU used by the server, by
the clients and by anything else on the machine ("other%"): a point
disturbed by other work is retried once after waiting for the machine to
calm down (both bounded), and flagged if it stays disturbed.
"""
