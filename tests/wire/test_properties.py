"""Hypothesis properties of the request side and of the streaming base64 codecs."""

import base64
import json
import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from wire import Base64Decoder, Base64Encoder, ProtocolError
from tests.wire.helpers import (TERM, bytewise, coarse, cut, drive_requests,
                                normalize_requests, whole)

pytestmark = pytest.mark.unit

# Hypothesis settings come from the profile in tests/conftest.py (150 examples, no
# deadline); a test that runs fewer or more examples says so with @settings.

# Names the encoder can carry: no space (the separator) and no terminator.  A
# name may end in bytes that look like the start of the terminator, so the
# first terminator after it must be the real one.
NAME_CHARS = st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from("\r\n\"\\'=/."))
names = st.text(NAME_CHARS, min_size=1, max_size=20).filter(
    lambda n: " " not in n
    and (n.encode() + TERM).find(TERM) == len(n.encode()))

requests = st.one_of(
    st.tuples(st.just("LIST"), st.none(), st.none()),
    st.tuples(st.sampled_from(["GET", "DELETE"]), names, st.none()),
    st.tuples(st.just("UPLOAD"), names, st.binary(max_size=400)),
)


def expected_events(reqs) -> list[dict]:
    out = []
    for verb, name, content in reqs:
        if verb != "UPLOAD":
            out.append({"event": "Command", "verb": verb, "name": name})
            continue
        out.append({"event": "UploadStart", "name": name})
        if content:
            out.append({"event": "UploadData", "data": content})
        out.append({"event": "UploadEnd", "size": len(content)})
    return out


def chunkings(data, raw: bytes):
    points = data.draw(st.lists(st.integers(0, len(raw)), max_size=40), label="cuts")
    return cut(raw, points)


# -- requests round trip ----------------------------------------------------------

@given(name=names, content=st.binary(max_size=5000), data=st.data())
def test_upload_round_trips_in_any_chunking(name, content, data):
    raw = wire.encode_request("UPLOAD", name, content)
    events = normalize_requests(drive_requests(chunkings(data, raw)))
    assert events == expected_events([("UPLOAD", name, content)])


@given(reqs=st.lists(requests, min_size=1, max_size=8), data=st.data())
def test_pipelined_requests_round_trip_in_any_chunking(reqs, data):
    raw = b"".join(wire.encode_request(*r) for r in reqs)
    events = normalize_requests(drive_requests(chunkings(data, raw)))
    assert events == expected_events(reqs)


@given(reqs=st.lists(requests, min_size=1, max_size=8), data=st.data())
def test_requests_offered_whole_first_round_trip(reqs, data):
    """As the server receives between requests: each chunk offered to whole_request()."""
    raw = b"".join(wire.encode_request(*r) for r in reqs)
    events = drive_requests(chunkings(data, raw), whole_requests=True)
    assert normalize_requests(events) == expected_events(reqs)


lines = st.one_of(
    st.sampled_from([b"LIST", b"list", b"GET a", b"get a b", b"DELETE x.txt", b"DELETE ",
                     b"UPLOAD a YWJj", b"UPLOAD a", b"upload ", b"", b" ", b"NOPE",
                     b"LIST\r\n\r\nLIST", b"LIST\r\n", b"LIST\r", b"\xff", "GET ı".encode()]),
    st.binary(max_size=30))


@given(line=lines, tail=st.sampled_from([TERM, b"", b"\r\n", TERM + b"LIST", TERM * 2]),
       max_line=st.sampled_from([3, 4096]))
def test_whole_request_is_what_receiving_then_decoding_give(line, tail, max_line):
    data = line + tail
    offered = wire.RequestDecoder(max_line_bytes=max_line)
    request = offered.whole_request(data)
    assert offered.state == offered.IDLE and offered.trailing_data == b""   # nothing kept
    assert wire.whole_request(data, max_line) == request      # the same without a decoder
    received = wire.RequestDecoder(max_line_bytes=max_line)
    received.receive_data(data)
    try:
        event = received.next_event()
    except ProtocolError:
        event = None
    if request is not None:
        assert request == event
        assert received.next_event() is wire.NEED_DATA and received.trailing_data == b""
    elif (0 <= data.find(TERM) == len(data) - len(TERM) <= max_line
          and not data.upper().startswith(b"UPLOAD ")):
        assert event is None            # one whole line is given back only when it is wrong


@given(reqs=st.lists(requests, min_size=1, max_size=5))
def test_pipelined_requests_round_trip_byte_by_byte(reqs):
    raw = b"".join(wire.encode_request(*r) for r in reqs)
    assert normalize_requests(drive_requests(bytewise(raw))) == expected_events(reqs)


