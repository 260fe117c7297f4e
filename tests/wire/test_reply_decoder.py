"""Replies: encoding helpers and the client-side ReplyDecoder."""

import base64
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from wire import NEED_DATA, ProtocolError, ReplyData, ReplyDecoder, ReplyEnd, ReplyStart
from tests.wire.helpers import (TERM, bytewise, cut, drive_replies, encode_reply_spec,
                                error_kind, expected_reply_events, get_reply,
                                normalize_replies, random_chunks, whole)

pytestmark = pytest.mark.unit

# Hypothesis settings come from the profile in tests/conftest.py (150 examples, no
# deadline); a test that runs fewer or more examples says so with @settings.

CHUNKINGS = [whole, bytewise, lambda raw: random_chunks(raw, 3)]
TRUNCATED = "connection closed before the reply was complete"


def decode(raw: bytes, chunker=whole, **options):
    return normalize_replies(drive_replies(chunker(raw), **options))


# -- encoding -----------------------------------------------------------------------

def test_reply_encodings():
    assert wire.ok_reply(["a", "b"]) == b'{"status": "OK", "data": ["a", "b"]}\r\n\r\n'
    assert wire.error_reply("nope") == b'{"status": "ERROR", "data": "nope"}\r\n\r\n'
    assert wire.encode_reply({"x": 1}) == b'{"x": 1}\r\n\r\n'
    assert wire.GET_REPLY_SUFFIX == b'"}\r\n\r\n'


def test_encoded_reply_never_holds_the_terminator_early():
    raw = wire.ok_reply("a\r\n\r\nb \u00e9 \U0001f40d")
    assert raw.find(TERM) == len(raw) - len(TERM)
    assert raw.isascii()


# -- decoding: normal replies -----------------------------------------------------------

@pytest.mark.parametrize("chunker", CHUNKINGS)
def test_streamed_get_reply(chunker):
    content = bytes(range(256)) * 40
    events = drive_replies(chunker(get_reply("a.bin", content)))
    assert events[0] == ReplyStart({"status": "OK", "data_namafile": "a.bin"}, streamed=True)
    assert events[-1] == ReplyEnd()
    assert all(isinstance(e, ReplyData) for e in events[1:-1])
    assert b"".join(e.data for e in events[1:-1]) == content


@pytest.mark.parametrize("chunker", CHUNKINGS)
def test_get_reply_of_an_empty_file(chunker):
    assert decode(get_reply("empty", b""), chunker) == [
        ("start", {"status": "OK", "data_namafile": "empty"}, True), ("end",)]


@pytest.mark.parametrize("chunker", CHUNKINGS)
@pytest.mark.parametrize("reply", [
    {"status": "OK", "data": ["a.txt", "b \u00e9.txt", "c\"q\\.txt"]},
    {"status": "OK", "data": []},
    {"status": "OK", "data": "file a deleted"},
    {"status": "ERROR", "data": "file x not found"},
    {"status": "OK", "data_namafile": "x", "data": "not a streamed GET"},
    {"status": "OK", "data_file": "YQ==", "data_namafile": "x"},       # other key order
])
def test_buffered_replies(chunker, reply):
    assert decode(wire.encode_reply(reply), chunker) == [("start", reply, False), ("end",)]


def test_events_one_call_at_a_time_and_trailing_data():
    decoder = ReplyDecoder()
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(wire.ok_reply([]) + get_reply("f", b"abc") + b'{"sta')
    assert decoder.next_event() == ReplyStart({"status": "OK", "data": []}, streamed=False)
    assert decoder.next_event() == ReplyEnd()
    assert decoder.next_event() == ReplyStart({"status": "OK", "data_namafile": "f"}, True)
    assert decoder.next_event() == ReplyData(b"abc")
    assert decoder.next_event() == ReplyEnd()
    assert decoder.next_event() is NEED_DATA
    assert decoder.trailing_data == b'{"sta'


