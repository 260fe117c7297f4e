"""The bounds the bench compares transfers with: the file write into the storage
folder, and how an UPLOAD's ratio to it reaches the report."""

import os
from array import array

import pytest

from bench import bounds, report
from bench import run as bench_run

from .test_plan import _out, _targets

pytestmark = pytest.mark.unit


def test_file_write_speed_writes_the_size_asked_and_leaves_nothing(tmp_path, monkeypatch):
    sizes = []
    real_write = os.write

    def write(fd, data):
        sizes.append(len(data))
        return real_write(fd, data)
    monkeypatch.setattr(bounds.os, "write", write)
    speed = bounds.file_write_speed(str(tmp_path), total=1_000_000, piece=300_000)
    assert speed and speed > 0
    assert sizes == [300_000, 300_000, 300_000, 100_000]
    assert list(tmp_path.iterdir()) == []


def test_file_write_speed_of_a_folder_that_cannot_be_written_is_none(tmp_path):
    assert bounds.file_write_speed(str(tmp_path / "missing"), total=1000) is None


def test_an_upload_is_put_between_file_writes_into_its_storage(monkeypatch, tmp_path):
    """Each UPLOAD round is compared with the file write of its own moment."""
    loopbacks = iter([3000.0, 3000.0, 3000.0, 3000.0])
    writes = iter([400.0, 600.0, 500.0, 700.0])
    speeds = iter([250.0, 275.0, 300.0])
    monkeypatch.setattr(bench_run.bounds, "loopback_now", lambda: next(loopbacks))
    monkeypatch.setattr(bench_run.bounds, "file_write_speed",
                        lambda folder, piece: next(writes) if folder == str(tmp_path) else None)
    monkeypatch.setattr(bench_run, "measure", lambda server, specs, plan: {
        "mb_per_s": next(speeds), "errors": 0, "ops": 1, "rss_peak_bytes": 1, "clients": 1,
        "p50_ms": 1.0, "p99_ms": 1.0})

    class Server:
        address = ("127.0.0.1", 1)
        label = "thread(10)"
    spec = bench_run.ClientSpec("upload", name="up.bin", size=100)
    [point] = bench_run.transfer_rounds(Server(), [[spec]], 3, str(tmp_path))
    assert point["rounds_file_write_ratio"] == [0.5, 0.5, 0.5]
    assert (point["file_write_before_mb_per_s"], point["file_write_after_mb_per_s"]) in [
        (400.0, 600.0), (600.0, 500.0), (500.0, 700.0)]
    # a GET has no file write around it
    loopbacks = iter([3000.0] * 4)
    speeds = iter([900.0] * 3)
    [get] = bench_run.transfer_rounds(Server(), [[bench_run.ClientSpec("get", "g.bin", 100)]],
                                      3, str(tmp_path))
    assert get["rounds_file_write_ratio"] == [None, None, None]
    assert "file_write_ratio" not in get


def test_the_upload_target_says_how_it_compares_with_the_file_write():
    out = _out([], names=("thread",))
    out["transfers"] = [{
        "server": "thread(10)", "variant": "thread", "mode": "thread", "op": "UPLOAD",
        "size_label": "100MB", "clients": 1, "mb_per_s": 600.0, "errors": 0, "rounds": 3,
        "loopback_ratio": 0.15, "rounds_loopback_ratio": [0.14, 0.15, 0.16],
        "file_write_ratio": 0.92, "file_write_before_mb_per_s": 640.0,
        "file_write_after_mb_per_s": 660.0, "rounds_file_write_ratio": [0.9, 0.92, 0.95]}]
    target = _targets(out)["UPLOAD 100MB@1 thread >= 0.20 of loopback TCP"]
    assert not target["pass"]
    assert target["detail"] == (
        "median of 3 rounds: 600 MB/s; rounds' ratios 0.140-0.160; 0.92 of the file write "
        "into the storage folder (650 MB/s next to it; rounds 0.90-0.95)")


