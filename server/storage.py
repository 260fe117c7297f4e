"""The storage folder: names in, files out; knows nothing of sockets.

Every name is a single path component checked by ``validate_name`` before it
touches the disk, and files are opened with ``O_NOFOLLOW`` relative to the
folder, so neither a hostile name nor a symlink placed in the folder reaches
outside it.  Uploads are written to a hidden temporary file in the same
folder and renamed into place only when complete (``Upload.commit``), so a
reader never sees a torn file and a failed upload leaves the old file as it
was.  Temporary names carry the writer's pid so that a supervisor can remove
what a killed worker left behind.

Every failure is a ``StorageError`` whose message names the file and the
reason (``cannot delete 'a.txt': Permission denied``); no ``OSError``
leaves this module.  No operation checks and then acts on a name: each
decision rests on one system call, so concurrent requests on one name get
either success or "not found", never a spurious error.

One server per folder: ``acquire_lock()`` takes an exclusive ``flock`` on
``LOCK_NAME`` in the folder (a dot-name: hidden from LIST, never a valid
upload name), held until the process and any worker forked from it end.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import stat
import tempfile

__all__ = ["StorageError", "StorageInUseError", "Storage", "StorageLock", "Upload",
           "names_in", "validate_name", "MAX_NAME_BYTES", "TEMP_PREFIX", "LOCK_NAME"]

log = logging.getLogger("server.storage")

MAX_NAME_BYTES = 255          # NAME_MAX of common Linux file systems
TEMP_PREFIX = ".upload-"
LOCK_NAME = ".fileserver.lock"
_TEMP_PID = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-")


class StorageError(Exception):
    """A request the storage refuses or cannot do; the message is sent to the client."""


class StorageInUseError(StorageError):
    """Another server holds the folder's lock."""


def validate_name(name: str) -> str:
    if not name:
        raise StorageError("file name is empty")
    if name in (".", ".."):
        raise StorageError(f"file name {name!r} is not allowed")
    if "/" in name or "\\" in name:
        raise StorageError(f"file name {name!r} must not contain '/' or '\\'")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise StorageError(f"file name {name!r} contains a control character")
    if name.startswith("."):
        raise StorageError(f"file name {name!r} must not start with '.'")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise StorageError(f"file name is longer than {MAX_NAME_BYTES} bytes")
    return name


class Upload:
    """A file being written; becomes visible under its name only on commit()."""

    def __init__(self, storage: "Storage", name: str):
        self.name = name
        self._storage = storage
        self.size = 0
        try:
            fd, self._temp_path = tempfile.mkstemp(
                prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=storage.root)
        except OSError as exc:
            raise _error("store", name, exc) from None
        self._file = os.fdopen(fd, "wb", buffering=0)

    def write(self, data: bytes) -> None:
        try:
            # an unbuffered write may take only part (a nearly full disk): the
            # next write of the rest then fails with the reason
            view = memoryview(data)
            while view:
                view = view[self._file.write(view):]
        except OSError as exc:
            raise _error("store", self.name, exc) from None
        self.size += len(data)

    def commit(self) -> None:
        """Close and rename into place; on a StorageError the caller aborts."""
        try:
            self._file.close()
            os.replace(self._temp_path, self._storage.path_of(self.name))
        except IsADirectoryError:        # a directory took the name meanwhile
            raise StorageError(f"file {self.name!r} exists and is not a regular file") from None
        except OSError as exc:
            raise _error("store", self.name, exc) from None

    def abort(self) -> None:
        """Drop the temporary file.  Never raises: it runs while another error is
        answered; a file it cannot remove is logged, and removed later with its
        writer's other leftovers (``Storage.remove_temp_files``)."""
        try:
            if not self._file.closed:
                self._file.close()
        except OSError:
            pass                          # the data is discarded anyway
        try:
            os.unlink(self._temp_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove the unfinished upload of %r (%s): %s", self.name,
                        os.path.basename(self._temp_path), _reason(exc))


class StorageLock:
    """The folder's lock, held while this object (or a fork's copy of its fd) is open."""

    def __init__(self, fd: int, path: str):
        self.fd = fd
        self.path = path

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)         # releases the flock unless a forked worker holds it
            self.fd = -1

    def __enter__(self) -> "StorageLock":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def names_in(folder: str) -> list[str]:
    """What LIST shows of ``folder``: its regular files (not symlinks) whose
    names do not start with a dot, sorted.  ``OSError`` if it cannot be read."""
    with os.scandir(folder) as entries:
        # is_file() swallows a file deleted meanwhile; other errors reach us
        names = [entry.name for entry in entries
                 if entry.name[0] != "." and entry.is_file(follow_symlinks=False)]
    names.sort()
    return names