@given(verb=st.sampled_from(["LIST", "GET", "DELETE", "UPLOAD"]),
       case=st.lists(st.booleans(), min_size=6, max_size=6), name=names)
def test_verbs_are_case_insensitive(verb, case, name):
    spelled = "".join(c.lower() if low else c for c, low in zip(verb, case))
    if verb == "LIST":
        raw, expected = spelled.encode() + TERM, [("LIST", None, None)]
    elif verb == "UPLOAD":
        raw = f"{spelled} {name} YWJj".encode() + TERM
        expected = [("UPLOAD", name, b"abc")]
    else:
        raw, expected = f"{spelled} {name}".encode() + TERM, [(verb, name, None)]
    assert normalize_requests(drive_requests(whole(raw))) == expected_events(expected)


# -- base64 in pieces ---------------------------------------------------------------

@given(content=st.binary(max_size=3000), data=st.data())
def test_base64_encoder_in_pieces_equals_b64encode(content, data):
    encoder = Base64Encoder()
    pieces = chunkings(data, content)
    out = b"".join(encoder.encode(piece) for piece in pieces) + encoder.finish()
    assert out == base64.b64encode(content)
    # it can be reused for a second stream
    assert encoder.encode(b"ab") + encoder.finish() == b"YWI="


@given(content=st.binary(max_size=3000), data=st.data())
def test_base64_encoder_accepts_memoryview_and_bytearray(content, data):
    encoder = Base64Encoder()
    out = []
    for i, piece in enumerate(chunkings(data, content)):
        out.append(encoder.encode(memoryview(piece) if i % 2 else bytearray(piece)))
    assert b"".join(out) + encoder.finish() == base64.b64encode(content)


@given(content=st.binary(max_size=3000), batch=st.sampled_from([1, 7, 64, 10_000]),
       data=st.data())
def test_stream_encoder_batches_are_the_whole_message(content, batch, data):
    stream = wire.StreamEncoder(b"HEAD ", b" TAIL", batch_bytes=batch)
    batches, fed = [], 0
    for piece in chunkings(data, content):
        out = stream.encode(piece)
        fed += len(piece)
        assert stream.content_bytes == fed
        if out:
            assert len(out) >= batch       # nothing goes out before a batch is full
            batches.append(out)
    batches.append(stream.finish())
    assert b"".join(batches) == b"HEAD " + base64.b64encode(content) + b" TAIL"


def test_get_reply_and_upload_request_streams_match_their_whole_forms():
    content = bytes(range(256)) * 1000
    reply = wire.get_reply_stream("a b.bin")
    pieces = [reply.encode(content[i:i + 3000]) for i in range(0, len(content), 3000)]
    assert b"".join(pieces) + reply.finish() == wire.encode_reply(
        {"status": "OK", "data_namafile": "a b.bin",
         "data_file": base64.b64encode(content).decode()})
    request = wire.upload_request_stream("x.bin")
    assert request.encode(content) + request.finish() == wire.encode_request(
        "UPLOAD", "x.bin", content)


@given(content=st.binary(max_size=3000), data=st.data())
def test_base64_decoder_in_pieces_equals_b64decode(content, data):
    text = base64.b64encode(content)
    decoder = Base64Decoder()
    out = []
    for piece in chunkings(data, text):
        out.append(decoder.decode(piece))
        assert len(decoder._pending) < 4
    decoder.finish()
    assert b"".join(out) == base64.b64decode(text, validate=True) == content


def _decode_whole_strict(text: bytes):
    if len(text) % 4 or b"=" in text[:-2]:
        # padding only at the very end (Python 3.11's strict mode alone lets
        # a quantum of bare "====" after a complete one through)
        return "error"
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return "error"


def _decode_pieces(pieces):
    decoder = Base64Decoder()
    out = []
    try:
        for piece in pieces:
            out.append(decoder.decode(piece))
        decoder.finish()
    except ValueError:
        return "error"
    return b"".join(out)


@settings(max_examples=400)
@given(text=st.lists(st.sampled_from([b"A", b"Q", b"Y", b"W", b"+", b"/", b"=", b"==",
                                      b"YQ==", b"YWJj", b"!", b"\n", b" ", b"\xff"]),
                     max_size=14).map(b"".join),
       data=st.data())