def test_the_bounds_table_names_the_storage_file_system():
    out = _out([], names=("thread",))
    out["bounds"]["file_write"] = {"mb_per_s": 650.0, "best_mb_per_s": 760.0,
                                   "folder_fs": "ext4",
                                   "piece_bytes": bounds.UPLOAD_WRITE_BYTES}
    out["targets"] = report.evaluate_targets(out)
    line = next(line for line in report.render(out).splitlines() if "file write" in line)
    assert (f"100 MB into the storage folder (ext4), {bounds.UPLOAD_WRITE_BYTES // 1024} KiB "
            f"writes, no fsync") in line
    assert line.split()[-2:] == ["650.0", "760.0"]


def test_fs_type_is_that_of_the_longest_mount_point_above_the_folder(tmp_path):
    assert bench_run._fs_type("/proc/self") == "proc"
    assert bench_run._fs_type(str(tmp_path)) is not None


def test_every_upload_of_a_run_creates_its_file(monkeypatch, tmp_path):
    """No upload in the bench replaces a file (on ext4 a replacing rename starts
    the new file's writeback inside the rename): a client's repeated uploads
    get fresh names, each removed after its upload when the storage folder is
    known, and the 100 MB rounds start with no upload left."""
    from bench import load
    names = load.fresh_upload_names("up-100MB-0.bin")
    assert [next(names) for _ in range(3)] == ["up-100MB-0.bin", "up-100MB-0-1.bin",
                                                "up-100MB-0-2.bin"]
    assert [n for n, _ in zip(load.fresh_upload_names("up"), range(2))] == ["up", "up-1"]

    uploaded = []

    class Client:
        def upload(self, name, source):
            uploaded.append(name)
            (tmp_path / name).write_bytes(b"x")
            return source.size
    op = load._UploadOp(Client(), load.ClientSpec("upload", name="up.bin", size=10,
                                                 remove_from=str(tmp_path)))
    for _ in range(2):
        assert op() == 10
        assert (tmp_path / uploaded[-1]).exists()
        op.tidy()
        assert list(tmp_path.iterdir()) == []
    assert uploaded == ["up.bin", "up-1.bin"]

    monkeypatch.setattr(bench_run.bounds, "loopback_now", lambda: 3000.0)
    monkeypatch.setattr(bench_run.bounds, "file_write_speed", lambda folder, piece: 500.0)
    left_before = []

    def measure(server, specs, plan):
        left_before.append(sorted(p.name for p in tmp_path.iterdir()))
        (tmp_path / specs[0].name).write_bytes(b"x")      # what the server stored
        return {"mb_per_s": 300.0, "errors": 0, "ops": 1, "rss_peak_bytes": 1,
                "clients": 1, "p50_ms": 1.0, "p99_ms": 1.0}
    monkeypatch.setattr(bench_run, "measure", measure)

    class Server:
        address = ("127.0.0.1", 1)
        label = "thread(10)"
    spec = bench_run.ClientSpec("upload", name="up-100MB-0.bin", size=100)
    bench_run.transfer_rounds(Server(), [[spec]], 3, str(tmp_path))
    assert left_before == [[], [], []]
    assert list(tmp_path.iterdir()) == []
    assert all(s.remove_from == "/st" for s in
               bench_run._transfer_specs("UPLOAD", "10MB", 2, storage="/st"))


def test_the_client_loop_tidies_after_each_op_outside_its_latency():
    """``tidy()`` runs after each op's end is taken, so its time is not in the
    latencies; a removal that fails is reported as a message, not a crash."""
    import time as time_module

    from bench import load
    calls = []

    class Op:
        def __call__(self):
            calls.append("op")
            return 10

        def tidy(self):
            calls.append("tidy")
            time_module.sleep(0.05)
            if len(calls) == 4:
                raise PermissionError(13, "Permission denied", "up-1.bin")
    plan = load.Plan(("127.0.0.1", 1), duration=0.0, window=False, min_ops=3, max_ops=3)
    result = load._client_loop(Op(), plan, time_module.monotonic())
    assert calls == ["op", "tidy"] * 3
    assert result["ops"] == 3 and result["errors"] == 0 and result["bytes"] == 30
    latencies = array("d")
    latencies.frombytes(result["latencies"])
    assert max(latencies) < 0.05
    assert result["messages"] == ["removing an upload: [Errno 13] Permission denied: 'up-1.bin'"]