class Storage:
    """Files of one folder.  ``root`` is created if missing."""

    def __init__(self, root: str):
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create storage folder {str(root)!r}: "
                               f"{_reason(exc)}") from None
        self.root = os.path.realpath(root)

    def path_of(self, name: str) -> str:
        return os.path.join(self.root, validate_name(name))

    def acquire_lock(self) -> StorageLock:
        """Take the folder for this server; ``StorageInUseError`` if another has it.

        The lock file stays in the folder (removing it would let two servers
        lock two different files); it holds the pid of the server that locked it.
        """
        path = os.path.join(self.root, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot lock storage folder {self.root!r}: "
                               f"{_reason(exc)} ({LOCK_NAME})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StorageInUseError(
                f"storage folder {self.root!r} is in use by another server"
                f"{f' (pid {holder})' if holder else ''}; run one server per folder") from None
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot lock storage folder {self.root!r}: "
                               f"{_reason(exc)} ({LOCK_NAME})") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass                              # the pid is a courtesy; the lock is what counts
        return StorageLock(fd, path)

    def list_names(self) -> list[str]:
        try:
            return names_in(self.root)
        except OSError as exc:
            raise StorageError(f"cannot list files: {_reason(exc)}") from None

    def open_read(self, name: str):
        """An open binary file; the caller closes it."""
        path = self.path_of(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise StorageError(f"file {name!r} not found") from None
        except OSError as exc:
            raise _error("read", name, exc) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StorageError(f"file {name!r} is not a regular file")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb", buffering=0)
        except OSError as exc:
            os.close(fd)
            raise _error("read", name, exc) from None
        except StorageError:
            os.close(fd)
            raise

    def start_upload(self, name: str) -> Upload:
        path = self.path_of(name)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            pass                              # a new file
        except OSError as exc:
            raise _error("store", name, exc) from None
        else:
            if not stat.S_ISREG(mode):
                raise StorageError(f"file {name!r} exists and is not a regular file")
        return Upload(self, name)

    def delete(self, name: str) -> None:
        """Remove a regular file.  If the name changes between the lstat and the
        unlink, it was by another request: removed ("not found") or replaced by a
        newer upload (which this delete then removes, as if it came after)."""
        path = self.path_of(name)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                raise StorageError(f"file {name!r} is not a regular file")
            os.unlink(path)
        except FileNotFoundError:
            raise StorageError(f"file {name!r} not found") from None
        except IsADirectoryError:
            raise StorageError(f"file {name!r} is not a regular file") from None
        except OSError as exc:
            raise _error("delete", name, exc) from None

    def remove_temp_files(self, pid: int | None = None) -> int:
        """Remove unfinished uploads; returns the count.

        With ``pid``: that writer's (it has ended).  Without (at start-up,
        before this process writes any): those whose writer process is gone.
        This process's own pid counts as gone: a container restarted with
        the same pid would otherwise keep its old leftovers for ever.
        """
        prefix = TEMP_PREFIX if pid is None else f"{TEMP_PREFIX}{pid}-"
        removed = 0
        try:
            with os.scandir(self.root) as entries:
                stale = [entry.name for entry in entries if entry.name.startswith(prefix)
                         and (pid is not None or not _writer_alive(entry.name))]
        except FileNotFoundError:
            return 0                          # no folder, nothing left behind
        except OSError as exc:
            raise StorageError(f"cannot look for unfinished uploads in {self.root!r}: "
                               f"{_reason(exc)}") from None
        for name in stale:
            try:
                os.unlink(os.path.join(self.root, name))
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot remove {name!r}: {_reason(exc)}") from None
        return removed


def _writer_alive(temp_name: str) -> bool:
    match = _TEMP_PID.match(temp_name)
    if not match:
        return False                  # not ours to keep: no writer named
    pid = int(match.group(1))
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                   # alive, another user's
    return True


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _error(verb: str, name: str, exc: OSError) -> StorageError:
    return StorageError(f"cannot {verb} {name!r}: {_reason(exc)}")


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:   # O_NOFOLLOW met a symlink
        return "it is a symbolic link"
    return exc.strerror or str(exc)
