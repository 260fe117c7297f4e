"""``receive_into``: the socket writes straight into the decoder's buffer, which is
kept from one receive to the next while a file streams through it."""

import os
import socket
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wire
from wire import (NEED_DATA, ProtocolError, ReplyDecoder, RequestDecoder, UploadData, UploadEnd,
                  UploadStart)
from wire.receivebuffer import ReceiveBuffer
from tests.wire.helpers import drive_requests, normalize_requests, whole

pytestmark = pytest.mark.unit



def feeder(data: bytes, piece: int):
    """A recv_into over ``data``, at most ``piece`` bytes a call; b"" at the end."""
    view = memoryview(data)
    offset = 0

    def recv_into(buffer) -> int:
        nonlocal offset
        count = min(len(buffer), piece, len(view) - offset)
        buffer[:count] = view[offset:offset + count]
        offset += count
        return count
    return recv_into


@given(content=st.binary(max_size=3000), piece=st.integers(1, 700), size=st.integers(1, 900))
def test_receive_into_decodes_as_receive_data(content, piece, size):
    raw = wire.encode_request("UPLOAD", "a", content) + b"LIST" + wire.TERMINATOR
    recv_into = feeder(raw, piece)
    decoder = RequestDecoder()
    events = []
    while True:
        count = decoder.receive_into(recv_into, size)
        assert count <= min(piece, size)
        while (event := decoder.next_event()) is not NEED_DATA:
            events.append(event)
        if not count:
            break
    assert normalize_requests(events) == normalize_requests(drive_requests(whole(raw)))


def test_receive_into_records_the_end_of_the_stream():
    decoder = RequestDecoder()
    assert decoder.receive_into(feeder(b"LIST", 100)) == 4
    assert decoder.next_event() is NEED_DATA
    assert decoder.receive_into(feeder(b"", 100)) == 0
    with pytest.raises(ProtocolError, match="connection closed") as error:
        decoder.next_event()
    assert error.value.fatal


def test_receive_into_offers_room_for_size_bytes():
    seen = []

    def recv_into(buffer):
        seen.append(len(buffer))
        buffer[:3] = b"abc"
        return 3
    decoder = ReplyDecoder()
    decoder.receive_into(recv_into, 10)
    decoder.receive_into(recv_into, 1 << 20)        # larger than any room made so far
    assert seen == [10, 1 << 20]
    assert decoder.trailing_data == b"abcabc"


@pytest.mark.parametrize("failure", [BlockingIOError, socket.timeout, ConnectionResetError])
def test_receive_into_that_fails_leaves_the_buffer_as_it_was(failure):
    decoder = RequestDecoder()
    decoder.receive_data(b"GET a")

    def recv_into(buffer):
        buffer[:4] = b"junk"
        raise failure()
    with pytest.raises(failure):
        decoder.receive_into(recv_into, 64)
    assert decoder.trailing_data == b"GET a"
    decoder.receive_data(wire.TERMINATOR)
    assert decoder.next_event() == wire.Command("GET", "a")


@pytest.mark.parametrize("count", [-1, 65])
def test_receive_into_refuses_an_impossible_count(count):
    decoder = RequestDecoder()
    decoder.receive_data(b"LI")
    with pytest.raises(ValueError, match="recv_into wrote"):
        decoder.receive_into(lambda buffer: count, 64)
    assert decoder.trailing_data == b"LI"
    with pytest.raises(ValueError, match="at least one byte"):
        decoder.receive_into(lambda buffer: 0, 0)


def test_upload_over_a_socket_with_recv_into_stays_small():
    content = os.urandom(3_000_001)
    request = wire.upload_request_stream("big.bin")
    left, right = socket.socketpair()

    def send():
        with left:
            for i in range(0, len(content), wire.FILE_CHUNK_BYTES):
                left.sendall(request.encode(content[i:i + wire.FILE_CHUNK_BYTES]))
            left.sendall(request.finish())
    sender = threading.Thread(target=send)
    sender.start()
    decoder = RequestDecoder()
    received, events = [], []
    with right:
        right.settimeout(10)
        while decoder.receive_into(right.recv_into):
            while (event := decoder.next_event()) is not NEED_DATA:
                (received if isinstance(event, UploadData) else events).append(event)
            assert len(decoder._input) <= 3
    sender.join(10)
    assert events == [UploadStart("big.bin"), UploadEnd(len(content))]
    assert b"".join(e.data for e in received) == content
    assert max(len(e.data) for e in received) <= 3 * wire.RECV_BYTES // 4


