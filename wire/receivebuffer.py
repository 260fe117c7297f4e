"""The bytes a decoder has received but not yet turned into events.

Both decoders keep one: it remembers how far it has searched for the
terminator (so finding it is linear in the input however it is chunked,
as in h11's ``ReceiveBuffer``) and whether the peer has ended the stream.
Any consumption resets the search: what remains is searched afresh.

``data`` is a bytearray of the unread bytes.  ``receive_into`` lets a
socket write straight into it (``sock.recv_into``), and consuming from
the front (``drop``) moves no bytes (CPython advances a bytearray's start),
so a decoder that reads pieces through memoryviews of ``data`` copies the
input only once: from the kernel.

A bytearray that shrinks below half its size gives its memory back, and
memory got afresh is faulted in page by page: when a file streams through
the buffer, emptying it after every receive would cost as much as copying
the data.  So a large buffer filled by ``receive_into`` and then emptied is
kept, and the next ``receive_into`` writes into it again.
"""

from __future__ import annotations

from .streaming import RECV_BYTES

__all__ = ["ReceiveBuffer", "TERMINATOR", "TERMINATOR_TAIL"]

TERMINATOR = b"\r\n\r\n"
# the bytes at the end of a buffer that may be the start of a split terminator
TERMINATOR_TAIL = len(TERMINATOR) - 1

# room made for a receive_into is filled from here, through a memoryview of each
# call's own: in free-threaded CPython 3.13 a memoryview sliced by several threads
# at once can end up released (its managed buffer's export count is not atomic)
_zero_bytes = bytes(RECV_BYTES)
_KEEP_BYTES = 64 * 1024     # a buffer this large, emptied, is kept for the next receive_into
_LEFT_BYTES = 64            # ... when no more than this is left in it


class ReceiveBuffer:
    # what every buffer starts with (each sets its own as they change)
    searched = 0                # data[:searched] holds no terminator
    eof = False
    _filled_into = False        # data was last filled by receive_into
    _spare: bytearray | None = None     # an emptied buffer, kept for receive_into

    def __init__(self) -> None:
        self.data = bytearray()

    def receive(self, data) -> None:
        """Append ``data`` (any bytes-like object); ``b""`` records the end of the stream."""
        if data:
            self.data += data
            self._filled_into = False
        else:
            self.eof = True

    def receive_into(self, recv_into, size: int) -> int:
        """Append what ``recv_into(buffer)`` writes into room for ``size`` bytes.

        ``recv_into`` is called once with a writable memoryview (as
        ``socket.recv_into`` is) and returns how many bytes it wrote; 0
        records the end of the stream.  Its exceptions propagate and leave
        the buffer as it was.  Returns the count.
        """
        global _zero_bytes
        if size <= 0:
            raise ValueError(f"receive_into needs room for at least one byte, not {size}")
        zero_bytes = _zero_bytes
        if size > len(zero_bytes):
            zero_bytes = _zero_bytes = bytes(size)
        data = self.data
        start = len(data)
        spare = self._spare
        with memoryview(zero_bytes) as zeros:
            if spare is not None and start <= _LEFT_BYTES:
                # write into the kept buffer: no new memory; only what it lacks is filled
                self._spare = None
                end = start + size
                if len(spare) < end:
                    spare += zeros[:end - len(spare)]
                else:
                    del spare[end:]
                spare[:start] = data
                data = self.data = spare
            else:
                data += zeros[:size]
        self._filled_into = True
        try:
            with memoryview(data) as whole, whole[start:] as room:
                count = recv_into(room)
        except BaseException:
            del data[start:]
            raise
        if not 0 <= count <= size:
            del data[start:]
            raise ValueError(f"recv_into wrote {count!r} bytes into room for {size}")
        del data[start + count:]
        if not count:
            self.eof = True
        return count

    def __len__(self) -> int:
        return len(self.data)

    def find_terminator(self) -> int:
        """Index of the first terminator, or -1 (later calls resume the search)."""
        index = self.data.find(TERMINATOR, self.searched)
        if index < 0:
            self.searched = max(0, len(self.data) - TERMINATOR_TAIL)
        return index

    def view(self, count: int) -> memoryview:
        """The first ``count`` bytes, without a copy.  Release it (``with``)
        before the buffer changes: a bytearray cannot resize while viewed."""
        with memoryview(self.data) as whole:
            return whole[:count]

    def take(self, count: int) -> bytes:
        """Remove and return the first ``count`` bytes."""
        taken = bytes(self.data[:count])
        self.drop(count)
        return taken

    def drop(self, count: int) -> None:
        """Discard the first ``count`` bytes."""
        data = self.data
        if self._filled_into and len(data) >= _KEEP_BYTES and len(data) - count <= _LEFT_BYTES:
            self._spare = data                  # kept for the next receive_into
            self.data = data[count:]
        else:
            del data[:count]
        self.searched = 0

    @property
    def trailing_data(self) -> bytes:
        """Bytes not decoded yet (after a complete reply or request: the next one's)."""
        return bytes(self.data)