def test_both_transfer_phases_have_their_uploads_removed_from_the_storage(monkeypatch,
                                                                          tmp_path):
    """Every upload spec of the transfer and memory phases names the storage
    folder, so that each file is removed after its upload."""
    from types import SimpleNamespace

    from bench.plan import Variant
    seen = []

    class Server:
        address = ("127.0.0.1", 1)
        label = "thread(10)"
    monkeypatch.setattr(bench_run, "_transfer_server", lambda ws, variant, storage, phase:
                        ("thread(10)", Server()))
    monkeypatch.setattr(bench_run, "_server_info", lambda *a, **k: {"idle_rss_bytes": 1})
    monkeypatch.setattr(bench_run, "_finish", lambda server, info: None)
    monkeypatch.setattr(bench_run.time, "sleep", lambda seconds: None)
    figures = {"mb_per_s": 1.0, "errors": 0, "ops": 1, "rss_peak_bytes": 2, "clients": 1,
               "p50_ms": 1.0, "p99_ms": 1.0}

    def measure(server, specs, plan):
        seen.extend(specs)
        return dict(figures)
    monkeypatch.setattr(bench_run, "measure", measure)
    monkeypatch.setattr(bench_run, "between_loopbacks",
                        lambda server, specs, plan: measure(server, specs, plan))
    variant = Variant("thread", "thread", transfers=(("UPLOAD", "10MB", 5),), memory=True)
    args = SimpleNamespace(variants=[variant], transfer_seconds=0.0)
    out = {"transfers": [], "memory": [], "servers": []}
    bench_run.run_transfer_phase(None, args, out, str(tmp_path))
    bench_run.run_memory_phase(None, args, out, str(tmp_path))
    uploads = [spec for spec in seen if spec.op == "upload"]
    assert len(uploads) == 10 and all(s.remove_from == str(tmp_path) for s in uploads)


class _Server:
    address = ("127.0.0.1", 1)
    label = "thread(10)"


def test_one_client_and_five_take_turns_in_the_same_rounds(monkeypatch):
    """Each round runs both sets, each between two loopback measurements; the set
    that goes first alternates; each point keeps its rounds in round order."""
    loopbacks = iter(range(1000, 1100, 10))
    monkeypatch.setattr(bench_run.bounds, "loopback_now", lambda: float(next(loopbacks)))
    ran = []
    speeds = {1: iter([500.0, 400.0, 600.0]), 5: iter([450.0, 480.0, 540.0])}

    def measure(server, specs, plan):
        ran.append(len(specs))
        # every client makes the same few transfers in a row, not one
        assert plan.min_ops == plan.max_ops == bench_run.TRANSFERS_PER_CLIENT > 1
        assert not plan.window
        return {"mb_per_s": next(speeds[len(specs)]), "errors": 0, "ops": len(specs),
                "rss_peak_bytes": 1, "clients": len(specs), "p50_ms": 1.0, "p99_ms": 1.0}
    monkeypatch.setattr(bench_run, "measure", measure)
    sets = [bench_run._transfer_specs("GET", "100MB", n) for n in (1, 5)]
    one, five = bench_run.transfer_rounds(_Server(), sets, 3)
    assert ran == [1, 5, 5, 1, 1, 5]
    assert one["rounds_mb_per_s"] == [500.0, 400.0, 600.0]
    assert five["rounds_mb_per_s"] == [450.0, 480.0, 540.0]
    # the loopback after one measurement is the one before the next: five ran
    # second, first and second, between 1010/1020, 1020/1030 and 1050/1060; its
    # median round by loopback ratio is the second (480 / 1025)
    assert five["rounds_loopback_ratio"] == [0.443, 0.468, 0.512]
    assert (five["loopback_before_mb_per_s"], five["loopback_after_mb_per_s"]) == \
        (1020.0, 1030.0)
    assert one["rounds"] == five["rounds"] == 3 and five["ops"] == 15

    # the median of the rounds' ratios (0.9, 1.2, 0.9), not the ratio of the
    # medians (480 / 500) or of the median rounds
    bench_run._against_one_client(one, five)
    assert five["rounds_vs_one_client"] == [0.9, 1.2, 0.9]
    assert five["vs_one_client"] == 0.9


def test_a_round_where_either_moved_nothing_has_no_ratio():
    one = {"rounds_mb_per_s": [500.0, None, 400.0, 600.0], "errors": 1}
    five = {"rounds_mb_per_s": [550.0, 520.0, None, 540.0]}
    bench_run._against_one_client(one, five)
    assert five["rounds_vs_one_client"] == [1.1, None, None, 0.9]
    assert five["vs_one_client"] == 1.0


