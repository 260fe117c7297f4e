import contextlib
import errno
import logging
import os
import resource

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
    gone = ended_pid()
    (tmp_path / ".upload-111-aaa").write_bytes(b"x")
    (tmp_path / f".upload-{gone}-bbb").write_bytes(b"x")
    (tmp_path / "keep").write_bytes(b"x")
    assert storage.remove_temp_files(111) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".upload-{gone}-bbb", "keep"]
    assert storage.remove_temp_files() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]


def ended_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_start_up_cleanup_keeps_the_temp_files_of_live_writers(tmp_path):
    """Another server's worker (alive) keeps its upload; a dead writer's goes, and so
    do this process's own (a restarted container reuses its pid)."""
    storage = Storage(tmp_path)
    live, gone = os.getppid(), ended_pid()
    names = [f".upload-{live}-live", ".upload-1-init", f".upload-{gone}-gone",
             f".upload-{os.getpid()}-mine", ".upload-nopid"]
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    assert storage.remove_temp_files() == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[:2])


def test_a_writer_of_another_user_counts_as_alive(tmp_path, monkeypatch):
    storage = Storage(tmp_path)
    (tmp_path / ".upload-4242-x").write_bytes(b"partial")

    def kill(pid, sig):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
    monkeypatch.setattr(os, "kill", kill)
    assert storage.remove_temp_files() == 0
    assert (tmp_path / ".upload-4242-x").exists()


def test_cleanup_of_a_missing_folder_removes_nothing(tmp_path):
    storage = Storage(tmp_path / "files")
    os.rmdir(tmp_path / "files")
    assert storage.remove_temp_files() == 0
    assert storage.remove_temp_files(123) == 0


# -- every failure is a StorageError naming the file and the reason -----------------

