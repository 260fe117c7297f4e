"""The storage folder: names in, files out; knows nothing of sockets.

Every name is a single path component checked by ``validate_name`` before it
touches the disk, and files are opened with ``O_NOFOLLOW`` relative to the
folder, so neither a hostile name nor a symlink placed in the folder reaches
outside it.  Uploads are written to a hidden temporary file in the same
folder and renamed into place only when complete (``Upload.commit``), so a
reader never sees a torn file and a failed upload leaves the old file as it
was.  Temporary names carry the writer's pid so that a supervisor can remove
what a killed worker left behind.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile

__all__ = ["StorageError", "Storage", "Upload", "validate_name", "MAX_NAME_BYTES",
           "TEMP_PREFIX"]

MAX_NAME_BYTES = 255          # NAME_MAX of common Linux file systems
TEMP_PREFIX = ".upload-"


class StorageError(Exception):
    """A request the storage refuses; the message is sent to the client."""


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
        fd, self._temp_path = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=storage.root)
        self._file = os.fdopen(fd, "wb", buffering=0)
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def commit(self) -> None:
        self._file.close()
        os.replace(self._temp_path, self._storage.path_of(self.name))

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        try:
            os.unlink(self._temp_path)
        except FileNotFoundError:
            pass


class Storage:
    """Files of one folder.  ``root`` is created if missing."""

    def __init__(self, root: str):
        os.makedirs(root, exist_ok=True)
        self.root = os.path.realpath(root)

    def path_of(self, name: str) -> str:
        return os.path.join(self.root, validate_name(name))

    def list_names(self) -> list[str]:
        with os.scandir(self.root) as entries:
            return sorted(entry.name for entry in entries
                          if not entry.name.startswith(".")
                          and entry.is_file(follow_symlinks=False))

    def open_read(self, name: str):
        """An open binary file; the caller closes it."""
        path = self.path_of(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise StorageError(f"file {name!r} not found") from None
        except OSError as exc:
            raise StorageError(f"file {name!r} cannot be read: {_reason(exc)}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StorageError(f"file {name!r} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)

    def start_upload(self, name: str) -> Upload:
        path = self.path_of(name)
        if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
            raise StorageError(f"file {name!r} exists and is not a regular file")
        return Upload(self, name)

    def delete(self, name: str) -> None:
        path = self.path_of(name)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise StorageError(f"file {name!r} not found") from None
        if not stat.S_ISREG(mode):
            raise StorageError(f"file {name!r} is not a regular file")
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise StorageError(f"file {name!r} not found") from None

    def remove_temp_files(self, pid: int | None = None) -> int:
        """Remove unfinished uploads (of one writer pid, or all); returns the count."""
        prefix = TEMP_PREFIX if pid is None else f"{TEMP_PREFIX}{pid}-"
        removed = 0
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name.startswith(prefix):
                    try:
                        os.unlink(entry.path)
                        removed += 1
                    except FileNotFoundError:
                        pass
        return removed


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:   # O_NOFOLLOW met a symlink
        return "it is a symbolic link"
    return exc.strerror or str(exc)