def _transfer(clients, mb_per_s, **more):
    return {"server": "thread(10)", "variant": "thread", "mode": "thread", "op": "GET",
            "size_label": "100MB", "clients": clients, "mb_per_s": mb_per_s, "errors": 0,
            **more}


@pytest.mark.parametrize("rounds_ratios, passes", [
    ([1.2, 0.9, 1.05], True),         # one round below 1, the median above
    ([0.95, 1.3, 0.98], False),
    ([0.999, 1.3, 0.98], False),      # shown as 0.999, not as a failing "1.0"
])
def test_five_clients_are_held_to_the_median_of_their_rounds(rounds_ratios, passes):
    out = _out([], names=("thread",))
    out["transfers"] = [
        _transfer(1, 1000.0, loopback_ratio=0.3),
        _transfer(5, 1040.0, loopback_ratio=0.2, rounds_vs_one_client=rounds_ratios,
                  vs_one_client=sorted(rounds_ratios)[1])]
    target = _targets(out)["GET 100MB thread: 5 clients move at least as much as 1"]
    assert target["pass"] is passes
    assert target["value"] == sorted(rounds_ratios)[1]
    low, high = min(rounds_ratios), max(rounds_ratios)
    assert target["detail"] == (f"median of the MB/s ratios of 3 rounds, one client and five "
                                f"in turn: rounds {low:.2f}-{high:.2f}; the median rounds 1040 "
                                f"vs 1000 MB/s")


def test_five_clients_fail_when_one_client_had_errors():
    out = _out([], names=("thread",))
    out["transfers"] = [
        _transfer(1, 1000.0, loopback_ratio=0.3, errors=1),
        _transfer(5, 1400.0, loopback_ratio=0.4, rounds_vs_one_client=[1.4, 1.4, 1.4],
                  vs_one_client=1.4)]
    target = _targets(out)["GET 100MB thread: 5 clients move at least as much as 1"]
    assert target["value"] == 1.4 and not target["pass"]


def test_five_clients_of_an_older_file_are_compared_by_loopback_ratio():
    out = _out([], names=("thread",))
    out["transfers"] = [_transfer(1, 1000.0, loopback_ratio=0.30),
                        _transfer(5, 1100.0, loopback_ratio=0.27)]
    target = _targets(out)["GET 100MB thread: 5 clients move at least as much as 1"]
    assert target["value"] == 0.9 and not target["pass"]


