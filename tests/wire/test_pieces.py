"""Base64 in pieces for gather writes (``encode_pieces``), and the sizes of the
objects the transfer paths make (see ``wire.streaming``: on free-threaded
CPython 3.13 a Python object over 128 KiB made per piece costs far more than
its size).

Like every wire test these run once per engine (tests/wire/conftest.py).
"""

import base64
import os
import sys
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wire
from wire import streaming
from wire import Base64Encoder, RequestDecoder, UploadData
from tests.wire.helpers import cut, drive_requests, whole

pytestmark = pytest.mark.unit

# mimalloc's largest "medium" block: a larger one gets a page of its own
MIMALLOC_MEDIUM_MAX = 128 * 1024


def chunkings(data, raw: bytes):
    return cut(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=40), label="cuts"))


@given(content=st.binary(max_size=3000), piece=st.sampled_from([3, 6, 300, 3000]),
       data=st.data())
def test_pieces_are_the_base64_of_the_content_in_bounded_pieces(content, piece, data):
    encoder = Base64Encoder()
    out = []
    with mock.patch.object(streaming, "ENCODE_PIECE_BYTES", piece):
        for chunk in chunkings(data, content):
            out += encoder.encode_pieces(memoryview(chunk))
    assert all(0 < len(text) <= piece // 3 * 4 for text in out)
    assert b"".join(out) + encoder.finish() == base64.b64encode(content)


@given(content=st.binary(max_size=3000), batch=st.sampled_from([1, 7, 64, 10_000]),
       data=st.data())
def test_stream_encoder_pieces_are_the_whole_message(content, batch, data):
    stream = wire.StreamEncoder(b"HEAD ", b" TAIL", batch_bytes=batch)
    batches, fed = [], 0
    with mock.patch.object(streaming, "ENCODE_PIECE_BYTES", 30):
        for chunk in chunkings(data, content):
            pieces = stream.encode_pieces(chunk)
            fed += len(chunk)
            assert stream.content_bytes == fed
            if pieces:
                assert sum(map(len, pieces)) >= batch   # nothing goes out before a batch is full
            batches.append(pieces)
        batches.append(stream.finish_pieces())
    assert all(piece for pieces in batches for piece in pieces)     # none empty
    assert b"".join(b"".join(pieces) for pieces in batches) \
        == b"HEAD " + base64.b64encode(content) + b" TAIL"


def test_a_get_reply_in_pieces_is_the_reply():
    content = os.urandom(2 * wire.FILE_CHUNK_BYTES + 1001)
    reply = wire.get_reply_stream("a.bin")
    pieces = []
    for start in range(0, len(content), wire.FILE_CHUNK_BYTES):
        pieces += reply.encode_pieces(content[start:start + wire.FILE_CHUNK_BYTES])
    pieces += reply.finish_pieces()
    assert b"".join(pieces) == wire.encode_reply(
        {"status": "OK", "data_namafile": "a.bin", "data_file": base64.b64encode(content).decode()})


def test_free_threaded_builds_encode_in_pieces_below_mimallocs_large_objects():
    assert streaming.FREE_THREADED_BUILD == ("t" in sys.abiflags)
    assert wire.ENCODE_PIECE_BYTES % 3 == 0 and wire.FILE_CHUNK_BYTES % wire.ENCODE_PIECE_BYTES == 0
    if streaming.FREE_THREADED_BUILD:
        pieces = Base64Encoder().encode_pieces(bytes(wire.FILE_CHUNK_BYTES))
        assert len(pieces) == wire.FILE_CHUNK_BYTES // wire.ENCODE_PIECE_BYTES
        assert max(map(sys.getsizeof, pieces)) <= MIMALLOC_MEDIUM_MAX
    else:
        # pymalloc and the C library's malloc: one object per chunk (see wire.streaming)
        assert wire.ENCODE_PIECE_BYTES == wire.FILE_CHUNK_BYTES
        # a chunk and its base64 fit a 512 KiB L2 cache together
        chunk = Base64Encoder().encode_pieces(bytes(wire.FILE_CHUNK_BYTES))[0]
        assert wire.FILE_CHUNK_BYTES + len(chunk) <= 512 * 1024


def test_pybase64_decodes_an_upload_into_bytearrays_the_standard_library_into_bytes(
        base64_engine):
    content = os.urandom(300_000)
    events = drive_requests(whole(wire.encode_request("UPLOAD", "a", content)),
                            RequestDecoder())
    data = [event for event in events if isinstance(event, UploadData)]
    assert b"".join(event.data for event in data) == content
    expected = bytearray if base64_engine.name.startswith("pybase64") else bytes
    assert {type(event.data) for event in data} == {expected}
