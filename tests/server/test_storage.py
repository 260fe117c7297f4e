import os

import pytest


from server.storage import MAX_NAME_BYTES, Storage, StorageError, validate_name

pytestmark = pytest.mark.unit

HOSTILE_NAMES = [
    ("", "empty"),
    (".", "not allowed"),
    ("..", "not allowed"),
    ("../secret", "'/'"),
    ("/etc/passwd", "'/'"),
    ("a/b", "'/'"),
    ("//", "'/'"),
    ("..\\windows", "must not contain '/' or"),
    ("nul\x00byte", "control character"),
    ("new\nline", "control character"),
    ("tab\there", "control character"),
    ("del\x7f", "control character"),
    (".hidden", "must not start with '.'"),
    (".upload-123-abc", "must not start with '.'"),
    ("x" * (MAX_NAME_BYTES + 1), "longer than"),
    ("é" * 128, "longer than"),          # 256 bytes in UTF-8
]


@pytest.mark.parametrize("name, reason", HOSTILE_NAMES)
def test_hostile_names_are_refused_everywhere(tmp_path, name, reason):
    storage = Storage(tmp_path / "files")
    with pytest.raises(StorageError) as error:
        validate_name(name)
    assert reason in str(error.value)
    for operation in (storage.open_read, storage.start_upload, storage.delete):
        with pytest.raises(StorageError):
            operation(name)
    assert os.listdir(tmp_path / "files") == []


@pytest.mark.parametrize("name", ["a.txt", "x" * MAX_NAME_BYTES, "donalbebek.jpg",
                                  "名前.bin", "with space? no-dash_ok.tar.gz", "a..b"])
def test_ordinary_names_are_accepted(name):
    assert validate_name(name) == name


def test_upload_is_invisible_until_commit_then_replaces_atomically(tmp_path):
    storage = Storage(tmp_path)
    (tmp_path / "f.bin").write_bytes(b"old")
    upload = storage.start_upload("f.bin")
    upload.write(b"new ")
    upload.write(b"content")
    assert (tmp_path / "f.bin").read_bytes() == b"old"
    assert storage.list_names() == ["f.bin"]          # the temp file is hidden
    upload.commit()
    assert (tmp_path / "f.bin").read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_aborted_upload_leaves_old_file_and_no_temp(tmp_path):
    storage = Storage(tmp_path)
    (tmp_path / "f.bin").write_bytes(b"old")
    upload = storage.start_upload("f.bin")
    upload.write(b"partial")
    upload.abort()
    assert (tmp_path / "f.bin").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_list_shows_regular_files_only_sorted(tmp_path):
    storage = Storage(tmp_path)
    for name in ("b", "a", "C"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "subdir").mkdir()
    (tmp_path / ".hidden").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert storage.list_names() == ["C", "a", "b"]


def test_symlinks_are_never_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret")
    root = tmp_path / "files"
    storage = Storage(root)
    (root / "escape").symlink_to(outside)
    with pytest.raises(StorageError, match="symbolic link"):
        storage.open_read("escape")
    with pytest.raises(StorageError, match="not a regular file"):
        storage.start_upload("escape")
    with pytest.raises(StorageError, match="not a regular file"):
        storage.delete("escape")
    assert outside.read_bytes() == b"secret"


def test_directory_is_not_a_file(tmp_path):
    storage = Storage(tmp_path)
    (tmp_path / "d").mkdir()
    with pytest.raises(StorageError, match="not a regular file"):
        storage.open_read("d")
    with pytest.raises(StorageError, match="not a regular file"):
        storage.delete("d")


def test_missing_file_errors(tmp_path):
    storage = Storage(tmp_path)
    with pytest.raises(StorageError, match="not found"):
        storage.open_read("nope")
    with pytest.raises(StorageError, match="not found"):
        storage.delete("nope")


def test_remove_temp_files_by_writer_pid(tmp_path):
    storage = Storage(tmp_path)
    (tmp_path / ".upload-111-aaa").write_bytes(b"x")
    (tmp_path / ".upload-222-bbb").write_bytes(b"x")
    (tmp_path / "keep").write_bytes(b"x")
    assert storage.remove_temp_files(111) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".upload-222-bbb", "keep"]
    assert storage.remove_temp_files() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]