def test_streamed_get_memory_stays_small():
    content = hashlib.shake_256(b"get").digest(10 * 1024 * 1024)
    raw = get_reply("big.bin", content)
    decoder = ReplyDecoder(max_reply_bytes=1024)    # streaming is not limited by it
    digest, size, piece = hashlib.sha256(), 0, 64 * 1024
    for i in range(0, len(raw), piece):
        decoder.receive_data(raw[i:i + piece])
        while (event := decoder.next_event()) is not NEED_DATA:
            assert len(decoder._input) < 128 * 1024
            if isinstance(event, ReplyData):
                assert len(event.data) <= 3 * (piece + 3) // 4 + 3
                digest.update(event.data)
                size += len(event.data)
        assert len(decoder._input) < 128 * 1024
    assert size == len(content) and digest.digest() == hashlib.sha256(content).digest()


class CountingBuffer(bytearray):
    def find(self, sub, start=0, end=None):
        stop = len(self) if end is None else min(end, len(self))
        index = bytearray.find(self, sub, start, stop)
        self.scanned = getattr(self, "scanned", 0) + max(
            0, (index + len(sub) if index >= 0 else stop) - start)
        return index


@pytest.mark.parametrize("raw", [
    get_reply("big.bin", b"x" * 1_500_000),
    wire.ok_reply([f"file-{i}.txt" for i in range(100_000)]),
], ids=["streamed-get", "large-list"])
def test_reply_scanning_is_linear_in_small_pieces(raw):
    decoder = ReplyDecoder()
    decoder._input.data = CountingBuffer()
    for i in range(0, len(raw), 100):
        decoder.receive_data(raw[i:i + 100])
        while decoder.next_event() is not NEED_DATA:
            pass
    assert not decoder._input.data and decoder.state == decoder.BETWEEN_REPLIES
    assert decoder._input.data.scanned <= 2 * len(raw)


# -- decoding: errors ---------------------------------------------------------------------

def assert_fails(raw: bytes, contains: str, **options):
    for chunker in CHUNKINGS:
        events = drive_replies(chunker(raw), **options)
        assert isinstance(events[-1], ProtocolError), (chunker, events)
        assert events[-1].fatal and contains in events[-1].message, events[-1].message
        assert ReplyEnd() not in events


@pytest.mark.parametrize("raw", [
    b'{"status": "OK", data}' + TERM,
    b'{"status": "OK"' + TERM,
    b"not json" + TERM,
    b'{"status": "\xff"}' + TERM,
    TERM,
])
def test_bad_json(raw):
    assert_fails(raw, "reply is not valid JSON")


@pytest.mark.parametrize("raw", [
    b"[1, 2]" + TERM, b'"OK"' + TERM, b"{}" + TERM, b'{"status": "MAYBE"}' + TERM,
    b'{"status": null, "data": 1}' + TERM,
])
def test_json_that_is_not_a_reply(raw):
    assert_fails(raw, "status OK or ERROR")


def test_deeply_nested_json_is_a_protocol_error():
    """json.loads raises RecursionError here, which used to escape the decoder."""
    assert_fails(b"[" * 100_000 + TERM, "reply is not valid JSON")
    assert_fails(b'{"status": "OK", "data_namafile": ' + b"[" * 5_000
                 + b', "data_file": "YQ=="}' + TERM, "malformed data_namafile")


@pytest.mark.parametrize("suffix", [b'"}\n\n\n\n', b'" }' + TERM, b'"}\r\n\r\r', b'"]' + TERM,
                                    b'"}x' + TERM, b'"' + TERM + b"xx"])
def test_wrong_get_suffix(suffix):
    raw = wire.get_reply_prefix("a") + base64.b64encode(b"abcdef") + suffix
    assert_fails(raw, "does not end with")


@pytest.mark.parametrize("body", [b"YQ=", b"Y", b"YQ==YQ==", b"!!!!", b"YW\\/j", b"YWJj\\n",
                                  b"YWJj\r\n\r\nYWJj"])