def test_the_100mb_points_of_an_op_are_measured_in_the_same_rounds(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from bench.plan import ALL_TRANSFERS, Variant
    monkeypatch.setattr(bench_run, "_transfer_server", lambda ws, variant, storage, phase:
                        ("thread(10)", _Server()))
    monkeypatch.setattr(bench_run, "_server_info", lambda *a, **k: {"idle_rss_bytes": 1})
    monkeypatch.setattr(bench_run, "_finish", lambda server, info: None)
    calls = []

    def figures(specs, mb_per_s):
        return {"mb_per_s": mb_per_s, "errors": 0, "ops": len(specs), "rss_peak_bytes": 2,
                "clients": len(specs), "p50_ms": 1.0, "p99_ms": 1.0,
                "rounds_mb_per_s": [mb_per_s, mb_per_s]}

    def transfer_rounds(server, sets, rounds, storage=None, write_piece=None):
        assert write_piece == bench_run.bounds.UPLOAD_WRITE_BYTES
        calls.append(("rounds", sets[0][0].op, [len(specs) for specs in sets], rounds))
        return [figures(specs, 100.0 * len(specs)) for specs in sets]

    def between_loopbacks(server, specs, plan):
        calls.append(("between", specs[0].op, len(specs), specs[0].size))
        return figures(specs, 50.0)
    monkeypatch.setattr(bench_run, "transfer_rounds", transfer_rounds)
    monkeypatch.setattr(bench_run, "between_loopbacks", between_loopbacks)
    args = SimpleNamespace(variants=[Variant("thread", "thread", transfers=ALL_TRANSFERS)],
                           transfer_seconds=0.0, transfer_rounds=4)
    out = {"transfers": [], "memory": [], "servers": []}
    bench_run.run_transfer_phase(None, args, out, str(tmp_path))
    ten = bench_run.SIZES["10MB"]
    assert calls == [("between", "get", 1, ten), ("between", "get", 5, ten),
                     ("rounds", "get", [1, 5], 4),
                     ("between", "upload", 1, ten), ("between", "upload", 5, ten),
                     ("rounds", "upload", [1, 5], 4)]
    assert [(r["op"], r["size_label"], r["clients"]) for r in out["transfers"]] == \
        list(ALL_TRANSFERS)
    five = [r for r in out["transfers"] if r["clients"] == 5 and r["size_label"] == "100MB"]
    assert [r["vs_one_client"] for r in five] == [5.0, 5.0]


def test_upload_sets_in_one_round_each_start_with_no_upload_left(monkeypatch, tmp_path):
    """Both sets upload files of the same names: the uploads of one set are removed
    before the next runs, and each set sits between two file writes of its own."""
    monkeypatch.setattr(bench_run.bounds, "loopback_now", lambda: 3000.0)
    writes = iter(range(100, 200, 10))
    monkeypatch.setattr(bench_run.bounds, "file_write_speed",
                        lambda folder, piece: float(next(writes)))
    left_before = []

    def measure(server, specs, plan):
        left_before.append(sorted(p.name for p in tmp_path.iterdir()))
        for spec in specs:
            (tmp_path / spec.name).write_bytes(b"x")      # what the server stored
        return {"mb_per_s": 300.0 * len(specs), "errors": 0, "ops": len(specs),
                "rss_peak_bytes": 1, "clients": len(specs), "p50_ms": 1.0, "p99_ms": 1.0}
    monkeypatch.setattr(bench_run, "measure", measure)
    sets = [bench_run._transfer_specs("UPLOAD", "100MB", n, storage=str(tmp_path))
            for n in (1, 5)]
    one, five = bench_run.transfer_rounds(_Server(), sets, 2, str(tmp_path))
    assert left_before == [[]] * 4
    assert list(tmp_path.iterdir()) == []
    # writes 100 | one | 110 | five | 120 || five | 130 | one | 140
    assert five["rounds_file_write_ratio"] == [round(1500 / 115, 3), round(1500 / 125, 3)]
    assert one["rounds_file_write_ratio"] == [round(300 / 105, 3), round(300 / 135, 3)]


def test_a_variant_with_the_one_client_100mb_points_only_has_no_five_client_ratio(
        monkeypatch, tmp_path):
    from types import SimpleNamespace

    from bench.plan import SINGLE_100MB, Variant
    monkeypatch.setattr(bench_run, "_transfer_server", lambda ws, variant, storage, phase:
                        ("thread-ft(10)", _Server()))
    monkeypatch.setattr(bench_run, "_server_info", lambda *a, **k: {"idle_rss_bytes": 1})
    monkeypatch.setattr(bench_run, "_finish", lambda server, info: None)
    sets_seen = []

    def transfer_rounds(server, sets, rounds, storage=None, write_piece=None):
        sets_seen.append(([len(specs) for specs in sets], write_piece))
        return [{"mb_per_s": 100.0, "errors": 0, "ops": 1, "rss_peak_bytes": 2, "clients": 1,
                 "p50_ms": 1.0, "p99_ms": 1.0, "rounds_mb_per_s": [100.0]} for _ in sets]
    monkeypatch.setattr(bench_run, "transfer_rounds", transfer_rounds)
    args = SimpleNamespace(variants=[Variant("thread-ft", "thread", gil_enabled=False,
                                             transfers=SINGLE_100MB)],
                           transfer_seconds=0.0, transfer_rounds=3)
    out = {"transfers": [], "memory": [], "servers": []}
    bench_run.run_transfer_phase(None, args, out, str(tmp_path))
    # an upload on the free-threaded build writes what a 512 KiB receive decodes to
    assert sets_seen == [([1], 384 * 1024), ([1], 384 * 1024)]
    assert bench_run.bounds.UPLOAD_WRITE_BYTES == 768 * 1024     # this build's
    assert [(r["op"], r["clients"]) for r in out["transfers"]] == [("GET", 1), ("UPLOAD", 1)]
    assert not any("vs_one_client" in r for r in out["transfers"])
