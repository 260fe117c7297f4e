"""One server per storage folder: the folder's flock, in-process and with real servers."""

import os
import subprocess

import pytest

from server.config import MODES
from server.launcher import server_command
from server.storage import LOCK_NAME, Storage, StorageError, StorageInUseError, validate_name
from tests.support import REPO_ROOT, ServerProcess, command, free_port, temp_files


@pytest.mark.unit
def test_a_second_lock_on_one_folder_is_refused_until_the_first_is_closed(tmp_path):
    first = Storage(tmp_path).acquire_lock()
    with pytest.raises(StorageInUseError) as error:
        Storage(tmp_path).acquire_lock()
    assert str(error.value) == (f"storage folder {str(tmp_path)!r} is in use by another "
                                f"server (pid {os.getpid()}); run one server per folder")
    first.close()
    with Storage(tmp_path).acquire_lock():
        pass


@pytest.mark.unit
def test_the_lock_file_is_hidden_and_never_a_file_name(tmp_path):
    storage = Storage(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"x")
    with storage.acquire_lock() as lock:
        assert os.path.basename(lock.path) == LOCK_NAME
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        assert storage.list_names() == ["a.txt"]
        assert storage.remove_temp_files() == 0
        with pytest.raises(StorageError, match="must not start with '.'"):
            validate_name(LOCK_NAME)
        for operation in (storage.open_read, storage.delete, storage.start_upload):
            with pytest.raises(StorageError):
                operation(LOCK_NAME)
    assert (tmp_path / LOCK_NAME).exists()      # kept: removing it would let two servers in


@pytest.mark.unit
def test_a_forked_worker_keeps_the_folder_locked(tmp_path):
    """The lock belongs to the open file description: a worker forked from the
    supervisor holds it as long as it lives, even after the supervisor's copy closes."""
    lock = Storage(tmp_path).acquire_lock()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:                     # the "worker": waits, holding the inherited fd
        os.close(go_w)
        os.read(go_r, 1)
        os._exit(0)
    os.close(go_r)
    try:
        lock.close()
        with pytest.raises(StorageInUseError):
            Storage(tmp_path).acquire_lock()
    finally:
        os.close(go_w)               # the worker ends
        os.waitpid(pid, 0)
    with Storage(tmp_path).acquire_lock():
        pass


@pytest.mark.unit
def test_a_lock_file_that_cannot_be_opened(tmp_path):
    (tmp_path / LOCK_NAME).mkdir()
    with pytest.raises(StorageError) as error:
        Storage(tmp_path).acquire_lock()
    assert not isinstance(error.value, StorageInUseError)
    assert str(error.value) == (f"cannot lock storage folder {str(tmp_path)!r}: "
                                f"Is a directory ({LOCK_NAME})")


@pytest.mark.integration
@pytest.mark.parametrize("mode", MODES)
def test_a_second_server_on_one_folder_refuses_to_start(tmp_path, mode):
    storage = tmp_path / "files"
    first = ServerProcess(storage, mode=mode, pool=2)
    try:
        # an upload of the first server in flight: the second must not touch it
        writer = first.worker_pids()[0] if mode == "process" else first.proc.pid
        in_flight = storage / f".upload-{writer}-inflight"
        in_flight.write_bytes(b"partial")
        result = subprocess.run(
            server_command(mode=mode, pool=2, host="127.0.0.1", port=free_port(),
                           metrics_port=0, storage_dir=storage),
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, result.stderr
        assert result.stderr == (
            f"python -m server: error: storage folder {str(storage)!r} is in use by another "
            f"server (pid {first.proc.pid}); run one server per folder\n")
        assert temp_files(storage) == [in_flight.name]
        assert command(first.port, "UPLOAD", "a.txt", b"still serving")["status"] == "OK"
        in_flight.unlink()
    finally:
        assert first.stop() == 0, first.log()
    # the lock ends with the server: the next one starts
    second = ServerProcess(storage, mode=mode, pool=2)
    try:
        assert command(second.port, "LIST") == {"status": "OK", "data": ["a.txt"]}
    finally:
        assert second.stop() == 0, second.log()
    assert first.leftover_processes() == [] and second.leftover_processes() == []