def test_bad_base64_in_data_file(body):
    assert_fails(wire.get_reply_prefix("a") + body + wire.GET_REPLY_SUFFIX,
                 "data_file is not valid base64")


def test_malformed_name_in_get_reply():
    assert_fails(b'{"status": "OK", "data_namafile": "abc, "data_file": "YQ=="}' + TERM,
                 "malformed data_namafile")


def test_reply_over_max_reply_bytes():
    raw = wire.ok_reply("x" * 200)
    assert_fails(raw, "reply larger than 100 bytes", max_reply_bytes=100)
    for chunker in CHUNKINGS:      # the limit counts the reply, not the terminator
        limit = len(raw) - len(TERM)
        assert decode(raw, chunker, max_reply_bytes=limit)[-1] == ("end",)


@pytest.mark.parametrize("raw", [
    get_reply("a b.txt", b"some content, long enough for a few quanta"),
    wire.ok_reply(["a", "b"]),
    wire.error_reply("no"),
    get_reply("e", b""),
])
def test_truncated_at_every_point(raw):
    for point in range(1, len(raw)):
        events = drive_replies([raw[:point]])
        assert isinstance(events[-1], ProtocolError), point
        assert events[-1].message == TRUNCATED and events[-1].fatal
        assert ReplyEnd() not in events
        events = drive_replies(bytewise(raw[:point]))
        assert isinstance(events[-1], ProtocolError) and events[-1].message == TRUNCATED


def test_after_the_first_reply_truncation_is_still_detected():
    raw = wire.ok_reply(1) + get_reply("x", b"abc")[:-1]
    assert normalize_replies(drive_replies([raw])) == [
        ("start", {"status": "OK", "data": 1}, False), ("end",),
        ("start", {"status": "OK", "data_namafile": "x"}, True), ("data", b"abc"),
        ("error", TRUNCATED)]


def test_non_streamed_reply_starting_like_a_get_reply_is_not_mixed_with_the_next():
    """A GET-looking reply without data_file must not swallow the next reply's
    data_file (it used to when both arrived in one piece)."""
    first = {"status": "OK", "data_namafile": "a", "note": 1}
    raw = wire.encode_reply(first) + get_reply("b", b"xyz")
    expected = [("start", first, False), ("end",),
                ("start", {"status": "OK", "data_namafile": "b"}, True), ("data", b"xyz"),
                ("end",)]
    for chunker in CHUNKINGS:
        assert decode(raw, chunker) == expected


# -- properties ----------------------------------------------------------------------------

# Names a GET reply may carry: quotes, backslashes, control characters, any unicode.
reply_names = st.text(st.one_of(st.characters(exclude_categories=["Cs"]),
                                st.sampled_from('"\\\r\n\t/\u2028')), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=4),
    max_leaves=10)
replies = st.one_of(
    st.tuples(st.just("get"), reply_names, st.binary(max_size=500)),
    st.builds(lambda names: ("json", {"status": "OK", "data": names}),
              st.lists(reply_names, max_size=6)),                      # LIST
    st.builds(lambda v: ("json", {"status": "OK", "data": v}), json_values),
    st.builds(lambda m: ("json", {"status": "ERROR", "data": m}), st.text(max_size=40)),
)


@given(name=reply_names, content=st.binary(max_size=300))
def test_streamed_form_is_what_json_dumps_writes(name, content):
    b64 = base64.b64encode(content).decode()
    whole_reply = wire.encode_reply({"status": "OK", "data_namafile": name, "data_file": b64})
    assert get_reply(name, content) == whole_reply
    assert json.loads(wire.get_reply_prefix(name) + b'"}') == {
        "status": "OK", "data_namafile": name, "data_file": ""}