def test_receive_into_asks_for_more_while_a_file_arrives():
    """While a file arrives the room offered doubles each time the peer fills
    it, up to RECV_BYTES; a receive that does not fill it keeps the size."""
    rooms = []

    def sender(data: bytes | None = None):
        def recv_into(buffer) -> int:
            rooms.append(len(buffer))
            chunk = b"A" * len(buffer) if data is None else data   # None: fill the room
            buffer[:len(chunk)] = chunk
            return len(chunk)
        return recv_into
    requests = RequestDecoder()
    requests.receive_into(sender(b"UPLOAD a "))
    assert requests.next_event() == UploadStart("a")
    requests.receive_into(sender(b"YWJj"))
    assert requests.next_event() == UploadData(b"abc")
    assert rooms == [wire.SMALL_RECV_BYTES, wire.SMALL_RECV_BYTES]
    rooms.clear()
    while not rooms or rooms[-1] < wire.RECV_BYTES:
        requests.receive_into(sender())
        while requests.next_event() is not NEED_DATA:
            pass
        assert len(rooms) < 20
    requests.receive_into(sender())
    requests.receive_into(sender(b"QUFB"))
    requests.receive_into(sender(b"QUFB"))
    doubling = [wire.SMALL_RECV_BYTES << k for k in range(len(rooms) - 3)]
    assert rooms == doubling + [wire.RECV_BYTES] * 3
    assert doubling[-1] == wire.RECV_BYTES
    # a reply decoder does the same while a GET reply's file arrives
    rooms.clear()
    replies = ReplyDecoder()
    replies.receive_into(sender(wire.get_reply_prefix("f")))
    assert replies.next_event().streamed
    replies.receive_into(sender())
    replies.receive_into(sender())
    assert rooms == [wire.SMALL_RECV_BYTES, wire.SMALL_RECV_BYTES, 2 * wire.SMALL_RECV_BYTES]


def test_each_file_starts_with_a_small_room_and_an_explicit_size_leaves_it():
    """After a large upload the next one on the same connection starts small
    again; a receive with an explicit size neither uses nor changes the room."""
    rooms = []

    def fill(buffer) -> int:
        rooms.append(len(buffer))
        buffer[:] = b"A" * len(buffer)
        return len(buffer)

    def send(data: bytes):
        def recv_into(buffer) -> int:
            rooms.append(len(buffer))
            buffer[:len(data)] = data
            return len(data)
        return recv_into
    requests = RequestDecoder()
    for _ in range(2):
        requests.receive_into(send(b"UPLOAD a "))
        assert requests.next_event() == UploadStart("a")
        rooms.clear()
        for _ in range(6):
            requests.receive_into(fill)
            while requests.next_event() is not NEED_DATA:
                pass
        assert rooms[0] == wire.SMALL_RECV_BYTES and rooms[-1] == wire.RECV_BYTES
        rooms.clear()
        requests.receive_into(fill, 1000)
        requests.receive_into(fill)
        assert rooms == [1000, wire.RECV_BYTES]
        requests.receive_into(send(b"\r\n\r\n"))
        events = []
        while (event := requests.next_event()) is not NEED_DATA:
            events.append(event)
        assert isinstance(events[-1], UploadEnd)        # ready for the next request


def test_an_emptied_buffer_is_written_into_again():
    received = ReceiveBuffer()
    piece = os.urandom(200_000)
    assert received.receive_into(feeder(piece, 200_000), 200_000) == 200_000
    kept = received.data
    received.drop(200_000 - 2)                      # all but a cut quantum
    assert received.data == piece[-2:] and received.data is not kept
    for round_ in range(20):
        more = os.urandom(150_000 + round_)
        received.receive_into(feeder(more, len(more)), 200_000)
        assert received.data is kept                # the same memory, not a new buffer
        assert received.data == piece[-2:] + more
        assert received.data.__alloc__() < 2 * 200_000
        piece = more
        received.drop(len(received) - 2)
        assert bytes(received.data) == more[-2:]


def test_a_buffer_filled_by_receive_data_is_not_kept():
    received = ReceiveBuffer()
    received.receive(bytes(100_000))
    first = received.data
    received.drop(99_999)
    assert received.data is first and received.data == b"\0"


def test_a_buffer_with_much_left_is_not_kept():
    received = ReceiveBuffer()
    received.receive_into(feeder(os.urandom(100_000), 100_000), 100_000)
    first = received.data
    received.drop(50_000)
    assert received.data is first and len(received) == 50_000


def test_buffers_receive_into_from_many_threads_at_once():
    """Each thread's buffers make room from the same zero bytes: on a free-threaded
    build a memoryview shared by the threads could end up released (and every
    receive_into then fail), as it did in a server race test."""
    failures = []

    def receive_many():
        buffer = ReceiveBuffer()
        try:
            for turn in range(20_000):
                buffer.receive_into(lambda room: len(room), 100 + turn % 50)
                buffer.drop(len(buffer))
        except ValueError as exc:
            failures.append(str(exc))
    threads = [threading.Thread(target=receive_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