def test_base64_decoder_is_strict_and_chunking_invariant(text, data):
    """Accepts exactly what one strict decode accepts, however the text is split."""
    assert _decode_pieces(chunkings(data, text)) == _decode_whole_strict(text)
    assert _decode_pieces(bytewise(text)) == _decode_whole_strict(text)


def test_base64_decoder_rejections():
    for bad in [b"YQ", b"YQ=", b"YQ==YQ==", b"YQ=A", b"====", b"Y===", b"YW J", b"YW\nJj", b"Y!Jj",
                b"AAYQ====", b"YWJj=", b"YWJj==", b"YWJjYQ==YQ"]:
        assert _decode_pieces([bad]) == "error", bad
        assert _decode_pieces(bytewise(bad)) == "error", bad
    decoder = Base64Decoder()
    assert decoder.decode(b"YQ==") == b"a"
    assert decoder.decode(b"") == b""           # nothing is not "data after padding"
    try:
        decoder.decode(b"YQ==")
    except ValueError as exc:
        assert "after base64 padding" in str(exc)
    else:
        raise AssertionError("data after padding accepted")


# -- robustness -----------------------------------------------------------------------

LIMITS = st.fixed_dictionaries({
    "max_line_bytes": st.sampled_from([8, 24, wire.DEFAULT_MAX_LINE_BYTES]),
    "max_upload_bytes": st.sampled_from([4, 100, wire.DEFAULT_MAX_UPLOAD_BYTES]),
})
TOKENS = [b"LIST", b"list", b"GET", b"get ", b"DELETE ", b"UPLOAD ", b"upload ", b"UpLoAd ",
          b" ", b"a", b"\xc3\xa9", b"\xff", b"YWJj", b"YQ==", b"YR=", b"=", b"!", b"\r", b"\n",
          TERM, TERM, TERM, b"x" * 30]
token_streams = st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join)


@settings(max_examples=60)
@given(raw=st.binary(max_size=600), options=LIMITS, data=st.data())
def test_random_bytes_only_ever_raise_protocol_error(raw, options, data):
    # drive_requests lets anything but ProtocolError through, and fails if
    # next_event() keeps returning events without consuming input
    events = drive_requests(chunkings(data, raw), **options)
    assert all(isinstance(e, (wire.Command, wire.UploadStart, wire.UploadData, wire.UploadEnd,
                              ProtocolError)) for e in events)


@settings(max_examples=60)
@given(raw=token_streams, options=LIMITS, data=st.data())
def test_protocol_like_junk_only_ever_raises_protocol_error(raw, options, data):
    drive_requests(chunkings(data, raw), **options)
    drive_requests(bytewise(raw), **options)


@settings(max_examples=60)
@given(raw=token_streams, max_line=st.sampled_from([8, 24, 4096]), data=st.data())
def test_events_do_not_depend_on_chunking(raw, max_line, data):
    """Whole, byte by byte or cut anywhere: the same requests and the same errors.

    (The upload size limit is left at its default here: when an upload is both
    over the limit and invalid base64, which error is noticed first depends on
    the chunking.)
    """
    reference = coarse(normalize_requests(drive_requests(whole(raw), max_line_bytes=max_line)))
    one_by_one = coarse(normalize_requests(drive_requests(bytewise(raw), max_line_bytes=max_line)))
    assert one_by_one == reference
    pieces = chunkings(data, raw)
    assert coarse(normalize_requests(drive_requests(pieces, max_line_bytes=max_line))) == reference


@settings(max_examples=60)
@given(reqs=st.lists(requests, max_size=4), junk=token_streams, data=st.data())
def test_good_requests_after_a_non_fatal_error_still_decode(reqs, junk, data):
    """Any junk line that draws a non-fatal error leaves the connection usable."""
    line = junk.replace(b"\r\n\r\n", b"")
    raw = line + TERM
    first = normalize_requests(drive_requests(whole(raw)))
    if any(e["event"] == "error" and e["fatal"] for e in first):
        return          # over the line limit: the connection is gone anyway
    raw += b"".join(wire.encode_request(*r) for r in reqs)
    events = normalize_requests(drive_requests(chunkings(data, raw)))
    assert coarse(events) == coarse(first) + expected_events(reqs)


any_text = st.text(st.characters(exclude_categories=()))     # lone surrogates too


@given(data=st.one_of(st.lists(any_text), st.lists(st.one_of(any_text, st.integers())),
                      any_text, st.dictionaries(any_text, any_text)))
def test_ok_reply_is_json_dumps_text(data):
    assert wire.ok_reply(data) == (
        json.dumps({"status": "OK", "data": data}).encode("ascii") + TERM)