@given(seq=st.lists(replies, min_size=1, max_size=6), data=st.data())
def test_replies_back_to_back_in_any_chunking(seq, data):
    raw = b"".join(encode_reply_spec(r) for r in seq)
    expected = [e for r in seq for e in expected_reply_events(r)]
    points = data.draw(st.lists(st.integers(0, len(raw)), max_size=40), label="cuts")
    assert normalize_replies(drive_replies(cut(raw, points))) == expected


@given(seq=st.lists(replies, min_size=1, max_size=3))
def test_replies_back_to_back_byte_by_byte(seq):
    raw = b"".join(encode_reply_spec(r) for r in seq)
    expected = [e for r in seq for e in expected_reply_events(r)]
    assert normalize_replies(drive_replies(bytewise(raw))) == expected


@given(seq=st.lists(replies, min_size=1, max_size=4), data=st.data())
def test_truncated_replies_fail_at_eof(seq, data):
    encoded = [encode_reply_spec(r) for r in seq]
    raw = b"".join(encoded)
    point = data.draw(st.integers(0, len(raw) - 1), label="point")
    boundaries = {0}
    for piece in encoded:
        boundaries.add(max(boundaries) + len(piece))
    events = normalize_replies(drive_replies(cut(raw[:point], [point // 2])))
    if point in boundaries:
        assert not events or events[-1] == ("end",)
    else:
        assert events[-1] == ("error", TRUNCATED)
        assert events.count(("end",)) == sum(1 for b in boundaries if 0 < b < point)


def _drop_data_before_errors(events):
    out = []
    for event in events:
        if event[0] == "error":
            if out and out[-1][0] == "data":
                out.pop()        # how much data precedes an error depends on chunking
            event = ("error", error_kind(event[1]))
        out.append(event)
    return out


REPLY_TOKENS = [b'{"status": "OK", "data_namafile": ', b', "data_file": "', b'"}', TERM, TERM,
                b'"a"', b'"', b"YWJj", b"YQ==", b"=", b"!", b"{", b"}", b"[", b"]", b"1",
                b'{"status": "ERROR", "data": "x"}', b'{"status": "OK", "data": []}', b"\xff",
                b"\r", b"\n", b"\\"]


@settings(max_examples=60)
@given(raw=st.lists(st.sampled_from(REPLY_TOKENS), max_size=30).map(b"".join), data=st.data())
def test_reply_events_do_not_depend_on_chunking(raw, data):
    reference = _drop_data_before_errors(decode(raw, whole))
    assert _drop_data_before_errors(decode(raw, bytewise)) == reference
    points = data.draw(st.lists(st.integers(0, len(raw)), max_size=20), label="cuts")
    assert _drop_data_before_errors(decode(raw, lambda r: cut(r, points))) == reference


@settings(max_examples=60)
@given(raw=st.one_of(st.binary(max_size=400),
                     st.binary(max_size=300).map(lambda b: wire.get_reply_prefix("n") + b),
                     st.lists(st.sampled_from(REPLY_TOKENS), max_size=30).map(b"".join)),
       max_reply=st.sampled_from([10, wire.DEFAULT_MAX_REPLY_BYTES]),
       data=st.data())
def test_random_bytes_only_ever_raise_protocol_error(raw, max_reply, data):
    points = data.draw(st.lists(st.integers(0, len(raw)), max_size=20), label="cuts")
    events = drive_replies(cut(raw, points), max_reply_bytes=max_reply)
    assert all(isinstance(e, (ReplyStart, ReplyData, ReplyEnd, ProtocolError)) for e in events)


def test_end_of_stream_between_replies_is_reported_not_waited_for():
    decoder = ReplyDecoder()
    decoder.receive_data(b"")
    assert decoder.next_event() == wire.ReplyClosed()
    decoder = ReplyDecoder()
    decoder.receive_data(wire.ok_reply("x"))
    decoder.receive_data(b"")
    assert isinstance(decoder.next_event(), ReplyStart)
    assert decoder.next_event() == ReplyEnd()
    assert decoder.next_event() == wire.ReplyClosed()
