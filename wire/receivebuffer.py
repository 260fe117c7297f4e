"""The bytes a decoder has received but not yet turned into events.

Both decoders keep one: it remembers how far it has searched for the
terminator (so finding it is linear in the input however it is chunked,
as in h11's ``ReceiveBuffer``) and whether the peer has ended the stream.
Any consumption resets the search: what remains is searched afresh.
"""

from __future__ import annotations

__all__ = ["ReceiveBuffer", "TERMINATOR", "TERMINATOR_TAIL"]

TERMINATOR = b"\r\n\r\n"
# the bytes at the end of a buffer that may be the start of a split terminator
TERMINATOR_TAIL = len(TERMINATOR) - 1


class ReceiveBuffer:
    def __init__(self) -> None:
        self.data = bytearray()
        self.searched = 0           # data[:searched] holds no terminator
        self.eof = False

    def receive(self, data: bytes) -> None:
        """Append ``data``; ``b""`` records the end of the stream."""
        if data:
            self.data += data
        else:
            self.eof = True

    def __len__(self) -> int:
        return len(self.data)

    def find_terminator(self) -> int:
        """Index of the first terminator, or -1 (later calls resume the search)."""
        index = self.data.find(TERMINATOR, self.searched)
        if index < 0:
            self.searched = max(0, len(self.data) - TERMINATOR_TAIL)
        return index

    def take(self, count: int) -> bytes:
        """Remove and return the first ``count`` bytes."""
        taken = bytes(self.data[:count])
        self.drop(count)
        return taken

    def drop(self, count: int) -> None:
        """Discard the first ``count`` bytes."""
        del self.data[:count]
        self.searched = 0

    @property
    def trailing_data(self) -> bytes:
        """Bytes not decoded yet (after a complete reply or request: the next one's)."""
        return bytes(self.data)
