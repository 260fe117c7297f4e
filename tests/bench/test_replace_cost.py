"""``python -m bench.replace_cost``: uploads that replace a file beside uploads
that create one, on one server."""

import re

import pytest

from bench import replace_cost

from tests.support import usage_error


@pytest.mark.integration
def test_it_alternates_both_kinds_and_leaves_the_folder_empty(capsys, tmp_path):
    storage = tmp_path / "storage"
    assert replace_cost.main(["--size-mb", "2", "--rounds", "2",
                              "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    rounds = re.findall(r"^round ([12]): (replace|create) +(\d+) MB/s", out, re.M)
    assert [(r, kind) for r, kind, _ in rounds] == [
        ("1", "replace"), ("1", "create"), ("2", "create"), ("2", "replace")], out
    assert all(int(speed) > 0 for _, _, speed in rounds)
    for kind in replace_cost.KINDS:
        assert re.search(rf"^{kind} +median +\d+ MB/s \(rounds \d+-\d+\), server CPU "
                         rf"[\d.]+ s per upload$", out, re.M), out
    assert list(storage.iterdir()) == []


@pytest.mark.unit
@pytest.mark.parametrize("args, message", [
    (["--rounds", "0"], "--size-mb and --rounds must be at least 1"),
    (["--size-mb", "0"], "--size-mb and --rounds must be at least 1"),
    (["--mode", "fiber"], "invalid choice: 'fiber'"),
])
def test_bad_arguments_are_refused_in_one_line(args, message):
    assert message in usage_error("bench.replace_cost", *args)


@pytest.mark.unit
def test_a_storage_path_that_is_a_file_is_usage_error(tmp_path):
    (tmp_path / "a.txt").write_text("keep me")
    assert usage_error("bench.replace_cost", "--storage", str(tmp_path / "a.txt")).endswith(
        f"--storage {tmp_path / 'a.txt'}: not a folder")
    assert (tmp_path / "a.txt").read_text() == "keep me"


@pytest.mark.unit
def test_a_storage_folder_with_files_is_usage_error(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    assert usage_error("bench.replace_cost", "--storage", str(tmp_path)).endswith(
        f"--storage {tmp_path}: the folder is not empty")
    assert (tmp_path / "precious.txt").read_text() == "keep me"