def fail_with(code: int):
    def failing(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return failing


def test_list_of_a_removed_folder(tmp_path):
    storage = Storage(tmp_path / "files")
    os.rmdir(tmp_path / "files")
    with pytest.raises(StorageError) as error:
        storage.list_names()
    assert str(error.value) == "cannot list files: No such file or directory"


def test_delete_in_a_read_only_folder(tmp_path, monkeypatch):
    # chmod 0o555 does not stop root: the EACCES an unprivileged server gets is injected
    storage = Storage(tmp_path)
    (tmp_path / "f.txt").write_bytes(b"x")
    monkeypatch.setattr(os, "unlink", fail_with(errno.EACCES))
    with pytest.raises(StorageError) as error:
        storage.delete("f.txt")
    assert str(error.value) == "cannot delete 'f.txt': Permission denied"


@contextlib.contextmanager
def out_of_file_descriptors():
    """This process out of file descriptors (a lowered limit, every fd under it taken)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    taken = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 16, hard))
    try:
        while True:
            try:
                taken.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        yield
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_out_of_file_descriptors(tmp_path):
    storage = Storage(tmp_path)
    (tmp_path / "f.txt").write_bytes(b"x")
    with out_of_file_descriptors():
        with pytest.raises(StorageError) as listing:
            storage.list_names()
        with pytest.raises(StorageError) as reading:
            storage.open_read("f.txt")
        with pytest.raises(StorageError) as storing:
            storage.start_upload("f.txt")
    assert str(listing.value) == "cannot list files: Too many open files"
    assert str(reading.value) == "cannot read 'f.txt': Too many open files"
    assert str(storing.value) == "cannot store 'f.txt': Too many open files"
    assert list(tmp_path.glob(".upload-*")) == []


def test_disk_full_while_writing(tmp_path):
    storage = Storage(tmp_path)
    upload = storage.start_upload("f.bin")
    upload._file.close()
    upload._file = open("/dev/full", "wb", buffering=0)     # the kernel's own ENOSPC
    with pytest.raises(StorageError) as error:
        upload.write(b"data")
    assert str(error.value) == "cannot store 'f.bin': No space left on device"
    upload.abort()
    assert list(tmp_path.iterdir()) == []


def test_commit_onto_a_directory_made_meanwhile(tmp_path):
    storage = Storage(tmp_path)
    upload = storage.start_upload("d")
    upload.write(b"x")
    (tmp_path / "d").mkdir()
    with pytest.raises(StorageError) as error:
        upload.commit()
    assert str(error.value) == "file 'd' exists and is not a regular file"
    upload.abort()
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_commit_after_the_temp_file_vanished(tmp_path):
    storage = Storage(tmp_path)
    upload = storage.start_upload("f")
    storage.remove_temp_files(os.getpid())
    with pytest.raises(StorageError) as error:
        upload.commit()
    assert str(error.value) == "cannot store 'f': No such file or directory"
    upload.abort()                     # nothing left to remove: quiet


def test_abort_never_raises_and_logs_what_it_could_not_remove(tmp_path, monkeypatch, caplog):
    storage = Storage(tmp_path)
    upload = storage.start_upload("f.bin")
    monkeypatch.setattr(os, "unlink", fail_with(errno.EACCES))
    with caplog.at_level(logging.WARNING, logger="server.storage"):
        upload.abort()
    assert "cannot remove the unfinished upload of 'f.bin'" in caplog.text
    assert "Permission denied" in caplog.text


def test_cleanup_that_cannot_remove_names_the_file(tmp_path, monkeypatch):
    storage = Storage(tmp_path)
    (tmp_path / ".upload-111-aaa").write_bytes(b"x")
    monkeypatch.setattr(os, "unlink", fail_with(errno.EACCES))
    with pytest.raises(StorageError) as error:
        storage.remove_temp_files(111)
    assert str(error.value) == "cannot remove '.upload-111-aaa': Permission denied"


def test_a_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(StorageError) as error:
        Storage(tmp_path / "file" / "files")
    assert str(error.value) == (f"cannot create storage folder "
                                f"{str(tmp_path / 'file' / 'files')!r}: Not a directory")


# Each operation with each system call it makes failing (EIO): always a StorageError
# that names the file (or, for LIST, the files) and the reason.
OPERATIONS = {
    "list": (lambda s: s.list_names(), "cannot list files", ["scandir"]),
    "get": (lambda s: s.open_read("f.txt").close(), "cannot read 'f.txt'", ["open", "fstat"]),
    "delete": (lambda s: s.delete("f.txt"), "cannot delete 'f.txt'", ["lstat", "unlink"]),
    "upload": (lambda s: s.start_upload("f.txt").commit(), "cannot store 'f.txt'",
               ["lstat", "open", "replace"]),
}


@pytest.mark.parametrize("operation, syscall", [
    (operation, syscall) for operation, (_, _, calls) in OPERATIONS.items() for syscall in calls])
def test_no_os_error_escapes(tmp_path, monkeypatch, operation, syscall):
    storage = Storage(tmp_path)
    (tmp_path / "f.txt").write_bytes(b"x")
    run, prefix, _ = OPERATIONS[operation]
    monkeypatch.setattr(os, syscall, fail_with(errno.EIO))
    with pytest.raises(StorageError) as error:
        run(storage)
    assert str(error.value) == f"{prefix}: Input/output error"
    monkeypatch.undo()
    for path in tmp_path.glob(".upload-*"):
        path.unlink()


# -- no check-then-act: another request changing the name in between ------------------

def test_upload_while_the_old_file_is_deleted(tmp_path, monkeypatch):
    """The race measured against the old lexists()-then-lstat(): a DELETE between the
    two made the UPLOAD fail with "No such file or directory"."""
    storage = Storage(tmp_path)
    (tmp_path / "f.txt").write_bytes(b"old")
    real_lstat, real_unlink = os.lstat, os.unlink

    def lstat_then_a_delete(path, *args, **kwargs):
        result = real_lstat(path, *args, **kwargs)
        if os.path.basename(path) == "f.txt":
            real_unlink(path)                   # the other request's DELETE, just after
        return result
    monkeypatch.setattr(os, "lstat", lstat_then_a_delete)
    upload = storage.start_upload("f.txt")
    upload.write(b"new")
    upload.commit()
    assert (tmp_path / "f.txt").read_bytes() == b"new"


def test_delete_while_another_delete_wins(tmp_path, monkeypatch):
    storage = Storage(tmp_path)
    (tmp_path / "f.txt").write_bytes(b"x")
    real_unlink = os.unlink

    def unlink_after_the_other(path, *args, **kwargs):
        real_unlink(path)
        return real_unlink(path, *args, **kwargs)
    monkeypatch.setattr(os, "unlink", unlink_after_the_other)
    with pytest.raises(StorageError) as error:
        storage.delete("f.txt")
    assert str(error.value) == "file 'f.txt' not found"


def test_get_keeps_the_version_it_opened(tmp_path):
    storage = Storage(tmp_path)
    (tmp_path / "f.txt").write_bytes(b"first")
    with storage.open_read("f.txt") as source:
        upload = storage.start_upload("f.txt")
        upload.write(b"second")
        upload.commit()
        storage.delete("f.txt")
        assert source.read() == b"first"
